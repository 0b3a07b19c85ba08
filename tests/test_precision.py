"""Precision is chosen by measurement (engine/precision.py): fp32 wherever bf16 is not clearly faster."""
import pytest
import torch

from engine.errors import LabInputError
from engine.model_host import read_rows_as_matrix
from engine.policies import BASE
from engine.precision import FrozenBf16Weights, bf16_wins, choose_precision, matmul_timings
from engine.settings import load_settings

CPU = torch.device("cpu")
SHAPES = [(8, 16)]


def timer_of(fp32_s: float, bf16_s: float, calls: list):
    def timer(shapes):
        calls.append(shapes)
        return fp32_s, bf16_s
    return timer


def test_bf16_only_where_clearly_faster():
    assert not bf16_wins(0.016, 0.510)          # an AVX2 CPU emulating bf16: 31x slower
    assert not bf16_wins(0.010, 0.0095)         # within the margin: fp32 keeps its precision
    assert bf16_wins(0.010, 0.005)              # native bf16 (AMX, avx512_bf16)


@pytest.mark.parametrize("fp32_s, bf16_s, want", [(0.016, 0.510, "fp32"), (0.010, 0.004, "bf16")])
def test_auto_follows_the_measurement_and_caches_it(tmp_path, fp32_s, bf16_s, want):
    calls, cache = [], tmp_path / "precision.json"
    first = choose_precision(CPU, "auto", SHAPES, cache, timer_of(fp32_s, bf16_s, calls))
    assert (first.precision, first.reason, first.fp32_ms, first.bf16_ms) == (want, "measured", fp32_s * 1e3,
                                                                               bf16_s * 1e3)
    again = choose_precision(CPU, "auto", SHAPES, cache, timer_of(1.0, 0.001, calls))   # would say bf16
    assert (again.precision, again.reason, len(calls)) == (want, "cached", 1)          # not measured again
    assert first.label == f"CPU {torch.backends.cpu.get_cpu_capability()} · {want}"


def test_two_processes_starting_at_once_measure_once_and_agree(tmp_path):
    """The page and its worker process start together: one measures while the other waits, then reads it."""
    import subprocess
    import sys
    code = ("import sys, time, torch; from engine.precision import choose_precision\n"
            "def timer(shapes):\n    print('measured', flush=True); time.sleep(1.0); return 0.010, 0.004\n"
            "c = choose_precision(torch.device('cpu'), 'auto', [(8, 16)], __import__('pathlib').Path(sys.argv[1]), timer)\n"
            "print(c.precision, c.reason)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "precision.json")], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0] for p in procs)
    assert outs == ["bf16 cached\n", "measured\nbf16 measured\n"]


def test_a_damaged_cache_is_measured_again(tmp_path):
    cache = tmp_path / "precision.json"
    cache.write_text("{not json")
    calls = []
    assert choose_precision(CPU, "auto", SHAPES, cache, timer_of(0.01, 0.5, calls)).precision == "fp32"
    assert len(calls) == 1 and cache.read_text().startswith("{")


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_lab_precision_overrides_without_measuring(tmp_path, monkeypatch, requested):
    monkeypatch.setenv("LAB_PRECISION", requested)
    settings = load_settings()
    calls = []
    choice = choose_precision(CPU, settings.precision, SHAPES, tmp_path / "p.json", timer_of(0.01, 0.001, calls))
    assert (choice.precision, choice.reason, calls) == (requested, "LAB_PRECISION", [])


def test_bad_precision_or_device_is_a_clear_error(monkeypatch):
    with pytest.raises(LabInputError, match="LAB_PRECISION: 'fp16' is not one of auto, fp32, bf16"):
        choose_precision(CPU, "fp16", SHAPES)
    from engine.precision import resolve_device
    with pytest.raises(LabInputError, match="LAB_DEVICE"):
        resolve_device("tpu")


def test_the_real_micro_benchmark_times_both_precisions():
    fp32_s, bf16_s = matmul_timings([(64, 96), (96, 64)])
    assert 0 < fp32_s < 1 and 0 < bf16_s < 1


def test_a_run_precision_reaches_every_forward_and_is_restored(host):
    start = host.precision
    for want, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with host.run_precision(want):
            assert host.precision == want and host.runtime()["precision"] == want
            with host.autocast():
                assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    with host.run_precision("auto"):
        assert host.precision == host.choice.precision
    assert host.precision == start


class Tied(torch.nn.Module):
    """A model in miniature: an embedding, a frozen body and an lm_head tied to the embedding."""
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.body, self.head = torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 50, False)
        self.head.weight = self.emb.weight
        self.requires_grad_(False)

    def forward(self, ids):
        return self.head(self.body(self.emb(ids)))


def test_frozen_weights_are_read_as_bf16_copies_inside_a_bf16_region_with_the_same_numbers():
    import threading
    model, lock, ids = Tied(), threading.RLock(), torch.tensor([[1, 7, 3]])
    originals = {n: p for n, p in model.named_parameters()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(ids)                                   # autocast casting every weight at every call
    weights = FrozenBf16Weights(model, lock)
    assert weights.nbytes == 0                              # nothing copied before the first bf16 region
    with weights.region(CPU, "bf16"):
        assert model.body.weight.dtype == model.head.weight.dtype == torch.bfloat16
        assert model.emb.weight.dtype == torch.float32      # the tied embedding's rows stay float32
        with weights.region(CPU, "bf16"):                   # nested: still inside, once
            pass
        assert model.body.weight.dtype == torch.bfloat16
        assert torch.equal(model(ids), want)
        other = threading.Thread(target=lambda: out.append(lock.acquire(timeout=0.05)))
        out = []
        other.start(), other.join()
        assert out == [False]                               # a forward on another thread waits for the region
    assert {n: p for n, p in model.named_parameters()} == originals        # the same fp32 tensors, tie kept
    assert model.head.weight is model.emb.weight and model.body.weight.dtype == torch.float32
    assert weights.nbytes == 2 * (16 * 16 + 50 * 16)        # body and the tied head, 2 bytes a weight
    with weights.region(CPU, "fp32"):
        assert model.body.weight.dtype == torch.float32


def test_the_host_bf16_region_gives_autocasts_logits_exactly(host):
    ys = [host.reply_ids("A bright and lovely morning!")]
    with host.run_precision("bf16"):
        with host.autocast():
            fast = host.batch_logits(BASE, ["Describe your morning."], ys)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):   # float32 weights, cast at every call
            slow = host.batch_logits(BASE, ["Describe your morning."], ys)[0]
    assert torch.equal(fast, slow)


def test_the_lm_head_reads_a_sliced_last_position_as_a_matrix_with_the_same_values():
    head, h = torch.nn.Linear(16, 50, bias=False), torch.randn(3, 5, 16)
    want = [torch.nn.functional.linear(t, head.weight) for t in (h[:, -1:], h)]
    read_rows_as_matrix(head)
    for t, w in zip((h[:, -1:], h), want):
        assert head(t).shape == w.shape and torch.allclose(head(t), w, atol=1e-6)
