"""XLA's buffer plan of every loss on bfloat16 logits under ``jax.jit``,
compiled on the CPU and never run: ``compiled.memory_analysis()`` and the
optimized HLO (``compiled.as_text()``).

xent computes half inputs in float32 and rounds once. The question is whether
XLA fuses that upcast into the loops that read it, or writes out a float32
array of the logits' size ``[N, V]``, forward or forward and backward. Two
properties, for each loss with plain options and for the sparse loss with
each of its options:

* ``test_no_float32_logits_buffer``: the program's temporary memory holds no
  float32 ``[N, V]`` array: under ``N·V·4`` bytes (the backward's
  bfloat16 gradient, ``N·V·2``, and a few row-sized buffers allowed), and no
  instruction outside a fused computation has ``N·V`` float32 elements.
* ``test_like_native_or_better``: no more temporary memory than the native
  loss (optax, or its ``jnp`` formula, on the same bfloat16 inputs) compiled
  the same way, up to a few row-sized buffers.

The plan is XLA:CPU's (its YNN reduce fusions in this jaxlib); an accelerator's
fuses more. The cases it writes a float32 ``[N, V]`` array for are marked
``xfail(strict=True)`` with the instructions measured and why; the native
loss writes most of them too. A case that starts to pass fails as XPASS:
update its mark.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import pytest

import xent
from tests.conftest import _get
from xent._losses import LOSSES

N, V = 512, 4096
#: float32 bytes of one [N, V] array: what no plan may hold
LOGITS_F32 = N * V * 4
#: a few row-sized float32 buffers: the slack of every comparison
SLACK = 16 * N * 4
SPARSE = "sparse_softmax_cross_entropy"

#: case -> (loss, options, labels); an option given as "classes" or "rows" is a
#: bfloat16 array argument of that length, [V] or [N]
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "softmax_cross_entropy": ("softmax_cross_entropy", {}, "soft"),
    SPARSE: (SPARSE, {}, "ids"),
    "sigmoid_cross_entropy": ("sigmoid_cross_entropy", {}, "soft"),
    "categorical_cross_entropy": ("categorical_cross_entropy", {}, "soft"),
    "sparse_categorical_cross_entropy": ("sparse_categorical_cross_entropy", {}, "ids"),
    "binary_cross_entropy": ("binary_cross_entropy", {}, "soft"),
    "sparse-ignore_index": (SPARSE, {"ignore_index": -100}, "ids"),
    "sparse-label_smoothing": (SPARSE, {"label_smoothing": 0.1}, "ids"),
    "sparse-class_weights": (SPARSE, {"class_weights": "classes"}, "ids"),
    "sparse-weights": (SPARSE, {"weights": "rows"}, "ids"),
    "sparse-z_loss": (SPARSE, {"z_loss": 1e-4}, "ids"),
    "sparse-logit_softcap": (SPARSE, {"logit_softcap": 30.0}, "ids"),
}
assert {loss for loss, options, _ in CASES.values() if not options} == set(LOSSES)
MODES = ("forward", "backward")  # the mean loss; the mean loss and its logits gradient

# Why a case writes a float32 [512, 4096] array (measured on XLA:CPU, jaxlib
# 0.10; "N·V·4" is that array's size, the unit of temp_size_in_bytes here).
_BRANCH = (
    "traced.soft_nll's lax.cond: XLA allocates the guarded branch's buffers whether or not it runs, "
    "and on XLA:CPU that branch (Backend.soft_nll) writes wrapped_convert (the labels' upcast, shared by "
    "Σy and Σy·d), broadcast_subtract_fusion (d = z - m, shared by Σe^d and the guard) and "
    "and_select_fusion (the 0·inf guard, a select the YNN reduce fusion does not take)"
)
_CLAMP = (
    "the clip (a clamp) is an op XLA:CPU's YNN reduce fusion does not take, so its [N, V] result is "
    "written out, and each float32 upcast read by two reductions (wrapped_convert) too"
)
_SIGMOID = (
    "traced.binary_nll's lax.cond returns the elementwise loss: cond.1.clone (its result), "
    "multiply_add_fusion.1 (the unguarded loss, its operand) and the guarded branch's multiply_add_fusion, "
    "f32[N, V] each, before the mean's reduce (optax writes 2.5 N·V·4 forward, 6.5 backward)"
)
_NO_NARROW = (
    "wrapped_convert: the logits' float32 upcast, read by the label's gather and the row sums, which "
    "XLA:CPU then writes out; this option's rows come from _rows.row_stats, whose gather reads the "
    "upcast (traced.nll gathers from the bfloat16 input, for Backend.nll only)"
)
_BACKWARD_ROWS = (
    "; backward, autodiff of row_stats: wrapped_scatter (the gather's transpose into float32 zeros), "
    "subtract_exponential_fusion (e^d kept for the backward) and a float32 gradient term"
)
_SOFTCAP = (
    "multiply_select_fusion: the soft-capped logits c·tanh(z/c), with fe.softcap's select keeping -inf, "
    "a select XLA:CPU's YNN reduce fusion does not take, read by the max, the row sum and the gather"
)
NO_F32: dict[tuple[str, str], str] = {
    ("softmax_cross_entropy", "forward"): _BRANCH + "; and wrapped_convert of the logits in the entry "
    "(at this shape XLA:CPU splits the fast form's row sums and shares their upcast): 3.0 N·V·4",
    ("softmax_cross_entropy", "backward"): _BRANCH + "; and the backward's wrapped_convert of logits "
    "and labels and broadcast_subtract_fusion (z - m): 3.0 N·V·4 (optax 4.5)",
    ("sigmoid_cross_entropy", "forward"): _SIGMOID,
    ("sigmoid_cross_entropy", "backward"): _SIGMOID,
    ("categorical_cross_entropy", "forward"): _CLAMP + ": wrapped_convert (probs), broadcast_clamp_fusion "
    "(clip(p / Σp)): 1.0 N·V·4, the jnp formula as much",
    ("categorical_cross_entropy", "backward"): _CLAMP + ": wrapped_convert x2, broadcast_clamp_fusion, "
    "divide_multiply_fusion: 4.0 N·V·4",
    ("sparse_categorical_cross_entropy", "forward"): "clamp_log_fusion: log(clip(p)), the logits "
    "Backend.nll gets, computed in float32 with a clamp XLA:CPU's YNN reduce fusion does not take, read "
    "by the max, the row sum and the gather: 1.0 N·V·4 (optax-style jnp formula 1.5)",
    ("sparse_categorical_cross_entropy", "backward"): "clamp_log_fusion (log(clip(p)) in float32, as "
    "forward); the derivative itself (traced.nll) writes none: 1.0 N·V·4 (jnp formula 2.5)",
    ("binary_cross_entropy", "forward"): _CLAMP + ": broadcast_clamp_fusion (clip(p), read by both logs' "
    "reduce): 1.0 N·V·4",
    ("binary_cross_entropy", "backward"): _CLAMP + ": broadcast_clamp_fusion, clamp_subtract_fusion, "
    "wrapped_convert, broadcast_subtract_fusion: 4.0 N·V·4 (jnp formula 5.5)",
    ("sparse-label_smoothing", "forward"): _NO_NARROW + " (Backend.smoothed_nll), and "
    "broadcast_subtract_fusion (d = z - m, read by Σe^d and Σd): 1.0 N·V·4 (optax 1.5)",
    ("sparse-label_smoothing", "backward"): _NO_NARROW + _BACKWARD_ROWS + ": 2.0 N·V·4 (optax 4.0)",
    ("sparse-z_loss", "forward"): _NO_NARROW + ": 1.0 N·V·4 (optax 1.0)",
    ("sparse-z_loss", "backward"): _NO_NARROW + _BACKWARD_ROWS + ": 2.0 N·V·4 (optax 2.0)",
    ("sparse-logit_softcap", "forward"): _SOFTCAP + ": 1.0 N·V·4 (optax 1.5)",
    ("sparse-logit_softcap", "backward"): _SOFTCAP + "; multiply_tanh_fusion, tanh kept for its "
    "derivative: 2.0 N·V·4 (optax 2.5)",
}
WORSE_THAN_NATIVE: dict[tuple[str, str], str] = {
    ("softmax_cross_entropy", "forward"): NO_F32[("softmax_cross_entropy", "forward")]
    + "; optax's loss writes 1.0 N·V·4 (at 4096x32000: xent 3.0, optax none)",
    ("categorical_cross_entropy", "backward"): NO_F32[("categorical_cross_entropy", "backward")]
    + "; the jnp formula writes 3.0 N·V·4",
    ("binary_cross_entropy", "forward"): NO_F32[("binary_cross_entropy", "forward")]
    + "; the jnp formula is one YNN fusion, no temporary",
}


def _params(marks: dict[tuple[str, str], str]) -> list[Any]:
    return [
        pytest.param(case, mode, id=f"{case}-{mode}",
                     marks=[pytest.mark.xfail(strict=True, reason=marks[case, mode])] if (case, mode) in marks else [])
        for case in CASES for mode in MODES
    ]


@pytest.fixture
def jax():  # type: ignore[no-untyped-def]
    _get("jax")  # (skips where $XENT_TEST_BACKENDS leaves JAX out or it is not installed)
    return pytest.importorskip("jax")


def float32_buffers(hlo: str, elements: int) -> list[str]:
    """The instructions of an optimized HLO module that allocate a float32
    array of at least ``elements`` elements: those of every computation but
    the fused ones (whose instructions live in registers), less parameters and
    the aliases (bitcast, tuple, get-tuple-element, opt-barrier)."""
    fused = set(re.findall(r"\bfusion\([^\n]*?\bcalls=%?([\w.\-]+)", hlo))
    found, name = [], None
    for line in hlo.splitlines():
        head = re.match(r"(?:ENTRY\s+)?%?([\w.\-]+)\s+\(.*\{\s*$", line)
        if head and " = " not in line.split("(")[0]:
            name = head.group(1)
            continue
        inst = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\(", line)
        if name is None or name in fused or inst is None:
            continue
        if inst.group(3) in ("parameter", "bitcast", "tuple", "get-tuple-element", "opt-barrier"):
            continue
        sizes = [math.prod(int(d) for d in dims.split(",")) for dims in re.findall(r"\bf32\[([\d,]+)\]", inst.group(2))]
        if any(size >= elements for size in sizes):
            found.append(f"{name}/{inst.group(1)} = {inst.group(2)} {inst.group(3)}")
    return found


def _arrays(jax: Any, case: str) -> tuple[list[Any], list[str]]:
    """The program's arguments (shape and dtype only) and the names of the array options."""
    jnp = jax.numpy
    loss, options, labels = CASES[case]
    z = jax.ShapeDtypeStruct((N, V), jnp.bfloat16)
    y = jax.ShapeDtypeStruct((N,), jnp.int32) if labels == "ids" else z
    named = [name for name, value in options.items() if value in ("classes", "rows")]
    extra = [jax.ShapeDtypeStruct((V if options[name] == "classes" else N,), jnp.bfloat16) for name in named]
    return [z, y, *extra], named


def _xent(case: str, named: list[str]) -> Any:
    loss, options, _ = CASES[case]
    fixed = {k: v for k, v in options.items() if k not in named}

    def run(z, y, *extra):  # type: ignore[no-untyped-def]
        return getattr(xent, loss)(z, y, reduction="mean", **fixed, **dict(zip(named, extra)))

    return run


def _native(jax: Any, case: str) -> Any:
    """The native loss of ``case``: optax's, or the jnp formula Keras computes
    (the probability losses), on the bfloat16 inputs as they are."""
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    eps = 1e-7
    sparse = optax.softmax_cross_entropy_with_integer_labels

    def categorical(p, y):  # type: ignore[no-untyped-def]
        p = jnp.clip(p / p.sum(-1, keepdims=True), eps, 1 - eps)
        return -(y * jnp.log(p)).sum(-1).mean()

    def sparse_categorical(p, y):  # type: ignore[no-untyped-def]
        p = jnp.clip(p, eps, 1 - eps)
        return (jnp.log(p.sum(-1)) - jnp.log(jnp.take_along_axis(p, y[:, None], -1)[:, 0])).mean()

    def binary(p, y):  # type: ignore[no-untyped-def]
        p = jnp.clip(p, eps, 1 - eps)
        return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)).mean()

    def ignore_index(z, y):  # type: ignore[no-untyped-def]
        keep = y != -100
        return jnp.where(keep, sparse(z, jnp.where(keep, y, 0)), 0).sum() / keep.sum()

    def z_loss(z, y):  # type: ignore[no-untyped-def]
        lse = jax.nn.logsumexp(z, -1)
        return (lse - jnp.take_along_axis(z, y[:, None], -1)[:, 0] + 1e-4 * lse * lse).mean()

    natives = {
        "softmax_cross_entropy": lambda z, y: optax.softmax_cross_entropy(z, y).mean(),
        SPARSE: lambda z, y: sparse(z, y).mean(),
        "sigmoid_cross_entropy": lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean(),
        "categorical_cross_entropy": categorical,
        "sparse_categorical_cross_entropy": sparse_categorical,
        "binary_cross_entropy": binary,
        "sparse-ignore_index": ignore_index,
        "sparse-label_smoothing": lambda z, y: optax.softmax_cross_entropy(
            z, optax.smooth_labels(jax.nn.one_hot(y, V, dtype=z.dtype), 0.1)).mean(),
        "sparse-class_weights": lambda z, y, cw: (sparse(z, y) * cw[y]).sum() / cw[y].sum(),
        "sparse-weights": lambda z, y, w: (sparse(z, y) * w).sum() / w.sum(),
        "sparse-z_loss": z_loss,
        "sparse-logit_softcap": lambda z, y: sparse(30.0 * jnp.tanh(z / 30.0), y).mean(),
    }
    return natives[case]


@functools.lru_cache(maxsize=None)
def plan(case: str, mode: str, which: str = "xent") -> tuple[int, tuple[str, ...]]:
    """``(temp_size_in_bytes, float32 [N, V] buffers)`` of the program of
    ``case`` (xent's loss, or the native one) in ``mode``."""
    import jax

    specs, named = _arrays(jax, case)
    fn = _xent(case, named) if which == "xent" else _native(jax, case)
    if mode == "backward":
        fn = jax.value_and_grad(fn)
    compiled = jax.jit(fn).lower(*specs).compile()
    return compiled.memory_analysis().temp_size_in_bytes, tuple(float32_buffers(compiled.as_text(), N * V))


def _logits(nbytes: int) -> str:
    return f"{nbytes} bytes ({nbytes / LOGITS_F32:.2f} N·V·4)"


def check_no_float32_logits(temp: int, buffers: tuple[str, ...], mode: str) -> None:
    bound = SLACK + (N * V * 2 if mode == "backward" else 0)  # (+ the bfloat16 gradient)
    assert temp <= bound and not buffers, (
        f"temporaries {_logits(temp)}, bound {_logits(bound)}; float32 [N, V] buffers:\n" + "\n".join(buffers)
    )


def check_like_native(temp: int, native: int, buffers: tuple[str, ...]) -> None:
    assert temp <= native + SLACK, (
        f"xent's temporaries {_logits(temp)}, the native loss's {_logits(native)}; "
        f"xent's float32 [N, V] buffers:\n" + "\n".join(buffers)
    )


@pytest.mark.parametrize("case, mode", _params(NO_F32))
def test_no_float32_logits_buffer(jax, case, mode):  # type: ignore[no-untyped-def]
    if jax.default_backend() != "cpu":
        pytest.skip("the plan measured here is XLA:CPU's")
    check_no_float32_logits(*plan(case, mode), mode)


@pytest.mark.parametrize("case, mode", _params(WORSE_THAN_NATIVE))
def test_like_native_or_better(jax, case, mode):  # type: ignore[no-untyped-def]
    if jax.default_backend() != "cpu":
        pytest.skip("the plan measured here is XLA:CPU's")
    temp, buffers = plan(case, mode)
    native, _ = plan(case, mode, "native")
    check_like_native(temp, native, buffers)
