"""optax's classification losses, on any xent backend.

>>> import numpy as np
>>> from xent.compat import optax
>>> optax.softmax_cross_entropy_with_integer_labels(np.array([[2.0, 0.5, 1.0]]), np.array([0])).round(6)
array([0.464369])

Same names, argument order (``logits, labels``), ``axis`` and ``where``
(loss 0 where False) as optax 0.2. Differences, deliberate: labels must have
the exact expected shape (optax broadcasts silently); integer labels outside
``[0, C)`` raise ``ValueError`` eagerly and give NaN under ``jax.jit`` (optax
wraps ``-1`` to the last class); ``softmax_cross_entropy`` is already "safe"
(a ``-inf`` logit under a zero label is finite), so
``safe_softmax_cross_entropy`` is the same function. ``axis`` is one int.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401 (doctests)

import xent
from xent.compat._common import as_predictions, like

Array = Any


def _where_kw(where: Array | None) -> dict[str, Any]:
    return {} if where is None else {"weights": where}


def softmax_cross_entropy(logits: Array, labels: Array, axis: int = -1, where: Array | None = None) -> Array:
    """``optax.softmax_cross_entropy``: ``-Σ labels · log_softmax(logits)`` along ``axis``.

    Args:
      logits: ``[..., num_classes]`` floating point.
      labels: same shape, e.g. probabilities.
      axis: the class axis.
      where: boolean mask over the loss shape; the loss is 0 where it is False.

    Returns:
      ``logits.shape`` without ``axis``.
    """
    return xent.softmax_cross_entropy(as_predictions(logits), labels, axis=axis, **_where_kw(where))


def safe_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """``optax.safe_softmax_cross_entropy``: finite at ``-inf`` logits under zero labels
    (as xent's :func:`softmax_cross_entropy` always is)."""
    return xent.softmax_cross_entropy(as_predictions(logits), labels)


def softmax_cross_entropy_with_integer_labels(logits: Array, labels: Array, axis: int = -1,
                                              where: Array | None = None) -> Array:
    """``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: ``[..., num_classes]`` floating point.
      labels: integer class ids, ``logits.shape`` without ``axis``.
      axis: the class axis.
      where: boolean mask over the loss shape; the loss is 0 where it is False.

    Returns:
      ``labels.shape``.
    """
    return xent.sparse_softmax_cross_entropy(as_predictions(logits), labels, axis=axis, **_where_kw(where))


def sigmoid_binary_cross_entropy(logits: Array, labels: Array) -> Array:
    """``optax.sigmoid_binary_cross_entropy``: elementwise, labels in ``[0, 1]``.

    Returns:
      ``logits.shape``.
    """
    return xent.sigmoid_cross_entropy(as_predictions(logits), labels)


def smooth_labels(labels: Array, alpha: float) -> Array:
    """``optax.smooth_labels``: ``(1 - α)·labels + α / num_classes`` (classes last).

    >>> smooth_labels(np.array([[0.0, 1.0, 0.0]]), 0.3).round(2)
    array([[0.1, 0.8, 0.1]])
    """
    labels = as_predictions(labels)
    from xent.compat._common import shape

    num = shape(labels)[-1]
    return like(labels, labels) * (1.0 - alpha) + alpha / num


__all__ = [
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]
