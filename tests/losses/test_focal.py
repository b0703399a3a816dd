"""Focal loss and PolyLoss (``focal_gamma``, ``focal_alpha``, ``poly_epsilon``) on
every loss, backend and dtype, against float64 formulas written here from the
papers' definitions: values, gradients (finite differences of the float64
formula, and closed forms at saturated and infinite logits), the compilers,
and the peers' own definitions where they agree (optax, Keras, torchvision's
formula)."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests.helpers import SHAPES, assert_matches, loss_shape, rounded, soft_labels
from xent.testing._reference import log_softmax, sigmoid, softplus

DTYPES = ["float16", "bfloat16", "float32", "float64"]
REDUCTIONS = ["none", "sum", "mean"]


# ----------------------------------------------------------------- references
def _phi(logp, gamma, eps):
    """(1 - p)^γ·(-log p + ε·(1 - p)) per class, float64, from log p."""
    u = -np.expm1(logp)
    return u**gamma * (-logp + eps * u)


def _reduce(per, w, reduction):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / w.sum() if w.sum() else 0.0 * per.sum()


def ref_sparse(z, y, axis, *, gamma=0.0, eps=0.0, alpha=0.0, cw=None, w=None, ignore_index=None, z_loss=0.0,
               cap=None, reduction="none"):
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    if cap is not None:
        z = cap * np.tanh(z / cap)
    c = z.shape[-1]
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    cw = np.ones(c) if cw is None else np.asarray(cw, np.float64)
    a = (1 - alpha) * cw[ys][..., None] * np.eye(c)[ys] + (alpha / c) * cw
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    per = (a * _phi(log_softmax(z), gamma, eps)).sum(-1) + z_loss * lse**2
    sw = np.ones(y.shape) if w is None else np.broadcast_to(w, y.shape)
    per = np.where(keep, per * sw, 0.0)
    return _reduce(per, np.where(keep, sw * cw[ys], 0.0), reduction)


def ref_dense(z, y, axis, *, gamma=0.0, eps=0.0, alpha=0.0, w=None, reduction="none"):
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    y = y * (1 - alpha) + alpha / z.shape[-1]
    per = (y * _phi(log_softmax(z), gamma, eps)).sum(-1)
    sw = np.ones(per.shape) if w is None else np.broadcast_to(w, per.shape)
    return _reduce(per * sw, sw, reduction)


def ref_sigmoid(z, y, *, gamma=0.0, balance=None, pw=None, alpha=0.0, w=None, reduction="none"):
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    y = y * (1 - alpha) + alpha / 2
    pw = 1.0 if pw is None else pw
    bce = pw * y * softplus(-z) + (1 - y) * softplus(z)
    p = sigmoid(z)
    per = bce * (y * (1 - p) + (1 - y) * p) ** gamma
    if balance is not None:
        per = per * (balance * y + (1 - balance) * (1 - y))
    sw = np.ones(per.shape) if w is None else np.broadcast_to(w, per.shape)
    return _reduce(per * sw, sw, reduction)


def ref_categorical(p, y, axis, *, gamma, eps=1e-7, alpha=0.0, dtype="float64", reduction="none"):
    p = np.moveaxis(np.asarray(p, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    y = y * (1 - alpha) + alpha / p.shape[-1]
    lo, hi = _bounds(eps, dtype)
    q = np.clip(p / p.sum(-1, keepdims=True), lo, hi)
    per = -(y * (1 - q) ** gamma * np.log(q)).sum(-1)
    return _reduce(per, np.ones(per.shape), reduction)


def ref_sparse_categorical(p, y, axis, *, gamma, eps=1e-7, dtype="float64", reduction="none"):
    p = np.moveaxis(np.asarray(p, np.float64), axis, -1)
    lo, hi = _bounds(eps, dtype)
    q = np.clip(p, lo, hi)
    qy = np.take_along_axis(q, y[..., None], -1)[..., 0] / q.sum(-1)
    per = (1 - qy) ** gamma * -np.log(qy)
    return _reduce(per, np.ones(per.shape), reduction)


def ref_binary(p, y, *, gamma, balance=None, eps=1e-7, alpha=0.0, dtype="float64", reduction="none"):
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    y = y * (1 - alpha) + alpha / 2
    lo, hi = _bounds(eps, dtype)
    q = np.clip(p, lo, hi)
    per = -(y * np.log(q) + (1 - y) * np.log1p(-q)) * (y * (1 - p) + (1 - y) * p) ** gamma
    if balance is not None:
        per = per * (balance * y + (1 - balance) * (1 - y))
    return _reduce(per, np.ones(per.shape), reduction)


def _bounds(eps, dtype):
    from tests.reference import _clip_bounds

    return _clip_bounds(eps, dtype)


def _fd_grad(f, x, h=1e-6):
    """Central finite differences of the scalar float64 function ``f`` at ``x``."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


# ------------------------------------------------------------------- values
SPARSE = {
    "focal": {"gamma": 2.0},
    "focal-half": {"gamma": 0.5},
    "poly": {"eps": 1.0},
    "poly-neg": {"eps": -1.0},
    "focal+poly": {"gamma": 2.0, "eps": 2.0},
    "focal+ignore+cw+w": {"gamma": 1.5, "ignore_index": -100, "cw": True, "w": True},
    "focal+smooth+cw": {"gamma": 2.0, "alpha": 0.1, "cw": True},
    "poly+smooth": {"eps": 1.0, "alpha": 0.2},
    "focal+zloss+cap": {"gamma": 2.0, "z_loss": 1e-3, "cap": 4.0},
}


def _sparse_kwargs(fw, opts, rng, c, lshape, dtype):  # type: ignore[no-untyped-def]
    kwargs, ref_kwargs = {}, {}
    for ours, theirs in (("focal_gamma", "gamma"), ("poly_epsilon", "eps"), ("label_smoothing", "alpha"),
                         ("ignore_index", "ignore_index"), ("z_loss", "z_loss"), ("logit_softcap", "cap")):
        if theirs in opts:
            kwargs[ours] = ref_kwargs[theirs] = opts[theirs]
    if opts.get("cw"):
        cw = rng.uniform(0.5, 2.0, size=c)
        kwargs["class_weights"], ref_kwargs["cw"] = fw.asarray(cw, "float32"), rounded(cw, "float32")
    if opts.get("w"):
        w = rng.uniform(0.0, 2.0, size=lshape)
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w, dtype), rounded(w, dtype)
    return kwargs, ref_kwargs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(SPARSE))
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_sparse_focal_and_poly(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(abs(hash((option, shape))) % 2**32)
    opts = SPARSE[option]
    c, lshape = shape[axis], loss_shape(shape, axis)
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rng.integers(0, c, size=lshape)
    if "ignore_index" in opts:
        y.flat[::3] = opts["ignore_index"]
    kwargs, ref_kwargs = _sparse_kwargs(fw, opts, rng, c, lshape, dtype)
    got = xent.sparse_softmax_cross_entropy(fw.asarray(z, dtype), fw.asarray(y), axis=axis, reduction=reduction,
                                            **kwargs)
    want = ref_sparse(z, y, axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, c, 1 if reduction == "none" else y.size)


DENSE = {"focal": {"gamma": 2.0}, "focal-half": {"gamma": 0.5}, "poly": {"eps": 2.0},
         "focal+poly+smooth": {"gamma": 1.0, "eps": -1.0, "alpha": 0.1}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(DENSE))
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_dense_focal_and_poly(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    opts = DENSE[option]
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rounded(soft_labels(rng, shape, axis), dtype)
    y.flat[::4] = 0.0  # zeros: under a -inf logit too
    z.flat[::8] = -np.inf
    got = xent.softmax_cross_entropy(fw.asarray(z, dtype), fw.asarray(y, dtype), axis=axis, reduction=reduction,
                                     focal_gamma=opts.get("gamma", 0.0), poly_epsilon=opts.get("eps", 0.0),
                                     label_smoothing=opts.get("alpha", 0.0))
    want = ref_dense(z, y, axis, reduction=reduction, **opts)
    if not np.all(np.isfinite(want)):  # smoothing puts weight on the -inf logits: inf, as the plain loss
        np.testing.assert_array_equal(np.isinf(fw.to_numpy(got)), np.isinf(want))
        return
    assert_matches(fw, got, want, dtype, shape[axis], 1 if reduction == "none" else int(np.prod(loss_shape(shape, axis))))


SIGMOID = {"focal": {"gamma": 2.0, "balance": 0.25}, "focal-half": {"gamma": 0.5},
           "alpha-only": {"balance": 0.75}, "focal+pw+smooth": {"gamma": 2.0, "pw": True, "alpha": 0.1}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(SIGMOID))
@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
def test_sigmoid_focal(fw, dtype, reduction, option, hard):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    opts = dict(SIGMOID[option])
    z = rounded(rng.normal(size=(4, 6)) * 4, dtype)
    y = rng.integers(0, 2, size=z.shape).astype(float) if hard else rounded(rng.random(z.shape), dtype)
    kwargs = {"focal_gamma": opts.get("gamma", 0.0), "focal_alpha": opts.get("balance"),
              "label_smoothing": opts.get("alpha", 0.0)}
    if opts.pop("pw", False):
        pw = rng.uniform(0.5, 2.0, size=6)
        kwargs["pos_weight"], opts["pw"] = fw.asarray(pw, "float32"), rounded(pw, "float32")
    got = xent.sigmoid_cross_entropy(fw.asarray(z, dtype), fw.asarray(y, dtype), reduction=reduction, **kwargs)
    want = ref_sigmoid(z, y, reduction=reduction, **opts)
    assert_matches(fw, got, want, dtype, 2, 1 if reduction == "none" else z.size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("shape,axis", SHAPES[:2])
def test_probability_losses_focal(fw, dtype, gamma, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    p = rng.random(shape) + 0.01
    p = rounded(p / p.sum(axis=axis, keepdims=True), dtype)
    y = rounded(soft_labels(rng, shape, axis), dtype)
    ids = rng.integers(0, shape[axis], size=loss_shape(shape, axis))
    got = xent.categorical_cross_entropy(fw.asarray(p, dtype), fw.asarray(y, dtype), axis=axis, focal_gamma=gamma,
                                         label_smoothing=0.1)
    assert_matches(fw, got, ref_categorical(p, y, axis, gamma=gamma, alpha=0.1, dtype=dtype), dtype, shape[axis])
    got = xent.sparse_categorical_cross_entropy(fw.asarray(p, dtype), fw.asarray(ids), axis=axis, focal_gamma=gamma)
    assert_matches(fw, got, ref_sparse_categorical(p, ids, axis, gamma=gamma, dtype=dtype), dtype, shape[axis])
    b = rounded(rng.random(shape), dtype)
    b.flat[::5] = 0.0
    b.flat[1::5] = 1.0  # probabilities at the clip
    hard = (rng.random(shape) < 0.5).astype(float)
    got = xent.binary_cross_entropy(fw.asarray(b, dtype), fw.asarray(hard, dtype), focal_gamma=gamma,
                                    focal_alpha=0.25)
    assert_matches(fw, got, ref_binary(b, hard, gamma=gamma, balance=0.25, dtype=dtype), dtype, 2)


# ---------------------------------------------------------------- gradients
def _grad_case(fw, name, rng):  # type: ignore[no-untyped-def]
    """(xent loss of its float64 inputs, float64 reference of the same, inputs) for one loss."""
    shape, axis = (3, 5), -1
    z = rng.normal(size=shape) * 2
    if name == "sparse":
        y = rng.integers(0, 5, size=3)
        cw = rng.uniform(0.5, 2, size=5)
        opts = {"focal_gamma": 0.5, "poly_epsilon": 1.0, "label_smoothing": 0.1}
        def ours(a):  # type: ignore[no-untyped-def]
            return xent.sparse_softmax_cross_entropy(a, fw.asarray(y), class_weights=fw.asarray(cw, "float64"),
                                                     reduction="mean", **opts)
        def theirs(a):  # type: ignore[no-untyped-def]
            return ref_sparse(a, y, axis, gamma=0.5, eps=1.0, alpha=0.1, cw=cw, reduction="mean")
        return ours, theirs, z
    if name == "dense":
        y = soft_labels(rng, shape, axis)
        def ours(a):  # type: ignore[no-untyped-def]
            return xent.softmax_cross_entropy(a, fw.asarray(y, "float64"), focal_gamma=2.0, poly_epsilon=-1.0,
                                              reduction="sum")
        def theirs(a):  # type: ignore[no-untyped-def]
            return ref_dense(a, y, axis, gamma=2.0, eps=-1.0, reduction="sum")
        return ours, theirs, z
    y = rng.random(shape)
    y.flat[::2] = 1.0
    y.flat[1::4] = 0.0
    def ours(a):  # type: ignore[no-untyped-def]
        return xent.sigmoid_cross_entropy(a, fw.asarray(y, "float64"), focal_gamma=0.5, focal_alpha=0.25,
                                          reduction="sum")
    def theirs(a):  # type: ignore[no-untyped-def]
        return ref_sigmoid(a, y, gamma=0.5, balance=0.25, reduction="sum")
    return ours, theirs, z


@pytest.mark.parametrize("name", ["sparse", "dense", "sigmoid"])
def test_gradients_match_finite_differences(autodiff_fw, name):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    ours, theirs, z = _grad_case(fw, name, np.random.default_rng(6))
    (g,) = fw.grad(ours, [fw.asarray(z, "float64")])
    np.testing.assert_allclose(np.asarray(g, np.float64), _fd_grad(theirs, z), rtol=1e-6, atol=1e-8)


def test_sigmoid_focal_label_gradients(autodiff_fw):  # type: ignore[no-untyped-def]
    """Labels get the focal factor's derivative too, hard labels included."""
    fw = autodiff_fw
    rng = np.random.default_rng(8)
    z = rng.normal(size=(2, 6)) * 3
    y = rng.random(z.shape)
    y.flat[::3] = 1.0
    y.flat[1::3] = 0.0
    (g,) = fw.grad(lambda b: xent.sigmoid_cross_entropy(fw.asarray(z, "float64"), b, focal_gamma=2.0,
                                                        reduction="sum"), [fw.asarray(y, "float64")])
    want = _fd_grad(lambda b: ref_sigmoid(z, b, gamma=2.0, reduction="sum"), y)
    np.testing.assert_allclose(np.asarray(g, np.float64), want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_sigmoid_focal_gradient_at_zero_logits(autodiff_fw, gamma):  # type: ignore[no-untyped-def]
    """At ``z = 0``, where ``log(1 - p_t)`` switches between its two sides'
    formulas, the gradient is the smooth function's (not a one-sided or
    zero derivative of ``|z|``), for hard and soft labels."""
    fw = autodiff_fw
    z = np.array([[0.0, 0.0, 0.0, 1e-3, -1e-3, 0.0]])
    y = np.array([[1.0, 0.0, 0.3, 1.0, 0.0, 0.8]])
    (g,) = fw.grad(lambda a: xent.sigmoid_cross_entropy(a, fw.asarray(y, "float64"), focal_gamma=gamma,
                                                        reduction="sum"), [fw.asarray(z, "float64")])
    want = _fd_grad(lambda a: ref_sigmoid(a, y, gamma=gamma, reduction="sum"), z)
    np.testing.assert_allclose(np.asarray(g, np.float64), want, rtol=1e-6, atol=1e-8)


# ------------------------------------------- saturated and infinite logits
EXTREMES = np.array([30.0, -30.0, 1e4, -1e4, np.inf, -np.inf])


def _sparse_closed_form(z, y, gamma):
    """Loss and logit gradient of the sparse focal loss, float64, in closed form:
    d/dz = φ'(ce)·(softmax - onehot) with φ'(ce) = u^γ + γ·u^γ·(1-u)·ce/u."""
    logp = log_softmax(np.asarray(z, np.float64))
    ce = -logp[np.arange(len(y)), y]
    u = -np.expm1(-ce)
    ratio = np.where(ce > 0, ce / np.where(u > 0, u, 1.0), 1.0)  # ce/u -> 1 as ce -> 0
    with np.errstate(invalid="ignore"):
        slope = u**gamma + gamma * u**gamma * np.where(np.isinf(ce), 0.0, np.exp(-ce) * ratio)
    grad = slope[:, None] * (np.exp(logp) - np.eye(z.shape[-1])[y])
    return u**gamma * ce, grad


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sparse_focal_is_finite_at_saturated_logits(autodiff_fw, gamma):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rows, labels = [], []
    for v in EXTREMES[np.isfinite(EXTREMES) | (EXTREMES < 0)]:  # (+inf logits: NaN for any softmax)
        for label in (0, 1):
            rows.append([v, 0.0, -1.0])
            labels.append(label)
    z, y = np.array(rows), np.array(labels)
    loss = xent.sparse_softmax_cross_entropy(fw.asarray(z, "float32"), fw.asarray(y), focal_gamma=gamma)
    (g,) = fw.grad(lambda a: xent.sparse_softmax_cross_entropy(a, fw.asarray(y), focal_gamma=gamma, reduction="sum"),
                   [fw.asarray(z, "float32")])
    want_loss, want_grad = _sparse_closed_form(z, y, gamma)
    got = fw.to_numpy(loss).astype(np.float64)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want_loss))
    fin = np.isfinite(want_loss)
    np.testing.assert_allclose(got[fin], want_loss[fin], rtol=1e-5, atol=1e-6)
    g = np.asarray(g, np.float64)
    assert np.all(np.isfinite(g)), g
    np.testing.assert_allclose(g, want_grad, rtol=1e-5, atol=1e-6)


def _sigmoid_closed_form(z, y, gamma, balance):
    """Loss and gradient of the hard-label sigmoid focal loss, float64: for y = 1,
    u = σ(-z), ce = softplus(-z) and d/dz = -α_t·u^γ·(γ·(1-u)·ce + u); mirrored for y = 0."""
    s = np.where(y == 1, -z, z)  # the margin against the label
    u, ce = sigmoid(s), softplus(s)
    a_t = balance * y + (1 - balance) * (1 - y)
    with np.errstate(invalid="ignore"):
        tail = np.where(np.isinf(ce), 0.0, sigmoid(-s) * ce)  # (1-u)·ce -> 0 as ce -> inf
    grad = a_t * u**gamma * (gamma * tail + u) * np.where(y == 1, -1.0, 1.0)
    return a_t * u**gamma * ce, grad


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_is_finite_at_saturated_logits(autodiff_fw, gamma):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z = np.concatenate([EXTREMES, EXTREMES])
    y = np.repeat([1.0, 0.0], len(EXTREMES))
    loss = xent.sigmoid_cross_entropy(fw.asarray(z, "float32"), fw.asarray(y, "float32"), focal_gamma=gamma,
                                      focal_alpha=0.25)
    (g,) = fw.grad(lambda a: xent.sigmoid_cross_entropy(a, fw.asarray(y, "float32"), focal_gamma=gamma,
                                                        focal_alpha=0.25, reduction="sum"),
                   [fw.asarray(z, "float32")])
    want_loss, want_grad = _sigmoid_closed_form(z, y, gamma, 0.25)
    got = fw.to_numpy(loss).astype(np.float64)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want_loss))
    fin = np.isfinite(want_loss)
    np.testing.assert_allclose(got[fin], want_loss[fin], rtol=1e-5, atol=1e-6)
    g = np.asarray(g, np.float64)
    assert np.all(np.isfinite(g)), g
    np.testing.assert_allclose(g, want_grad, rtol=1e-5, atol=1e-6)


def test_torchvisions_formula_gives_nan_gradients_where_xent_does_not():  # type: ignore[no-untyped-def]
    """torchvision's sigmoid_focal_loss, as it computes it (``ce·(1 - p_t)^γ``
    with ``p_t`` from ``torch.sigmoid``): NaN gradients for γ < 1 once ``p_t``
    rounds to 1; xent's are finite and equal the closed form."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    def torchvision_formula(x, t, alpha=0.25, gamma=0.5):  # type: ignore[no-untyped-def]
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        return (alpha * t + (1 - alpha) * (1 - t)) * loss

    z = torch.tensor([20.0, 0.3, -2.0], requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0])
    torchvision_formula(z, t).sum().backward()
    assert torch.isnan(z.grad[0]), z.grad
    z2 = z.detach().clone().requires_grad_(True)
    xent.sigmoid_cross_entropy(z2, t, focal_gamma=0.5, focal_alpha=0.25, reduction="sum").backward()
    assert torch.all(torch.isfinite(z2.grad))
    want = _sigmoid_closed_form(z.detach().double().numpy(), t.double().numpy(), 0.5, 0.25)[1]
    np.testing.assert_allclose(z2.grad.double().numpy(), want, rtol=1e-5, atol=1e-7)
    # where both are finite they agree
    np.testing.assert_allclose(z.grad[1:].numpy(), z2.grad[1:].numpy(), rtol=1e-5)


# ----------------------------------------------------------------- compilers
@pytest.mark.parametrize("name", ["sparse", "dense", "sigmoid", "categorical", "sparse_categorical", "binary"])
def test_focal_under_the_compilers(autodiff_fw, name):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(9)
    z = rng.normal(size=(4, 5)).astype(np.float32)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    ids = fw.asarray(rng.integers(0, 5, size=4))
    soft = fw.asarray(soft_labels(rng, (4, 5), -1), "float32")
    binary = fw.asarray((rng.random((4, 5)) < 0.5).astype(np.float32), "float32")
    calls = {
        "sparse": lambda a: xent.sparse_softmax_cross_entropy(a, ids, focal_gamma=2.0, poly_epsilon=1.0,
                                                              label_smoothing=0.1, reduction="mean"),
        "dense": lambda a: xent.softmax_cross_entropy(a, soft, focal_gamma=2.0, poly_epsilon=1.0, reduction="mean"),
        "sigmoid": lambda a: xent.sigmoid_cross_entropy(a, binary, focal_gamma=0.5, focal_alpha=0.25,
                                                        reduction="mean"),
        "categorical": lambda a: xent.categorical_cross_entropy(a, soft, focal_gamma=2.0, reduction="mean"),
        "sparse_categorical": lambda a: xent.sparse_categorical_cross_entropy(a, ids, focal_gamma=2.0,
                                                                              reduction="mean"),
        "binary": lambda a: xent.binary_cross_entropy(a, binary, focal_gamma=2.0, focal_alpha=0.25,
                                                      reduction="mean"),
    }
    x = probs if name in ("categorical", "sparse_categorical") else (1 / (1 + np.exp(-z)) if name == "binary" else z)
    eager = fw.to_numpy(calls[name](fw.asarray(x, "float32")))
    compiled = fw.to_numpy(fw.compile(calls[name])(fw.asarray(x, "float32")))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------- peers
def test_optax_sigmoid_focal_and_poly_agree():  # type: ignore[no-untyped-def]
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(10)
    z = rng.normal(size=(6, 7)) * 3
    y = (rng.random(z.shape) < 0.4).astype(np.float64)
    for gamma in (0.0, 0.5, 2.0):
        for alpha in (None, 0.25):
            want = optax.losses.sigmoid_focal_loss(jnp.asarray(z, "float32"), jnp.asarray(y, "float32"), alpha=alpha,
                                            gamma=gamma)
            got = xent.sigmoid_cross_entropy(jnp.asarray(z, "float32"), jnp.asarray(y, "float32"),
                                             focal_gamma=gamma, focal_alpha=alpha)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-6)
    soft = soft_labels(rng, z.shape, -1)
    for eps in (-1.0, 1.0, 2.0):
        want = optax.losses.poly_loss_cross_entropy(jnp.asarray(z, "float32"), jnp.asarray(soft, "float32"), epsilon=eps)
        got = xent.softmax_cross_entropy(jnp.asarray(z, "float32"), jnp.asarray(soft, "float32"), poly_epsilon=eps)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-6)


def test_keras_focal_losses_agree_where_keras_does_not_clip():  # type: ignore[no-untyped-def]
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compared on Keras' TensorFlow backend")
    import tensorflow as tf

    rng = np.random.default_rng(11)
    z = rng.normal(size=(5, 4)).astype(np.float32)
    y = (rng.random(z.shape) < 0.5).astype(np.float32)
    probs = (1 / (1 + np.exp(-z))).astype(np.float32)
    for gamma in (0.5, 2.0):
        want = keras.losses.binary_focal_crossentropy(y, probs, gamma=gamma, apply_class_balancing=True, alpha=0.3,
                                                      axis=-1)
        per = xent.binary_cross_entropy(tf.constant(probs), tf.constant(y), focal_gamma=gamma, focal_alpha=0.3)
        np.testing.assert_allclose(np.mean(per.numpy(), -1), want.numpy(), rtol=1e-5)
        want = keras.losses.binary_focal_crossentropy(y, z, gamma=gamma, from_logits=True, axis=-1)
        per = xent.sigmoid_cross_entropy(tf.constant(z), tf.constant(y), focal_gamma=gamma)
        np.testing.assert_allclose(np.mean(per.numpy(), -1), want.numpy(), rtol=1e-5)
        soft = soft_labels(rng, z.shape, -1).astype(np.float32)
        sm = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        want = keras.losses.categorical_focal_crossentropy(soft, sm, gamma=gamma, alpha=1.0)
        got = xent.categorical_cross_entropy(tf.constant(sm), tf.constant(soft), focal_gamma=gamma)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)
        want = keras.losses.categorical_focal_crossentropy(soft, z, gamma=gamma, alpha=1.0, from_logits=True)
        got = xent.softmax_cross_entropy(tf.constant(z), tf.constant(soft), focal_gamma=gamma)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4)


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), None])
def test_bad_focal_gamma(bad):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="focal_gamma"):
        xent.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], focal_gamma=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_focal_alpha(bad):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="focal_alpha"):
        xent.sigmoid_cross_entropy(np.zeros(3), np.ones(3), focal_alpha=bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_bad_poly_epsilon(bad):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="poly_epsilon"):
        xent.softmax_cross_entropy(np.zeros((2, 3)), np.ones((2, 3)) / 3, poly_epsilon=bad)


def test_zero_gamma_and_epsilon_are_the_plain_loss_exactly():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    z = rng.normal(size=(4, 6))
    y = rng.integers(0, 6, size=4)
    np.testing.assert_array_equal(
        xent.sparse_softmax_cross_entropy(z, y, focal_gamma=0.0, poly_epsilon=0.0),
        xent.sparse_softmax_cross_entropy(z, y),
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_dense_focal_gradients_are_finite_at_saturated_logits(autodiff_fw, gamma):  # type: ignore[no-untyped-def]
    """Soft labels, each row's zero label under its -inf logit: finite gradients
    into logits and labels, equal to the float64 closed form where that is finite."""
    from xent.testing._reference import dense_terms

    fw = autodiff_fw
    z = np.array([[30.0, 0.0, -1.0], [1e4, 0.0, -1.0], [-1e4, 0.0, 2.0], [-np.inf, 0.0, 1.0], [-30.0, 0.0, 0.5]])
    y = np.array([[0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.5, 0.5], [0.1, 0.0, 0.9]])
    gz, gy = fw.grad(lambda a, b: xent.softmax_cross_entropy(a, b, focal_gamma=gamma, poly_epsilon=1.0,
                                                             reduction="sum"),
                     [fw.asarray(z, "float32"), fw.asarray(y, "float32")], argnums=(0, 1))
    gz, gy = np.asarray(gz, np.float64), np.asarray(gy, np.float64)
    assert np.all(np.isfinite(gz)), gz
    with np.errstate(all="ignore"):
        want = dense_terms(z, y, gamma=gamma, eps=1.0)
    fin = np.isfinite(want.dpred)
    np.testing.assert_allclose(gz[fin], want.dpred[fin], rtol=1e-4, atol=1e-5)
    fin = np.isfinite(want.dlabels)
    assert np.all(np.isfinite(gy[fin]))
    np.testing.assert_allclose(gy[fin], want.dlabels[fin], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_probability_focal_gradients_are_finite_at_0_and_1(autodiff_fw, gamma):  # type: ignore[no-untyped-def]
    """Probabilities of exactly 0 and 1 (where (1 - p_t)^γ has an infinite
    derivative for γ < 1): finite gradients for the binary and categorical losses."""
    fw = autodiff_fw
    p = np.array([0.0, 1.0, 0.5, 1.0, 0.0, 0.25])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    (g,) = fw.grad(lambda a: xent.binary_cross_entropy(a, fw.asarray(y, "float32"), focal_gamma=gamma,
                                                       focal_alpha=0.25, reduction="sum"), [fw.asarray(p, "float32")])
    assert np.all(np.isfinite(np.asarray(g))), g
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    onehot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    (g,) = fw.grad(lambda a: xent.categorical_cross_entropy(a, fw.asarray(onehot, "float32"), focal_gamma=gamma,
                                                            reduction="sum"), [fw.asarray(probs, "float32")])
    assert np.all(np.isfinite(np.asarray(g))), g


@pytest.mark.parametrize("name", ["sparse", "dense", "sigmoid"])
def test_focal_with_a_normalizer(fw, name):  # type: ignore[no-untyped-def]
    """The global-mean option composes: Σ sample weight × focal loss / normalizer."""
    rng = np.random.default_rng(13)
    z = rng.normal(size=(5, 4)) * 2
    w = rng.uniform(0.5, 1.5, size=5 if name != "sigmoid" else (5, 4))
    if name == "sparse":
        y = rng.integers(0, 4, size=5)
        y[1] = -100
        got = xent.sparse_softmax_cross_entropy(fw.asarray(z, "float64"), fw.asarray(y), ignore_index=-100,
                                                focal_gamma=2.0, poly_epsilon=1.0, weights=fw.asarray(w, "float64"),
                                                reduction="mean", normalizer=7.0)
        want = ref_sparse(z, y, -1, gamma=2.0, eps=1.0, ignore_index=-100, w=w, reduction="sum") / 7.0
    elif name == "dense":
        y = soft_labels(rng, z.shape, -1)
        got = xent.softmax_cross_entropy(fw.asarray(z, "float64"), fw.asarray(y, "float64"), focal_gamma=0.5,
                                         weights=fw.asarray(w, "float64"), reduction="mean", normalizer=7.0)
        want = ref_dense(z, y, -1, gamma=0.5, w=w, reduction="sum") / 7.0
    else:
        y = (rng.random(z.shape) < 0.5).astype(float)
        got = xent.sigmoid_cross_entropy(fw.asarray(z, "float64"), fw.asarray(y, "float64"), focal_gamma=2.0,
                                         focal_alpha=0.25, weights=fw.asarray(w, "float64"), reduction="mean",
                                         normalizer=7.0)
        want = ref_sigmoid(z, y, gamma=2.0, balance=0.25, w=w, reduction="sum") / 7.0
    assert_matches(fw, got, want, "float64", 4, z.size)
