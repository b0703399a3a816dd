"""PyTorch: the chunked kernels of the sparse, dense and sigmoid losses on
large logits: each a ``torch.autograd.Function`` that works through the rows
in cache-sized chunks, in place in reused buffers (:mod:`.buffers`), instead
of one native call with logits-sized temporaries; and :class:`_ChunkedRows`,
which does the same for every other loss's general formulas, recomputing
them per chunk for the backward pass."""

from __future__ import annotations

import math
from typing import Any

import torch

from .buffers import Buffers

Array = Any


#: values per chunk of the chunked losses on the CPU (4 MiB of float32: cache-sized).
CHUNK_ELEMENTS = 1 << 20
#: values per chunk elsewhere (64 MiB of float32): on an accelerator each op is
#: a kernel launch, so chunks are as large as memory allows them to be small
#: next to the logits (a few dozen for a [8192, 128256] LM batch).
DEVICE_CHUNK_ELEMENTS = 1 << 24


def chunk_elements(x: Array) -> int:
    """Values per chunk for a tensor on ``x``'s device."""
    return CHUNK_ELEMENTS if x.is_cpu else DEVICE_CHUNK_ELEMENTS


def _compute_dtype(x: Array) -> torch.dtype:
    """The dtype the chunked kernels compute ``x`` in: float64 for float64,
    float32 otherwise (half types upcast)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _rows_per_chunk(z: Array) -> int:
    """Rows of ``z`` (along its first axis) per chunk: :func:`chunk_elements` values, at least one row."""
    return max(1, chunk_elements(z) // max(math.prod(z.shape[1:]), 1))


def _chunk_plan(z: Array) -> tuple[torch.dtype, int, Buffers]:
    """The compute dtype of logits ``z [N, C]``, the rows per chunk and the
    chunks' reused buffers."""
    n, c = z.shape
    chunk = _rows_per_chunk(z)
    return _compute_dtype(z), chunk, Buffers(min(chunk, n), c, z.device, True)


def _spans(n: int, chunk: int) -> Any:
    """``(start, stop)`` of each chunk of ``n`` rows."""
    return ((start, min(start + chunk, n)) for start in range(0, n, chunk))


def _per_row(z: Array, compute: torch.dtype, count: int) -> list[Array]:
    """``count`` empty per-row vectors ``[N]`` of the compute dtype."""
    return [torch.empty(z.shape[0], dtype=compute, device=z.device) for _ in range(count)]


def _chunk_shifted(z: Array, start: int, stop: int, m: Array | None, compute: torch.dtype,
                   bufs: Buffers) -> tuple[Array, Array]:
    """``(z[start:stop] - m, m)`` in the compute dtype, in the reused buffer
    (``m`` the row max ``[rows, 1]``, computed when None); ``z`` is not touched."""
    buf = bufs.get("z", stop - start, compute)
    assert buf is not None  # (_chunk_plan's buffers are always enabled)
    d = buf.copy_(z[start:stop])
    if m is None:
        m = d.amax(1, keepdim=True)
    return d.sub_(m), m


def _chunk_of(y: Array, start: int, stop: int, compute: torch.dtype, bufs: Buffers) -> Array:
    """``y[start:stop]`` in the compute dtype (upcast into a reused buffer)."""
    rows = y[start:stop]
    if rows.dtype == compute:
        return rows
    buf = bufs.get("y", stop - start, compute)
    assert buf is not None  # (_chunk_plan's buffers are always enabled)
    return buf.copy_(rows)


class _ChunkedSparse(torch.autograd.Function):
    """The sparse loss per row for logits ``[N, C]``, chunk by chunk, with
    every option of the linear loss's plan (:class:`xent._linear.Plan`:
    smoothing, class weights, z-loss, soft-capping): the same work as the
    linear loss's chunks without the GEMMs.

    Each chunk of rows is copied (upcast, for half inputs) into one reused
    compute-dtype buffer that stays in cache, shifted by its row max ``m`` and
    reduced there, in place, to the row statistics of
    :mod:`xent.backends._rows`: ``d_y``, ``Σ_c w_c·d_c`` (smoothing) and
    ``Σ exp(d)``; :func:`xent.backends._rows.combine` turns them into the loss
    once for all rows. Only ``m`` and ``Σ exp`` per row are kept for the
    backward pass, which recomputes ``exp(d)`` per chunk and forms
    :func:`xent.backends._rows.grad_coefficients`' gradient in place (a
    scatter at the labels, the smoothing term a rank-one update), rounded
    once into the logits' dtype. Peak memory beyond the inputs is that
    gradient and one chunk; ``F.cross_entropy`` keeps a logits-sized
    ``log_softmax`` (and, for half inputs upcast first as xent must, a
    float32 copy too), each a fresh allocation whose page faults cost more
    than a pass over it. Soft-capped logits take the linear loss's per-chunk
    formulas instead (:func:`xent._linear.chunk_loss`, ``chunk_dlogits``).

    Rows whose ``keep`` is False (``ignore_index``) get loss 0 and gradient 0;
    ``y`` must be in ``[0, C)`` everywhere, which the caller makes sure of.
    ``exact``: a zero class weight counts 0 at a ``-inf`` logit in the
    smoothing term (one more pass per chunk), not NaN. A backward pass that is
    itself recorded (``create_graph=True``) is the same formulas over the
    whole logits, differentiable.
    """

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array, keep: Array | None, cw: Array | None, be: Any,  # type: ignore[override]
                plan: Any, exact: bool) -> Array:
        from xent._linear import chunk_loss

        from .._rows import RowStats, combine

        compute, chunk, bufs = _chunk_plan(z)
        cw = None if cw is None else cw.to(compute)
        m_all, sumexp_all = _per_row(z, compute, 2)
        if plan.cap is not None:
            loss = torch.empty(z.shape[0], dtype=compute, device=z.device)
            for start, stop in _spans(z.shape[0], chunk):
                rows, m, sumexp = chunk_loss(be, z[start:stop].to(compute), y[start:stop], cw, plan)
                loss[start:stop], m_all[start:stop], sumexp_all[start:stop] = rows, m, sumexp
        else:
            picked = torch.empty_like(m_all)
            spread = torch.empty_like(m_all) if plan.alpha else None
            zero = None if cw is None or not (plan.alpha and exact) else cw == 0
            for start, stop in _spans(z.shape[0], chunk):
                d, m = _chunk_shifted(z, start, stop, None, compute, bufs)
                d_y, total, sumexp = chunk_stats_(d, y[start:stop], cw, bool(plan.alpha), _zeroed(d, zero, bufs))
                picked[start:stop], sumexp_all[start:stop], m_all[start:stop] = d_y, sumexp, m[:, 0]
                if spread is not None:
                    assert total is not None  # (asked for exactly when spread is)
                    spread[start:stop] = total
            w_y, wsum = _class_weight_terms(cw, y, plan)
            loss = combine(be, RowStats(m_all, sumexp_all, picked, None, spread), w_y=w_y, wsum=wsum,
                           alpha=plan.alpha, vocab=plan.vocab, z_loss=plan.z_loss)
        if keep is not None:
            loss = loss.masked_fill_(~keep, 0.0)
        ctx.save_for_backward(z, y, keep, cw, m_all, sumexp_all)
        ctx.be, ctx.plan, ctx.chunk = be, plan, chunk
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        from xent._linear import chunk_dlogits, chunk_loss

        from .._rows import grad_coefficients

        z, y, keep, cw, m_all, sumexp_all = ctx.saved_tensors
        be, plan = ctx.be, ctx.plan
        if keep is not None:
            go = torch.where(keep, go, 0.0)
        go = go.to(m_all.dtype)
        none = (None,) * 6
        if torch.is_grad_enabled():  # a recorded backward (second order)
            zc = z.to(m_all.dtype)  # (recorded: the gradient is differentiable in z)
            rows = chunk_loss(be, zc, y, cw, plan)[0]
            (dz,) = torch.autograd.grad(rows, zc, go, create_graph=True)
            return (dz.to(z.dtype), *none)
        dz = torch.empty_like(z)
        spans = _spans(z.shape[0], ctx.chunk)
        if plan.cap is not None:
            classes = torch.arange(z.shape[1], device=z.device, dtype=y.dtype)
            for start, stop in spans:
                g = chunk_dlogits(be, z[start:stop].to(m_all.dtype), y[start:stop], cw, m_all[start:stop],
                                  sumexp_all[start:stop], go[start:stop], classes, plan)
                dz[start:stop].copy_(g)
            return (dz, *none)
        _, _, bufs = _chunk_plan(z)
        w_y, wsum = _class_weight_terms(cw, y, plan)
        lse = m_all + sumexp_all.log() if plan.z_loss else None
        weight, target = grad_coefficients(lse, w_y, go, alpha=plan.alpha, vocab=plan.vocab, z_loss=plan.z_loss,
                                           wsum=wsum)
        scale = weight / sumexp_all  # (g·softmax = exp(d)·weight/Σ exp(d))
        smooth = go * (plan.alpha / plan.vocab) if plan.alpha else None
        for start, stop in spans:
            d, _ = _chunk_shifted(z, start, stop, m_all[start:stop, None], m_all.dtype, bufs)
            g = chunk_grad_(d.exp_(), y[start:stop], scale[start:stop], target[start:stop],
                            None if smooth is None else smooth[start:stop], cw)
            dz[start:stop].copy_(g)
        return (dz, *none)


def chunk_stats_(d: Array, y: Array, cw: Array | None, spread: bool, weighed: Array | None = None
                 ) -> tuple[Array, Array | None, Array]:
    """``(d_y, Σ_c w_c·d_c, Σ_c exp(d_c))`` of one chunk ``d = s - m``
    ``[rows, V]`` (:class:`xent.backends._rows.RowStats`' ``picked``, ``spread``
    and ``sumexp``), overwriting ``d`` with ``exp(d)``: the forward pass of the
    chunked sparse and linear losses. ``spread`` (smoothing) None where not
    asked for; ``w`` the class weights ``cw``, or 1; ``weighed``: ``d`` as the
    class weights see it (:func:`_zeroed`), ``d`` by default."""
    picked = d.gather(1, y[:, None])[:, 0]
    total = None
    if spread:
        total = d.sum(1) if cw is None else torch.mv(d if weighed is None else weighed, cw)
    return picked, total, d.exp_().sum(1)


def chunk_grad_(e: Array, y: Array, scale: Array, target: Array, smooth: Array | None, cw: Array | None) -> Array:
    """One chunk's logit gradient, in place in ``e = exp(s - m)`` ``[rows, V]``:
    ``e·scale - target·onehot(y) - smooth·w`` (``scale = weight / Σ exp``,
    ``weight``, ``target`` and ``smooth = go·α/V`` per row, from
    :func:`xent.backends._rows.grad_coefficients`; ``w`` the class weights
    ``cw``, or 1): the backward pass of the chunked sparse and linear losses."""
    g = e.mul_(scale[:, None])  # softmax(s)·weight = exp(s - m)·weight / Σ exp(s - m)
    g.scatter_add_(1, y[:, None], -target[:, None])
    if smooth is not None:
        if cw is None:
            g.sub_(smooth[:, None])
        else:
            g.addr_(smooth, cw, alpha=-1)
    return g


def _class_weight_terms(cw: Array | None, y: Array, plan: Any) -> tuple[Array | None, Any]:
    """``(w_y, Σ_c w_c)``: the labels' class weights (None without) and their sum (``V`` without)."""
    return (None, float(plan.vocab)) if cw is None else (cw[y], cw.sum())


def _zeroed(d: Array, zero: Array | None, bufs: Buffers) -> Array | None:
    """``d`` with 0 in the columns where ``zero`` (a zero class weight), in a
    reused buffer: its product with the class weights is then 0 there, not
    NaN at a ``-inf`` logit (``Backend.weigh``); None without ``zero``."""
    if zero is None:
        return None
    buf = bufs.get("t", d.shape[0], d.dtype)
    assert buf is not None  # (_chunk_plan's buffers are always enabled)
    return buf.copy_(d).masked_fill_(zero, 0.0)


def chunked_sparse_nll(z: Array, y: Array, keep: Array | None, be: Any) -> Array:
    """Per-row loss (compute dtype) of ``z [N, C]`` and in-range int64 ``y [N]``
    without options (rows where ``keep`` is False: 0); see :class:`_ChunkedSparse`."""
    from xent._linear import Plan

    return _ChunkedSparse.apply(z, y, keep, None, be, Plan(z.shape[1], 0, 0.0, 0.0, None, ""), False)


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
    def forward(ctx: Any, z: Array, y: Array, exact: bool) -> Array:  # type: ignore[override]
        compute, chunk, bufs = _chunk_plan(z)
        loss, m_all, lse_all, ysum_all = _per_row(z, compute, 4)
        for start, stop in _spans(z.shape[0], chunk):
            d, m = _chunk_shifted(z, start, stop, None, compute, bufs)
            yc = _chunk_of(y, start, stop, compute, bufs)
            picked = torch.linalg.vecdot(yc, _guarded(d, yc) if exact else d, dim=1)
            ysum = yc.sum(1)
            lse = d.exp_().sum(1).log_()
            torch.sub(lse * ysum, picked, out=loss[start:stop])
            m_all[start:stop], lse_all[start:stop], ysum_all[start:stop] = m[:, 0], lse, ysum
        ctx.save_for_backward(z, y, m_all, lse_all, ysum_all)
        ctx.chunk, ctx.exact = chunk, exact
        return loss

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        z, y, m_all, lse_all, ysum_all = ctx.saved_tensors
        want_z, want_y = ctx.needs_input_grad[:2]
        go = go.to(m_all.dtype)
        if torch.is_grad_enabled():  # a recorded backward (second order)
            zc, yc, g = z.to(go.dtype), y.to(go.dtype), go[:, None]
            d = zc - zc.amax(1, keepdim=True).detach()
            log_s = torch.logsumexp(d, 1, keepdim=True)
            dz = (g * (torch.exp(d - log_s) * yc.sum(1, keepdim=True) - yc)).to(z.dtype) if want_z else None
            dy = (g * (log_s - (_guarded(d, yc) if ctx.exact else d))).to(y.dtype) if want_y else None
            return dz, dy, None
        compute, _, bufs = _chunk_plan(z)
        dz = torch.empty_like(z) if want_z else None
        dy = torch.empty_like(y) if want_y else None
        for start, stop in _spans(z.shape[0], ctx.chunk):
            d, _ = _chunk_shifted(z, start, stop, m_all[start:stop, None], compute, bufs)
            gc = go[start:stop, None]
            if dy is not None:  # g·(lse - (z - m)), before d is overwritten
                dd = _guarded(d, _chunk_of(y, start, stop, compute, bufs)) if ctx.exact else d
                diff = torch.sub(lse_all[start:stop, None], dd, out=bufs.get("t", stop - start, compute))
                dy[start:stop].copy_(diff.mul_(gc))
            if dz is not None:  # g·(Σy·exp(z - m - lse) - y)
                scale = gc * ysum_all[start:stop, None]
                d.sub_(lse_all[start:stop, None]).exp_().mul_(scale)
                dz[start:stop].copy_(d.addcmul_(_chunk_of(y, start, stop, compute, bufs), gc, value=-1))
        return dz, dy, None


def _guarded(d: Array, y: Array) -> Array:
    """``d`` with 0 where the label ``y`` is 0 and ``d`` is ``-inf`` (a fresh
    chunk): its product with ``y`` is then 0 there, not NaN, and so is the
    labels' gradient's ``-inf`` (``Backend.unweighted_inf_as_zero``)."""
    return d.masked_fill((y == 0) & torch.isinf(d), 0.0)


def chunked_dense_nll(z: Array, y: Array, exact: bool) -> Array:
    """Per-row loss (compute dtype) of ``z [N, C]`` and real labels ``y [N, C]``
    of its dtype; see :class:`_ChunkedDenseNLL`. ``exact``: a zero label under
    a ``-inf`` logit counts 0 (one more pass per chunk), not NaN for the
    caller to catch."""
    return _ChunkedDenseNLL.apply(z, y, exact)


class _ChunkedBinaryNLL(torch.autograd.Function):
    """The sigmoid loss of contiguous logits and labels of one dtype, chunk by
    chunk of their flat values on the CPU, reduced (``"sum"``: a scalar) or
    not (``"none"``): each chunk upcast (half types) into cache-sized float32,
    its values the general path's node's (``binary.BinaryNLL.value``,
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
        step = chunk_elements(z)
        sums = torch.empty(-(-n // step), dtype=compute, device=z.device) if total else None
        out = None if total else torch.empty_like(flat_z)
        for i, (start, stop) in enumerate(_spans(n, step)):
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
        step = chunk_elements(z)
        buf = torch.empty(min(flat_z.numel(), step), dtype=compute, device=z.device)  # (never z itself)
        for start, stop in _spans(flat_z.numel(), step):
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


def chunked_sparse_rows(z: Array, y: Array, cw: Array | None, be: Any, plan: Any, exact: bool) -> Array:
    """Per-row terms (compute dtype) of the sparse loss with ``plan``'s options
    for logits ``z [N, C]``, in-range int64 labels ``y`` and class weights
    ``cw`` or None; ``exact``: see :class:`_ChunkedSparse`."""
    return _ChunkedSparse.apply(z, y, None, cw, be, plan, exact)


class _ChunkedRows(torch.autograd.Function):
    """Any loss's per-entry terms ``body(*args)`` (``Backend.rows_in_chunks``)
    chunk by chunk of the first axis, with recomputation for the backward
    pass: the general path's own formulas, each chunk upcast on its own, so
    that no float32 array of the logits' size is made, forward or backward,
    for a loss without a kernel of its own (focal, PolyLoss, probability
    inputs, divergences, gradients into class weights or ``pos_weight``).

    The forward pass evaluates ``body`` per chunk without recording; the
    backward pass evaluates it again per chunk, recorded, and takes that
    chunk's gradients with ``torch.autograd.grad``: the sliced arguments'
    written into their rows, the others' (class weights) summed over the
    chunks. That is one more forward pass than the general path, for memory
    of one chunk's float32 intermediates instead of the logits' (the same
    trade as activation checkpointing). A backward pass that is itself
    recorded (``create_graph=True``) evaluates ``body`` on the whole arrays.

    ``sliced[i]``: whether ``args[i]`` has a row per row of ``args[0]``.
    """

    @staticmethod
    def forward(ctx: Any, body: Any, sliced: tuple[bool, ...], *args: Array | None) -> Array:  # type: ignore[override]
        z = args[0]
        assert z is not None  # (the caller passes the predictions first)
        n, step = z.shape[0], _rows_per_chunk(z)
        out = None
        for start, stop in _spans(n, step):
            part = body(*_rows_of(args, sliced, start, stop))
            if out is None:
                out = part.new_empty((n, *part.shape[1:]))
            out[start:stop] = part
        ctx.save_for_backward(*args)
        ctx.body, ctx.sliced, ctx.step = body, sliced, step
        return out

    @staticmethod
    def backward(ctx: Any, go: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        args, sliced, body = ctx.saved_tensors, ctx.sliced, ctx.body
        want = ctx.needs_input_grad[2:]
        if torch.is_grad_enabled():  # a recorded backward (second order)
            wanted = [a for a, w in zip(args, want) if w]
            found = iter(torch.autograd.grad(body(*args), wanted, go, create_graph=True, allow_unused=True))
            return (None, None, *(next(found) if w else None for w in want))
        grads: list[Array | None] = [
            torch.empty_like(a) if w and s else None for a, w, s in zip(args, want, sliced)
        ]
        for start, stop in _spans(args[0].shape[0], ctx.step):
            part = [None if a is None else a.detach().requires_grad_(w)
                    for a, w in zip(_rows_of(args, sliced, start, stop), want)]
            with torch.enable_grad():
                out = body(*part)
            wanted = [a for a, w in zip(part, want) if w]
            found = iter(torch.autograd.grad(out, wanted, go[start:stop], allow_unused=True))
            for i, (a, w) in enumerate(zip(part, want)):
                if not w:
                    continue
                g = next(found)
                if g is None:
                    g = torch.zeros_like(a)
                if sliced[i]:
                    grads[i][start:stop].copy_(g)  # type: ignore[index]
                else:
                    grads[i] = g if grads[i] is None else grads[i].add_(g)  # type: ignore[union-attr]
        return (None, None, *grads)


def _rows_of(args: tuple[Any, ...], sliced: tuple[bool, ...], start: int, stop: int) -> list[Array | None]:
    """The arguments of one chunk of rows: the sliced ones' rows, the others whole."""
    return [a[start:stop] if s else a for a, s in zip(args, sliced)]


def chunked_rows(body: Any, rows: tuple[Array | None, ...], broadcast: tuple[Array | None, ...]) -> Array:
    """``body(*rows, *broadcast)`` chunk by chunk of the first axis of ``rows``
    (see :class:`_ChunkedRows`): ``rows`` are sliced, and so are the
    ``broadcast`` arrays of ``rows[0]``'s rank whose first axis is not 1 (the
    others are the same for every row)."""
    z = rows[0]
    assert z is not None
    sliced = tuple(a is not None for a in rows) + tuple(
        a is not None and a.ndim == z.ndim and a.shape[0] != 1 for a in broadcast
    )
    return _ChunkedRows.apply(body, sliced, *rows, *broadcast)
