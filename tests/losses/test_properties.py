"""Property-based tests: random shapes, axes, dtypes and options.

Every backend agrees with an independent float64 reference, and the invariants
of cross-entropy hold: shift invariance along the class axis, permutation of
classes with labels, non-negativity for probability labels, sparse = dense on
one-hot labels, and ``∂ mean / ∂ logits = (softmax - onehot) / N``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xent
from xent import _parity
from xent.testing import framework, installed, tolerance

EAGER = [n for n in ("numpy", "torch", "tensorflow", "jax", "array_api_strict") if installed(n)]
AUTODIFF = [n for n in ("torch", "tensorflow", "jax") if installed(n)]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, dense: bool = False):
    """(logits float64, axis, labels): labels are int ids, or simplex rows when ``dense``."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=draw(st.sampled_from([0.5, 3.0])), size=shape)
    num = shape[axis]
    loss_shape = shape[: axis % ndim] + shape[axis % ndim + 1:]
    ids = rng.integers(0, num, size=loss_shape)
    if dense:
        y = np.moveaxis(rng.dirichlet(np.ones(num), size=loss_shape), -1, axis % ndim)
        return logits, axis, y
    return logits, axis, ids


def _ref_sparse(logits, axis, ids, alpha, reduction):
    z = np.moveaxis(logits, axis, -1)
    ls = z - z.max(-1, keepdims=True)
    ls = ls - np.log(np.exp(ls).sum(-1, keepdims=True))
    num = z.shape[-1]
    nll = -np.take_along_axis(ls, ids[..., None], -1)[..., 0]
    per = (1 - alpha) * nll - alpha * ls.mean(-1)
    return {"none": per, "sum": per.sum(), "mean": per.mean() if per.size else 0.0}[reduction], num


@SETTINGS
@given(problems(), st.sampled_from(["float32", "float64", "bfloat16"]), st.sampled_from([0.0, 0.1]),
       st.sampled_from(["none", "sum", "mean"]))
def test_all_backends_agree_with_the_reference(problem, dtype, alpha, reduction):
    logits, axis, ids = problem
    rounded = framework("numpy").to_numpy(framework("numpy").asarray(logits, dtype)).astype(np.float64)
    want, num = _ref_sparse(rounded, axis, ids, alpha, reduction)
    rtol, atol = tolerance(dtype, num, 1 if reduction == "none" else max(ids.size, 1))
    for name in EAGER:
        fw = framework(name)
        if dtype not in fw.dtypes:
            continue
        got = xent.sparse_softmax_cross_entropy(fw.asarray(rounded, dtype), fw.asarray(ids), axis=axis,
                                                label_smoothing=alpha, reduction=reduction)
        np.testing.assert_allclose(fw.to_numpy(got), want, rtol=rtol, atol=atol, err_msg=name)


@SETTINGS
@given(problems(dense=True), st.floats(-30, 30), st.sampled_from(["float32", "float64"]))
def test_adding_a_constant_along_the_class_axis_changes_nothing(problem, shift, dtype):
    logits, axis, y = problem
    z = logits.astype(dtype)
    shifted = (logits + shift).astype(dtype)
    num = logits.shape[axis]
    rtol, atol = tolerance(dtype, num)
    # the inputs themselves round differently by |shift|·eps: allow that too
    atol += 4 * (abs(shift) + np.abs(logits).max()) * tolerance(dtype)[0]
    for fn, labels in [(xent.softmax_cross_entropy, y.astype(dtype)),
                       (xent.sparse_softmax_cross_entropy, np.argmax(y, axis=axis))]:
        np.testing.assert_allclose(fn(shifted, labels, axis=axis), fn(z, labels, axis=axis), rtol=rtol, atol=atol)


@SETTINGS
@given(problems(dense=True), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.2]))
def test_permuting_classes_with_labels_changes_nothing(problem, seed, alpha):
    logits, axis, y = problem
    num = logits.shape[axis]
    perm = np.random.default_rng(seed).permutation(num)
    inverse = np.argsort(perm)
    ids = np.argmax(y, axis=axis)
    rtol, atol = tolerance("float64", num)
    dense = xent.softmax_cross_entropy(logits, y, axis=axis, label_smoothing=alpha)
    dense_p = xent.softmax_cross_entropy(np.take(logits, perm, axis), np.take(y, perm, axis), axis=axis,
                                         label_smoothing=alpha)
    np.testing.assert_allclose(dense_p, dense, rtol=rtol, atol=atol)
    sparse = xent.sparse_softmax_cross_entropy(logits, ids, axis=axis, label_smoothing=alpha)
    sparse_p = xent.sparse_softmax_cross_entropy(np.take(logits, perm, axis), inverse[ids], axis=axis,
                                                 label_smoothing=alpha)
    np.testing.assert_allclose(sparse_p, sparse, rtol=rtol, atol=atol)


@SETTINGS
@given(problems(dense=True), st.sampled_from([0.0, 0.3]), st.sampled_from(["float32", "float64"]))
def test_loss_is_non_negative_for_probability_labels(problem, alpha, dtype):
    logits, axis, y = problem
    z, yy = logits.astype(dtype), y.astype(dtype)
    probs = np.exp(z - z.max(axis, keepdims=True))
    probs = (probs / probs.sum(axis, keepdims=True)).astype(dtype)
    sig_y = np.clip(yy * 1.7, 0, 1)
    for loss in (xent.softmax_cross_entropy(z, yy, axis=axis, label_smoothing=alpha),
                 xent.categorical_cross_entropy(probs, yy, axis=axis, label_smoothing=alpha),
                 xent.sigmoid_cross_entropy(z, sig_y, label_smoothing=alpha),
                 xent.binary_cross_entropy(np.clip(probs, 0, 1), sig_y, label_smoothing=alpha)):
        assert np.all(np.asarray(loss) >= 0)


@SETTINGS
@given(problems(), st.sampled_from([0.0, 0.1]), st.sampled_from(["none", "sum", "mean"]),
       st.sampled_from(EAGER))
def test_sparse_equals_dense_on_one_hot_labels(problem, alpha, reduction, name):
    logits, axis, ids = problem
    fw = framework(name)
    num = logits.shape[axis]
    onehot = np.moveaxis(np.eye(num)[ids], -1, axis % logits.ndim)
    sparse = xent.sparse_softmax_cross_entropy(fw.asarray(logits), fw.asarray(ids), axis=axis,
                                               label_smoothing=alpha, reduction=reduction)
    dense = xent.softmax_cross_entropy(fw.asarray(logits), fw.asarray(onehot), axis=axis,
                                       label_smoothing=alpha, reduction=reduction)
    rtol, atol = tolerance("float64", num, ids.size if reduction != "none" else 1)
    np.testing.assert_allclose(fw.to_numpy(sparse), fw.to_numpy(dense), rtol=rtol, atol=atol)


@pytest.mark.skipif(not AUTODIFF, reason="no autodiff framework installed")
@SETTINGS
@given(problems(), st.sampled_from(AUTODIFF or ["numpy"]), st.sampled_from(["float32", "float64"]))
def test_gradient_of_the_mean_is_softmax_minus_one_hot_over_n(problem, name, dtype):
    logits, axis, ids = problem
    if ids.size == 0:
        return
    fw = framework(name)
    z = logits.astype(dtype).astype(np.float64)
    (grad,) = fw.grad(lambda x, y: xent.sparse_softmax_cross_entropy(x, y, axis=axis, reduction="mean"),
                      [fw.asarray(z, dtype), fw.asarray(ids)])
    ax = axis % z.ndim
    e = np.exp(z - z.max(ax, keepdims=True))
    softmax = e / e.sum(ax, keepdims=True)
    onehot = np.moveaxis(np.eye(z.shape[ax])[ids], -1, ax)
    rtol, atol = tolerance(dtype, z.shape[ax], ids.size)
    np.testing.assert_allclose(grad, (softmax - onehot) / ids.size, rtol=rtol, atol=atol)


@SETTINGS
@given(st.sampled_from([c for c in _parity.CASES if c.reduction != "sum"]),
       st.sampled_from(EAGER), st.sampled_from(["float32", "float64"]))
def test_parity_cases_on_random_backends(case, name, dtype):
    """Values of every parity case on a random backend (gradients: ``xent parity``)."""
    fw = framework(name)
    if dtype not in fw.dtypes:
        return
    inputs = _parity.make_inputs(case, dtype)
    want = _parity.reference(case, inputs).value
    fn, args = _parity._call(case, fw, inputs, dtype)
    rtol, atol = tolerance(dtype, case.num_classes, case.reduced)
    np.testing.assert_allclose(fw.to_numpy(fn(*args)), want, rtol=rtol, atol=atol)
