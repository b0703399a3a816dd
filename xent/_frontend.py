"""The front end, written once: input conversion, validation, masks and reductions.

Every loss in :mod:`xent._losses` goes through these helpers, so argument
checks, error messages, label handling, weighting and reductions behave the
same for every loss and every backend.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Literal, TypeVar, cast

import numpy as np

from xent._registry import backend_for
from xent.backends import Backend
from xent.backends._base import (
    FLOAT_DTYPES, HALF_DTYPES, INT_DTYPES, labels_in_range, labels_out_of_range,
)

Reduction = Literal["none", "sum", "mean"]
REDUCTIONS = ("none", "sum", "mean")
Array = Any
_F = TypeVar("_F", bound=Callable[..., Any])


def plain_python(fn: _F) -> _F:
    """Mark a public function so that TensorFlow's AutoGraph runs it as written
    instead of converting it (xent's control flow is on Python values, never
    on tensors, and converting it makes a traced step much slower to trace).
    The mark is the attribute AutoGraph gives its own artifacts; no import."""
    marked: Any = fn  # (any callable takes the attribute)
    marked.autograph_info__ = frozenset()
    return fn


def _is_host_data(x: Any) -> bool:
    """Python numbers and (nested) lists/tuples, and NumPy arrays: data on the host
    that follows the predictions' framework and device."""
    return isinstance(x, (numbers.Number, list, tuple, np.ndarray, np.generic))


def _framework_name(x: Any) -> str:
    backend = backend_for(x)
    return backend.name if backend is not None else type(x).__module__.split(".")[0]


@dataclass
class Predictions:
    """The predictions of one call, ready for computing.

    ``value`` is in ``compute_dtype`` (float32 for half inputs); results are cast
    back to ``dtype``.
    """

    backend: Backend
    value: Array
    dtype: str
    compute_dtype: str
    shape: tuple[int | None, ...]
    name: str
    #: the dtype of the result: ``dtype``, or float32 where the framework's
    #: mixed precision computes losses there (torch.autocast)
    result_dtype: str

    def finish(self, x: Array) -> Array:
        return self.backend.cast(x, self.result_dtype)


def predictions(x: Any, name: str, *, cast: bool = True) -> Predictions:
    """Dispatch on the predictions and validate that they are floating point.

    With ``cast=False`` the value keeps its own dtype (half types are not
    upcast): the caller computes in ``compute_dtype`` piece by piece.
    """
    if isinstance(x, (numbers.Number, list, tuple)):
        x = np.asarray(x)
        if x.dtype.kind in "biu":  # Python numbers are accepted: ints become floats
            x = x.astype(np.float64)
    backend = backend_for(x)
    if backend is None:
        raise TypeError(
            f"{name} has unsupported type {type(x).__module__}.{type(x).__qualname__}. "
            f"Pass a NumPy array, a PyTorch/TensorFlow/JAX tensor, an array-API array or "
            f"a Python list of numbers, or register a backend with xent.register_backend."
        )
    dtype = backend.dtype_name(x)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be floating point (float16, bfloat16, float32 or float64); "
            f"received {name}.dtype={dtype}. Cast it first, e.g. to float32."
        )
    x = backend.with_rank(x, None, name)
    compute = "float32" if dtype in HALF_DTYPES else dtype
    value = backend.cast(x, compute) if cast else x
    result = backend.loss_dtype(x, dtype)
    return Predictions(backend, value, dtype, compute, backend.shape(x), name, result)


def _same_framework(p: Predictions, x: Any, name: str) -> Array:
    """``x`` as an array of the predictions' framework, on their device."""
    be = p.backend
    if _is_host_data(x):
        if be.name == "numpy":
            return np.asarray(x)
        if type(x) is np.ndarray:
            return be.from_host(x, like=p.value)
        return be.asarray(np.asarray(x), like=p.value)
    owner = backend_for(x)
    if owner is not be:
        raise TypeError(
            f"{name} is a {_framework_name(x)} array but {p.name} is a {be.name} array; "
            f"pass both from the same framework (NumPy arrays and Python lists are "
            f"moved to {p.name}'s framework automatically)."
        )
    return x


def _check_shapes_match(
    got: tuple[int | None, ...], want: tuple[int | None, ...], message: str
) -> None:
    ok = len(got) == len(want) and all(
        a is None or b is None or a == b for a, b in zip(got, want)
    )
    if not ok:
        raise ValueError(message)


def narrow_of(p: Predictions) -> str | None:
    """The half dtype the predictions are upcast from, or None: the ``narrow``
    hint of ``Backend.nll``."""
    return None if p.dtype == p.compute_dtype else p.dtype


def upcast_from(p: Predictions, labels: Any) -> str | None:
    """The half dtype that both the predictions and ``labels`` (an array of the
    predictions' framework) are upcast from, or None: the ``narrow`` hint of
    ``Backend.soft_nll`` / ``binary_nll``."""
    be = p.backend
    narrow = narrow_of(p)
    if narrow is None or not be.is_array(labels) or be.dtype_name(labels) != narrow:
        return None
    return narrow


def float_labels(p: Predictions, labels: Any, name: str = "labels", *, cast: bool = True) -> Array:
    """Real-valued labels of exactly the predictions' shape, in the compute
    dtype (``cast=False``: in their own dtype, for the caller to cast)."""
    host = _is_host_data(labels)
    be = p.backend
    y = be.with_rank(_same_framework(p, labels, name), p.shape)
    dtype = be.dtype_name(y)
    if not (dtype in FLOAT_DTYPES or dtype in INT_DTYPES or dtype == "bool"):
        raise TypeError(f"{name} must be real numbers; received {name}.dtype={dtype}")
    shape = be.shape(y)
    _check_shapes_match(
        shape,
        p.shape,
        f"{name} must have the same shape as {p.name}. "
        f"Received: {p.name}.shape={p.shape}, {name}.shape={shape}",
    )
    if host and dtype == "bool":
        y = np.asarray(y, dtype=np.float32) if be.name == "numpy" else be.cast(y, "float32")
    return be.cast(y, p.compute_dtype) if cast else y


def normalize_axis(p: Predictions, axis: Any) -> int:
    ndim = len(p.shape)
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"axis must be an integer; received axis={axis!r}")
    if ndim == 0:
        raise ValueError(
            f"{p.name} needs a class axis, so at least one dimension; "
            f"received {p.name}.shape={p.shape}"
        )
    if not -ndim <= cast(int, axis) < ndim:  # (an Integral, checked above)
        raise ValueError(
            f"axis={axis} is out of range for {p.name}.shape={p.shape} ({ndim} dimensions)"
        )
    return int(axis) % ndim


def num_classes(p: Predictions, axis: int) -> int:
    c = p.shape[axis]
    if c is None:
        raise ValueError(
            f"the class axis of {p.name} must have a static size; "
            f"received {p.name}.shape={p.shape}, axis={axis}"
        )
    if c == 0:
        raise ValueError(f"{p.name} has no classes: {p.name}.shape={p.shape}, axis={axis}")
    return c


def _number(value: Any) -> float:
    """``value`` as a float, or NaN (which fails every range check) if it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_fraction(name: str, value: Any, upper: float) -> float:
    """A number in ``[0, upper)``: ``label_smoothing`` (upper 1), ``epsilon`` (upper 0.5)."""
    number = _number(value)
    if not 0.0 <= number < upper:
        raise ValueError(f"{name} must be a number in [0, {upper:g}); received {name}={value!r}")
    return number


def clipped_log_product(p: Predictions, epsilon: float) -> Callable[[Array, Array], Array]:
    """How a label multiplies ``log p`` or ``log(1 - p)`` of probabilities
    clipped to ``[ε, 1-ε]``: a plain product where the clip keeps ``p`` and
    ``1 - p`` positive in the compute dtype, so the log is finite and the
    guard against ``0·(-inf)`` (:meth:`Backend.weigh`) would change nothing;
    that guard for ``ε = 0``, or an ``ε`` the dtype rounds to 0 or ``1 - ε``
    to 1. (Plain Python comparisons: torch.compile traces NumPy scalars as
    tensors.)"""
    low, high = _CLIP_LIMITS[p.compute_dtype]
    return _product if epsilon > low and 1.0 - epsilon < high else p.backend.weigh


def _product(weight: Array, value: Array) -> Array:
    """``weight * value``: :meth:`Backend.weigh` where ``value`` is finite."""
    return weight * value


#: per compute dtype: the largest ε that rounds to 0 there, and the smallest
#: ``1 - ε`` that rounds to 1 (float32: half its smallest subnormal, and the
#: midpoint between 1 and the float below it).
_CLIP_LIMITS = {"float32": (2.0**-150, 1.0 - 2.0**-25), "float64": (0.0, 1.0)}


def check_z_loss(value: Any) -> float:
    """The z-loss scale: a finite number ``>= 0``."""
    number = _number(value)
    if not (number >= 0.0 and -math.inf < number < math.inf):
        raise ValueError(f"z_loss must be a finite number >= 0; received z_loss={value!r}")
    return number


def check_softcap(value: Any) -> float | None:
    """The logit soft-cap: None (no capping) or a finite number ``> 0``."""
    if value is None:
        return None
    number = _number(value)
    if not (number > 0.0 and -math.inf < number < math.inf):
        raise ValueError(
            f"logit_softcap must be None or a finite number > 0; received logit_softcap={value!r}"
        )
    return number


def softcap(be: Backend, z: Array, cap: float | None) -> Array:
    """Gemma 2's logit soft-capping ``cap · tanh(z / cap)`` (``z`` itself for None).

    A ``-inf`` logit stays ``-inf``: a masked class keeps probability 0 (the
    formula alone would give it ``-cap``). Its derivative there is 0 either way."""
    if cap is None:
        return z
    return be.where(z == -math.inf, z, be.tanh(z / cap) * cap)


def check_focal_gamma(value: Any) -> float:
    """The focal exponent ``γ``: a finite number ``>= 0`` (0: no modulation)."""
    number = _number(value)
    if not (number >= 0.0 and number < math.inf):
        raise ValueError(f"focal_gamma must be a finite number >= 0; received focal_gamma={value!r}")
    return number


def check_focal_alpha(value: Any) -> float | None:
    """The focal class balance ``α``: None or a number in ``[0, 1]``."""
    if value is None:
        return None
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"focal_alpha must be None or a number in [0, 1]; received focal_alpha={value!r}")
    return number


def check_poly_epsilon(value: Any) -> float:
    """PolyLoss' ``ε``: any finite number (the paper uses -1 to 2)."""
    number = _number(value)
    if not -math.inf < number < math.inf:
        raise ValueError(f"poly_epsilon must be a finite number; received poly_epsilon={value!r}")
    return number


def log_positive(be: Backend, u: Array) -> Array:
    """``log(u)`` for ``u >= 0``: ``-inf`` at 0 with no derivative there (the
    branch not taken is ``log(1)``, so no ``1/0`` reaches the backward pass)."""
    live = u > 0
    return be.where(live, be.log(be.where(live, u, 1.0)), -math.inf)


def focal_factor(be: Backend, log_u: Array, gamma: float, frozen: Array) -> Array:
    """``(1 - p_t)^γ = exp(γ·log(1 - p_t))`` from ``log_u = log(1 - p_t)`` (0 at
    ``-inf``). ``frozen``: where the loss it multiplies is infinite; the factor
    has no derivative there (its true derivative vanishes exponentially while
    the loss grows linearly, and ``inf · 0`` would be NaN)."""
    return be.exp(be.where(frozen, be.stop_gradient(log_u), log_u) * gamma)


def modulated(be: Backend, ce: Array, gamma: float, epsilon: float) -> Array:
    """Focal and PolyLoss terms of a softmax cross-entropy ``ce = -log p``:
    ``(1 - p)^γ · (ce + ε·(1 - p))`` (Lin et al.'s focal loss, and Leng et
    al.'s Poly-1 form of it; ``ce`` itself at ``γ = ε = 0``).

    ``1 - p = -expm1(-ce)`` has no cancellation as ``p → 1``, and the factor is
    taken in log space, so values and derivatives stay finite for every
    ``γ >= 0``: 0 where ``p`` rounds to 1 (also for ``γ < 1``, where the power's
    own derivative is infinite), the cross-entropy's own at ``ce = inf``.
    """
    if not gamma and not epsilon:
        return ce
    u = -be.expm1(-ce)
    out = ce + u * epsilon if epsilon else ce
    if gamma:
        out = focal_factor(be, log_positive(be, u), gamma, be.isinf(ce)) * out
    return out


def check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {REDUCTIONS}; received reduction={reduction!r}"
        )
    return reduction


def class_axis_inputs(
    x: Any, name: str, axis: Any, reduction: Any, weights: Any, *, cast: bool = True
) -> tuple[Predictions, int, int, Array | None]:
    """The common start of the class-axis losses: predictions (``cast``: see
    :func:`predictions`), normalised axis, number of classes, validated
    reduction and sample weights."""
    p = predictions(x, name, cast=cast)
    axis = normalize_axis(p, axis)
    num = num_classes(p, axis)
    check_reduction(reduction)
    loss_shape = p.shape[:axis] + p.shape[axis + 1 :]
    w = None if weights is None else broadcast_operand(p, weights, "weights", loss_shape, "the loss shape")
    return p, axis, num, w


def elementwise_inputs(
    x: Any, name: str, reduction: Any, weights: Any, *, cast: bool = True
) -> tuple[Predictions, Array | None]:
    """The common start of the elementwise (binary) losses (``cast``: see :func:`predictions`)."""
    p = predictions(x, name, cast=cast)
    check_reduction(reduction)
    w = None if weights is None else broadcast_operand(p, weights, "weights", p.shape, f"{name}.shape")
    return p, w


def broadcast_operand(
    p: Predictions, x: Any, name: str, target: tuple[int | None, ...], target_name: str
) -> Array:
    """A real array (``weights``, ``pos_weight``) that must broadcast to ``target``
    without enlarging it, in the compute dtype."""
    be = p.backend
    arr = be.with_rank(_same_framework(p, x, name), target)
    dtype = be.dtype_name(arr)
    if not (dtype in FLOAT_DTYPES or dtype in INT_DTYPES or dtype == "bool"):
        raise TypeError(f"{name} must be real numbers; received {name}.dtype={dtype}")
    shape = be.shape(arr)
    ok = len(shape) <= len(target) and all(
        a is None or b is None or a == 1 or a == b
        for a, b in zip(reversed(shape), reversed(target))
    )
    if not ok:
        raise ValueError(
            f"{name} must broadcast to {target_name} {target}. "
            f"Received: {name}.shape={shape}, {p.name}.shape={p.shape}"
        )
    return be.cast(arr, p.compute_dtype)


def class_weight_vector(p: Predictions, class_weights: Any, num: int) -> Array:
    be = p.backend
    w = be.with_rank(_same_framework(p, class_weights, "class_weights"), (num,))
    shape = be.shape(w)
    if len(shape) != 1 or shape[0] not in (num, None):
        raise ValueError(
            f"class_weights must have shape ({num},), one weight per class. "
            f"Received: class_weights.shape={shape}, {p.name}.shape={p.shape}"
        )
    return be.cast(w, p.compute_dtype)


def along_axis(p: Predictions, vector: Array, axis: int) -> Array:
    """A length-C vector shaped to broadcast along ``axis`` of the predictions."""
    shape = [1] * len(p.shape)
    shape[axis] = -1
    return p.backend.reshape(vector, tuple(shape))


@dataclass
class SparseLabels:
    """Integer labels made safe to gather with.

    ``safe`` holds every label in ``[0, C)`` (ignored and out-of-range entries
    clipped into it: their losses are masked afterwards); ``keep`` marks
    entries that are not ``ignore_index`` (None if there is no ignore_index);
    ``bad`` marks out-of-range entries that could not be checked eagerly (None
    where they were checked, or cannot occur).
    """

    safe: Array
    keep: Array | None
    bad: Array | None


def _raise_out_of_range(values: np.ndarray, num: int, ignore_index: int | None) -> None:
    bad = labels_out_of_range(values, num, ignore_index)
    if bad.any():
        shown = np.unique(values[bad])
        listed = ", ".join(str(v) for v in shown[:10]) + (", ..." if shown.size > 10 else "")
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(
            f"labels must be class ids in [0, {num}){extra}; received out-of-range "
            f"label values: {listed} ({int(bad.sum())} entries)"
        )


def sparse_labels(
    p: Predictions, labels: Any, axis: int, num: int, ignore_index: Any, axis_name: str = "class"
) -> SparseLabels:
    """Validate integer class ids against the predictions and make them safe.

    ``labels`` must have the predictions' shape without ``axis`` (the class axis
    of logits, or the hidden axis of :func:`xent.linear_cross_entropy`'s hidden
    states, named by ``axis_name`` in the error)."""
    be = p.backend
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        raise TypeError(f"ignore_index must be an integer or None; received ignore_index={ignore_index!r}")
    host = _is_host_data(labels)
    if host:
        labels = np.asarray(labels)
        if labels.size == 0 and labels.dtype.kind == "f":
            labels = labels.astype(np.int64)  # an empty Python list
    expected = p.shape[:axis] + p.shape[axis + 1 :]
    y = be.with_rank(_same_framework(p, labels, "labels"), expected)
    dtype = be.dtype_name(y)
    if dtype not in INT_DTYPES:
        raise TypeError(
            f"labels must be integer class ids; received labels.dtype={dtype}. "
            f"For probabilities or one-hot labels use softmax_cross_entropy; "
            f"otherwise cast the labels to an integer dtype."
        )
    shape = be.shape(y)
    _check_shapes_match(
        shape,
        expected,
        f"labels.shape must be {p.name}.shape without the {axis_name} axis ({axis}), i.e. "
        f"{expected}. Received: {p.name}.shape={p.shape}, labels.shape={shape}",
    )
    # Check on the host where that is free of syncs and traces; elsewhere mark.
    checked = host or be.can_inspect(y)
    if checked:
        values = labels if host else be.to_numpy(y)
        if not labels_in_range(values, num):
            _raise_out_of_range(values, num, cast("int | None", ignore_index))  # (checked above)
    info = np.iinfo(dtype)
    if ignore_index is not None and not int(info.min) <= int(ignore_index) <= int(info.max):
        ignore_index = None  # (no label of this dtype can equal it)
    keep = None if ignore_index is None else (y != ignore_index)
    bad = None if checked else ((y < 0) | (y >= num))
    if bad is not None and keep is not None:
        bad = bad & keep
    if keep is None and bad is None:
        return SparseLabels(y, None, None)
    # Clipped rather than selected: a compiler (inductor) then keeps the
    # gather index arithmetic vectorised inside the fused softmax kernels.
    top = min(num - 1, int(info.max))
    return SparseLabels(be.clip(y, 0, top), keep, bad)


def mask_rows(p: Predictions, values: Array, y: SparseLabels) -> Array:
    """Per-row values of class-id labels, unreduced: 0 where ignored, NaN where
    a label was found out of range under tracing (added, not selected, as
    :func:`reduce` marks them); in the predictions' result dtype."""
    return p.finish(_masked(p, values, y.keep, y.bad))


def _masked(p: Predictions, values: Array, keep: Array | None, bad: Array | None) -> Array:
    """``values`` with 0 where not ``keep`` and NaN where ``bad``."""
    be = p.backend
    if keep is not None:
        values = be.where(keep, values, 0.0)
    if bad is not None:
        # NaN added, not selected, so the backward pass has no select in it
        # (torch.compile then fuses the softmax backward, which a select splits);
        # those entries' gradients are then those of the clipped label.
        values = values + be.where(bad, math.nan, be.cast(bad, p.compute_dtype))
    return values


def normalizer_error(reduction: Any, normalizer: Any) -> Exception | None:
    """What is wrong with ``normalizer`` for ``reduction`` (None: nothing that
    can be seen without reading an array's value)."""
    if normalizer is None:
        return None
    if reduction != "mean":
        return ValueError(
            f"normalizer applies to reduction='mean' only (the result is Σ loss / normalizer); "
            f"received reduction={reduction!r}"
        )
    if isinstance(normalizer, bool) or (
        isinstance(normalizer, numbers.Number) and not isinstance(normalizer, numbers.Real)
    ):
        return TypeError(f"normalizer must be a real number or a 0-d array; received normalizer={normalizer!r}")
    if isinstance(normalizer, np.ndarray):  # (host data: read for free)
        if normalizer.shape != ():
            return ValueError(
                f"normalizer must be a number or a 0-d array; received normalizer.shape={normalizer.shape}"
            )
        if normalizer.dtype.kind in "iuf" and not normalizer >= 0:
            return ValueError(f"normalizer must be >= 0; received normalizer={normalizer.item()!r}")
    if isinstance(normalizer, numbers.Real) and not float(normalizer) >= 0:
        return ValueError(f"normalizer must be >= 0; received normalizer={normalizer!r}")
    return None


def _normalized(p: Predictions, total: Array, normalizer: Any) -> Array:
    """``total / normalizer`` (0 where the normalizer is 0, as an empty mean),
    the normalizer a constant for autodiff."""
    error = normalizer_error("mean", normalizer)
    if error is not None:
        raise error
    be = p.backend
    if isinstance(normalizer, numbers.Real):
        return p.finish(total / float(normalizer) if normalizer else total * 0.0)
    den = be.with_rank(_same_framework(p, normalizer, "normalizer"), ())
    shape, dtype = be.shape(den), be.dtype_name(den)
    if shape != ():
        raise ValueError(f"normalizer must be a number or a 0-d array; received normalizer.shape={shape}")
    if not (dtype in FLOAT_DTYPES or dtype in INT_DTYPES):
        raise TypeError(f"normalizer must be real; received normalizer.dtype={dtype}")
    den = be.stop_gradient(be.cast(den, p.compute_dtype))
    if be.can_inspect(den) and not float(be.to_numpy(den)) >= 0:
        raise ValueError(f"normalizer must be >= 0; received normalizer={float(be.to_numpy(den))!r}")
    empty = den == 0
    return p.finish(be.where(empty, 0.0, total / be.where(empty, 1.0, den)))


def reduce(
    p: Predictions,
    loss: Array,
    reduction: str,
    *,
    weights: Array | None = None,
    class_weight: Array | None = None,
    keep: Array | None = None,
    bad: Array | None = None,
    normalizer: Any = None,
) -> Array:
    """Apply sample weights, masks and the reduction; return in the predictions' dtype.

    Args:
      loss: per-element loss in the compute dtype, class weights already applied.
      weights: sample weights broadcastable to ``loss``; they multiply it.
      class_weight: the class weight of each entry's label (already inside
        ``loss``); counted in the mean's denominator.
      keep: entries not ignored (their loss becomes 0), or None.
      bad: out-of-range labels found under tracing (their loss becomes NaN).

    ``"mean"`` is ``Σ loss / Σ W`` with ``W = weights · class_weight · keep``; a
    zero total gives 0 with a zero gradient. With a ``normalizer`` (a number
    or 0-d array; ``"mean"`` only) it is ``Σ loss / normalizer`` instead.
    """
    error = normalizer_error(reduction, normalizer)
    if error is not None:
        raise error
    be = p.backend
    if weights is not None:
        loss = be.weigh(weights, loss)
    loss = _masked(p, loss, keep, bad)
    if reduction == "none":
        return p.finish(loss)
    total = be.sum(loss)
    if reduction == "sum":
        return p.finish(total)
    if normalizer is not None:
        return _normalized(p, total, normalizer)
    if weights is None and class_weight is None and keep is None:
        count = _static_size(be.shape(loss))
        if count is not None:
            return p.finish(total / count if count else total * 0.0)
    den = be.ones_like(loss)
    for factor in (weights, class_weight):
        if factor is not None:
            den = den * factor
    if keep is not None:
        den = be.where(keep, den, 0.0)
    den = be.sum(den)
    empty = den == 0
    return p.finish(be.where(empty, 0.0, total / be.where(empty, 1.0, den)))


def _static_size(shape: tuple[int | None, ...]) -> int | None:
    if any(d is None for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]
