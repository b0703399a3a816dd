"""TensorFlow: the forms of the softmax and sigmoid losses that XLA fuses
when traced (under ``tf.function``, and so in every compiled call), with their
derivatives written out."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from .._base import Array, Backend

try:  # (XLA's variadic reduce, and TF's own test for "this graph compiles with XLA")
    from tensorflow.compiler.tf2xla.python import xla as _xla
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _xla_context
except ImportError:  # pragma: no cover - where TF moves them, tf.reduce_* only
    _xla = None

#: from this many logits on, a traced dense loss is computed by _soft_nll.
SOFT_NLL_MIN = 1 << 20
#: _sums: values per window of the first, fused pass of a compiled reduction.
WINDOW = 32


def reduced_binary_nll(be: Backend, z: Array, y: Array, scale: float, narrow: str | None) -> Array:
    """``scale · Σ binary_nll(z, y)`` without ``pos_weight``, traced.

    The sum of the formula without its ``0·inf`` guards (XLA fuses it into one
    loop; the guarded formula's selects and its autodiff make the forward and
    backward slower than the native loss's), NaN exactly where a guard was
    needed or an input is NaN: then, under ``tf.cond``, the guarded formula
    (``Backend.guarded_binary_nll``; its operands held ``narrow``:
    ``Backend.held_branch``). The derivatives are written out, the
    guarded formula's: ``∂/∂z = σ(z) - y``, ``∂/∂y = -z``, except 0 where an
    infinite ``z`` agrees with its label (``y = 0`` at ``-inf``, ``y = 1`` at
    ``+inf``), where the loss is 0 whatever the label's value nearby.
    For float32/64 inputs ``σ(z)`` is ``(e where z < 0, else 1) / (1 + e)`` from
    the forward's ``e = exp(-|z|)``, which XLA then writes out once instead
    of computing a second ``exp``; for upcast half inputs the second ``exp``
    is cheaper than that float32 write.
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


def soft_nll(be: Backend, z: Array, y: Array, axis: int, narrow: str | None) -> Array:
    """``Backend.soft_nll`` traced on large logits: ``lse·Σy - Σ y·s`` with
    ``s = z - m``, its four reductions in two passes over the logits and the
    labels (:func:`_sums`), and where any row is NaN (a zero label under
    a ``-inf`` logit, or a NaN input) the guarded shared formula instead,
    under ``tf.cond`` (its operands held ``narrow``: ``Backend.held_branch``).
    (The guard's select in the common case would make XLA write a logits-sized
    temporary.) Derivatives written out,
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

    Compiled with XLA, the operands' windows of ``WINDOW`` values along
    ``axis`` are reduced first, all operands in one variadic reduce: one loop
    that reads every operand, their elementwise producers (the upcast of a
    half input, an ``exp``) fused into it. XLA's CPU backend writes out the
    input of each plain reduction, a logits-sized float32 temporary apiece:
    tf.nn's dense loss writes three, xent's four reductions as ``tf.reduce_*``
    would write four, and as two variadic reduces they write none. Then the windows' results, a
    ``WINDOW``-th of the logits, are reduced by ``tf.reduce_*``. (XLA's own
    plan is the same, windows of 32 first: a sum as one variadic reduce over
    whole rows adds one value at a time, so its rounding error grows with the
    number of classes, more than tf.nn's op's or the windows'.) Otherwise
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
        or size < 2 * WINDOW
        or not _xla_context(tf.compat.v1.get_default_graph())
    ):
        return [_reduce(kind)(x, axis, keepdims=True) for x, kind in zip(xs, kinds)]

    @tf.custom_gradient
    def run(*xs: Array) -> Any:
        whole = size - size % WINDOW
        head = shape[:axis] + [whole // WINDOW, WINDOW] + shape[axis + 1 :]
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
