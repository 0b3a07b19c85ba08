"""The KV cache that appends in place (engine/kv_cache.py): the same keys and values as transformers'
DynamicCache after every append, reorder and rebuild, and the same decoded tokens."""
import torch
from transformers import DynamicCache

from engine import kv_cache
from engine.kv_cache import MIN_ROOM, BufferedCache
from engine.policies import BASE


def kv(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 2, T, 4, generator=g), torch.randn(B, 2, T, 4, generator=g)


def assert_same(a, b):
    assert a.get_seq_length() == b.get_seq_length()
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.keys, lb.keys) and torch.equal(la.values, lb.values)


def test_appends_reorders_and_growth_match_dynamic_cache():
    ours, theirs = BufferedCache(), DynamicCache()
    with torch.no_grad():
        for c in (ours, theirs):
            c.update(*kv(2, 5, 0), 0)                       # a prefill of 5 positions, 2 distinct prompts
        buf = ours.layers[0]._keys
        assert buf.shape[-2] == MIN_ROOM and ours.layers[0].keys.data_ptr() == buf.data_ptr()   # a view of it
        for c in (ours, theirs):
            c.reorder_cache(torch.tensor([0, 0, 1, 1]))     # shared prefixes: 2 prompts -> 4 rows
        assert_same(ours, theirs)
        for t in range(MIN_ROOM):                           # decode past the first buffer's room
            step = kv(4, 1, 100 + t)
            ours.update(*step, 0), theirs.update(*step, 0)
        assert_same(ours, theirs)
        assert ours.get_seq_length() == 5 + MIN_ROOM and ours.layers[0]._keys.shape[-2] >= 5 + MIN_ROOM
        last = ours.layers[0]._keys
        ours.update(*kv(4, 1, 999), 0)                      # room left: written in place, no new buffer
        assert ours.layers[0]._keys is last


def test_a_cache_built_from_given_layers_holds_them():
    layers = [kv(3, 7, 1), kv(3, 7, 2)]
    ours = BufferedCache(layers)
    theirs = DynamicCache(ddp_cache_data=layers)
    assert_same(ours, theirs)


def test_with_gradients_it_concatenates_like_dynamic_cache():
    ours = BufferedCache()
    k, v = kv(1, 3, 0)
    k.requires_grad_(True)
    keys, _ = ours.update(k, v, 0)
    keys, _ = ours.update(*kv(1, 1, 1), 0)
    keys.sum().backward()                                   # autograd through the appended cache
    assert torch.equal(k.grad, torch.ones_like(k)) and not hasattr(ours.layers[0], "_keys")


def test_sampling_decodes_the_same_tokens_as_with_dynamic_cache(host, monkeypatch):
    xs = ["Describe your morning.", "Name a colour."]
    kw = dict(n_samples=2, max_new_tokens=12, temperature=1.0, seed=3)
    ours = host.generate(BASE, xs, **kw)
    monkeypatch.setattr(kv_cache, "BufferedCache", DynamicCache)
    theirs = host.generate(BASE, xs, **kw)
    assert ours.token_ids == theirs.token_ids
