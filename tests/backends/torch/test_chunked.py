"""torch's chunked kernels of the sparse, dense and sigmoid losses on large
logits: values, gradients of every order and the envelope, against the float64
reference."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import REDUCTIONS, bf16_ulps, torch_or_skip
from tests.backends.torch.general import row_calls, row_inputs, row_tensors
from xent.testing import assert_close


@pytest.fixture
def chunked(monkeypatch):
    """The chunked torch sparse path for test-sized logits (it starts at 2^23)."""
    torch_or_skip()
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


def _inputs(torch, dtype, seed):  # type: ignore[no-untyped-def]
    """(torch dtype, logits [300, 256] of it that require grad, int labels in [0, 256))."""
    r = np.random.default_rng(seed)
    t = getattr(torch, dtype)
    z = torch.from_numpy(r.standard_normal((300, 256)) * 3).to(t).requires_grad_(True)
    return t, z, r.integers(0, 256, 300)


@pytest.mark.parametrize("chunk_rows", [None, 64])
@pytest.mark.parametrize("reduction, ignore", [("none", None), ("sum", -100), ("mean", None), ("none", 3),
                                               ("mean", -100)])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_sparse_is_chunked(monkeypatch, chunked, dtype, reduction, ignore, chunk_rows):
    # Large logits take the chunked path (chunked._ChunkedSparse), half
    # types in float32: values rounded once, gradients against float64.
    torch = torch_or_skip()
    # (with a chunk size: several chunks, the last one short)
    calls = _counted(monkeypatch, "chunked_sparse_nll", chunk_rows and chunk_rows * 256)
    t, z, y = _inputs(torch, dtype, 11)
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
            assert bf16_ulps(got[y != ignore], want[y != ignore]) <= 0.5 * unit + 1e-4
    (out.sum() if reduction == "none" else out).backward()
    grad_want = ref.sparse_grad(zr, y, ignore_index=ignore, reduction="sum" if reduction == "none" else reduction)
    assert_close(z.grad, grad_want, num_classes=256)
    if ignore is not None:
        assert not z.grad[torch.from_numpy(y == ignore)].float().abs().sum().item()


def test_torch_large_sparse_all_ignored_mean_is_zero_with_zero_gradient(chunked):
    torch = torch_or_skip()
    z = torch.randn(300, 256, requires_grad=True)
    out = xent.sparse_softmax_cross_entropy(z, torch.full((300,), -100), ignore_index=-100, reduction="mean")
    out.backward()
    assert out.item() == 0.0 and not z.grad.abs().sum().item()


@pytest.mark.parametrize("shape", [(400,), (200,), (300, 1)])
def test_torch_large_sparse_label_shape_mismatch_raises(chunked, shape):
    # The chunked kernel slices labels by row: a wrong shape must reach the
    # general path's error, never a loss over the first rows.
    torch = torch_or_skip()
    z = torch.zeros(300, 256)
    with pytest.raises(ValueError, match="labels.shape must be logits.shape without the class axis"):
        xent.sparse_softmax_cross_entropy(z, torch.zeros(shape, dtype=torch.int64), reduction="mean")


def test_torch_large_sparse_bad_labels_raise(chunked):
    torch = torch_or_skip()
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
    torch = torch_or_skip()
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


OPTIONS = {
    "smoothing": {"label_smoothing": 0.1, "ignore_index": -100},
    "class_weights": {"class_weights": np.linspace(0.5, 2.0, 256)},
    "sample_weights": {"weights": np.linspace(0.0, 2.0, 300), "label_smoothing": 0.2},
    "z_loss": {"z_loss": 1e-3, "ignore_index": 5},
    "softcap": {"logit_softcap": 5.0, "label_smoothing": 0.1},
    "all": {"label_smoothing": 0.1, "class_weights": np.linspace(0.0, 2.0, 256), "z_loss": 1e-3,
            "ignore_index": -100},
}


def _options_call(torch, opts, dtype):  # type: ignore[no-untyped-def]
    """(xent's keyword arguments as tensors, the reference's keyword arguments) of ``opts``."""
    call = {k: torch.from_numpy(v).to(dtype) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    kw = {"ignore_index": opts.get("ignore_index"), "alpha": opts.get("label_smoothing", 0.0),
          "cw": opts.get("class_weights"), "w": opts.get("weights"), "z_loss": opts.get("z_loss", 0.0),
          "cap": opts.get("logit_softcap")}
    return call, kw


@pytest.mark.parametrize("chunk_rows", [None, 64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS, ids=list(OPTIONS))
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_sparse_with_options_is_chunked(monkeypatch, chunked, dtype, options, reduction, chunk_rows):
    # Large CPU logits with smoothing, class weights, sample weights, z-loss
    # or soft-capping: the general path's rows come from the chunked kernel
    # (chunked._ChunkedSparse), values and gradients against float64.
    torch = torch_or_skip()
    calls = _counted(monkeypatch, "chunked_sparse_rows", chunk_rows and chunk_rows * 256)
    t, z, y = _inputs(torch, dtype, 13)
    opts = OPTIONS[options]
    if opts.get("ignore_index") is not None:
        y[::9] = opts["ignore_index"]
    call, kw = _options_call(torch, opts, torch.float64 if dtype == "float64" else torch.float32)
    zr = z.detach().double().numpy()
    out = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), reduction=reduction, **call)
    assert calls == [1] and out.dtype == t
    assert_close(out, ref.sparse_zcap(zr, y, reduction=reduction, **kw), num_classes=256,
                 reduced=1 if reduction == "none" else 300)
    (out.sum() if reduction == "none" else out).backward()
    want = ref.sparse_zcap_grad(zr, y, reduction="sum" if reduction == "none" else reduction, **kw)
    assert_close(z.grad, want, num_classes=256)


def test_torch_large_sparse_smoothing_zero_class_weight_at_minus_inf_is_exact(monkeypatch, chunked):
    # A -inf logit under a zero class weight adds nothing to the smoothing
    # term (Backend.weigh), not NaN: the kernel's guarded pass, taken only
    # where a class weight is 0. Against the float64 formula over the other classes.
    torch = torch_or_skip()
    calls = _counted(monkeypatch, "chunked_sparse_rows", 64 * 256)
    r = np.random.default_rng(14)
    zr = r.standard_normal((300, 256))
    zr[:, :3] = -np.inf
    cw = np.linspace(0.5, 2.0, 256)
    cw[:3] = 0.0
    y = r.integers(3, 256, 300)
    z = torch.from_numpy(zr).requires_grad_(True)
    out = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), label_smoothing=0.1,
                                            class_weights=torch.from_numpy(cw), reduction="none")
    lse = np.log(np.exp(zr[:, 3:]).sum(1))
    nll = lse[:, None] - zr[:, 3:]
    want = 0.9 * cw[y] * nll[np.arange(300), y - 3] + (0.1 / 256) * (nll * cw[3:]).sum(1)
    assert calls == [1]
    assert_close(out, want, num_classes=256)
    out.sum().backward()
    assert bool(torch.isfinite(z.grad).all())


def test_torch_large_sparse_with_options_second_order(chunked):
    # A recorded backward of the kernel with options is differentiable in the
    # logits: a Hessian-vector product against (Σ_c a_c)·(diag(p) - p·pᵀ)·v,
    # with a = (1-α)·w_y·onehot(y) + (α/C)·w the label weights.
    torch = torch_or_skip()
    r = np.random.default_rng(15)
    zr, v = r.standard_normal((300, 256)) * 3, r.standard_normal((300, 256))
    y = r.integers(0, 256, 300)
    cw = np.linspace(0.5, 2.0, 256)
    z = torch.from_numpy(zr).requires_grad_(True)
    loss = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), label_smoothing=0.1,
                                             class_weights=torch.from_numpy(cw), reduction="sum")
    (g,) = torch.autograd.grad(loss, z, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch.from_numpy(v)).sum(), z)
    assert_close(g, ref.sparse_zcap_grad(zr, y, alpha=0.1, cw=cw), num_classes=256)
    total = 0.9 * cw[y] + 0.1 * cw.mean()
    assert_close(hv, _hvp_rows(np.exp(ref.log_softmax(zr)), v, total[:, None]), num_classes=256)


@pytest.mark.parametrize("chunk_rows", [None, 64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_large_dense_is_chunked(monkeypatch, chunked, dtype, reduction, chunk_rows):
    # Large dense losses take the chunked kernel (chunked._ChunkedDenseNLL),
    # half types in float32: values rounded once, the logits' and the labels'
    # gradients against float64, for labels that do not sum to 1 (the true
    # gradient is Σy·softmax - y).
    torch = torch_or_skip()
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
        assert bf16_ulps(out.detach().double().numpy(), want) <= 0.5 * unit + 1e-4
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
    torch = torch_or_skip()
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
    torch = torch_or_skip()
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
    torch = torch_or_skip()
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


@pytest.mark.parametrize("total", [True, False])
def test_torch_chunked_sigmoid_kernel_allocates_on_the_inputs_device(total):
    """The chunked sigmoid kernel's buffers are made on the inputs' device:
    run on ``meta`` tensors (no data; a CPU buffer cannot take a copy of one),
    forward and backward stay there."""
    torch = torch_or_skip()
    from xent.backends.torch import binary, chunked

    z = torch.empty(3000, device="meta", requires_grad=True)
    y = torch.empty(3000, device="meta", requires_grad=True)
    out = chunked.chunked_binary_nll(z, y, binary.BinaryNLL.value, total)
    out.sum().backward()
    assert out.device.type == z.grad.device.type == y.grad.device.type == "meta"


@pytest.mark.parametrize("case", list(row_calls(None)))
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_general_formulas_on_large_cpu_inputs_are_chunked(monkeypatch, case, dtype):
    # On the CPU, large inputs of every dtype take the general formulas chunk
    # by chunk, in cache (Backend.rows_in_chunks; 5 chunks, the last one
    # short): the values and the gradients of every input that takes one are
    # those of the whole-array formulas (test-sized inputs, below the size
    # where the chunks start), which the loss tests check against float64.
    torch = torch_or_skip()
    n, v = 300, 256
    inputs = row_inputs(n, v)
    t = getattr(torch, dtype)
    whole = row_tensors(torch, inputs, t)
    want = row_calls(whole.__getitem__)[case]()
    (want.sum() if want.ndim else want).backward()
    from xent.backends.torch import fused

    monkeypatch.setattr(fused, "CHUNKED_MIN", 1 << 16)
    calls = _counted(monkeypatch, "chunked_rows", 64 * 256)
    parts = row_tensors(torch, inputs, t)
    out = row_calls(parts.__getitem__)[case]()
    assert len(calls) == 1 and out.dtype == want.dtype
    assert_close(out, want.detach().double().numpy(), num_classes=v, reduced=1 if out.ndim else n * v)
    (out.sum() if out.ndim else out).backward()
    learnt = [name for name, x in parts.items() if x.requires_grad and x.grad is not None]
    assert learnt == [name for name, x in whole.items() if x.requires_grad and x.grad is not None]
    for name in learnt:
        assert_close(parts[name].grad, whole[name].grad.double().numpy(), num_classes=v, reduced=n)
