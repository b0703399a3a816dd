"""``torch.nn.functional``'s cross-entropy functions, on any xent backend.

Same names, argument order (``input, target``), defaults and quirks as
PyTorch 2:

* the class dimension is 1 (0 for an unbatched ``(C,)`` input);
* ``ignore_index=-100`` by default, ``reduction="mean"``;
* ``"mean"`` with class ``weight`` divides by the summed weights of the targets
  (index targets) but by the number of elements for probability targets;
* a ``"mean"`` over no (weighted) target is **NaN**, as in PyTorch (xent's own
  functions give 0 there);
* ``binary_cross_entropy_with_logits``' ``"mean"`` divides by the number of
  elements, also with ``weight``;
* ``binary_cross_entropy`` clamps ``log`` at ``-100``;
* the legacy ``size_average``/``reduce`` arguments are honoured.

>>> import numpy as np
>>> from xent.compat import torch as F
>>> logits = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
>>> float(F.cross_entropy(logits, np.array([0, 2]), weight=np.array([1.0, 2.0, 3.0])).round(6))
0.246783
>>> float(F.cross_entropy(logits, np.array([-100, -100])))
nan

Differences, deliberate: any integer target dtype is accepted (torch: int64 or
uint8 only), a ``-inf`` logit under a zero probability target is finite
(torch: NaN), out-of-range targets raise ``ValueError`` (torch:
``IndexError``). ``nll_loss`` is not provided (it is not a cross-entropy of
logits).
"""

from __future__ import annotations

import math
from typing import Any

import xent
from xent.compat._common import as_predictions, backend, is_float, like, ndim, numel, safe_divide

Array = Any
_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """PyTorch's ``_Reduction.legacy_get_string``."""
    if size_average is None and reduce is None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _class_dim(x: Array) -> int:
    return 0 if ndim(x) == 1 else 1


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """``torch.nn.functional.cross_entropy``: softmax cross-entropy, classes on dim 1.

    Args:
      input: ``(N, C, d1, ...)`` or ``(C,)`` logits.
      target: class ids ``(N, d1, ...)`` (any integer dtype), or class
        probabilities of ``input``'s shape.
      weight: ``(C,)`` class weights.
      size_average, reduce: deprecated, as in PyTorch.
      ignore_index: a target id that contributes nothing (index targets only).
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.
      label_smoothing: ``α`` in ``[0, 1)``.

    Returns:
      Per-element losses (``"none"``) or a scalar, in ``input``'s dtype.

    Raises:
      ValueError: ``ignore_index`` other than -100 with probability targets,
        as PyTorch's RuntimeError; and xent's own argument checks.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input = as_predictions(input)
    dim = _class_dim(input)
    if is_float(target):
        if ignore_index != -100 and ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        y = like(target, input)
        if label_smoothing:
            num = backend(input).shape(input)[dim]
            y = y * (1.0 - label_smoothing) + label_smoothing / num
        if weight is not None:
            # torch weights each class term, and its mean stays ÷ N here
            be = backend(input)
            shape = [1] * ndim(input)
            shape[dim] = -1
            y = y * be.reshape(be.cast(like(weight, input), be.dtype_name(y)), tuple(shape))
        return xent.softmax_cross_entropy(input, y, axis=dim, reduction=reduction)
    loss = xent.sparse_softmax_cross_entropy(
        input, target, axis=dim, ignore_index=ignore_index, label_smoothing=label_smoothing,
        class_weights=weight, reduction="sum" if reduction == "mean" else reduction)
    if reduction != "mean":
        return loss
    # torch's mean: Σ loss / Σ weight[target] over kept targets; NaN when that is 0
    be = backend(input)
    t = like(target, input)
    keep = t != ignore_index
    if weight is None:
        den = be.sum(be.cast(keep, be.dtype_name(loss)))
    else:
        w = be.cast(like(weight, input), be.dtype_name(loss))
        den = be.sum(be.where(keep, be.take(w, be.where(keep, t, 0)), 0.0))
    return safe_divide(loss, den, loss, if_zero=math.nan)


def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Array:
    """``torch.nn.functional.binary_cross_entropy_with_logits``.

    Args:
      input: logits of any shape.
      target: same shape, in ``[0, 1]``.
      weight: elementwise weights broadcastable to ``input``.
      size_average, reduce: deprecated, as in PyTorch.
      reduction: ``"none"``, ``"mean"`` (÷ number of elements, also with
        ``weight``) or ``"sum"``.
      pos_weight: weight of the positive term, broadcast along the last dim.

    Returns:
      ``input.shape`` for ``"none"``, else a scalar.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input = as_predictions(input)
    loss = xent.sigmoid_cross_entropy(input, target, pos_weight=pos_weight, weights=weight,
                                      reduction="sum" if reduction == "mean" else reduction)
    if reduction == "mean":
        n = numel(input)
        return loss / n if n else loss * math.nan
    return loss


def binary_cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """``torch.nn.functional.binary_cross_entropy`` from probabilities.

    ``-w·(y·max(log p, -100) + (1-y)·max(log(1-p), -100))``: PyTorch clamps the
    logs at -100 (Keras and :func:`xent.binary_cross_entropy` clip ``p`` at 1e-7
    instead), so ``p = 0`` with ``y = 1`` costs 100.

    Args:
      input: probabilities in ``[0, 1]``, any shape.
      target: same shape, in ``[0, 1]``.
      weight: elementwise weights broadcastable to ``input``.
      size_average, reduce: deprecated, as in PyTorch.
      reduction: ``"none"``, ``"mean"`` (÷ number of elements) or ``"sum"``.

    Returns:
      ``input.shape`` for ``"none"``, else a scalar.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input = as_predictions(input)
    be = backend(input)
    dtype = be.dtype_name(input)
    compute = "float32" if dtype in ("float16", "bfloat16") else dtype
    p = be.cast(input, compute)
    y = be.cast(like(target, input), compute)
    with be.errstate():
        log_p = be.clip(be.log(p), -100.0, math.inf)
        log_q = be.clip(be.log(1.0 - p), -100.0, math.inf)
        loss = -(y * log_p + (1.0 - y) * log_q)
        if weight is not None:
            loss = loss * be.cast(like(weight, input), compute)
        if reduction == "sum":
            loss = be.sum(loss)
        elif reduction == "mean":
            n = numel(input)
            loss = be.sum(loss) / n if n else be.sum(loss) * math.nan
    return be.cast(loss, dtype)


__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy"]
