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

from ._base import Array, Backend, labels_valid, plain_sparse

# ----------------------------------------------------------------- blocking
#
# A plain NumPy cross-entropy makes several logits-sized temporaries (z - m,
# exp(z - m), ...) and streams each through main memory: for large logits the
# time goes to memory traffic and page faults rather than to arithmetic. Instead we walk the rows in blocks
# of about _BLOCK_ELEMENTS values (1-2 MiB, sized for a per-core L2 cache), and
# each block does the whole computation while it is in cache, in one scratch
# buffer reused from block to block. The only memory beyond the inputs is the
# output plus one scratch block per thread.
#
# NumPy ufuncs and reductions release the GIL, so the blocks are spread over a
# small thread pool (one contiguous range of rows per thread) when the input is
# large enough to pay for the hand-off to the threads. The arithmetic per row is
# unchanged by the blocking: every reduction still runs along one contiguous
# row, in NumPy's own (pairwise) order, so the results equal the unblocked
# formula's.

_BLOCK_ELEMENTS = 1 << 18  # values per block and thread: 1 MiB in float32
_THREAD_MIN_ELEMENTS = 1 << 20  # below this, one thread is faster
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _num_threads() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), capped by
    the environment variable ``XENT_NUM_THREADS`` where it is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    cap = os.environ.get("XENT_NUM_THREADS", "")
    return max(1, min(cores, int(cap))) if cap.strip().isdigit() else cores


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


def _spread(run: Callable[[int, int], None], n: int, step: int, size: int) -> None:
    """``run(start, stop)`` over ``range(n)``: one call, or one contiguous range
    per thread when ``size`` values are enough to pay for the hand-off and
    there are at least two ``step``-sized blocks to share."""
    threads = min(_num_threads(), n // step) if size >= _THREAD_MIN_ELEMENTS else 1
    if threads <= 1:
        run(0, n)
        return
    bounds = [n * i // threads for i in range(threads + 1)]
    futures = [_get_pool().submit(run, a, b) for a, b in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()


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

    _spread(run, n, step, rows.size)


def _binary_block(
    z: np.ndarray, y: np.ndarray, pw: np.ndarray | None, out: np.ndarray, scratch: list[np.ndarray]
) -> None:
    """``out = a·(pos + neg) + neg·relu(z) + pos·relu(-z)`` for one block, with
    ``a = softplus(-|z|)``, ``pos = p·y`` and ``neg = 1 - y`` (``a`` alone
    without ``pos_weight``, where ``pos + neg = 1``): the base class's short
    form, in two scratch buffers (three with ``pos_weight``); ``relu(-z)``
    enters as ``-min(z, 0)``. Where a relu is infinite under a zero weight the
    term is ``0·inf = NaN``: :func:`_binary_nll` then redoes those entries."""
    neg, part = scratch[0], scratch[1]
    np.abs(z, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    np.subtract(1.0, y, out=neg)
    pos = y
    if pw is not None:
        pos = np.multiply(y, pw, out=scratch[2])
        np.multiply(out, np.add(pos, neg, out=part), out=out)
    np.multiply(np.maximum(z, 0.0, out=part), neg, out=part)
    np.add(out, part, out=out)
    np.multiply(np.minimum(z, 0.0, out=part), pos, out=part)
    np.subtract(out, part, out=out)


def _block_total(
    be: Backend, z: np.ndarray, y: np.ndarray, pw: np.ndarray | None, out: np.ndarray, scratch: list[np.ndarray]
) -> Any:
    """:func:`_binary_block` into ``out``, and the block's sum; where that is
    NaN (an infinite logit under an agreeing label, or a NaN input), the NaN
    entries are redone by ``be.guarded_binary_nll`` (a NaN input stays NaN)."""
    _binary_block(z, y, pw, out, scratch)
    total = out.sum()
    if np.isnan(total):
        bad = np.isnan(out)
        out[bad] = be.guarded_binary_nll(z[bad], y[bad], None if pw is None else pw[bad])
        total = out.sum()
    return total


def _binary_nll(be: Backend, z: np.ndarray, y: np.ndarray, pw: np.ndarray | None, reduce: bool) -> Any:
    """The sigmoid loss of same-shaped ``z`` and ``y`` (``pw`` broadcast to
    them) in 1-D blocks of the flattened arrays, each computed in cache
    (:func:`_binary_block`), on the thread pool when large: elementwise, or
    with ``reduce`` the float64 sum of the block sums (each NumPy's pairwise
    sum in the input dtype), without any logits-sized array. A block whose sum
    is NaN has its NaN entries redone by ``be.guarded_binary_nll`` (a NaN
    input stays NaN)."""
    zf, yf = z.reshape(-1), y.reshape(-1)  # (views where contiguous, else copies)
    pf = None if pw is None else np.broadcast_to(pw, z.shape).reshape(-1)
    n, step = zf.size, _BLOCK_ELEMENTS
    if n <= step:  # one block, on this thread: none of the blocking's bookkeeping
        o = np.empty(n, z.dtype)
        total = _block_total(be, zf, yf, pf, o, [np.empty(n, z.dtype) for _ in range(2 if pf is None else 3)])
        return float(total) if reduce else o.reshape(z.shape)
    blocks = -(-n // step)
    out = None if reduce else np.empty(n, z.dtype)
    sums = np.zeros(blocks, np.float64)

    def run(first: int, last: int) -> None:
        with np.errstate(all="ignore"):  # (not inherited by the pool's threads)
            run_blocks(first, last)

    def run_blocks(first: int, last: int) -> None:
        size = min(step, n - first * step)
        scratch = [np.empty(size, z.dtype) for _ in range(2 if pf is None else 3)]
        own = np.empty(size, z.dtype) if out is None else None
        for b in range(first, last):
            at = slice(b * step, min(n, (b + 1) * step))
            m = at.stop - at.start
            if out is None:
                assert own is not None  # (allocated above exactly when out is None)
                o = own[:m]
            else:
                o = out[at]
            p_at = None if pf is None else pf[at]
            sums[b] = _block_total(be, zf[at], yf[at], p_at, o, [s[:m] for s in scratch])

    _spread(run, blocks, 1, n)
    if reduce:
        return float(sums.sum())
    assert out is not None  # (allocated above unless reduce)
    return out.reshape(z.shape)


def _classes_last(logits: Any, labels: Any, axis: Any) -> bool:
    """The envelope of NumPy's fused softmax hooks: host arrays, float32 or
    float64 logits with at least one class, on their last axis."""
    return (
        type(logits) is np.ndarray
        and type(labels) is np.ndarray
        and logits.dtype in (np.float32, np.float64)
        and bool(logits.ndim)
        and type(axis) is int
        and axis in (-1, logits.ndim - 1)
        and bool(logits.shape[-1])
    )


class NumpyBackend(Backend):
    name = "numpy"
    module = "numpy"

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def namespace(self, x: Array) -> Any:
        # Imported at first use, not with the backend: array_api_compat.numpy
        # is slow to import (it pulls in numpy.f2py), and the backend is
        # built at the first xent call of any framework (NumPy is always loaded).
        import array_api_compat.numpy as xp

        return xp

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
        # of five temporaries. (np.logaddexp computes the same but has no SIMD loop,
        # so it is much slower for float32.)
        if not isinstance(x, np.ndarray) or x.ndim == 0:
            return super().softplus(x)
        out = np.abs(x)
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += np.maximum(x, 0)
        return out

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        """The base class's short form, blocked and on the thread pool
        (:func:`_binary_nll`): no logits-sized temporary beyond the result."""
        z, y = np.asarray(z), np.asarray(y)
        pw = None if pos_weight is None else np.asarray(pos_weight)
        if z.ndim == 0 or z.dtype != y.dtype or z.shape != y.shape or (pw is not None and pw.dtype != z.dtype):
            return super().binary_nll(z, y, pos_weight)
        return _binary_nll(self, z, y, pw, reduce=False)

    def fused_sigmoid(self, logits: Array, labels: Array, *, reduction: Any) -> Array | None:
        # Reduced block by block: the elementwise loss is never written out.
        if not (
            type(logits) is np.ndarray
            and type(labels) is np.ndarray
            and logits.dtype in (np.float32, np.float64)
            and labels.dtype == logits.dtype
            and labels.shape == logits.shape
            and logits.ndim
            and (reduction in ("none", "sum") or (reduction == "mean" and logits.size))
        ):
            return None
        with self.errstate():
            if reduction == "none":
                return _binary_nll(self, logits, labels, None, reduce=False)
            total = _binary_nll(self, logits, labels, None, reduce=True)
        return logits.dtype.type(total / logits.size if reduction == "mean" else total)

    def fused_sparse(
        self, logits: Array, labels: Array, *, axis: Any, reduction: Any, ignore_index: Any,
        label_smoothing: Any = 0.0, class_weights: Any = None, weights: Any = None,
    ) -> Array | None:
        # The general path's own blocked nll on host arrays checked here
        # (classes last, in-range integer labels): the front end's validation
        # costs more than a small loss. Anything else: the general path.
        if not (
            _classes_last(logits, labels, axis)
            and labels.dtype.kind in "iu"
            and labels.shape == logits.shape[:-1]
            and labels.size
            and reduction in ("none", "sum", "mean")
            and (ignore_index is None or type(ignore_index) is int)
            and plain_sparse(label_smoothing, class_weights, weights)
            and labels_valid(labels, logits.shape[-1], ignore_index)
        ):
            return None
        keep = None if ignore_index is None else labels != ignore_index
        with self.errstate():
            loss = self.nll(logits, labels if keep is None else np.where(keep, labels, 0), logits.ndim - 1)
            if keep is not None:
                loss = np.where(keep, loss, logits.dtype.type(0))
            if reduction == "none":
                return loss
            total = loss.sum()
            if reduction == "sum":
                return total
            count = labels.size if keep is None else int(keep.sum())
            return total / count if count else total * 0

    def fused_dense(self, logits: Array, labels: Array, *, axis: Any, reduction: Any) -> Array | None:
        # The general path's own soft_nll on host arrays of one dtype and
        # shape (classes last): without the front end, as fused_sparse.
        if not (
            _classes_last(logits, labels, axis)
            and labels.dtype == logits.dtype
            and labels.shape == logits.shape
            and (reduction in ("none", "sum") or (reduction == "mean" and logits.size))
        ):
            return None
        with self.errstate():
            loss = self.soft_nll(logits, labels, logits.ndim - 1)
            if reduction == "none":
                return loss
            total = np.sum(loss)
            return total if reduction == "sum" else total / (logits.size // logits.shape[-1])

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

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
        """``-Σ y · log_softmax(z)`` as ``Σy · lse - Σ y·(z - m)``, blocked (see
        :func:`_blocked`): no logits-sized array is made.

        ``lse = log Σ exp(z - m)``. Where a label of 0 meets a ``-inf`` logit the
        product ``y·(z - m)`` is NaN; such rows are summed again with those
        terms left out (the general formula's limit: they contribute 0).
        """
        z, y = np.asarray(z), np.asarray(y)
        rows, soft = _rows(z, axis), _rows(y, axis)
        out = np.empty(rows.shape[0], rows.dtype)

        def kernel(block: np.ndarray, scratch: np.ndarray, at: slice) -> None:
            labels = soft[at]
            shifted = np.subtract(block, block.max(axis=1, keepdims=True), out=scratch)
            dot = np.einsum("ij,ij->i", labels, shifted)
            bad = np.isnan(dot)
            if bad.any():  # (0 · -inf: those terms are 0)
                part = shifted[bad]
                dot[bad] = np.where(labels[bad] == 0, 0, labels[bad] * part).sum(axis=1)
            lse = np.log(np.exp(shifted, out=shifted).sum(axis=1))
            np.subtract(labels.sum(axis=1) * lse, dot, out=out[at])

        _blocked(kernel, rows)  # (the losses call this under errstate())
        loss_shape = z.shape[:axis] + z.shape[axis + 1 :]
        return out.reshape(loss_shape)[()]

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None, raw: bool = False) -> Array:
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
