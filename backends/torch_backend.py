"""PyTorch: autograd, torch.compile(fullgraph=True), every device torch has.

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

from ._base import HALF_DTYPES, Array, Backend, labels_valid

_DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}


#: F.cross_entropy always ignores some label value; without an ignore_index the
#: fast path gives it this one (not -2**63, which costs torch's argument parser
#: 0.2 us more), after one read shows that no label equals it: a label that
#: did would be ignored silently instead of rejected.
_NO_IGNORE = -(2**62)
_FUSED_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
_HALF = (torch.float16, torch.bfloat16)
#: from this many logits on, one sum (a host sync) is cheaper than a mask pass.
_SUM_CHECK_MIN = 1 << 16
#: above this many logits, the sparse fast path works in cache-sized chunks
#: instead of one F.cross_entropy call: F.cross_entropy's logits-sized float32
#: temporaries then exceed glibc's largest mmap threshold (32 MiB), so each call
#: maps and page-faults fresh memory (measured: the chunked kernel 0.25-0.5x of
#: it from 2^23 logits on, but 1.5-2.8x below, where those buffers are reused).
_CHUNKED_MIN = 1 << 23
#: torch's reduction enum (torch.nn._reduction.get_enum), as its C++ losses take it.
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_REDUCTION_NAMES = ("none", "mean", "sum")
_ATEN_CROSS_ENTROPY = getattr(torch._C._nn, "cross_entropy_loss", None)
# (bound once: each attribute lookup is a measurable part of a small call)
_is_compiling = torch.compiler.is_compiling
_functorch_active = torch._C._are_functorch_transforms_active
_mode_active = torch._C._is_torch_function_mode_enabled
_Tensor = torch.Tensor
_forward_ad = torch.autograd.forward_ad
_ONES: dict[tuple[torch.dtype, torch.device], Array] = {}  # (_small_binary_nll)
_INT64 = torch.int64


def _up(x: Array) -> Array:
    """Half types in float32: computed there and rounded once, as everywhere in
    xent (torch's own bfloat16 cross-entropy rounds log_softmax to bfloat16
    before the gather: measured up to 7.5 ulp off, against 0.5 ulp)."""
    return x.float() if x.dtype in _HALF else x


def _down(x: Array, dtype: torch.dtype) -> Array:
    """``x`` in ``dtype`` (a ``.to`` that is a no-op still costs a microsecond)."""
    return x if x.dtype is dtype else x.to(dtype)


def _fusable(logits: Array, reduction: str, axis: int | None = None) -> int | None:
    """torch's enum of ``reduction`` inside the envelope shared by the fast
    paths, else None: a plain CPU tensor of a floating dtype, eagerly, a known
    reduction (a mean over at least one entry) and, for the softmax losses,
    the class axis where torch's kernels want it (dim 1). (Each check here is
    a measurable part of a small call: cheapest first, the shape read once.)"""
    enum = _REDUCTIONS.get(reduction)
    if type(logits) is not _Tensor or enum is None or logits.dtype not in _FUSED_DTYPES or not logits.is_cpu:
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
    if logits.dtype in _HALF and _autocast(logits):
        return None  # (the general path returns float32 there, as torch.autocast does)
    return None if _is_compiling() or _functorch_active() else enum


def _autocast(x: Array) -> bool:
    """Whether torch.autocast is on for ``x``'s device."""
    return torch.is_autocast_enabled(x.device.type)


def _cross_entropy(x: Array, target: Array, enum: int, ignore_index: int = -100) -> Array:
    """``F.cross_entropy(x, target, ignore_index=..., reduction=...)`` (``enum``:
    torch's, from :func:`_fusable`), called without its Python wrapper (its
    argument handling is ~0.5 us of a 6 us small call) where no
    TorchFunctionMode must see the call (the fast paths take plain tensors
    only, so no subclass's ``__torch_function__`` is skipped)."""
    if _ATEN_CROSS_ENTROPY is None or _mode_active():
        return F.cross_entropy(x, target, None, None, ignore_index, None, _REDUCTION_NAMES[enum])
    return _ATEN_CROSS_ENTROPY(x, target, None, enum, ignore_index, 0.0)


def _like(labels: Any, logits: Array) -> bool:
    """Real-valued labels the fast paths take as they are: a plain tensor of
    the logits' dtype and shape (anything else goes through the front end)."""
    return type(labels) is torch.Tensor and labels.dtype == logits.dtype and labels.shape == logits.shape


_BATCHED_CHECKS = tuple(
    check
    for check in (
        getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None),
        getattr(torch._C._functorch, "is_legacy_batchedtensor", None),  # (gradcheck's batched grads)
    )
    if check is not None
)


def _is_batched(x: Array) -> bool:
    """A torch.func (vmap/grad) wrapped or vmap-batched tensor: its values cannot
    be read, and in-place ops on it may not mix batched and unbatched operands.
    (The checks are bound once: looked up per call, they were ~1 µs per tensor.)"""
    for check in _BATCHED_CHECKS:
        if check(x):
            return True
    return False


def _inplace(*tensors: Array | None) -> bool:
    """Whether fresh intermediates may be overwritten: eagerly, with no autodiff
    recording them and no torch.func wrapper batching some inputs but not others."""
    return not (
        torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or any(t is not None and _is_batched(t) for t in tensors)
    )


def _softplus_neg(z: Array) -> Array:
    """``softplus(-z) = -log_sigmoid(z)``, exact everywhere. (F.softplus returns
    its input itself above its threshold, 20: off by up to 2e-9, more than an
    ulp in float64.)"""
    return F.logsigmoid(z).neg_() if _inplace(z) else -F.logsigmoid(z)


def _forward_mode() -> bool:
    """Whether a forward-mode dual level is open (dual tensors do not say
    ``requires_grad``; the chunked kernels have no ``jvp``)."""
    return getattr(_forward_ad, "_current_level", 0) >= 0


def _recorded(*tensors: Array) -> bool:
    """Whether autodiff may record ops on ``tensors``: reverse mode (grad mode on
    and one requires grad) or forward mode."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)) or _forward_mode()


def _large(logits: Array) -> bool:
    """Whether a loss takes its chunked kernel (torch_linear): more than
    ``_CHUNKED_MIN`` logits, outside forward mode."""
    return logits.numel() > _CHUNKED_MIN and not _forward_mode()


def _chunked(logits: Array) -> bool:
    """Whether a softmax loss takes its chunked kernel: large ``[N, C]`` logits."""
    return _large(logits) and logits.ndim == 2


def _flat_pair(logits: Array, labels: Array) -> bool:
    """Whether both are contiguous CPU tensors (the sigmoid kernel's flat chunks)."""
    return logits.is_contiguous() and labels.is_contiguous() and labels.is_cpu


def _reduce(loss: Array, reduction: str, count: int) -> Array:
    """A chunked kernel's ``loss`` (per row, or already summed) reduced: the
    mean is over ``count`` entries (0 when there are none)."""
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / max(count, 1)


def _small_binary_nll(z: Array, y: Array, reduction: str) -> Array | None:
    """``binary_nll(z, y)`` without ``pos_weight``, reduced, for small inputs
    that no autodiff records: ``|z|·(y where z < 0 or z = -0, else 1 - y) - log σ(|z|)``,
    seven ops where the node (_BinaryNLL) takes eleven and an autograd.Function
    call (each op is ~1-2 us of a small call). The same terms as the node's, so
    as exact, but without its ``0·inf`` guard: ``None`` where the result is NaN
    (an infinite logit, or NaN input), and the caller runs the node."""
    a = z.abs()
    key = (z.dtype, z.device)
    one = _ONES.get(key)
    if one is None:  # (a 0-d tensor: a Python scalar operand is wrapped afresh on every op, ~3 us)
        one = _ONES[key] = torch.ones((), dtype=z.dtype, device=z.device)  # (not a torch.device context's)
    loss = torch.where(torch.signbit(z), y, one - y).mul_(a).sub_(F.logsigmoid(a))
    if reduction != "none":
        loss = loss.sum() if reduction == "sum" else loss.mean()
    return None if _nan_in(loss, reduction) else loss


def _nan_in(loss: Array, reduction: str) -> bool:
    """Whether a fast path's result has a NaN, in one read: the value itself, or
    for ``"none"`` its sum (an ``inf - inf`` that only the sum makes, under
    labels of both signs, costs the general path, nothing else). Read detached:
    ``float()`` of a tensor that requires grad warns."""
    check = loss.detach() if loss.requires_grad else loss
    return math.isnan(float(check if reduction != "none" else check.sum()))


class _BinaryNLL(torch.autograd.Function):
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
        inplace = _inplace(z, y, pw)
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
            inplace and z.is_cpu and z.numel() >= _SUM_CHECK_MIN and bool(torch.isfinite(z.sum()))
        )
        zero = None if checked else c == 0
        if inplace:
            term = c.mul_(z)
            return (term if zero is None else term.masked_fill_(zero, 0.0)).add_(a)
        assert zero is not None  # (checked needs inplace)
        return torch.where(zero, 0.0, c * z) + a

    @staticmethod
    def forward(ctx: Any, z: Array, y: Array, pw: Array | None) -> Array:  # type: ignore[override]
        _BinaryNLL.save(ctx, (z, y, pw), None)
        return _BinaryNLL.value(z, y, pw)

    @staticmethod
    def save(ctx: Any, inputs: tuple[Any, ...], output: Array | None) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def _partials(ctx: Any, need: tuple[bool, ...]) -> list[Array | None]:
        z, y, pw = ctx.saved_tensors
        inplace = _inplace(z, y, pw)
        dz = dy = dp = None
        if need[0]:
            s = torch.sigmoid(z)
            if pw is None:
                dz = s.sub_(y) if inplace else s - y
            else:
                q = y * pw
                dz = s * (q + (1.0 - y)) - q
        sp_neg = _softplus_neg(z) if pw is not None and (need[1] or need[2]) else None
        if need[1]:
            dy = -z if pw is None else pw * sp_neg - _softplus_neg(-z)
        if need[2]:
            dp = y * sp_neg
        return [dz, dy, dp]

    @staticmethod
    def backward(ctx: Any, g: Array) -> tuple[Array | None, ...]:  # type: ignore[override]
        grads = _BinaryNLL._partials(ctx, ctx.needs_input_grad)
        inplace = _inplace(g, *ctx.saved_tensors)
        for i, d in enumerate(grads):
            if d is not None:
                d = d.mul_(g) if inplace and d.shape == g.shape else d * g
                grads[i] = d if i < 2 else d.sum_to_size(ctx.saved_tensors[2].shape)
        return tuple(grads)

    @staticmethod
    def jvp(ctx: Any, tz: Array | None, ty: Array | None, tp: Array | None) -> Array:  # type: ignore[override]
        tangents = (tz, ty, tp)
        partials = _BinaryNLL._partials(ctx, tuple(t is not None for t in tangents))
        return sum(d * t for d, t in zip(partials, tangents) if t is not None)


class _BinaryNLLCompiled(torch.autograd.Function):
    """The same node for torch.compile, whose tracer refuses a custom ``jvp``."""

    forward = _BinaryNLL.forward
    backward = _BinaryNLL.backward


class _BinaryNLLTransformed(_BinaryNLL):
    """The same node in the form torch.func transforms (vmap, grad, jacfwd) need:
    ``forward`` without ``ctx``. (Not used otherwise: ``apply`` then binds the
    arguments through ``inspect.signature``, ~25 µs per call.)"""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Array, y: Array, pw: Array | None) -> Array:  # type: ignore[override]
        return _BinaryNLL.value(z, y, pw)

    setup_context = _BinaryNLL.save


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

    def loss_dtype(self, x: Array, dtype: str) -> str:
        # torch.autocast computes its losses in float32 (cross_entropy is on
        # its float32 list), so half logits give a float32 loss there.
        if dtype in HALF_DTYPES and _autocast(x):
            return "float32"
        return dtype

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
        return _softplus_neg(-x)

    def log_softmax(self, z: Array, axis: int) -> Array:
        return F.log_softmax(z, dim=axis)

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        # One autograd node with closed-form derivatives, computed in place,
        # instead of a dozen recorded ops: see _BinaryNLL.
        if torch.compiler.is_compiling():
            return _BinaryNLLCompiled.apply(z, y, pos_weight)
        if torch._C._are_functorch_transforms_active():
            return _BinaryNLLTransformed.apply(z, y, pos_weight)
        return _BinaryNLL.apply(z, y, pos_weight)

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
            # softmax kernel (a select splits it: measured 1.2x slower). The
            # flag is a count of such entries, not `.any()`: inductor's
            # vectorised bool reduction cost ~20% of the bfloat16 forward at
            # 4096x32000 (1.19-1.21x the native loss, 1.03x with the count, A/B).
            shifted = z - self.row_max(z, axis)
            log_s = torch.log(torch.exp(shifted).sum(axis))
            picked = (y * shifted.clamp(min=torch.finfo(z.dtype).min)).sum(axis)
            lost = ((y != 0) & (shifted == -math.inf)).to(z.dtype).sum(axis) > 0
            return log_s * y.sum(axis) - picked + torch.where(lost, math.inf, 0.0)
        return super().soft_nll(z, y, axis)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None) -> Array:
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
        # needed. Large logits take the chunked kernel instead. Not taken: a
        # small mean with ignore_index (torch gives NaN when every entry is
        # ignored, xent 0), accelerators (a device assert, not NaN) and
        # torch.compile (out-of-range labels must give NaN there).
        if type(labels) is not _Tensor or labels.dtype is not _INT64:
            return None
        enum = _fusable(logits, reduction, axis)
        if enum is None or (ignore_index is not None and type(ignore_index) is not int):
            return None
        if _chunked(logits):
            if labels.shape != logits.shape[:1] or not labels.is_cpu:
                return None  # (the general path names the mismatch)
            return self._chunked_sparse(logits, labels, reduction, ignore_index)
        if ignore_index is None:
            ignore_index = _NO_IGNORE
        elif enum == 1:  # (a mean)
            return None
        dtype = logits.dtype
        half = dtype in _HALF  # (_up and _down, inline)
        try:
            # (a label equal to _NO_IGNORE would be ignored silently: the
            # general path rejects it; min() raises for no labels, which the
            # general path handles too)
            if ignore_index is _NO_IGNORE and labels.min().item() == _NO_IGNORE:
                return None
            loss = _cross_entropy(logits.float() if half else logits, labels, enum, ignore_index)
        except (IndexError, OverflowError, RuntimeError, ValueError):
            return None
        return loss.to(dtype) if half else loss

    def _chunked_sparse(
        self, logits: Array, labels: Array, reduction: str, ignore_index: int | None
    ) -> Array | None:
        # Large logits: computed chunk by chunk in cache (torch_linear.
        # _ChunkedSparseNLL), half types in float32 rather than upcast whole;
        # out-of-range labels are found on the host (one reduction) and left
        # to the general path.
        from .torch_linear import chunked_sparse_nll

        if not labels_valid(labels.numpy(), logits.shape[1], ignore_index):
            return None
        keep = None if ignore_index is None else labels != ignore_index
        kept = labels.shape[0] if keep is None else int(keep.sum())
        if kept == labels.shape[0]:
            keep = None
        loss = chunked_sparse_nll(logits, labels if keep is None else labels.masked_fill(~keep, 0), keep)
        return _down(_reduce(loss, reduction, kept), logits.dtype)

    def fused_dense(self, logits: Array, labels: Array, axis: int, reduction: str) -> Array | None:
        # F.cross_entropy with probability targets, reduction included (large
        # logits: the chunked kernel), unless its result has a NaN (a zero
        # label under a -inf logit, where xent's loss is finite; or NaN inputs,
        # which the general path gives again).
        enum = _fusable(logits, reduction, axis) if _like(labels, logits) else None
        if enum is None:
            return None
        if _chunked(logits) and labels.is_cpu:
            from .torch_linear import chunked_dense_nll

            loss = _reduce(chunked_dense_nll(logits, labels), reduction, logits.shape[0])
        else:
            try:
                loss = _cross_entropy(_up(logits), _up(labels), enum)
            except (RuntimeError, ValueError):
                return None
        return None if _nan_in(loss, reduction) else _down(loss, logits.dtype)

    def fused_sigmoid(self, logits: Array, labels: Array, reduction: str) -> Array | None:
        # The general path's own node (_BinaryNLL), without the front end; small
        # inputs that no autodiff records, without the node (_small_binary_nll);
        # large ones chunk by chunk (torch_linear._ChunkedBinaryNLL).
        if not _like(labels, logits) or _fusable(logits, reduction) is None:
            return None
        if _large(logits) and _flat_pair(logits, labels):
            from .torch_linear import chunked_binary_nll

            loss = chunked_binary_nll(logits, labels, _BinaryNLL.value, reduction != "none")
            return _down(_reduce(loss, reduction, logits.numel()), logits.dtype)
        z, y = _up(logits), _up(labels)
        if z.numel() < _SUM_CHECK_MIN and not _recorded(z, y):
            loss = _small_binary_nll(z, y, reduction)
            if loss is not None:
                return _down(loss, logits.dtype)
        loss = _BinaryNLL.apply(z, y, None)
        if reduction != "none":
            loss = loss.sum() if reduction == "sum" else loss.mean()
        return _down(loss, logits.dtype)

    def linear_cross_entropy_chunks(self, *args: Any) -> Array:
        from .torch_linear import linear_cross_entropy_chunks  # the chunked LM-head loss, lazily

        return linear_cross_entropy_chunks(self, *args)


#: The one instance: the registry returns it for torch's own tensor types
#: without touching its caches (see xent._registry.backend_for).
BACKEND = TorchBackend()
