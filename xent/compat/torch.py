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

Also :func:`linear_cross_entropy` (``torch.nn.functional.linear_cross_entropy``
of PyTorch 2.13, on xent's chunked :func:`xent.linear_cross_entropy`), and
``nn``: the loss *modules* ``CrossEntropyLoss``, ``BCEWithLogitsLoss``,
``BCELoss``, ``LinearCrossEntropyLoss`` (subclasses of torch's, so the same
constructor, buffers and ``state_dict``) and ``XentLoss`` (any xent loss with
xent's own options, as a module). ``nn`` needs PyTorch and imports it on first
access; the functions above do not.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from typing import Any, cast

import xent
from xent._frontend import Reduction
from xent.backends._base import HALF_DTYPES
from xent.compat._common import as_predictions, backend, is_float, like, ndim, numel, plain_python, safe_divide
from xent.compat._common import shape as shape_of

Array = Any
_REDUCTIONS = ("none", "mean", "sum")


def _xent_reduction(reduction: str) -> Reduction:
    """The reduction xent computes for torch's: a torch mean is a sum that the
    caller divides itself (its divisors differ from xent's)."""
    return cast(Reduction, "sum" if reduction == "mean" else reduction)


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


def _mean_over(total: Array, input: Array) -> Array:
    """``total`` divided by the number of elements of ``input`` (NaN for none, as
    torch); counted at run time where a dimension is unknown (tf.function)."""
    n = numel(input)
    if isinstance(n, int):
        return total / n if n else total * math.nan
    return safe_divide(total, n, total, if_zero=math.nan)


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
        return xent.softmax_cross_entropy(input, y, axis=dim, reduction=cast(Reduction, reduction))
    loss = xent.sparse_softmax_cross_entropy(
        input, target, axis=dim, ignore_index=ignore_index, label_smoothing=label_smoothing,
        class_weights=weight, reduction=_xent_reduction(reduction))
    if reduction != "mean":
        return loss
    return _index_mean(loss, target, weight, ignore_index, input)


def _index_mean(total: Array, target: Array, weight: Array | None, ignore_index: int, ref: Array) -> Array:
    """torch's mean over index targets: ``Σ loss / Σ weight[target]`` over the
    kept targets (their count without ``weight``); NaN when that is 0."""
    be = backend(ref)
    t = like(target, ref)
    keep = t != ignore_index
    if weight is None:
        den = be.sum(be.cast(keep, be.dtype_name(total)))
    else:
        w = be.cast(like(weight, ref), be.dtype_name(total))
        # (clipped: an out-of-range target has made the loss NaN already, and
        # an index past the weights is a device assert on an accelerator)
        index = be.clip(be.where(keep, t, 0), 0, be.shape(w)[0] - 1)
        den = be.sum(be.where(keep, be.take(w, index), 0.0))
    return safe_divide(total, den, total, if_zero=math.nan)


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
                                      reduction=_xent_reduction(reduction))
    if reduction == "mean":
        return _mean_over(loss, input)
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
    compute = "float32" if dtype in HALF_DTYPES else dtype
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
            loss = _mean_over(be.sum(loss), input)
    return be.cast(loss, dtype)


def linear_cross_entropy(
    input: Array,
    linear_weight: Array,
    target: Array,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: Any = None,
) -> Array:
    """``torch.nn.functional.linear_cross_entropy`` (PyTorch 2.13), chunked.

    ``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)``
    with torch's argument names, order, defaults, checks and reductions, on
    :func:`xent.linear_cross_entropy`: the ``(N, C)`` logits are never held
    whole, whatever ``options`` is (torch chunks only with ``options``), and
    the gradients of ``input``, ``linear_weight`` and ``linear_bias`` are
    computed chunk by chunk (also under ``torch.compile(fullgraph=True)``).
    Probability targets and a K-dimensional ``linear_weight`` take torch's
    reference path: the logits, then :func:`cross_entropy`.

    Args:
      input: ``(H,)`` or ``(N, H)`` floating point (``H`` = in_features).
      linear_weight: ``(C, H)`` (``torch.nn.Linear(H, C).weight``), or
        ``(C, d1, ..., dK, H)`` for a K-dimensional loss (batched input only).
      target: class ids ``()``/``(N,)``/``(N, d1, ..., dK)``, any integer
        dtype; or class probabilities of the logits' shape ``(C,)``/``(N, C,
        d1, ..., dK)``.
      linear_bias: ``(C,)`` (``(C, d1, ..., dK)``), keyword only.
      weight: ``(C,)`` class weights (constants: no gradient flows into them).
      reduction: ``"none"``, ``"mean"`` (÷ Σ weight[target] over the kept
        targets; NaN over none) or ``"sum"``.
      ignore_index: a target id that contributes nothing; ``None`` (default)
        means -100 for index targets and must stay ``None`` for
        probability targets.
      label_smoothing: ``α`` in ``[0, 1)``.
      options: ``torch.nn.LinearCrossEntropyOptions`` or None; only its
        ``batch_chunk_size`` is used: rows per chunk, where None (also
        ``options=None``) means xent's default, the largest power of two with
        ``rows × C <= 2**27``. Its other fields are ignored (half-precision
        gradients are always accumulated in float32, and the backward pass
        may run more than once). Any object with that attribute will do:
        this function does not import torch.

    Returns:
      Per-target losses (``"none"``), else a scalar, in ``input``'s dtype.

    Raises:
      ValueError: where torch raises RuntimeError (input not 1-D or 2-D,
        mismatched ``in_features``, bias shape, ``ignore_index`` with
        probability targets) and xent's own checks (out-of-range targets).
      TypeError: ``linear_weight`` of another dtype than ``input``.

    >>> import numpy as np
    >>> from xent.compat import torch as F
    >>> h = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> W = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    >>> float(F.linear_cross_entropy(h, W, np.array([2, 1, -100])).round(6))
    0.451608
    >>> float(F.cross_entropy(h @ W.T, np.array([2, 1, -100])).round(6))
    0.451608
    """
    input = as_predictions(input)
    dims = ndim(input)
    if dims not in (1, 2):
        raise ValueError(f"expected input with dimensionality 1 or 2, got {dims}")
    w_shape = shape_of(linear_weight)
    if len(w_shape) < 2:
        raise ValueError(f"expected linear_weight with dimensionality at least 2, got {len(w_shape)}")
    in_shape = shape_of(input)
    in_features = in_shape[-1]
    if in_features != w_shape[-1]:
        raise ValueError(
            "expected equal input and linear_weight last dimensions (in_features), "
            f"got {in_features} and {w_shape[-1]}, respectively")
    num_classes, out_features = w_shape[0], tuple(w_shape[1:-1])
    if linear_bias is not None and tuple(shape_of(linear_bias)) != (num_classes, *out_features):
        raise ValueError(f"expected linear_bias shape {(num_classes, *out_features)}, "
                         f"got {tuple(shape_of(linear_bias))}")
    if out_features and dims == 1:
        raise ValueError(f"K-dimensional loss defined by linear_weight shape {tuple(w_shape)} requires "
                         f"batched input, (N, {in_features}), got unbatched input with shape {tuple(in_shape)}")
    logits_shape = (*in_shape[:-1], num_classes, *out_features)
    probabilities = tuple(shape_of(target)) == logits_shape
    if probabilities and ignore_index is not None:
        raise ValueError("ignore_index cannot be specified when target contains probabilities")
    ignore_index = -100 if ignore_index is None else ignore_index
    reduction = _legacy_reduction(None, None, reduction)
    if probabilities or out_features:
        # torch's reference path: the logits, then cross_entropy
        be = backend(input)
        logits = _linear(be, be.reshape(input, (-1, in_features)),
                         be.reshape(like(linear_weight, input), (-1, in_features)))
        if linear_bias is not None:
            logits = logits + be.reshape(like(linear_bias, input), (-1,))
        return cross_entropy(be.reshape(logits, logits_shape), target, weight=weight,
                             ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    chunk = None if options is None else getattr(options, "batch_chunk_size", None)
    loss = xent.linear_cross_entropy(
        input, like(linear_weight, input), target,
        bias=None if linear_bias is None else like(linear_bias, input), ignore_index=ignore_index,
        label_smoothing=label_smoothing, class_weights=weight,
        reduction=_xent_reduction(reduction), chunk_size=chunk)
    if reduction != "mean":
        return loss
    return _index_mean(loss, target, weight, ignore_index, input)


def _linear(be: Any, x: Array, w: Array) -> Array:
    """``x @ w.T`` for ``x`` ``[N, H]`` and ``w`` ``[K, H]`` of one framework."""
    if be.name == "tensorflow":  # no array-API namespace there
        import tensorflow as tf

        return tf.linalg.matmul(x, w, transpose_b=True)
    xp = be.namespace(x)
    return xp.matmul(x, xp.permute_dims(w, (1, 0)))


__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "linear_cross_entropy"]


def __getattr__(name: str) -> Any:
    # ``nn`` (the loss modules) subclasses torch's: built, and torch imported,
    # on first access only, so that importing this dialect imports no framework.
    if name == "nn":
        import torch  # noqa: F401  (a clear ModuleNotFoundError without PyTorch)

        return importlib.import_module("xent.compat._torch_nn")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # ``nn`` only where it can be had: tools that getattr every name (pydoc,
    # inspect.getmembers) must not fail on a NumPy-only install.
    extra = ["nn"] if importlib.util.find_spec("torch") is not None else []
    return sorted([*globals(), *extra])

plain_python(globals(), __all__)


def kl_div(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Array:
    """``torch.nn.functional.kl_div``: ``target·(log target - input)`` elementwise.

    ``input`` holds log-probabilities and is used as it is (not normalised);
    ``target`` probabilities, or log-probabilities with ``log_target=True``
    (then ``exp(target)·(target - input)``). An element whose target
    probability is 0 contributes 0, also where ``input`` is ``-inf`` or (with
    ``log_target``) ``target`` is: torch gives NaN there (``0·inf``), and its
    derivative with respect to ``target`` there is 0 (torch: ``-inf``).
    Elementwise, not over a class axis, so it is computed here with
    :func:`xent.kl_divergence`'s guarded product rather than through it; for
    two sets of logits call :func:`xent.kl_divergence` itself. Half inputs are
    computed in float32; the result has ``input``'s dtype. ``"mean"`` does not
    warn (torch warns that it divides by the number of elements, not the batch).

    Args:
      input: log-probabilities, any shape.
      target: the same shape (or broadcastable), probabilities or log-probabilities.
      size_average, reduce: deprecated, as in PyTorch (they override ``reduction``,
        but ``"batchmean"`` still divides by the batch size).
      reduction: ``"none"``, ``"batchmean"`` (sum ÷ ``input.shape[0]``: the
        mathematical KL per sample for ``(N, C)`` input), ``"sum"`` or
        ``"mean"`` (÷ the number of elements).
      log_target: whether ``target`` is in log space.

    Returns:
      The elementwise losses (``"none"``) or a scalar, in ``input``'s dtype.

    Raises:
      ValueError: an unknown ``reduction``.
      TypeError: non-floating ``input``.

    >>> import numpy as np
    >>> from xent.compat import torch as F
    >>> log_p = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    >>> q = np.array([[0.4, 0.6, 0.0], [0.1, 0.2, 0.7]])
    >>> float(F.kl_div(log_p, q, reduction="batchmean").round(6))
    0.218012
    """
    from xent._divergence import kl_pointwise
    from xent.backends._base import FLOAT_DTYPES

    if size_average is not None or reduce is not None:
        how = _legacy_reduction(size_average, reduce, "mean")
    else:
        how = "sum" if reduction == "batchmean" else _legacy_reduction(None, None, reduction)
    input = as_predictions(input)
    be = backend(input)
    dtype = be.dtype_name(input)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"kl_div expects floating point input; received input.dtype={dtype}")
    compute = "float32" if dtype in HALF_DTYPES else dtype
    x = be.cast(input, compute)
    t = be.cast(like(target, input), compute)
    with be.errstate():
        loss = kl_pointwise(be, be.exp(t), t, x) if log_target else kl_pointwise(be, t, be.log(t), x)
        if how == "sum":
            loss = be.sum(loss)
        elif how == "mean":
            loss = _mean_over(be.sum(loss), loss)
        if reduction == "batchmean" and ndim(input) != 0:
            loss = _per_row(loss, input)
    return be.cast(loss, dtype)


def _per_row(total: Array, input: Array) -> Array:
    """``total / input.shape[0]`` (NaN for an empty batch, as torch); the batch
    counted at run time where its size is unknown (tf.function)."""
    rows = shape_of(input)[0]
    if isinstance(rows, int):
        return total / rows if rows else total * math.nan
    rest = math.prod(int(d) for d in shape_of(input)[1:])
    return safe_divide(total, numel(input), total, if_zero=math.nan) * rest


__all__ += ["kl_div"]
plain_python(globals(), ["kl_div"])
