"""PyTorch: the chunked linear cross-entropy (an LM head and its loss) as a
``torch.autograd.Function``.

The per-token formulas are :func:`xent._linear.token_loss` and
:func:`xent._linear.grad_coefficients`, shared with the other backends. What
this module adds is the ``[rows, V]`` work done in place: inside an
``autograd.Function`` the chunk's buffers are ours.

* **Forward**, per chunk of ``plan.chunk`` tokens: ``raw = h_c @ W.T`` (the
  input dtype), upcast by ``copy_`` into a compute-dtype buffer for half
  inputs, then in place ``d = softcap(raw + b) - m`` (``m`` the row max), the
  gathered ``d_y`` and, with smoothing, ``Σ_c w_c·d_c``, then ``e = exp(d)`` and
  ``Σ_c e_c``. The ``[N]`` losses, row maxima and sums are kept, and so is the
  last chunk's ``e`` (and ``tanh(z/cap)``): the backward pass then skips that
  chunk's logits GEMM. With a single chunk (the default when
  ``tokens·V <= 2**27``) that is 3 GEMMs in all, as autograd of the naive
  product.
* **Backward**, per chunk (the kept one first, the others recomputed as in the
  forward pass), in place in ``e``'s buffer:
  ``g = e·weight/Σe - target·onehot(y) - go·(α/V)·w``, times ``1 - tanh²(z/cap)``
  with soft-capping. Then

  * ``dh_c = g @ W`` with ``g`` in the input dtype (as autograd of the naive
    product rounds it);
  * ``dW``: with one chunk, ``g.T @ h`` in the input dtype; the matmul
    accumulates in float32 and rounds once, the numbers a float32 accumulator
    cast at the end would give. With several chunks, ``addmm_`` of the
    compute-dtype ``g`` into a float32 accumulator (a float32 GEMM for half
    inputs, on the CPU, which has no bf16 GEMM with a float32 output), cast to
    the weight's dtype once at the end. Where torch has that GEMM (CUDA:
    ``mm``/``addmm`` with ``out_dtype``), the half ``g`` and ``h`` go into it
    and the float32 accumulator directly (:func:`half_gemm_to_float32`);
  * ``db += Σ_rows g`` in the compute dtype.

The ``[rows, V]`` buffers are allocated once per call and reused by every chunk
of both passes: on the CPU a fresh buffer of that size costs more than an
elementwise pass over it, in page faults. A mixed-dtype op (``bf16 - f32``)
is avoided for the same reason: TensorIterator would cast the half operand
into a fresh float32 temporary. Under ``torch.compile(fullgraph=True)`` the
same code runs without ``out=`` buffers and without keeping the last chunk
(the compiler plans its own buffers); the chunk loop unrolls.
"""

from __future__ import annotations

import math

from typing import Any

import torch

from xent._linear import Plan, chunk_loss, class_weight_terms, grad_coefficients, token_loss
from xent.backends._rows import RowStats

from .._base import Array, Backend
from .buffers import Buffers
from .chunked import chunk_grad_, chunk_stats_

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _shifted(raw: Array, b: Array | None, cap: float | None, compute: torch.dtype, m: Array | None,
             bufs: Buffers) -> tuple[Array, Array | None, Array]:
    """``(d, t, m)`` for one chunk: ``d = softcap(raw + b) - m`` in the compute
    dtype (in ``raw``'s storage when that is already the compute dtype),
    ``t = tanh(z / cap)`` (None without soft-capping) and ``m`` ``[rows, 1]``, the
    row max of the soft-capped logits (computed when None).

    Half logits are upcast with ``copy_`` first and everything after is in
    place: a mixed-dtype op (``bf16 - f32``) would make TensorIterator cast the
    half operand into a fresh float32 temporary on the CPU.
    """
    z = raw
    if raw.dtype != compute:
        buf = bufs.get("z", raw.shape[0], compute)
        z = raw.to(compute) if buf is None else buf.copy_(raw)
    if b is not None:
        z = z.add_(b)
    t = None
    s = z
    if cap is not None:
        masked = torch.isneginf(z)  # a -inf logit stays -inf (fe.softcap)
        t = z.div_(cap).tanh_()
        s = torch.mul(t, cap, out=bufs.get("s", raw.shape[0], compute)).masked_fill_(masked, -math.inf)
    if m is None:
        m = s.amax(1, keepdim=True)
    return s.sub_(m), t, m


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Array, W: Array, b: Array | None, y: Array, cw: Array | None,
                be: Backend, plan: Plan) -> Array:
        compute = _DTYPES[plan.compute_dtype]
        n = h.shape[0]
        eager = not torch.compiler.is_compiling()
        bufs = Buffers(min(plan.chunk, n), plan.vocab, h.device, eager)
        loss = torch.empty(n, dtype=compute, device=h.device)
        m_all = torch.empty(n, dtype=compute, device=h.device)
        sumexp_all = torch.empty(n, dtype=compute, device=h.device)
        wt = W.t()
        kept = None
        for start in range(0, n, plan.chunk):
            stop = min(start + plan.chunk, n)
            rows = stop - start
            raw = torch.mm(h[start:stop], wt, out=bufs.get("raw", rows, W.dtype))
            d, t, m = _shifted(raw, b, plan.cap, compute, None, bufs)
            yc = y[start:stop]
            picked, spread, sumexp = chunk_stats_(d, yc, cw, bool(plan.alpha))
            e = d  # (now exp(d))
            w_y, wsum = class_weight_terms(be, yc, cw, plan)
            m = m[:, 0]
            loss[start:stop] = token_loss(be, RowStats(m, sumexp, picked, None, spread), w_y, plan, wsum)
            m_all[start:stop], sumexp_all[start:stop] = m, sumexp
            kept = (start, e, t)
        ctx.save_for_backward(h, W, b, y, cw, m_all, sumexp_all)
        ctx.be, ctx.plan = be, plan
        # The last chunk's exp(s - m) (and tanh(z/cap)) stay for the backward
        # pass, which spares it that chunk's logits GEMM, and so do the other
        # buffers (the half-precision matmul output takes g in the input dtype):
        # one chunk's buffers, which the backward pass needs anyway.
        if eager:
            ctx.kept, ctx.bufs = kept, bufs
        else:
            ctx.kept, ctx.bufs = None, None
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:
        h, W, b, y, cw, m_all, sumexp_all = ctx.saved_tensors
        be, plan = ctx.be, ctx.plan
        kept, bufs = ctx.kept, ctx.bufs
        ctx.kept = ctx.bufs = None
        if torch.is_grad_enabled():  # a recorded backward (second order)
            return _recorded_grads(h, W, b, y, cw, be, plan, go, ctx.needs_input_grad[:3])
        compute = _DTYPES[plan.compute_dtype]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n = h.shape[0]
        if bufs is None:  # compiled, or a second backward (retain_graph): no kept chunk
            bufs = Buffers(min(plan.chunk, n), plan.vocab, h.device, not torch.compiler.is_compiling())
        starts = list(range(0, n, plan.chunk))
        if kept is not None:  # the kept chunk first, while its buffers hold it
            starts = [kept[0]] + starts[:-1]
        single = len(starts) == 1
        dh = torch.empty_like(h) if need_h else None
        dW = db = None
        wt = W.t()
        for start in starts:
            stop = min(start + plan.chunk, n)
            rows = stop - start
            hc, yc, m, sumexp = h[start:stop], y[start:stop], m_all[start:stop], sumexp_all[start:stop]
            if kept is not None and kept[0] == start:
                _, e, t = kept
                kept = None
            else:
                raw = torch.mm(hc, wt, out=bufs.get("raw", rows, W.dtype))
                d, t, _ = _shifted(raw, b, plan.cap, compute, m[:, None], bufs)
                e = d.exp_()
            gc = go[start:stop]
            w_y, wsum = class_weight_terms(be, yc, cw, plan)
            lse = m + sumexp.log() if plan.z_loss else None
            weight, target = grad_coefficients(lse, w_y, gc, plan, wsum)
            smooth = gc * (plan.alpha / plan.vocab) if plan.alpha else None
            g = chunk_grad_(e, yc, weight / sumexp, target, smooth, cw)
            if t is not None:  # d s / d z = 1 - t²
                g = g.addcmul_(g, t.mul_(t), value=-1.0)
            gh = g
            if W.dtype != compute:  # g in the input dtype, as autograd of the naive product
                gh = bufs.get("raw", rows, W.dtype)
                gh = g.to(W.dtype) if gh is None else gh.copy_(g)
            if dh is not None:
                if bufs.enabled:
                    torch.mm(gh, W, out=dh[start:stop])
                else:
                    dh[start:stop] = torch.mm(gh, W)
            if need_w:
                if single:  # one product: the matmul's own float32 accumulation, rounded once
                    dW = torch.mm(gh.t(), hc)
                elif gh is not g and bufs.enabled and half_gemm_to_float32(W):
                    # half operands, float32 output and accumulator (CUDA's
                    # GEMM with out_dtype): no float32 GEMM of upcast copies
                    if dW is None:
                        dW = torch.mm(gh.t(), hc, out_dtype=compute)
                    else:
                        torch.addmm(dW, gh.t(), hc, out_dtype=compute, out=dW)
                elif dW is None:
                    dW = torch.mm(g.t(), hc.to(compute))  # float32 accumulator for half inputs
                else:
                    dW.addmm_(g.t(), hc.to(compute))
            if need_b:
                db = g.sum(0) if db is None else db.add_(g.sum(0))
        return (
            dh,
            None if dW is None else dW.to(W.dtype),
            None if db is None else db.to(b.dtype),
            None, None, None, None,
        )


_HALF_GEMM_TO_FLOAT32: dict[tuple[str, torch.dtype], bool] = {}


def half_gemm_to_float32(x: Array) -> bool:
    """Whether torch multiplies half matrices of ``x``'s dtype into a float32
    output on ``x``'s device type (``mm``/``addmm`` with ``out_dtype``: CUDA,
    not the CPU). Tried once per device type and dtype on a small product
    whose float32 value is known (one host read, then cached)."""
    key = (x.device.type, x.dtype)
    ok = _HALF_GEMM_TO_FLOAT32.get(key)
    if ok is None:
        try:
            a = torch.full((2, 3), 1.5, dtype=x.dtype, device=x.device)
            out = torch.mm(a, a.t(), out_dtype=torch.float32)
            torch.addmm(out, a, a.t(), out_dtype=torch.float32, out=out)
            ok = out.dtype == torch.float32 and (out.is_meta or bool((out == 13.5).all()))
        except (RuntimeError, NotImplementedError, TypeError):
            ok = False
        _HALF_GEMM_TO_FLOAT32[key] = ok
    return ok


def _recorded_grads(h: Array, W: Array, b: Array | None, y: Array, cw: Array | None, be: Backend,
                    plan: Plan, go: Array, needs: tuple[bool, ...]) -> tuple[Array | None, ...]:
    """The backward pass when it is itself recorded (``create_graph=True``):
    autograd, with ``create_graph``, of the forward's formula
    (:func:`xent._linear.chunk_loss`) in whole-array ops, so that the
    gradients it returns are differentiable again. The chunked pass's in-place
    buffers and ``out=`` products are not (torch: "functions with out=...
    arguments don't support automatic differentiation"). It holds the
    ``[N, V]`` logits, as autograd of the naive product does."""
    compute = _DTYPES[plan.compute_dtype]
    z = torch.mm(h.to(compute), W.to(compute).t())
    if b is not None:
        z = z + b.to(compute)
    loss = chunk_loss(be, z, y, cw, plan)[0]
    inputs = [x for x, need in zip((h, W, b), needs) if need]
    grads = iter(torch.autograd.grad(loss, inputs, go.to(compute), create_graph=True))
    out = tuple(next(grads).to(x.dtype) if need else None for x, need in zip((h, W, b), needs))
    return (*out, None, None, None, None)


def linear_cross_entropy_chunks(be: Backend, h: Array, W: Array, b: Array | None, y: Array,
                                cw: Array | None, plan: Plan) -> Array:
    """Per-token loss ``[N]`` (compute dtype) of ``h [N, H]`` against ``W [V, H]``."""
    return _LinearCrossEntropy.apply(h, W, b, y.long(), cw, be, plan)
