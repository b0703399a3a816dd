"""JAX: jax.grad, jax.jit, jax.vmap, every device JAX has.

``jax.nn.log_softmax`` and ``jax.nn.softplus`` are exact where xent needs them;
the sparse loss uses the shared max-shifted formula (what optax does, with the
gathered difference kept exact). The dense loss has its own form (`_soft_nll`):
on XLA's CPU backend any select in it splits the fused softmax reductions.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from ._base import Array, Backend

_jitted: dict[tuple[Any, tuple[str, ...]], Any] = {}  # (loss, static option names) -> jit
_tracing = threading.local()  # set while one of our jitted losses is being traced


def _traced(fn: Any) -> Any:
    """``fn`` marked as running inside its own jit trace (so it does not jit again)."""

    @functools.wraps(fn)
    def run(*args: Any, **options: Any) -> Any:
        _tracing.active = True
        try:
            return fn(*args, **options)
        finally:
            _tracing.active = False

    return run


#: from this many logits on, the dense loss is computed by `_soft_nll`.
_SOFT_NLL_MIN = 1 << 20


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
    select in the common case, or a clamp with an ``inf`` flag, kept XLA from
    fusing: a logits-sized temporary and 3-7x the time of optax's loss.)
    """
    m = be.row_max(z, axis, narrow)
    total = jnp.sum(jnp.exp(z - m), axis, keepdims=True)
    zs, ms = _apart(z, m)
    rows = jnp.sum(y * (jnp.log(total) - (zs - ms)), axis)
    guarded = be.held_branch(narrow, lambda a, b: Backend.soft_nll(be, a, b, axis, narrow), z, y)
    rows = jax.lax.cond(jnp.isnan(rows).any(), guarded, lambda: rows)
    return rows, m, total


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _soft_nll(z: Array, y: Array, axis: int, be: Backend, narrow: str | None) -> Array:
    """``Backend.soft_nll`` for JAX on the CPU: the same values and derivatives,
    fused by XLA.

    The derivatives are written out (``lax.cond`` under ``jax.grad`` keeps
    both branches' residuals: 6x slower) and are the guarded formula's:
    ``∂/∂z = Σy·softmax(z) - y`` (0 at a ``-inf`` logit), and
    ``∂/∂y = lse - s``, with ``s`` taken as 0 where it is infinite under a
    zero label. Forward mode, reverse mode (by transposition) and higher orders.
    """
    return _soft_nll_parts(z, y, axis, be, narrow)[0]


@functools.partial(_soft_nll.defjvp, symbolic_zeros=True)
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


def _given(tangent: Any) -> bool:
    """Whether a custom_jvp tangent (symbolic zeros on) carries a value."""
    return tangent is not None and not isinstance(tangent, SymbolicZero)


def _binary_parts(z: Array) -> tuple[Array, Array, Array]:
    """``softplus(-|z|)``, ``relu(-z)``, ``relu(z)``: both softplus terms from one ``exp``."""
    return jax.nn.softplus(-jnp.abs(z)), jnp.maximum(-z, 0.0), jnp.maximum(z, 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _binary_nll(z: Array, y: Array, pw: Array | None, be: Backend, narrow: str | None) -> Array:
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


@functools.partial(_binary_nll.defjvp, symbolic_zeros=True)
def _binary_nll_jvp(be: Backend, narrow: str | None, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    z, y, pw = primals
    dz, dy, dp = tangents
    loss = _binary_nll(z, y, pw, be, narrow)
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


def _placement(sharding: Any, shape: tuple[int, ...]) -> Any:
    """Where host data given with sharded predictions goes: the predictions'
    sharding where it fits the data's shape (labels and sample weights of
    batch-sharded logits), else replicated over the same devices (class
    weights, or any rank the sharding does not fit)."""
    try:
        sharding.shard_shape(shape)
        return sharding
    except (ValueError, TypeError, IndexError):
        pass
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    devices = np.array(sorted(sharding.device_set, key=lambda d: d.id))
    return jax.sharding.NamedSharding(jax.sharding.Mesh(devices, ("devices",)), jax.sharding.PartitionSpec())


class JaxBackend(Backend):
    name = "jax"
    module = "jax"
    compiles_eagerly = True

    def is_array(self, x: Any) -> bool:
        # Tracers are not always instances of jax.Array: check both.
        return isinstance(x, (jax.Array, jax.core.Tracer))

    def namespace(self, x: Array) -> Any:
        return jnp

    def version(self) -> str:
        return jax.__version__

    def devices(self) -> list[str]:
        return [str(d) for d in jax.devices()]

    def _concrete(self, x: Array) -> bool:
        return not isinstance(x, jax.core.Tracer)

    def asarray(self, x: Any, like: Array) -> Array:
        out = jnp.asarray(x)
        if self._concrete(like) and self._concrete(out):
            out = jax.device_put(out, _placement(like.sharding, out.shape))
        return out

    def device(self, x: Array) -> Any:
        return x.device if self._concrete(x) else None

    def dtype_name(self, x: Array) -> str:
        return jnp.dtype(x.dtype).name

    def cast(self, x: Array, dtype: str) -> Array:
        return x if jnp.dtype(x.dtype).name == dtype else x.astype(dtype)

    def can_inspect(self, x: Array) -> bool:
        return self._concrete(x) and all(d.platform == "cpu" for d in x.devices())

    def stop_gradient(self, x: Array) -> Array:
        return jax.lax.stop_gradient(x)

    def row_max(self, z: Array, axis: int, narrow: str | None = None) -> Array:
        # Upcast half logits: their max in their own dtype (the same value). XLA
        # folds the round trip and reads them narrow there, where the float32 max
        # read them upcast: 0.99x optax's dense bfloat16 forward under jax.jit
        # instead of 1.07-1.10x, sparse forward+backward 0.95x instead of 1.09x.
        held = z if narrow is None else z.astype(narrow)
        return jax.lax.stop_gradient(jnp.max(held, axis, keepdims=True).astype(z.dtype))

    def take(self, table: Array, index: Array) -> Array:
        return table[index]

    def softplus(self, x: Array) -> Array:
        return jax.nn.softplus(x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return jax.nn.log_softmax(z, axis=axis)

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        if jax.default_backend() != "cpu":  # (measured on XLA's CPU backend only)
            return super().binary_nll(z, y, pos_weight)
        return _binary_nll(z, y, pos_weight, self, narrow)

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
        # Large logits on XLA's CPU backend (where it was measured); elsewhere
        # the shared formula, which is as fast while its temporaries stay in
        # cache and does without the lax.cond (~10 µs in a small call).
        if jax.default_backend() != "cpu" or z.size < _SOFT_NLL_MIN:
            return super().soft_nll(z, y, axis)
        return _soft_nll(z, y, axis, self, narrow)

    def compiled(self, fn: Any, check: Any, *args: Array, **options: Any) -> Array | None:
        # Arrays (and tracers, e.g. under jax.grad: a jit composes with every
        # transformation) travel as arguments; every other option is static.
        split = None if getattr(_tracing, "active", False) else self.compiled_arguments(args, options)
        if split is None or (check is not None and not check()):
            return None
        static = split[0]
        key = (fn, tuple(static))
        jitted = _jitted.get(key)
        if jitted is None:
            jitted = _jitted[key] = jax.jit(_traced(fn), static_argnames=key[1])
        try:
            return jitted(*args, **options)
        except Exception:  # a bad argument: the eager path raises xent's own error
            return None

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .jax_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)
