"""JAX: ``Backend.linear_heads`` as a ``jax.custom_vjp`` over ``lax.scan``.

The tokens are padded to a multiple of the chunk and scanned chunk by chunk,
as the chunked linear cross-entropy (``linear.py``): XLA plans one chunk's
``[chunk, V]`` logits per head. Forward keeps the objective's ``[N]``
outputs; backward scans again, recomputes each chunk's logits and takes the
chunk's logit gradient from ``jax.vjp`` of the objective, carrying the weight
and bias gradients in the compute dtype (float32 for half inputs). Only the
first head is differentiated; the others (a teacher) get zero cotangents.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._base import Array, Backend
from .linear import _chunked, _logits, chunk_grads


@functools.lru_cache(maxsize=64)
def _function(be: Backend, objective: Any, chunk: int, compute_name: str) -> Any:
    compute = jnp.dtype(compute_name)
    k = chunk

    def zs_of(hc: Array, W: Array, b: Array | None, oc: tuple[Array, ...], others: Any) -> list[Array]:
        return [_logits(hc, W, b, compute)] + [
            jax.lax.stop_gradient(_logits(ho, Wo, bo, compute)) for ho, (_, Wo, bo) in zip(oc, others)]

    def forward(h: Array, W: Array, b: Array | None, others: Any, rows: Any) -> tuple[Array, ...]:
        n = h.shape[0]
        nc = -(-n // k)

        def body(_: Any, xs: Any) -> tuple[None, tuple[Array, ...]]:
            hc, oc, rc = xs
            return None, tuple(objective(be, zs_of(hc, W, b, oc, others), rc))

        xs = (_chunked(h, k, nc), tuple(_chunked(o[0], k, nc) for o in others), tuple(_chunked(r, k, nc) for r in rows))
        _, outs = jax.lax.scan(body, None, xs)
        return tuple(o.reshape(-1)[:n] for o in outs)

    @jax.custom_vjp
    def f(h: Array, W: Array, b: Array | None, others: Any, rows: Any) -> tuple[Array, ...]:
        return forward(h, W, b, others, rows)

    def f_fwd(h, W, b, others, rows):  # type: ignore[no-untyped-def]
        return forward(h, W, b, others, rows), (h, W, b, others, rows)

    def f_bwd(res, gos):  # type: ignore[no-untyped-def]
        h, W, b, others, rows = res
        n = h.shape[0]
        nc = -(-n // k)

        def body(carry, xs):  # type: ignore[no-untyped-def]
            dW, db = carry
            hc, oc, rc, gc = xs
            teacher = zs_of(hc, W, b, oc, others)[1:]
            _, vjp = jax.vjp(lambda z: tuple(objective(be, [z] + teacher, rc)), _logits(hc, W, b, compute))
            (g,) = vjp(tuple(gc))
            return chunk_grads(g, hc, W, h.dtype, dW, db, compute)

        init = (jnp.zeros_like(W, dtype=compute), None if b is None else jnp.zeros_like(b, dtype=compute))
        xs = (_chunked(h, k, nc), tuple(_chunked(o[0], k, nc) for o in others), tuple(_chunked(r, k, nc) for r in rows),
              tuple(_chunked(g.astype(compute), k, nc) for g in gos))  # (padded rows: a zero cotangent)
        (dW, db), dh = jax.lax.scan(body, init, xs)
        dh = dh.reshape((-1, h.shape[1]))[:n]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, others)
        return dh, dW.astype(W.dtype), None if b is None else db.astype(b.dtype), zeros, None

    f.defvjp(f_fwd, f_bwd)
    return f


def linear_heads(be: Backend, heads: tuple[tuple[Array, Array, Array | None], ...], rows: tuple[Array, ...],
                 objective: Any, chunk: int, compute: str) -> tuple[Array, ...]:
    """The per-token outputs of ``objective`` (see ``Backend.linear_heads``)."""
    (h, W, b), *others = heads
    return tuple(_function(be, objective, chunk, compute)(h, W, b, tuple(others), tuple(rows)))
