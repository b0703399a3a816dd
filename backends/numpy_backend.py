"""NumPy: the reference backend, and the one Python lists and scalars land on.

The softmax primitives (``nll``, ``log_softmax``) are overridden with blocked,
multi-threaded versions of the very same arithmetic as the base class (shift by
the row max, ``exp``, ``sum``, ``log``, gather): see :func:`_blocked`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ._base import Array, Backend

# ----------------------------------------------------------------- blocking
#
# A plain NumPy cross-entropy makes several logits-sized temporaries (z - m,
# exp(z - m), ...) and streams each through main memory: at (4096, 32000)
# float32 that is ~0.5 GB per temporary, and the time goes to memory traffic
# and page faults rather than to arithmetic. Instead we walk the rows in blocks
# of about _BLOCK_ELEMENTS values (1-2 MiB, sized for a per-core L2 cache), and
# each block does the whole computation while it is in cache, in one scratch
# buffer reused from block to block. The only memory beyond the inputs is the
# output plus one scratch block per thread.
#
# NumPy ufuncs and reductions release the GIL, so the blocks are spread over a
# small thread pool (one contiguous range of rows per thread) when the input is
# large enough to pay for the hand-off (~20 us). The arithmetic per row is
# unchanged by the blocking: every reduction still runs along one contiguous
# row, in NumPy's own (pairwise) order, so the results equal the unblocked
# formula's.

_BLOCK_ELEMENTS = 1 << 18  # values per block and thread: 1 MiB in float32
_THREAD_MIN_ELEMENTS = 1 << 20  # below this, one thread is faster
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _num_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_num_threads(), thread_name_prefix="xent-numpy")
        return _pool


def _rows(z: np.ndarray, axis: int) -> np.ndarray:
    """``z`` as a C-contiguous ``(rows, classes)`` matrix, the class axis last.

    A view when the class axis is already last in a C-contiguous array (the
    common case); otherwise one transposed copy is made first.
    """
    if axis == z.ndim - 1 and z.flags.c_contiguous:
        return z.reshape(-1, z.shape[-1])
    moved = np.moveaxis(z, axis, -1)
    return np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))


Kernel = Callable[[np.ndarray, np.ndarray, slice], None]


def _blocked(kernel: Kernel, rows: np.ndarray) -> None:
    """Run ``kernel(block, scratch, row_slice)`` over blocks of ``rows``.

    ``scratch`` is a reusable ``(block_rows, classes)`` buffer, private to the
    calling thread; ``row_slice`` says which rows ``block`` is.
    """
    n, c = rows.shape
    if rows.size <= _BLOCK_ELEMENTS:  # one block: no scratch bookkeeping
        kernel(rows, np.empty_like(rows), slice(0, n))
        return
    step = max(1, _BLOCK_ELEMENTS // c)

    def run(start: int, stop: int) -> None:
        scratch = np.empty((min(step, stop - start), c), rows.dtype)
        for lo in range(start, stop, step):
            hi = min(lo + step, stop)
            kernel(rows[lo:hi], scratch[: hi - lo], slice(lo, hi))

    threads = min(_num_threads(), n // step) if rows.size >= _THREAD_MIN_ELEMENTS else 1
    if threads <= 1:
        run(0, n)
        return
    bounds = [n * i // threads for i in range(threads + 1)]
    futures = [_get_pool().submit(run, a, b) for a, b in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()


class NumpyBackend(Backend):
    name = "numpy"
    module = "numpy"

    def __init__(self) -> None:
        import array_api_compat.numpy as xp

        self._xp = xp

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def namespace(self, x: Array) -> Any:
        return self._xp

    def version(self) -> str:
        return np.__version__

    def asarray(self, x: Any, like: Array) -> Array:
        return np.asarray(x)

    def device(self, x: Array) -> Any:
        return "cpu"

    def dtype_name(self, x: Array) -> str:
        return np.asarray(x).dtype.name

    def cast(self, x: Array, dtype: str) -> Array:
        if np.asarray(x).dtype.name == dtype:
            return x
        if dtype == "bfloat16":  # NumPy has no bfloat16 of its own: ml_dtypes provides it
            import ml_dtypes

            return np.asarray(x).astype(ml_dtypes.bfloat16)
        return np.asarray(x).astype(dtype)

    def errstate(self) -> Any:
        # The losses guard every inf - inf and 0 * inf with `where`; NumPy still
        # evaluates both branches, which is harmless but warns.
        return np.errstate(all="ignore")

    def softplus(self, x: Array) -> Array:
        # The base formula, max(x, 0) + log1p(exp(-|x|)), in one scratch array instead
        # of five temporaries. (np.logaddexp computes the same but has no SIMD loop:
        # 13x slower for float32.)
        if not isinstance(x, np.ndarray) or x.ndim == 0:
            return super().softplus(x)
        out = np.abs(x)
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += np.maximum(x, 0)
        return out

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None) -> Array:
        """The base class's short form (no autodiff here, so plain ``maximum``
        for the relus), in place: one scratch array for ``a = softplus(-|z|)``
        that becomes the loss, two for the relu terms.
        Where a ``0·inf`` made NaN (an infinite logit under a label that agrees
        with it) the term is 0; a NaN input still gives NaN through ``a``."""
        z, y = np.asarray(z), np.asarray(y)
        if z.ndim == 0 or z.dtype != y.dtype:
            return super().binary_nll(z, y, pos_weight)
        relu = np.maximum(z, 0)
        neg_part = np.negative(z)
        np.maximum(neg_part, 0, out=neg_part)  # relu(-z)
        loss = np.abs(z)
        np.negative(loss, out=loss)
        np.exp(loss, out=loss)
        np.log1p(loss, out=loss)
        neg = np.subtract(1.0, y, dtype=z.dtype)
        pos = y if pos_weight is None else y * np.asarray(pos_weight)
        if pos_weight is not None:
            loss = loss * (pos + neg)
        for weight, part in ((neg, relu), (pos, neg_part)):
            np.multiply(part, weight, out=part)
            part[np.isnan(part) & (weight == 0)] = 0.0
            loss += part
        return loss

    def log_softmax(self, z: Array, axis: int) -> Array:
        """``(z - m) - log Σ exp(z - m)``, blocked (see :func:`_blocked`)."""
        z = np.asarray(z)
        rows = _rows(z, axis)
        out = np.empty(rows.shape, rows.dtype)

        def kernel(block: np.ndarray, scratch: np.ndarray, at: slice) -> None:
            shifted = np.subtract(block, block.max(axis=1, keepdims=True), out=out[at])
            total = np.exp(shifted, out=scratch).sum(axis=1, keepdims=True)
            np.subtract(shifted, np.log(total), out=shifted)

        _blocked(kernel, rows)  # (the losses call this under errstate())
        if axis == z.ndim - 1:
            return out.reshape(z.shape)
        return np.moveaxis(out.reshape(np.moveaxis(z, axis, -1).shape), -1, axis)

    def soft_nll(self, z: Array, y: Array, axis: int) -> Array:
        """``-Σ y · log_softmax(z)`` from the blocked :meth:`log_softmax` (NumPy
        does not fuse: the base formula's reductions would each make a
        logits-sized temporary)."""
        y = np.asarray(y)
        logp = self.log_softmax(z, axis)
        logp[(y == 0) & np.isinf(logp)] = 0.0  # (logp is our own scratch array)
        return -np.sum(y * logp, axis=axis)[()]

    def nll(self, z: Array, labels: Array, axis: int) -> Array:
        """``log Σ exp(z - m) - (z_y - m)``, blocked (see :func:`_blocked`).

        The label's shifted logit is gathered from the block before ``exp``
        overwrites it, so no logits-sized array is ever made.
        """
        z = np.asarray(z)
        rows = _rows(z, axis)
        flat_labels = np.asarray(labels).reshape(-1)
        out = np.empty(rows.shape[0], rows.dtype)

        def kernel(block: np.ndarray, scratch: np.ndarray, at: slice) -> None:
            shifted = np.subtract(block, block.max(axis=1, keepdims=True), out=scratch)
            picked = shifted[np.arange(len(block)), flat_labels[at]]
            np.log(np.exp(shifted, out=shifted).sum(axis=1), out=out[at])
            out[at] -= picked

        _blocked(kernel, rows)  # (the losses call this under errstate())
        loss_shape = z.shape[:axis] + z.shape[axis + 1 :]
        return out.reshape(loss_shape)[()]
