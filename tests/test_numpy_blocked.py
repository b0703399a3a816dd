"""The blocked, multi-threaded NumPy kernels against an independent float64 reference.

The shapes cross the block and thread boundaries of ``xent.backends.numpy_backend``
(its block size is shrunk here so that small arrays take the blocked, threaded
path), put the class axis first, last and in the middle, and include -inf
logits and empty batches. No timings.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import xent
from xent.backends import numpy_backend as nb
from xent.testing._tolerance import tolerance

SHAPES_AXES = [
    ((7, 5), -1),
    ((97, 13), 1),  # blocks of 4 rows, a ragged last block, 2 threads
    ((3, 11, 40), -1),
    ((13, 29), 0),  # class axis first: transposed copy
    ((4, 9, 6), 1),  # class axis in the middle
    ((9,), 0),  # unbatched: a scalar loss
    ((0, 17), -1),  # empty batch
    ((5, 0, 3), 2),
]


@pytest.fixture(params=["one block", "many blocks"])
def blocking(request, monkeypatch):
    if request.param == "many blocks":
        monkeypatch.setattr(nb, "_BLOCK_ELEMENTS", 50)
        monkeypatch.setattr(nb, "_THREAD_MIN_ELEMENTS", 100)
    return request.param


def _inputs(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    c = shape[axis]
    label_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1 :]
    y = rng.integers(0, c, size=label_shape)
    return z, y


def _ref_log_softmax(z, axis):
    return scipy.special.log_softmax(z.astype(np.float64), axis=axis)


def _ref_nll(z, y, axis):
    logp = _ref_log_softmax(z, axis)
    idx = np.expand_dims(y, axis % z.ndim)
    return -np.take_along_axis(logp, idx, axis=axis).squeeze(axis % z.ndim)


def _close(got, want, dtype, num_classes):
    rtol, atol = tolerance(dtype, num_classes=max(num_classes, 2))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_primitives_match_float64_reference(blocking, shape, axis, dtype):
    be = xent.get_backend("numpy")
    z, y = _inputs(shape, axis, dtype)
    c = shape[axis]
    ax = axis % len(shape)
    if c:
        nll = be.nll(z, y, ax)
        assert np.shape(nll) == y.shape and np.asarray(nll).dtype == z.dtype
        _close(nll, _ref_nll(z, y, ax), dtype, c)
    lsm = be.log_softmax(z, ax)
    assert lsm.shape == z.shape and lsm.dtype == z.dtype
    _close(lsm, _ref_log_softmax(z, ax), dtype, c)


@pytest.mark.parametrize("shape,axis", [s for s in SHAPES_AXES if s[0][s[1]]])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_public_losses_match_float64_reference(blocking, shape, axis, dtype):
    z, y = _inputs(shape, axis, dtype, seed=1)
    c = shape[axis]
    got = xent.sparse_softmax_cross_entropy(z, y, axis=axis)
    assert got.dtype == z.dtype
    _close(got, _ref_nll(z, y, axis), dtype, c)
    soft = np.random.default_rng(2).random(z.shape)
    got = xent.softmax_cross_entropy(z, soft.astype(dtype), axis=axis)
    want = -(soft.astype(dtype).astype(np.float64) * _ref_log_softmax(z, axis)).sum(axis)
    rtol, atol = tolerance(dtype, num_classes=c)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol * c)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_minus_inf_logits_stay_finite(blocking, dtype):
    z, y = _inputs((31, 12), -1, dtype)
    z[:, ::3] = -np.inf  # every third class impossible...
    y = (y // 3) * 3 + 1  # ...and never the label
    be = xent.get_backend("numpy")
    nll = be.nll(z, y, 1)
    assert np.all(np.isfinite(nll))
    _close(nll, _ref_nll(z, y, 1), dtype, 12)
    lsm = be.log_softmax(z, 1)
    assert np.all(lsm[:, ::3] == -np.inf)
    _close(lsm, _ref_log_softmax(z, 1), dtype, 12)
    # a -inf logit on the label itself: the loss is inf, as the mathematics says
    y[0] = 0
    assert be.nll(z, y, 1)[0] == np.inf


def test_large_logits_are_stable(blocking):
    z, y = _inputs((40, 7), -1, "float32")
    z *= 1e30
    got = xent.get_backend("numpy").nll(z, y, 1)
    assert np.all(np.isfinite(got))
    _close(got, _ref_nll(z, y, 1), "float32", 7)


def test_inputs_untouched_and_noncontiguous(blocking):
    z, y = _inputs((60, 18), -1, "float32")
    view = z[::2, ::2]  # strided rows and classes
    before = z.copy()
    yv = y[::2] % 9
    _close(xent.get_backend("numpy").nll(view, yv, 1), _ref_nll(view, yv, 1), "float32", 9)
    np.testing.assert_array_equal(z, before)


def test_softplus_matches_reference():
    be = xent.get_backend("numpy")
    x = np.array([-np.inf, -800.0, -30.0, -1.0, 0.0, 1e-8, 2.5, 40.0, 800.0, np.inf])
    want = np.where(x > 0, x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(be.softplus(x), want)
