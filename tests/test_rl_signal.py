"""When the reward gives RL no signal, the run says so; and RL can start from another run's adapter."""
import json
from types import SimpleNamespace

import pytest
import torch

from engine.edges.reward_to_parameter import RLConfig, low_signal_steps, low_signal_warning, start_adapter
from engine.policies import BASE, with_adapter
from engine.rl_objectives import reward_signal
from engine.scenarios import SCENARIO_DIR

TINY = {"steps": 3, "batch_size": 2, "k": 2, "n_train": 4, "n_heldout": 2, "eval_samples": 1,
        "max_new_tokens": 8, "eval_every": 0}


def test_reward_signal_counts_the_groups_whose_rewards_differ():
    assert reward_signal([0, 0, 1, 0, 2, 2], k=2) == pytest.approx(1 / 3)
    assert reward_signal([0.5] * 8, k=4) == 0.0 and reward_signal([0, 1, 0, 1], k=2) == 1.0
    with pytest.raises(ValueError, match="no group of k=4"):
        reward_signal([1.0, 2.0], k=4)


def test_the_warning_needs_a_run_of_low_steps_and_says_what_to_try():
    assert low_signal_steps([0.0, 0.5, 0.0, 0.0, 0.1, 0.9]) == 3
    assert low_signal_warning([0.0, 0.5, 0.0, 0.5, 0.0], k=4) is None          # low now and then: fine
    text = low_signal_warning([0.6, 0.0, 0.1, 0.0], k=4)
    assert "in 3 of 4 steps fewer than 25% of the groups of k=4" in text
    assert "init=RUN_ID" in text and "best-of-N" in text
    assert low_signal_warning([0.0, 0.0], k=2) is not None                    # a run shorter than the patience


def test_a_constant_reward_gives_zero_signal_and_the_warning(lab, tmp_path):
    data = json.loads((SCENARIO_DIR / "sentiment.json").read_text(encoding="utf-8"))
    data |= {"name": "never", "reward": {"kind": "keywords", "words": ["xyzzyplugh"]}}   # no reply earns it
    path = tmp_path / "never.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    run = lab.run(lab.run_now(lab.prepare("reward", "parameter", "rloo", str(path), TINY)))
    assert run["status"] == "succeeded", run["error"]
    m = run["metrics"]
    assert m["reward_signal"] == 0.0 and m["reward_before"] == m["reward_after"] == 0.0
    assert len(m["warnings"]) == 1 and "Little reward signal: in 3 of 3 steps" in m["warnings"][0]
    assert [p["value"] for p in lab.points(run["run_id"]) if p["name"] == "signal"] == [0.0, 0.0, 0.0]
    from app import views
    assert "⚠ <b>Warning.</b> Little reward signal" in views.metrics_markdown(run)


def test_init_starts_from_the_source_runs_adapter_weights(lab, host, tmp_path):
    from engine.lora import lora_config
    torch.manual_seed(1)
    host.add_lora("cd-source", lora_config(4, 8, "q_proj,v_proj"))
    with torch.no_grad():
        for name, p in host.model.named_parameters():
            if ".cd-source." in name and "lora_B" in name:   # B = 0 at init would equal π0
                p.normal_(std=0.05)
    path = host.save_adapter("cd-source", tmp_path / "source")
    rid = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}})
    lab.store.add_artifact(rid, "adapter", "parameter", str(path))
    lab.store.mark_finished(rid, "succeeded", {})
    ctx = SimpleNamespace(host=host, lookup=lab.store.get_run)
    xs, ys = ["How was your day?"], [host.reply_ids("It was a lovely day.")]
    try:
        start_adapter(RLConfig(init=rid, lora_rank=16), ctx, "rl-warm")
        warm = host.sequence_logprobs(with_adapter("rl-warm"), xs, ys)
        source = host.sequence_logprobs(with_adapter("cd-source"), xs, ys)
        assert warm == source                      # before the first step: the source's log-probs
        params = host.trainable_parameters("rl-warm")
        assert params and all(p.requires_grad for p in params)
        assert params[0].shape[0] == 4                        # the source's rank, not the config's 16
        start_adapter(RLConfig(), ctx, "rl-fresh")
        assert host.sequence_logprobs(with_adapter("rl-fresh"), xs, ys) == \
            host.sequence_logprobs(BASE, xs, ys)                            # a fresh LoRA is π0 (B = 0)
    finally:
        for name in ("cd-source", "rl-warm", "rl-fresh"):
            host.delete_adapter(name)


def test_the_training_loop_adds_a_methods_live_note_to_the_stage():
    w = torch.nn.Parameter(torch.zeros(2))
    stages, model = [], torch.nn.Linear(1, 1)
    from engine.training import train
    train([w], 3, 0.1, lambda i: ((w - 1).pow(2).sum(), {}), lambda f, stage, step, points: stages.append(stage),
          (0.0, 1.0), model, note=lambda: " · low" if len(stages) >= 1 else "")
    assert stages == ["training step 1/3", "training step 2/3 · low", "training step 3/3 · low"]
    assert float(w.detach().sum()) > 0 and not model.training              # it trained, and left the model in eval mode


def test_a_saturated_reward_is_told_apart_from_a_reward_no_reply_earns():
    signals = [0.9, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]                 # the pirate warm start: "ye ye ye …" × 40
    climbing = [1.2, 3.8, 12.8, 39.9, 40.0, 40.0, 40.0]
    text = low_signal_warning(signals, k=4, train_rewards=climbing)
    assert text.startswith("The reward saturated: from step 5 on") and "top train reward (40" in text
    flat = low_signal_warning([0.0, 0.0, 0.1, 0.0], k=4, train_rewards=[0.0, 0.0, 0.01, 0.0])
    assert flat.startswith("Little reward signal")


def test_rl_under_a_prompt_starts_from_pi0_with_it_and_its_adapter_answers_under_it(lab, host):
    """"Optimized prompt + RL" (Sun et al.'s Table 1): the reference of the KL penalty is π0 + z, the stored
    adapter records z, and a stored adapter or a missing run is refused as the prompt."""
    from engine.edges.reward_to_parameter import prompt_data, start_policy, untrained
    from engine.errors import LabInputError
    from engine.policies import Policy, prompted
    from engine.scenarios import load_scenario
    sc = load_scenario("sentiment")
    search = lab.store.create_run("reward->prompt", "search", "sentiment", {"method_config": {}})
    lab.store.add_artifact(search, "prompt", "prompt", None, {"prompt_text": "Be upbeat.",
                                                               "demonstrations": [{"user": "Hi", "assistant": "Hello!"}]})
    lab.store.mark_finished(search, "succeeded", {})
    ctx = SimpleNamespace(host=host, lookup=lab.store.get_run, scenario=sc)
    start = start_policy(RLConfig(prompt=search), ctx)
    assert (start.system, start.turns, start.adapter) == ("Be upbeat.", (("Hi", "Hello!"),), None)
    assert start_policy(RLConfig(), ctx) is BASE and start_policy(RLConfig(prompt="instruction"), ctx).system == sc.prompt
    trained = Policy(system="Be upbeat.", turns=(("Hi", "Hello!"),), adapter="rl-x")
    assert untrained(trained) == Policy(system="Be upbeat.", turns=(("Hi", "Hello!"),), label="start")
    assert untrained(with_adapter("rl-y")) is BASE            # no prompt: the reference is π0 itself
    assert prompt_data(trained) == {"system": "Be upbeat.", "turns": [["Hi", "Hello!"]]} and prompt_data(BASE) == {}
    # the untrained reference scores a reply as π0 + z does, not as π0
    xs, ys = ["How was your day?"], [host.reply_ids("It was a lovely day.")]
    z = prompted("Be upbeat.", turns=(("Hi", "Hello!"),))
    assert host.sequence_logprobs(untrained(trained), xs, ys) == host.sequence_logprobs(z, xs, ys) != \
        host.sequence_logprobs(BASE, xs, ys)
    adapter_run = lab.store.create_run("reward->parameter", "rloo", "sentiment", {"method_config": {}})
    lab.store.add_artifact(adapter_run, "adapter", "parameter", "/nowhere")
    lab.store.mark_finished(adapter_run, "succeeded", {})
    with pytest.raises(LabInputError, match=r"prompt: run .* made adapter, not prompt; pick a run that made a prompt"):
        lab.prepare("reward", "parameter", "rloo", "sentiment", {"prompt": adapter_run})
    with pytest.raises(LabInputError, match="prompt: no run"):
        lab.prepare("reward", "parameter", "rloo", "sentiment", {"prompt": "no-such-run"})
