"""TensorFlow: the backend class (the primitives); tf.GradientTape, tf.function (also jit_compile=True), every device TF has.

TensorFlow does not implement the array API, so this backend spells out every
primitive with ``tf`` ops. Native kernels used:
``tf.nn.sparse_softmax_cross_entropy_with_logits`` for the sparse negative
log-likelihood (given in-range labels only, so its eager error and its XLA NaN
never surface), ``tf.nn.log_softmax`` and ``tf.math.softplus``.
"""

from __future__ import annotations

from typing import Any, cast

import tensorflow as tf

from .._base import Array, Backend
from . import compile_cache, fused, traced


def _classes_last(x: Array, axis: int) -> tuple[Array, list[int] | None]:
    """``x`` with ``axis`` moved last (TF's fused ops and batched gathers want
    the classes there), and the permutation used, or None where it already was."""
    rank = len(x.shape)
    axis %= rank
    if axis == rank - 1:
        return x, None
    perm = [d for d in range(rank) if d != axis] + [axis]
    return tf.transpose(x, perm), perm


def _index(index: Array) -> Array:
    """Class ids as TF's gathers take them: int32 or int64."""
    return index if index.dtype in (tf.int32, tf.int64) else tf.cast(index, tf.int64)


class TensorflowBackend(Backend):
    name = "tensorflow"
    module = "tensorflow"
    compiles_eagerly = True

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
        out = tf.convert_to_tensor(x)
        if self.placement_key(like) is not None:  # (copied to like's accelerator once, not by each op)
            with tf.device(like.device):
                out = tf.identity(out)
        return out

    def placement_key(self, like: Array) -> Any:
        if not tf.executing_eagerly() or not isinstance(like, tf.Tensor) or "CPU:" in like.device:
            return None
        return like.device or None

    def collectives(self, group: Any, like: Array) -> Any:
        from .distributed import Collectives  # (lazily)

        return Collectives(group, like)

    def device(self, x: Array) -> Any:
        return x.device

    def dtype_name(self, x: Array) -> str:
        return x.dtype.name

    def cast(self, x: Array, dtype: str) -> Array:
        return x if x.dtype.name == dtype else tf.cast(x, dtype)

    def shape(self, x: Array) -> tuple[int | None, ...]:
        return tuple(x.shape.as_list()) if x.shape.rank is not None else ()

    def with_rank(self, x: Array, shape: tuple[int | None, ...] | None, name: str = "x") -> Array:
        if x.shape.rank is not None:
            return x
        if shape is None:
            raise ValueError(
                f"{name} has an unknown rank (shape {x.shape}); xent needs its rank to find "
                f"the class axis: give it one, e.g. tf.ensure_shape({name}, [None, num_classes])"
            )
        return tf.ensure_shape(x, list(shape))

    def can_inspect(self, x: Array) -> bool:
        return tf.executing_eagerly() and "GPU" not in x.device and "TPU" not in x.device

    def to_numpy(self, x: Array) -> Any:
        return x.numpy()

    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        if isinstance(a, (int, float)):
            a = tf.constant(a, cast(Array, b).dtype)  # (callers pass at most one number)
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
        return tf.gather(table, _index(index))

    def take_along_axis(self, x: Array, index: Array, axis: int) -> Array:
        # A batched gather along the last axis (tf.experimental.numpy's
        # take_along_axis broadcasts shapes at run time, which XLA cannot do
        # for a dimension unknown when tracing: a None batch).
        x, perm = _classes_last(x, axis)
        if perm is not None:
            index = tf.transpose(index, perm)
        out = tf.gather(x, _index(index), batch_dims=len(x.shape) - 1)
        return out if perm is None else tf.transpose(out, [perm.index(d) for d in range(len(perm))])

    def softplus(self, x: Array) -> Array:
        return tf.math.softplus(x)

    def tanh(self, x: Array) -> Array:
        return tf.math.tanh(x)

    def expm1(self, x: Array) -> Array:
        return tf.math.expm1(x)

    def isinf(self, x: Array) -> Array:
        return tf.math.is_inf(x)

    def any_nan(self, x: Array) -> bool:
        return bool(tf.reduce_any(tf.math.is_nan(x)))

    def log_softmax(self, z: Array, axis: int) -> Array:
        return tf.nn.log_softmax(z, axis=axis)

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
        # Traced on large logits (and so in large compiled eager calls): the
        # form XLA fuses. Eagerly, or small, the shared formula.
        size = z.shape.num_elements()
        if tf.executing_eagerly() or size is None or size < traced.SOFT_NLL_MIN or y.shape != z.shape:
            return super().soft_nll(z, y, axis)
        return traced.soft_nll(self, z, y, axis, narrow)

    def smoothed_nll(self, z: Array, labels: Array, axis: int, alpha: float) -> Array:
        # tf.nn's fused dense op against the smoothed one-hot target: that
        # target sums to 1, where the op's gradient (softmax - target) is
        # exact, and every class has weight α/C > 0, so a -inf logit gives inf
        # as the formula does. One op and its stored gradient, where the
        # formula's gather and sums make a traced step much slower to trace.
        z, _ = _classes_last(z, axis)
        num = z.shape[-1]
        target = tf.one_hot(_index(labels), num, on_value=tf.constant(1.0 - alpha + alpha / num, z.dtype),
                            off_value=tf.constant(alpha / num, z.dtype), dtype=z.dtype)
        return tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=z)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None, raw: bool = False) -> Array:
        # The fused kernel takes classes on the last axis and int32/int64 labels.
        z, _ = _classes_last(z, axis)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_index(labels), logits=z)

    # The three other rungs' pieces: fused.py, compile_cache.py; the LM head: linear.py.
    fused_sparse = fused.fused_sparse
    fused_sigmoid = fused.fused_sigmoid
    compiled = compile_cache.compiled

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)

    def linear_heads(self, *args: Any) -> tuple[Array, ...]:
        from .heads import linear_heads  # the chunked LM-head divergences and statistics, lazily

        return linear_heads(self, *args)
