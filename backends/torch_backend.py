"""PyTorch: autograd, torch.compile(fullgraph=True), every device torch has.

Native kernels used, each inside the envelope where its semantics match xent's:
``F.cross_entropy(reduction="none")`` for the sparse negative log-likelihood (the
front end hands it only in-range labels, and applies class weights, smoothing,
masks and reductions itself, so torch's NaN for an all-ignored mean and its
IndexError never surface), ``F.log_softmax`` and ``F.logsigmoid``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._base import Array, Backend

_DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}


#: F.cross_entropy always ignores some label value; without an ignore_index the
#: fast path gives it the one int64 no real class id can be.
_NO_IGNORE = -(2**63)
_FUSED_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
_HALF = (torch.float16, torch.bfloat16)
_FUSED_REDUCTIONS = ("none", "sum")


def _is_batched(x: Array) -> bool:
    """A torch.func (vmap/grad) wrapped tensor, whose values cannot be read."""
    checker = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(checker is not None and checker(x))


class TorchBackend(Backend):
    name = "torch"
    module = "torch"

    def is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def namespace(self, x: Array) -> Any:
        import array_api_compat.torch as xp

        return xp

    def version(self) -> str:
        return torch.__version__

    def devices(self) -> list[str]:
        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            found.append("mps")
        return found

    def asarray(self, x: Any, like: Array) -> Array:
        return torch.as_tensor(x, device=like.device)

    def device(self, x: Array) -> Any:
        return x.device

    def dtype_name(self, x: Array) -> str:
        return str(x.dtype).removeprefix("torch.")

    def cast(self, x: Array, dtype: str) -> Array:
        return x.to(_DTYPES[dtype])

    def can_inspect(self, x: Array) -> bool:
        return (
            x.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and not _is_batched(x)
        )

    def to_numpy(self, x: Array) -> Any:
        return x.detach().cpu().numpy()

    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        return torch.where(cond, a, b)

    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        if axis is None:
            return torch.sum(x)
        return torch.sum(x, dim=axis, keepdim=keepdims)

    def stop_gradient(self, x: Array) -> Array:
        return x.detach()

    def take(self, table: Array, index: Array) -> Array:
        return table[index]

    def softplus(self, x: Array) -> Array:
        # F.softplus returns x itself above its threshold (20): off by up to
        # 2e-9, more than an ulp in float64. -logsigmoid(-x) is exact.
        return -F.logsigmoid(-x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return F.log_softmax(z, dim=axis)

    def soft_nll(self, z: Array, y: Array, axis: int) -> Array:
        # Eagerly on the CPU: torch's fused probability-target kernel, whose
        # only difference from ours is NaN for a zero label under a -inf logit;
        # a NaN in its result sends the call to the shared formula instead. (Under
        # torch.compile and on accelerators the shared formula fuses, and no
        # host sync is wanted.)
        if self.can_inspect(z):
            moved, target = z, y
            if z.ndim > 1 and axis != 1:  # the fused kernel wants classes at dim 1
                moved, target = torch.movedim(z, axis, 1), torch.movedim(y, axis, 1)
            loss = F.cross_entropy(moved, target, reduction="none")
            if not bool(loss.isnan().any()):
                return loss
        return super().soft_nll(z, y, axis)

    def nll(self, z: Array, labels: Array, axis: int) -> Array:
        # torch's fused kernel wants the class axis at dim 1 (dim 0 when unbatched)
        # and int64 (or uint8) targets.
        if z.ndim > 1 and axis != 1:
            z = torch.movedim(z, axis, 1)
        return F.cross_entropy(z, labels.long(), reduction="none")

    def fused_sparse(
        self, logits: Array, labels: Array, axis: int, reduction: str, ignore_index: int | None
    ) -> Array | None:
        # F.cross_entropy is the whole loss, reduction included, on the CPU in
        # eager mode: its kernel raises for an out-of-range label (we then take
        # the general path, which names the bad labels), so no host check is
        # needed. Half types are upcast first: torch's own bfloat16 kernel rounds
        # log_softmax to bfloat16 before the gather (measured: up to 7.5 ulp off,
        # against 0.5 ulp computed in float32). Not taken: a mean
        # with ignore_index (torch gives NaN when every entry is ignored, xent 0)
        # or over no entries, accelerators (a device assert, not NaN) and
        # torch.compile (out-of-range labels must give NaN there).
        if (
            type(labels) is not torch.Tensor
            or labels.dtype != torch.int64
            or logits.dtype not in _FUSED_DTYPES
            or type(axis) is not int
            or not (axis == 1 or (axis == -1 and logits.ndim == 2))
            or not logits.is_cpu
            or torch.compiler.is_compiling()
        ):
            return None
        if ignore_index is None:
            ignore_index = _NO_IGNORE
        elif type(ignore_index) is not int or reduction == "mean":
            return None
        if reduction not in _FUSED_REDUCTIONS and not (reduction == "mean" and labels.numel()):
            return None
        dtype = logits.dtype
        if dtype in _HALF:  # computed in float32 and rounded once, as everywhere in xent
            logits = logits.float()
        try:  # (positional: F.cross_entropy's keyword parsing is a measurable part of a small call)
            loss = F.cross_entropy(logits, labels, None, None, ignore_index, None, reduction)
        except (IndexError, RuntimeError, ValueError):
            return None
        return loss if dtype is logits.dtype else loss.to(dtype)

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .torch_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)
