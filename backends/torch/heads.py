"""PyTorch: ``Backend.linear_heads`` as a ``torch.autograd.Function``.

Forward, per chunk of tokens: each head's logits ``h_c @ W.T + b`` in the
compute dtype, then the objective (``xent._heads``), under ``no_grad``: only
the ``[N]`` outputs are kept. Backward, per chunk: the logits again, the
chunk's logit gradient from autograd of the objective alone
(``torch.autograd.grad``), then ``dh_c = g @ W`` (``g`` in the input dtype, as
autograd of the naive product) and ``dW``, ``db`` accumulated in the compute
dtype (float32 for half inputs), cast once at the end. Only the first head is
differentiated; the others (a teacher) are constants.
"""

from __future__ import annotations

from typing import Any

import torch

from .._base import Array, Backend

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _logits(h: Array, W: Array, b: Array | None, compute: torch.dtype) -> Array:
    z = torch.mm(h, W.t())
    if z.dtype != compute:
        z = z.to(compute)
    return z if b is None else z + b


class _Heads(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Array, W: Array, b: Array | None, others: tuple[tuple[Array, Array, Array | None], ...],
                rows: tuple[Array, ...], objective: Any, be: Backend, chunk: int, compute: str) -> Any:
        dtype = _DTYPES[compute]
        n = h.shape[0]
        outs: list[Array] = []
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            zs = [_logits(h[sl], W, b, dtype)] + [_logits(ho[sl], Wo, bo, dtype) for ho, Wo, bo in others]
            res = objective(be, zs, tuple(r[sl] for r in rows))
            if not outs:
                outs = [torch.empty(n, dtype=dtype, device=h.device) for _ in res]
            for out, r in zip(outs, res):
                out[sl] = r
        ctx.save_for_backward(h, W, b)
        ctx.others, ctx.rows, ctx.objective, ctx.be, ctx.chunk, ctx.dtype = others, rows, objective, be, chunk, dtype
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *gos: Array) -> tuple[Array | None, ...]:
        h, W, b = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype, n, chunk = ctx.dtype, h.shape[0], ctx.chunk
        dh = torch.empty_like(h) if need_h else None
        dW = torch.zeros(W.shape, dtype=dtype, device=W.device) if need_w else None
        db = torch.zeros(b.shape, dtype=dtype, device=b.device) if need_b else None
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            hc = h[sl]
            with torch.enable_grad():
                z = _logits(hc.detach(), W.detach(), None if b is None else b.detach(), dtype).requires_grad_(True)
                others = [_logits(ho[sl], Wo, bo, dtype).detach() for ho, Wo, bo in ctx.others]
                res = ctx.objective(ctx.be, [z] + others, tuple(r[sl] for r in ctx.rows))
                pairs = [(r, g[sl]) for r, g in zip(res, gos) if g is not None and r.requires_grad]
                grads = torch.autograd.grad([r for r, _ in pairs], [z], [g for _, g in pairs], allow_unused=True)
            g = grads[0] if pairs and grads[0] is not None else torch.zeros_like(z)
            if dh is not None:
                dh[sl] = torch.mm(g.to(W.dtype), W)
            if dW is not None:
                dW.addmm_(g.t(), hc.to(dtype))
            if db is not None:
                db.add_(g.sum(0))
        return (dh, None if dW is None else dW.to(W.dtype), None if db is None else db.to(b.dtype),
                None, None, None, None, None, None)


def linear_heads(be: Backend, heads: tuple[tuple[Array, Array, Array | None], ...], rows: tuple[Array, ...],
                 objective: Any, chunk: int, compute: str) -> tuple[Array, ...]:
    """The per-token outputs of ``objective`` (see ``Backend.linear_heads``)."""
    (h, W, b), *others = heads
    detached = tuple(tuple(None if x is None else x.detach() for x in head) for head in others)
    return tuple(_Heads.apply(h, W, b, detached, tuple(rows), objective, be, chunk, compute))
