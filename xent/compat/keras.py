"""``keras.losses``' cross-entropies (Keras 3), on any xent backend.

Same names, argument order (``y_true, y_pred``), defaults and quirks as Keras 3:

* ``from_logits=False`` by default: predictions are probabilities, renormalised
  and clipped to ``[1e-7, 1 - 1e-7]`` (the sparse loss clips, then
  renormalises, as Keras' TensorFlow backend);
* sparse labels may carry a trailing dimension of 1 (``(N, 1)``), and float
  labels are truncated to integers;
* ``ignore_class``: those entries get loss 0 and are left out of the mean;
* ``binary_crossentropy`` means over the last axis;
* the loss classes' ``reduction="sum_over_batch_size"`` (alias ``"mean"``)
  divides by the number of elements, not by the summed ``sample_weight``
  (``"mean_with_sample_weight"`` does that); a mean over nothing is 0.

>>> import numpy as np
>>> from xent.compat import keras
>>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
>>> keras.losses.sparse_categorical_crossentropy(np.array([1, 2]), y_pred)
array([0.05129344, 2.3025851 ], dtype=float32)
>>> float(keras.losses.SparseCategoricalCrossentropy()(np.array([[1], [2]]), y_pred))
1.1769392

Differences, deliberate: the loss classes keep the input dtype (Keras casts to
its ``dtype``, float32 by default); any ``axis`` works for the sparse loss
(Keras' TensorFlow backend: last only); out-of-range labels raise
``ValueError``. ``keras.losses`` is available as ``xent.compat.keras.losses``
and the same functions sit on this module.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import xent
from xent.compat._common import as_predictions, backend, is_float, is_host, like, ndim, numel, safe_divide, shape

Array = Any
REDUCTIONS = ("sum", "sum_over_batch_size", "mean", "mean_with_sample_weight", "none", None)


def _sparse_labels(y_true: Array, y_pred: Array, axis: int) -> Array:
    """Keras' label handling: squeeze a size-1 class axis, truncate floats."""
    if ndim(y_true) == ndim(y_pred) and shape(y_true)[axis] == 1:
        if is_host(y_true):
            y_true = np.squeeze(np.asarray(y_true), axis=axis)
        else:
            be = backend(y_true)
            s = list(be.shape(y_true))
            del s[axis % len(s)]
            y_true = be.reshape(y_true, tuple(-1 if d is None else d for d in s))
    if is_float(y_true):
        y_true = np.asarray(y_true).astype(np.int64) if is_host(y_true) else backend(y_true).cast(y_true, "int64")
    return y_true


def categorical_crossentropy(y_true: Array, y_pred: Array, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Array:
    """``keras.losses.categorical_crossentropy``.

    Args:
      y_true: one-hot or soft labels, same shape as ``y_pred``.
      y_pred: probabilities (``from_logits=False``) or logits, ``[..., C]``.
      from_logits: whether ``y_pred`` are logits.
      label_smoothing: ``α`` in ``[0, 1)``: ``y·(1-α) + α/C``.
      axis: the class axis.

    Returns:
      ``y_pred.shape`` without ``axis``.
    """
    y_pred = as_predictions(y_pred)
    if from_logits:
        return xent.softmax_cross_entropy(y_pred, y_true, axis=axis, label_smoothing=label_smoothing)
    return xent.categorical_cross_entropy(y_pred, y_true, axis=axis, label_smoothing=label_smoothing)


def sparse_categorical_crossentropy(y_true: Array, y_pred: Array, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1) -> Array:
    """``keras.losses.sparse_categorical_crossentropy``.

    Args:
      y_true: class ids ``[...]`` or ``[..., 1]``; floats are truncated.
      y_pred: probabilities (``from_logits=False``) or logits, ``[..., C]``.
      from_logits: whether ``y_pred`` are logits.
      ignore_class: a label whose entries get loss 0 (and leave the mean).
      axis: the class axis.

    Returns:
      ``y_pred.shape`` without ``axis``.
    """
    y_pred = as_predictions(y_pred)
    y_true = _sparse_labels(y_true, y_pred, axis)
    if from_logits:
        return xent.sparse_softmax_cross_entropy(y_pred, y_true, axis=axis, ignore_index=ignore_class)
    return xent.sparse_categorical_cross_entropy(y_pred, y_true, axis=axis, ignore_index=ignore_class)


def binary_crossentropy(y_true: Array, y_pred: Array, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> Array:
    """``keras.losses.binary_crossentropy``: elementwise, then the mean over ``axis``.

    Args:
      y_true: labels in ``[0, 1]``, same shape as ``y_pred``.
      y_pred: probabilities (``from_logits=False``) or logits.
      from_logits: whether ``y_pred`` are logits.
      label_smoothing: ``α``: ``y·(1-α) + α/2``.
      axis: the axis the elementwise losses are averaged over.

    Returns:
      ``y_pred.shape`` without ``axis``.
    """
    y_pred = as_predictions(y_pred)
    fn = xent.sigmoid_cross_entropy if from_logits else xent.binary_cross_entropy
    loss = fn(y_pred, y_true, label_smoothing=label_smoothing)
    be = backend(loss)
    return be.sum(loss, axis) / shape(loss)[axis]


def _reduce(loss: Array, reduction: str | None, sample_weight: Array | None, mask: Array | None) -> Array:
    """Keras' ``reduce_weighted_values``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. "
                         f"Received: reduction={reduction!r}")
    be = backend(loss)
    dtype = be.dtype_name(loss)
    sw = None
    if sample_weight is not None:
        sw = be.cast(like(sample_weight, loss), dtype)
        if ndim(sw) == ndim(loss) + 1 and shape(sw)[-1] == 1:
            sw = be.reshape(sw, tuple(-1 if d is None else d for d in shape(sw)[:-1]))
        loss = loss * sw
    if reduction in (None, "none") or not shape(loss):
        return loss
    total = be.sum(loss)
    if reduction == "sum":
        return total
    m = None if mask is None else be.cast(mask, dtype)
    if reduction == "mean_with_sample_weight" and (sw is not None or m is not None):
        weight = sw if m is None else (m if sw is None else sw * m)
        return safe_divide(total, be.sum(weight * be.ones_like(loss)), total)
    if m is not None:  # masked entries leave the batch size
        return safe_divide(total, be.sum(m), total)
    return safe_divide(total, numel(loss), total)


class _Loss:
    reduction: str | None

    def __init__(self, reduction: str | None, name: str, dtype: Any) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. "
                             f"Received: reduction={reduction!r}")
        self.reduction, self.name, self.dtype = reduction, name, dtype

    def _mask(self, y_true: Array, y_pred: Array) -> Array | None:
        return None

    def __call__(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:
        y_pred = as_predictions(y_pred)
        loss = self.call(y_true, y_pred)
        return _reduce(loss, self.reduction, sample_weight, self._mask(y_true, y_pred))

    def call(self, y_true: Array, y_pred: Array) -> Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<xent.compat.keras.{type(self).__name__} name={self.name!r}>"


class CategoricalCrossentropy(_Loss):
    """``keras.losses.CategoricalCrossentropy``; called as ``loss(y_true, y_pred, sample_weight=None)``."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str = "categorical_crossentropy",
                 dtype: Any = None) -> None:
        super().__init__(reduction, name, dtype)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true: Array, y_pred: Array) -> Array:
        return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing, self.axis)


class SparseCategoricalCrossentropy(_Loss):
    """``keras.losses.SparseCategoricalCrossentropy``; ``ignore_class`` entries leave the mean."""

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = "sum_over_batch_size", axis: int = -1,
                 name: str = "sparse_categorical_crossentropy", dtype: Any = None) -> None:
        super().__init__(reduction, name, dtype)
        self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis

    def _mask(self, y_true: Array, y_pred: Array) -> Array | None:
        if self.ignore_class is None:
            return None
        return like(_sparse_labels(y_true, y_pred, self.axis), y_pred) != self.ignore_class

    def call(self, y_true: Array, y_pred: Array) -> Array:
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits, self.ignore_class, self.axis)


class BinaryCrossentropy(_Loss):
    """``keras.losses.BinaryCrossentropy`` (mean over the last axis, then the reduction)."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str = "binary_crossentropy",
                 dtype: Any = None) -> None:
        super().__init__(reduction, name, dtype)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true: Array, y_pred: Array) -> Array:
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing, self.axis)


#: ``from xent.compat import keras; keras.losses.CategoricalCrossentropy(...)``
losses = sys.modules[__name__]

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "losses",
    "sparse_categorical_crossentropy",
]
