"""The fast paths of small eager calls: torch's and TF's fused native loss, and
JAX's whole-loss jit. Each must give exactly the general path's semantics:
values against the float64 reference, xent's own errors, and nothing the
native kernel does differently (torch's default ignore_index, its bfloat16
rounding, NaN for an all-ignored mean) leaking through."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from xent.testing import assert_close

REDUCTIONS = ("none", "sum", "mean")
rng = np.random.default_rng(7)
Z = (rng.standard_normal((24, 7)) * 3).astype(np.float32)
Y = rng.integers(0, 7, 24)


def _bf16_ulps(got: np.ndarray, want: np.ndarray) -> float:
    """Error in bfloat16 ulps of the reference (8 significant bits)."""
    ulp = 2.0 ** (np.floor(np.log2(np.abs(want))) - 7)
    return float(np.max(np.abs(got.astype(np.float64) - want) / ulp))


# ------------------------------------------------------------------- torch
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_torch_fused_matches_reference(dtype, reduction):
    torch = _torch()
    be = xent.get_backend("torch")
    z = torch.from_numpy(Z).to(getattr(torch, dtype))
    y = torch.from_numpy(Y)
    out = be.fused_sparse(z, y, **dict(axis=-1, reduction=reduction, ignore_index=None))
    assert out is not None and out.dtype == z.dtype
    zr = z.double().numpy()
    assert_close(out, ref.sparse(zr, Y, reduction=reduction), num_classes=7,
                 reduced=1 if reduction == "none" else 24)


def test_torch_fused_bfloat16_is_rounded_once():
    # torch's own bfloat16 kernel rounds log_softmax before the gather (several
    # ulps off for small losses); xent computes in float32 and rounds once.
    torch = _torch()
    z = torch.from_numpy(Z).bfloat16()
    want = ref.sparse(z.double().numpy(), Y)
    got = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(Y)).double().numpy()
    assert _bf16_ulps(got, want) <= 0.5 + 1e-9


def test_torch_fused_does_not_ignore_torchs_default_ignore_index():
    torch = _torch()
    y = torch.from_numpy(Y).clone()
    y[3] = -100  # F.cross_entropy's default ignore_index
    with pytest.raises(ValueError, match=r"out-of-range label values: -100"):
        xent.sparse_softmax_cross_entropy(torch.from_numpy(Z), y, reduction="mean")


@pytest.mark.parametrize("labels, message", [(7, "out-of-range label values: 7"), (-1, "-1")])
def test_torch_fused_bad_labels_raise_xents_error(labels, message):
    torch = _torch()
    y = torch.from_numpy(Y).clone()
    y[0] = labels
    with pytest.raises(ValueError, match=message):
        xent.sparse_softmax_cross_entropy(torch.from_numpy(Z), y)


def test_torch_fused_envelope():
    torch = _torch()
    be = xent.get_backend("torch")
    z, y = torch.from_numpy(Z), torch.from_numpy(Y)
    assert be.fused_sparse(z, y, **dict(axis=1, reduction="mean", ignore_index=None)) is not None
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="sum", ignore_index=-100)) is not None
    # Outside the envelope the general path runs:
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=3)) is None  # all-ignored mean is 0, not NaN
    assert be.fused_sparse(z[:0], y[:0], **dict(axis=-1, reduction="mean", ignore_index=None)) is None  # empty mean
    assert be.fused_sparse(z, y.int(), **dict(axis=-1, reduction="none", ignore_index=None)) is None  # not int64
    assert be.fused_sparse(z, y, **dict(axis=0, reduction="none", ignore_index=None)) is None  # class axis first
    assert be.fused_sparse(z, y, **dict(axis=True, reduction="none", ignore_index=None)) is None  # a bool is not an axis
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="average", ignore_index=None)) is None  # unknown reduction


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_fast_paths_in_a_training_step_warn_nothing(reduction):
    # (torch warns when a tensor that requires grad is read as a Python number)
    torch = _torch()
    import warnings

    z = torch.tensor(Z, requires_grad=True)
    soft, binary, y = torch.from_numpy(SOFT), torch.from_numpy(BIN), torch.from_numpy(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss in (xent.softmax_cross_entropy(z, soft, reduction=reduction),
                     xent.sparse_softmax_cross_entropy(z, y, reduction=reduction),
                     xent.sigmoid_cross_entropy(z, binary, reduction=reduction)):
            loss.sum().backward()


def test_torch_fused_calls_are_seen_by_a_torch_function_mode():
    # The fast paths call torch's C++ loss directly, but not under a
    # TorchFunctionMode: it sees F.cross_entropy, as from the native call.
    torch = _torch()
    from torch.overrides import TorchFunctionMode

    class Seen(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.funcs = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.funcs.append(func)
            return func(*args, **(kwargs or {}))

    z, y, soft = torch.from_numpy(Z), torch.from_numpy(Y), torch.from_numpy(np.abs(Z))
    with Seen() as mode:
        sparse = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
        dense = xent.softmax_cross_entropy(z, soft, reduction="sum")
    assert mode.funcs.count(torch.nn.functional.cross_entropy) == 2
    assert_close(sparse, ref.sparse(Z, Y, reduction="mean"), num_classes=7, reduced=24)
    assert_close(dense, ref.dense(Z, np.abs(Z), reduction="sum"), num_classes=7, reduced=24)


def test_torch_all_ignored_mean_is_zero_with_zero_gradient():
    torch = _torch()
    z = torch.from_numpy(Z).requires_grad_(True)
    y = torch.full((24,), 3)
    out = xent.sparse_softmax_cross_entropy(z, y, ignore_index=3, reduction="mean")
    out.backward()
    assert out.item() == 0.0 and not z.grad.abs().sum().item()


@pytest.fixture
def chunked(monkeypatch):
    """The chunked torch sparse path for test-sized logits (it starts at 2^23)."""
    _torch()
    from xent.backends.torch import fused

    monkeypatch.setattr(fused, "CHUNKED_MIN", 1 << 16)


def _counted(monkeypatch, name, chunk=None):  # type: ignore[no-untyped-def]
    """The list that each call of ``chunked.<name>`` (still run) appends to;
    with ``chunk``, the kernels' chunks are that many values."""
    from xent.backends.torch import chunked

    if chunk:
        monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", chunk)
    calls, kernel = [], getattr(chunked, name)
    monkeypatch.setattr(chunked, name, lambda *a: calls.append(1) or kernel(*a))
    return calls


@pytest.mark.parametrize("chunk_rows", [None, 64])
@pytest.mark.parametrize("reduction, ignore", [("none", None), ("sum", -100), ("mean", None), ("none", 3),
                                               ("mean", -100)])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_sparse_is_chunked(monkeypatch, chunked, dtype, reduction, ignore, chunk_rows):
    # Large logits take the chunked path (chunked._ChunkedSparseNLL), half
    # types in float32: values rounded once, gradients against float64.
    torch = _torch()
    # (with a chunk size: several chunks, the last one short)
    calls = _counted(monkeypatch, "chunked_sparse_nll", chunk_rows and chunk_rows * 256)
    r = np.random.default_rng(11)
    t = getattr(torch, dtype)
    z = torch.from_numpy(r.standard_normal((300, 256)) * 3).to(t).requires_grad_(True)
    y = r.integers(0, 256, 300)
    if ignore is not None:
        y[::7] = ignore
    zr = z.detach().double().numpy()
    out = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), ignore_index=ignore, reduction=reduction)
    assert out.dtype == t
    want = ref.sparse(zr, y, ignore_index=ignore, reduction=reduction)
    assert calls == [1]
    assert_close(out, want, num_classes=256, reduced=1 if reduction == "none" else 300)
    if reduction == "none":
        got = out.detach().double().numpy()
        assert not got[y == ignore].any()
        if dtype in ("bfloat16", "float16"):
            unit = 1.0 if dtype == "bfloat16" else 2.0**-3  # float16 has 3 more bits
            assert _bf16_ulps(got[y != ignore], want[y != ignore]) <= 0.5 * unit + 1e-4
    (out.sum() if reduction == "none" else out).backward()
    grad_want = ref.sparse_grad(zr, y, ignore_index=ignore, reduction="sum" if reduction == "none" else reduction)
    assert_close(z.grad, grad_want, num_classes=256)
    if ignore is not None:
        assert not z.grad[torch.from_numpy(y == ignore)].float().abs().sum().item()


def test_torch_large_sparse_all_ignored_mean_is_zero_with_zero_gradient(chunked):
    torch = _torch()
    z = torch.randn(300, 256, requires_grad=True)
    out = xent.sparse_softmax_cross_entropy(z, torch.full((300,), -100), ignore_index=-100, reduction="mean")
    out.backward()
    assert out.item() == 0.0 and not z.grad.abs().sum().item()


@pytest.mark.parametrize("shape", [(400,), (200,), (300, 1)])
def test_torch_large_sparse_label_shape_mismatch_raises(chunked, shape):
    # The chunked kernel slices labels by row: a wrong shape must reach the
    # general path's error, never a loss over the first rows.
    torch = _torch()
    z = torch.zeros(300, 256)
    with pytest.raises(ValueError, match="labels.shape must be logits.shape without the class axis"):
        xent.sparse_softmax_cross_entropy(z, torch.zeros(shape, dtype=torch.int64), reduction="mean")


def test_torch_large_sparse_bad_labels_raise(chunked):
    torch = _torch()
    z = torch.zeros(300, 256, dtype=torch.bfloat16)
    y = torch.zeros(300, dtype=torch.int64)
    y[5] = 256
    with pytest.raises(ValueError, match="out-of-range label values: 256"):
        xent.sparse_softmax_cross_entropy(z, y, ignore_index=-100, reduction="sum")


def _hvp_rows(p: np.ndarray, v: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """``scale·(p⊙v - p·Σ p⊙v)`` per row: the logits' Hessian of a softmax
    cross-entropy (labels summing to ``scale``) applied to ``v``."""
    return scale * (p * v - p * (p * v).sum(-1, keepdims=True))


def test_torch_large_sparse_second_order_and_forward_mode(chunked):
    # A recorded backward (create_graph=True) of the chunked kernel is
    # differentiable; forward mode (no jvp in the kernel) leaves it for the
    # fused call. Against float64 formulas.
    torch = _torch()
    import torch.autograd.forward_ad as fwAD

    r = np.random.default_rng(12)
    zr, v = r.standard_normal((300, 256)) * 3, r.standard_normal((300, 256))
    y = r.integers(0, 256, 300)
    z = torch.from_numpy(zr).requires_grad_(True)
    (g,) = torch.autograd.grad(xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), reduction="sum"),
                               z, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch.from_numpy(v)).sum(), z)
    assert_close(g, ref.sparse_grad(zr, y), num_classes=256)
    assert_close(hv, _hvp_rows(np.exp(ref.log_softmax(zr)), v), num_classes=256)
    with fwAD.dual_level():
        out = xent.sparse_softmax_cross_entropy(fwAD.make_dual(torch.from_numpy(zr), torch.from_numpy(v)),
                                                torch.from_numpy(y), reduction="sum")
        tangent = fwAD.unpack_dual(out).tangent
    assert_close(tangent, (ref.sparse_grad(zr, y) * v).sum(), num_classes=256, reduced=300)


@pytest.mark.parametrize("chunk_rows", [None, 64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_dense_is_chunked(monkeypatch, chunked, dtype, reduction, chunk_rows):
    # Large dense losses take the chunked kernel (chunked._ChunkedDenseNLL),
    # half types in float32: values rounded once, the logits' and the labels'
    # gradients against float64, for labels that do not sum to 1 (the true
    # gradient is Σy·softmax - y).
    torch = _torch()
    # (with a chunk size: several chunks, the last one short)
    calls = _counted(monkeypatch, "chunked_dense_nll", chunk_rows and chunk_rows * 256)
    r = np.random.default_rng(13)
    t = getattr(torch, dtype)
    soft = r.random((300, 256))
    soft /= soft.sum(-1, keepdims=True)
    soft[1::2] *= 2.5  # half the rows sum to 1, half to 2.5 (a float16 sum stays finite)
    z = torch.from_numpy(r.standard_normal((300, 256)) * 3).to(t).requires_grad_(True)
    y = torch.from_numpy(soft).to(t).requires_grad_(True)
    zr, yr = z.detach().double().numpy(), y.detach().double().numpy()
    out = xent.softmax_cross_entropy(z, y, reduction=reduction)
    assert calls == [1] and out.dtype == t
    want = ref.dense(zr, yr, reduction=reduction)
    assert_close(out, want, num_classes=256, reduced=1 if reduction == "none" else 300)
    if dtype in ("bfloat16", "float16") and reduction == "none":
        unit = 1.0 if dtype == "bfloat16" else 2.0**-3  # float16 has 3 more bits
        assert _bf16_ulps(out.detach().double().numpy(), want) <= 0.5 * unit + 1e-4
    (out.sum() if reduction == "none" else out).backward()
    gz, gy = ref.dense_grads(zr, yr, reduction="sum" if reduction == "none" else reduction)
    assert z.grad.dtype == y.grad.dtype == t
    assert_close(z.grad, gz, num_classes=256)
    assert_close(y.grad, gy, num_classes=256)


def test_torch_large_dense_limits_second_order_and_forward_mode(monkeypatch, chunked):
    # The chunked dense kernel's NaN (a zero label under a -inf logit, 0 in
    # xent) sends the call to the general path; a -inf logit under a non-zero
    # label is an infinite loss in the kernel. A recorded backward is
    # differentiable in both inputs; forward mode leaves the kernel. Against
    # float64 formulas.
    torch = _torch()
    import torch.autograd.forward_ad as fwAD

    calls = _counted(monkeypatch, "chunked_dense_nll")
    r = np.random.default_rng(14)
    zr, yr, v = r.standard_normal((300, 256)) * 3, r.random((300, 256)), r.standard_normal((300, 256))
    yr *= r.uniform(0.5, 2.0, (300, 1)) / yr.sum(-1, keepdims=True)  # rows summing to 0.5-2
    masked_z, masked_y = zr.copy(), yr.copy()
    masked_z[0, 1], masked_y[0, 1] = -np.inf, 0.0  # loss finite
    masked_z[1, 2] = -np.inf  # under a non-zero label: loss inf
    z = torch.from_numpy(masked_z).requires_grad_(True)
    out = xent.softmax_cross_entropy(z, torch.from_numpy(masked_y), reduction="none")
    got = out.detach().numpy()
    assert calls == [1] and np.isinf(got[1]) and np.isfinite(np.delete(got, 1)).all()
    finite_z = np.where(np.isinf(masked_z), -1e30, masked_z)
    assert_close(np.delete(got, 1), np.delete(ref.dense(finite_z, masked_y), 1), num_classes=256)
    out[0].backward()
    assert_close(z.grad[0], ref.dense_grads(finite_z[:1], masked_y[:1])[0][0], num_classes=256)
    assert not z.grad[1:].abs().sum().item()

    z, y = torch.from_numpy(zr).requires_grad_(True), torch.from_numpy(yr).requires_grad_(True)
    gz, gy = torch.autograd.grad(xent.softmax_cross_entropy(z, y, reduction="sum"), (z, y), create_graph=True)
    hz, hy = torch.autograd.grad((gz * torch.from_numpy(v)).sum(), (z, y))
    assert len(calls) == 2
    p = np.exp(ref.log_softmax(zr))
    assert_close(gz, ref.dense_grads(zr, yr)[0], num_classes=256)
    assert_close(gy, ref.dense_grads(zr, yr)[1], num_classes=256)
    assert_close(hz, _hvp_rows(p, v, yr.sum(-1, keepdims=True)), num_classes=256)
    assert_close(hy, (p * v).sum(-1, keepdims=True) - v, num_classes=256)
    with fwAD.dual_level():
        out = xent.softmax_cross_entropy(fwAD.make_dual(torch.from_numpy(zr), torch.from_numpy(v)),
                                         torch.from_numpy(yr), reduction="sum")
        tangent = fwAD.unpack_dual(out).tangent
    assert len(calls) == 2
    assert_close(tangent, (ref.dense_grads(zr, yr)[0] * v).sum(), num_classes=256, reduced=300)


@pytest.mark.parametrize("chunk", [None, 4096])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_sigmoid_is_chunked(monkeypatch, chunked, dtype, reduction, chunk):
    # Large sigmoid losses take the chunked kernel (chunked._ChunkedBinaryNLL),
    # half types in float32: values (infinite logits that their labels agree
    # with: 0) and both gradients against float64.
    torch = _torch()
    # (with a chunk size: several chunks, the last one short)
    calls = _counted(monkeypatch, "chunked_binary_nll", chunk)
    r = np.random.default_rng(15)
    zr, yr = r.standard_normal((300, 256)) * 4, r.random((300, 256))
    if dtype == "float16" and reduction == "sum":
        zr /= 8  # (a sum below float16's maximum, 65504)
    zr[0, 0], yr[0, 0] = -np.inf, 0.0
    zr[0, 1], yr[0, 1] = np.inf, 1.0
    t = getattr(torch, dtype)
    z = torch.from_numpy(zr).to(t).requires_grad_(True)
    y = torch.from_numpy(yr).to(t).requires_grad_(True)
    zr, yr = z.detach().double().numpy(), y.detach().double().numpy()
    out = xent.sigmoid_cross_entropy(z, y, reduction=reduction)
    assert calls == [1] and out.dtype == t
    finite_z = np.clip(zr, -1e30, 1e30)  # (the same losses and logits gradients)
    want = ref.sigmoid(finite_z, yr, reduction=reduction)
    assert_close(out, want, num_classes=2, reduced=1 if reduction == "none" else zr.size)
    (out.sum() if reduction == "none" else out).backward()
    scale = 1 / zr.size if reduction == "mean" else 1
    gz, gy = ref.sigmoid_grads(finite_z, yr)
    assert z.grad.dtype == y.grad.dtype == t
    assert_close(z.grad, gz * scale, num_classes=2)
    # d/dy = -z (the node's: ±inf at the infinite logits)
    assert_close(y.grad, -zr * scale, num_classes=2)


def test_torch_large_sigmoid_second_order_forward_mode_and_envelope(monkeypatch, chunked):
    # A recorded backward of the chunked sigmoid kernel is differentiable;
    # forward mode and non-contiguous inputs leave it for the node. Against
    # float64 formulas.
    torch = _torch()
    import torch.autograd.forward_ad as fwAD

    calls = _counted(monkeypatch, "chunked_binary_nll")
    r = np.random.default_rng(16)
    zr, yr, v = r.standard_normal((300, 256)) * 3, r.random((300, 256)), r.standard_normal((300, 256))
    z, y = torch.from_numpy(zr).requires_grad_(True), torch.from_numpy(yr).requires_grad_(True)
    gz, gy = torch.autograd.grad(xent.sigmoid_cross_entropy(z, y, reduction="sum"), (z, y), create_graph=True)
    hz, hy = torch.autograd.grad((gz * torch.from_numpy(v)).sum(), (z, y))
    assert calls == [1]
    sig = 1 / (1 + np.exp(-zr))
    assert_close(gz, ref.sigmoid_grads(zr, yr)[0], num_classes=2)
    assert_close(gy, -zr, num_classes=2)
    assert_close(hz, sig * (1 - sig) * v, num_classes=2)
    assert_close(hy, -v, num_classes=2)
    with fwAD.dual_level():
        out = xent.sigmoid_cross_entropy(fwAD.make_dual(torch.from_numpy(zr), torch.from_numpy(v)),
                                         torch.from_numpy(yr), reduction="sum")
        tangent = fwAD.unpack_dual(out).tangent
    assert_close(tangent, (ref.sigmoid_grads(zr, yr)[0] * v).sum(), num_classes=2, reduced=zr.size)
    zt, yt = torch.from_numpy(zr.T.copy()).T, torch.from_numpy(yr.T.copy()).T  # (transposed views)
    out = xent.sigmoid_cross_entropy(zt, yt, reduction="none")
    assert calls == [1]
    assert_close(out, ref.sigmoid(zr, yr), num_classes=2)


SOFT = rng.random((24, 7)).astype(np.float32)
BIN = rng.random((24, 7)).astype(np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_torch_fused_dense_and_sigmoid_match_reference(dtype, reduction):
    torch = _torch()
    be = xent.get_backend("torch")
    t = getattr(torch, dtype)
    z, soft, binary = (torch.from_numpy(a).to(t) for a in (Z, SOFT, BIN))
    zr, sr, br = (a.double().numpy() for a in (z, soft, binary))
    reduced = 1 if reduction == "none" else 24
    dense = be.fused_dense(z, soft, **dict(axis=-1, reduction=reduction))
    assert dense is not None and dense.dtype == t
    assert_close(dense, ref.dense(zr, sr, reduction=reduction), num_classes=7, reduced=reduced)
    sig = be.fused_sigmoid(z, binary, **dict(reduction=reduction))
    assert sig is not None and sig.dtype == t
    assert_close(sig, ref.sigmoid(zr, br, reduction=reduction), reduced=reduced * 7)


def test_torch_fused_dense_and_sigmoid_envelope():
    torch = _torch()
    be = xent.get_backend("torch")
    z, soft = torch.from_numpy(Z), torch.from_numpy(SOFT)
    assert be.fused_dense(z, soft, **dict(axis=1, reduction="mean")) is not None
    # torch's kernel gives NaN for a zero label under a -inf logit; xent's loss
    # is finite there, so that result is declined and the general path runs:
    z_inf, y0 = z.clone(), soft.clone()
    z_inf[0, 2], y0[0, 2] = -np.inf, 0.0
    for reduction in REDUCTIONS:
        assert be.fused_dense(z_inf, y0, **dict(axis=-1, reduction=reduction)) is None
    assert np.isfinite(xent.softmax_cross_entropy(z_inf, y0, reduction="sum").item())
    for args in [(z, soft.double(), -1, "none"),  # labels of another dtype
                 (z, soft[:, :3], -1, "none"),  # shape mismatch: the general path raises
                 (z, soft, 0, "none"),  # class axis first
                 (z[:0], soft[:0], -1, "mean"),  # empty mean is 0, torch's NaN
                 (z[:, :0], soft[:, :0], -1, "none"),  # no classes: the general path raises
                 (z, soft, -1, "average")]:
        assert be.fused_dense(*args[:2], **dict(axis=args[2], reduction=args[3])) is None, args[2:]
    assert be.fused_sigmoid(z, soft, **dict(reduction="mean")) is not None
    for args in [(z, soft.double(), "none"), (z, soft[:3], "none"), (z[:0], soft[:0], "mean"),
                 (z, soft.numpy(), "none")]:
        assert be.fused_sigmoid(*args[:2], **dict(reduction=args[2])) is None
    with pytest.raises(ValueError, match="labels must have the same shape"):
        xent.softmax_cross_entropy(z, soft[:, :3])


# The sigmoid loss on torch is one autograd node with closed-form derivatives
# (backends/torch/binary.py, BinaryNLL), in three variants: eager, under
# torch.compile, under torch.func transforms.
def _sigmoid_inputs(torch, shape=(5, 7)):
    r = np.random.default_rng(3)
    z = r.standard_normal(shape) * 4
    z.flat[:4] = [0.0, -0.0, 40.0, -40.0]
    y = r.random(shape)
    pw = r.uniform(0.5, 2.0, shape[-1:])
    return z, y, pw


def test_torch_sigmoid_node_autograd_modes():
    torch = _torch()
    z, y, pw = _sigmoid_inputs(torch)
    args = [torch.tensor(v, requires_grad=True) for v in (z, y, pw)]
    loss = lambda a, b, c: xent.sigmoid_cross_entropy(a, b, pos_weight=c)  # noqa: E731
    # reverse, forward (dual tensors), batched and second-order derivatives
    assert torch.autograd.gradcheck(loss, args, check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(loss, args)
    assert torch.autograd.gradcheck(lambda a, b: xent.sigmoid_cross_entropy(a, b, reduction="mean"),
                                    args[:2], check_forward_ad=True)
    # torch.func: per-row gradients (vmap of grad) and a forward-mode Jacobian
    total = lambda a, b: xent.sigmoid_cross_entropy(a, b, reduction="sum")  # noqa: E731
    want_z, want_y = ref.sigmoid_grads(z, y)
    per_row = torch.func.vmap(torch.func.grad(total))(torch.tensor(z), torch.tensor(y))
    np.testing.assert_allclose(per_row.numpy(), want_z, rtol=1e-12, atol=1e-15)
    jac = torch.func.jacfwd(total, argnums=(0, 1))(torch.tensor(z), torch.tensor(y))
    np.testing.assert_allclose(jac[0].numpy(), want_z, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jac[1].numpy(), want_y, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_torch_small_sigmoid_without_autodiff(dtype, reduction):
    # Small inputs that no autodiff records skip the node (_small_binary_nll,
    # unguarded): the same values, and the node's where the result is NaN.
    torch = _torch()
    t = getattr(torch, dtype)
    z, y, _ = _sigmoid_inputs(torch)
    zt, yt = torch.tensor(z).to(t), torch.tensor(y).to(t)
    zr, yr = zt.double().numpy(), yt.double().numpy()
    reduced = 1 if reduction == "none" else z.size
    with torch.no_grad():
        out = xent.sigmoid_cross_entropy(zt, yt, reduction=reduction)
    assert out.dtype == t
    assert_close(out, ref.sigmoid(zr, yr, reduction=reduction), reduced=reduced)
    zt[0, :3], yt[0, :3] = torch.tensor([np.inf, -np.inf, -np.inf]), torch.tensor([1.0, 0.0, 0.25])
    zr, yr = zt.double().numpy(), yt.double().numpy()
    want = ref.sigmoid(np.where(np.isinf(zr), 0.0, zr), yr)
    want[0, :3] = [0.0, 0.0, np.inf]  # an infinite logit its label agrees with gives 0
    want = want if reduction == "none" else want.sum() / (z.size if reduction == "mean" else 1)
    out = xent.sigmoid_cross_entropy(zt, yt, reduction=reduction)
    assert_close(out, want, reduced=reduced)
    zt[0, 0] = np.nan
    assert np.isnan(xent.sigmoid_cross_entropy(zt, yt, reduction=reduction).float().numpy()).any()


def test_torch_small_sigmoid_under_a_device_context(monkeypatch):
    # (its cached constant is made on the CPU, not on a torch.device context's device)
    torch = _torch()
    from xent.backends.torch import fused

    monkeypatch.setattr(fused, "_ONES", {})
    z, y, _ = _sigmoid_inputs(torch)
    with torch.device("meta"), torch.no_grad():
        out = xent.sigmoid_cross_entropy(torch.tensor(z, device="cpu"), torch.tensor(y, device="cpu"), reduction="sum")
    assert out.is_cpu
    assert_close(out, ref.sigmoid(z, y, reduction="sum"), reduced=z.size)


def test_torch_small_sigmoid_forward_mode_on_dual_tensors():
    # Dual tensors do not require grad: forward mode must still get the node's
    # derivative, σ(z) - y, also at z = 0 (where |z| has none).
    torch = _torch()
    import torch.autograd.forward_ad as fwad

    z, y, _ = _sigmoid_inputs(torch)
    tangent = np.random.default_rng(4).standard_normal(z.shape)
    with fwad.dual_level():
        dual = fwad.make_dual(torch.tensor(z), torch.tensor(tangent))
        jvp = fwad.unpack_dual(xent.sigmoid_cross_entropy(dual, torch.tensor(y), reduction="sum")).tangent
    np.testing.assert_allclose(float(jvp), (ref.sigmoid_grads(z, y)[0] * tangent).sum(), rtol=1e-12)


@pytest.mark.parametrize("with_pw", [False, True])
def test_torch_sigmoid_node_under_compile(with_pw):
    torch = _torch()
    z, y, pw = _sigmoid_inputs(torch)
    pw_ref = pw if with_pw else None
    fn = torch.compile(lambda a, b, c: xent.sigmoid_cross_entropy(a, b, pos_weight=c, reduction="sum"),
                       fullgraph=True, backend="aot_eager")
    zt = torch.tensor(z, requires_grad=True)
    out = fn(zt, torch.tensor(y), torch.tensor(pw) if with_pw else None)
    out.backward()
    np.testing.assert_allclose(out.item(), ref.sigmoid(z, y, pos_weight=pw_ref, reduction="sum"), rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), ref.sigmoid_grads(z, y, pos_weight=pw_ref)[0],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fill", [np.inf, 3e38])
def test_torch_sigmoid_large_input_limits(fill):
    # From 2**16 logits on, one sum over them decides whether the 0·inf mask is
    # needed: an infinite logit (or finite ones whose sum overflows) must still
    # give the limits, and everything else the reference values.
    torch = _torch()
    r = np.random.default_rng(5)
    z = (r.standard_normal((256, 300)) * 3).astype(np.float32)
    y = r.random((256, 300)).astype(np.float32)
    z[0, :4], y[0, :4] = [fill, -fill, fill, -fill], [1.0, 0.0, 0.0, 1.0]
    zt = torch.tensor(z, requires_grad=True)
    out = xent.sigmoid_cross_entropy(zt, torch.tensor(y))
    out.sum().backward()
    got = out.detach().numpy()
    want = ref.sigmoid(z, y)
    want[0, :4] = [0.0, 0.0, fill, fill] if fill == np.inf else ref.sigmoid(z[0, :4], y[0, :4])
    assert_close(got, want, reduced=1)
    np.testing.assert_array_equal(zt.grad.numpy()[0, :4], [0.0, 0.0, 1.0, -1.0])


# -------------------------------------------------------------- tensorflow
def _tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_tensorflow_fused_matches_reference(dtype, reduction):
    tf = _tf()
    be = xent.get_backend("tensorflow")
    z = tf.cast(tf.constant(Z), dtype)
    out = be.fused_sparse(z, tf.constant(Y), **dict(axis=-1, reduction=reduction, ignore_index=None))
    assert out is not None and out.dtype == z.dtype
    zr = tf.cast(z, tf.float64).numpy()
    assert_close(out, ref.sparse(zr, Y, reduction=reduction), num_classes=7,
                 reduced=1 if reduction == "none" else 24)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensorflow_fused_is_one_graph_function_per_rank(dtype):
    # The eager fused op runs as one graph function for every shape of a rank
    # (tensorflow/fused.py, _sparse_graph), traced once: values and logits
    # gradients for batches of several sizes and a rank-3 one.
    tf = _tf()
    from xent.backends.tensorflow import fused as tb

    be = xent.get_backend("tensorflow")
    tb._sparse_graph.cache_clear()
    cases = [(Z[:rows], Y[:rows]) for rows in (24, 9, 2)] + [(Z.reshape(4, 6, 7), Y.reshape(4, 6))]
    for zs, ys in cases:
        z = tf.cast(tf.constant(zs), dtype)
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = be.fused_sparse(z, tf.constant(ys), **dict(axis=-1, reduction="sum", ignore_index=None))
        assert out is not None and out.dtype == z.dtype
        zr = tf.cast(z, tf.float64).numpy()
        assert_close(out, ref.sparse(zr, ys, reduction="sum"), num_classes=7, reduced=ys.size)
        assert_close(tape.gradient(out, z), ref.sparse_grad(zr, ys, reduction="sum"), num_classes=7)
        if dtype == "bfloat16":  # computed in float32 and rounded once (tf.nn's bf16 kernel rounds inside)
            got = be.fused_sparse(z, tf.constant(ys), **dict(axis=-1, reduction="none", ignore_index=None))
            assert _bf16_ulps(tf.cast(got, tf.float64).numpy(), ref.sparse(zr, ys)) <= 0.5 + 1e-9
    assert tb._sparse_graph.cache_info().misses == (4 if dtype == "bfloat16" else 2)  # per rank and reduction


def test_tensorflow_fused_envelope_and_errors():
    tf = _tf()
    be = xent.get_backend("tensorflow")
    z, y = tf.constant(Z), tf.constant(Y)
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=0)) is None  # ignore_index: general path
    assert be.fused_sparse(z, Y, **dict(axis=-1, reduction="mean", ignore_index=None)) is None  # host labels: general path

    @tf.function
    def traced(z, y):
        return be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None))

    assert traced(z, y) is None  # out-of-range labels must give NaN under tf.function
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 9"):
        xent.sparse_softmax_cross_entropy(z, bad)
    with pytest.raises(ValueError, match="labels.shape must be"):
        xent.sparse_softmax_cross_entropy(z, y[:5])


# An eager TF call whose signature comes back runs as one cached XLA program
# of the loss (tensorflow/compile_cache.py), once its op-by-op calls have taken
# _COMPILE_AFTER_S: 0 here, so from its second call on.
@pytest.fixture
def _tf_fused():  # type: ignore[no-untyped-def]
    from xent.backends.tensorflow import fused

    return fused


def _tf_fused():  # type: ignore[no-untyped-def]
    """The TF backend's fused rung (its size thresholds, its graph functions)."""
    from xent.backends.tensorflow import fused

    return fused


@pytest.fixture
def tf_functions(monkeypatch):
    """The TF backend module with a fresh cache of compiled losses, which
    compiles a signature at its second call."""
    _tf()
    from xent.backends.tensorflow import compile_cache as tb

    for name in ("_functions", "_programs", "_eager_s"):
        monkeypatch.setattr(tb, name, {})
    monkeypatch.setattr(tb, "COMPILE_AFTER_S", 0.0)
    return tb


def _compiled(tb, fn) -> bool:
    return any(key[0] is fn and program is not None for key, program in tb._programs.items())


SOFT_TF = np.abs(Z) / np.abs(Z).sum(-1, keepdims=True)
TF_CALLS = [
    ("sparse_softmax_cross_entropy", {"reduction": "mean", "ignore_index": 2, "label_smoothing": 0.1}),
    ("softmax_cross_entropy", {"label_smoothing": 0.1}),
    ("softmax_cross_entropy", {"reduction": "mean"}),
    ("sigmoid_cross_entropy", {"reduction": "sum"}),
    ("sigmoid_cross_entropy", {"reduction": "mean"}),
    ("sigmoid_cross_entropy", {"reduction": "none", "pos_weight": True}),
]


def _tf_reference(loss, options):
    """(values, d/dz of their sum) from the float64 formulas."""
    if loss == "sparse_softmax_cross_entropy":
        kw = {"ignore_index": 2, "alpha": 0.1, "reduction": options["reduction"]}
        return ref.sparse(Z, Y, **kw), ref.sparse_grad(Z, Y, **kw)
    if loss == "softmax_cross_entropy":
        kw = {"alpha": options.get("label_smoothing", 0.0)}
        red = options.get("reduction", "none")
        scale = 1 / len(Z) if red == "mean" else 1
        return ref.dense(Z, SOFT_TF, reduction=red, **kw), ref.dense_grads(Z, SOFT_TF, **kw)[0] * scale
    pw = PW if "pos_weight" in options else None
    red = options["reduction"]
    scale = 1 / Z.size if red == "mean" else 1
    return ref.sigmoid(Z, BIN, pos_weight=pw, reduction=red), ref.sigmoid_grads(Z, BIN, pos_weight=pw)[0] * scale


PW = np.linspace(0.5, 2.0, 7)


@pytest.mark.parametrize("loss, options", TF_CALLS)
def test_tensorflow_eager_calls_run_compiled_once_hot(tf_functions, loss, options):
    tf = _tf()
    fn = getattr(xent, loss)
    second = tf.constant(Y if loss.startswith("sparse") else SOFT_TF if "softmax" in loss else BIN)
    kwargs = dict(options)
    if "pos_weight" in kwargs:
        kwargs["pos_weight"] = tf.constant(PW)
    want, want_grad = _tf_reference(loss, options)
    z = tf.constant(Z.astype(np.float64))
    reduced = 1 if options.get("reduction", "none") == "none" else Z.size
    for call in range(3):  # the first call eagerly, then compiled
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = fn(z, second, **kwargs)
        assert _compiled(tf_functions, fn) == (call >= 1)
        assert out.dtype == z.dtype
        assert_close(out, want, num_classes=7, reduced=reduced)
        assert_close(tape.gradient(out, z), want_grad, num_classes=7)


def test_tensorflow_compiled_calls_keep_xents_errors(tf_functions):
    tf = _tf()
    z, y = tf.constant(Z), tf.constant(Y)
    fn = xent.sparse_softmax_cross_entropy
    for _ in range(3):
        fn(z, y, ignore_index=0, reduction="sum")
    assert _compiled(tf_functions, fn)
    # labels are checked on the host before the compiled call: a bad one raises
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 9"):
        fn(z, bad, ignore_index=0, reduction="sum")
    # a call that cannot be compiled (here: it raises) stays eager and says why
    for _ in range(3):
        with pytest.raises(ValueError, match="labels must have the same shape") as info:
            xent.sigmoid_cross_entropy(z, tf.constant(BIN[:, :3]), reduction="sum")
        assert "in user code" not in str(info.value)


def test_tensorflow_compiles_a_signature_once_its_eager_calls_cost_a_compile(tf_functions, monkeypatch):
    # Each op-by-op call of a signature is timed (the backend's clock, faked
    # here: every reading 0.3 s later), and the signature is compiled once they
    # add up to _COMPILE_AFTER_S; another shape starts from zero.
    tf = _tf()
    ticks = iter(np.arange(0.0, 100.0, 0.3))
    monkeypatch.setattr(tf_functions, "_clock", lambda: next(ticks))
    monkeypatch.setattr(tf_functions, "COMPILE_AFTER_S", 0.5)  # two calls' worth (0.3 s each)
    fn = xent.sigmoid_cross_entropy
    z, y = tf.constant(Z), tf.constant(BIN)
    want = ref.sigmoid(Z, BIN, reduction="mean")
    for call in range(4):
        assert_close(fn(z, y, reduction="mean"), want, reduced=Z.size)
        assert _compiled(tf_functions, fn) == (call >= 2)
    assert len(tf_functions._programs) == 1
    fn(z[:-1], y[:-1], reduction="mean")  # a new shape: op by op again
    assert len(tf_functions._programs) == 1


def _sigmoid_sums_thrice(tf, row_counts) -> None:  # type: ignore[no-untyped-def]
    """Three sigmoid sums of the first ``rows`` rows, for each count: the last
    against the float64 formula."""
    for rows in row_counts:
        z, y = tf.constant(Z[:rows]), tf.constant(BIN[:rows])
        for _ in range(3):
            out = xent.sigmoid_cross_entropy(z, y, reduction="sum")
        assert_close(out, ref.sigmoid(Z[:rows], BIN[:rows], reduction="sum"), reduced=Z[:rows].size)


def test_tensorflow_compiled_shapes_are_traced_once_each(tf_functions, monkeypatch, caplog):
    # One concrete function per signature: no signature is traced twice, and
    # TF's "triggered tf.function retracing" warning (five traces of one
    # function within a few calls) never fires for xent's own programs.
    tf = _tf()
    traces = []
    real = tf_functions._program
    monkeypatch.setattr(tf_functions, "_program", lambda *a: traces.append(a[2][0].shape) or real(*a))
    with caplog.at_level("WARNING"):
        _sigmoid_sums_thrice(tf, range(2, 10))
    assert [s[0] for s in traces] == list(range(2, 10))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_tensorflow_compiled_programs_are_capped(tf_functions, monkeypatch):
    tf = _tf()
    monkeypatch.setattr(tf_functions, "MAX_PROGRAMS", 2)
    _sigmoid_sums_thrice(tf, (5, 6, 7))
    assert sorted(key[2][0][0][0] for key in tf_functions._programs) == [5, 6]  # the third: op by op


def test_tensorflow_labels_are_checked_on_the_host_once_per_call(tf_functions, monkeypatch):
    # The front end's host check of class ids runs only before a compiled
    # program (which cannot read them); an op-by-op call checks them itself.
    tf = _tf()
    from xent import _dispatch

    monkeypatch.setattr(_tf_fused(), "COMPILE_MIN", 1)  # (the fused eager op below 2^15 logits)
    checks = []
    real = _dispatch._ids_valid_or_unseen
    monkeypatch.setattr(_dispatch, "_ids_valid_or_unseen", lambda *a: checks.append(1) or real(*a))
    z, y = tf.constant(Z), tf.constant(Y)
    fused = _tf_fused()._sparse_graph.cache_info

    def fused_calls() -> int:
        return fused().hits + fused().misses

    for call in range(3):
        before = fused_calls()
        out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
        assert_close(out, ref.sparse(Z, Y, reduction="mean"), num_classes=7, reduced=24)
        assert len(checks) == call  # none on the first, op-by-op call
        assert fused_calls() - before == (call == 0)  # which takes the fused op
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    for _ in range(2):  # a new signature's op-by-op call and the compiled one both name it
        with pytest.raises(ValueError, match="out-of-range label values: 9"):
            xent.sparse_softmax_cross_entropy(z, tf.cast(bad, tf.int32), reduction="mean")


def test_tensorflow_compiled_calls_second_order_and_variables(tf_functions):
    tf = _tf()
    z = tf.Variable(Z.astype(np.float64))
    y = tf.constant(BIN.astype(np.float64))
    for _ in range(3):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = xent.sigmoid_cross_entropy(z, y, reduction="sum")
            gz = inner.gradient(loss, z)  # (the Variable is watched on its own)
            total = tf.reduce_sum(gz)
        hess_diag = outer.gradient(total, z)  # the Hessian is diagonal: σ(z)·(1 - σ(z))
    assert _compiled(tf_functions, xent.sigmoid_cross_entropy)
    s = 1 / (1 + np.exp(-Z.astype(np.float64)))
    assert_close(gz, ref.sigmoid_grads(Z, BIN)[0])
    assert_close(hess_diag, s * (1 - s))


def test_tensorflow_large_sparse_leaves_the_fused_op_for_the_compiled_call(tf_functions, monkeypatch):
    tf = _tf()
    monkeypatch.setattr(_tf_fused(), "COMPILE_MIN", Z.size)
    be = xent.get_backend("tensorflow")
    z, y = tf.constant(Z), tf.constant(Y)
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None)) is None
    assert be.fused_sparse(z[:-1], y[:-1], **dict(axis=-1, reduction="mean", ignore_index=None)) is not None
    with tf.GradientTape() as tape:  # under a tape the fused op (its kernel's own gradient)
        tape.watch(z)
        fused = be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None))
    assert fused is not None
    assert_close(tape.gradient(fused, z), ref.sparse_grad(Z, Y, reduction="mean"), num_classes=7)
    for _ in range(2):
        out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
    assert _compiled(tf_functions, xent.sparse_softmax_cross_entropy)
    assert_close(out, ref.sparse(Z, Y, reduction="mean"), num_classes=7, reduced=24)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensorflow_large_dense_under_a_tape_is_the_fused_op(tf_functions, monkeypatch, dtype, reduction):
    # Eagerly under a gradient tape, large float32/64 dense losses are tf.nn's
    # fused op (tensorflow/fused.py). Its logits gradient is
    # softmax - y: taken only where every row of labels sums to 1, and no
    # row's loss is NaN. Values, both gradients and a Hessian-vector product
    # against float64 formulas; the cases it must decline.
    tf = _tf()
    monkeypatch.setattr(_tf_fused(), "DENSE_FUSED_MIN", Z.size)  # (it starts at 2^23 logits)
    be = xent.get_backend("tensorflow")
    soft = np.abs(Z.astype(np.float64)) / np.abs(Z.astype(np.float64)).sum(-1, keepdims=True)
    z, y = tf.constant(Z.astype(dtype)), tf.constant(soft.astype(dtype))
    zr, yr = z.numpy().astype(np.float64), y.numpy().astype(np.float64)
    reduced = 1 if reduction == "none" else Z.size
    assert be.fused_dense(z, y, **dict(axis=-1, reduction=reduction)) is None  # no tape: the compiled call is faster
    v = rng.normal(size=Z.shape)
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as tape:
            tape.watch([z, y])
            assert be.fused_dense(z[:-1], y[:-1], **dict(axis=-1, reduction=reduction)) is None  # (below the size)
            fused = be.fused_dense(z, y, **dict(axis=-1, reduction=reduction))
            assert fused is not None and fused.dtype == z.dtype
            out = xent.softmax_cross_entropy(z, y, reduction=reduction)
        dz, dy = tape.gradient(out, [z, y])
        along = tf.reduce_sum(dz * v)
    hv = outer.gradient(along, z)
    assert_close(out, ref.dense(zr, yr, reduction=reduction), num_classes=7, reduced=reduced)
    scale = 1 / len(Z) if reduction == "mean" else 1
    gz, gy = ref.dense_grads(zr, yr)
    assert_close(dz, gz * scale, num_classes=7)
    assert_close(dy, gy * scale, num_classes=7)
    p = np.exp(ref.log_softmax(zr))
    assert_close(hv, scale * (p * v - p * (p * v).sum(-1, keepdims=True)), num_classes=7)

    # declined: labels that do not sum to 1 (xent's gradient is Σy·softmax - y),
    # a zero label under a -inf logit (tf.nn's loss is NaN there, xent's finite),
    # classes on another axis, half types
    masked_z, masked_y = zr.copy(), yr.copy()
    masked_z[0, 1], masked_y[0, 1] = -np.inf, 0.0
    masked_y[0] /= masked_y[0].sum()
    finite_z = np.where(np.isinf(masked_z), -1e30, masked_z)
    for logits, labels, want_z in ((zr, 1.5 * yr, zr), (masked_z, masked_y, finite_z)):
        a, b = tf.constant(logits.astype(dtype)), tf.constant(labels.astype(dtype))
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            assert be.fused_dense(a, b, **dict(axis=-1, reduction=reduction)) is None
            out = xent.softmax_cross_entropy(a, b, reduction=reduction)
        labels = b.numpy().astype(np.float64)
        assert_close(out, ref.dense(want_z, labels, reduction=reduction), num_classes=7, reduced=reduced)
        assert_close(tape.gradient(out, a), ref.dense_grads(want_z, labels)[0] * scale, num_classes=7)
    with tf.GradientTape() as tape:
        tape.watch(z)
        assert be.fused_dense(tf.transpose(z), tf.transpose(y), **dict(axis=0, reduction=reduction)) is None
        assert be.fused_dense(tf.cast(z, tf.bfloat16), tf.cast(y, tf.bfloat16), **dict(axis=-1, reduction=reduction)) is None


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_tensorflow_traced_sigmoid_limits(jit, dtype):
    # Under tf.function a summed sigmoid loss is _reduced_binary_nll: the
    # unguarded sum, the guarded formula where it is NaN, and written-out
    # derivatives that are the guarded formula's.
    tf = _tf()
    z = (np.random.default_rng(5).standard_normal((6, 5)) * 4).astype(np.float32)
    y = np.random.default_rng(6).random((6, 5)).astype(np.float32)
    z[0, 0], y[0, 0] = np.inf, 1.0  # agrees: loss 0, both gradients 0
    z[1, 1], y[1, 1] = -np.inf, 0.0  # agrees
    z[2, 2], y[2, 2] = -np.inf, 0.25  # disagrees: loss inf
    z[3, 3] = -0.0
    zr, yr = (tf.cast(tf.constant(a), tf.float64).numpy() for a in (tf.cast(z, dtype), tf.cast(y, dtype)))
    finite = np.where(np.isinf(zr), 0.0, zr)
    agree = np.isinf(zr) & (yr == (zr > 0))
    want = np.where(agree, 0.0, ref.sigmoid(finite, yr))
    want[2, 2] = np.inf
    gz, gy = ref.sigmoid_grads(finite, yr)
    gz[2, 2] = -0.25
    gz, gy = np.where(agree, 0.0, gz), np.where(agree, 0.0, gy)
    gy[2, 2] = np.inf

    @tf.function(jit_compile=jit, autograph=False)
    def run(z, y):
        with tf.GradientTape() as tape:
            tape.watch([z, y])
            loss = xent.sigmoid_cross_entropy(z, y, reduction="sum")
        return (loss, *tape.gradient(loss, [z, y]))

    loss, dz, dy = run(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype))
    assert loss.dtype == dtype and float(loss) == np.inf
    assert_close(dz, gz)
    assert_close(dy, gy)
    z[2, 2] = 3.0  # now finite: the mean, through the same derivatives
    want[2, 2] = ref.sigmoid(np.array([3.0]), yr[2, 2])[0]
    loss, dz, dy = tf.function(
        lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="mean"), jit_compile=jit, autograph=False
    )(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype)), None, None
    assert_close(loss, want.mean(), reduced=want.size)
    z[4, 4] = np.nan
    nan = tf.function(lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="sum"), autograph=False)
    assert np.isnan(float(nan(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype))))


# --------------------------------------------------------------------- jax
def _jax():
    return pytest.importorskip("jax")


@pytest.mark.parametrize(
    "loss, second, options",
    [
        ("sparse_softmax_cross_entropy", Y, {"reduction": "mean", "ignore_index": 2}),
        ("softmax_cross_entropy", None, {"label_smoothing": 0.1}),
        ("sigmoid_cross_entropy", None, {"reduction": "sum"}),
    ],
)
def test_jax_eager_calls_run_as_one_compiled_program(loss, second, options):
    jax = _jax()
    import jax.numpy as jnp

    from xent.backends.jax import compile_cache

    soft = np.abs(Z) / np.abs(Z).sum(-1, keepdims=True)
    second = soft if second is None else second
    fn = getattr(xent, loss)
    out = fn(jnp.asarray(Z), jnp.asarray(second), **options)
    assert any(key[0] is fn for key in compile_cache._jitted)  # the compiled route was taken
    if loss == "sparse_softmax_cross_entropy":
        want = ref.sparse(Z, Y, ignore_index=2, reduction="mean")
    elif loss == "softmax_cross_entropy":
        want = ref.dense(Z, soft, alpha=0.1)
    else:
        want = ref.sigmoid(Z, soft, reduction="sum")
    assert_close(out, want, num_classes=7, reduced=Z.size)
    # It composes with jax.grad (a jit inside a grad) and gives the analytic gradient.
    if loss == "sparse_softmax_cross_entropy":
        g = jax.grad(lambda z: fn(z, jnp.asarray(second), **options))(jnp.asarray(Z))
        assert_close(g, ref.sparse_grad(Z, Y, ignore_index=2, reduction="mean"), num_classes=7)


def test_jax_eager_bad_labels_raise_and_traced_ones_give_nan():
    jax = _jax()
    import jax.numpy as jnp

    bad = jnp.asarray(np.where(np.arange(24) == 4, 11, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 11"):
        xent.sparse_softmax_cross_entropy(jnp.asarray(Z), bad)
    with pytest.raises(ValueError, match="out-of-range label values: 11"):
        jax.grad(lambda z: xent.sparse_softmax_cross_entropy(z, bad, reduction="sum"))(jnp.asarray(Z))
    out = jax.jit(xent.sparse_softmax_cross_entropy)(jnp.asarray(Z), bad)
    assert np.isnan(np.asarray(out)[4]) and np.isfinite(np.delete(np.asarray(out), 4)).all()
    # ignore_index entries are not out of range:
    out = xent.sparse_softmax_cross_entropy(jnp.asarray(Z), bad, ignore_index=11)
    assert float(np.asarray(out)[4]) == 0.0


@pytest.mark.parametrize("total", [True, False])
def test_torch_chunked_sigmoid_kernel_allocates_on_the_inputs_device(total):
    """The chunked sigmoid kernel's buffers are made on the inputs' device:
    run on ``meta`` tensors (no data; a CPU buffer cannot take a copy of one),
    forward and backward stay there."""
    torch = _torch()
    from xent.backends.torch import binary, chunked

    z = torch.empty(3000, device="meta", requires_grad=True)
    y = torch.empty(3000, device="meta", requires_grad=True)
    out = chunked.chunked_binary_nll(z, y, binary.BinaryNLL.value, total)
    out.sum().backward()
    assert out.device.type == z.grad.device.type == y.grad.device.type == "meta"
