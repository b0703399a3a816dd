"""The golden values of the losses' first examples, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xent

LOGITS = [[2, 0.5, 1], [0.1, 1, 3]]
SOFT = [[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]
SIG_LOGITS = [[12, 3, 2], [3, 10, 1], [1, 2, 5], [4, 6.5, 1.2], [3, 6, 1]]
SIG_LABELS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0]]
SIG_WANT = [
    [6.14419348e-06, 3.04858735, 2.12692801],
    [3.04858735, 4.53988992e-05, 1.31326169],
    [1.31326169, 2.12692801, 6.71534849e-03],
    [1.81499279e-02, 1.50231016e-03, 1.46328247],
    [3.04858735, 2.47568514e-03, 1.31326169],
]
#: the values are printed to float32 precision: compare to a few float32 ulps
RTOL = 4 * 2.0**-23


def _f32(fw, x):  # type: ignore[no-untyped-def]
    return fw.asarray(np.asarray(x, np.float32))


def test_softmax_seed(fw):  # type: ignore[no-untyped-def]
    got = xent.softmax_cross_entropy(logits=_f32(fw, LOGITS), labels=_f32(fw, SOFT))
    np.testing.assert_allclose(fw.to_numpy(got), [1.4143689, 1.6642545], rtol=RTOL)


def test_double_softmax_mistake(fw):  # type: ignore[no-untyped-def]
    z = np.asarray(LOGITS, np.float64)
    softmaxed = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    got = xent.softmax_cross_entropy(_f32(fw, softmaxed), _f32(fw, SOFT))
    np.testing.assert_allclose(fw.to_numpy(got), [1.1718578, 1.1757141], rtol=RTOL)


def test_sigmoid_seed(fw):  # type: ignore[no-untyped-def]
    got = xent.sigmoid_cross_entropy(_f32(fw, SIG_LOGITS), _f32(fw, SIG_LABELS))
    np.testing.assert_allclose(fw.to_numpy(got), SIG_WANT, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(
    "probs,want",
    [([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], 1.1769392), ([[0.05, 0.9, 0.05], [0.1, 0.8, 0.1]], 1.2039728)],
)
def test_sparse_categorical_seed(fw, probs, want):  # type: ignore[no-untyped-def]
    got = xent.sparse_categorical_cross_entropy(probs=_f32(fw, probs), labels=[1, 2], reduction="mean")
    np.testing.assert_allclose(fw.to_numpy(got), want, rtol=RTOL)


def test_python_lists_become_numpy():
    got = xent.softmax_cross_entropy(logits=LOGITS, labels=SOFT)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [1.4143689, 1.6642545], rtol=RTOL)
