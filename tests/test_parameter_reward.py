"""reward ⇄ parameter on the embedded model: RL steps move the policy the right way, steering is exact,
the log-ratio reward and best-of-N run end to end, and bad references are refused before anything is written."""
import contextlib
from pathlib import Path

import pytest
import torch

from engine.errors import LabInputError
from engine.evaluation import Scored
from engine.lora import lora_config
from engine.policies import BASE, prompted, with_adapter
from engine.edges.reward_to_parameter import LOSS, RLConfig, sequence_logps
from engine.training import update
from engine.adapter_rows import _low_precision_row_lora_forward, adapter_decoding
from engine.steering import Steer, apply_preset, one_prefill_pays, steered_generate, steered_generate_sequential

RL_TINY = {"steps": 2, "batch_size": 2, "k": 2, "n_train": 8, "n_heldout": 4, "eval_samples": 1,
           "max_new_tokens": 12, "eval_every": 1}
LR_TINY = {"n_heldout": 4, "eval_samples": 2, "max_new_tokens": 10, "batch_size": 8}


@pytest.fixture
def random_adapter(host):
    """A LoRA adapter with non-zero weights (a fresh one equals the base)."""
    torch.manual_seed(0)
    host.add_lora("noisy", lora_config(4, 8.0, "q_proj,v_proj"))
    with torch.no_grad():
        for p in host.trainable_parameters("noisy"):
            p.normal_(0, 0.05)
    yield with_adapter("noisy")
    host.delete_adapter("noisy")


@pytest.mark.parametrize("method", ["rloo", "dpo"])
def test_one_update_raises_the_better_reply_over_the_worse(host, method):
    """On a fixed batch with rewards 1 (first reply) and 0 (second), one step must move log π(y1) − log π(y2) up."""
    xs = ["Describe your morning.", "Describe your morning."]
    ys = [host.reply_ids("What a lovely bright morning!"), host.reply_ids("It was grey and dull.")]
    batch = Scored("trained", xs, ["", ""], ys, [1.0, 0.0], [0, 1])
    config = RLConfig(k=2, beta=0.05)
    torch.manual_seed(0)
    host.add_lora("pg", lora_config(4, 8.0, "q_proj,v_proj"))
    try:
        policy = with_adapter("pg")
        params = host.trainable_parameters("pg")
        opt = torch.optim.SGD(params, lr=0.5)
        margin = lambda: (lambda lp: float(lp[0] - lp[1]))(sequence_logps(host, policy, xs, ys, False))
        before = margin()
        for _ in range(2):  # LoRA's B starts at zero: the first step only moves B, the second reaches the output
            update(opt, params, LOSS[method](config, host, policy, batch)[0])
        host.model.eval()
        assert margin() > before + 1e-3
    finally:
        host.delete_adapter("pg")


def test_batched_steering_equals_the_naive_loop_and_w0_is_plain_decoding(host, random_adapter):
    xs = ["Write one sentence about trains.", "Describe the ocean.", "What is a good breakfast?"]
    steer = Steer(pi1=prompted("Answer in five words or fewer."), star=random_adapter, zero=BASE, w=1.5)
    kw = dict(n_samples=2, max_new_tokens=12, temperature=1.0, seed=5)
    with host.run_precision("fp32"):                               # exact equality needs float32 on any CPU
        batched = steered_generate(host, steer, xs, **kw)
        naive = steered_generate_sequential(host, steer, xs, **kw)
        plain = host.generate(steer.pi1, xs, **kw)
        unsteered = steered_generate(host, Steer(steer.pi1, steer.star, steer.zero, 0.0), xs, **kw)
    assert batched.token_ids == naive.token_ids                   # same tokens, one forward per step
    assert unsteered.token_ids == plain.token_ids
    assert batched.token_ids != plain.token_ids                   # w = 1.5 does change the text
    # π1 = π*: contrastive decoding runs two distinct policies, not three
    assert len(Steer(random_adapter, random_adapter, BASE, 1.0).distinct()) == 2


def test_bf16_steering_adds_each_adapters_delta_to_its_own_rows():
    """Under bf16 autocast the mixed-adapter layer keeps the base's bf16 output on other rows and adds
    scaling·B·A·x on the adapter's rows — in float32 for a call of a few rows, in bf16 for more; autocast is on
    again afterwards."""
    torch.manual_seed(0)
    base = torch.nn.Linear(32, 24, bias=False)
    A, B, scaling = torch.randn(4, 32), torch.randn(24, 4), 2.0
    mask = torch.tensor([0.0, 1.0, 0.0]).view(-1, 1, 1)
    forward = _low_precision_row_lora_forward(base, [(A, B, scaling, mask)])
    few, many = torch.randn(3, 4, 32), torch.randn(3, 8, 32)       # 12 rows: float32 delta; 24: bf16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = {"few": (forward(few), base(few)), "many": (forward(many), base(many))}
        assert torch.is_autocast_enabled("cpu")
    rel = {}
    for name, x in (("few", few), ("many", many)):
        got, plain = out[name]
        assert got.dtype == torch.bfloat16
        assert torch.equal(got[0], plain[0]) and torch.equal(got[2], plain[2])
        with torch.no_grad():
            delta = scaling * (x[1] @ A.T) @ B.T                      # float32 reference
            exact = x[1] @ base.weight.T + delta
        rel[name] = float((got[1].float() - exact).norm() / exact.norm())
        assert float((got[1].float() - exact + delta).norm() / exact.norm()) > 0.5   # the delta is there
    assert rel["few"] < 5e-3 and rel["many"] < 2e-2       # bf16 rounding: of the sum only / of every product


def test_bf16_decoding_from_an_adapter_takes_the_float32_delta_path_and_matches_peft(host, random_adapter):
    """Sampling a few rows from an adapter under bf16 goes through `adapter_decoding`: its next-token distribution
    is peft's up to bf16 rounding (far closer to it than to the base's); float32 and many rows keep peft's."""
    ids = torch.tensor([host.prefix_ids(random_adapter, "Describe the ocean.")])
    with host.run_precision("fp32"):
        assert isinstance(adapter_decoding(host, "noisy", 1), contextlib.nullcontext)
    with host.run_precision("bf16"), torch.no_grad():
        assert isinstance(adapter_decoding(host, None, 1), contextlib.nullcontext)
        assert isinstance(adapter_decoding(host, "noisy", 32), contextlib.nullcontext)   # many rows: peft's
        logp = {}
        for name, policy, rows in (("peft", random_adapter, contextlib.nullcontext()),
                                   ("lab", random_adapter, adapter_decoding(host, "noisy", 1)),
                                   ("base", BASE, contextlib.nullcontext())):
            with host.use(policy) as model, rows, host.autocast():
                logp[name] = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    kl = lambda p, q: float((logp[p].exp() * (logp[p] - logp[q])).sum())    # noqa: E731
    assert kl("peft", "base") > 1e-3                                       # the adapter does change the output
    assert kl("peft", "lab") < 0.05 * kl("peft", "base")


def test_one_prefill_over_all_policies_only_while_it_pads_little():
    short, long = [1] * 20, [1] * 60
    assert one_prefill_pays([[short, short], [short, short], [short + [2], short]])
    assert not one_prefill_pays([[long, long], [short, short], [short, short]])   # z of 40 more tokens on π1


def test_steering_with_a_long_prompt_prefills_per_policy_and_is_still_exact(host, random_adapter):
    z = prompted(" ".join(["Answer in five words or fewer, and keep every reply short and plain."] * 4))
    steer = Steer(pi1=z, star=random_adapter, zero=BASE, w=1.0)
    xs = ["Describe the ocean.", "What is a good breakfast?"]
    assert not one_prefill_pays([[host.prefix_ids(p, x) for x in xs] for p in steer.distinct()])
    kw = dict(n_samples=1, max_new_tokens=8, temperature=1.0, seed=4)
    with host.run_precision("fp32"):
        assert steered_generate(host, steer, xs, **kw).token_ids == steered_generate_sequential(host, steer, xs, **kw).token_ids


def test_steering_mixes_two_adapters_or_none_exactly(host, random_adapter):
    """DExperts' shape (π* and π0 two different adapters, π1 a prompt) and context-aware decoding (prompts
    only, while an adapter is loaded in the host): the one batched forward per step, with each adapter's
    delta kept to its own rows, picks the naive loop's tokens."""
    torch.manual_seed(1)
    host.add_lora("anti", lora_config(4, 8.0, "q_proj,v_proj"))
    try:
        with torch.no_grad():
            for p in host.trainable_parameters("anti"):
                p.normal_(0, 0.05)
        host.model.eval()
        trains = {n: [p.requires_grad for p in host.trainable_parameters(n)] for n in ("anti", "noisy")}
        xs = ["Describe the ocean.", "What is a good breakfast?"]
        kw = dict(n_samples=1, max_new_tokens=8, temperature=1.0, seed=3)
        z = prompted("Answer in five words or fewer.")
        for steer in (Steer(pi1=z, star=random_adapter, zero=with_adapter("anti"), w=1.0),
                      Steer(pi1=z, star=z, zero=BASE, w=2.0)):
            with host.run_precision("fp32"):
                batched = steered_generate(host, steer, xs, **kw)
                naive = steered_generate_sequential(host, steer, xs, **kw)
            assert batched.token_ids == naive.token_ids, steer
        # which adapters train is as before (masked_adapters switched the active ones and back)
        assert trains == {n: [p.requires_grad for p in host.trainable_parameters(n)] for n in ("anti", "noisy")}
    finally:
        host.delete_adapter("anti")


def test_rl_log_ratio_and_best_of_n_end_to_end(lab):
    rl = lab.run(lab.run_now(lab.prepare("reward", "parameter", "rloo", "sentiment", RL_TINY)))
    assert rl["status"] == "succeeded", rl["error"]
    assert set(rl["metrics"]) >= {"reward_before", "reward_after", "kl_to_base"}
    assert rl["metrics"]["kl_to_base"] > 0                         # the adapter moved away from π0
    assert rl["config"]["runtime"] == lab.jobs.host.runtime()       # the run records what it ran on
    names = {p["name"] for p in lab.points(rl["run_id"])}
    assert {"loss", "train_reward", "reward", "kl_to_base", "signal"} <= names
    assert 0 <= rl["metrics"]["reward_signal"] <= 1
    assert Path(rl["artifacts"][0]["path"], "adapter_model.safetensors").is_file()

    lr_id = lab.run_now(lab.prepare("parameter", "reward", None, "sentiment",
                                    {**LR_TINY, "source_run": rl["run_id"], "pi1": "scenario:concise"}))
    lr = lab.run(lr_id)
    assert lr["status"] == "succeeded", lr["error"]
    m = lr["metrics"]
    assert set(m) >= {"pair_accuracy", "gap_closed", "reward_pi0", "reward_star", "reward_pi1", "reward_steered",
                      "kl_steered_to_pi1", "tokens_per_s_plain", "tokens_per_s_steered", "concise_reward_steered",
                      "tokens_per_s_plain_same_rows"}
    assert m["kl_steered_to_pi1"] > 0 and m["tokens_per_s_steered"] > 0 and m["tokens_per_s_plain_same_rows"] > 0
    assert lr["artifacts"][0]["kind"] == "reward" and lr["artifacts"][0]["data"]["kind"] == "log-ratio"
    token_rows = [s for s in lab.samples(lr_id) if s.get("token_log_ratios")]
    assert token_rows and len(token_rows[0]["tokens"]) == len(token_rows[0]["token_log_ratios"])

    # the log-ratio reward drives best-of-N and DPO like any reward
    bon = lab.run(lab.run_now(lab.prepare_task("best-of-n", "bon", "sentiment",
                                               {"n": "1,2,3", "reward": lr_id, "n_heldout": 3,
                                                "max_new_tokens": 10})))
    assert bon["status"] == "succeeded", bon["error"]
    assert [r["n"] for r in bon["metrics"]["results"]] == [1, 2, 3]
    assert bon["artifacts"] == []
    dpo = lab.run(lab.run_now(lab.prepare("reward", "parameter", "dpo", "sentiment",
                                          {**RL_TINY, "steps": 1, "reward": lr_id})))
    assert dpo["status"] == "succeeded", dpo["error"]
    assert "reference_reward_after" in dpo["metrics"]

    # bad references: refused before a run row exists
    n_runs = len(lab.runs())
    bad = [(("parameter", "reward", None, "sentiment", {"source_run": lr_id}), "made reward, not adapter"),
           (("parameter", "reward", None, "sentiment", {"source_run": "nosuchrun"}), "no run with id"),
           (("parameter", "reward", None, "sentiment", {"source_run": rl["run_id"], "w": "12"}), "out of range"),
           (("reward", "parameter", "rloo", "sentiment", {"reward": rl["run_id"]}), "not reward"),
           (("parameter", "reward", None, "sentiment", {"source_run": rl["run_id"], "pi1": "scenario:nope"}),
            "no built-in scenario")]
    for args, msg in bad:
        with pytest.raises(LabInputError, match=msg):
            lab.prepare(*args)
    with pytest.raises(LabInputError, match="out of range"):
        lab.prepare_task("best-of-n", "bon", "sentiment", {"n": "0,4"})
    assert len(lab.runs()) == n_runs


def test_presets_set_the_three_policies_or_say_what_is_missing():
    assert apply_preset("custom", "r1", "base", "base") == ("r1", "base", "base")
    assert apply_preset("contrastive-decoding", "r1", "base", "base") == ("r1", "base", "star")
    assert apply_preset("context-aware", "", "r9", "base") == ("prompt", "base", "star")
    assert apply_preset("dexperts", "expert", "anti", "base") == ("expert", "anti", "base")
    assert apply_preset("proxy-tuning", "r1", "base", "scenario:concise") == ("r1", "base", "scenario:concise")
    for args, msg in ((("proxy-tuning", "r1", "base", "base"), "other than π0"),
                      (("dexperts", "r1", "base", "base"), "anti-expert"),
                      (("banana", "r1", "base", "base"), "not one of")):
        with pytest.raises(LabInputError, match=msg):
            apply_preset(*args)
