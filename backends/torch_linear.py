"""PyTorch: the chunked linear cross-entropy as a ``torch.autograd.Function``.

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
    inputs; the CPU has no bf16 GEMM with a float32 output), cast to the
    weight's dtype once at the end;
  * ``db += Σ_rows g`` in the compute dtype.

The ``[rows, V]`` buffers are allocated once per call and reused by every chunk
of both passes: on the CPU a fresh 128 MiB tensor costs more than an
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

from ._base import Array, Backend

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _Buffers:
    """Named ``[rows, V]`` work buffers of one call, allocated at the first
    chunk's size and handed out as row slices to every chunk of both passes.
    ``get`` returns None (the op allocates) when disabled, under ``torch.compile``."""

    def __init__(self, rows: int, vocab: int, device: Any, enabled: bool) -> None:
        self.rows, self.vocab, self.device, self.enabled = rows, vocab, device, enabled
        self.store: dict[str, Array] = {}

    def get(self, name: str, rows: int, dtype: torch.dtype) -> Array | None:
        if not self.enabled:
            return None
        buf = self.store.get(name)
        if buf is None or buf.dtype != dtype:
            buf = self.store[name] = torch.empty(self.rows, self.vocab, dtype=dtype, device=self.device)
        return buf[:rows]


def _shifted(raw: Array, b: Array | None, cap: float | None, compute: torch.dtype, m: Array | None,
             bufs: _Buffers) -> tuple[Array, Array | None, Array]:
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
        bufs = _Buffers(min(plan.chunk, n), plan.vocab, h.device, eager)
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
            picked = d.gather(1, yc[:, None])[:, 0]
            spread = None
            if plan.alpha:
                spread = d.sum(1) if cw is None else torch.mv(d, cw)
            e = d.exp_()
            sumexp = e.sum(1)
            w_y, wsum = class_weight_terms(be, yc, cw, plan)
            m = m[:, 0]
            loss[start:stop] = token_loss(sumexp.log(), picked, spread, m, w_y, plan, wsum)
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
            bufs = _Buffers(min(plan.chunk, n), plan.vocab, h.device, not torch.compiler.is_compiling())
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
            g = e.mul_((weight / sumexp)[:, None])  # softmax(s) = exp(s - m) / Σ exp(s - m)
            g.scatter_add_(1, yc[:, None], -target[:, None])
            if plan.alpha:
                smooth = (gc * (plan.alpha / plan.vocab))[:, None]
                g = g.sub_(smooth) if cw is None else g.addcmul_(smooth, cw[None, :], value=-1.0)
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


#: values per chunk of the chunked softmax losses (4 MiB of float32: cache-sized).
_CHUNK_ELEMENTS = 1 << 20


def _compute_dtype(x: Array) -> torch.dtype:
    """The dtype the chunked kernels compute ``x`` in: float64 for float64,
    float32 otherwise (half types upcast)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _chunk_plan(z: Array) -> tuple[torch.dtype, int, _Buffers]:
    """The compute dtype of logits ``z [N, C]``, the rows per chunk and the
    chunks' reused buffers."""
    n, c = z.shape
    compute = _compute_dtype(z)
    chunk = max(1, _CHUNK_ELEMENTS // max(c, 1))
    return compute, chunk, _Buffers(min(chunk, n), c, z.device, True)


def _spans(n: int, chunk: int) -> Any:
    """``(start, stop)`` of each chunk of ``n`` rows."""
    return ((start, min(start + chunk, n)) for start in range(0, n, chunk))


def _per_row(z: Array, compute: torch.dtype, count: int) -> list[Array]:
    """``count`` empty per-row vectors ``[N]`` of the compute dtype."""
    return [torch.empty(z.shape[0], dtype=compute, device=z.device) for _ in range(count)]


def _chunk_shifted(z: Array, start: int, stop: int, m: Array | None, compute: torch.dtype,
                   bufs: _Buffers) -> tuple[Array, Array]:
    """``(z[start:stop] - m, m)`` in the compute dtype, in the reused buffer
    (``m`` the row max ``[rows, 1]``, computed when None); ``z`` is not touched."""
    buf = bufs.get("z", stop - start, compute)
    assert buf is not None  # (_chunk_plan's buffers are always enabled)
    d = buf.copy_(z[start:stop])
    if m is None:
        m = d.amax(1, keepdim=True)
    return d.sub_(m), m


def _chunk_of(y: Array, start: int, stop: int, compute: torch.dtype, bufs: _Buffers) -> Array:
    """``y[start:stop]`` in the compute dtype (upcast into a reused buffer)."""
    rows = y[start:stop]
    if rows.dtype == compute:
        return rows
    buf = bufs.get("y", stop - start, compute)
    assert buf is not None  # (_chunk_plan's buffers are always enabled)
    return buf.copy_(rows)


class _ChunkedSparseNLL(torch.autograd.Function):
    """``-log_softmax(z)[y]`` per row for logits ``[N, C]`` on the CPU, chunk
    by chunk: the same work as the linear loss's chunks without the GEMMs.

    Each chunk of rows is copied (upcast, for half inputs) into one reused
    compute-dtype buffer that stays in cache, and reduced there:
    ``log Σ exp(z - m) - (z_y - m)``, the general path's formula; only ``m`` and
    ``Σ exp`` per row are kept. The backward pass recomputes ``exp(z - m)`` per
    chunk, forms ``g·(softmax - onehot(y))`` in the compute dtype and rounds it
    once into the gradient. Peak memory beyond the inputs is that gradient and
    one chunk; ``F.cross_entropy`` keeps a logits-sized ``log_softmax`` (and,
    for half inputs upcast first as xent must, a float32 copy too), each a
    fresh allocation whose page faults cost more than a pass over it.
    Rows whose ``keep`` is False (``ignore_index``) get loss 0 and gradient 0;
    ``y`` must be in ``[0, C)`` everywhere, which the caller makes sure of.
    A backward pass that is itself recorded (``create_graph=True``) is the
    same formula in differentiable whole-array ops.
    """

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array, keep: Array | None) -> Array:  # type: ignore[override]
        compute, chunk, bufs = _chunk_plan(z)
        loss, m_all, sumexp_all = _per_row(z, compute, 3)
        for start, stop in _spans(z.shape[0], chunk):
            d, m = _chunk_shifted(z, start, stop, None, compute, bufs)
            picked = d.gather(1, y[start:stop, None])[:, 0]
            sumexp = d.exp_().sum(1)
            torch.sub(sumexp.log(), picked, out=loss[start:stop])
            m_all[start:stop], sumexp_all[start:stop] = m[:, 0], sumexp
        if keep is not None:
            loss = loss.masked_fill_(~keep, 0.0)
        ctx.save_for_backward(z, y, keep, m_all, sumexp_all)
        ctx.chunk = chunk
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        z, y, keep, m_all, sumexp_all = ctx.saved_tensors
        if keep is not None:
            go = torch.where(keep, go, 0.0)
        go = go.to(m_all.dtype)
        if torch.is_grad_enabled():  # a recorded backward (second order)
            g = torch.softmax(z.to(go.dtype), 1) * go[:, None]
            return g.scatter_add(1, y[:, None], -go[:, None]).to(z.dtype), None, None
        _, _, bufs = _chunk_plan(z)
        dz = torch.empty_like(z)
        for start, stop in _spans(z.shape[0], ctx.chunk):
            d, _ = _chunk_shifted(z, start, stop, m_all[start:stop, None], m_all.dtype, bufs)
            gc = go[start:stop]
            g = d.exp_().mul_((gc / sumexp_all[start:stop])[:, None])  # g·softmax
            g.scatter_add_(1, y[start:stop, None], -gc[:, None])
            dz[start:stop].copy_(g)
        return dz, None, None


def chunked_sparse_nll(z: Array, y: Array, keep: Array | None) -> Array:
    """Per-row loss (compute dtype) of ``z [N, C]`` and in-range int64 ``y [N]``
    (rows where ``keep`` is False: 0); see :class:`_ChunkedSparseNLL`."""
    return _ChunkedSparseNLL.apply(z, y, keep)


class _ChunkedDenseNLL(torch.autograd.Function):
    """``-Σ_c y_c · log_softmax(z)_c`` per row for logits and labels ``[N, C]``
    on the CPU, chunk by chunk as :class:`_ChunkedSparseNLL`: the general
    path's ``log Σ exp(z - m) · Σ y - Σ y · (z - m)`` on cache-sized chunks,
    half inputs upcast chunk by chunk, each result rounded once. Its ``0·-inf``
    (a zero label under a ``-inf`` logit, 0 in xent) is NaN here, as is every
    NaN input: the caller sends a NaN result to the general path.

    Gradients: ``g·((Σ y)·softmax - y)`` for the logits (the true gradient, not
    tf.nn's ``softmax - y``) and ``g·(log Σ exp(z - m) - (z - m))`` for the
    labels, each formed per chunk in the compute dtype; a recorded backward
    (``create_graph=True``) is the same in differentiable whole-array ops.
    Peak memory beyond the inputs is one chunk (and the gradients); torch's
    ``F.cross_entropy`` keeps a logits-sized ``log_softmax`` and a product.
    """

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array) -> Array:  # type: ignore[override]
        compute, chunk, bufs = _chunk_plan(z)
        loss, m_all, lse_all, ysum_all = _per_row(z, compute, 4)
        for start, stop in _spans(z.shape[0], chunk):
            d, m = _chunk_shifted(z, start, stop, None, compute, bufs)
            yc = _chunk_of(y, start, stop, compute, bufs)
            picked = torch.linalg.vecdot(yc, d, dim=1)
            ysum = yc.sum(1)
            lse = d.exp_().sum(1).log_()
            torch.sub(lse * ysum, picked, out=loss[start:stop])
            m_all[start:stop], lse_all[start:stop], ysum_all[start:stop] = m[:, 0], lse, ysum
        ctx.save_for_backward(z, y, m_all, lse_all, ysum_all)
        ctx.chunk = chunk
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        z, y, m_all, lse_all, ysum_all = ctx.saved_tensors
        want_z, want_y = ctx.needs_input_grad
        go = go.to(m_all.dtype)
        if torch.is_grad_enabled():  # a recorded backward (second order)
            zc, yc, g = z.to(go.dtype), y.to(go.dtype), go[:, None]
            log_s = torch.logsumexp(zc, 1, keepdim=True)
            dz = (g * (torch.exp(zc - log_s) * yc.sum(1, keepdim=True) - yc)).to(z.dtype) if want_z else None
            return dz, (g * (log_s - zc)).to(y.dtype) if want_y else None
        compute, _, bufs = _chunk_plan(z)
        dz = torch.empty_like(z) if want_z else None
        dy = torch.empty_like(y) if want_y else None
        for start, stop in _spans(z.shape[0], ctx.chunk):
            d, _ = _chunk_shifted(z, start, stop, m_all[start:stop, None], compute, bufs)
            gc = go[start:stop, None]
            if dy is not None:  # g·(lse - (z - m)), before d is overwritten
                diff = torch.sub(lse_all[start:stop, None], d, out=bufs.get("t", stop - start, compute))
                dy[start:stop].copy_(diff.mul_(gc))
            if dz is not None:  # g·(Σy·exp(z - m - lse) - y)
                scale = gc * ysum_all[start:stop, None]
                d.sub_(lse_all[start:stop, None]).exp_().mul_(scale)
                dz[start:stop].copy_(d.addcmul_(_chunk_of(y, start, stop, compute, bufs), gc, value=-1))
        return dz, dy


def chunked_dense_nll(z: Array, y: Array) -> Array:
    """Per-row loss (compute dtype) of ``z [N, C]`` and real labels ``y [N, C]``
    of its dtype; see :class:`_ChunkedDenseNLL`."""
    return _ChunkedDenseNLL.apply(z, y)


class _ChunkedBinaryNLL(torch.autograd.Function):
    """The sigmoid loss of contiguous logits and labels of one dtype, chunk by
    chunk of their flat values on the CPU, reduced (``"sum"``: a scalar) or
    not (``"none"``): each chunk upcast (half types) into cache-sized float32,
    its values the general path's node's (``torch_backend._BinaryNLL.value``,
    guards included), rounded once into the result, or summed per chunk.
    The backward pass forms ``g·(σ(z) - y)`` and ``-g·z`` per chunk (the
    node's derivatives), a recorded one (``create_graph=True``) the same in
    differentiable whole-array ops. Peak memory beyond the inputs: one chunk's
    buffers (and the gradients), where the node's passes each hold a float32
    array of the inputs' size, and a half input's upcast copies two more.
    """

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array, value: Any, total: bool) -> Array:  # type: ignore[override]
        flat_z, flat_y = z.reshape(-1), y.reshape(-1)
        n = flat_z.numel()
        compute = _compute_dtype(z)
        sums = torch.empty(-(-n // _CHUNK_ELEMENTS), dtype=compute, device=z.device) if total else None
        out = None if total else torch.empty_like(flat_z)
        for i, (start, stop) in enumerate(_spans(n, _CHUNK_ELEMENTS)):
            loss = value(flat_z[start:stop].to(compute), flat_y[start:stop].to(compute), None)
            if sums is not None:
                sums[i] = loss.sum()
            else:
                assert out is not None  # (allocated above exactly when sums is not)
                out[start:stop].copy_(loss)
        ctx.save_for_backward(z, y)
        ctx.total = total
        if sums is not None:
            return sums.sum()
        assert out is not None
        return out.view(z.shape)

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        z, y = ctx.saved_tensors
        want_z, want_y = ctx.needs_input_grad[:2]
        compute = _compute_dtype(z)
        if torch.is_grad_enabled():  # a recorded backward (second order)
            zc, g = z.to(compute), go.to(compute)
            dz = ((torch.sigmoid(zc) - y.to(compute)) * g).to(z.dtype) if want_z else None
            return dz, (-zc * g).to(y.dtype) if want_y else None, None, None
        flat_z, flat_y = z.reshape(-1), y.reshape(-1)
        flat_g = None if ctx.total else go.reshape(-1)
        g = go.to(compute) if ctx.total else None
        dz = torch.empty_like(flat_z) if want_z else None
        dy = torch.empty_like(flat_y) if want_y else None
        buf = torch.empty(min(flat_z.numel(), _CHUNK_ELEMENTS), dtype=compute, device=z.device)  # (never z itself)
        for start, stop in _spans(flat_z.numel(), _CHUNK_ELEMENTS):
            zc = buf[: stop - start].copy_(flat_z[start:stop])
            gc = g if flat_g is None else flat_g[start:stop].to(compute)
            assert gc is not None  # (g is set exactly when flat_g is None)
            if dy is not None:
                dy[start:stop].copy_(torch.mul(zc, gc).neg_())
            if dz is not None:
                dz[start:stop].copy_(zc.sigmoid_().sub_(flat_y[start:stop]).mul_(gc))
        return (None if dz is None else dz.view(z.shape), None if dy is None else dy.view(y.shape), None, None)


def chunked_binary_nll(z: Array, y: Array, value: Any, total: bool) -> Array:
    """The sigmoid loss of ``z`` and ``y`` (contiguous, one dtype, same shape):
    their sum (compute dtype) when ``total``, else elementwise in their dtype;
    ``value`` is the node's formula. See :class:`_ChunkedBinaryNLL`."""
    return _ChunkedBinaryNLL.apply(z, y, value, total)
