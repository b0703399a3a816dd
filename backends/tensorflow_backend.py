"""TensorFlow: tf.GradientTape, tf.function (also jit_compile=True), every device TF has.

TensorFlow does not implement the array API, so this backend spells out every
primitive with ``tf`` ops. Native kernels used:
``tf.nn.sparse_softmax_cross_entropy_with_logits`` for the sparse negative
log-likelihood (given in-range labels only, so its eager error and its XLA NaN
never surface), ``tf.nn.softmax_cross_entropy_with_logits`` for large dense
losses under a gradient tape (labels that sum to 1 only, see ``fused_dense``),
``tf.nn.log_softmax`` and ``tf.math.softplus``.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any, cast

import numpy as np
import tensorflow as tf

from ._base import Array, Backend

try:  # (XLA's variadic reduce, and TF's own test for "this graph compiles with XLA")
    from tensorflow.compiler.tf2xla.python import xla as _xla
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _xla_context
except ImportError:  # pragma: no cover - where TF moves them, tf.reduce_* only
    _xla = None

_FUSED_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)
_HALF = (tf.float16, tf.bfloat16)
_FUSED_LABELS = (tf.int32, tf.int64)

# ------------------------------------------------------------- compiled calls
#
# An eager TF call runs op by op, each op writing its result out (at
# (4096, 32000) float32 every op is a fresh 500 MB tensor), where XLA fuses
# the whole loss into a few loops: measured 0.2-0.6x of the native loss's eager
# time, forward and backward (the tape differentiates the compiled function as
# one op, its gradient compiled too). So an eager call whose signature
# (loss, options, shapes, dtypes, devices) comes back runs as one cached
# XLA program of the loss, as JAX's eager calls run as one jax.jit.
#
# But each signature costs an XLA compile (~0.1-1 s), where tf.nn's eager ops
# cost none: compiled at its second call, a loop over 20 batch shapes ran
# 44x slower than the native loss. So a signature runs op by op until those
# calls have together taken _COMPILE_AFTER_S, about one compile's time, and
# only then is compiled (the break-even rule of renting before buying: a
# signature never costs more than about twice what the better choice, known
# in hindsight, would have). A large call passes that at its first call;
# a small one after hundreds, once it is clearly a training loop's. Each
# signature is its own concrete function, traced once: TF's "triggered
# tf.function retracing" warning never fires for xent, and a call skips
# tf.function's argument matching (~0.3 ms here).

#: seconds of op-by-op calls of one signature after which it is compiled.
_COMPILE_AFTER_S = 0.2
#: compiled signatures kept at most (each holds an XLA executable); beyond,
#: a new signature runs op by op.
_MAX_PROGRAMS = 256
#: the sparse loss's fused eager op (fused_sparse) up to this many logits, and
#: beyond them under a gradient tape (float32/64); from here on the compiled
#: call is faster (measured at 32x10, 128x256, 256x512 and 4096x32000).
_COMPILE_MIN = 1 << 15
#: from this many logits on, a traced dense loss is computed by _soft_nll.
_SOFT_NLL_MIN = 1 << 20
#: _sums: values per window of the first, fused pass of a compiled reduction.
_WINDOW = 32
#: the dense loss under a gradient tape takes tf.nn's fused op (fused_dense)
#: from this many logits on (float32/64); below, the compiled call is faster.
_DENSE_FUSED_MIN = 1 << 23
#: fused_dense: rows of labels whose sum is 1 within this many eps of the dtype
#: (tf.nn's gradient, softmax - y, is xent's Σy·softmax - y only there).
_DENSE_SUM_EPS = 4
try:  # (TF's own test for "a GradientTape or ForwardAccumulator is recording")
    from tensorflow.python.eager.record import could_possibly_record as _taping
except ImportError:  # pragma: no cover - where TF moves it, assume a tape
    def _taping() -> bool:
        return True

_functions: dict[Any, Any] = {}  # (loss, static option names) -> tf.function
_programs: dict[Any, Any] = {}  # signature -> its concrete function, or None: compiling failed
_eager_s: dict[Any, float] = {}  # signature -> seconds its op-by-op calls took so far
_UNBUILT = object()  # (_programs: a signature not compiled yet)
_lock = threading.Lock()
_local = threading.local()  # .eager: an op-by-op call of compiled() runs on this thread
_clock = time.perf_counter


def _reduced_binary_nll(be: Backend, z: Array, y: Array, scale: float, narrow: str | None) -> Array:
    """``scale · Σ binary_nll(z, y)`` without ``pos_weight``, traced.

    The sum of the formula without its ``0·inf`` guards (XLA fuses it into one
    loop; the guarded formula's selects and its autodiff made the forward and
    backward 1.1-1.2x of the native loss's), NaN exactly where a guard was
    needed or an input is NaN: then, under ``tf.cond``, the guarded formula
    (``Backend.guarded_binary_nll``; its operands held ``narrow``:
    ``Backend.held_branch``). The derivatives are written out, the
    guarded formula's: ``∂/∂z = σ(z) - y``, ``∂/∂y = -z``, except 0 where an
    infinite ``z`` agrees with its label (``y = 0`` at ``-inf``, ``y = 1`` at
    ``+inf``), where the loss is 0 whatever the label's value nearby.
    For float32/64 inputs ``σ(z)`` is ``(e where z < 0, else 1) / (1 + e)`` from
    the forward's ``e = exp(-|z|)``, which XLA then writes out once instead
    of computing a second ``exp`` (forward+backward at 4096x32000 float32,
    separate runs: 1.05-1.12x of tf.nn's before, 0.89-1.04x after, one run
    1.19x); for upcast half inputs the second ``exp`` is cheaper than that
    float32 write (bf16: 0.81-0.89x, against 1.02-1.13x).
    """

    @tf.custom_gradient
    def run(z: Array, y: Array) -> Any:
        e = tf.exp(tf.where(z < 0, z, -z))  # exp(-|z|), its derivative right at 0 (for the second order)
        total = tf.reduce_sum(tf.math.log1p(e) + y * tf.nn.relu(-z) + (1.0 - y) * tf.nn.relu(z))
        total = tf.cond(
            tf.math.is_nan(total),
            be.held_branch(narrow, lambda a, b: tf.reduce_sum(be.guarded_binary_nll(a, b, None)), z, y),
            lambda: total,
        )

        def grad(g: Array) -> tuple[Array, Array]:
            g = g * scale
            agree = tf.math.is_inf(z) & (y == tf.cast(z > 0, y.dtype))
            sigmoid = tf.sigmoid(z) if narrow else tf.where(z < 0, e, tf.ones_like(e)) / (1.0 + e)
            return g * (sigmoid - y), g * tf.where(agree, tf.zeros_like(z), -z)

        return total * scale, grad

    return run(z, y)


def _soft_nll(be: Backend, z: Array, y: Array, axis: int, narrow: str | None) -> Array:
    """``Backend.soft_nll`` traced on large logits: ``lse·Σy - Σ y·s`` with
    ``s = z - m``, its four reductions in two passes over the logits and the
    labels (:func:`_sums`), and where any row is NaN (a zero label under
    a ``-inf`` logit, or a NaN input) the guarded shared formula instead,
    under ``tf.cond`` (its operands held ``narrow``: ``Backend.held_branch``).
    (The guard's select in the common case made XLA write a logits-sized
    temporary: 1.2-1.4x the native loss's forward.) Derivatives written out,
    the guarded formula's (as JAX's ``_soft_nll``): ``∂/∂z = Σy·softmax(z) - y``,
    ``∂/∂y = lse - s`` with ``s`` taken as 0 where it is infinite under a zero
    label."""

    @tf.custom_gradient
    def run(z: Array, y: Array) -> Any:
        m, count = _sums(axis, (z, "max"), (y, "sum"))
        total, picked = _sums(axis, (tf.exp(z - m), "sum"), (y * (z - m), "sum"))
        rows = tf.squeeze(tf.math.log(total) * count - picked, axis)
        rows = tf.cond(
            tf.reduce_any(tf.math.is_nan(rows)),
            be.held_branch(narrow, lambda a, b: Backend.soft_nll(be, a, b, axis), z, y),
            lambda: rows,
        )

        def grad(g: Array) -> tuple[Array, Array]:
            g = tf.expand_dims(g, axis)
            dz = count * (tf.exp(z - m) / total) - y
            dy = tf.math.log(total) - be.unweighted_inf_as_zero(y, z - m)
            return dz * g, dy * g

        return rows, grad

    return run(z, y)


def _sums(axis: int, *terms: tuple[Array, str]) -> list[Array]:
    """Each ``(x, "max" | "sum")`` reduced along ``axis`` (kept, size 1); a
    max is taken as a constant (derivative 0), as the loss's shift ``m`` is.

    Compiled with XLA, the operands' windows of ``_WINDOW`` values along
    ``axis`` are reduced first, all operands in one variadic reduce: one loop
    that reads every operand, their elementwise producers (the upcast of a
    half input, an ``exp``) fused into it. XLA's CPU backend writes out the
    input of each plain reduction, a logits-sized float32 temporary apiece:
    at (4096, 32000) bfloat16, tf.nn's dense loss writes three, xent's four
    reductions as ``tf.reduce_*`` wrote four (1.47x tf.nn's forward+backward);
    as two variadic reduces they write none. Then the windows' results, a
    ``_WINDOW``-th of the logits, are reduced by ``tf.reduce_*``. (XLA's own
    plan is the same, windows of 32 first: a sum as one variadic reduce over
    whole rows adds one value at a time, measured up to 135 ulp off at 32000
    classes, where tf.nn's op was up to 5 ulp off and windows 2.) Otherwise
    ``tf.reduce_*``. The derivative is written out (XLA's reduce has none in
    TF): a sum's is its upstream gradient broadcast back, itself
    differentiable (higher orders)."""
    xs = [tf.stop_gradient(x) if kind == "max" else x for x, kind in terms]
    kinds = tuple(kind for _, kind in terms)
    shape = xs[0].shape.as_list()
    axis %= len(shape)
    size = shape[axis]
    if (
        _xla is None
        or None in shape
        or size < 2 * _WINDOW
        or not _xla_context(tf.compat.v1.get_default_graph())
    ):
        return [_reduce(kind)(x, axis, keepdims=True) for x, kind in zip(xs, kinds)]

    @tf.custom_gradient
    def run(*xs: Array) -> Any:
        whole = size - size % _WINDOW
        head = shape[:axis] + [whole // _WINDOW, _WINDOW] + shape[axis + 1 :]
        starts = [tf.constant(-np.inf if kind == "max" else 0.0, x.dtype) for x, kind in zip(xs, kinds)]
        reducer = _reducer(xs[0].dtype, kinds)
        windows = [tf.reshape(x if whole == size else _cut(x, axis, 0, whole), head) for x in xs]
        parts = list(_xla.variadic_reduce(windows, starts, [axis + 1], reducer))
        if whole != size:  # (the last, short window)
            tails = _xla.variadic_reduce([_cut(x, axis, whole, size) for x in xs], starts, [axis], reducer)
            parts = [tf.concat([p, tf.expand_dims(t, axis)], axis) for p, t in zip(parts, tails)]

        def grad(*gs: Array | None) -> list[Array]:
            return [
                tf.zeros_like(x) if kind == "max" or g is None else tf.broadcast_to(g, tf.shape(x))
                for x, kind, g in zip(xs, kinds, gs)
            ]

        return [_reduce(kind)(p, axis, keepdims=True) for p, kind in zip(parts, kinds)], grad

    return run(*xs)


def _reduce(kind: str) -> Any:
    return tf.reduce_max if kind == "max" else tf.reduce_sum


def _cut(x: Array, axis: int, start: int, stop: int) -> Array:
    """``x[..., start:stop, ...]`` along ``axis``."""
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


@functools.lru_cache(maxsize=None)
def _reducer(dtype: Any, kinds: tuple[str, ...]) -> Any:
    """The scalar reducer of :func:`_sums`: ``max`` or ``+`` per operand
    (``(accumulators..., values...) -> accumulators``), traced once."""
    k = len(kinds)

    def step(*acc_and_x: Array) -> tuple[Array, ...]:
        return tuple(
            (tf.maximum if kind == "max" else tf.add)(acc_and_x[i], acc_and_x[k + i]) for i, kind in enumerate(kinds)
        )

    scalar = tf.TensorSpec((), dtype)
    return tf.function(step, autograph=False).get_concrete_function(*[scalar] * (2 * k))


@functools.lru_cache(maxsize=None)
def _sparse_graph(dtype: Any, label_dtype: Any, rank: int, reduction: str) -> Any:
    """tf.nn's fused sparse op and its reduction as one graph function (not
    XLA: nothing to compile) for every shape of this rank, traced once: one
    call into TF's graph runtime instead of two or four eager ops, each with
    its Python wrapper. Half types are computed in float32 and rounded once,
    as everywhere in xent: the two casts that needs are inside the graph.
    (Small sparse cells, xent against the native loss's two eager ops,
    forward / forward+backward: float32 1.12x / 1.03x -> 0.89x / 0.82x,
    bfloat16 1.67x / 1.31x -> 1.00x / 0.77x; at 64x1000 about even.)"""

    def run(z: Array, y: Array) -> Array:
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tf.cast(z, tf.float32) if dtype in _HALF else z
        )
        if reduction != "none":
            loss = tf.reduce_sum(loss) if reduction == "sum" else tf.reduce_mean(loss)
        return tf.cast(loss, dtype)

    specs = tf.TensorSpec([None] * rank, dtype), tf.TensorSpec([None] * (rank - 1), label_dtype)
    return tf.function(run, autograph=False).get_concrete_function(*specs)


def _timed_eagerly(key: Any, fn: Any, args: tuple[Array, ...], options: dict[str, Any]) -> Array:
    """``fn(*args, **options)`` op by op (``compiled`` declines inside it), its
    time added to the signature's."""
    _local.eager = True
    started = _clock()
    try:
        out = fn(*args, **options)
    finally:
        _local.eager = False
    with _lock:
        if len(_eager_s) > 10_000:  # (one-off signatures: forget them)
            _eager_s.clear()
        _eager_s[key] = _eager_s.get(key, 0.0) + (_clock() - started)
    return out


def _program(fn: Any, names: tuple[str, ...], args: tuple[Array, ...], options: dict[str, Any]) -> Any:
    """The concrete function of ``tf.function(fn, jit_compile=True)`` for this
    signature (traced here; XLA compiles it at its first call)."""
    with _lock:
        function = _functions.get((fn, names))
        if function is None:
            function = _functions[fn, names] = tf.function(fn, jit_compile=True, autograph=False)
    return function.get_concrete_function(*args, **options)


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
        return tf.convert_to_tensor(x)

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
        if tf.executing_eagerly() or size is None or size < _SOFT_NLL_MIN or y.shape != z.shape:
            return super().soft_nll(z, y, axis)
        return _soft_nll(self, z, y, axis, narrow)

    def smoothed_nll(self, z: Array, labels: Array, axis: int, alpha: float) -> Array:
        # tf.nn's fused dense op against the smoothed one-hot target: that
        # target sums to 1, where the op's gradient (softmax - target) is
        # exact, and every class has weight α/C > 0, so a -inf logit gives inf
        # as the formula does. One op and its stored gradient, where the
        # formula's gather and sums made a traced step 3x slower to trace.
        z, _ = _classes_last(z, axis)
        num = z.shape[-1]
        target = tf.one_hot(_index(labels), num, on_value=tf.constant(1.0 - alpha + alpha / num, z.dtype),
                            off_value=tf.constant(alpha / num, z.dtype), dtype=z.dtype)
        return tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=z)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None) -> Array:
        # The fused kernel takes classes on the last axis and int32/int64 labels.
        z, _ = _classes_last(z, axis)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_index(labels), logits=z)

    def fused_sparse(
        self, logits: Array, labels: Array, axis: int, reduction: str, ignore_index: int | None
    ) -> Array | None:
        # tf.nn's fused op and tf.reduce_mean/sum, the native anchor's two ops,
        # in eager mode (under tf.function out-of-range labels must give NaN,
        # which the general path arranges), as one graph function (_sparse_graph).
        # On the CPU the op raises for a bad label (TF also logs a warning
        # line): the general path then runs and names the bad labels. On
        # accelerators the op gives NaN there, as ours. (Checking labels on the
        # host first instead costs ~20 us: the gap lets TF's thread pool fall
        # asleep between the two ops.)
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
        if (
            logits.shape.num_elements() >= _COMPILE_MIN
            and (logits.dtype in _HALF or not _taping())
            and not getattr(_local, "eager", False)
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

    def fused_dense(self, logits: Array, labels: Array, axis: int, reduction: str) -> Array | None:
        # Eagerly under a gradient tape, on large float32/64 logits: tf.nn's
        # fused op and tf.reduce_mean/sum, exactly the native anchor (its kernel
        # computes the gradient with the loss; a tape over the compiled call runs
        # a separate backward, and its forward writes out copies of the inputs
        # for it: measured 1.13-1.5x of the native op at 4096x32000). Only where its semantics
        # are xent's: every row of labels sums to 1 (its logits gradient is
        # softmax - y, xent's Σy·softmax - y; within _DENSE_SUM_EPS eps, under
        # the rounding of xent's own formula), and no row's loss is NaN (a zero
        # label under a -inf logit, where xent's loss is finite, or NaN input);
        # else the call goes on to the compiled call or the general path.
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
            or logits.shape.num_elements() < _DENSE_FUSED_MIN
            or not _taping()
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

    def fused_sigmoid(self, logits: Array, labels: Array, reduction: str) -> Array | None:
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
        loss = _reduced_binary_nll(self, logits, labels, scale, narrow)
        return loss if dtype == logits.dtype else tf.cast(loss, dtype)

    def compiled(self, fn: Any, check: Any, *args: Array, **options: Any) -> Array | None:
        # Eagerly only (inside a tf.function the loss is traced as it is);
        # tensors travel as arguments, every other option is static. A
        # signature runs op by op, here and timed, until it is hot (see
        # _COMPILE_AFTER_S); `check` is run only before the compiled program.
        if getattr(_local, "eager", False) or not tf.executing_eagerly():
            return None
        split = self.compiled_arguments(args, options)
        if split is None:
            return None
        names, tensors = split
        static = tuple((name, options[name]) for name in names)
        key = (fn, static, tuple((tuple(t.shape), t.dtype, t.device) for t in tensors))
        try:
            hash(key)
        except TypeError:  # an option of another kind (the eager path says which)
            return None
        with _lock:
            program = _programs.get(key, _UNBUILT)
            hot = _eager_s.get(key, -1.0) >= _COMPILE_AFTER_S and len(_programs) < _MAX_PROGRAMS
        if program is None:  # compiling it failed: the caller runs it eagerly
            return None
        if program is _UNBUILT and not hot:
            return _timed_eagerly(key, fn, args, options)
        if check is not None and not check():
            return None
        try:
            if program is _UNBUILT:
                program = _program(fn, tuple(names), args, options)
                with _lock:
                    _programs[key] = program
            return program(*args, **options)
        except Exception:  # a bad argument (the eager path raises xent's own error) or no XLA kernel
            with _lock:
                _programs[key] = None
            return None

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .tensorflow_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)
