"""torch's chunked kernels off the CPU: large half-precision logits on an
accelerator take the chunked sparse, dense and sigmoid kernels, with bad
labels clipped and NaN-marked on the device and no value read on the host,
and every other loss and option the general formulas chunk by chunk.

On the CPU the device branch is forced (``device_mode``: the host cannot read,
the CPU-only fused path is off, as on an accelerator) and checked against the
float64 reference; on the ``meta`` device, at real LM sizes, a dispatch mode
counts the float32 tensors of the logits' size that a call produces, forward
and backward: none, as for torch's own bfloat16 loss.
"""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import REDUCTIONS, torch_or_skip
from tests.backends.test_accelerator_mode import _host_reads
from tests.backends.torch.general import row_calls, row_inputs, row_tensors
from xent.testing import assert_close

HALF = ["bfloat16", "float16"]


@pytest.fixture
def device_mode(monkeypatch):  # type: ignore[no-untyped-def]
    """CPU tensors treated as an accelerator's by torch's fused rung, with the
    chunked kernels from 2^16 logits on; returns a function that makes the
    kernel ``name`` record its calls (and, with ``chunk``, chunk that many values)."""
    torch_or_skip()
    from xent.backends.torch import backend, chunked, fused, tensors

    monkeypatch.setattr(backend.TorchBackend, "can_inspect", lambda self, x: False)
    monkeypatch.setattr(fused, "_fusable", lambda *args, **kwargs: None)
    monkeypatch.setattr(tensors, "host_readable", lambda x: False)
    monkeypatch.setattr(fused, "CHUNKED_MIN", 1 << 16)

    def counted(name, chunk=None):  # type: ignore[no-untyped-def]
        if chunk:
            monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", chunk)
        calls, kernel = [], getattr(chunked, name)
        monkeypatch.setattr(chunked, name, lambda *a: calls.append(1) or kernel(*a))
        return calls

    return counted


@pytest.mark.parametrize("label_dtype", ["int64", "int32", "uint8"])
@pytest.mark.parametrize("reduction, ignore", [("none", None), ("sum", -100), ("mean", None), ("mean", 7)])
@pytest.mark.parametrize("dtype", HALF)
def test_sparse_on_device_is_chunked_exact_and_reads_nothing(device_mode, dtype, reduction, ignore, label_dtype):
    torch = torch_or_skip()
    calls = device_mode("chunked_sparse_nll", 64 * 256)  # (several chunks, the last one short)
    r = np.random.default_rng(21)
    t = getattr(torch, dtype)
    z = torch.from_numpy(r.standard_normal((300, 256)) * 3).to(t).requires_grad_(True)
    y = r.integers(0, 200, 300)
    if ignore is not None:
        y[::5] = ignore if ignore >= 0 else -100
    labels = torch.from_numpy(y).to(getattr(torch, label_dtype)) if ignore != -100 or label_dtype != "uint8" \
        else torch.from_numpy(y)
    zr = z.detach().double().numpy()
    reads = _host_reads(lambda: xent.sparse_softmax_cross_entropy(z, labels, ignore_index=ignore, reduction=reduction))
    out = xent.sparse_softmax_cross_entropy(z, labels, ignore_index=ignore, reduction=reduction)
    assert reads == 0 and len(calls) == 2 and out.dtype == t
    want = ref.sparse(zr, y, ignore_index=ignore, reduction=reduction)
    assert_close(out, want, num_classes=256, reduced=1 if reduction == "none" else 300)
    loss = out.sum() if reduction == "none" else out
    assert _host_reads(lambda: loss.backward()) == 0
    grad_want = ref.sparse_grad(zr, y, ignore_index=ignore, reduction="sum" if reduction == "none" else reduction)
    assert_close(z.grad, grad_want, num_classes=256)


OPTION_SETS = {
    "smoothing": {"label_smoothing": 0.1},
    "class_weights": {"class_weights": np.linspace(0.5, 2.0, 256)},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"logit_softcap": 5.0},
    "all": {"label_smoothing": 0.1, "class_weights": np.linspace(0.5, 2.0, 256), "z_loss": 1e-3,
            "logit_softcap": 5.0, "ignore_index": -100},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTION_SETS, ids=list(OPTION_SETS))
@pytest.mark.parametrize("dtype", HALF)
def test_sparse_with_options_on_device_is_chunked_exact_and_reads_nothing(device_mode, dtype, options, reduction):
    # Smoothing, class weights, z-loss and soft-capping off the CPU: the
    # chunked rows kernel (no float32 copy of the logits), against float64.
    torch = torch_or_skip()
    calls = device_mode("chunked_sparse_rows", 64 * 256)
    r = np.random.default_rng(26)
    t = getattr(torch, dtype)
    z = torch.from_numpy(r.standard_normal((300, 256)) * 3).to(t).requires_grad_(True)
    y = r.integers(0, 256, 300)
    opts = dict(OPTION_SETS[options])
    if "ignore_index" in opts:
        y[::9] = -100
    zr = z.detach().double().numpy()
    kw = {"ignore_index": opts.get("ignore_index"), "alpha": opts.get("label_smoothing", 0.0),
          "cw": opts.get("class_weights"), "z_loss": opts.get("z_loss", 0.0), "cap": opts.get("logit_softcap")}
    call = {k: torch.from_numpy(v).float() if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    labels = torch.from_numpy(y)
    reads = _host_reads(lambda: xent.sparse_softmax_cross_entropy(z, labels, reduction=reduction, **call))
    out = xent.sparse_softmax_cross_entropy(z, labels, reduction=reduction, **call)
    assert reads == 0 and len(calls) == 2 and out.dtype == t
    assert_close(out, ref.sparse_zcap(zr, y, reduction=reduction, **kw), num_classes=256,
                 reduced=1 if reduction == "none" else 300)
    assert _host_reads(lambda: (out.sum() if reduction == "none" else out).backward()) == 0
    want = ref.sparse_zcap_grad(zr, y, reduction="sum" if reduction == "none" else reduction, **kw)
    assert_close(z.grad, want, num_classes=256)


def test_sparse_with_options_on_device_second_order(device_mode):
    torch = torch_or_skip()
    device_mode("chunked_sparse_rows")
    r = np.random.default_rng(27)
    z = torch.from_numpy(r.standard_normal((300, 256))).to(torch.bfloat16).requires_grad_(True)
    y = r.integers(0, 256, 300)
    (g,) = torch.autograd.grad(xent.sparse_softmax_cross_entropy(z, torch.from_numpy(y), label_smoothing=0.1,
                                                                 reduction="sum"), z, create_graph=True)
    assert g.requires_grad
    assert_close(g, ref.sparse_zcap_grad(z.detach().double().numpy(), y, alpha=0.1), num_classes=256)


def test_sparse_on_device_marks_bad_labels_nan(device_mode):
    # An out-of-range label: NaN for its row (a mean: NaN), the other rows
    # exact, gradients of the clipped label (finite), nothing read on the host.
    torch = torch_or_skip()
    calls = device_mode("chunked_sparse_nll")
    r = np.random.default_rng(22)
    zr = r.standard_normal((300, 256))
    y = r.integers(0, 256, 300)
    bad = y.copy()
    bad[[3, 40]] = [256, -5]
    bad[7] = -100  # ignored, not bad
    z = torch.from_numpy(zr).to(torch.bfloat16).requires_grad_(True)
    zr = z.detach().double().numpy()
    out = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(bad), ignore_index=-100)
    assert out.dtype == torch.bfloat16
    got = out.detach().double().numpy()
    assert calls == [1] and np.isnan(got[[3, 40]]).all() and got[7] == 0
    keep = np.ones(300, bool)
    keep[[3, 40]] = False
    clipped = np.where(keep, bad, 0)
    assert_close(out.detach()[torch.from_numpy(keep)], ref.sparse(zr, clipped, ignore_index=-100)[keep],
                 num_classes=256)
    mean = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(bad), ignore_index=-100, reduction="mean")
    assert torch.isnan(mean).item()
    out.backward(torch.ones_like(out))
    assert torch.isfinite(z.grad).all().item()
    want = ref.sparse_grad(zr, np.clip(np.where(bad == -100, 0, bad), 0, 255), reduction="sum")
    want[7] = 0
    assert_close(z.grad, want, num_classes=256)


def _shifted_lse(row):  # type: ignore[no-untyped-def]
    """``log Σ exp(z - max z)`` of one row, in float64."""
    d = row - row.max()
    return np.log(np.exp(d).sum())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", HALF)
def test_dense_on_device_is_chunked_and_exact_at_zero_labels_under_minus_inf(device_mode, dtype, reduction):
    # Off the CPU there is no host check to fall back on: the kernel itself
    # gives 0 for a zero label under a -inf logit (NaN on the CPU kernel),
    # in the loss and in the labels' gradient.
    torch = torch_or_skip()
    calls = device_mode("chunked_dense_nll", 64 * 256)
    r = np.random.default_rng(23)
    zr, yr = r.standard_normal((300, 256)) * 3, r.random((300, 256))
    yr /= yr.sum(-1, keepdims=True)
    zr[0, 1], yr[0, 1] = -np.inf, 0.0
    t = getattr(torch, dtype)
    z = torch.from_numpy(zr).to(t).requires_grad_(True)
    y = torch.from_numpy(yr).to(t).requires_grad_(True)
    zr, yr = z.detach().double().numpy(), y.detach().double().numpy()
    out = xent.softmax_cross_entropy(z, y, reduction=reduction)
    assert calls == [1] and out.dtype == t
    finite_z = np.where(np.isinf(zr), -1e30, zr)
    assert_close(out, ref.dense(finite_z, yr, reduction=reduction), num_classes=256,
                 reduced=1 if reduction == "none" else 300)
    assert _host_reads(lambda: (out.sum() if reduction == "none" else out).backward()) == 0
    gz, gy = ref.dense_grads(finite_z, yr, reduction="sum" if reduction == "none" else reduction)
    assert_close(z.grad, gz, num_classes=256)
    # d/dy at the masked entry: log Σ exp(z - m), as on the general path
    # (Backend.unweighted_inf_as_zero), not +inf; elsewhere the reference's
    gy[0, 1] = _shifted_lse(zr[0]) * (1 / 300 if reduction == "mean" else 1)
    assert_close(y.grad, gy, num_classes=256)


def test_dense_on_device_second_order_masks_the_same_entry(device_mode):
    torch = torch_or_skip()
    device_mode("chunked_dense_nll")
    r = np.random.default_rng(24)
    zr, yr = r.standard_normal((300, 256)), r.random((300, 256))
    zr[0, 1], yr[0, 1] = -np.inf, 0.0
    z = torch.from_numpy(zr).to(torch.bfloat16).requires_grad_(True)
    y = torch.from_numpy(yr).to(torch.bfloat16).requires_grad_(True)
    gz, gy = torch.autograd.grad(xent.softmax_cross_entropy(z, y, reduction="sum"), (z, y), create_graph=True)
    finite_z = np.where(np.isinf(zr), -1e30, z.detach().double().numpy())
    want_z, want_y = ref.dense_grads(finite_z, y.detach().double().numpy())
    want_y[0, 1] = _shifted_lse(finite_z[0])
    assert_close(gz, want_z, num_classes=256)
    assert_close(gy, want_y, num_classes=256)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", HALF)
def test_sigmoid_on_device_is_chunked(device_mode, dtype, reduction):
    torch = torch_or_skip()
    calls = device_mode("chunked_binary_nll", 4096)
    r = np.random.default_rng(25)
    zr, yr = r.standard_normal((300, 256)) * (0.5 if dtype == "float16" else 4), r.random((300, 256))
    zr[0, 0], yr[0, 0] = -np.inf, 0.0
    t = getattr(torch, dtype)
    z = torch.from_numpy(zr).to(t).requires_grad_(True)
    y = torch.from_numpy(yr).to(t)
    zr, yr = z.detach().double().numpy(), y.double().numpy()
    reads = _host_reads(lambda: xent.sigmoid_cross_entropy(z, y, reduction=reduction))
    out = xent.sigmoid_cross_entropy(z, y, reduction=reduction)
    assert reads == 0 and len(calls) == 2 and out.dtype == t
    finite_z = np.clip(zr, -1e30, 1e30)
    assert_close(out, ref.sigmoid(finite_z, yr, reduction=reduction), num_classes=2,
                 reduced=1 if reduction == "none" else zr.size)
    assert _host_reads(lambda: (out.sum() if reduction == "none" else out).backward()) == 0
    scale = 1 / zr.size if reduction == "mean" else 1
    assert_close(z.grad, ref.sigmoid_grads(finite_z, yr)[0] * scale, num_classes=2)


def _float32_logits_sized(fn, numel):  # type: ignore[no-untyped-def]
    """How many float32 tensors of at least ``numel`` values ``fn()`` produces."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Sizes(TorchDispatchMode):
        seen: list[tuple[str, tuple[int, ...]]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.numel() >= numel:
                    Sizes.seen.append((str(func), tuple(t.shape)))
            return out

    with Sizes():
        fn()
    return Sizes.seen


N, V = 8192, 128256  # (an LM batch: a bfloat16 [N, V] is 2 GiB; on meta it costs nothing)


def _meta_calls(torch, dtype):  # type: ignore[no-untyped-def]
    z = torch.empty(N, V, dtype=dtype, device="meta")
    ids = torch.empty(N, dtype=torch.int64, device="meta")
    soft = torch.empty(N, V, dtype=dtype, device="meta")
    return {
        "sparse": (xent.sparse_softmax_cross_entropy, z, ids, {"reduction": "mean"}),
        "sparse ignore_index": (xent.sparse_softmax_cross_entropy, z, ids, {"ignore_index": -100, "reduction": "mean"}),
        "sparse none": (xent.sparse_softmax_cross_entropy, z, ids.int(), {}),
        "sparse options": (xent.sparse_softmax_cross_entropy, z, ids,
                           {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-4, "logit_softcap": 30.0,
                            "class_weights": torch.empty(V, device="meta"), "reduction": "mean"}),
        "dense": (xent.softmax_cross_entropy, z, soft, {"reduction": "mean"}),
        "sigmoid": (xent.sigmoid_cross_entropy, z, soft, {"reduction": "sum"}),
        # (the general formulas, chunk by chunk: Backend.rows_in_chunks)
        "sparse focal": (xent.sparse_softmax_cross_entropy, z, ids, {"focal_gamma": 2.0, "reduction": "mean"}),
        "sparse poly": (xent.sparse_softmax_cross_entropy, z, ids,
                        {"poly_epsilon": 1.0, "label_smoothing": 0.1, "ignore_index": -100, "reduction": "mean"}),
        "sparse class weights learnt": (xent.sparse_softmax_cross_entropy, z, ids,
                                        {"class_weights": torch.empty(V, device="meta", requires_grad=True),
                                         "reduction": "mean"}),
        "dense focal": (xent.softmax_cross_entropy, z, soft, {"focal_gamma": 2.0, "reduction": "mean"}),
        "dense smoothing": (xent.softmax_cross_entropy, z, soft, {"label_smoothing": 0.1, "reduction": "mean"}),
        "categorical focal": (xent.categorical_cross_entropy, z, soft, {"focal_gamma": 2.0, "reduction": "mean"}),
        "sparse categorical": (xent.sparse_categorical_cross_entropy, z, ids, {"reduction": "mean"}),
        "kl": (xent.kl_divergence, z, soft, {"reduction": "mean"}),
        "js": (xent.js_divergence, z, soft, {"beta": 0.3, "reduction": "mean"}),
        "binary focal": (xent.binary_cross_entropy, z, soft, {"focal_gamma": 2.0, "reduction": "mean"}),
        "sigmoid focal": (xent.sigmoid_cross_entropy, z, soft,
                          {"focal_gamma": 2.0, "pos_weight": torch.empty(V, device="meta", requires_grad=True),
                           "reduction": "mean"}),
    }


#: the elementwise losses' own per-entry float32 loss (4 bytes a value, from
#: ``Backend.rows_in_chunks``; their reduction follows it) is the one
#: logits-sized float32 tensor they make: its allocation and the views of it.
ELEMENTWISE = ("binary focal", "sigmoid focal")


META_CASES = ["sparse", "sparse ignore_index", "sparse none", "sparse options", "dense", "sigmoid", "sparse focal",
              "sparse poly", "sparse class weights learnt", "dense focal", "dense smoothing", "categorical focal",
              "sparse categorical", "kl", "js", "binary focal", "sigmoid focal"]


@pytest.mark.parametrize("case", META_CASES)
@pytest.mark.parametrize("dtype", HALF)
def test_half_logits_on_meta_make_no_float32_logits_sized_tensor(case, dtype):
    torch = torch_or_skip()
    import torch.nn.functional as F

    t = getattr(torch, dtype)
    loss, z, y, options = _meta_calls(torch, t)[case]
    z = z.requires_grad_(True)
    if y.is_floating_point():
        y = y.requires_grad_(True)

    def step() -> None:
        out = loss(z, y, **options)
        (out.sum() if out.ndim else out).backward()

    made = _float32_logits_sized(step, N * V)
    if case in ELEMENTWISE:
        assert [op for op, _ in made if op not in ("aten.expand.default", "aten.view.default")] == [
            "aten.new_empty.default"], made
    else:
        assert made == []
    # torch's own loss makes none either (its half kernels compute in float32
    # inside the kernel), and the detector sees the general path's float32
    # copy, which the chunked kernels replace:
    if case == "sparse":
        native = _float32_logits_sized(lambda: F.cross_entropy(z, y).backward(), N * V)
        assert native == []
        from xent.backends.torch import fused

        real = fused._on_device
        fused._on_device = lambda *args, **kwargs: False  # type: ignore[assignment]
        try:
            assert _float32_logits_sized(step, N * V)
        finally:
            fused._on_device = real  # type: ignore[assignment]


def test_linear_weight_gradient_multiplies_half_operands_into_float32_on_meta():
    # With several chunks, the weight gradient accumulates in float32; where
    # torch has a half GEMM with a float32 output (CUDA; meta has its shape
    # rules), that GEMM takes the half g and h: no float32 GEMM of upcast
    # copies. On the CPU, which has none, the float32 GEMM stays.
    torch = torch_or_skip()
    from torch.utils._python_dispatch import TorchDispatchMode

    n, d, v = 4096, 256, 32768  # (tokens·V = 2^27: several chunks)
    h = torch.empty(n, d, dtype=torch.bfloat16, device="meta", requires_grad=True)
    w = torch.empty(v, d, dtype=torch.bfloat16, device="meta", requires_grad=True)
    y = torch.empty(n, dtype=torch.int64, device="meta")

    class Products(TorchDispatchMode):
        seen: list[tuple[str, torch.dtype, torch.dtype]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
                mats = [a for a in args if isinstance(a, torch.Tensor)][-2:]
                Products.seen.append((str(func), mats[0].dtype, out.dtype))
            return out

    from xent.backends.torch.linear import half_gemm_to_float32

    assert half_gemm_to_float32(w)  # (its one probe, outside the recorder)
    with Products():
        xent.linear_cross_entropy(h, w, y, chunk_size=1024, reduction="mean").backward()
    weight_products = [p for p in Products.seen if p[2] == torch.float32]
    assert w.grad.dtype == torch.bfloat16 and len(weight_products) == 4, Products.seen
    assert all(op.startswith(("aten.mm.dtype", "aten.addmm.dtype")) and a == torch.bfloat16
               for op, a, _ in weight_products), weight_products


@pytest.mark.parametrize("case", list(row_calls(None)))
@pytest.mark.parametrize("dtype", HALF)
def test_general_formulas_on_device_are_chunked_exact_and_read_nothing(device_mode, case, dtype):
    # Every loss without a kernel of its own (focal, PolyLoss, probabilities,
    # divergences, learnt class weights and pos_weight) off the CPU: the
    # general path's formulas chunk by chunk (5 chunks, the last one short),
    # against the same inputs in float32 taking the whole-array path (the
    # probability losses' clip bounds are the compute dtype's, so float32, not
    # float64), values and the gradients of every input that takes one.
    torch = torch_or_skip()
    calls = device_mode("chunked_rows", 64 * 256)
    n, v = 300, 256
    inputs = row_inputs(n, v)
    half = row_tensors(torch, inputs, getattr(torch, dtype))
    wide = row_tensors(torch, inputs, getattr(torch, dtype), whole=True)
    reads = _host_reads(lambda: row_calls(half.__getitem__)[case]())
    out = row_calls(half.__getitem__)[case]()
    want = row_calls(wide.__getitem__)[case]()
    assert reads == 0 and len(calls) == 2 and out.dtype == getattr(torch, dtype)
    assert_close(out, want.detach().numpy(), num_classes=v)
    assert _host_reads(lambda: (out.sum() if out.ndim else out).backward()) == 0
    (want.sum() if want.ndim else want).backward()
    learnt = [name for name, t in half.items() if t.requires_grad and t.grad is not None]
    assert "z" in learnt or "probs" in learnt or "unit" in learnt
    for name in learnt:
        assert half[name].grad.dtype == half[name].dtype, name
        # (rounded as xent rounds the float32 gradient: a float16 one may overflow)
        expected = wide[name].grad.to(half[name].dtype).double().numpy()
        assert_close(half[name].grad, expected, num_classes=v, reduced=n)


def test_general_formulas_on_device_second_order(device_mode):
    # A recorded backward pass (create_graph=True) through the chunked general
    # formulas: the whole-array formulas, differentiable (an HVP).
    torch = torch_or_skip()
    calls = device_mode("chunked_rows", 64 * 256)
    inputs = row_inputs(300, 256)
    half, wide = row_tensors(torch, inputs, torch.bfloat16), row_tensors(torch, inputs, torch.bfloat16, True)
    grads = []
    for tensors in (half, wide):
        out = xent.softmax_cross_entropy(tensors["z"], tensors["soft"], focal_gamma=2.0, reduction="mean")
        (g,) = torch.autograd.grad(out, tensors["z"], create_graph=True)
        (hvp,) = torch.autograd.grad((g.float() ** 2).sum(), tensors["z"])
        grads.append((g, hvp))
    assert len(calls) == 1 and grads[0][0].requires_grad
    assert_close(grads[0][0], grads[1][0].detach().numpy(), num_classes=256, reduced=300)
    assert_close(grads[0][1], grads[1][1].numpy(), num_classes=256, reduced=300)
