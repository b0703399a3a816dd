"""PyTorch: the sigmoid loss's autograd node (``Backend.binary_nll``) with
closed-form derivatives, computed in place where nothing records it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from . import tensors
from .tensors import may_overwrite

Array = Any

#: from this many logits on, one sum (a host sync) is cheaper than a mask pass.
SUM_CHECK_MIN = 1 << 16


def softplus_neg(z: Array) -> Array:
    """``softplus(-z) = -log_sigmoid(z)``, exact everywhere. (F.softplus returns
    its input itself above its threshold, 20, which in float64 is off by more
    than an ulp.)"""
    return F.logsigmoid(z).neg_() if may_overwrite(z) else -F.logsigmoid(z)


class BinaryNLL(torch.autograd.Function):
    """``p·y·softplus(-z) + (1-y)·softplus(z)`` elementwise (``Backend.binary_nll``),
    as one autograd node with closed-form derivatives.

    Forward: ``a·(q + 1 - y) + c·z`` with ``a = softplus(-|z|)``, ``q = p·y`` and
    ``c = 1 - y`` where ``z >= 0``, ``-q`` elsewhere (``c·z`` is the relu terms);
    ``c·z`` is 0 where ``c`` is 0, so an infinite logit that the label agrees
    with gives 0, not ``0·inf`` (on the CPU, eagerly, the mask is skipped when
    the logits' sum shows that none is infinite). Eagerly, without
    ``pos_weight``, that is about eight in-place passes in two fresh buffers,
    where autograd of the same formula would record a dozen ops and keep their
    results; the backward is three passes.

    Derivatives (every one exact at ``z = 0`` and at ``z = ±inf``):
    ``∂/∂z = σ(z)·(q + 1 - y) - q`` (``σ(z) - y`` without ``pos_weight``),
    ``∂/∂y = p·softplus(-z) - softplus(z)`` (``-z`` without), ``∂/∂p = y·softplus(-z)``.
    """

    @staticmethod
    def value(z: Array, y: Array, pw: Array | None) -> Array:
        inplace = may_overwrite(z, y, pw)
        # (eagerly in place: each fresh logits-sized buffer costs more than a pass over one)
        a = z.abs().neg_().exp_().log1p_() if inplace else torch.log1p(torch.exp(-z.abs()))
        if pw is None:  # c = step(z) - y
            if inplace:
                c = torch.ge(z, 0, out=torch.empty_like(z)).sub_(y)
            else:
                c = (z >= 0).to(z.dtype) - y
        else:
            q = y * pw
            c = torch.where(z >= 0, 1.0 - y, -q)
            a = a * (q + (1.0 - y))
        # 0·inf can only arise at an infinite logit: where one sum over (many)
        # logits can be read and is finite, the mask is not needed.
        checked = (
            inplace and z.numel() >= SUM_CHECK_MIN and tensors.host_readable(z) and bool(torch.isfinite(z.sum()))
        )
        zero = None if checked else c == 0
        if inplace:
            term = c.mul_(z)
            return (term if zero is None else term.masked_fill_(zero, 0.0)).add_(a)
        assert zero is not None  # (checked needs inplace)
        return torch.where(zero, 0.0, c * z) + a

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array, pw: Array | None) -> Array:  # type: ignore[override]
        BinaryNLL.save(ctx, (z, y, pw), None)
        return BinaryNLL.value(z, y, pw)

    @staticmethod
    def save(ctx: Any, inputs: tuple[Any, ...], output: Array | None) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def _partials(ctx: Any, need: tuple[bool, ...]) -> list[Array | None]:
        z, y, pw = ctx.saved_tensors
        inplace = may_overwrite(z, y, pw)
        dz = dy = dp = None
        if need[0]:
            s = torch.sigmoid(z)
            if pw is None:
                dz = s.sub_(y) if inplace else s - y
            else:
                q = y * pw
                dz = s * (q + (1.0 - y)) - q
        sp_neg = softplus_neg(z) if pw is not None and (need[1] or need[2]) else None
        if need[1]:
            dy = -z if pw is None else pw * sp_neg - softplus_neg(-z)
        if need[2]:
            dp = y * sp_neg
        return [dz, dy, dp]

    @staticmethod
    def backward(ctx: Any, g: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        grads = BinaryNLL._partials(ctx, ctx.needs_input_grad)
        inplace = may_overwrite(g, *ctx.saved_tensors)
        for i, d in enumerate(grads):
            if d is not None:
                d = d.mul_(g) if inplace and d.shape == g.shape else d * g
                grads[i] = d if i < 2 else d.sum_to_size(ctx.saved_tensors[2].shape)
        return tuple(grads)

    @staticmethod
    def jvp(ctx: Any, tz: Array | None, ty: Array | None, tp: Array | None) -> Array:  # type: ignore[override]
        tangents = (tz, ty, tp)
        partials = BinaryNLL._partials(ctx, tuple(t is not None for t in tangents))
        return sum(d * t for d, t in zip(partials, tangents) if t is not None)


class BinaryNLLCompiled(torch.autograd.Function):
    """The same node for torch.compile, whose tracer refuses a custom ``jvp``."""

    forward = BinaryNLL.forward
    backward = BinaryNLL.backward


class BinaryNLLTransformed(BinaryNLL):
    """The same node in the form torch.func transforms (vmap, grad, jacfwd) need:
    ``forward`` without ``ctx``. (Not used otherwise: ``apply`` then binds the
    arguments through ``inspect.signature`` on every call, which is slow.)"""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Array, y: Array, pw: Array | None) -> Array:  # type: ignore[override]
        return BinaryNLL.value(z, y, pw)

    setup_context = BinaryNLL.save
