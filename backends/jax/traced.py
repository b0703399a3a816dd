"""JAX: the forms of the softmax and sigmoid losses that XLA fuses, with their
derivatives written out (``jax.custom_jvp``): the sparse loss's on every
device, the dense and sigmoid losses' on XLA's CPU backend."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .._base import Array, Backend
from .._rows import RowStats, combine

#: from this many logits on, the dense loss is computed by `soft_nll`.
SOFT_NLL_MIN = 1 << 20


def _apart(*xs: Array) -> Any:
    """``xs`` unchanged, as values XLA will not merge with other uses of them:
    each use of ``z - m`` then stays inside its own fused loop instead of
    being shared, which XLA does by writing it out, logits-sized."""
    return jax.lax.optimization_barrier(xs)


def _soft_nll_parts(z: Array, y: Array, axis: int, be: Backend, narrow: str | None) -> tuple[Array, Array, Array]:
    """The dense loss's rows as ``Σ y·(lse - s)`` with ``s = z - m`` (optax's
    form, which XLA fuses into one pass over the logits), and ``m``, ``Σ e^s``.

    Unguarded, a zero label under a ``-inf`` logit gives ``0·inf = NaN``, so
    where any row is NaN the shared guarded formula (``Backend.soft_nll``) computes
    them all instead, under ``lax.cond`` (one branch runs, its operands held
    ``narrow``: ``Backend.held_branch``): a NaN input or a
    ``-inf`` logit costs that formula's speed, never its answer. (The guard's
    select in the common case, or a clamp with an ``inf`` flag, keeps XLA from
    fusing: a logits-sized temporary, and far slower than optax's loss.)
    """
    m = be.row_max(z, axis, narrow)
    total = jnp.sum(jnp.exp(z - m), axis, keepdims=True)
    zs, ms = _apart(z, m)
    rows = jnp.sum(y * (jnp.log(total) - (zs - ms)), axis)
    guarded = be.held_branch(narrow, lambda a, b: Backend.soft_nll(be, a, b, axis, narrow), z, y)
    rows = jax.lax.cond(jnp.isnan(rows).any(), guarded, lambda: rows)
    return rows, m, total


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def soft_nll(z: Array, y: Array, axis: int, be: Backend, narrow: str | None) -> Array:
    """``Backend.soft_nll`` for JAX on the CPU: the same values and derivatives,
    fused by XLA.

    The derivatives are written out (``lax.cond`` under ``jax.grad`` keeps
    both branches' residuals, which is much slower) and are the guarded formula's:
    ``∂/∂z = Σy·softmax(z) - y`` (0 at a ``-inf`` logit), and
    ``∂/∂y = lse - s``, with ``s`` taken as 0 where it is infinite under a
    zero label. Forward mode, reverse mode (by transposition) and higher orders.
    """
    return _soft_nll_parts(z, y, axis, be, narrow)[0]


@functools.partial(soft_nll.defjvp, symbolic_zeros=True)
def _soft_nll_jvp(
    axis: int, be: Backend, narrow: str | None, primals: tuple[Array, Array], tangents: tuple[Any, Any]
) -> Any:
    z, y = primals
    dz, dy = tangents
    rows, m, total = _soft_nll_parts(z, y, axis, be, narrow)
    out = jnp.zeros_like(rows)
    if _given(dz):
        zs, ms = _apart(z, m)
        out = out + jnp.sum((jnp.sum(y, axis, keepdims=True) * (jnp.exp(zs - ms) / total) - y) * dz, axis)
    if _given(dy):
        zs, ms = _apart(z, m)
        out = out + jnp.sum((jnp.log(total) - be.unweighted_inf_as_zero(y, zs - ms)) * dy, axis)
    return rows, out


def _nll_parts(z: Array, labels: Array, axis: int, be: Backend, narrow: str | None) -> tuple[Array, Array, Array]:
    """``Backend.nll``'s rows (the shared formula, ``_rows.row_stats`` and
    ``combine``, term by term), and the row max ``m`` and ``Σ exp(z - m)``.

    The label's logit is gathered from the half input itself (`_held`; the
    same value): XLA's CPU backend otherwise shares one float32 upcast of the
    logits between the gather and the row sum, and writes it out."""
    m = be.row_max(z, axis, narrow)
    total = jnp.sum(jnp.exp(z - m), axis)
    source = z if narrow is None else _held(narrow, z)[0]
    picked = jnp.sum(be.take_along_axis(source, jnp.expand_dims(labels, axis), axis) - m, axis)
    return combine(be, RowStats(jnp.sum(m, axis), total, picked)), m, total


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def nll(z: Array, labels: Array, axis: int, be: Backend, narrow: str | None, raw: bool) -> Array:
    """``Backend.nll`` for JAX: the same values, and the same derivatives
    written out, ``∂/∂z = softmax(z) - onehot(y)``, in the expressions JAX's
    autodiff of the shared formula computes (``e^{z - m}·(g / Σ e^{z - m})``,
    then ``- g`` at the label), forward and reverse mode, higher orders: as
    accurate, equal up to the rounding of ``e^{z - m}``, which XLA computes in
    another fused loop.

    Autodiff transposes the label's gather into a scatter into float32 zeros
    the logits' size, and keeps ``e^{z - m}`` from the forward for the
    backward: two float32 copies of the logits (optax's loss on half inputs
    writes them in its own dtype). Written out, the backward is one
    elementwise pass over the logits (``e^{z - m}`` again, from the half input
    where ``narrow``; the label's term a scatter into the gradient, in place,
    or for half inputs a comparison with the class index): no logits-sized
    temporary beside the gradient itself.
    """
    return _nll_parts(z, labels, axis, be, narrow)[0]


@functools.partial(nll.defjvp, symbolic_zeros=True)
def _nll_jvp(
    axis: int, be: Backend, narrow: str | None, raw: bool, primals: tuple[Array, Array], tangents: tuple[Any, Any]
) -> Any:
    z, labels = primals
    dz = tangents[0]
    rows, m, total = _nll_parts(z, labels, axis, be, narrow)
    if not _given(dz):
        return rows, jnp.zeros_like(rows)
    zs, ms = _apart(z, m) if narrow is None else _held(narrow, z, m)
    if raw and narrow is None:
        # The label's tangent gathered: its transpose is a scatter that XLA
        # applies in place to the gradient, whose elementwise product then
        # stays one YNN fusion on XLA:CPU (a comparison with the class index
        # in that loop makes it a slower loop fusion: 4096x32000 float32
        # value_and_grad under jax.jit, 306 -> 222 ms, optax 220 ms).
        picked = jnp.sum(be.take_along_axis(dz, jnp.expand_dims(labels, axis), axis), axis)
    else:
        # Half inputs, and logits computed from the input (soft-capped, or
        # log p): the comparison, fused with the rest of the chain rule into
        # one loop (the gather's scatter measured 270 ms against 199 in
        # bfloat16, optax 520 ms, and with soft-capping it writes the
        # product out before the scatter: one more float32 [N, V] array).
        index = jnp.int32 if z.shape[axis] < 2**31 else jnp.int64
        hit = jax.lax.broadcasted_iota(index, z.shape, axis) == jnp.expand_dims(labels.astype(index), axis)
        picked = jnp.sum(jnp.where(hit, dz, 0.0), axis)
    return rows, jnp.sum(jnp.exp(zs - ms) * dz, axis) / total - picked


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _held(narrow: str, *xs: Array) -> tuple[Array, ...]:
    """``xs`` unchanged, each read from the half dtype ``narrow`` it was upcast
    from (the same value), kept `_apart` from their other uses: XLA then
    fuses each use's upcast into that use's loop, where it otherwise shares
    one upcast, written out, logits-sized. The derivative is the identity
    (tangents are not rounded to ``narrow``)."""
    held = _apart(*(x.astype(narrow) for x in xs))
    return tuple(h.astype(x.dtype) for h, x in zip(held, xs))


@_held.defjvp
def _held_jvp(narrow: str, primals: tuple[Array, ...], tangents: tuple[Any, ...]) -> Any:
    return _held(narrow, *primals), tuple(tangents)


def _given(tangent: Any) -> bool:
    """Whether a custom_jvp tangent (symbolic zeros on) carries a value."""
    return tangent is not None and not isinstance(tangent, SymbolicZero)


def _binary_parts(z: Array) -> tuple[Array, Array, Array]:
    """``softplus(-|z|)``, ``relu(-z)``, ``relu(z)``: both softplus terms from one ``exp``."""
    return jax.nn.softplus(-jnp.abs(z)), jnp.maximum(-z, 0.0), jnp.maximum(z, 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def binary_nll(z: Array, y: Array, pw: Array | None, be: Backend, narrow: str | None) -> Array:
    """``Backend.binary_nll`` for JAX on the CPU: the formula without its
    ``0·inf`` guards (XLA's CPU backend splits its fused loop at each select),
    which is NaN exactly where a guard was needed or an input is NaN; then,
    under ``lax.cond``, the guarded formula (``Backend.guarded_binary_nll``)
    for the whole array (its operands held ``narrow``: ``Backend.held_branch``).

    Derivatives written out (``lax.cond`` under ``jax.grad`` keeps both
    branches' residuals), equal to the guarded formula's:
    ``∂/∂z = σ(z)·(q + 1 - y) - q`` with ``q = p·y`` (``σ(z) - y`` without
    ``pos_weight``), ``∂/∂y = p·softplus(-z) - softplus(z)``,
    ``∂/∂p = y·softplus(-z)``, where a relu that is infinite under a zero
    weight counts 0 in the label terms, as ``Backend.weigh`` has it.
    """
    a, relu_neg, relu_pos = _binary_parts(z)
    pos = y if pw is None else y * pw
    neg = 1.0 - y
    loss = (a if pw is None else a * (pos + neg)) + pos * relu_neg + neg * relu_pos
    guarded = be.held_branch(narrow, lambda a, b: be.guarded_binary_nll(a, b, pw), z, y)
    return jax.lax.cond(jnp.isnan(loss).any(), guarded, lambda: loss)


@functools.partial(binary_nll.defjvp, symbolic_zeros=True)
def _binary_nll_jvp(be: Backend, narrow: str | None, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    z, y, pw = primals
    dz, dy, dp = tangents
    loss = binary_nll(z, y, pw, be, narrow)
    out = jnp.zeros_like(loss)
    q = y if pw is None else y * pw
    if _given(dz):
        s = jax.nn.sigmoid(z)
        out = out + (s - y if pw is None else s * (q + (1.0 - y)) - q) * dz
    if not (_given(dy) or _given(dp)):
        return loss, out
    # The label terms as the guarded formula differentiates them: a relu that
    # is infinite under a zero weight counts 0 (``Backend.weigh``).
    a, relu_neg, relu_pos = _binary_parts(z)
    relu_neg = be.unweighted_inf_as_zero(q, relu_neg)
    relu_pos = be.unweighted_inf_as_zero(1.0 - y, relu_pos)
    if _given(dy):
        dl = relu_neg - relu_pos if pw is None else a * (pw - 1.0) + pw * relu_neg - relu_pos
        out = out + dl * dy
    if _given(dp):
        out = out + y * (a + relu_neg) * dp
    return loss, out
