"""Every loss and option, on every backend and dtype, against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.helpers import SHAPES, assert_matches, loss_shape, rounded, soft_labels

DTYPES = ["float16", "bfloat16", "float32", "float64"]
REDUCTIONS = ["none", "sum", "mean"]


def _reduced(shape, axis, reduction):  # type: ignore[no-untyped-def]
    return 1 if reduction == "none" else int(np.prod(loss_shape(shape, axis)))


SPARSE_OPTIONS = {
    "plain": {},
    "ignore": {"ignore_index": -100},
    "smooth": {"label_smoothing": 0.1},
    "class_weights": {"class_weights": True},
    "class_weights+smooth": {"class_weights": True, "label_smoothing": 0.2},
    "weights": {"weights": True},
    "all": {"class_weights": True, "label_smoothing": 0.1, "ignore_index": 3, "weights": True},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(SPARSE_OPTIONS))
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_sparse_softmax(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(abs(hash((option, shape, reduction))) % 2**32)
    opts = dict(SPARSE_OPTIONS[option])
    c = shape[axis]
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rng.integers(0, c, size=loss_shape(shape, axis))
    kwargs, ref_kwargs = {}, {}
    if "ignore_index" in opts:
        y.flat[::3] = opts["ignore_index"]
        kwargs["ignore_index"] = ref_kwargs["ignore_index"] = opts["ignore_index"]
    if "label_smoothing" in opts:
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = opts["label_smoothing"]
    if opts.get("class_weights"):
        cw = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
        kwargs["class_weights"] = fw.asarray(cw)
        ref_kwargs["cw"] = cw
    if opts.get("weights"):
        w = rng.uniform(0.0, 2.0, size=loss_shape(shape, axis)[-1:]).astype(np.float32)
        kwargs["weights"] = fw.asarray(w)
        ref_kwargs["w"] = w
    got = xent.sparse_softmax_cross_entropy(fw.asarray(z, dtype), y, axis=axis, reduction=reduction, **kwargs)
    want = ref.sparse(z, y, axis=axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, c, _reduced(shape, axis, reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_softmax_dense(fw, dtype, reduction, alpha, weighted, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = soft_labels(rng, shape, axis).astype(np.float32)
    w = rng.uniform(0, 2, size=loss_shape(shape, axis)).astype(np.float32) if weighted else None
    got = xent.softmax_cross_entropy(
        fw.asarray(z, dtype), fw.asarray(y), axis=axis, label_smoothing=alpha,
        weights=None if w is None else fw.asarray(w), reduction=reduction,
    )
    want = ref.dense(z, y, axis=axis, alpha=alpha, w=w, reduction=reduction)
    assert_matches(fw, got, want, dtype, shape[axis], _reduced(shape, axis, reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "pos_weight", "smooth", "weights", "all"])
def test_sigmoid(fw, dtype, reduction, option):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    shape = (7, 5)
    z = rounded(rng.normal(size=shape) * 4, dtype)
    y = rng.random(shape).astype(np.float32)
    y[::2] = np.round(y[::2])  # hard and soft labels
    kwargs, ref_kwargs = {}, {}
    if option in ("pos_weight", "all"):
        pw = rng.uniform(0.5, 3, size=5).astype(np.float32)
        kwargs["pos_weight"], ref_kwargs["pos_weight"] = fw.asarray(pw), pw
    if option in ("smooth", "all"):
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = 0.1
    if option in ("weights", "all"):
        w = rng.uniform(0, 2, size=(7, 1)).astype(np.float32)
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w), w
    got = xent.sigmoid_cross_entropy(fw.asarray(z, dtype), fw.asarray(y), reduction=reduction, **kwargs)
    want = ref.sigmoid(z, y, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, 2, 1 if reduction == "none" else z.size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "smooth", "weights", "epsilon"])
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_categorical(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    p = rng.random(shape) * 2  # rows need not sum to 1: the loss renormalises
    p.flat[::4] = 0.0  # exercise the clip
    p = rounded(p, dtype)
    y = soft_labels(rng, shape, axis).astype(np.float32)
    kwargs, ref_kwargs = {}, {"dtype": dtype}
    if option == "smooth":
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = 0.1
    if option == "weights":
        w = rng.uniform(0, 2, size=loss_shape(shape, axis)).astype(np.float32)
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w), w
    if option == "epsilon":
        kwargs["epsilon"] = ref_kwargs["eps"] = 1e-3
    got = xent.categorical_cross_entropy(fw.asarray(p, dtype), fw.asarray(y), axis=axis, reduction=reduction, **kwargs)
    want = ref.categorical(p, y, axis=axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, shape[axis], _reduced(shape, axis, reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "ignore", "weights", "epsilon"])
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_sparse_categorical(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    c = shape[axis]
    p = rng.random(shape) * 2
    p.flat[::5] = 0.0
    p = rounded(p, dtype)
    y = rng.integers(0, c, size=loss_shape(shape, axis))
    kwargs, ref_kwargs = {}, {"dtype": dtype}
    if option == "ignore":
        y.flat[::2] = -1
        kwargs["ignore_index"] = ref_kwargs["ignore_index"] = -1
    if option == "weights":
        w = rng.uniform(0, 2, size=loss_shape(shape, axis)).astype(np.float32)
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w), w
    if option == "epsilon":
        kwargs["epsilon"] = ref_kwargs["eps"] = 0.01
    got = xent.sparse_categorical_cross_entropy(fw.asarray(p, dtype), y, axis=axis, reduction=reduction, **kwargs)
    want = ref.sparse_categorical(p, y, axis=axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, c, _reduced(shape, axis, reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", ["plain", "smooth", "weights", "epsilon"])
def test_binary(fw, dtype, reduction, option):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    shape = (6, 4)
    p = rng.random(shape)
    p[0] = [0.0, 1.0, 0.5, 1e-9]  # the clip at both ends
    p = rounded(p, dtype)
    y = rng.random(shape).astype(np.float32)
    y[1] = [0, 1, 0, 1]
    kwargs, ref_kwargs = {}, {"dtype": dtype}
    if option == "smooth":
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = 0.2
    if option == "weights":
        w = rng.uniform(0, 2, size=(4,)).astype(np.float32)
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(w), w
    if option == "epsilon":
        kwargs["epsilon"] = ref_kwargs["eps"] = 1e-4
    got = xent.binary_cross_entropy(fw.asarray(p, dtype), fw.asarray(y), reduction=reduction, **kwargs)
    want = ref.binary(p, y, reduction=reduction, **ref_kwargs)
    assert_matches(fw, got, want, dtype, 2, 1 if reduction == "none" else p.size)
