"""JAX: jax.grad, jax.jit, jax.vmap, every device JAX has.

``jax.nn.log_softmax`` and ``jax.nn.softplus`` are exact where xent needs them;
the sparse loss uses the shared max-shifted formula (what optax does, with the
gathered difference kept exact).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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

    def compiled(self, fn: Any, *args: Array, **options: Any) -> Array | None:
        # Arrays (and tracers, e.g. under jax.grad: a jit composes with every
        # transformation) travel as arguments; every other option is static.
        if getattr(_tracing, "active", False) or not all(self.is_array(a) for a in args):
            return None
        static = []
        for name, value in options.items():
            if self.is_array(value):
                continue
            if isinstance(value, (np.ndarray, list, tuple)):
                return None  # host data: the eager path moves it to JAX
            static.append(name)
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
