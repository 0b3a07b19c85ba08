"""Few-row fp32 decoding through oneDNN-packed weights (engine/packed_weights.py): the same numbers as aten's
linear, only where it pays, chosen by measurement."""
import pytest
import torch

from engine.errors import LabInputError
from engine.packed_weights import (MAX_ROWS, PackedFp32Weights, choose_fp32_linear, few_row_timings,
                                   onednn_available)
from engine.policies import BASE

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN")
CPU = torch.device("cpu")
SHAPES = [(8, 16)]


class Tiny(torch.nn.Module):
    """A frozen body and an lm_head, with one trainable LoRA-like linear that must be left alone."""
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = torch.nn.Linear(16, 32), torch.nn.Linear(32, 50, bias=False)
        self.lora_A = torch.nn.Linear(16, 4, bias=False)
        self.body.requires_grad_(False), self.head.requires_grad_(False)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def aten(model, x):
    return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, model.body.weight, model.body.bias)),
                                      model.head.weight)


def test_few_rows_without_grad_read_the_packed_copies_with_aten_s_numbers():
    model, x = Tiny(), torch.randn(1, 3, 16)                 # (B, T, in): one step of three rows
    packed = PackedFp32Weights(model)
    assert packed.nbytes == 0 and "forward" not in model.lora_A.__dict__    # LoRA's own linears are left alone
    with torch.no_grad():
        y = model(x)
    assert packed.nbytes == 4 * (16 * 32 + 32 * 50)          # both frozen weights, 4 bytes each
    torch.testing.assert_close(y, aten(model, x), rtol=1e-5, atol=1e-5)
    assert y.shape == (1, 3, 50)


@pytest.mark.parametrize("case", ["grad", "one small row", "many rows", "bf16 autocast", "disabled"])
def test_every_other_forward_keeps_aten_s_linear_exactly(case):
    model = Tiny()
    packed = PackedFp32Weights(model, enabled=case != "disabled")
    x = torch.randn(1 if case == "one small row" else MAX_ROWS + 1 if case == "many rows" else 3, 16)
    if case == "grad":
        x.requires_grad_(True)
        y = model(x)
        y.sum().backward()
        assert x.grad is not None                            # autograd ran through aten's linear
    elif case == "bf16 autocast":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        assert y.dtype == torch.bfloat16
    else:
        with torch.no_grad():
            y = model(x)
    assert packed.nbytes == 0                                # no packed call was made
    if case != "bf16 autocast":
        assert torch.equal(y, aten(model, x))


def test_a_weight_changed_after_packing_is_packed_again():
    model, x = Tiny(), torch.randn(3, 16)
    PackedFp32Weights(model)
    with torch.no_grad():
        model(x)
        model.head.weight.mul_(2.0)                          # in place: the old copy is stale
        y = model(x)
    torch.testing.assert_close(y, aten(model, x), rtol=1e-5, atol=1e-5)


def test_the_kernel_follows_the_measurement_and_is_cached(tmp_path):
    calls, cache = [], tmp_path / "precision.json"

    def timer(shapes, result):
        calls.append(shapes)
        return result
    first = choose_fp32_linear(CPU, "auto", SHAPES, cache, lambda s: timer(s, (0.030, 0.006)))
    assert (first.kernel, first.reason, first.aten_ms, first.onednn_ms) == ("onednn", "measured", 30.0, 6.0)
    again = choose_fp32_linear(CPU, "auto", SHAPES, cache, lambda s: timer(s, (0.001, 0.5)))
    assert (again.kernel, again.reason, len(calls)) == ("onednn", "cached", 1)
    other = choose_fp32_linear(CPU, "auto", [(4, 4)], cache, lambda s: timer(s, (0.010, 0.0095)))
    assert other.kernel == "aten"                            # within the margin: aten stays
    assert '"bf16_ms"' not in cache.read_text()              # beside, not inside, the precision's verdicts


def test_a_onednn_that_fails_to_run_leaves_aten_and_is_not_cached(tmp_path):
    def broken(shapes):
        raise RuntimeError("could not create a primitive descriptor")
    cache = tmp_path / "precision.json"
    choice = choose_fp32_linear(CPU, "auto", SHAPES, cache, broken)
    assert (choice.kernel, choice.reason) == ("aten", "oneDNN failed: could not create a primitive descriptor")
    assert not cache.exists()


def test_overrides_and_bad_values():
    assert choose_fp32_linear(CPU, "aten", SHAPES).reason == "LAB_FP32_LINEAR"
    assert choose_fp32_linear(torch.device("cuda"), "onednn", SHAPES).kernel == "aten"   # not a CPU
    with pytest.raises(LabInputError, match="LAB_FP32_LINEAR: 'mkl' is not one of auto, aten, onednn"):
        choose_fp32_linear(CPU, "mkl", SHAPES)


def test_the_real_micro_benchmark_times_both_kernels():
    aten_s, onednn_s = few_row_timings([(64, 96), (96, 64)])
    assert 0 < aten_s < 1 and 0 < onednn_s < 1


def test_the_host_decodes_few_rows_through_the_packed_copies_with_the_same_logits(host):
    if host.packed_weights is None:
        pytest.skip(f"the host measured aten's few-row linear as fast: {host.fp32_linear}")
    assert host.describe()["fp32_linear"]["kernel"] == "onednn"
    xs, ys = ["Describe your morning."] * 3, [host.reply_ids("A bright and lovely morning!")] * 3
    with host.run_precision("fp32"), torch.no_grad():
        host.packed_weights.enabled = False
        try:
            want = host.batch_logits(BASE, xs, ys)[0]
        finally:
            host.packed_weights.enabled = True
        got = host.batch_logits(BASE, xs, ys)[0]   # one prompt: its rows share one prefix, then 3 reply rows
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert host.packed_weights.nbytes > 0
