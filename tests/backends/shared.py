"""Inputs and helpers shared by the backend tests."""

from __future__ import annotations

import numpy as np
import pytest

REDUCTIONS = ("none", "sum", "mean")
rng = np.random.default_rng(7)
Z = (rng.standard_normal((24, 7)) * 3).astype(np.float32)
Y = rng.integers(0, 7, 24)
SOFT = rng.random((24, 7)).astype(np.float32)
BIN = rng.random((24, 7)).astype(np.float32)


def bf16_ulps(got: np.ndarray, want: np.ndarray) -> float:
    """Error in bfloat16 ulps of the reference (8 significant bits)."""
    ulp = 2.0 ** (np.floor(np.log2(np.abs(want))) - 7)
    return float(np.max(np.abs(got.astype(np.float64) - want) / ulp))


def torch_or_skip():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


def tf_or_skip():  # type: ignore[no-untyped-def]
    return pytest.importorskip("tensorflow")


def jax_or_skip():  # type: ignore[no-untyped-def]
    return pytest.importorskip("jax")


def tf_fused():  # type: ignore[no-untyped-def]
    """The TF backend's fused rung (its size thresholds, its graph functions)."""
    from xent.backends.tensorflow import fused

    return fused


def compiled_in(cache, fn) -> bool:  # type: ignore[no-untyped-def]
    """Whether the TF compile cache ``cache`` holds a program of ``fn``."""
    return any(key[0] is fn and program is not None for key, program in cache._programs.items())


def zero_weight_at_minus_inf(reduction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits, class weights, float64 loss)`` where entry 0's label logit is
    ``-inf`` under a zero class weight: that entry counts 0 (``Backend.weigh``),
    the others their class-weighted loss, reduced by ``reduction``."""
    from tests import reference as ref

    z = Z.astype(np.float64).copy()
    z[0, Y[0]] = -np.inf
    cw = np.linspace(0.5, 2.0, Z.shape[1])
    cw[Y[0]] = 0.0
    rows = cw[Y] * ref.sparse(np.where(np.isinf(z), 0.0, z), Y)
    rows[0] = 0.0
    want = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / cw[Y].sum()}[reduction]
    return z, cw, np.asarray(want)
