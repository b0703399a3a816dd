"""JAX: the compiled rung of the dispatch ladder (``Backend.compiled``): every
eager call as one cached ``jax.jit`` of the whole loss. JAX's eager mode
dispatches each small op separately; a jitted loss costs one dispatch, and XLA
fuses the rest."""

from __future__ import annotations

import functools
import threading
from typing import Any

import jax

from .._base import Array, Backend

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


def compiled(be: Backend, fn: Any, check: Any, *args: Array, **options: Any) -> Array | None:
    # Arrays (and tracers, e.g. under jax.grad: a jit composes with every
    # transformation) travel as arguments; every other option is static.
    split = None if getattr(_tracing, "active", False) else be.compiled_arguments(args, options)
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
