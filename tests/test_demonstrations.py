"""Learning from expert demonstrations (Sun et al. 2024): Eqs. 5–7 on hand-made tensors, demonstration files
(bad ones refused, naming the line and key), and a short real run of SFT, the discriminator and adversarial
imitation on the embedded model."""
import json
import math

import pytest
import torch

from engine.adversarial import (adversarial_reward, discriminator_accuracy, discriminator_loss,
                                discriminator_objective, policy_objective)
from engine.demonstrations import Demonstration, load_demonstration_file, split_heldout
from engine.errors import LabInputError
from engine.reward_models import train_discriminator_head
from engine.scenarios import load_scenario, parse_scenario

log_sigmoid = lambda v: -math.log1p(math.exp(-v))


# ---------- Eqs. 5–7 ----------
def test_eq6_is_log_d_on_demonstrations_plus_log_one_minus_d_on_the_policy():
    demo, pol = torch.tensor([2.0, 0.0]), torch.tensor([-1.0])
    expected = (log_sigmoid(2.0) + log_sigmoid(0.0)) / 2 + math.log(1 - 1 / (1 + math.exp(1.0)))
    assert discriminator_objective(demo, pol).item() == pytest.approx(expected, abs=1e-6)
    assert discriminator_loss(demo, pol).item() == pytest.approx(-expected, abs=1e-6)
    # D that cannot tell them apart (every logit 0): 2 · log(1/2)
    assert discriminator_objective(torch.zeros(3), torch.zeros(5)).item() == pytest.approx(-2 * math.log(2))
    # a D that separates them scores higher than one that has them the wrong way round
    assert discriminator_objective(torch.tensor([3.0]), torch.tensor([-3.0])) > \
        discriminator_objective(torch.tensor([-3.0]), torch.tensor([3.0]))


def test_eq7_reward_is_the_logit_even_where_d_rounds_to_0_or_1():
    logits = torch.tensor([-50.0, -1.5, 0.0, 0.7, 50.0])
    assert torch.allclose(adversarial_reward(logits), logits, atol=1e-5)
    d = torch.sigmoid(torch.tensor([0.7]))
    assert adversarial_reward(torch.tensor([0.7])).item() == pytest.approx((d.log() - (1 - d).log()).item(), abs=1e-6)


def test_eq5_is_the_mean_adversarial_reward_of_the_policy_samples():
    assert policy_objective(torch.tensor([1.0, -3.0, 0.5])).item() == pytest.approx(-0.5)


def test_discriminator_accuracy_weighs_the_two_classes_equally():
    assert discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-1.0, -1.0, -1.0, 1.0])) == 0.5 * 0.5 + 0.5 * 0.75


def test_discriminator_head_separates_demonstration_features_from_policy_features():
    g = torch.Generator().manual_seed(0)
    demo = torch.randn(40, 6, generator=g) + torch.tensor([2.0, 0, 0, 0, 0, 0])
    pol = torch.randn(40, 6, generator=g) - torch.tensor([2.0, 0, 0, 0, 0, 0])
    head = train_discriminator_head(demo, pol, steps=200, lr=0.05, l2=0.01)
    with torch.no_grad():
        assert discriminator_accuracy(head(demo), head(pol)) > 0.95
        assert discriminator_loss(head(demo), head(pol)).item() < 2 * math.log(2) - 0.5


# ---------- demonstrations as data ----------
def _write(tmp_path, lines: list[str]):
    path = tmp_path / "demos.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("lines, message", [
    (['{"input": "a", "reply": "b"}', '{"input": "c", "reply": '], "line 2: not valid JSON"),
    (['{"input": "a"}'], "line 1: missing 'reply'"),
    (['{"input": "a", "reply": "b", "score": 3}'], "line 1: unknown key 'score'"),
    (['{"input": "a", "reply": "  "}'], "line 1.reply: must be non-empty text"),
    (['["a", "b"]'], "line 1: expected an object"),
    (['{"input": "a", "reply": "' + "x" * 5000 + '"}'], "line 1.reply: 5,000 characters; the limit is 4,000"),
    ([""], "holds no demonstration"),
])
def test_bad_demonstration_files_are_refused_naming_line_and_key(tmp_path, lines, message):
    with pytest.raises(LabInputError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_demonstration_file(_write(tmp_path, lines))


def test_a_good_file_loads_whole_and_a_missing_one_says_what_to_give(tmp_path):
    demos = load_demonstration_file(_write(tmp_path, ['{"input": " a ", "reply": "b"}', "", '{"input": "c", "reply": "d"}']))
    assert demos == (Demonstration("a", "b"), Demonstration("c", "d"))
    with pytest.raises(LabInputError, match="no such file"):
        load_demonstration_file(tmp_path / "missing.jsonl")


def test_arithmetic_ships_a_worked_solution_for_every_input_that_the_golden_metric_accepts():
    sc = load_scenario("arithmetic")
    demos = sc.expert_demonstrations
    assert {d.input for d in demos} == set(sc.train_inputs) | set(sc.heldout_inputs)
    assert sc.reward()([d.input for d in demos], [d.reply for d in demos]) == [1.0] * len(demos)
    train, held = split_heldout(demos, sc.heldout_inputs)
    assert len(train) == len(sc.train_inputs) and {d.input for d in held} == set(sc.heldout_inputs)
    assert parse_scenario(sc.to_dict()) == sc   # stored with a run, read back the same


@pytest.mark.parametrize("name, floor", [("sentiment", 0.7), ("pirate", 3.0), ("concise", -0.25)])
def test_the_other_scenarios_demonstrations_each_reach_the_reference_reward_they_were_filtered_by(name, floor):
    """make_demonstrations.py keeps π0 + z's best reply of an input only when it reaches the floor."""
    sc = load_scenario(name)
    demos = sc.expert_demonstrations
    assert len(demos) >= 64 and len({d.input for d in demos}) == len(demos)
    assert {d.input for d in demos} <= set(sc.train_inputs) | set(sc.heldout_inputs)
    assert min(sc.reward()([d.input for d in demos], [d.reply for d in demos])) >= floor


def test_scenario_demonstrations_errors_name_the_item():
    data = load_scenario("sentiment").to_dict() | {"expert_demonstrations": [{"input": "x", "reply": ""}]}
    with pytest.raises(LabInputError, match=r"scenario\.expert_demonstrations\[0\]\.reply"):
        parse_scenario(data)


# ---------- short real runs ----------
TINY_DEMO = {"n_train": 16, "n_heldout": 4, "max_new_tokens": 12}


def _run(lab, method: str, task: str, **settings) -> dict:
    run = lab.run(lab.run_now(lab.prepare_task(task, method, "arithmetic", TINY_DEMO | settings)))
    assert run["status"] == "succeeded", run["error"]
    return run


def test_sft_makes_the_held_out_demonstrations_likelier(lab):
    run = _run(lab, "sft", "demonstrations", eval_samples=1, steps=6, batch_size=4, lr=3e-3, eval_every=0)
    m = run["metrics"]
    assert m["n_demonstrations"] == 16 and m["n_heldout_demonstrations"] == 4   # n_heldout caps them too
    assert m["nll_after"] < 0.8 * m["nll_before"]
    assert m["kl_to_base"] > 0 and m["forward_tokens"] > 0
    assert {p["name"] for p in lab.points(run["run_id"])} >= {"loss", "nll_heldout", "reward"}
    assert run["artifacts"][0]["kind"] == "adapter"


def test_demonstrations_are_read_as_a_policys_reply_under_the_same_cap(host):
    from engine.tasks.discriminator import capped_replies
    long, short = Demonstration("Count.", "one two three " * 20 + "done."), Demonstration("Greet.", "Hi there.")
    cut, kept = capped_replies(host, [long, short], 12)
    assert kept == "Hi there."                                   # within the cap, its end-of-turn token kept
    assert long.reply.startswith(cut) and len(cut) < len(long.reply)
    assert len(host.tok(cut, add_special_tokens=False)["input_ids"]) == 12   # cut where sampling would stop


def test_discriminator_tells_worked_solutions_from_base_replies_and_its_reward_is_reusable(lab):
    run = _run(lab, "discriminator", "reward-model", samples_per_input=1, heldout_samples=1, head_steps=100,
               n_heldout=8)
    m = run["metrics"]
    # held out, D ranks the worked solutions above the base's replies and its threshold D = 1/2 carries over: it
    # is fitted on replies read as the stored reward reads them (text closed by the end-of-turn token), so a
    # reply cut at max_new_tokens is no giveaway in training that is gone in use (accuracy was 0.5 with AUC 0.9)
    assert m["heldout_auc"] > 0.75 and m["train_accuracy"] > 0.75 and m["heldout_accuracy"] > 0.7
    assert m["reward_demonstrations"] > m["reward_policy"]          # Eq. 7: demonstrations score higher
    assert {"agreement_spearman", "agreement_pair_accuracy"} <= set(m)   # None where every reply scores the same
    bon = lab.run(lab.run_now(lab.prepare_task("best-of-n", "bon", "arithmetic",
                                               {"n": "1,2", "reward": run["run_id"], "n_heldout": 2,
                                                "max_new_tokens": 8})))
    assert bon["status"] == "succeeded", bon["error"]


def test_adversarial_imitation_alternates_the_discriminator_and_rl(lab):
    run = _run(lab, "adversarial", "demonstrations", rounds=2, steps=1, k=2, batch_size=2, eval_samples=1,
               samples_per_input=1, head_steps=50, n_train=6)
    m = run["metrics"]
    assert [r["round"] for r in m["rounds"]] == [1, 2]
    assert all(0 <= r["d_accuracy"] <= 1 for r in m["rounds"])
    assert 0 <= m["heldout_accuracy"] <= 1 and m["kl_to_base"] > 0
    # the last D_ω judges π0's held-out replies and the trained policy's: the reward Eq. 5 maximized, before/after
    assert all(math.isfinite(m[k]) for k in ("discriminator_reward_before", "discriminator_reward_after"))
    steps = sorted({p["step"] for p in lab.points(run["run_id"]) if p["name"] == "loss"})
    assert steps == [1, 2]   # round 2's RL step follows round 1's on the curve


def test_cli_sft_refuses_a_bad_demonstration_file_and_writes_nothing(engine_cli, tmp_path):
    bad = _write(tmp_path, ['{"input": "a", "reply": "b"}', '{"input": "a"}'])
    res = engine_cli("sft", "--scenario", "arithmetic", "--demonstrations", str(bad), "--json")
    assert res.returncode == 2 and "line 2: missing 'reply'" in res.stderr
    assert json.loads(engine_cli("runs", "--json").stdout) == []


def test_a_data_file_uploaded_in_the_page_feeds_the_run_that_reads_it(tmp_path, settings):
    from engine.api import Lab
    lab = Lab(settings=settings, host_factory=lambda: None)
    demos = _write(tmp_path, ['{"input": "Say hi.", "reply": "Hi!"}', '{"input": "Say bye.", "reply": "Bye!"}'])
    sc, overrides = lab.with_data_file("demonstrations", "sft", "sentiment", {"steps": 2}, str(demos))
    assert sc.expert_demonstrations == (Demonstration("Say hi.", "Hi!"), Demonstration("Say bye.", "Bye!"))
    assert overrides == {"steps": 2}
    assert lab.prepare_task("demonstrations", "sft", sc, overrides).scenario.expert_demonstrations == \
        sc.expert_demonstrations   # the run's stored scenario carries them
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "a", "chosen": "good", "rejected": "bad"}\n'
                     '{"prompt": "b", "chosen": "yes", "rejected": "no"}\n', encoding="utf-8")
    _, overrides = lab.with_data_file("prompt->reward", "bradley-terry", "sentiment", {}, str(pairs))
    kept = overrides["preference_file"]
    assert kept.startswith(str(settings.data_dir / "uploads")) and open(kept).read() == pairs.read_text()
    with pytest.raises(LabInputError, match="data file, line 1: missing 'reply'"):
        lab.with_data_file("reward-model", "discriminator", "sentiment", {}, str(_write(tmp_path, ['{"input": "a"}'])))
    with pytest.raises(LabInputError, match="reads no file"):
        lab.with_data_file("best-of-n", "bon", "sentiment", {}, str(demos))
