"""PyTorch: the collectives of :mod:`xent.distributed` over ``torch.distributed``
(gloo on the CPU, NCCL on CUDA: whatever the process group was made with)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

Array = Any


class _SumOverGroup(torch.autograd.Function):
    """An all-reduce SUM whose gradient is the identity: every process
    computes the same loss from the sum, so the gradient of that one loss
    with respect to this process's summand is the loss's gradient with
    respect to the sum, with no communication (torch.distributed.nn's
    all_reduce would sum the group's identical gradients: ``world_size``
    times too large)."""

    @staticmethod
    def forward(ctx: Any, x: Array, group: Any) -> Array:  # type: ignore[override]
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, g: Array) -> tuple[Array, None]:  # type: ignore[override]
        return g, None


class _CopyToGroup(torch.autograd.Function):
    """The identity, whose gradient is all-reduced (SUM) over the group: an
    input every process holds whole (a column-parallel layer's input) gets
    the gradient of the whole loss, the sum of every shard's part."""

    @staticmethod
    def forward(ctx: Any, x: Array, group: Any) -> Array:  # type: ignore[override]
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: Array) -> tuple[Array, None]:  # type: ignore[override]
        out = g.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None


class Collectives:
    """``torch.distributed`` collectives of one process group (None: the
    default group)."""

    def __init__(self, group: Any, like: Array) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "xent.distributed on torch needs torch.distributed: call "
                "torch.distributed.init_process_group first (or pass group=)"
            )
        if torch.compiler.is_compiling():
            raise NotImplementedError("xent.distributed runs eagerly on torch (not under torch.compile)")
        self.group, self.device = group, like.device

    def max(self, x: Array) -> Array:
        out = x.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out

    def sum(self, *xs: Array) -> tuple[Array, ...]:
        # (packed: one all-reduce whatever the number of arrays)
        return tuple(_SumOverGroup.apply(torch.stack(xs), self.group).unbind(0))

    def copy(self, x: Array) -> Array:
        return _CopyToGroup.apply(x, self.group)

    def layout(self, width: int) -> tuple[int, int]:
        # (one all-gather of the shard widths: shards may be uneven)
        size = dist.get_world_size(self.group)
        mine = torch.tensor([width], dtype=torch.int64, device=self.device)
        widths = [torch.empty_like(mine) for _ in range(size)]
        dist.all_gather(widths, mine, group=self.group)
        counts = [int(w.item()) for w in widths]
        rank = dist.get_rank(self.group)
        return sum(counts[:rank]), sum(counts)
