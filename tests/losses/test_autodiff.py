"""Gradients through each framework's autodiff against float64 analytic gradients."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.helpers import SHAPES, assert_matches, loss_shape, rounded

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "options",
    [{}, {"ignore_index": 1}, {"alpha": 0.1}, {"cw": True}, {"cw": True, "alpha": 0.2, "ignore_index": 0, "w": True}],
    ids=["plain", "ignore", "smooth", "class_weights", "all"],
)
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_sparse_grad(autodiff_fw, dtype, reduction, options, shape, axis):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(1)
    c = shape[axis]
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rng.integers(0, c, size=loss_shape(shape, axis))
    kwargs, ref_kwargs = {}, {}
    if "ignore_index" in options:
        kwargs["ignore_index"] = ref_kwargs["ignore_index"] = options["ignore_index"]
    if "alpha" in options:
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = options["alpha"]
    if options.get("cw"):
        cw = rng.uniform(0.5, 2, size=c)
        kwargs["class_weights"], ref_kwargs["cw"] = fw.asarray(cw, dtype), cw
    if options.get("w"):
        w = rng.uniform(0, 2, size=loss_shape(shape, axis))
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w, dtype), w
    labels = fw.asarray(y)
    (g,) = fw.grad(lambda a: xent.sparse_softmax_cross_entropy(a, labels, axis=axis, reduction=reduction, **kwargs),
                   [fw.asarray(z, dtype)])
    want = ref.sparse_grad(z, y, axis=axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, fw.asarray(g, dtype), want, dtype, c, what="grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("alpha", [0.0, 0.1])
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_dense_grad_into_logits_and_labels(autodiff_fw, dtype, reduction, alpha, shape, axis):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(2)
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rounded(rng.random(shape), dtype)  # soft labels that need not sum to 1
    y.flat[::3] = 0.0  # exact zeros and ones: d/dy is -log p there too
    y.flat[1::5] = 1.0
    gz, gy = fw.grad(lambda a, b: xent.softmax_cross_entropy(a, b, axis=axis, label_smoothing=alpha, reduction=reduction),
                     [fw.asarray(z, dtype), fw.asarray(y, dtype)], argnums=(0, 1))
    want_z, want_y = ref.dense_grads(z, y, axis=axis, alpha=alpha, reduction=reduction)
    assert_matches(fw, fw.asarray(gz, dtype), want_z, dtype, shape[axis], what="grad logits")
    assert_matches(fw, fw.asarray(gy, dtype), want_y, dtype, shape[axis], what="grad labels")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"alpha": 0.1}, {"pos_weight": True}])
def test_sigmoid_grad(autodiff_fw, dtype, options):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(4)
    z = rounded(rng.normal(size=(5, 4)) * 4, dtype)
    z[0] = [0.0, -0.0, 30.0, -30.0]  # z = 0 exactly: a max/abs formula gets this gradient wrong
    y = rounded(rng.random((5, 4)), dtype)
    y[1] = [0.0, 1.0, 0.0, 1.0]  # hard labels: d/dy is finite and nonzero there
    kwargs, ref_kwargs = {}, {}
    if "alpha" in options:
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = options["alpha"]
    if options.get("pos_weight"):
        pw = rng.uniform(0.5, 3, size=4)
        kwargs["pos_weight"], ref_kwargs["pos_weight"] = fw.asarray(pw, dtype), pw
    gz, gy = fw.grad(lambda a, b: xent.sigmoid_cross_entropy(a, b, reduction="sum", **kwargs),
                     [fw.asarray(z, dtype), fw.asarray(y, dtype)], argnums=(0, 1))
    want_z, want_y = ref.sigmoid_grads(z, y, **ref_kwargs)
    assert_matches(fw, fw.asarray(gz, dtype), want_z, dtype, what="grad logits")
    assert_matches(fw, fw.asarray(gy, dtype), want_y, dtype, what="grad labels")


def _numeric_grad(f, x, h=1e-6):  # type: ignore[no-untyped-def]
    """Central differences of a float64 function: error O(h²) + O(eps/h) ≈ 1e-10."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("loss", ["categorical", "sparse_categorical", "binary"])
def test_probability_losses_grad(autodiff_fw, loss):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(6)
    p = rng.uniform(0.05, 0.9, size=(4, 5))  # inside the clip: a smooth function there
    y_soft = rng.random((4, 5))
    y_int = rng.integers(0, 5, size=4)
    if loss == "categorical":
        ours = lambda a: xent.categorical_cross_entropy(a, fw.asarray(y_soft), label_smoothing=0.1, reduction="mean")  # noqa: E731
        theirs = lambda a: ref.categorical(a, y_soft, alpha=0.1, reduction="mean", dtype="float64")  # noqa: E731
    elif loss == "sparse_categorical":
        ours = lambda a: xent.sparse_categorical_cross_entropy(a, fw.asarray(y_int), reduction="mean")  # noqa: E731
        theirs = lambda a: ref.sparse_categorical(a, y_int, reduction="mean", dtype="float64")  # noqa: E731
    else:
        ours = lambda a: xent.binary_cross_entropy(a, fw.asarray(y_soft), label_smoothing=0.1, reduction="sum")  # noqa: E731
        theirs = lambda a: ref.binary(a, y_soft, alpha=0.1, reduction="sum", dtype="float64")  # noqa: E731
    (g,) = fw.grad(ours, [fw.asarray(p, "float64")])
    np.testing.assert_allclose(g, _numeric_grad(theirs, p), rtol=1e-7, atol=1e-8)


def test_gradient_flows_into_pos_weight_and_weights():
    torch = pytest.importorskip("torch")
    z = torch.randn(3, 4, dtype=torch.float64)
    y = torch.rand(3, 4, dtype=torch.float64)
    pw = torch.full((4,), 2.0, dtype=torch.float64, requires_grad=True)
    w = torch.ones(3, 1, dtype=torch.float64, requires_grad=True)
    out = xent.sigmoid_cross_entropy(z, y, pos_weight=pw, weights=w, reduction="sum")
    g_pw, g_w = torch.autograd.grad(out, (pw, w))
    # d/d pos_weight = Σ_rows y·softplus(-z);  d/d w_row = Σ_cols loss
    np.testing.assert_allclose(g_pw.numpy(), (y * torch.nn.functional.softplus(-z)).sum(0).numpy(), rtol=1e-12)
    want_w = torch.nn.functional.binary_cross_entropy_with_logits(z, y, pos_weight=pw.detach(), reduction="none").sum(1, keepdim=True)
    np.testing.assert_allclose(g_w.numpy(), want_w.numpy(), rtol=1e-12)
