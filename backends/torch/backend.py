"""PyTorch: the backend class (the primitives); autograd, torch.compile(fullgraph=True), every device torch has.

Native kernels used, each inside the envelope where its semantics match xent's:
``F.cross_entropy(reduction="none")`` for the sparse negative log-likelihood (the
front end hands it only in-range labels, and applies class weights, smoothing,
masks and reductions itself, so torch's NaN for an all-ignored mean and its
IndexError never surface), ``F.log_softmax`` and ``F.logsigmoid``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .._base import HALF_DTYPES, Array, Backend
from . import fused
from .binary import BinaryNLL, BinaryNLLCompiled, BinaryNLLTransformed, softplus_neg
from .tensors import DTYPES, autocast, is_batched


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

    def placement_key(self, like: Array) -> Any:
        return None if like.is_cpu or torch.compiler.is_compiling() or is_batched(like) else like.device

    def collectives(self, group: Any, like: Array) -> Any:
        from .distributed import Collectives  # (lazily)

        return Collectives(group, like)

    def device(self, x: Array) -> Any:
        return x.device

    def dtype_name(self, x: Array) -> str:
        return str(x.dtype).removeprefix("torch.")

    def cast(self, x: Array, dtype: str) -> Array:
        return x.to(DTYPES[dtype])

    def loss_dtype(self, x: Array, dtype: str) -> str:
        # torch.autocast computes its losses in float32 (cross_entropy is on
        # its float32 list), so half logits give a float32 loss there.
        if dtype in HALF_DTYPES and autocast(x):
            return "float32"
        return dtype

    def can_inspect(self, x: Array) -> bool:
        return (
            x.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and not is_batched(x)
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

    def row_max(self, z: Array, axis: int, narrow: str | None = None) -> Array:
        # (torch's amax itself, not through array-api-compat's max wrapper)
        return z.amax(axis, keepdim=True).detach()

    def clip(self, x: Array, lo: float, hi: float) -> Array:
        # (torch's own: array-api-compat's clip calls math.isnan on the bounds,
        # which torch.compile(dynamic=True) cannot trace for a symbolic size)
        return torch.clamp(x, lo, hi)

    def take(self, table: Array, index: Array) -> Array:
        # torch indexes with int64 (int32) only, and reads uint8/bool as a mask.
        return table[index.long()]

    def take_along_axis(self, x: Array, index: Array, axis: int) -> Array:
        return torch.take_along_dim(x, index.long(), axis)

    def softplus(self, x: Array) -> Array:
        return softplus_neg(-x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return F.log_softmax(z, dim=axis)

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        # One autograd node with closed-form derivatives, computed in place,
        # instead of a dozen recorded ops: see BinaryNLL.
        if torch.compiler.is_compiling():
            return BinaryNLLCompiled.apply(z, y, pos_weight)
        if torch._C._are_functorch_transforms_active():
            return BinaryNLLTransformed.apply(z, y, pos_weight)
        return BinaryNLL.apply(z, y, pos_weight)

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
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
        if torch.compiler.is_compiling():
            # The shared formula with the guard's `where` replaced by a clamp
            # to the dtype's minimum (0·min = 0 where the label is 0) and a
            # per-row flag that restores inf where a non-zero label meets a
            # -inf logit: inductor then fuses the three reductions into the
            # softmax kernel, which a select would split. The flag is a count
            # of such entries, not `.any()`: inductor's vectorised bool
            # reduction costs a sizeable share of the forward, the count little.
            shifted = z - self.row_max(z, axis)
            log_s = torch.log(torch.exp(shifted).sum(axis))
            picked = (y * shifted.clamp(min=torch.finfo(z.dtype).min)).sum(axis)
            lost = ((y != 0) & (shifted == -math.inf)).to(z.dtype).sum(axis) > 0
            return log_s * y.sum(axis) - picked + torch.where(lost, math.inf, 0.0)
        return super().soft_nll(z, y, axis)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None, raw: bool = False) -> Array:
        # torch's fused kernel wants the class axis at dim 1 (dim 0 when unbatched)
        # and int64 (or uint8) targets.
        if z.ndim > 1 and axis != 1:
            z = torch.movedim(z, axis, 1)
        return F.cross_entropy(z, labels.long(), reduction="none")

    def sparse_rows(self, z: Array, labels: Array, axis: int, cw: Array | None, plan: Any) -> Array | None:
        # The chunked kernel with every option, instead of the general path's
        # logits-sized passes: large half logits off the CPU (fused._on_device:
        # no float32 copy of the logits, nothing read on the host) and large
        # logits on the CPU (fused._cpu_chunked: cache-sized chunks).
        if labels.device != z.device or (cw is not None and (cw.requires_grad or cw.device != z.device)):
            return None  # (the kernel gives class weights no gradient)
        if fused._on_device(z, "none", axis):
            exact = True  # (no host read: the guarded smoothing term)
        elif fused._cpu_chunked(z, axis):
            exact = cw is not None and bool(plan.alpha) and bool((cw == 0).any())
        else:
            return None
        from .chunked import chunked_sparse_rows

        return chunked_sparse_rows(z, labels.long(), cw, self, plan, exact)

    def rows_in_chunks(self, body: Any, axis: int | None, rows: tuple[Array | None, ...],
                       broadcast: tuple[Array | None, ...] = ()) -> Array:
        # Large inputs (fused.rows_chunked): chunk by chunk, recomputed for
        # the backward pass; off the CPU with no float32 copy of half inputs,
        # on the CPU in cache.
        z: Any = rows[0]
        if fused.rows_chunked(z, axis) and all(
            a is None or a.device == z.device for a in (*rows, *broadcast)
        ):
            from .chunked import chunked_rows

            return chunked_rows(body, rows, broadcast)
        return body(*rows, *broadcast)

    # The fused rung (fused.py) and the chunked LM-head kernel (linear.py).
    fused_sparse = fused.fused_sparse
    fused_dense = fused.fused_dense
    fused_sigmoid = fused.fused_sigmoid

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)

    def linear_heads(self, *args: Any) -> tuple[Array, ...]:
        from .heads import linear_heads  # the chunked LM-head divergences and statistics, lazily

        return linear_heads(self, *args)
#: The one instance: the registry returns it for torch's own tensor types
#: without touching its caches (see xent._registry.backend_for).
BACKEND = TorchBackend()
