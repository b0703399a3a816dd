"""The blocked, multi-threaded NumPy kernels against an independent float64 reference.

The shapes cross the block and thread boundaries of ``xent.backends.numpy_backend``
(its block size is shrunk here so that small arrays take the blocked, threaded
path), put the class axis first, last and in the middle, and include -inf
logits and empty batches. No timings.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.special

import xent
from tests import reference as ref
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


# ---------------------------------------------------------------- sigmoid
# The sigmoid loss in 1-D blocks of the flattened arrays (numpy_backend.
# _binary_nll): elementwise through the front end, or reduced block by block
# on the fast path (fused_sigmoid), never writing the elementwise loss out.
SIGMOID_SHAPES = [(7, 5), (97, 13), (3, 11, 40), (9,), (0, 4)]


def _sigmoid_inputs(shape, dtype, seed=3):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.random(shape).astype(dtype)
    return z, y


@pytest.mark.parametrize("shape", SIGMOID_SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sigmoid_matches_float64_reference(blocking, shape, dtype, reduction):
    z, y = _sigmoid_inputs(shape, dtype)
    if reduction == "mean" and not z.size:
        assert xent.sigmoid_cross_entropy(z, y, reduction="mean") == 0
        return
    be = xent.get_backend("numpy")
    fused = be.fused_sigmoid(z, y, **dict(reduction=reduction))
    assert fused is not None  # the fast path takes these
    got = xent.sigmoid_cross_entropy(z, y, reduction=reduction)
    assert np.asarray(got).dtype == z.dtype and np.shape(got) == np.shape(fused)
    want = ref.sigmoid(z, y, reduction=reduction)
    rtol, atol = tolerance(dtype, reduced=1 if reduction == "none" else max(z.size, 1))
    for out in (fused, got):
        np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=rtol, atol=atol)
    # the general path's blocked primitive (through pos_weight = 1)
    ones = np.ones(shape[-1:], dtype)
    via_pw = xent.sigmoid_cross_entropy(z, y, pos_weight=ones, reduction=reduction)
    np.testing.assert_allclose(np.asarray(via_pw, np.float64), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_pos_weight_noncontiguous_and_limits(blocking, dtype):
    z, y = _sigmoid_inputs((40, 18), dtype)
    zv, yv = z[::2, ::2], y[::2, ::2]  # strided views, (20, 9)
    zv.flat[::7], yv.flat[::7] = np.inf, 1.0  # agrees with the +inf logit: loss 0
    zv.flat[3::11], yv.flat[3::11] = -np.inf, 0.0  # agrees with the -inf logit: loss 0
    zv[5, 5], yv[5, 5] = np.inf, 0.5  # disagrees: inf
    zv[6, 6] = np.nan
    pw = np.linspace(0.5, 3.0, 9).astype(dtype)
    before = z.copy()
    got = xent.sigmoid_cross_entropy(zv, yv, pos_weight=pw)
    agree = np.isinf(zv) & (yv == (zv > 0))
    finite = np.where(np.isinf(zv), 0.0, zv)
    with np.errstate(invalid="ignore"):  # (the NaN input)
        want = np.where(agree, 0.0, ref.sigmoid(finite, yv, pos_weight=pw))
    want[5, 5], want[6, 6] = np.inf, np.nan
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert np.array_equal(z, before, equal_nan=True)  # inputs untouched
    # reduced on the fast path: the same entries, summed (NaN with the NaN input)
    assert np.isnan(xent.sigmoid_cross_entropy(zv, yv, reduction="sum"))
    zv[6, 6] = 0.0
    want = np.where(agree, 0.0, ref.sigmoid(np.where(np.isinf(zv), 0.0, zv), yv))
    want[5, 5] = 0.0
    zv[5, 5] = 30.0
    want[5, 5] = ref.sigmoid(np.array([30.0]), yv[5, 5])[0]
    got = xent.sigmoid_cross_entropy(zv, yv, reduction="mean")
    np.testing.assert_allclose(got, want.mean(), rtol=tolerance(dtype, reduced=zv.size)[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_soft_nll_minus_inf_logits_under_zero_labels(blocking, dtype):
    # Blocked as Σy·lse - Σ y·(z - m): a label of 0 under a -inf logit makes
    # that product NaN, and its row is summed again without it (the limit, 0).
    z, _ = _inputs((31, 12), -1, dtype)
    z[::2, ::3] = -np.inf
    soft = np.random.default_rng(3).random(z.shape).astype(dtype)
    soft[::2, ::3] = 0
    want = -(soft.astype(np.float64) * np.where(soft == 0, 0, _ref_log_softmax(z, 1))).sum(1)
    got = xent.get_backend("numpy").soft_nll(z, soft, 1)
    assert np.all(np.isfinite(got))
    _close(got, want, dtype, 12)
    soft[1, 0], z[3, 2] = np.nan, np.nan  # NaN in, NaN out, in those rows only
    got = xent.get_backend("numpy").soft_nll(z, soft, 1)
    assert np.isnan(got[[1, 3]]).all() and np.isfinite(np.delete(got, [1, 3])).all()
    soft[4, 3] = 1.0  # a positive label under a -inf logit: an infinite loss
    assert xent.get_backend("numpy").soft_nll(z, soft, 1)[4] == np.inf


@pytest.mark.parametrize("loss", ["sparse", "dense", "sigmoid"])
def test_large_calls_hold_no_logits_sized_array(loss):
    # 1024 x 4096 float32 (16 MiB of logits) over the real blocks and threads,
    # a mean: the peak beyond the inputs is a block or two per thread, a few MiB.
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1024, 4096)).astype(np.float32)
    second = {"sparse": rng.integers(0, 4096, 1024), "dense": rng.dirichlet(np.ones(4096), 1024).astype(np.float32),
              "sigmoid": rng.random(z.shape).astype(np.float32)}[loss]
    fn = {"sparse": xent.sparse_softmax_cross_entropy, "dense": xent.softmax_cross_entropy,
          "sigmoid": xent.sigmoid_cross_entropy}[loss]
    import tracemalloc

    fn(z, second, reduction="mean")  # (the thread pool and any caches exist before the count)
    tracemalloc.start()
    try:
        got = fn(z, second, reduction="mean")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= (nb._BLOCK_ELEMENTS * 4 * 4 + 64 * 1024) * nb._num_threads() + 8 * 1024, peak
    if loss == "dense":
        want = -(second.astype(np.float64) * _ref_log_softmax(z, 1)).sum(1).mean()
        _close(got, want, "float32", 4096)


def test_thread_count_follows_the_affinity_and_the_cap(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("XENT_NUM_THREADS", raising=False)
    assert nb._num_threads() == cores
    monkeypatch.setenv("XENT_NUM_THREADS", "1")
    assert nb._num_threads() == 1
    monkeypatch.setenv("XENT_NUM_THREADS", str(cores + 5))
    assert nb._num_threads() == cores
    monkeypatch.setenv("XENT_NUM_THREADS", "many")  # (not a count: ignored)
    assert nb._num_threads() == cores
