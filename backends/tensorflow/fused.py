"""TensorFlow: the fused rung of the dispatch ladder (``Backend.fused_sparse``,
``fused_sigmoid``): tf.nn's own ops where their semantics are exactly xent's.
(No ``fused_dense``: small dense calls gain nothing from tf.nn's op, and from
2¹⁵ logits on the compiled call is faster, also under a gradient tape.)"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import record
from tensorflow.python.ops import gen_array_ops, gen_math_ops, gen_nn_ops

from .._base import Array, Backend, plain_sparse
from .compile_cache import running_eagerly
from .traced import reduced_binary_nll

_FUSED_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)
_HALF = (tf.float16, tf.bfloat16)
_FUSED_LABELS = (tf.int32, tf.int64)
#: the sparse loss's fused eager op (fused_sparse) up to this many logits;
#: from here on the compiled call, once hot, is faster, forward and under a
#: gradient tape (4096×32000 float32 forward+backward: 213 ms against the
#: fused op's 591, ``xent bench --backends tensorflow --losses sparse``).
COMPILE_MIN = 1 << 15
#: TF's own test for "a GradientTape or ForwardAccumulator is recording"
_taping = record.could_possibly_record


@functools.lru_cache(maxsize=None)
def _axis0() -> Any:
    """The reductions' axis as a host tensor, made once (converting a Python
    0 costs more than the reduction itself on small inputs)."""
    with tf.device("/CPU:0"):
        return tf.constant(0)


@functools.lru_cache(maxsize=None)
def _zero(dtype: Any) -> Any:
    """A host scalar 0 of ``dtype``, made once (``tf.zeros`` costs more than
    the select it feeds on small inputs)."""
    with tf.device("/CPU:0"):
        return tf.constant(0, dtype)


def _sparse_ops(logits: Array, labels: Array, reduction: str, wide: bool = False, keep: Array | None = None,
                zero: Array | None = None) -> Array:
    """tf.nn's fused sparse op and its reduction as the raw generated ops:
    ``tf.nn.sparse_softmax_cross_entropy_with_logits``'s Python wrapper (its
    shape checks and name scopes) costs more than its kernel on small inputs,
    and so does ``tf.reduce_mean``'s axis computation. Any rank but 2 is
    reshaped to the op's ``[N, C]``, once the labels' shape is checked. Half
    types are computed in float32 and rounded once, as everywhere in xent.

    Under a gradient tape the ops run unrecorded and the call is recorded as
    one operation (:func:`_record`): a tape records each op with a Python
    gradient function, which on small inputs costs more than the ops.
    ``wide``: half types' result left in float32 (the caller rounds it).
    ``keep`` (with ``"none"``): rows outside it give 0 and no gradient,
    whatever their logits hold. ``zero`` (with ``"none"``): rows whose
    weight is 0, whose infinite loss gives 0 (``Backend.weigh``: the
    caller's product with the weight is then 0, not ``0·inf``; their
    gradient is 0 through that product)."""
    if not isinstance(logits, tf.Tensor):  # a variable: its read, recorded as the tape watches it
        logits = tf.convert_to_tensor(logits)
    given = logits
    shape = labels.shape
    flat = logits.shape.rank != 2
    if flat:
        if shape != logits.shape[:-1]:
            raise ValueError("labels.shape must be logits.shape[:-1]")  # (the general path explains)
        logits = gen_array_ops.reshape(logits, [-1, logits.shape[-1]])
        labels = gen_array_ops.reshape(labels, [-1])
        keep = None if keep is None else gen_array_ops.reshape(keep, [-1])
        zero = None if zero is None else gen_array_ops.reshape(zero, [-1])
    dtype = logits.dtype
    taping = _taping()
    with record.stop_recording() if taping else contextlib.nullcontext():
        if dtype in _HALF:
            logits = gen_math_ops.cast(logits, tf.float32)
        loss, backprop = gen_nn_ops.sparse_softmax_cross_entropy_with_logits(features=logits, labels=labels)
        raw = loss
        if reduction == "mean":
            loss = gen_math_ops.mean(loss, _axis0())
        elif reduction == "sum":
            loss = gen_math_ops._sum(loss, _axis0())
        if keep is not None:
            loss = gen_math_ops.select_v2(keep, loss, _zero(loss.dtype))
        if zero is not None:
            lost = gen_math_ops.logical_and(zero, gen_math_ops.is_inf(loss))
            loss = gen_math_ops.select_v2(lost, _zero(loss.dtype), loss)
        if flat and reduction == "none":
            loss = gen_array_ops.reshape(loss, shape)
        if dtype in _HALF and not wide:
            loss = gen_math_ops.cast(loss, dtype)
    if taping:
        _record(loss, given, labels, backprop, reduction, None if keep is None else (keep, raw))
    return loss


def _record(loss: Array, logits: Array, labels: Array, backprop: Array, reduction: str,
            kept: tuple[Array, Array] | None = None) -> None:
    """Record ``loss`` of ``logits`` on the active tapes as one operation. Its
    gradient is the fused op's own ``softmax - onehot`` (``backprop``, float32)
    scaled by the loss's cotangent. Where a tape records the gradient itself
    (a second derivative), the gradient is built from ``softmax`` of the logits
    instead, so that it is differentiable in them.

    ``kept``: ``(keep, the op's per-row loss)`` for ``"none"`` with rows
    masked out: those rows' gradient is 0 whatever ``backprop`` holds there
    (NaN for NaN logits), by one ``mul_no_nan`` with the per-row cotangent
    set to 0 outside ``keep``, not a select over the logits and a product. A
    kept row whose op loss is NaN keeps a NaN cotangent (its gradient is NaN
    as ``backprop·g`` is, also where ``g`` is 0); every other kept row's
    ``backprop`` is finite, so ``mul_no_nan`` is the plain product there."""
    rows = int(backprop.shape[0])
    work = backprop.dtype  # (float32 for half logits)

    def backward(grad: Array) -> list[Array]:
        g = gen_math_ops.cast(grad, work) if grad.dtype != work else grad
        if reduction == "none":
            g = gen_array_ops.reshape(g, [-1])
        elif reduction == "mean":
            g = g / rows
        if _taping():  # differentiated again: the same value from differentiable ops
            z = tf.reshape(tf.cast(logits, work), [-1, logits.shape[-1]])
            d = tf.nn.softmax(z) - tf.one_hot(labels, z.shape[-1], dtype=work)
            if kept is not None:
                d = tf.where(kept[0][:, None], d, tf.zeros((), work))
            out = d * (g[:, None] if reduction == "none" else g)
        elif kept is not None:
            keep, raw = kept
            nan = gen_math_ops.is_nan(raw)
            g = gen_math_ops.select_v2(keep, gen_math_ops.select_v2(nan, raw, g), _zero(work))
            out = gen_math_ops.mul_no_nan(backprop, gen_array_ops.expand_dims(g, -1))
        else:
            out = backprop * (gen_array_ops.expand_dims(g, -1) if reduction == "none" else g)
        if logits.shape.rank != 2:
            out = gen_array_ops.reshape(out, logits.shape)
        return [gen_math_ops.cast(out, logits.dtype) if logits.dtype in _HALF else out]

    record.record_operation("XentSparseSoftmaxCrossEntropy", [loss], [logits], backward)


def fused_sparse(
    be: Backend, logits: Array, labels: Array, *, axis: Any, reduction: Any, ignore_index: Any,
    label_smoothing: Any = 0.0, class_weights: Any = None, weights: Any = None,
) -> Array | None:
    # tf.nn's fused op and tf.reduce_mean/sum, the native anchor's two ops,
    # in eager mode (under tf.function out-of-range labels must give NaN,
    # which the general path arranges), as their raw ops (_sparse_ops).
    # On the CPU the op raises for a bad label (TF also logs a warning
    # line): the general path then runs and names the bad labels. On
    # accelerators the op gives NaN there, as ours. (Checking labels on the
    # host first instead costs more than it saves: the gap lets TF's thread
    # pool fall asleep between the two ops.)
    if (
        (ignore_index is not None and type(ignore_index) is not int)
        or not plain_sparse(label_smoothing, None)  # (tf.nn has no smoothing)
        or type(axis) is not int
        or not isinstance(labels, tf.Tensor)
        or labels.dtype not in _FUSED_LABELS
        or logits.dtype not in _FUSED_DTYPES
        or not tf.executing_eagerly()
    ):
        return None
    rank = logits.shape.rank
    if not rank or axis not in (-1, rank - 1):
        return None  # (a shape mismatch makes the op raise: the general path explains)
    if logits.shape.num_elements() >= COMPILE_MIN and not running_eagerly():
        # The compiled call, once hot, is faster, also under a tape (XLA
        # fuses the gradient into one pass; until the signature is hot, its
        # op-by-op calls take the fused op).
        return None
    if reduction not in ("none", "sum", "mean") or (reduction == "mean" and not labels.shape.num_elements()):
        return None
    w, sw = class_weights, weights
    if (w is not None and not _float_tensor(w, logits.shape[-1:])) or (
        sw is not None and not _float_tensor(sw, labels.shape)
    ):
        return None  # (broadcast weights, and what the general path rejects or converts, go there)
    if ignore_index is not None and not _fits(ignore_index, labels.dtype):
        ignore_index = None  # (no label of this dtype can equal it: nothing is ignored)
    try:
        if ignore_index is None and w is None and sw is None:
            return _sparse_ops(logits, labels, reduction)
        return _weighted_ops(be, logits, labels, reduction, ignore_index, w, sw)
    except (tf.errors.InvalidArgumentError, ValueError):  # bad labels or shapes
        return None


def _float_tensor(x: Any, shape: Any) -> bool:
    """Whether ``x`` is a tensor of a fused dtype and exactly ``shape``."""
    return isinstance(x, tf.Tensor) and x.dtype in _FUSED_DTYPES and x.shape == shape


def _may_hold_zero(be: Backend, weights: Array) -> bool:
    """Whether ``weights`` may hold a 0: read on the host where that is
    free (``Backend.can_inspect``; the usual answer, no, spares the guard's
    ops), else assumed (no device sync)."""
    return not be.can_inspect(weights) or bool((weights.numpy() == 0).any())


def _fits(value: int, dtype: Any) -> bool:
    """Whether the integer ``value`` is one of ``dtype``'s."""
    info = np.iinfo(dtype.as_numpy_dtype)
    return int(info.min) <= value <= int(info.max)


def _weighted_ops(be: Backend, logits: Array, labels: Array, reduction: str, ignore_index: int | None,
                  class_weights: Array | None, weights: Array | None = None) -> Array:
    """:func:`_sparse_ops` with ``ignore_index``, class weights and sample
    ``weights`` (the labels' shape), xent's weighted mean
    (docs/semantics.md): each kept row's loss times its label's class weight
    and its sample weight, the mean over the kept rows' total weight, 0 where
    that is 0, an infinite loss under a zero weight 0 (``Backend.weigh``).
    Ignored rows' labels are replaced by 0 before the op, and their losses
    and gradients by 0 after it, so whatever they hold gives neither a NaN nor
    a bad-label error. Raw ops, as in _sparse_ops; the weighting is recorded
    op by op (weights that a tape watches get their gradient)."""
    dtype = logits.dtype
    work = tf.float32 if dtype in _HALF else dtype
    keep = None
    if ignore_index is not None:
        keep = gen_math_ops.not_equal(labels, tf.constant(ignore_index, labels.dtype))
        labels = gen_math_ops.select_v2(keep, labels, _zero(labels.dtype))
    weight = zero = None
    if class_weights is not None:
        w = class_weights if class_weights.dtype == work else gen_math_ops.cast(class_weights, work)
        weight = gen_array_ops.gather_v2(w, labels, _axis0())
    if weights is not None:
        w = weights if weights.dtype == work else gen_math_ops.cast(weights, work)
        weight = w if weight is None else gen_math_ops.mul(weight, w)
    if weight is not None and _may_hold_zero(be, weight):
        zero = gen_math_ops.equal(weight, _zero(work))
    rows = _sparse_ops(logits, labels, "none", wide=True, keep=keep, zero=zero)
    if keep is not None:
        kept = gen_math_ops.cast(keep, work)
        weight = kept if weight is None else gen_math_ops.mul(weight, kept)
    loss = gen_math_ops.mul(rows, weight)
    if reduction != "none":
        everything = tf.range(loss.shape.rank) if loss.shape.rank != 1 else _axis0()
        loss = gen_math_ops._sum(loss, everything)
        if reduction == "mean":
            loss = gen_math_ops.div_no_nan(loss, gen_math_ops._sum(weight, everything))
    return gen_math_ops.cast(loss, dtype) if dtype in _HALF else loss

def fused_sigmoid(be: Backend, logits: Array, labels: Array, *, reduction: Any) -> Array | None:
    # Traced (under tf.function, and so in every compiled eager call), a sum
    # or mean: the loss with its reduction and closed-form derivatives
    # (_reduced_binary_nll). Elementwise, or eagerly, the general path.
    if (
        tf.executing_eagerly()
        or reduction not in ("sum", "mean")
        or not (isinstance(logits, tf.Tensor) and isinstance(labels, tf.Tensor))
        or logits.dtype not in _FUSED_DTYPES
        or labels.dtype != logits.dtype
        or not logits.shape.is_fully_defined()
        or labels.shape != logits.shape
        or not logits.shape.num_elements()
    ):
        return None
    dtype = logits.dtype
    narrow = dtype.name if dtype in _HALF else None
    if narrow:  # computed in float32 and rounded once, as everywhere in xent
        logits, labels = tf.cast(logits, tf.float32), tf.cast(labels, tf.float32)
    scale = 1.0 / logits.shape.num_elements() if reduction == "mean" else 1.0
    loss = reduced_binary_nll(be, logits, labels, scale, narrow)
    return loss if dtype == logits.dtype else tf.cast(loss, dtype)
