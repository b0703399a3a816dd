"""TensorFlow: the fused rung of the dispatch ladder (``Backend.fused_sparse``,
``fused_dense``, ``fused_sigmoid``): tf.nn's own ops where their semantics are
exactly xent's."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from .._base import Array, Backend, plain_sparse
from .compile_cache import running_eagerly
from .traced import reduced_binary_nll

_FUSED_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)
_HALF = (tf.float16, tf.bfloat16)
_FUSED_LABELS = (tf.int32, tf.int64)
#: the sparse loss's fused eager op (fused_sparse) up to this many logits, and
#: beyond them under a gradient tape (float32/64); from here on the compiled
#: call is faster.
COMPILE_MIN = 1 << 15
#: the dense loss under a gradient tape takes tf.nn's fused op (fused_dense)
#: from this many logits on (float32/64); below, the compiled call is faster.
DENSE_FUSED_MIN = 1 << 23
#: fused_dense: rows of labels whose sum is 1 within this many eps of the dtype
#: (tf.nn's gradient, softmax - y, is xent's Σy·softmax - y only there).
_DENSE_SUM_EPS = 4
try:  # (TF's own test for "a GradientTape or ForwardAccumulator is recording")
    from tensorflow.python.eager.record import could_possibly_record as _taping
except ImportError:  # pragma: no cover - where TF moves it, assume a tape
    def _taping() -> bool:
        return True


@functools.lru_cache(maxsize=None)
def _sparse_graph(dtype: Any, label_dtype: Any, rank: int, reduction: str) -> Any:
    """tf.nn's fused sparse op and its reduction as one graph function (not
    XLA: nothing to compile) for every shape of this rank, traced once: one
    call into TF's graph runtime instead of two or four eager ops, each with
    its Python wrapper. Half types are computed in float32 and rounded once,
    as everywhere in xent: the two casts that needs are inside the graph.
    (On small inputs that makes the loss, forward and backward, no slower
    than the native loss's two eager ops.)"""

    def run(z: Array, y: Array) -> Array:
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tf.cast(z, tf.float32) if dtype in _HALF else z
        )
        if reduction != "none":
            loss = tf.reduce_sum(loss) if reduction == "sum" else tf.reduce_mean(loss)
        return tf.cast(loss, dtype)

    specs = tf.TensorSpec([None] * rank, dtype), tf.TensorSpec([None] * (rank - 1), label_dtype)
    return tf.function(run, autograph=False).get_concrete_function(*specs)


def fused_sparse(
    be: Backend, logits: Array, labels: Array, *, axis: Any, reduction: Any, ignore_index: Any,
    label_smoothing: Any = 0.0, class_weights: Any = None,
) -> Array | None:
    # tf.nn's fused op and tf.reduce_mean/sum, the native anchor's two ops,
    # in eager mode (under tf.function out-of-range labels must give NaN,
    # which the general path arranges), as one graph function (_sparse_graph).
    # On the CPU the op raises for a bad label (TF also logs a warning
    # line): the general path then runs and names the bad labels. On
    # accelerators the op gives NaN there, as ours. (Checking labels on the
    # host first instead costs more than it saves: the gap lets TF's thread
    # pool fall asleep between the two ops.)
    if (
        ignore_index is not None
        or not plain_sparse(label_smoothing, class_weights)  # (tf.nn has neither)
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
    if (
        logits.shape.num_elements() >= COMPILE_MIN
        and (logits.dtype in _HALF or not _taping())
        and not running_eagerly()
    ):
        # The compiled call, once hot, is faster forward (until then, its
        # op-by-op calls take the fused op); under a tape the fused op is
        # (its kernel computes the gradient with the loss, where a tape
        # over a compiled call runs a separate backward function), except
        # for half types, whose upcast copy XLA fuses away.
        return None
    if reduction not in ("none", "sum", "mean") or (reduction == "mean" and not labels.shape.num_elements()):
        return None
    try:
        return _sparse_graph(logits.dtype, labels.dtype, rank, reduction)(logits, labels)
    except (tf.errors.InvalidArgumentError, ValueError):  # bad labels or shapes
        return None

def fused_dense(be: Backend, logits: Array, labels: Array, *, axis: Any, reduction: Any) -> Array | None:
    # Eagerly under a gradient tape, on large float32/64 logits: tf.nn's
    # fused op and tf.reduce_mean/sum, exactly the native anchor (its kernel
    # computes the gradient with the loss; a tape over the compiled call runs
    # a separate backward, and its forward writes out copies of the inputs
    # for it, so the compiled call is slower here). Only where its semantics
    # are xent's: every row of labels sums to 1 (its logits gradient is
    # softmax - y, xent's Σy·softmax - y; within _DENSE_SUM_EPS eps, under
    # the rounding of xent's own formula), and no row's loss is NaN (a zero
    # label under a -inf logit, where xent's loss is finite, or NaN input);
    # else the call goes on to the compiled call or the general path. Both
    # checks read the device's values, so only where that is free (the CPU):
    # on an accelerator each would be a host sync.
    if (
        type(axis) is not int
        or not (isinstance(logits, tf.Tensor) and isinstance(labels, tf.Tensor))
        or logits.dtype not in (tf.float32, tf.float64)
        or labels.dtype != logits.dtype
        or reduction not in ("none", "sum", "mean")
        or not tf.executing_eagerly()
    ):
        return None
    rank = logits.shape.rank
    if (
        not rank
        or axis not in (-1, rank - 1)
        or labels.shape != logits.shape
        or logits.shape.num_elements() < DENSE_FUSED_MIN
        or not _taping()
        or not be.can_inspect(logits)
    ):
        return None
    tol = _DENSE_SUM_EPS * float(np.finfo(logits.dtype.as_numpy_dtype).eps)
    if not bool(tf.reduce_all(tf.abs(tf.reduce_sum(labels, -1) - 1) <= tol)):
        return None
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if bool(tf.reduce_any(tf.math.is_nan(loss))):
        return None
    if reduction == "none":
        return loss
    return tf.reduce_sum(loss) if reduction == "sum" else tf.reduce_mean(loss)

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
