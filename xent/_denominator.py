"""``xent.loss_denominator``: what a loss call's ``"mean"`` divides by, without
computing the loss, for a global mean across micro-batches and ranks."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np

from xent import _frontend as fe

Array = Any

#: each loss: its predictions' name, whether its loss has a class axis
#: removed, and whether its labels are class ids (a mean over kept entries).
_KINDS = {
    "softmax_cross_entropy": ("logits", True, False),
    "sparse_softmax_cross_entropy": ("logits", True, True),
    "sigmoid_cross_entropy": ("logits", False, False),
    "categorical_cross_entropy": ("probs", True, False),
    "sparse_categorical_cross_entropy": ("probs", True, True),
    "binary_cross_entropy": ("probs", False, False),
    "linear_cross_entropy": ("hidden", True, True),
}


def loss_denominator(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Array:
    """What ``fn(*args, **kwargs)`` with ``reduction="mean"`` divides its sum by.

    ``Σ W`` over the loss's entries, ``W`` = sample weight × class weight of
    the label × (label is not ``ignore_index``): the number of kept tokens
    for a plain sparse loss. Computed from the labels and weights only: the
    predictions' values are never read (nor their gradient formed), so it is
    cheap. Labels are validated as the loss validates them.

    Summing ``fn(..., reduction="mean", normalizer=D)`` over micro-batches and
    ranks, with ``D`` the sum of every micro-batch's ``loss_denominator``
    (all-reduced across data-parallel ranks), gives exactly the mean over the
    whole global batch, whatever each micro-batch keeps.

    Args:
      fn: one of xent's losses (``xent.sparse_softmax_cross_entropy``, ...,
        ``xent.linear_cross_entropy``).
      *args, **kwargs: the loss call's own arguments (``reduction`` and
        ``normalizer`` are ignored).

    Returns:
      A 0-d array of the predictions' framework (their compute dtype: float32
      for half inputs), on their device.

    Raises:
      TypeError: ``fn`` is not one of xent's losses; and as the loss raises for
      its arguments.

    >>> import numpy as np, xent
    >>> logits = np.zeros((4, 3), np.float32)
    >>> labels = np.array([0, -100, 2, -100])
    >>> float(xent.loss_denominator(xent.sparse_softmax_cross_entropy, logits, labels, ignore_index=-100))
    2.0
    """
    name = getattr(fn, "__name__", None)
    if name not in _KINDS or getattr(fn, "__module__", "").split(".")[0] != "xent":
        raise TypeError(f"loss_denominator takes one of xent's losses; received {fn!r}")
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    pred_name, class_axis, class_ids = _KINDS[name]
    p = fe.predictions(a[pred_name], pred_name, cast=False)
    be = p.backend
    if name == "linear_cross_entropy":
        if len(p.shape) == 0:
            raise ValueError(f"hidden must be [..., H], at least 1-D; received hidden.shape={p.shape}")
        axis = len(p.shape) - 1
        num = be.shape(fe._same_framework(p, a["weight"], "weight"))[0]
    elif class_axis:
        axis = fe.normalize_axis(p, a["axis"])
        num = fe.num_classes(p, axis)
    loss_shape = p.shape[:axis] + p.shape[axis + 1 :] if class_axis else p.shape
    static = None if None in loss_shape else tuple(int(d) for d in loss_shape if d is not None)
    w = None
    if a.get("weights") is not None:
        w = fe.broadcast_operand(p, a["weights"], "weights", loss_shape, "the loss shape")
    with be.errstate():
        if class_ids:
            axis_name = "hidden" if name == "linear_cross_entropy" else "class"
            y = fe.sparse_labels(p, a["labels"], axis, num, a.get("ignore_index"), axis_name=axis_name)
            den = be.cast(be.ones_like(y.safe), p.compute_dtype)
            if a.get("class_weights") is not None:
                den = den * be.take(fe.class_weight_vector(p, a["class_weights"], num), y.safe)
            if y.keep is not None:
                den = be.where(y.keep, den, 0.0)
        elif static is not None:
            den = be.asarray(np.ones(static, np.dtype(p.compute_dtype)), like=p.value)
        else:  # (a dimension unknown until run time: the labels carry the shape)
            ones = be.ones_like(fe.float_labels(p, a["labels"]))
            den = be.sum(ones, axis) * 0.0 + 1.0 if class_axis else ones
        if w is not None:
            den = den * w
        if not class_ids and w is None and static is not None:
            return be.asarray(np.asarray(math.prod(static), np.dtype(p.compute_dtype)), like=p.value)
        return be.sum(den)
