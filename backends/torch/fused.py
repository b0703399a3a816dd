"""PyTorch: the fused rung of the dispatch ladder (``Backend.fused_sparse``,
``fused_dense``, ``fused_sigmoid``): a whole plain loss in one native call,
eagerly on the CPU, inside the envelope where torch's kernel gives exactly
xent's semantics; large logits take the chunked kernels (:mod:`.chunked`)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .._base import Backend, labels_valid, plain_sparse
from . import tensors
from .binary import SUM_CHECK_MIN, BinaryNLL
from .tensors import HALF, autocast, down, forward_mode, recorded, up

Array = Any

#: F.cross_entropy always ignores some label value; without an ignore_index the
#: fast path gives it this one (not -2**63, for which torch's argument parser
#: is slower), after one read shows that no label equals it: a label that
#: did would be ignored silently instead of rejected.
_NO_IGNORE = -(2**62)
_FUSED_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
#: above this many logits, the sparse fast path works in cache-sized chunks
#: instead of one F.cross_entropy call: F.cross_entropy's logits-sized float32
#: temporaries then exceed glibc's largest mmap threshold (32 MiB), so each call
#: maps and page-faults fresh memory, which costs more than the chunks' extra
#: passes; below it those buffers are reused and the single call is faster.
CHUNKED_MIN = 1 << 23
#: torch's reduction enum (torch.nn._reduction.get_enum), as its C++ losses take it.
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_REDUCTION_NAMES = ("none", "mean", "sum")
_ATEN_CROSS_ENTROPY = getattr(torch._C._nn, "cross_entropy_loss", None)
# (bound once: each attribute lookup is a measurable part of a small call)
_is_compiling = torch.compiler.is_compiling
_functorch_active = torch._C._are_functorch_transforms_active
_mode_active = torch._C._is_torch_function_mode_enabled
_Tensor = torch.Tensor
_ONES: dict[tuple[torch.dtype, torch.device], Array] = {}  # (_small_binary_nll)
_INT64 = torch.int64
_INDEX_DTYPES = frozenset((torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8))


def _fusable(logits: Array, reduction: str, axis: int | None = None) -> int | None:
    """torch's enum of ``reduction`` inside the envelope shared by the fast
    paths, else None: a plain CPU tensor of a floating dtype, eagerly, a known
    reduction (a mean over at least one entry) and, for the softmax losses,
    the class axis where torch's kernels want it (dim 1). (Each check here is
    a measurable part of a small call: cheapest first, each attribute read once.)"""
    enum = _REDUCTIONS.get(reduction)
    if type(logits) is not _Tensor or enum is None:
        return None
    dtype = logits.dtype
    if dtype not in _FUSED_DTYPES or not logits.is_cpu:
        return None
    if axis is not None:
        shape = logits.shape
        ndim = len(shape)
        if type(axis) is not int or ndim < 2 or not shape[1] or not (axis == 1 or (axis == -1 and ndim == 2)):
            return None
        if enum == 1 and not (shape[0] if ndim == 2 else logits.numel()):
            return None
    elif enum == 1 and not logits.numel():
        return None
    if dtype in HALF and autocast(logits):
        return None  # (the general path returns float32 there, as torch.autocast does)
    return None if _is_compiling() or _functorch_active() else enum


def _on_device(logits: Array, reduction: str, axis: int | None = None) -> bool:
    """Whether a loss takes its chunked kernel off the CPU (on an accelerator,
    or wherever the host cannot read values for free: ``tensors.host_readable``):
    large half-precision logits, eagerly, outside torch.autocast, and for the
    softmax losses ``[N, C]`` with the class axis last. There the general path
    would upcast the whole logits to float32 (a float32 copy, a float32
    ``log_softmax`` and float32 gradients: about 18 bytes per logit forward and
    backward, where torch's own bfloat16 loss takes 6); the chunked kernels
    hold one float32 chunk, and read nothing on the host: out-of-range labels
    are clipped and their losses made NaN, as the general path does there."""
    if type(logits) is not _Tensor or logits.dtype not in HALF or reduction not in _REDUCTIONS:
        return False
    if logits.numel() <= CHUNKED_MIN or tensors.host_readable(logits):
        return False
    return _eager_rows(logits, axis)


def _eager_rows(logits: Array, axis: int | None) -> bool:
    """Whether a chunked kernel can take ``logits``: ``[N, C]`` with the
    class axis last (``axis``; None: an elementwise loss, any shape),
    eagerly, outside torch.autocast, autodiff's forward mode and torch.func."""
    if axis is not None and not (logits.ndim == 2 and type(axis) is int and axis in (1, -1)):
        return False
    return not (forward_mode() or autocast(logits) or _is_compiling() or _functorch_active())


def _cpu_chunked(logits: Array, axis: Any) -> bool:
    """Whether the general path's sparse rows (``Backend.sparse_rows``) take
    the chunked kernel on the CPU: large ``[N, C]`` logits with the class axis
    last, eagerly, outside torch.autocast, autodiff's forward mode and
    torch.func. (Calls with options the fused rung leaves: there a float32
    ``log_softmax`` and the options' passes each cost a logits-sized
    temporary, where the kernel's chunks stay in cache.)"""
    if type(logits) is not _Tensor or logits.dtype not in _FUSED_DTYPES or not tensors.host_readable(logits):
        return False
    return logits.numel() > CHUNKED_MIN and axis is not None and _eager_rows(logits, axis)


def rows_chunked(logits: Array, axis: int | None) -> bool:
    """Whether ``Backend.rows_in_chunks`` evaluates a loss's general formulas
    chunk by chunk (:func:`.chunked.chunked_rows`): off the CPU where
    :func:`_on_device` says so (half inputs: no float32 copy of them); on the
    CPU for large inputs of every dtype, ``[N, C]`` with the class axis last
    (``axis``) or elementwise (``axis`` None), eagerly, outside torch.autocast,
    autodiff's forward mode and torch.func: the formulas' logits-sized passes
    then run over chunks that stay in cache, instead of fresh logits-sized
    arrays whose page faults cost more than the recomputed forward pass
    (``benchmarks/family.py``)."""
    if type(logits) is not _Tensor or logits.numel() <= CHUNKED_MIN:
        return False
    return _eager_rows(logits, axis) if tensors.host_readable(logits) else _on_device(logits, "none", axis)


def _cross_entropy(x: Array, target: Array, enum: int, ignore_index: int = -100, weight: Array | None = None,
                   smoothing: float = 0.0) -> Array:
    """``F.cross_entropy(x, target, weight, ignore_index=..., reduction=...,
    label_smoothing=...)`` (``enum``: torch's, from :func:`_fusable`), called
    without its Python wrapper (its argument handling is a sizeable part of a
    small call) where no TorchFunctionMode must see the call (the fast paths
    take plain tensors only, so no subclass's ``__torch_function__`` is skipped)."""
    if _ATEN_CROSS_ENTROPY is None or _mode_active():
        return F.cross_entropy(x, target, weight, None, ignore_index, None, _REDUCTION_NAMES[enum],
                               label_smoothing=smoothing)
    return _ATEN_CROSS_ENTROPY(x, target, weight, enum, ignore_index, smoothing)


def _like(labels: Any, logits: Array) -> bool:
    """Real-valued labels the fast paths take as they are: a plain tensor of
    the logits' dtype and shape (anything else goes through the front end)."""
    return type(labels) is torch.Tensor and labels.dtype == logits.dtype and labels.shape == logits.shape


def _large(logits: Array) -> bool:
    """Whether a loss takes its chunked kernel (chunked.py): more than
    ``CHUNKED_MIN`` logits, outside forward mode."""
    return logits.numel() > CHUNKED_MIN and not forward_mode()


def _chunked(logits: Array) -> bool:
    """Whether a softmax loss takes its chunked kernel: large ``[N, C]`` logits."""
    return _large(logits) and logits.ndim == 2


def _flat_pair(logits: Array, labels: Array) -> bool:
    """Whether both are contiguous tensors on one device (the sigmoid kernel's flat chunks)."""
    return logits.is_contiguous() and labels.is_contiguous() and labels.device == logits.device


def _reduce(loss: Array, reduction: str, count: int) -> Array:
    """A chunked kernel's ``loss`` (per row, or already summed) reduced: the
    mean is over ``count`` entries (0 when there are none)."""
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / max(count, 1)


def _small_binary_nll(z: Array, y: Array, reduction: str) -> Array | None:
    """``binary_nll(z, y)`` without ``pos_weight``, reduced, for small inputs
    that no autodiff records: ``|z|·(y where z < 0 or z = -0, else 1 - y) - log σ(|z|)``,
    seven ops where the node (BinaryNLL) takes eleven and an autograd.Function
    call (in a small call, each op's dispatch costs more than its arithmetic).
    The same terms as the node's, so as exact, but without its ``0·inf`` guard:
    ``None`` where the result is NaN (an infinite logit, or NaN input), and the
    caller runs the node."""
    a = z.abs()
    key = (z.dtype, z.device)
    one = _ONES.get(key)
    if one is None:  # (a 0-d tensor: a Python scalar operand is wrapped afresh on every op)
        one = _ONES[key] = torch.ones((), dtype=z.dtype, device=z.device)  # (not a torch.device context's)
    loss = torch.where(torch.signbit(z), y, one - y).mul_(a).sub_(F.logsigmoid(a))
    if reduction != "none":
        loss = loss.sum() if reduction == "sum" else loss.mean()
    return None if _nan_in(loss, reduction) else loss


def _nan_in(loss: Array, reduction: str) -> bool:
    """Whether a fast path's result has a NaN, in one read: the value itself, or
    for ``"none"`` its sum (an ``inf - inf`` that only the sum makes, under
    labels of both signs, costs the general path, nothing else). ``item()``
    (a third of ``bool(isnan)``'s cost; unlike ``float()`` it does not warn
    for a tensor that requires grad); the sum of ``"none"`` detached, so
    autograd records nothing."""
    if reduction != "none":
        return math.isnan(loss.item())
    return math.isnan((loss.detach() if loss.requires_grad else loss).sum().item())


def fused_sparse(
    be: Backend, logits: Array, labels: Array, *, axis: Any, reduction: Any, ignore_index: Any,
    label_smoothing: Any = 0.0, class_weights: Any = None, weights: Any = None,
) -> Array | None:
    # F.cross_entropy is the whole loss, reduction included, on the CPU in
    # eager mode: its kernel raises for an out-of-range label (we then take
    # the general path, which names the bad labels), so no host check is
    # needed. Large logits take the chunked kernel instead. Not taken:
    # accelerators (a device assert, not NaN) and torch.compile (out-of-range
    # labels must give NaN there); a mean with ignore_index that comes out NaN
    # (every entry ignored) is left to the general path, which gives 0.
    # Smoothing, class and sample weights: _options_sparse.
    if type(labels) is not _Tensor or (ignore_index is not None and type(ignore_index) is not int):
        return None
    if not plain_sparse(label_smoothing, class_weights, weights):
        return _options_sparse(logits, labels, axis, reduction, ignore_index, label_smoothing, class_weights,
                               weights)
    if labels.dtype is not _INT64:
        if labels.dtype in _INDEX_DTYPES and _on_device(logits, reduction, axis):
            return _device_sparse(be, logits, labels, reduction, ignore_index)
        return None
    enum = _fusable(logits, reduction, axis)
    if enum is None:
        if _on_device(logits, reduction, axis):
            return _device_sparse(be, logits, labels, reduction, ignore_index)
        return None
    if logits.numel() > CHUNKED_MIN and logits.ndim == 2 and not forward_mode():  # (_chunked, inline)
        if labels.shape != logits.shape[:1] or not labels.is_cpu:
            return None  # (the general path names the mismatch)
        return _chunked_sparse(be, logits, labels, reduction, ignore_index)
    return _one_call(logits, labels, enum, ignore_index)


def _one_call(logits: Array, labels: Array, enum: int, ignore_index: int | None, weight: Array | None = None,
              smoothing: float = 0.0, wide: bool = False) -> Array | None:
    """One ``F.cross_entropy`` call (:func:`_cross_entropy`) for the fused
    sparse rung, half types upcast (``wide``: the result left in float32,
    unchecked); None where its result is not xent's: a label equal to the
    value torch is told to ignore when there is no ``ignore_index`` (the
    general path rejects it), a masked mean that comes out NaN (nothing
    kept: xent 0), or a class-weighted result with a NaN (a zero total
    weight, or an infinite loss under a zero class weight: xent 0)."""
    dtype = logits.dtype
    half = dtype in HALF  # (_up and _down, inline)
    masked = ignore_index is not None or weight is not None
    try:
        # (min() raises for no labels, which the general path handles too)
        if ignore_index is None:
            if labels.min().item() == _NO_IGNORE:
                return None
            ignore_index = _NO_IGNORE
        loss = _cross_entropy(logits.float() if half else logits, labels, enum, ignore_index, weight, smoothing)
    except (IndexError, OverflowError, RuntimeError, ValueError):
        return None
    if wide:
        return loss  # (_sample_weighted checks its own result)
    if weight is not None:  # (torch's 0·inf under a zero class weight: 0 in xent, Backend.weigh)
        if _nan_in(loss, _REDUCTION_NAMES[enum]):
            return None
    elif masked and enum == 1 and math.isnan(loss.item()):
        return None
    return loss.to(dtype) if half else loss

def _options_sparse(logits: Array, labels: Array, axis: Any, reduction: Any, ignore_index: int | None,
                    label_smoothing: Any, class_weights: Any, weights: Any = None) -> Array | None:
    # F.cross_entropy with label smoothing and class weights is xent's
    # formula and its weighted mean (docs/semantics.md). Small CPU logits
    # only; declined: class weights that are not a CPU float tensor of
    # shape [C] (or need a gradient: torch's kernel gives none), a zero class
    # weight with smoothing (torch forms 0·inf at a -inf logit, xent 0), and
    # a mean that comes out NaN (nothing kept, or a zero total weight: xent 0).
    # Sample weights: _sample_weighted.
    if type(label_smoothing) not in (float, int) or not 0.0 <= label_smoothing < 1.0 or labels.dtype is not _INT64:
        return None
    enum = _fusable(logits, reduction, axis)
    if enum is None or logits.numel() > CHUNKED_MIN:
        return None
    w = class_weights
    if w is not None:
        if not _host_floats(w, logits.shape[1:2]) or w.requires_grad:
            return None
        if label_smoothing and bool((w == 0).any()):
            return None
    if w is not None:  # (in the dtype the call computes in)
        compute = torch.float32 if logits.dtype in HALF else logits.dtype
        if w.dtype != compute:
            w = w.to(compute)
    if weights is not None:
        return _sample_weighted(logits, labels, enum, ignore_index, w, float(label_smoothing), weights)
    return _one_call(logits, labels, enum, ignore_index, w, float(label_smoothing))


def _host_floats(x: Any, shape: Any) -> bool:
    """Whether ``x`` is a plain CPU tensor of a floating dtype and exactly ``shape``."""
    return type(x) is _Tensor and x.is_cpu and x.shape == shape and x.is_floating_point()


def _sample_weighted(logits: Array, labels: Array, enum: int, ignore_index: int | None, cw: Array | None,
                     smoothing: float, weights: Any) -> Array | None:
    """The sparse loss with sample weights ``weights`` (a CPU float tensor of
    the labels' shape; anything else: None), from ``F.cross_entropy``'s
    per-entry losses (class weights, smoothing and ignored entries included)
    times the weights, reduced as xent reduces: the mean over the total
    weight ``Σ w_i·cw[y_i]`` of the kept entries. Computed in float32 for
    half logits and rounded once; autograd differentiates the weighting (the
    weights get their gradient too). None where the result is not finite: a
    zero total weight (xent: 0), a zero weight under an infinite loss (xent
    weighs it 0, a product gives NaN), or an infinite loss, all the general
    path's."""
    if not _host_floats(weights, labels.shape):
        return None
    rows = _one_call(logits, labels, 0, ignore_index, cw, smoothing, wide=True)
    if rows is None:
        return None
    w = weights if weights.dtype == rows.dtype else weights.to(rows.dtype)
    loss = rows * w
    if enum == 2:
        loss = loss.sum()
    elif enum == 1:
        total = w
        keep = None if ignore_index is None else labels != ignore_index
        if cw is not None:
            total = total * cw[labels if keep is None else labels.masked_fill(~keep, 0)]
        if keep is not None:
            total = total.masked_fill(~keep, 0.0)
        loss = loss.sum() / total.sum()
    check = loss.detach() if enum == 0 and loss.requires_grad else loss
    if not math.isfinite((check.sum() if enum == 0 else check).item()):
        return None
    return down(loss, logits.dtype)


def _chunked_sparse(
    be: Backend, logits: Array, labels: Array, reduction: str, ignore_index: int | None
) -> Array | None:
    # Large logits: computed chunk by chunk in cache (chunked.
    # _ChunkedSparse), half types in float32 rather than upcast whole;
    # out-of-range labels are found on the host (one reduction) and left
    # to the general path.
    from .chunked import chunked_sparse_nll

    if not labels_valid(labels.numpy(), logits.shape[1], ignore_index):
        return None
    keep = None if ignore_index is None else labels != ignore_index
    kept = labels.shape[0] if keep is None else int(keep.sum())
    if kept == labels.shape[0]:
        keep = None
    loss = chunked_sparse_nll(logits, labels if keep is None else labels.masked_fill(~keep, 0), keep, be)
    return down(_reduce(loss, reduction, kept), logits.dtype)

def _device_sparse(be: Backend, logits: Array, labels: Array, reduction: str, ignore_index: int | None
                   ) -> Array | None:
    # The chunked kernel off the CPU: labels clipped on the device, the losses
    # of out-of-range ones made NaN (their gradients those of the clipped
    # label, as the general path's), the mean's count a device tensor.
    from .chunked import chunked_sparse_nll

    n, c = logits.shape
    if labels.shape != (n,) or labels.device != logits.device:
        return None  # (the general path names the mismatch)
    y = labels.long()
    keep = None if ignore_index is None else y != ignore_index
    bad = (y < 0) | (y >= c)
    if keep is not None:
        bad = bad & keep
        y = y.masked_fill(~keep, 0)
    loss = chunked_sparse_nll(logits, y.clamp(0, c - 1), keep, be)
    loss = loss + torch.where(bad, math.nan, 0.0)
    if reduction == "none":
        return loss.to(logits.dtype)
    total = loss.sum()
    if reduction == "mean":
        total = total / (max(n, 1) if keep is None else keep.sum().clamp_min(1))
    return total.to(logits.dtype)


def fused_dense(be: Backend, logits: Array, labels: Array, *, axis: Any, reduction: Any) -> Array | None:
    # F.cross_entropy with probability targets, reduction included (large
    # logits: the chunked kernel), unless its result has a NaN (a zero
    # label under a -inf logit, where xent's loss is finite; or NaN inputs,
    # which the general path gives again).
    if not _like(labels, logits):
        return None
    enum = _fusable(logits, reduction, axis)
    if enum is None:
        if _on_device(logits, reduction, axis) and labels.device == logits.device:
            from .chunked import chunked_dense_nll  # (exact at 0·-inf there: no host check to fall back on)

            return down(_reduce(chunked_dense_nll(logits, labels, True), reduction, logits.shape[0]), logits.dtype)
        return None
    if _chunked(logits) and labels.is_cpu:
        from .chunked import chunked_dense_nll

        loss = _reduce(chunked_dense_nll(logits, labels, False), reduction, logits.shape[0])
    else:
        try:
            loss = _cross_entropy(up(logits), up(labels), enum)
        except (RuntimeError, ValueError):
            return None
    return None if _nan_in(loss, reduction) else down(loss, logits.dtype)

def fused_sigmoid(be: Backend, logits: Array, labels: Array, *, reduction: Any) -> Array | None:
    # The general path's own node (BinaryNLL), without the front end; small
    # inputs that no autodiff records, without the node (_small_binary_nll);
    # large ones chunk by chunk (chunked._ChunkedBinaryNLL).
    if not _like(labels, logits):
        return None
    if _fusable(logits, reduction) is None:
        if _on_device(logits, reduction) and _flat_pair(logits, labels):
            from .chunked import chunked_binary_nll

            loss = chunked_binary_nll(logits, labels, BinaryNLL.value, reduction != "none")
            return down(_reduce(loss, reduction, logits.numel()), logits.dtype)
        return None
    if _large(logits) and _flat_pair(logits, labels):
        from .chunked import chunked_binary_nll

        loss = chunked_binary_nll(logits, labels, BinaryNLL.value, reduction != "none")
        return down(_reduce(loss, reduction, logits.numel()), logits.dtype)
    z, y = up(logits), up(labels)
    if z.numel() < SUM_CHECK_MIN and not recorded(z, y):
        loss = _small_binary_nll(z, y, reduction)
        if loss is not None:
            return down(loss, logits.dtype)
    loss = BinaryNLL.apply(z, y, None)
    if reduction != "none":
        loss = loss.sum() if reduction == "sum" else loss.mean()
    return down(loss, logits.dtype)
