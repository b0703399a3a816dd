"""JAX: the chunked linear cross-entropy as a ``jax.custom_vjp`` over ``lax.scan``.

The tokens are padded to a multiple of ``plan.chunk`` and scanned chunk by
chunk, so XLA plans one chunk's ``[chunk, V]`` logits, not ``[N, V]``. Forward
keeps the per-token loss and each row's maximum and ``Σ exp(s - max)``;
backward scans again, recomputing each chunk's logits
(``preferred_element_type`` = the compute dtype, so bfloat16 inputs give
float32 logits), and carries the weight and bias gradients in float32 through
the scan (``dW`` from ``g`` in the input dtype with a float32 result), cast to
the inputs' dtypes at the end.
Works under ``jax.jit`` and ``jax.grad``; padded rows get a zero cotangent.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from xent._linear import Plan, chunk_dlogits, chunk_loss

from .._base import Array, Backend


def _logits(h: Array, W: Array, b: Array | None, compute: Any) -> Array:
    z = jnp.matmul(h, W.T, preferred_element_type=compute)
    return z if b is None else z + b


def chunk_grads(g: Array, hc: Array, W: Array, h_dtype: Any, dW: Array, db: Array | None,
                compute: Any) -> tuple[tuple[Array, Array | None], Array]:
    """One chunk's share of the gradients from its logit gradient ``g``:
    ``((dW, db), dh_c)``, ``dW`` and ``db`` accumulated in the compute dtype."""
    gh = g.astype(W.dtype)
    dh = jnp.matmul(gh, W, preferred_element_type=compute).astype(h_dtype)
    # float32 accumulator for half inputs; g in the input dtype as for dh,
    # with a float32 result: XLA then plans no float32 copy of g beside it
    dW = dW + jnp.matmul(gh.T, hc, preferred_element_type=compute)
    if db is not None:
        db = db + g.sum(0)
    return (dW, db), dh


def _chunked(x: Array, k: int, nc: int, fill: float = 0) -> Array:
    pad = nc * k - x.shape[0]
    if pad:
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    return x.reshape((nc, k) + x.shape[1:])


@functools.lru_cache(maxsize=64)
def _function(be: Backend, plan: Plan) -> Any:
    compute = jnp.dtype(plan.compute_dtype)
    k = plan.chunk

    def forward(h: Array, W: Array, b: Array | None, y: Array, cw: Array | None) -> tuple[Array, ...]:
        n = h.shape[0]
        nc = -(-n // k)

        def body(_: Any, xs: tuple[Array, Array]) -> tuple[None, tuple[Array, ...]]:
            hc, yc = xs
            return None, chunk_loss(be, _logits(hc, W, b, compute), yc, cw, plan)

        _, stats = jax.lax.scan(body, None, (_chunked(h, k, nc), _chunked(y, k, nc)))
        return tuple(x.reshape(-1)[:n] for x in stats)  # loss, row max, Σ exp(s - max)

    @jax.custom_vjp
    def f(h: Array, W: Array, b: Array | None, y: Array, cw: Array | None) -> Array:
        return forward(h, W, b, y, cw)[0]

    def f_fwd(h, W, b, y, cw):  # type: ignore[no-untyped-def]
        loss, m, sumexp = forward(h, W, b, y, cw)
        return loss, (h, W, b, y, cw, m, sumexp)

    def f_bwd(res, go):  # type: ignore[no-untyped-def]
        h, W, b, y, cw, m, sumexp = res
        # With one chunk XLA sees the forward and backward logits as one value
        # (one GEMM for both, which is good) and would merge the backward's
        # s - m with the forward's too, keeping a [rows, V] array alive from one
        # pass to the other. The barrier keeps the row statistics apart.
        m, sumexp = jax.lax.optimization_barrier((m, sumexp))
        n = h.shape[0]
        nc = -(-n // k)
        classes = jnp.arange(plan.vocab, dtype=y.dtype)

        def body(carry, xs):  # type: ignore[no-untyped-def]
            dW, db = carry
            hc, yc, mc, sc, gc = xs
            g = chunk_dlogits(be, _logits(hc, W, b, compute), yc, cw, mc, sc, gc, classes, plan)
            return chunk_grads(g, hc, W, h.dtype, dW, db, compute)

        # (zeros_like: the carry has the weight's type, device-varying inside shard_map)
        init = (jnp.zeros_like(W, dtype=compute), None if b is None else jnp.zeros_like(b, dtype=compute))
        # padded rows: a zero cotangent, and Σ exp = 1 so that log Σ exp is finite and their g 0, not NaN
        xs = tuple(_chunked(x, k, nc, fill) for x, fill in ((h, 0), (y, 0), (m, 0), (sumexp, 1),
                                                            (go.astype(compute), 0)))
        (dW, db), dh = jax.lax.scan(body, init, xs)
        dh = dh.reshape((-1, h.shape[1]))[:n]
        return dh, dW.astype(W.dtype), None if b is None else db.astype(b.dtype), None, None

    f.defvjp(f_fwd, f_bwd)
    return f


def linear_cross_entropy_chunks(be: Backend, h: Array, W: Array, b: Array | None, y: Array,
                                cw: Array | None, plan: Plan) -> Array:
    """Per-token loss ``[N]`` (compute dtype) of ``h [N, H]`` against ``W [V, H]``."""
    return _function(be, plan)(h, W, b, y, cw)
