"""Precision is chosen by measurement (engine/precision.py): fp32 wherever bf16 is not clearly faster."""
import pytest
import torch

from engine.errors import LabInputError
from engine.precision import bf16_wins, choose_precision, matmul_timings
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
