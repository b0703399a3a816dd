"""NumPy's fused rung for the softmax losses: the general path's own kernels
(``nll``, ``soft_nll``) on host arrays checked by the hook, without the front
end. Values against the float64 reference; everything outside the envelope
declined, so the general path validates and names what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from xent.testing import assert_close

RNG = np.random.default_rng(5)
Z = RNG.normal(0, 3, (9, 6))
Y = RNG.integers(0, 6, 9)
P = RNG.random((9, 6))
P /= P.sum(-1, keepdims=True)
BE = xent.get_backend(np.zeros(1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_sparse_hook_answers_and_matches_the_reference(dtype, reduction, ignore_index):
    z = Z.astype(dtype)
    out = BE.fused_sparse(z, Y, axis=-1, reduction=reduction, ignore_index=ignore_index)
    assert out is not None and out.dtype == z.dtype
    assert_close(out, ref.sparse(z.astype(np.float64), Y, ignore_index=ignore_index, reduction=reduction),
                 num_classes=6, reduced=1 if reduction == "none" else len(Y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dense_hook_answers_and_matches_the_reference(dtype, reduction):
    z, p = Z.astype(dtype), P.astype(dtype)
    out = BE.fused_dense(z, p, axis=-1, reduction=reduction)
    assert out is not None and out.dtype == z.dtype
    assert_close(out, ref.dense(z.astype(np.float64), p.astype(np.float64), reduction=reduction), num_classes=6,
                 reduced=1 if reduction == "none" else len(Y))


def test_outside_the_envelope_the_general_path_runs():
    def sparse(**kw):  # type: ignore[no-untyped-def]
        args = {"axis": -1, "reduction": "mean", "ignore_index": None}
        args.update(kw)
        z, y = args.pop("z", Z), args.pop("y", Y)
        return BE.fused_sparse(z, y, **args)

    assert sparse() is not None
    assert sparse(z=Z.astype(np.float16)) is None  # half: upcast by the general path
    assert sparse(axis=0, z=Z.T.copy()) is None  # classes first
    assert sparse(y=np.where(Y == Y[0], 6, Y)) is None  # out of range: the general path names it
    assert sparse(y=Y.astype(np.float64)) is None  # not class ids
    assert sparse(y=list(Y)) is None  # a list: the general path converts it
    assert sparse(label_smoothing=0.1) is None and sparse(class_weights=np.ones(6)) is None
    assert sparse(z=Z[:0], y=Y[:0]) is None  # empty
    assert sparse(y=np.full(9, 2), ignore_index=2) is not None  # all ignored: 0, as the general path
    assert float(sparse(y=np.full(9, 2), ignore_index=2)) == 0.0
    assert BE.fused_dense(Z, P.astype(np.float32), axis=-1, reduction="mean") is None  # mixed dtypes
    with pytest.raises(ValueError, match="out-of-range label values: 6"):
        xent.sparse_softmax_cross_entropy(Z, np.where(Y == Y[0], 6, Y))
