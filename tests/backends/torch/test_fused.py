"""torch's fused rung: one native call where its semantics are exactly xent's:
values against the float64 reference, xent's own errors, and nothing the
native kernel does differently (its default ignore_index, its bfloat16
rounding, NaN for an all-ignored mean) leaking through."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import BIN, REDUCTIONS, SOFT, Y, Z, bf16_ulps, torch_or_skip, zero_weight_at_minus_inf
from xent.testing import assert_close


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_torch_fused_matches_reference(dtype, reduction):
    torch = torch_or_skip()
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
    torch = torch_or_skip()
    z = torch.from_numpy(Z).bfloat16()
    want = ref.sparse(z.double().numpy(), Y)
    got = xent.sparse_softmax_cross_entropy(z, torch.from_numpy(Y)).double().numpy()
    assert bf16_ulps(got, want) <= 0.5 + 1e-9


def test_torch_fused_does_not_ignore_torchs_default_ignore_index():
    torch = torch_or_skip()
    y = torch.from_numpy(Y).clone()
    y[3] = -100  # F.cross_entropy's default ignore_index
    with pytest.raises(ValueError, match=r"out-of-range label values: -100"):
        xent.sparse_softmax_cross_entropy(torch.from_numpy(Z), y, reduction="mean")


@pytest.mark.parametrize("labels, message", [(7, "out-of-range label values: 7"), (-1, "-1")])
def test_torch_fused_bad_labels_raise_xents_error(labels, message):
    torch = torch_or_skip()
    y = torch.from_numpy(Y).clone()
    y[0] = labels
    with pytest.raises(ValueError, match=message):
        xent.sparse_softmax_cross_entropy(torch.from_numpy(Z), y)


def test_torch_fused_envelope():
    torch = torch_or_skip()
    be = xent.get_backend("torch")
    z, y = torch.from_numpy(Z), torch.from_numpy(Y)
    assert be.fused_sparse(z, y, **dict(axis=1, reduction="mean", ignore_index=None)) is not None
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="sum", ignore_index=-100)) is not None
    # Outside the envelope the general path runs:
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=3)) is not None  # some kept
    everything = torch.full_like(y, 3)  # all ignored: torch's mean is NaN, xent's 0
    assert be.fused_sparse(z, everything, **dict(axis=-1, reduction="mean", ignore_index=3)) is None
    assert be.fused_sparse(z[:0], y[:0], **dict(axis=-1, reduction="mean", ignore_index=None)) is None  # empty mean
    assert be.fused_sparse(z, y.int(), **dict(axis=-1, reduction="none", ignore_index=None)) is None  # not int64
    assert be.fused_sparse(z, y, **dict(axis=0, reduction="none", ignore_index=None)) is None  # class axis first
    assert be.fused_sparse(z, y, **dict(axis=True, reduction="none", ignore_index=None)) is None  # a bool is not an axis
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="average", ignore_index=None)) is None  # unknown reduction


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_fast_paths_in_a_training_step_warn_nothing(reduction):
    # (torch warns when a tensor that requires grad is read as a Python number)
    torch = torch_or_skip()
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
    torch = torch_or_skip()
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
    torch = torch_or_skip()
    z = torch.from_numpy(Z).requires_grad_(True)
    y = torch.full((24,), 3)
    out = xent.sparse_softmax_cross_entropy(z, y, ignore_index=3, reduction="mean")
    out.backward()
    assert out.item() == 0.0 and not z.grad.abs().sum().item()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_torch_fused_dense_and_sigmoid_match_reference(dtype, reduction):
    torch = torch_or_skip()
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
    torch = torch_or_skip()
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


OPTION_SETS = {
    "smooth": {"label_smoothing": 0.1},
    "ignore+smooth": {"ignore_index": -100, "label_smoothing": 0.2},
    "class_weights": {"class_weights": True},
    "all": {"ignore_index": -100, "label_smoothing": 0.1, "class_weights": True},
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("option", list(OPTION_SETS))
def test_torch_fused_with_smoothing_and_class_weights(option, dtype, reduction):
    """F.cross_entropy's label_smoothing and weight are xent's formula and
    weighted mean: the hook answers, and equals the float64 reference."""
    torch = torch_or_skip()
    opts = dict(OPTION_SETS[option])
    be = xent.get_backend("torch")
    rng = np.random.default_rng(3)
    z = torch.from_numpy(Z).to(getattr(torch, dtype))
    y = Y.copy()
    if "ignore_index" in opts:
        y[::3] = -100
    cw = rng.uniform(0.5, 2.0, size=Z.shape[1]) if opts.pop("class_weights", False) else None
    out = be.fused_sparse(z, torch.from_numpy(y), axis=-1, reduction=reduction, ignore_index=opts.get("ignore_index"),
                          label_smoothing=opts.get("label_smoothing", 0.0),
                          class_weights=None if cw is None else torch.from_numpy(cw).float())
    assert out is not None and out.dtype == z.dtype
    want = ref.sparse(z.double().numpy(), y, ignore_index=opts.get("ignore_index"),
                      alpha=opts.get("label_smoothing", 0.0), cw=None if cw is None else np.float32(cw),
                      reduction=reduction)
    assert_close(out, want, num_classes=Z.shape[1], reduced=1 if reduction == "none" else len(y))


def test_torch_fused_options_decline_outside_the_envelope():
    torch = torch_or_skip()
    be = xent.get_backend("torch")
    z, y = torch.from_numpy(Z), torch.from_numpy(Y)
    c = Z.shape[1]
    w = torch.linspace(0.5, 2.0, c, dtype=z.dtype)

    def hook(**kw):  # type: ignore[no-untyped-def]
        args = {"axis": -1, "reduction": "mean", "ignore_index": None, "label_smoothing": 0.1, "class_weights": w}
        args.update(kw)
        return be.fused_sparse(z, y, **args)

    assert hook() is not None
    assert hook(class_weights=w.numpy()) is None  # NumPy: the general path moves it
    assert hook(class_weights=w.clone().requires_grad_(True)) is None  # torch's kernel has no weight gradient
    assert hook(class_weights=torch.cat([w[:-1], w.new_zeros(1)])) is None  # 0·inf under smoothing
    assert hook(class_weights=w[:-1]) is None  # the general path names the shape
    assert hook(label_smoothing=1.0) is None and hook(label_smoothing="0.1") is None  # the general path raises
    assert hook(ignore_index=int(Y[0]), class_weights=None) is not None  # some kept: a mean
    everything = torch.full_like(y, 7)
    assert be.fused_sparse(z, everything, axis=-1, reduction="mean", ignore_index=7, label_smoothing=0.1,
                           class_weights=None) is None  # all ignored: NaN there, 0 in xent
    got = xent.sparse_softmax_cross_entropy(z, everything, ignore_index=7, label_smoothing=0.1, reduction="mean")
    assert float(got) == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("option", ["weights", *OPTION_SETS])
def test_torch_fused_with_sample_weights(option, dtype, reduction):
    """Sample weights on the fused rung: F.cross_entropy's per-entry losses
    times the weights, xent's mean over the kept entries' total weight. The
    hook answers; values, the logits' and the weights' gradients equal the
    float64 formula (``∂ mean / ∂ w_i = (a_i - mean·b_i) / Σ w·b`` with
    ``a_i`` the entry's weighted loss and ``b_i`` its class weight and mask)."""
    torch = torch_or_skip()
    opts = {} if option == "weights" else dict(OPTION_SETS[option])
    be = xent.get_backend("torch")
    rng = np.random.default_rng(4)
    z = torch.from_numpy(Z).to(getattr(torch, dtype)).requires_grad_(True)
    y = Y.copy()
    ignore = opts.get("ignore_index")
    if ignore is not None:
        y[::3] = ignore
    alpha = opts.get("label_smoothing", 0.0)
    cw = np.float32(rng.uniform(0.5, 2.0, size=Z.shape[1])) if opts.get("class_weights") else None
    wr = rng.uniform(0.0, 2.0, size=len(y))
    compute = torch.float64 if dtype == "float64" else torch.float32
    w = torch.from_numpy(wr).to(compute).requires_grad_(True)
    out = be.fused_sparse(z, torch.from_numpy(y), axis=-1, reduction=reduction, ignore_index=ignore,
                          label_smoothing=alpha, class_weights=None if cw is None else torch.from_numpy(cw),
                          weights=w)
    assert out is not None and out.dtype == z.dtype
    zr = z.detach().double().numpy()
    wr = w.detach().double().numpy()
    kw = {"ignore_index": ignore, "alpha": alpha, "cw": cw}
    assert_close(out, ref.sparse(zr, y, w=wr, reduction=reduction, **kw), num_classes=Z.shape[1],
                 reduced=1 if reduction == "none" else len(y))
    (out.sum() if reduction == "none" else out).backward()
    total = "sum" if reduction == "none" else reduction
    assert_close(z.grad, ref.sparse_grad(zr, y, w=wr, reduction=total, **kw), num_classes=Z.shape[1])
    rows = ref.sparse(zr, y, **kw)  # a_i / w_i: each entry's loss, class weight and mask included
    keep = np.ones(len(y), bool) if ignore is None else y != ignore
    b = np.where(keep, 1.0 if cw is None else np.float64(cw)[np.where(keep, y, 0)], 0.0)
    if total == "sum":
        want = rows
    else:
        mean = (wr * rows).sum() / (wr * b).sum()
        want = (rows - mean * b) / (wr * b).sum()
    assert_close(w.grad, want, num_classes=Z.shape[1], reduced=len(y) if total == "mean" else 1)


def test_torch_fused_sample_weights_decline_where_the_result_is_not_xents():
    # A zero total weight (xent: 0) and a zero weight under an infinite loss
    # (xent weighs it 0, a product NaN) are the general path's; so are
    # weights that are not a CPU float tensor of the labels' shape.
    torch = torch_or_skip()
    be = xent.get_backend("torch")
    z, y = torch.from_numpy(Z), torch.from_numpy(Y)
    w = torch.linspace(0.5, 2.0, len(Y), dtype=z.dtype)

    def hook(reduction="mean", logits=z, **kw):  # type: ignore[no-untyped-def]
        args = {"axis": -1, "reduction": reduction, "ignore_index": None, "weights": w}
        args.update(kw)
        return be.fused_sparse(logits, y, **args)

    assert hook() is not None
    assert hook(weights=w.numpy()) is None and hook(weights=w[:-1]) is None and hook(weights=w[None]) is None
    assert hook(weights=torch.zeros_like(w)) is None
    assert float(xent.sparse_softmax_cross_entropy(z, y, weights=torch.zeros_like(w), reduction="mean")) == 0.0
    inf = z.clone()
    inf[0, int(Y[0])] = -np.inf  # entry 0's loss is inf
    zero_first = w.clone()
    zero_first[0] = 0.0
    assert hook(logits=inf, weights=zero_first, reduction="none") is None
    got = xent.sparse_softmax_cross_entropy(inf, y, weights=zero_first, reduction="none")
    assert got[0].item() == 0.0 and np.isfinite(got.numpy()).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_fused_zero_class_weight_under_an_infinite_loss_counts_zero(reduction):
    # torch's kernel forms 0·inf = NaN for an entry whose label logit is -inf
    # under a zero class weight; xent weighs it 0 (Backend.weigh), for every
    # reduction. Against the float64 formula over the other entries.
    torch = torch_or_skip()
    z, cw, want = zero_weight_at_minus_inf(reduction)
    t = torch.from_numpy(z).requires_grad_(True)
    out = xent.sparse_softmax_cross_entropy(t, torch.from_numpy(Y), class_weights=torch.from_numpy(cw),
                                            reduction=reduction)
    assert_close(out, want, num_classes=Z.shape[1], reduced=1 if reduction == "none" else len(Y))
    (out.sum() if reduction == "none" else out).backward()
    assert bool(torch.isfinite(t.grad).all())
