"""``tf.nn``'s cross-entropy functions, on any xent backend.

Same names, the same argument order (``labels`` before ``logits``; pass them
as keywords, as TensorFlow's docs do) and defaults as TensorFlow 2:

>>> import numpy as np
>>> from xent.compat import tensorflow as nn
>>> nn.softmax_cross_entropy_with_logits(
...     labels=np.array([[0.2, 0.3, 0.5]]), logits=np.array([[2.0, 0.5, 1.0]])).round(6)
array([1.414369])

Differences from tf.nn, all deliberate (DESIGN.md): dense labels must have the
logits' shape (tf.nn broadcasts ``(1, C)`` silently); a ``-inf`` logit under a
zero label gives a finite loss (tf.nn: NaN); sigmoid losses at ``z = ±inf`` give
the limit (tf.nn: NaN); out-of-range sparse labels raise ``ValueError`` eagerly
and give NaN under tracing; integer labels of any integer dtype are accepted.
``name`` is accepted and ignored.
"""

from __future__ import annotations

from typing import Any

import xent
from xent.compat._common import as_predictions

Array = Any


def softmax_cross_entropy_with_logits(labels: Array, logits: Array, axis: int = -1, name: str | None = None) -> Array:
    """``tf.nn.softmax_cross_entropy_with_logits``: ``-Σ_c labels_c · log_softmax(logits)_c``.

    Args:
      labels: ``[..., num_classes]`` real, same shape as ``logits`` (rows need not sum to 1).
      logits: ``[..., num_classes]`` floating point.
      axis: the class dimension.
      name: ignored (TensorFlow op name).

    Returns:
      ``logits.shape`` without ``axis``, in the dtype of ``logits``.
    """
    return xent.softmax_cross_entropy(as_predictions(logits), labels, axis=axis)


def sparse_softmax_cross_entropy_with_logits(labels: Array, logits: Array, name: str | None = None) -> Array:
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: classes on the last axis.

    Args:
      labels: ``[...]`` integer class ids in ``[0, num_classes)``.
      logits: ``[..., num_classes]`` floating point.
      name: ignored.

    Returns:
      ``labels.shape``, in the dtype of ``logits``.
    """
    return xent.sparse_softmax_cross_entropy(as_predictions(logits), labels, axis=-1)


def sigmoid_cross_entropy_with_logits(labels: Array = None, logits: Array = None, name: str | None = None) -> Array:
    """``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(z,0) - z·y + log(1+exp(-|z|))``.

    Args:
      labels: same shape as ``logits``, in ``[0, 1]``.
      logits: ``[...]`` floating point.
      name: ignored.

    Returns:
      ``logits.shape``, in the dtype of ``logits``.
    """
    if labels is None or logits is None:
        raise ValueError("sigmoid_cross_entropy_with_logits needs both labels= and logits=")
    return xent.sigmoid_cross_entropy(as_predictions(logits), labels)


def weighted_cross_entropy_with_logits(labels: Array, logits: Array, pos_weight: Array, name: str | None = None) -> Array:
    """``tf.nn.weighted_cross_entropy_with_logits``: the positive term times ``pos_weight``.

    Args:
      labels: same shape as ``logits``, in ``[0, 1]``.
      logits: ``[...]`` floating point.
      pos_weight: a number or an array broadcastable to ``logits``.
      name: ignored.

    Returns:
      ``logits.shape``, in the dtype of ``logits``.
    """
    return xent.sigmoid_cross_entropy(as_predictions(logits), labels, pos_weight=pos_weight)


__all__ = [
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]
