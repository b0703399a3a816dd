"""The numerics of docs/semantics.md, each broken in at least one of tf.nn, Keras, torch, optax."""

from __future__ import annotations

import numpy as np
import pytest

import xent

INF = np.inf


def _grad_or_none(fw, fn, *args, argnums=(0,)):  # type: ignore[no-untyped-def]
    return fw.grad(fn, list(args), argnums=argnums) if fw.differentiable else None


def test_masked_minus_inf_logit_sparse_and_dense(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.array([[-INF, 1.0, 2.0], [0.5, -INF, 0.0]], np.float32))
    onehot = fw.asarray(np.array([[0, 1, 0], [1, 0, 0]], np.float32))
    want = -np.log(np.exp([1.0, 0.5]) / np.exp([[1.0, 2.0], [0.5, 0.0]]).sum(1))
    sparse = xent.sparse_softmax_cross_entropy(z, [1, 0])
    dense = xent.softmax_cross_entropy(z, onehot)  # tf.nn and optax: NaN
    for out in (sparse, dense):
        np.testing.assert_allclose(fw.to_numpy(out), want, rtol=1e-6)
    for grads in (
        _grad_or_none(fw, lambda a: xent.sparse_softmax_cross_entropy(a, fw.asarray(np.array([1, 0])), reduction="sum"), z),
        _grad_or_none(fw, lambda a, b: xent.softmax_cross_entropy(a, b, reduction="sum"), z, onehot, argnums=(0, 1)),
    ):
        if grads is not None:
            assert all(np.isfinite(g).all() for g in grads), grads


def test_minus_inf_with_smoothing_is_inf(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.array([[-INF, 1.0, 2.0]], np.float32))
    out = xent.sparse_softmax_cross_entropy(z, [1], label_smoothing=0.1)
    assert fw.to_numpy(out)[0] == INF
    # ...unless the class weight of that class is 0: then it contributes nothing
    cw = fw.asarray(np.array([0.0, 1.0, 1.0], np.float32))
    out = xent.sparse_softmax_cross_entropy(z, [1], label_smoothing=0.1, class_weights=cw)
    assert np.isfinite(fw.to_numpy(out)).all()


def test_sigmoid_infinite_logits_give_the_limits(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.array([INF, -INF, INF, -INF], np.float32))
    y = fw.asarray(np.array([1.0, 0.0, 0.0, 1.0], np.float32))
    np.testing.assert_array_equal(fw.to_numpy(xent.sigmoid_cross_entropy(z, y)), [0.0, 0.0, INF, INF])
    pw = fw.asarray(np.array([2.0], np.float32))
    np.testing.assert_array_equal(fw.to_numpy(xent.sigmoid_cross_entropy(z, y, pos_weight=pw)), [0.0, 0.0, INF, INF])
    grads = _grad_or_none(fw, lambda a: xent.sigmoid_cross_entropy(a, fw.asarray(np.array([1.0, 0.0], np.float32)), reduction="sum"),
                          fw.asarray(np.array([INF, -INF], np.float32)))
    if grads is not None:
        np.testing.assert_array_equal(grads[0], [0.0, 0.0])


def test_sigmoid_gradient_at_zero_logits(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    # Zero-initialised heads start at z = 0 exactly, where relu/abs have kinks:
    # d/dz = -p·y·σ(-z) + (1-y)·σ(z) = (1 - y - p·y) / 2 there, and d/dy = (p - 1)·log 2.
    z = fw.asarray(np.zeros(4, np.float64))
    y = fw.asarray(np.array([0.0, 1.0, 0.3, 0.5]))
    pw = fw.asarray(np.array([1.0, 1.0, 1.0, 3.0]))
    grads = fw.grad(lambda a, b: xent.sigmoid_cross_entropy(a, b, pos_weight=pw, reduction="sum"), [z, y], argnums=(0, 1))
    yv, pv = np.array([0.0, 1.0, 0.3, 0.5]), np.array([1.0, 1.0, 1.0, 3.0])
    np.testing.assert_allclose(grads[0], (1 - yv - pv * yv) / 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads[1], (pv - 1) * np.log(2.0), rtol=1e-12, atol=1e-15)


def test_huge_finite_logits(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e29]], np.float32))
    out = fw.to_numpy(xent.sparse_softmax_cross_entropy(z, [0, 2]))
    np.testing.assert_allclose(out, [0.0, 9e29], rtol=1e-6)
    sig = fw.to_numpy(xent.sigmoid_cross_entropy(fw.asarray(np.array([1e30, -1e30], np.float32)),
                                                 fw.asarray(np.array([0.0, 1.0], np.float32))))
    np.testing.assert_allclose(sig, [1e30, 1e30], rtol=1e-6)
    dense = fw.to_numpy(xent.softmax_cross_entropy(z, fw.asarray(np.full((2, 3), 1 / 3, np.float32))))
    assert np.isfinite(dense).all()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_empty_batch(fw, reduction):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.zeros((0, 4), np.float32))
    out = fw.to_numpy(xent.sparse_softmax_cross_entropy(z, fw.asarray(np.zeros(0, np.int64)), reduction=reduction))
    if reduction == "none":
        assert out.shape == (0,)
    else:
        assert out == 0.0
    out = fw.to_numpy(xent.softmax_cross_entropy(z, z, reduction=reduction))
    assert out.shape == (0,) if reduction == "none" else out == 0.0
    out = fw.to_numpy(xent.sparse_softmax_cross_entropy(z, [], reduction=reduction))  # an empty Python list
    assert out.size == 0 if reduction == "none" else out == 0.0


def test_all_ignored_mean_is_zero_with_zero_gradient(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32))
    y = fw.asarray(np.array([-100, -100, -100]))
    out = xent.sparse_softmax_cross_entropy(z, y, ignore_index=-100, reduction="mean")  # torch: NaN
    assert fw.to_numpy(out) == 0.0
    grads = _grad_or_none(fw, lambda a: xent.sparse_softmax_cross_entropy(a, y, ignore_index=-100, reduction="mean"), z)
    if grads is not None:
        np.testing.assert_array_equal(grads[0], 0.0)
    w = fw.asarray(np.zeros(3, np.float32))
    out = xent.sigmoid_cross_entropy(z, z, weights=fw.asarray(np.zeros((3, 1), np.float32)), reduction="mean")
    assert fw.to_numpy(out) == 0.0
    assert fw.to_numpy(xent.sparse_softmax_cross_entropy(z, [0, 1, 2], weights=w, reduction="mean")) == 0.0


def test_inputs_are_not_modified(fw):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    z_np = rng.normal(size=(4, 5)).astype(np.float32)
    y_np = rng.integers(0, 5, size=4)
    z, y = fw.asarray(z_np), fw.asarray(y_np)
    xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean")
    xent.softmax_cross_entropy(z, z)
    if fw.differentiable:
        fw.grad(lambda a: xent.sparse_softmax_cross_entropy(a, y, reduction="sum"), [z])
    np.testing.assert_array_equal(fw.to_numpy(z), z_np)
    np.testing.assert_array_equal(fw.to_numpy(y), y_np)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_output_dtype_follows_predictions(fw, dtype):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.zeros((2, 3), np.float32), dtype)
    for out in (
        xent.sparse_softmax_cross_entropy(z, [0, 1]),
        xent.sparse_softmax_cross_entropy(z, [0, 1], reduction="mean"),
        xent.softmax_cross_entropy(z, fw.asarray(np.ones((2, 3), np.float64))),
        xent.sigmoid_cross_entropy(z, fw.asarray(np.ones((2, 3), np.float32))),
    ):
        assert fw.dtype_name(out) == dtype


@pytest.mark.parametrize("label_dtype", ["int8", "int16", "int32", "int64", "uint8"])
def test_any_integer_label_dtype(fw, label_dtype):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.array([[0.0, 1.0, 2.0]], np.float32))
    y = fw.asarray(np.array([2], label_dtype))
    np.testing.assert_allclose(fw.to_numpy(xent.sparse_softmax_cross_entropy(z, y)),
                               [np.log(np.exp([0.0, 1, 2]).sum()) - 2], rtol=1e-6)


def test_xlogy_primitive(fw):  # type: ignore[no-untyped-def]
    """``Backend.xlogy`` is x·log(y), 0 where x is 0 (even at y = 0), against
    scipy's; its gradients are finite there too."""
    scipy_special = pytest.importorskip("scipy.special")
    be = xent.get_backend(fw.name if fw.name != "array_api_strict" else "array_api")
    x = np.array([0.0, 0.0, 0.5, 2.0, 1.0])
    y = np.array([0.0, 1.0, 0.3, 5.0, 0.0])
    with be.errstate():
        got = fw.to_numpy(be.xlogy(fw.asarray(x, "float64"), fw.asarray(y, "float64")))
    np.testing.assert_allclose(got, scipy_special.xlogy(x, y), rtol=1e-15)
    if fw.differentiable:
        gx, gy = fw.grad(lambda a, b: be.sum(be.xlogy(a, b)), [fw.asarray(x[:4], "float64"), fw.asarray(y[:4], "float64")],
                         argnums=(0, 1))
        assert np.isfinite(gx).all() and np.isfinite(gy[1:]).all()
        np.testing.assert_allclose(gx[1:], np.log(y[1:4]), rtol=1e-15)
