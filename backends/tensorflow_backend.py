"""TensorFlow: tf.GradientTape, tf.function (also jit_compile=True), every device TF has.

TensorFlow does not implement the array API, so this backend spells out every
primitive with ``tf`` ops. Native kernels used:
``tf.nn.sparse_softmax_cross_entropy_with_logits`` for the sparse negative
log-likelihood (given in-range labels only, so its eager error and its XLA NaN
never surface), ``tf.nn.log_softmax`` and ``tf.math.softplus``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ._base import Array, Backend

_FUSED_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)
_HALF = (tf.float16, tf.bfloat16)
_FUSED_LABELS = (tf.int32, tf.int64)


class TensorflowBackend(Backend):
    name = "tensorflow"
    module = "tensorflow"

    def is_array(self, x: Any) -> bool:
        # tf.Variable is not a tf.Tensor subclass.
        return isinstance(x, (tf.Tensor, tf.Variable))

    def namespace(self, x: Array) -> Any:
        raise TypeError("TensorFlow has no array-API namespace; this backend spells out every primitive")

    def version(self) -> str:
        return tf.__version__

    def devices(self) -> list[str]:
        return [d.name for d in tf.config.list_logical_devices()]

    def asarray(self, x: Any, like: Array) -> Array:
        return tf.convert_to_tensor(x)

    def device(self, x: Array) -> Any:
        return x.device

    def dtype_name(self, x: Array) -> str:
        return x.dtype.name

    def cast(self, x: Array, dtype: str) -> Array:
        return x if x.dtype.name == dtype else tf.cast(x, dtype)

    def shape(self, x: Array) -> tuple[int | None, ...]:
        return tuple(x.shape.as_list()) if x.shape.rank is not None else ()

    def can_inspect(self, x: Array) -> bool:
        return tf.executing_eagerly() and "GPU" not in x.device and "TPU" not in x.device

    def to_numpy(self, x: Array) -> Any:
        return x.numpy()

    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        if isinstance(a, (int, float)):
            a = tf.constant(a, b.dtype)
        if isinstance(b, (int, float)):
            b = tf.constant(b, a.dtype)
        return tf.where(cond, a, b)

    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def max(self, x: Array, axis: int, keepdims: bool = False) -> Array:
        return tf.reduce_max(x, axis=axis, keepdims=keepdims)

    def exp(self, x: Array) -> Array:
        return tf.exp(x)

    def log(self, x: Array) -> Array:
        return tf.math.log(x)

    def log1p(self, x: Array) -> Array:
        return tf.math.log1p(x)

    def abs(self, x: Array) -> Array:
        return tf.abs(x)

    def clip(self, x: Array, lo: float, hi: float) -> Array:
        # tf.constant, not tf.cast: casting a Python float goes through float32.
        return tf.clip_by_value(x, tf.constant(lo, x.dtype), tf.constant(hi, x.dtype))

    def expand_dims(self, x: Array, axis: int) -> Array:
        return tf.expand_dims(x, axis)

    def ones_like(self, x: Array) -> Array:
        return tf.ones_like(x)

    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array:
        return tf.reshape(x, shape)

    def stop_gradient(self, x: Array) -> Array:
        return tf.stop_gradient(x)

    def take(self, table: Array, index: Array) -> Array:
        return tf.gather(table, index)

    def take_along_axis(self, x: Array, index: Array, axis: int) -> Array:
        return tf.experimental.numpy.take_along_axis(x, index, axis=axis)

    def softplus(self, x: Array) -> Array:
        return tf.math.softplus(x)

    def tanh(self, x: Array) -> Array:
        return tf.math.tanh(x)

    def isinf(self, x: Array) -> Array:
        return tf.math.is_inf(x)

    def any_nan(self, x: Array) -> bool:
        return bool(tf.reduce_any(tf.math.is_nan(x)))

    def log_softmax(self, z: Array, axis: int) -> Array:
        return tf.nn.log_softmax(z, axis=axis)

    def nll(self, z: Array, labels: Array, axis: int) -> Array:
        # The fused kernel takes classes on the last axis and int32/int64 labels.
        rank = len(z.shape)
        if axis != rank - 1:
            perm = [d for d in range(rank) if d != axis] + [axis]
            z = tf.transpose(z, perm)
        if labels.dtype not in (tf.int32, tf.int64):
            labels = tf.cast(labels, tf.int64)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)

    def fused_sparse(
        self, logits: Array, labels: Array, axis: int, reduction: str, ignore_index: int | None
    ) -> Array | None:
        # tf.nn's fused op and tf.reduce_mean/sum: exactly the native anchor's two
        # ops, in eager mode (under tf.function out-of-range labels must give NaN,
        # which the general path arranges). On the CPU the op raises for a bad
        # label (TF also logs a warning line): the general path then runs and
        # names the bad labels. On accelerators the op gives NaN there, as ours.
        # (Checking labels on the host first instead costs ~20 us: the gap lets
        # TF's thread pool fall asleep between the two ops.)
        if (
            ignore_index is not None
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
        if reduction == "sum":
            reduce = tf.reduce_sum
        elif reduction == "mean" and labels.shape.num_elements():
            reduce = tf.reduce_mean
        elif reduction != "none":
            return None
        dtype = logits.dtype
        if dtype in _HALF:  # computed in float32 and rounded once, as everywhere in xent
            logits = tf.cast(logits, tf.float32)
        try:
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        except (tf.errors.InvalidArgumentError, ValueError):  # bad labels or shapes
            return None
        if reduction != "none":
            loss = reduce(loss)
        return loss if dtype == logits.dtype else tf.cast(loss, dtype)

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .tensorflow_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)
