"""parameter -> prompt: the Eq. 12 loss on hand-made tensors, soft prompts served by the model host (checked
against a manual inputs_embeds pass), short real soft and discrete runs, and bad references."""
import math

import pytest
import torch

from conftest import TINY, same_numbers
from engine.errors import LabInputError
from engine.losses import prompt_kl_loss
from engine.edges.parameter_to_prompt import init_embeddings, nearest_token_ids
from engine.policies import BASE, Policy

SMALL = {"n_train": 8, "n_heldout": 4, "eval_samples": 1, "max_new_tokens": 12}


# ---------- math ----------
def test_prompt_kl_loss_both_directions_exact():
    p = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]).log()          # π*: (B=1, T=2, V=2)
    q_logits = torch.tensor([[[0.25, 0.75], [0.1, 0.9]]]).log()  # π0(·|x,z)
    mask = torch.tensor([[True, False]])                         # the second position is padding
    forward = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)   # KL[π* ‖ π0(·|x,z)]
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL[π0(·|x,z) ‖ π*], Eq. 12 as printed
    assert prompt_kl_loss(p, q_logits, mask).item() == pytest.approx(forward, abs=1e-6)
    assert prompt_kl_loss(p, q_logits, mask, reverse=True).item() == pytest.approx(reverse, abs=1e-6)
    assert prompt_kl_loss(p, p + 3.0, mask).item() == pytest.approx(0.0, abs=1e-6)  # logits are normalized


def test_prompt_kl_loss_gradient_reaches_only_the_prompted_logits():
    p = torch.log_softmax(torch.tensor([[[1.0, 0.0, -1.0]]]), -1)
    q = torch.zeros((1, 1, 3), requires_grad=True)
    prompt_kl_loss(p, q, torch.tensor([[True]])).backward()
    # d KL(p ‖ softmax(q)) / dq = softmax(q) − p
    assert torch.allclose(q.grad[0, 0], torch.full((3,), 1 / 3) - p.exp()[0, 0], atol=1e-6)


def test_nearest_token_ids_by_cosine_and_never_banned():
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 9.0], [-1.0, 0.0]])
    embeds = torch.tensor([[0.1, 5.0], [3.0, 0.1], [1.0, 1.0]])
    assert nearest_token_ids(embeds, table, banned=[]) == [1, 0, 2]
    assert nearest_token_ids(embeds, table, banned=[0, 2]) == [1, 1, 1]


# ---------- the model host serves soft prompts ----------
def _manual_reply_logits(host, soft: torch.Tensor, x: str, y: list[int]) -> torch.Tensor:
    """Reference: the chat with an empty system text, `soft` spliced in after `<|im_start|>system\\n`, fed to the
    model as inputs_embeds; the logits that predict the reply tokens y."""
    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": x}]
    ids = host.tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert host.tok.decode(ids[:3]) == "<|im_start|>system\n"
    emb = host.model.get_input_embeddings().weight
    embeds = torch.cat([emb[torch.tensor(ids[:3])], soft, emb[torch.tensor(ids[3:] + y)]])[None]  # (1, L, d)
    with torch.no_grad(), host.use(BASE) as model:
        logits = model(inputs_embeds=embeds).logits[0]
    start = len(ids) + len(soft) - 1   # the last prefix position predicts y[0]
    return logits[start:start + len(y)]


def test_soft_prompt_scoring_equals_a_manual_inputs_embeds_pass(host):
    torch.manual_seed(0)
    soft = torch.randn(4, host.model.config.hidden_size) * 0.05
    host.add_soft_prompt("t-soft", soft)
    try:
        policy = Policy(soft="t-soft")
        xs = ["Describe your morning.", "What do you think of snow, honestly?"]
        ys = [host.reply_ids("It was lovely."), host.reply_ids("Snow is cold and bright and fun.")]
        logits, _, mask = host.batch_logits(policy, xs, ys)
        for i in range(2):
            ref = _manual_reply_logits(host, soft, xs[i], ys[i])
            assert torch.allclose(logits[i, :len(ys[i])], ref, atol=1e-3)
        base = host.batch_logits(BASE, xs, ys)[0]
        assert (base - logits).abs().max() > 0.1   # the soft prompt is not silently ignored
    finally:
        host.delete_soft_prompt("t-soft")


def test_soft_rows_mixed_with_base_rows_in_one_batch_are_exact(host):
    """Virtual token ids carry the soft prompt per row: one batch may hold soft and plain rows (steering)."""
    from engine.model_host import left_pad
    host.add_soft_prompt("t-mix", torch.randn(3, host.model.config.hidden_size) * 0.05)
    try:
        rows = [host.prefix_ids(Policy(soft="t-mix"), "Hi"), host.prefix_ids(BASE, "Hi there, friend")]
        ids, attn = left_pad(rows, host.pad_id)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad(), host.use(BASE) as model:
            mixed = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -1]
            alone = [model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows]
        for i in range(2):
            assert torch.allclose(mixed[i], alone[i], atol=1e-3)
    finally:
        host.delete_soft_prompt("t-mix")


def test_soft_prompt_starting_at_the_neutral_text_is_the_base_policy_and_saves_as_safetensors(host, tmp_path):
    from engine.references import policy_from_spec, policy_spec
    host.add_soft_prompt("t-init", init_embeddings(host, "You are a helpful assistant.", 6))
    try:
        x, y = ["Tell me about rain."], [host.reply_ids("Rain is wonderful!")]
        soft = Policy(soft="t-init")
        assert host.sequence_logprobs(soft, x, y)[0] == pytest.approx(host.sequence_logprobs(BASE, x, y)[0], abs=1e-4)
        path = host.save_soft_prompt("t-init", tmp_path / "sp" / "soft_prompt.safetensors")
        assert path.read_bytes()[:8] != b"\x80\x04\x95"   # not a pickle
        again = policy_from_spec(policy_spec(soft, host), host)   # found by path: not loaded twice
        assert again.soft == "t-init"
        generated = host.generate(soft, ["Name a colour."], max_new_tokens=6, seed=1)
        assert generated.texts == host.generate(BASE, ["Name a colour."], max_new_tokens=6, seed=1).texts
    finally:
        host.delete_soft_prompt("t-init")


# ---------- short real runs ----------
@pytest.fixture(scope="module")
def lab_with_adapter(tmp_path_factory, host, model_cache_dir):
    """A lab whose store holds a short context-distillation run of `sentiment` (π*), shared by the runs below."""
    from engine.api import Lab
    from engine.settings import Settings
    root = tmp_path_factory.mktemp("p2z")
    (root / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    lab = Lab(settings=Settings("embedded", root, f"sqlite:///{root / 'lab.sqlite'}", 2), host_factory=lambda: host)
    cfg = {**TINY, "steps": 12, "lr": 5e-3, "eval_every": 0}   # π* about halfway from π0 to π0(·|x,z)
    run_id = lab.run_now(lab.prepare("prompt", "parameter", "kl", "sentiment", cfg))
    assert lab.run(run_id)["status"] == "succeeded"
    return lab, run_id


def test_short_soft_run_lowers_the_kl_to_the_adapter(lab_with_adapter):
    lab, adapter_run = lab_with_adapter
    cfg = {**SMALL, "source_run": adapter_run, "steps": 4, "batch_size": 4, "n_tokens": 6, "eval_every": 2}
    run_id = lab.run_now(lab.prepare("parameter", "prompt", "soft", "sentiment", cfg))
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    m = run["metrics"]
    assert m["kl_after"] < m["kl_before"]
    art = run["artifacts"][0]
    assert art["kind"] == "soft_prompt" and art["path"].endswith(".safetensors")
    losses = [p["value"] for p in lab.points(run_id) if p["name"] == "loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # the soft prompt is a policy wherever one is accepted, e.g. best-of-N
    from engine.references import resolve_policy
    from engine.run_types import RunContext
    ctx = RunContext(lab.jobs.host, None, "t", None, lambda *a, **k: None, lookup=lab.store.get_run)
    assert resolve_policy(run_id, ctx).soft


def test_a_soft_run_again_draws_pi_star_from_memory_and_gets_the_same_numbers(lab_with_adapter):
    """π*'s transfer set and held-out samples with their tables (engine/run_memo.py): the second run takes both
    from memory and matches the first, metric for metric."""
    lab, adapter_run = lab_with_adapter
    memo = lab.jobs.host.memo
    memo.clear()
    cfg = {**SMALL, "source_run": adapter_run, "steps": 2, "batch_size": 4, "n_tokens": 6, "eval_every": 0}
    runs = []
    for _ in range(2):
        hits = memo.hits
        runs.append(lab.run(lab.run_now(lab.prepare("parameter", "prompt", "soft", "sentiment", cfg))))
        runs[-1]["hits"] = memo.hits - hits
    first, again = runs
    assert (first["hits"], again["hits"]) == (0, 2)   # the transfer set and the held-out target
    assert (first["metrics"]["teacher_side"], again["metrics"]["teacher_side"]) == ("computed", "from memory")
    numbers = lambda run: {k: v for k, v in run["metrics"].items() if k not in ("forward_tokens", "teacher_side")}
    assert same_numbers(numbers(again), numbers(first))
    assert again["metrics"]["forward_tokens"] < first["metrics"]["forward_tokens"]


def test_short_discrete_run_finds_a_readable_prompt_closer_to_the_adapter(lab_with_adapter):
    lab, adapter_run = lab_with_adapter
    cfg = {**SMALL, "source_run": adapter_run, "n_train": 4, "train_samples": 1, "descriptions": 1, "rounds": 1,
           "proposals": 2, "keep_top": 1, "rewrite_tokens": 16}
    run_id = lab.run_now(lab.prepare("parameter", "prompt", "discrete", "sentiment", cfg))
    run = lab.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    m, data = run["metrics"], run["artifacts"][0]["data"]
    assert m["kl_after"] < m["kl_before"]
    assert run["artifacts"][0]["kind"] == "prompt" and data["prompt_text"].strip()
    assert data["candidates"][0]["text"] == data["prompt_text"] and m["n_candidates"] >= 21
    assert {p["name"] for p in lab.points(run_id)} >= {"kl_candidate", "kl_train_best"}


# ---------- bad input: refused before a run exists ----------
def test_a_source_run_without_an_adapter_is_refused_and_nothing_is_written(lab):
    st = lab.store
    reward_run = st.create_run("prompt->reward", "contrastive", "sentiment", {})
    st.add_artifact(reward_run, "reward", "reward", None, {"kind": "contrastive"})
    st.mark_finished(reward_run, "succeeded", metrics={})
    adapter_run = st.create_run("prompt->parameter", "kl", "sentiment", {})
    st.add_artifact(adapter_run, "adapter", "parameter", "/nowhere", {})
    st.mark_finished(adapter_run, "succeeded", metrics={})
    with pytest.raises(LabInputError, match="made reward, not adapter"):
        lab.prepare("parameter", "prompt", "soft", "sentiment", {"source_run": reward_run})
    with pytest.raises(LabInputError, match="source_run: empty"):
        lab.prepare("parameter", "prompt", "discrete", "sentiment", {})
    with pytest.raises(LabInputError, match="soft_run: run .* not soft_prompt"):
        lab.prepare("parameter", "prompt", "discrete", "sentiment",
                    {"source_run": adapter_run, "soft_run": adapter_run})
    assert len(lab.runs()) == 2


def test_cli_exits_2_for_a_source_run_without_an_adapter(tmp_path, model_cache_dir, monkeypatch, capsys):
    from engine.cli import main
    from storage import Store
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    st = Store(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    rid = st.create_run("prompt->reward", "judge", "sentiment", {"scenario_data": {}})
    st.add_artifact(rid, "reward", "reward", None, {"kind": "judge"})
    st.mark_finished(rid, "succeeded", metrics={})
    code = main(["convert", "--from", "parameter", "--to", "prompt", "--scenario", "sentiment",
                 "--source-run", rid, "--json"])
    assert code == 2 and "not adapter" in capsys.readouterr().err
    assert [r["run_id"] for r in st.list_runs()] == [rid]
