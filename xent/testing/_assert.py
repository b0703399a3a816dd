"""``assert_backends_agree`` and ``assert_close``: parity checks for users' own CI."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xent.backends._base import FLOAT_DTYPES
from xent.testing._frameworks import NAMES, Framework, framework, installed
from xent.testing._tolerance import tolerance

Array = Any

#: environment variable narrowing the backends (comma-separated framework names)
ENV_BACKENDS = "XENT_TEST_BACKENDS"


def selected_backends(backends: Sequence[str] | None = None) -> tuple[list[str], bool]:
    """``(names, explicit)``: the given names, else ``$XENT_TEST_BACKENDS``, else all
    installed frameworks. ``explicit`` is True when the user named them."""
    if backends is None:
        env = os.environ.get(ENV_BACKENDS, "").strip()
        if env:
            backends = [b.strip() for b in env.split(",") if b.strip()]
    if backends is None:
        return [n for n in NAMES if installed(n)], False
    unknown = [b for b in backends if b not in NAMES]
    if unknown:
        raise ValueError(f"unknown backend {unknown}; known: {list(NAMES)}")
    return list(backends), True


def _diff(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """None if ``got`` matches ``want``, else a one-line description of the worst element."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape} != expected shape {want.shape}"
    if got.size == 0:
        return None
    both_inf = np.isinf(want) & (got == want)
    err = np.where(both_inf, 0.0, np.abs(got - want))
    err = np.where(np.isnan(got) & np.isnan(want), 0.0, err)
    bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
    if not bad.any():
        return None
    ratio = np.where(np.isnan(err), np.inf, err / (atol + rtol * np.abs(want)))
    i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    where = f" at index {tuple(int(k) for k in i)}" if got.ndim else ""
    return (f"{int(bad.sum())} of {got.size} elements differ; worst{where}: "
            f"got {got[i]:.9g}, expected {want[i]:.9g} (abs err {err[i]:.3g}, "
            f"allowed {atol:.3g} + {rtol:.3g}*|expected|)")


def assert_close(actual: Array, expected: Any, *, dtype: str | None = None, num_classes: int = 2,
                 reduced: int = 1, rtol: float | None = None, atol: float | None = None) -> None:
    """Assert that ``actual`` (an array of any framework) is close to ``expected``.

    The tolerance is xent's table (:func:`xent.testing.tolerance`) for ``dtype``
    (default: the dtype of ``actual``), ``num_classes`` and ``reduced``.

    Args:
      actual: an array of any framework xent supports, or NumPy.
      expected: the expected values (NumPy, list or scalar), best in float64.
      dtype: the dtype ``actual`` was computed in.
      num_classes: size of the class axis the loss reduced over.
      reduced: number of elements a ``"sum"``/``"mean"`` reduction added.
      rtol, atol: override the table.

    Raises:
      AssertionError: with the worst element, both values and the tolerance.

    >>> import numpy as np
    >>> assert_close(np.float32(0.4643591), 0.46435907, num_classes=3)
    """
    import xent

    name = xent.get_backend(actual).name if not isinstance(actual, (np.ndarray, np.generic, float)) else "numpy"
    fw = framework("array_api_strict" if name == "array_api" else name) if name in NAMES or name == "array_api" else None
    arr = fw.to_numpy(actual) if fw else np.asarray(actual)
    dt = dtype or (xent.get_backend(actual).dtype_name(actual) if fw else str(np.asarray(actual).dtype))
    if dt not in FLOAT_DTYPES:
        dt = "float32"
    r, a = tolerance(dt, num_classes, reduced)
    msg = _diff(arr, np.asarray(expected), r if rtol is None else rtol, a if atol is None else atol)
    if msg:
        raise AssertionError(f"{name} result ({dt}) differs from expected: {msg}")


def _to(fw: Framework, x: Any, dtype: str) -> Any:
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        return fw.asarray(arr.astype(np.float64), dtype)
    return fw.asarray(arr)


def _sum(out: Array) -> Array:
    import xent

    be = xent.get_backend(out)
    return out if not be.shape(out) else be.sum(out)


def assert_backends_agree(
    fn: Callable[..., Array],
    *args: Any,
    backends: Sequence[str] | None = None,
    dtype: str = "float32",
    grad: bool = False,
    num_classes: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Run ``fn(*args, **kwargs)`` on every installed backend and check they agree.

    Array arguments (NumPy arrays or lists) are moved into each framework:
    floating ones in ``dtype``, integer ones as they are. ``kwargs`` are passed
    unchanged (xent moves NumPy weights to the predictions' framework itself).
    Each backend's result is compared with ``fn`` run on NumPy in float64, using
    xent's tolerance table; with ``grad=True`` the gradient of the (summed)
    result w.r.t. the first argument is compared too, on every backend with
    autodiff, against the float64 gradient of the first such backend.

    Args:
      fn: an xent loss, or any function built on xent that takes arrays of one
        framework and returns an array of that framework.
      *args: NumPy arrays or (nested) lists; the first is the predictions.
      backends: framework names (``numpy``, ``torch``, ``tensorflow``, ``jax``,
        ``array_api_strict``); default ``$XENT_TEST_BACKENDS`` or every
        installed one. A backend named here that is not installed fails.
      dtype: floating dtype to run in: ``float16``, ``bfloat16``, ``float32``,
        ``float64``. Backends without that dtype are skipped.
      grad: also compare gradients w.r.t. ``args[0]``.
      num_classes: class-axis size for the tolerance (default: last axis of
        ``args[0]``).
      rtol, atol: override the tolerance table.
      **kwargs: passed to ``fn``.

    Returns:
      ``{backend: result as a NumPy array}``, the float64 reference under
      ``"reference"``.

    Raises:
      AssertionError: listing every backend that disagrees (worst element,
        both values, the tolerance) or raised.

    >>> import numpy as np, xent
    >>> from xent.testing import assert_backends_agree
    >>> logits = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
    >>> out = assert_backends_agree(xent.sparse_softmax_cross_entropy, logits, np.array([0, 2]),
    ...                             backends=["numpy"], reduction="mean")
    >>> round(float(out["reference"]), 6)
    0.319312
    """
    names, explicit = selected_backends(backends)
    title = f"backends disagree on {getattr(fn, '__name__', repr(fn))}"
    return _agree(title, [(name, fn) for name in names], ("numpy", fn), args, kwargs, explicit=explicit,
                  dtype=dtype, grad=grad, num_classes=num_classes, rtol=rtol, atol=atol)


def assert_ports_agree(
    fns: Mapping[str, Callable[..., Array]],
    *args: Any,
    dtype: str = "float32",
    grad: bool = False,
    num_classes: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Check that *different* functions, one per framework, compute the same loss:
    your TensorFlow pipeline and its PyTorch port, say.

    Each function gets the same NumPy inputs moved into its own framework
    (floating ones in ``dtype``, integer ones as they are) and is compared,
    with xent's tolerance table, against a float64 reference: the ``"numpy"``
    entry of ``fns`` if there is one, else the first entry run in float64.
    With ``grad=True`` the gradients of the (summed) results w.r.t. the first
    argument are compared against the float64 gradient of the first function
    whose framework has autodiff. The failure report is
    :func:`assert_backends_agree`'s.

    Args:
      fns: ``{framework name: function}``, names as in
        :func:`assert_backends_agree` (``numpy``, ``torch``, ``tensorflow``,
        ``jax``, ``array_api_strict``); each function takes and returns arrays
        of its framework. Every named framework must be installed.
      *args: NumPy arrays or (nested) lists; the first is the predictions.
      dtype, grad, num_classes, rtol, atol: as in :func:`assert_backends_agree`.
      **kwargs: passed to every function.

    Returns:
      ``{framework name: result as a NumPy array}``, the float64 reference
      under ``"reference"``.

    Raises:
      AssertionError: listing every function that disagrees or raised.
      ValueError: for an unknown framework name or an empty ``fns``.

    >>> import numpy as np
    >>> from xent.testing import assert_ports_agree
    >>> def mine(z, y):  # a NumPy port of some framework's loss
    ...     return -np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), y[:, None], -1)[:, 0]
    >>> logits, labels = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]]), np.array([0, 2])
    >>> out = assert_ports_agree({"numpy": mine}, logits, labels)
    >>> out["reference"].round(6)
    array([0.464369, 0.174255])
    """
    if not fns:
        raise ValueError("fns is empty: give at least one {framework name: function}")
    unknown = [name for name in fns if name not in NAMES]
    if unknown:
        raise ValueError(f"unknown framework {unknown}; known: {list(NAMES)}")
    first = "numpy" if "numpy" in fns else next(iter(fns))
    names = ", ".join(f"{name}: {getattr(f, '__name__', repr(f))}" for name, f in fns.items())
    return _agree(f"ports disagree ({names})", list(fns.items()), (first, fns[first]), args, kwargs,
                  explicit=True, dtype=dtype, grad=grad, num_classes=num_classes, rtol=rtol, atol=atol)


def _agree(
    title: str,
    calls: Sequence[tuple[str, Callable[..., Array]]],
    reference: tuple[str, Callable[..., Array]],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    *,
    explicit: bool,
    dtype: str,
    grad: bool,
    num_classes: int | None,
    rtol: float | None,
    atol: float | None,
) -> dict[str, np.ndarray]:
    """Run each ``(framework, fn)`` of ``calls`` on ``args`` moved into that
    framework and compare with ``reference`` run in float64 (values), and with
    the first differentiable call run in float64 (gradients)."""
    first = np.asarray(args[0])
    num = num_classes or (first.shape[-1] if first.ndim else 2)
    ref_fw = framework(reference[0])
    with ref_fw.context():
        ref_inputs = [_to(ref_fw, a, "float64") for a in args]
        ref_out = np.asarray(ref_fw.to_numpy(reference[1](*ref_inputs, **kwargs)), dtype=np.float64)
    reduced = max(1, first.size // num) if ref_out.ndim == 0 else 1
    r, a = tolerance(dtype, num, reduced)
    r = r if rtol is None else rtol
    a = a if atol is None else atol
    results: dict[str, np.ndarray] = {"reference": ref_out}
    problems: list[str] = []
    ref_grad: np.ndarray | None = None
    for name, fn in calls:
        if not installed(name):
            if explicit:
                problems.append(f"{name}: not installed")
            continue
        try:
            fw = framework(name)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: cannot start: {type(exc).__name__}: {exc}")
            continue
        if dtype not in fw.dtypes:
            continue
        with fw.context():  # (JAX: float64 exists inside this block only)
            try:
                inputs = [_to(fw, x, dtype) for x in args]
                out = fw.to_numpy(fn(*inputs, **kwargs))
            except Exception as exc:  # noqa: BLE001 - reported with the backend named
                problems.append(f"{name} ({dtype}): raised {type(exc).__name__}: {exc}")
                continue
            results[name] = out
            msg = _diff(out, ref_out, r, a)
            if msg:
                problems.append(f"{name} ({dtype}): {msg}")
            if grad and fw.differentiable:
                try:
                    if ref_grad is None:
                        grad_inputs = [_to(fw, x, "float64") for x in args]
                        ref_grad = fw.grad(lambda *xs: _sum(fn(*xs, **kwargs)), grad_inputs)[0]
                        results["reference_grad"] = ref_grad
                    g = fw.grad(lambda *xs: _sum(fn(*xs, **kwargs)), inputs)[0]
                    results[f"{name}_grad"] = g
                    msg = _diff(g, ref_grad, r, a)
                    if msg:
                        problems.append(f"{name} ({dtype}) gradient: {msg}")
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{name} ({dtype}) gradient: raised {type(exc).__name__}: {exc}")
    if problems:
        raise AssertionError(
            f"{title} (reference: {reference[0]} float64; tolerance rtol={r:.3g}, "
            f"atol={a:.3g}):\n  " + "\n  ".join(problems))
    return results


__all__ = ["ENV_BACKENDS", "assert_backends_agree", "assert_close", "assert_ports_agree", "selected_backends"]
