"""``keras.losses``' cross-entropies (Keras 3), on any xent backend, and as Keras losses.

Same names, argument order (``y_true, y_pred``), defaults and quirks as Keras 3:

* ``from_logits=False`` by default: predictions are probabilities, renormalised
  and clipped to ``[1e-7, 1 - 1e-7]`` (the sparse loss clips, then
  renormalises, as Keras' TensorFlow backend); on TensorFlow, a softmax or
  sigmoid output that Keras computed carries its logits, and the loss takes
  them instead, as Keras' TensorFlow backend does;
* sparse labels may carry a trailing dimension of 1 (``(N, 1)``), and float
  labels are truncated to integers;
* ``ignore_class``: those entries get loss 0 and are left out of the mean;
* ``binary_crossentropy`` means over the last axis;
* the loss classes' ``reduction="sum_over_batch_size"`` (alias ``"mean"``)
  divides by the number of elements, not by the summed ``sample_weight``
  (``"mean_with_sample_weight"`` does that); a mean over nothing is 0;
* ``categorical_crossentropy`` warns (``SyntaxWarning``) when the last axis of
  ``y_pred`` has size 1.

>>> import numpy as np
>>> from xent.compat import keras
>>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
>>> keras.losses.sparse_categorical_crossentropy(np.array([1, 2]), y_pred)
array([0.05129344, 2.3025851 ], dtype=float32)
>>> float(keras.losses.SparseCategoricalCrossentropy()(np.array([[1], [2]]), y_pred))
1.1769392

The classes ``CategoricalCrossentropy``, ``SparseCategoricalCrossentropy``,
``BinaryCrossentropy``, ``CategoricalFocalCrossentropy``,
``BinaryFocalCrossentropy`` and :class:`XentLoss` are built on first use: where
Keras 3 is installed they are real ``keras.losses.Loss`` subclasses
(``model.compile(loss=...)``, ``dtype=`` and dtype policies, ``get_config``,
``model.save``/``keras.models.load_model``; registered serialisable as
``"xent>CategoricalCrossentropy"`` and so on), without Keras plain classes
with the same signatures. Importing this module imports no framework; touching
one of the classes imports Keras and registers them all (as does importing
this module once Keras is imported), which ``keras.models.load_model`` needs.

Differences, deliberate: called on NumPy arrays or on another framework's
tensors than Keras' backend, with ``dtype=None``, the loss classes run on those
arrays and keep their dtype (Keras converts everything to its backend in
``floatx``); any ``axis`` works for the sparse loss (Keras' TensorFlow
backend: last only); out-of-range labels raise ``ValueError``;
``SparseCategoricalCrossentropy.get_config`` also stores ``axis``, and every
class stores an explicit ``dtype``. ``keras.losses`` is available as
``xent.compat.keras.losses`` and the same functions sit on this module.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import warnings
from typing import Any, Callable

import numpy as np

import xent
from xent._losses import CLASS_ID_LOSSES, LOSSES
from xent.backends._base import FLOAT_DTYPES
from xent.compat._common import as_predictions, backend, is_float, is_host, like, ndim, numel, plain_python, safe_divide, shape

Array = Any
REDUCTIONS = ("sum", "sum_over_batch_size", "mean", "mean_with_sample_weight", "none", None)
#: The classes built on first use (Keras losses where Keras is installed).
LAZY = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy", "CategoricalFocalCrossentropy",
        "SparseCategoricalCrossentropy", "XentLoss")
#: the xent losses XentLoss takes (CLASS_ID_LOSSES: those whose labels are class ids)
XENT_LOSSES = LOSSES


# ------------------------------------------------------------------ helpers
def _drop_last(x: Array) -> Array:
    if is_host(x):
        return np.squeeze(np.asarray(x), axis=-1)
    return backend(x).reshape(x, tuple(-1 if d is None else d for d in shape(x)[:-1]))


def _add_last(x: Array) -> Array:
    if is_host(x):
        return np.expand_dims(np.asarray(x), -1)
    return backend(x).expand_dims(x, -1)


def _same_rank(y_true: Array, y_pred: Array) -> tuple[Array, Array]:
    """Keras' ``squeeze_or_expand_to_same_rank``: ranks that differ by a trailing 1."""
    r_true, r_pred = ndim(y_true), ndim(y_pred)
    if r_true == r_pred + 1 and shape(y_true)[-1] == 1:
        if r_pred == 1:
            y_pred = _add_last(y_pred)
        else:
            y_true = _drop_last(y_true)
    if r_pred == r_true + 1 and shape(y_pred)[-1] == 1:
        if r_true == 1:
            y_true = _add_last(y_true)
        else:
            y_pred = _drop_last(y_pred)
    return y_true, y_pred


def _check_same_shape(y_true: Array, y_pred: Array) -> None:
    """Keras' shape check of the dense and binary losses (same wording)."""
    s_true, s_pred = tuple(shape(y_true)), tuple(shape(y_pred))
    if len(s_true) != len(s_pred):
        raise ValueError("Arguments `target` and `output` must have the same rank (ndim). "
                         f"Received: target.shape={s_true}, output.shape={s_pred}")
    if any(a is not None and b is not None and a != b for a, b in zip(s_true, s_pred)):
        raise ValueError("Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={s_true}, output.shape={s_pred}")


def _keras_logits(y_pred: Array, from_logits: bool, op_type: str) -> tuple[Array, bool]:
    """Keras' TensorFlow backend: the logits behind a Keras softmax/sigmoid output.

    Keras' activations cache their input as ``_keras_logits`` and its TensorFlow
    backend computes the loss from those (no clipping); in a graph, the input of
    a ``Softmax``/``Sigmoid`` op likewise. Only TensorFlow tensors: Keras' other
    backends ignore the attribute.
    """
    if from_logits or not type(y_pred).__module__.startswith("tensorflow"):
        return y_pred, from_logits
    logits = getattr(y_pred, "_keras_logits", None)
    if logits is not None:
        return logits, True
    try:
        op = y_pred.op  # AttributeError for eager tensors
        if type(y_pred).__name__ not in ("EagerTensor", "ResourceVariable") and op.type == op_type \
                and len(op.inputs) == 1:
            return op.inputs[0], True
    except (AttributeError, ValueError):
        pass
    return y_pred, from_logits


def _set_keras_mask(loss: Array, mask: Array) -> None:
    """Mark ``loss``'s valid entries for Keras' reduction, as Keras' sparse loss does
    (only if Keras is already imported, and only on its backend's tensors)."""
    if "keras" not in sys.modules:
        return
    try:
        from keras.src import backend as keras_backend
    except ImportError:  # pragma: no cover - a Keras without this layout
        return
    if keras_backend.is_tensor(loss):
        keras_backend.set_keras_mask(loss, mask)


def _sparse_labels(y_true: Array, y_pred: Array, axis: int) -> Array:
    """Keras' label handling: squeeze a size-1 class axis, truncate floats (to int32:
    xent takes any integer dtype, and JAX without x64 has no int64)."""
    if ndim(y_true) == ndim(y_pred) and shape(y_true)[axis] == 1:
        if is_host(y_true):
            y_true = np.squeeze(np.asarray(y_true), axis=axis)
        else:
            be = backend(y_true)
            s = list(be.shape(y_true))
            del s[axis % len(s)]
            y_true = be.reshape(y_true, tuple(-1 if d is None else d for d in s))
    if is_float(y_true):
        y_true = np.asarray(y_true).astype(np.int32) if is_host(y_true) else backend(y_true).cast(y_true, "int32")
    return y_true


# ---------------------------------------------------------------- functions
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

    Raises:
      ValueError: ``axis`` a bool, or shapes that differ.
    """
    return _categorical("categorical_crossentropy", y_true, y_pred, from_logits, axis,
                        label_smoothing=label_smoothing)


def _categorical(name: str, y_true: Array, y_pred: Array, from_logits: bool, axis: int, **options: Any) -> Array:
    """Keras' checks of the dense losses, then xent's softmax or categorical loss."""
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    y_pred = as_predictions(y_pred)
    if shape(y_pred) and shape(y_pred)[-1] == 1:
        warnings.warn(
            f"In loss {name}, expected y_pred.shape to be (batch_size, num_classes) "
            f"with num_classes > 1. Received: y_pred.shape={tuple(shape(y_pred))}. "
            "Consider using 'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning, stacklevel=3)
    _check_same_shape(y_true, y_pred)
    y_pred, from_logits = _keras_logits(y_pred, from_logits, "Softmax")
    fn = xent.softmax_cross_entropy if from_logits else xent.categorical_cross_entropy
    return fn(y_pred, y_true, axis=axis, **options)


def categorical_focal_crossentropy(y_true: Array, y_pred: Array, alpha: float = 0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0,
                                   axis: int = -1) -> Array:
    """``keras.losses.categorical_focal_crossentropy``: ``-α·Σ_c y_c·(1-p_c)^γ·log p_c``.

    Args:
      y_true: one-hot or soft labels, same shape as ``y_pred``.
      y_pred: probabilities (``from_logits=False``: renormalised and clipped to
        ``[1e-7, 1 - 1e-7]``, as Keras) or logits (then exact: Keras clips the
        softmax there too, which floors the loss and zeroes its gradient).
      alpha: the constant weight ``α`` (Keras' default 0.25).
      gamma: the focal exponent ``γ >= 0``.
      from_logits: whether ``y_pred`` are logits.
      label_smoothing: ``α_s`` in ``[0, 1)``: ``y·(1-α_s) + α_s/C``, before the factor.
      axis: the class axis.

    Returns:
      ``y_pred.shape`` without ``axis``.

    >>> import numpy as np
    >>> y_true = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> y_pred = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], dtype=np.float32)
    >>> categorical_focal_crossentropy(y_true, y_pred).round(4)
    array([0.    , 0.4663], dtype=float32)
    """
    loss = _categorical("categorical_focal_crossentropy", y_true, y_pred, from_logits, axis,
                        label_smoothing=label_smoothing, focal_gamma=gamma)
    return loss * alpha


def _sparse(y_true: Array, y_pred: Array, from_logits: bool, ignore_class: int | None,
            axis: int) -> tuple[Array, Array | None]:
    """The sparse loss and its mask of kept entries (None without ``ignore_class``)."""
    y_pred = as_predictions(y_pred)
    y_true = _sparse_labels(y_true, y_pred, axis)
    y_pred, from_logits = _keras_logits(y_pred, from_logits, "Softmax")
    if from_logits:
        loss = xent.sparse_softmax_cross_entropy(y_pred, y_true, axis=axis, ignore_index=ignore_class)
    else:
        loss = xent.sparse_categorical_cross_entropy(y_pred, y_true, axis=axis, ignore_index=ignore_class)
    keep = None if ignore_class is None else like(y_true, loss) != ignore_class
    return loss, keep


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
      ``y_pred.shape`` without ``axis`` (on Keras' backend with ``ignore_class``,
      carrying Keras' mask of the kept entries, as Keras' own function).
    """
    loss, keep = _sparse(y_true, y_pred, from_logits, ignore_class, axis)
    if keep is not None:
        _set_keras_mask(loss, keep)
    return loss


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

    Raises:
      ValueError: shapes that differ.
    """
    return _binary(y_true, y_pred, from_logits, axis, label_smoothing=label_smoothing)


def _binary(y_true: Array, y_pred: Array, from_logits: bool, axis: int, **options: Any) -> Array:
    """Keras' binary losses: xent's sigmoid or binary loss, then the mean over ``axis``."""
    y_pred = as_predictions(y_pred)
    _check_same_shape(y_true, y_pred)
    y_pred, from_logits = _keras_logits(y_pred, from_logits, "Sigmoid")
    fn = xent.sigmoid_cross_entropy if from_logits else xent.binary_cross_entropy
    loss = fn(y_pred, y_true, **options)
    be = backend(loss)
    return be.sum(loss, axis) / shape(loss)[axis]


def binary_focal_crossentropy(y_true: Array, y_pred: Array, apply_class_balancing: bool = False,
                              alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                              label_smoothing: float = 0.0, axis: int = -1) -> Array:
    """``keras.losses.binary_focal_crossentropy``: ``(1-p_t)^γ·bce``, then the mean over ``axis``.

    Args:
      y_true: labels in ``[0, 1]``, same shape as ``y_pred``.
      y_pred: probabilities (``from_logits=False``; ``1 - p_t`` from them as
        given, the cross-entropy clipped, as Keras) or logits (then both in log
        space: Keras takes ``p_t`` from the sigmoid, whose gradient is NaN once
        it rounds to 1 for ``γ < 1``).
      apply_class_balancing: weigh positives ``alpha`` and negatives ``1 - alpha``.
      alpha: the class balance (used only with ``apply_class_balancing``).
      gamma: the focal exponent ``γ >= 0``.
      from_logits: whether ``y_pred`` are logits.
      label_smoothing: ``α_s``: ``y·(1-α_s) + α_s/2``, before ``p_t``.
      axis: the axis the elementwise losses are averaged over.

    Returns:
      ``y_pred.shape`` without ``axis``.

    >>> import numpy as np
    >>> y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
    >>> y_pred = np.array([[0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
    >>> binary_focal_crossentropy(y_true, y_pred, gamma=2.0).round(3)
    array([0.33 , 0.206], dtype=float32)
    """
    return _binary(y_true, y_pred, from_logits, axis, label_smoothing=label_smoothing, focal_gamma=gamma,
                   focal_alpha=alpha if apply_class_balancing else None)


# ------------------------------------------------ the loss classes' logic
def _reduce(loss: Array, reduction: str | None, sample_weight: Array | None, mask: Array | None) -> Array:
    """Keras' ``reduce_weighted_values``."""
    _check_reduction(reduction)
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


def _check_reduction(reduction: str | None) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. "
                         f"Received: reduction={reduction!r}")


class _Dialect:
    """What the classes add to a base (Keras' ``Loss`` or the plain one):
    the loss with its mask, the call in the inputs' own framework, the config."""

    name: str
    reduction: str | None
    _dtype_arg: Any

    def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
        raise NotImplementedError

    def call(self, y_true: Array, y_pred: Array) -> Array:
        """The per-sample losses (before ``sample_weight`` and the reduction)."""
        loss, mask = self._losses(y_true, y_pred)
        if mask is not None:
            _set_keras_mask(loss, mask)
        return loss

    def _dialect_call(self, y_true: Array, y_pred: Array, sample_weight: Array | None) -> Array:
        """The loss on any xent backend, in the predictions' framework and dtype."""
        y_pred = as_predictions(y_pred)
        dtype = self._dtype_arg  # (the plain classes: a float dtype's name)
        if dtype in FLOAT_DTYPES and is_float(y_pred):
            y_pred = np.asarray(y_pred).astype(dtype) if is_host(y_pred) else backend(y_pred).cast(y_pred, dtype)
        loss, mask = self._losses(y_true, y_pred)
        return _reduce(loss, self.reduction, sample_weight, mask)

    def _options(self) -> dict[str, Any]:
        raise NotImplementedError


class _PlainLoss:
    """The classes' base without Keras: ``__call__`` runs on any xent backend."""

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size",
                 dtype: Any = None) -> None:
        _check_reduction(reduction)
        self.name, self.reduction, self.dtype, self._dtype_arg = name, reduction, dtype, dtype

    def __call__(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:
        return self._dialect_call(y_true, y_pred, sample_weight)  # type: ignore[attr-defined]

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "reduction": self.reduction}
        if self._dtype_arg is not None:
            config["dtype"] = self._dtype_arg
        config.update(self._options())  # type: ignore[attr-defined]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<xent.compat.keras.{type(self).__name__} name={self.name!r}>"


def _define(base: type, doc_extra: str) -> dict[str, type]:
    """The Keras classes on ``base`` (written once, for both bases)."""

    class CategoricalCrossentropy(_Dialect, base):  # type: ignore[misc, valid-type]
        def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                     reduction: str | None = "sum_over_batch_size", name: str = "categorical_crossentropy",
                     dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

        def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
            y_true, y_pred = _same_rank(y_true, y_pred)
            return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing, self.axis), None

        def _options(self) -> dict[str, Any]:
            return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}

    class SparseCategoricalCrossentropy(_Dialect, base):  # type: ignore[misc, valid-type]
        def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                     reduction: str | None = "sum_over_batch_size", axis: int = -1,
                     name: str = "sparse_categorical_crossentropy", dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis

        def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
            y_true, y_pred = _same_rank(y_true, y_pred)
            return _sparse(y_true, y_pred, self.from_logits, self.ignore_class, self.axis)

        def _options(self) -> dict[str, Any]:
            return {"from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}

    class BinaryCrossentropy(_Dialect, base):  # type: ignore[misc, valid-type]
        def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                     reduction: str | None = "sum_over_batch_size", name: str = "binary_crossentropy",
                     dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

        def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
            y_true, y_pred = _same_rank(y_true, y_pred)
            return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing, self.axis), None

        def _options(self) -> dict[str, Any]:
            return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}

    class BinaryFocalCrossentropy(_Dialect, base):  # type: ignore[misc, valid-type]
        def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                     from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                     reduction: str | None = "sum_over_batch_size", name: str = "binary_focal_crossentropy",
                     dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.apply_class_balancing, self.alpha, self.gamma = apply_class_balancing, alpha, gamma
            self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

        def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
            y_true, y_pred = _same_rank(y_true, y_pred)
            return binary_focal_crossentropy(y_true, y_pred, self.apply_class_balancing, self.alpha, self.gamma,
                                             self.from_logits, self.label_smoothing, self.axis), None

        def _options(self) -> dict[str, Any]:
            return {"apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha, "gamma": self.gamma,
                    "from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}

    class CategoricalFocalCrossentropy(_Dialect, base):  # type: ignore[misc, valid-type]
        def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                     label_smoothing: float = 0.0, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                     name: str = "categorical_focal_crossentropy", dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.alpha, self.gamma = alpha, gamma
            self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

        def _losses(self, y_true: Array, y_pred: Array) -> tuple[Array, Array | None]:
            y_true, y_pred = _same_rank(y_true, y_pred)
            return categorical_focal_crossentropy(y_true, y_pred, self.alpha, self.gamma, self.from_logits,
                                                  self.label_smoothing, self.axis), None

        def _options(self) -> dict[str, Any]:
            return {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                    "label_smoothing": self.label_smoothing, "axis": self.axis}

    classes: dict[str, type] = {
        c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                BinaryFocalCrossentropy, CategoricalFocalCrossentropy)
    }
    for cls_name, cls in classes.items():
        cls.__qualname__ = cls_name
        cls.__module__ = __name__
        cls.__doc__ = _DOCS[cls_name] + doc_extra
    return classes


_COMMON_ARGS = """
    reduction: ``"sum_over_batch_size"`` (alias ``"mean"``: the sum over the
      number of elements, or over the kept ones with a mask), ``"sum"``,
      ``"mean_with_sample_weight"`` (the sum over the summed sample weights),
      ``"none"``/``None`` (per-sample losses).
    name: the loss's name.
    dtype: the dtype of the computation: a dtype name or a ``keras.DTypePolicy``
      (its ``compute_dtype``); ``None``: Keras' ``floatx()`` on Keras' backend
      tensors, the predictions' own dtype on other arrays.

  Call: ``loss(y_true, y_pred, sample_weight=None)``; ``sample_weight`` a scalar
  or broadcastable to the per-sample losses.

  Returns:
    A scalar, or the per-sample losses for ``reduction="none"``: Keras' backend
    tensor (``dtype``) on Keras' backend tensors or with an explicit ``dtype``,
    else an array of the predictions' framework and dtype.
"""

_DOCS = {
    "CategoricalCrossentropy": """``keras.losses.CategoricalCrossentropy``: one-hot or soft labels.

  Args:
    from_logits: whether ``y_pred`` are logits (else probabilities, renormalised
      and clipped to ``[1e-7, 1 - 1e-7]``).
    label_smoothing: ``α`` in ``[0, 1)``: labels ``y·(1-α) + α/C``.
    axis: the class axis of ``y_pred`` ``[..., C]``; ``y_true`` has its shape.
""" + _COMMON_ARGS + """
  >>> import numpy as np
  >>> from xent.compat.keras import CategoricalCrossentropy
  >>> y_true = np.array([[0, 1, 0], [0, 0, 1]])
  >>> y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
  >>> round(float(CategoricalCrossentropy()(y_true, y_pred)), 5)
  1.17694
""",
    "SparseCategoricalCrossentropy": """``keras.losses.SparseCategoricalCrossentropy``: integer labels.

  Args:
    from_logits: whether ``y_pred`` are logits (else probabilities, clipped to
      ``[1e-7, 1 - 1e-7]`` and renormalised).
    ignore_class: a label whose entries get loss 0 and leave the mean.
    axis: the class axis of ``y_pred`` ``[..., C, ...]``; ``y_true`` is its shape
      without ``axis`` (or with a size-1 ``axis``); float labels are truncated.
""" + _COMMON_ARGS + """
  >>> import numpy as np
  >>> from xent.compat.keras import SparseCategoricalCrossentropy
  >>> y_pred = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]], dtype=np.float32)
  >>> loss = SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
  >>> round(float(loss(np.array([0, -1]), y_pred)), 5)     # the mean over the one kept entry
  0.46437
""",
    "BinaryCrossentropy": """``keras.losses.BinaryCrossentropy``: elementwise, then the mean over ``axis``.

  Args:
    from_logits: whether ``y_pred`` are logits (else probabilities, clipped to
      ``[1e-7, 1 - 1e-7]``).
    label_smoothing: ``α`` in ``[0, 1)``: labels ``y·(1-α) + α/2``.
    axis: the axis averaged over; ``y_true`` has ``y_pred``'s shape ``[..., D]``
      (or lacks its trailing 1).
""" + _COMMON_ARGS + """
  >>> import numpy as np
  >>> from xent.compat.keras import BinaryCrossentropy
  >>> y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
  >>> y_pred = np.array([[-18.6, 0.51], [2.94, -12.8]], dtype=np.float32)
  >>> round(float(BinaryCrossentropy(from_logits=True)(y_true, y_pred)), 3)
  0.865
""",
}

_DOCS["BinaryFocalCrossentropy"] = """``keras.losses.BinaryFocalCrossentropy``: the focal binary
  cross-entropy, elementwise, then the mean over ``axis`` (:func:`binary_focal_crossentropy`).

  Args:
    apply_class_balancing: weigh positives ``alpha``, negatives ``1 - alpha``.
    alpha: the class balance, in ``[0, 1]``.
    gamma: the focal exponent ``γ >= 0``.
    from_logits: whether ``y_pred`` are logits (then computed in log space).
    label_smoothing: ``α_s`` in ``[0, 1)``: labels ``y·(1-α_s) + α_s/2``.
    axis: the axis averaged over.
""" + _COMMON_ARGS

_DOCS["CategoricalFocalCrossentropy"] = """``keras.losses.CategoricalFocalCrossentropy``:
  ``-alpha·Σ_c y_c·(1-p_c)^γ·log p_c`` (:func:`categorical_focal_crossentropy`).

  Args:
    alpha: the constant weight (Keras' default 0.25).
    gamma: the focal exponent ``γ >= 0``.
    from_logits: whether ``y_pred`` are logits (then exact, in log space).
    label_smoothing: ``α_s`` in ``[0, 1)``: labels ``y·(1-α_s) + α_s/C``.
    axis: the class axis.
""" + _COMMON_ARGS

_PLAIN_NOTE = "\n  (Keras is not installed: a plain class with Keras' signature, running on any xent backend.)\n"
_KERAS_NOTE = "\n  A ``keras.losses.Loss``, registered serialisable as ``\"xent>{name}\"``.\n"


# ------------------------------------------------------------ Keras classes
def _keras_classes() -> dict[str, type]:
    import keras
    from keras.src import backend as keras_backend
    from keras.src.losses.loss import reduce_weighted_values

    def native(x: Any) -> bool:
        return isinstance(x, (keras.KerasTensor, keras.Variable)) or keras.ops.is_tensor(x)

    class _KerasLoss(keras.losses.Loss):
        def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size",
                     dtype: Any = None) -> None:
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self._dtype_arg = dtype

        def __call__(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:
            if self._dtype_arg is not None or native(y_pred) or native(y_true):
                return super().__call__(y_true, y_pred, sample_weight=sample_weight)
            return self._dialect_call(y_true, y_pred, sample_weight)  # type: ignore[attr-defined]

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            if self._dtype_arg is not None:
                dtype = self._dtype_arg
                config["dtype"] = dtype if isinstance(dtype, str) else keras.dtype_policies.serialize(dtype)
            config.update(self._options())  # type: ignore[attr-defined]
            return config

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            return cls(**config)

    classes = _define(_KerasLoss, "")
    for cls_name, cls in classes.items():
        cls.__doc__ = (cls.__doc__ or "") + _KERAS_NOTE.format(name=cls_name)

    class XentLoss(keras.losses.Loss):
        def __init__(self, loss: str | Callable[..., Any] = "sparse_softmax_cross_entropy", *,
                     reduction: str | None = "sum_over_batch_size", name: str | None = None,
                     dtype: Any = None, **options: Any) -> None:
            fn_name = loss if isinstance(loss, str) else getattr(loss, "__name__", None)
            if fn_name not in XENT_LOSSES or (not isinstance(loss, str) and getattr(xent, fn_name) is not loss):
                raise ValueError(f"XentLoss takes one of xent's losses or its name, one of {XENT_LOSSES}. "
                                 f"Received: loss={loss!r}")
            fn = getattr(xent, fn_name)
            allowed = [p for p in inspect.signature(fn).parameters
                       if p not in ("reduction", "weights") and inspect.signature(fn).parameters[p].kind
                       == inspect.Parameter.KEYWORD_ONLY]
            for key in options:
                if key not in allowed:
                    why = ("Keras applies sample_weight and the reduction" if key in ("reduction", "weights")
                           else f"xent.{fn_name} takes {allowed}")
                    raise TypeError(f"XentLoss({fn_name!r}) got an unexpected option {key!r}: {why}")
            super().__init__(name=name or fn_name, reduction=reduction, dtype=dtype)
            self.loss = fn_name
            self.options = {k: _plain(v) for k, v in options.items()}
            self._dtype_arg = dtype

        def __call__(self, y_true: Array, y_pred: Array, sample_weight: Array | None = None) -> Array:
            if self.loss not in CLASS_ID_LOSSES:
                return super().__call__(y_true, y_pred, sample_weight=sample_weight)
            # Keras' Loss.__call__, except that class ids keep their integer dtype
            # (Keras casts labels to the loss dtype: bfloat16 cannot hold 257).
            in_mask = keras_backend.get_keras_mask(y_pred)
            with keras.name_scope(self.name):
                y_pred = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)
                y_true = keras.ops.convert_to_tensor(y_true)
                losses = self.call(y_true, y_pred)
                out_mask = keras_backend.get_keras_mask(losses)
                if in_mask is not None and out_mask is not None:
                    mask = in_mask & out_mask
                else:
                    mask = in_mask if out_mask is None else out_mask
                return reduce_weighted_values(losses, sample_weight=sample_weight, mask=mask,
                                              reduction=self.reduction, dtype=self.dtype)

        def call(self, y_true: Array, y_pred: Array) -> Array:
            """``xent.<loss>(y_pred, y_true, reduction="none", **options)``."""
            fn = getattr(xent, self.loss)
            if self.loss in CLASS_ID_LOSSES:
                y_true = _sparse_labels(y_true, y_pred, self.options.get("axis", -1))
                loss = fn(y_pred, y_true, reduction="none", **self.options)
                ignore = self.options.get("ignore_index")
                if ignore is not None:
                    _set_keras_mask(loss, like(y_true, loss) != ignore)
                return loss
            y_true, y_pred = _same_rank(y_true, y_pred)
            return fn(y_pred, y_true, reduction="none", **self.options)

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            config.update({"loss": self.loss, **self.options})
            if self._dtype_arg is not None:
                dtype = self._dtype_arg
                config["dtype"] = dtype if isinstance(dtype, str) else keras.dtype_policies.serialize(dtype)
            return config

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            return cls(**config)

        def __repr__(self) -> str:
            opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
            return f"XentLoss({self.loss!r}{opts}, reduction={self.reduction!r}, name={self.name!r})"

    XentLoss.__qualname__ = "XentLoss"
    XentLoss.__module__ = __name__
    XentLoss.__doc__ = _XENT_LOSS_DOC
    classes["XentLoss"] = XentLoss
    for cls_name, cls in classes.items():
        keras.saving.register_keras_serializable(package="xent", name=cls_name)(cls)
    return classes


def _plain(value: Any) -> Any:
    """An option as plain Python (lists for arrays), so the config is JSON."""
    if isinstance(value, (str, bool, int, float, type(None), list, tuple, dict)):
        return value
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    arr = np.asarray(value)
    return arr.tolist()


_XENT_LOSS_DOC = """A Keras loss that is one of xent's own losses, with xent's options.

  ``XentLoss(loss, **options)`` calls ``xent.<loss>(y_pred, y_true,
  reduction="none", **options)`` (xent's argument order: predictions first) and
  lets Keras apply ``sample_weight`` and its reduction.

  Args:
    loss: an xent loss or its name: ``"sparse_softmax_cross_entropy"``
      (default), ``"softmax_cross_entropy"``, ``"sigmoid_cross_entropy"``,
      ``"sparse_categorical_cross_entropy"``, ``"categorical_cross_entropy"``,
      ``"binary_cross_entropy"``.
    reduction: Keras' reduction of the per-entry losses (after
      ``sample_weight``): ``"sum_over_batch_size"``/``"mean"`` (default),
      ``"sum"``, ``"mean_with_sample_weight"``, ``"none"``/``None``.
    name: the loss's name (default: ``loss``).
    dtype: the dtype of the computation, a dtype name or a ``keras.DTypePolicy``
      (default: Keras' ``floatx()``).
    **options: the loss's own keyword options, e.g. ``ignore_index``,
      ``z_loss``, ``logit_softcap``, ``label_smoothing``, ``axis``,
      ``class_weights`` (a list), ``pos_weight``, ``epsilon``. Not ``weights``
      nor ``reduction``: Keras' ``sample_weight`` and ``reduction`` do that.

  Call: ``loss(y_true, y_pred, sample_weight=None)``, shapes as the xent loss:
  ``y_pred`` ``[..., C]`` (``C`` on ``axis``); for the class-id losses,
  ``y_true`` integer ids of ``y_pred``'s shape without ``axis`` (a size-1
  ``axis`` is squeezed, float ids truncated; ids keep their integer dtype),
  for the others ``y_true`` of ``y_pred``'s shape.

  The mean: ``ignore_index`` entries get loss 0 and Keras' mask, so
  ``"sum_over_batch_size"`` is ``Σ sample_weight·loss / (number of entries not
  ignored)``, 0 if every entry is ignored: without sample weights and class
  weights, exactly xent's ``reduction="mean"``. ``"mean_with_sample_weight"``
  divides by the sample weights summed over the entries not ignored.
  ``class_weights`` multiply each entry's loss but, as Keras'
  ``fit(class_weight=...)``, never enter the divisor (xent's own ``"mean"``
  divides by ``Σ class_weights[y]``).

  Returns:
    Keras' backend tensor in ``dtype``: a scalar, or the per-entry losses for
    ``reduction="none"``.

  >>> import numpy as np
  >>> from xent.compat.keras import XentLoss
  >>> loss = XentLoss("sparse_softmax_cross_entropy", ignore_index=-100, z_loss=1e-4)
  >>> y_pred = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]], dtype=np.float32)
  >>> round(float(loss(np.array([0, -100]), y_pred)), 5)    # the mean over the one kept entry
  0.46498
  >>> XentLoss.from_config(loss.get_config()).options
  {'ignore_index': -100, 'z_loss': 0.0001}

  Registered serialisable as ``"xent>XentLoss"``: ``model.compile(loss=XentLoss(...))``,
  ``model.save`` and ``keras.models.load_model`` work as with Keras' own losses.
"""


_classes: dict[str, type] = {}


def _build() -> dict[str, type]:
    if not _classes:
        if importlib.util.find_spec("keras") is not None:
            _classes.update(_keras_classes())
        else:
            _classes.update(_define(_PlainLoss, _PLAIN_NOTE))
    return _classes


def __getattr__(name: str) -> Any:
    if name in LAZY:
        classes = _build()
        if name not in classes:
            raise ImportError(f"xent.compat.keras.{name} needs Keras 3 (pip install keras)")
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY))


#: ``from xent.compat import keras; keras.losses.CategoricalCrossentropy(...)``
losses = sys.modules[__name__]

if sys.modules.get("keras") is not None:
    # Keras is imported already: register the classes now, so that
    # ``keras.models.load_model`` finds them without touching one first.
    _build()

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "SparseCategoricalCrossentropy",
    "XentLoss",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "losses",
    "sparse_categorical_crossentropy",
]

plain_python(globals(), __all__)
