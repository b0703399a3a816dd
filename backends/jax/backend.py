"""JAX: the backend class (the primitives); jax.grad, jax.jit, jax.vmap, every device JAX has.

``jax.nn.log_softmax`` and ``jax.nn.softplus`` are exact where xent needs them;
the sparse loss uses the shared max-shifted formula (what optax does, with the
gathered difference kept exact), its logits derivative written out (`traced.nll`).
The dense loss has its own form (`traced.soft_nll`):
on XLA's CPU backend any select in it splits the fused softmax reductions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._base import Array, Backend
from . import compile_cache, traced


def _explicitly_sharded(x: Array, axis: int) -> bool:
    """Whether ``x``'s type shards ``axis`` over an Explicit mesh axis."""
    try:
        sharding = jax.typeof(x).sharding
        entry = sharding.spec[axis]
        types = dict(zip(sharding.mesh.axis_names, sharding.mesh.axis_types))
    except (AttributeError, IndexError, TypeError):
        return False
    names = entry if isinstance(entry, tuple) else (entry,)
    return any(name is not None and types.get(name) == jax.sharding.AxisType.Explicit for name in names)


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

    def placement_key(self, like: Array) -> Any:
        if not self._concrete(like) or all(d.platform == "cpu" for d in like.devices()):
            return None
        return like.sharding, like.ndim  # (host data goes where _placement puts it for this sharding)

    def take_along_axis(self, x: Array, index: Array, axis: int) -> Array:
        # Logits sharded along the gathered axis over an Explicit mesh axis:
        # a gather there has no output sharding JAX can infer (optax's loss
        # raises ShardingTypeError), so the label's entry is selected by
        # comparison and summed, which each shard does locally, then psum'd.
        if index.shape[axis] == 1 and _explicitly_sharded(x, axis):
            hit = jax.lax.broadcasted_iota(index.dtype, x.shape, axis) == index
            return jnp.sum(jnp.where(hit, x, 0), axis=axis, keepdims=True)
        return jnp.take_along_axis(x, index, axis=axis)

    def collectives(self, group: Any, like: Array) -> Any:
        from .distributed import Collectives  # (lazily)

        return Collectives(group, like)

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
        # folds the round trip and reads them narrow there, where a float32 max
        # would read the wider upcast values, in the dense and sparse losses alike.
        held = z if narrow is None else z.astype(narrow)
        return jax.lax.stop_gradient(jnp.max(held, axis, keepdims=True).astype(z.dtype))

    def take(self, table: Array, index: Array) -> Array:
        return table[index]

    def softplus(self, x: Array) -> Array:
        return jax.nn.softplus(x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return jax.nn.log_softmax(z, axis=axis)

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        if jax.default_backend() != "cpu":  # (tuned for XLA's CPU backend only)
            return super().binary_nll(z, y, pos_weight)
        return traced.binary_nll(z, y, pos_weight, self, narrow)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None, raw: bool = False) -> Array:
        # The shared formula's values and derivatives, the derivative written
        # out: autodiff's backward writes two float32 copies of the logits
        # (its gather's scatter, the saved exp), on every device (traced.nll).
        return traced.nll(z, labels, axis, self, narrow, raw)

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
        # Large logits on XLA's CPU backend (the one it is tuned for); elsewhere
        # the shared formula, which is as fast while its temporaries stay in
        # cache and does without the lax.cond, whose fixed cost shows in a small call.
        if jax.default_backend() != "cpu" or z.size < traced.SOFT_NLL_MIN:
            return super().soft_nll(z, y, axis)
        return traced.soft_nll(z, y, axis, self, narrow)

    # The compiled rung (compile_cache.py); the LM head: linear.py.
    compiled = compile_cache.compiled

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)

    def linear_heads(self, *args: Any) -> tuple[Array, ...]:
        from .heads import linear_heads  # the chunked LM-head divergences and statistics, lazily

        return linear_heads(self, *args)
