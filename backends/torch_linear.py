"""PyTorch: the chunked linear cross-entropy as a ``torch.autograd.Function``.

Forward: for each chunk of ``plan.chunk`` tokens, the logits ``h_c @ W.T`` (in
the input dtype, then upcast), the per-token loss and its ``logsumexp``; only
the ``[N]`` losses and ``[N]`` logsumexps are kept. Backward: each chunk's
logits are recomputed, the logit gradient ``g`` (compute dtype) is formed by
:func:`xent._linear.chunk_dlogits`, and

* ``dh_c = g @ W`` (``g`` in the input dtype, as autograd of the naive product
  would do);
* ``dW += g.T @ h_c`` into a float32 accumulator (``addmm_``, float32 GEMM) for
  half inputs, cast to the weight's dtype once at the end;
* ``db += Σ_rows g``, also accumulated in the compute dtype.

Traceable by ``torch.compile(fullgraph=True)`` (the chunk loop unrolls).
"""

from __future__ import annotations

from typing import Any

import torch

from xent._linear import Plan, chunk_dlogits, chunk_loss

from ._base import Array, Backend

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _logits(h: Array, W: Array, b: Array | None, compute: torch.dtype) -> Array:
    z = torch.matmul(h, W.t()).to(compute)
    return z if b is None else z + b


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Array, W: Array, b: Array | None, y: Array, cw: Array | None,
                be: Backend, plan: Plan) -> Array:
        compute = _DTYPES[plan.compute_dtype]
        n = h.shape[0]
        loss = torch.empty(n, dtype=compute, device=h.device)
        lse = torch.empty(n, dtype=compute, device=h.device)
        for start in range(0, n, plan.chunk):
            stop = min(start + plan.chunk, n)
            z = _logits(h[start:stop], W, b, compute)
            loss[start:stop], lse[start:stop] = chunk_loss(be, z, y[start:stop], cw, plan)
        ctx.save_for_backward(h, W, b, y, cw, lse)
        ctx.be, ctx.plan = be, plan
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:
        h, W, b, y, cw, lse = ctx.saved_tensors
        be, plan = ctx.be, ctx.plan
        compute = _DTYPES[plan.compute_dtype]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n = h.shape[0]
        classes = torch.arange(plan.vocab, device=h.device, dtype=y.dtype)
        dh = torch.empty_like(h) if need_h else None
        dW = torch.zeros(W.shape, dtype=compute, device=W.device) if need_w else None
        db = torch.zeros(plan.vocab, dtype=compute, device=W.device) if need_b else None
        for start in range(0, n, plan.chunk):
            stop = min(start + plan.chunk, n)
            hc = h[start:stop]
            z = _logits(hc, W, b, compute)
            g = chunk_dlogits(be, z, y[start:stop], cw, lse[start:stop], go[start:stop], classes, plan)
            if dh is not None:
                dh[start:stop] = torch.matmul(g.to(W.dtype), W).to(h.dtype)
            if dW is not None:
                dW.addmm_(g.t(), hc.to(compute))  # float32 accumulator for half inputs
            if db is not None:
                db += g.sum(0)
        return (
            dh,
            None if dW is None else dW.to(W.dtype),
            None if db is None else db.to(b.dtype),
            None, None, None, None,
        )


def linear_cross_entropy_chunks(be: Backend, h: Array, W: Array, b: Array | None, y: Array,
                                cw: Array | None, plan: Plan) -> Array:
    """Per-token loss ``[N]`` (compute dtype) of ``h [N, H]`` against ``W [V, H]``."""
    return _LinearCrossEntropy.apply(h, W, b, y.long(), cw, be, plan)
