"""A short real context-distillation run on the embedded model, through the job runner and storage."""
import os

from conftest import TINY, same_numbers


def test_short_kl_distillation_lowers_heldout_kl_and_stores_everything(lab):
    request = lab.prepare("prompt", "parameter", "kl", "sentiment", {**TINY, "steps": 6, "lr": 3e-3})
    run_id = lab.run_now(request)
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    m = run["metrics"]
    assert m["kl_after"] < m["kl_before"]
    for k in ("reward_base", "reward_teacher", "reward_student"):
        assert -1.0 <= m[k] <= 1.0
    assert (m["gain_kept"] is None) == any("not rated" in w for w in m.get("warnings", []))
    art = run["artifacts"][0]
    assert art["kind"] == "adapter" and os.path.exists(os.path.join(art["path"], "adapter_model.safetensors"))
    names = {p["name"] for p in lab.points(run_id)}
    assert {"loss", "kl_heldout", "reward"} <= names
    policies = {s["policy"] for s in lab.samples(run_id)}
    assert policies == {"base", "teacher", "student"}


def test_background_run_can_be_cancelled_and_leaves_nothing(lab):
    request = lab.prepare("prompt", "parameter", "imitation", "sentiment", {**TINY, "steps": 200})
    run_id = lab.submit(request)
    import time
    for _ in range(600):
        run = lab.run(run_id)
        if run["status"] == "running" and run["stage"].startswith("training"):
            break
        time.sleep(0.1)
    assert lab.cancel(run_id)
    lab.jobs.wait_idle(120)
    run = lab.run(run_id)
    assert run["status"] == "cancelled"
    assert lab.points(run_id) == [] and lab.samples(run_id) == [] and run["artifacts"] == []
    assert not (lab.settings.artifacts_dir / run_id).exists()


def test_a_run_left_running_by_a_dead_process_is_interrupted_at_start(settings, host):
    from engine.api import Lab
    from storage import Store
    store = Store(settings.db_url)
    rid = store.create_run("prompt->parameter", "kl", "sentiment", {})
    store.mark_started(rid, owner="999999999@" + __import__("socket").gethostname())
    Lab(settings=settings, host_factory=lambda: host)  # a new process of the lab starts
    run = store.get_run(rid)
    assert run["status"] == "interrupted" and run["finished_at"] is not None


def test_a_second_run_with_other_training_settings_reuses_the_teacher_side_and_gets_the_same_numbers(lab, host):
    """The teacher side (transfer set, held-out samples, KL tables) comes from memory when only training settings
    change, and a run from memory matches one that computed everything (engine/run_memo.py)."""
    host.memo.clear()
    first = lab.run(lab.run_now(lab.prepare("prompt", "parameter", "kl", "sentiment", {**TINY, "seed": 5})))
    second_id = lab.run_now(lab.prepare("prompt", "parameter", "kl", "sentiment", {**TINY, "seed": 5, "lr": 3e-3}))
    second = lab.run(second_id)
    assert (first["metrics"]["teacher_side"], second["metrics"]["teacher_side"]) == ("computed", "from memory")
    for k in ("kl_before", "reward_base", "reward_teacher"):
        assert second["metrics"][k] == first["metrics"][k]
    assert second["metrics"]["forward_tokens"] < first["metrics"]["forward_tokens"]   # it ran fewer forwards
    host.memo.clear()
    again = lab.run(lab.run_now(lab.prepare("prompt", "parameter", "kl", "sentiment", {**TINY, "seed": 5, "lr": 3e-3})))
    assert again["metrics"]["teacher_side"] == "computed"
    numbers = lambda run: {k: v for k, v in run["metrics"].items() if k not in ("teacher_side", "forward_tokens")}
    assert same_numbers(numbers(again), numbers(second))
    rows = lambda run_id: sorted((s["policy"], s["input"], s["output"]) for s in lab.samples(run_id))
    assert rows(again["run_id"]) == rows(second_id)


def test_the_teacher_side_key_names_teacher_settings_not_training_ones(host):
    from pathlib import Path

    from engine.edges import prompt_to_parameter as p2p
    from engine.registry import EDGES, build_config
    from engine.run_types import RunContext
    from engine.scenarios import load_scenario
    ctx = RunContext(host, load_scenario("sentiment"), "k", Path("."), lambda *a, **k: None)
    key = lambda **over: p2p.teacher_side_key("kl", build_config(EDGES["prompt->parameter"].methods["kl"], over), ctx)
    assert key(lr=3e-3, steps=7, batch_size=4, lora_rank=2, eval_every=0) == key()
    for teacher_setting in ({"teacher_temperature": 0.7}, {"teacher_samples": 3}, {"n_train": 8}, {"seed": 1},
                            {"n_heldout": 4}, {"eval_samples": 2}, {"max_new_tokens": 12}):
        assert key(**teacher_setting) != key(), teacher_setting
    imitation = p2p.teacher_side_key("imitation", build_config(EDGES["prompt->parameter"].methods["kl"], {}), ctx)
    assert imitation != key()     # Eq. 10 keeps no teacher tables
    default = key()
    with host.run_precision("fp32" if host.precision == "bf16" else "bf16"):
        assert key() != default   # the numbers of another precision are other numbers
