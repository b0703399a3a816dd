"""What state a torch tensor is in, and its dtype: the checks every torch
module of xent makes before choosing how to compute (eagerly or traced,
recorded by autodiff or not, batched by torch.func or not)."""

from __future__ import annotations

from typing import Any

import torch

Array = Any

DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}
HALF = (torch.float16, torch.bfloat16)
_forward_ad = torch.autograd.forward_ad


def up(x: Array) -> Array:
    """Half types in float32: computed there and rounded once, as everywhere in
    xent (torch's own bfloat16 cross-entropy rounds log_softmax to bfloat16
    before the gather, which loses accuracy)."""
    return x.float() if x.dtype in HALF else x


def down(x: Array, dtype: torch.dtype) -> Array:
    """``x`` in ``dtype`` (a ``.to`` that is a no-op still costs a dispatch)."""
    return x if x.dtype is dtype else x.to(dtype)


def autocast(x: Array) -> bool:
    """Whether torch.autocast is on for ``x``'s device (never on a device
    that autocast does not know, such as ``meta``, where asking raises)."""
    kind = x.device.type
    return _autocast_available(kind) and torch.is_autocast_enabled(kind)


_autocast_available = getattr(torch.amp, "is_autocast_available", lambda kind: True)


_BATCHED_CHECKS = tuple(
    check
    for check in (
        getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None),
        getattr(torch._C._functorch, "is_legacy_batchedtensor", None),  # (gradcheck's batched grads)
    )
    if check is not None
)


def is_batched(x: Array) -> bool:
    """A torch.func (vmap/grad) wrapped or vmap-batched tensor: its values cannot
    be read, and in-place ops on it may not mix batched and unbatched operands.
    (The checks are bound once: looking them up per call costs time on every tensor.)"""
    for check in _BATCHED_CHECKS:
        if check(x):
            return True
    return False


def may_overwrite(*tensors: Array | None) -> bool:
    """Whether fresh intermediates may be overwritten: eagerly, with no autodiff
    recording them and no torch.func wrapper batching some inputs but not others."""
    return not (
        torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or any(t is not None and is_batched(t) for t in tensors)
    )


def forward_mode() -> bool:
    """Whether a forward-mode dual level is open (dual tensors do not say
    ``requires_grad``; the chunked kernels have no ``jvp``)."""
    return getattr(_forward_ad, "_current_level", 0) >= 0


def recorded(*tensors: Array) -> bool:
    """Whether autodiff may record ops on ``tensors``: reverse mode (grad mode on
    and one requires grad) or forward mode."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)) or forward_mode()


def host_readable(x: Array) -> bool:
    """Whether reading a value of ``x`` on the host is free of a device sync:
    a CPU tensor. (The one place the kernels ask; accelerator-mode tests
    make it say False for CPU tensors.)"""
    return x.is_cpu
