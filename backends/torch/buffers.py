"""PyTorch: the reused ``[rows, V]`` work buffers of the chunked kernels
(:mod:`.chunked`, :mod:`.linear`): on the CPU a fresh large tensor costs
more in page faults than an elementwise pass over it."""

from __future__ import annotations

from typing import Any

import torch

Array = Any


class Buffers:
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
