"""A short real context-distillation run on the embedded model, through the job runner and storage."""
import os

from conftest import TINY


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
