"""JAX: jax.grad, jax.jit, jax.vmap, every device JAX has.

``jax.nn.log_softmax`` and ``jax.nn.softplus`` are exact where xent needs them;
the sparse loss uses the shared max-shifted formula (what optax does, with the
gathered difference kept exact).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._base import Array, Backend


class JaxBackend(Backend):
    name = "jax"
    module = "jax"

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
            out = jax.device_put(out, like.sharding)
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

    def take(self, table: Array, index: Array) -> Array:
        return table[index]

    def softplus(self, x: Array) -> Array:
        return jax.nn.softplus(x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return jax.nn.log_softmax(z, axis=axis)

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .jax_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)
