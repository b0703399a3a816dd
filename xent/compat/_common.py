"""Shared plumbing of the dialects: the backend of an argument, host data moved to it."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np

from xent.backends._base import FLOAT_DTYPES

Array = Any


def as_predictions(x: Any) -> Array:
    """Predictions as an array: Python lists/numbers become NumPy (ints as float)."""
    if isinstance(x, (numbers.Number, list, tuple)):
        x = np.asarray(x)
        if x.dtype.kind in "biu":
            x = x.astype(np.float64)
    return x


def backend(x: Array) -> Any:
    import xent

    return xent.get_backend(x)


def is_host(x: Any) -> bool:
    return isinstance(x, (numbers.Number, list, tuple, np.ndarray, np.generic))


def like(x: Any, ref: Array) -> Array:
    """``x`` in the framework (and on the device) of ``ref``."""
    be = backend(ref)
    if not is_host(x):
        return x
    arr = np.asarray(x)
    return arr if be.name == "numpy" else be.asarray(arr, like=ref)


def ndim(x: Any) -> int:
    return len(backend(x).shape(x)) if not is_host(x) else np.ndim(x)


def shape(x: Any) -> tuple[Any, ...]:
    return tuple(backend(x).shape(x)) if not is_host(x) else np.shape(x)


def numel(x: Array) -> Any:
    """The number of elements: an int where the shape is static, else (a
    dimension unknown at trace time, under tf.function) a scalar array of
    ``x``'s framework, counted at run time."""
    dims = shape(x)
    if all(d is not None for d in dims):
        return math.prod([int(d) for d in dims])  # (a list: torch.compile cannot trace a generator here)
    be = backend(x)
    return be.sum(be.cast(be.ones_like(x), "float32"))


def is_float(x: Any) -> bool:
    if is_host(x):
        return np.asarray(x).dtype.kind == "f"
    return backend(x).dtype_name(x) in FLOAT_DTYPES


def safe_divide(total: Array, divisor: Array, ref: Array, if_zero: float = 0.0) -> Array:
    """``total / divisor``, ``if_zero`` where ``divisor == 0`` (gradient-safe)."""
    be = backend(ref)
    total = like(total, ref)
    divisor = be.cast(like(divisor, ref), be.dtype_name(total))
    empty = divisor == 0
    return be.where(empty, if_zero, total / be.where(empty, 1.0, divisor))


def plain_python(namespace: dict[str, Any], names: list[str]) -> None:
    """Mark a dialect's public functions as xent's losses are marked: TF's
    AutoGraph runs them as written instead of converting them
    (:func:`xent._frontend.plain_python`)."""
    from xent._frontend import plain_python as mark

    for name in names:
        obj = namespace.get(name)
        if inspect.isfunction(obj):
            mark(obj)
