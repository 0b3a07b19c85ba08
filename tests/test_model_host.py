"""The model host on the embedded model: one copy of the weights serving every policy."""
import torch

from engine.lora import lora_config
from engine.policies import BASE, Policy, prompted, with_adapter


def test_batched_scoring_matches_one_sequence_at_a_time(host):
    xs = ["Describe your morning.", "Write one sentence about trains, please, right now."]
    ys = [host.reply_ids("It was lovely and sunny."), host.reply_ids("Trains are fast.")]
    policy = prompted("Be happy.")
    logits, targets, mask = host.batch_logits(policy, xs, ys)
    for i in range(2):
        p = host.prefix_ids(policy, xs[i])
        with torch.no_grad(), host.use(policy) as model:
            full = model(input_ids=torch.tensor([p + ys[i]])).logits[0]
        ref = full[len(p) - 1:len(p) - 1 + len(ys[i])]
        assert torch.allclose(ref, logits[i, :len(ys[i])], atol=1e-3)
        assert targets[i, :len(ys[i])].tolist() == ys[i] and int(mask[i].sum()) == len(ys[i])


def test_prompt_changes_the_distribution_and_neutral_system_is_explicit(host):
    assert "You are a helpful assistant." in host.tok.decode(host.prefix_ids(BASE, "hi"))
    x, y = ["Tell me about rain."], [host.reply_ids("Rain is wonderful!")]
    lp_base = host.sequence_logprobs(BASE, x, y)[0]
    lp_happy = host.sequence_logprobs(prompted("You are extremely cheerful and positive."), x, y)[0]
    assert lp_happy != lp_base


def test_generation_is_seeded_and_ends_with_eos(host):
    a = host.generate(BASE, ["Name a colour."], n_samples=2, max_new_tokens=8, seed=3)
    b = host.generate(BASE, ["Name a colour."], n_samples=2, max_new_tokens=8, seed=3)
    assert a.texts == b.texts and len(a.texts[0]) == 2
    for ids in a.token_ids[0]:
        assert len(ids) <= 8 and (host.eos_id not in ids or ids[-1] == host.eos_id)


def test_share_prefixes_maps_every_row_to_its_distinct_prompt():
    from engine.model_host import share_prefix_rows
    assert share_prefix_rows([[1, 2], [1, 2], [3], [1, 2], [3]]) == ([[1, 2], [3]], [0, 0, 1, 0, 1])


def test_samples_that_share_one_prefill_are_the_samples_each_row_would_draw_alone(host):
    """The k samples of an input read its prompt's KV cache, computed once: with the same seed they are the
    same replies as when every row computes its own prefill (the oracle), also in a batch mixing inputs of
    different lengths (left padding) and with a prompt."""
    xs = ["Name a colour.", "Describe the sea in one short sentence, please."]
    policy = prompted("Be brief.")
    shared = host.generate(policy, xs, n_samples=3, max_new_tokens=10, temperature=1.0, seed=5)
    alone = host.generate(policy, xs, n_samples=3, max_new_tokens=10, temperature=1.0, seed=5, share_prefixes=False)
    assert shared.token_ids == alone.token_ids
    assert len(set(map(tuple, shared.token_ids[1]))) > 1    # three different samples, not one copied


def test_replies_scored_on_one_shared_prefix_match_each_row_scored_whole_with_the_same_gradients(host):
    """Teacher forcing with each distinct prompt run once and its KV cache given to its replies gives the
    logits (and, through a LoRA in training, the gradients) of every row run on its own prefix + reply —
    replies of different lengths (right padding), prompts of different lengths (left padding), a one-token reply."""
    xs = ["Name a colour.", "Name a colour.", "Describe the sea in one short sentence, please.", "Name a colour."]
    ys = [host.reply_ids(t) for t in ("Blue, like the sky on a clear day.", "Red.", "The sea is wide.", "")]
    assert len(ys[3]) == 1                                       # the end-of-turn token alone
    torch.manual_seed(0)
    host.add_lora("t-shared", lora_config(4, 8, "q_proj,v_proj"))
    try:
        with torch.no_grad():
            for p in host.trainable_parameters("t-shared"):
                p.normal_(0, 0.05)                                   # B != 0: the adapter changes the prefix's KV
        policy = Policy(system="Be brief.", adapter="t-shared")
        grads = []
        for share in (True, False):
            logits, targets, mask = host.batch_logits(policy, xs, ys, grad=True, share_prefixes=share)
            loss = -(torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0] * mask).sum()
            params = host.trainable_parameters("t-shared")
            grads.append(torch.autograd.grad(loss, params))
            if share:
                shared = (logits.detach(), loss.detach())
        assert torch.allclose(shared[0][mask], logits.detach()[mask], atol=1e-3)
        assert torch.allclose(shared[1], loss.detach(), rtol=1e-4)
        for a, b in zip(*grads):   # fp32 sums in another order: equal to ~1e-4 of their size
            assert float((a - b).norm()) <= 2e-3 * float(b.norm()) + 1e-6
        assert any(float(g.abs().sum()) > 0 for g in grads[0])
    finally:
        host.delete_adapter("t-shared")


def test_reply_hidden_states_on_a_shared_prefix_are_those_of_each_row_run_whole(host):
    """The reward models' features: hidden states at the reply tokens, prompt run once for its replies, equal
    those of each row's own forward over prefix + reply."""
    xs = ["Name a colour.", "Describe the sea, please.", "Name a colour."]
    ys = [host.reply_ids(t) for t in ("Blue, like the sky.", "It is wide.", "Red.")]
    h, reply = host.reply_hidden_states(BASE, xs, ys)
    assert reply.sum(1).tolist() == [len(y) for y in ys]
    for i in range(3):
        p = host.prefix_ids(BASE, xs[i])
        with torch.no_grad(), host.use(BASE) as model:
            full = model(input_ids=torch.tensor([p + ys[i]]), output_hidden_states=True).hidden_states[-1][0]
        assert torch.allclose(full[len(p):], h[i, :len(ys[i])], atol=1e-3)


def test_adapter_is_served_over_the_same_weights_and_removed_cleanly(host):
    n_before = sum(p.numel() for p in host.model.parameters())
    host.add_lora("t-adapter", lora_config(4, 8, "q_proj,v_proj"))
    x, y = ["Hi"], [host.reply_ids("Hello there.")]
    # a fresh LoRA (B = 0) is exactly the base policy
    assert abs(host.sequence_logprobs(with_adapter("t-adapter"), x, y)[0] - host.sequence_logprobs(BASE, x, y)[0]) < 1e-4
    with torch.no_grad():
        for p in host.trainable_parameters("t-adapter"):
            p.add_(0.05)
    assert abs(host.sequence_logprobs(with_adapter("t-adapter"), x, y)[0] - host.sequence_logprobs(BASE, x, y)[0]) > 1e-3
    host.delete_adapter("t-adapter")
    assert "t-adapter" not in host.adapters
    assert sum(p.numel() for p in host.model.parameters()) == n_before


def test_a_run_that_fails_while_training_leaves_no_adapter_or_soft_prompt_and_one_that_finishes_keeps_it(host):
    import pytest
    host.add_lora("t-failed", lora_config(4, 8, "q_proj,v_proj"))
    with pytest.raises(KeyboardInterrupt), host.removed_on_failure("t-failed"):
        raise KeyboardInterrupt   # a cancel is not an Exception: it too takes the adapter off
    host.add_soft_prompt("t-soft", torch.zeros(2, host.model.get_input_embeddings().weight.shape[1]))
    with pytest.raises(ValueError), host.removed_on_failure("t-soft"):
        raise ValueError("a failed step")
    assert "t-failed" not in host.adapters and "t-soft" not in host.soft_prompts
    host.add_lora("t-kept", lora_config(4, 8, "q_proj,v_proj"))
    with host.removed_on_failure("t-kept"):
        pass
    assert "t-kept" in host.adapters
    host.delete_adapter("t-kept")


def test_switching_loading_and_deleting_adapters_keeps_which_ones_train(host, tmp_path):
    host.add_lora("t-frozen", lora_config(4, 8, "q_proj,v_proj"))
    saved = host.save_adapter("t-frozen", tmp_path)
    host.delete_adapter("t-frozen")
    host.add_lora("t-train", lora_config(4, 8, "q_proj,v_proj"))
    host.load_adapter("t-frozen", saved)            # e.g. a reward built from another run, mid-training
    host.add_lora("t-other", lora_config(4, 8, "q_proj,v_proj"))
    host.delete_adapter("t-other")
    trains = lambda name: {p.requires_grad for p in host.trainable_parameters(name)}
    try:
        x, y = ["Hi"], [host.reply_ids("Hello there.")]
        assert trains("t-train") == {True} and trains("t-frozen") == {False}
        for policy in (with_adapter("t-frozen"), BASE, with_adapter("t-train"), with_adapter("t-frozen"), BASE):
            host.sequence_logprobs(policy, x, y)
            assert trains("t-train") == {True} and trains("t-frozen") == {False}
    finally:
        host.delete_adapter("t-train")
        host.delete_adapter("t-frozen")


def test_past_max_adapters_the_least_recently_used_saved_one_is_unloaded_and_comes_back(host, tmp_path):
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        host.add_lora(f"lru{i}", lora_config(4, 8, "q_proj,v_proj"))
        with torch.no_grad():
            for p in host.trainable_parameters(f"lru{i}"):
                p.normal_(std=0.05)
        paths.append(host.save_adapter(f"lru{i}", tmp_path / f"a{i}"))
        host.delete_adapter(f"lru{i}")
    host.add_lora("lru-training", lora_config(4, 8, "q_proj,v_proj"))   # never saved: never unloaded
    x, y = ["Hi"], [host.reply_ids("Hello there.")]
    lru = lambda names: {n for n in names if n.startswith("lru")}   # earlier tests' adapters may be there too
    limit, host.max_adapters = host.max_adapters, 2
    try:
        host.load_adapter("lru0", paths[0])
        before = host.sequence_logprobs(with_adapter("lru0"), x, y)
        host.load_adapter("lru1", paths[1])
        host.load_adapter("lru2", paths[2])                       # a third saved one: lru0 is the oldest
        assert lru(host.evicted) == {"lru0"} and host.evicted["lru0"] == str(paths[0])
        assert lru(host.adapters) == {"lru1", "lru2", "lru-training"}
        assert host.sequence_logprobs(with_adapter("lru0"), x, y) == before   # loaded again from its files
        assert lru(host.adapters) == {"lru0", "lru2", "lru-training"} and "lru1" in host.evicted   # lru1: oldest
        from engine.policies import policy_from_spec, policy_spec
        assert policy_from_spec(policy_spec(with_adapter("lru1"), host), host).adapter == "lru1"
    finally:
        host.max_adapters = limit
        for name in ("lru0", "lru1", "lru2", "lru-training"):
            host.delete_adapter(name)
        assert not lru(host.evicted) | lru(host.adapters)


def test_lab_model_accepts_a_local_directory(host, model_cache_dir):
    from engine.model_host import ModelHost
    from engine.model_loading import cache_dir_for, embedded_gguf_path
    local = cache_dir_for(str(embedded_gguf_path()), model_cache_dir)  # a plain transformers directory
    other = ModelHost(str(local), model_cache_dir)
    x, y = ["Hi"], [host.reply_ids("Hello.")]
    assert abs(other.sequence_logprobs(BASE, x, y)[0] - host.sequence_logprobs(BASE, x, y)[0]) < 1e-4


def test_an_exported_adapter_is_a_real_peft_checkpoint_naming_the_hub_model(host, tmp_path):
    """adapter_config.json names the model's hub id; PeftModel.from_pretrained on a freshly loaded base
    reproduces the lab's log-probs."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.model_loading import resolve_model_dir
    host.add_lora("t-export", lora_config(4, 8))          # default targets: the attention projections
    try:
        with torch.no_grad():
            for p in host.trainable_parameters("t-export"):
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
        saved = host.save_adapter("t-export", tmp_path / "export")
        config = json.loads((saved / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
        x, y = ["Describe the sea."], [host.reply_ids("The sea is calm and blue today.")]
        lab = host.sequence_logprobs(with_adapter("t-export"), x, y)[0]
        base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("embedded", host.model_cache_root),
                                                    dtype=torch.float32)
        peft = PeftModel.from_pretrained(base, str(saved)).eval()
        ids = host.prefix_ids(BASE, x[0])
        with torch.no_grad():
            logp = torch.log_softmax(peft(input_ids=torch.tensor([ids + y[0]])).logits[0].float(), -1)
        theirs = float(sum(logp[len(ids) - 1 + t, tok] for t, tok in enumerate(y[0])))
        assert abs(theirs - lab) < 1e-3 and abs(lab - host.sequence_logprobs(BASE, x, y)[0]) > 1e-2
    finally:
        host.delete_adapter("t-export")
