"""Checks of a vocab-parallel run's results against the float64 reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests import reference as ref
from tests.distributed import cases
from xent.testing import assert_close


def _rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` as the given dtype holds it, back in float64."""
    if dtype == "bfloat16":
        import ml_dtypes

        return x.astype(ml_dtypes.bfloat16).astype(np.float64)
    return x.astype(dtype).astype(np.float64)


def expected(padded: bool, dtype: str, name: str, reduction: str) -> tuple[Any, np.ndarray]:
    """(loss, logit gradient over the real vocabulary) of one case, float64."""
    options = cases.OPTIONS[name]
    z = _rounded(cases.LOGITS, dtype)
    y = cases.plain_labels(options)
    kw = {"ignore_index": options.get("ignore_index"), "alpha": options.get("label_smoothing", 0.0),
          "cw": options.get("class_weights"), "w": options.get("weights"), "z_loss": options.get("z_loss", 0.0),
          "cap": options.get("logit_softcap"), "gamma": options.get("focal_gamma", 0.0),
          "eps": options.get("poly_epsilon", 0.0)}
    if reduction == "normalizer":
        return ref.sparse_zcap(z, y, reduction="sum", **kw) / 7.0, ref.sparse_zcap_grad(z, y, reduction="sum", **kw) / 7.0
    grad_reduction = "sum" if reduction == "none" else reduction
    return ref.sparse_zcap(z, y, reduction=reduction, **kw), ref.sparse_zcap_grad(z, y, reduction=grad_reduction, **kw)


def check(results: dict, grads: dict, losses_per_rank: list[dict] | None = None) -> None:
    """``results[key] = loss``, ``grads[key]`` = the full logit gradient
    (shards concatenated, padded lanes included); with ``losses_per_rank``,
    every process's loss must be the same."""
    for key, loss in results.items():
        padded, dtype, name, reduction = key
        want, want_grad = expected(*key)
        reduced = 1 if reduction == "none" else cases.N
        assert_close(np.asarray(loss), want, dtype=dtype, num_classes=cases.V, reduced=reduced)
        grad = np.asarray(grads[key])
        assert not grad[:, cases.V:].any(), f"{key}: padded lanes got a gradient"
        finite = np.isfinite(cases.LOGITS)
        assert_close(np.where(finite, grad[:, :cases.V], 0.0), np.where(finite, want_grad, 0.0), dtype=dtype,
                     num_classes=cases.V)
        if losses_per_rank:
            for other in losses_per_rank[1:]:
                np.testing.assert_array_equal(other[key], losses_per_rank[0][key], err_msg=str(key))


def expected_linear(padded: bool, dtype: str, name: str, reduction: str) -> dict:
    """The linear case's float64 loss and gradients (hidden, weight, bias)
    over the real vocabulary, from inputs rounded to ``dtype``."""
    options = dict(cases.LINEAR_OPTIONS[name])
    bias = options.pop("bias", None)
    h, head = _rounded(cases.HIDDEN, dtype), _rounded(cases.HEAD, dtype)
    z = h @ head.T + (0.0 if bias is None else bias)
    y = cases.plain_labels(options)
    kw = {"ignore_index": options.get("ignore_index"), "alpha": options.get("label_smoothing", 0.0),
          "cw": options.get("class_weights"), "w": options.get("weights"), "z_loss": options.get("z_loss", 0.0),
          "cap": options.get("logit_softcap"), "gamma": options.get("focal_gamma", 0.0),
          "eps": options.get("poly_epsilon", 0.0)}
    scale = 1 / 7.0 if reduction == "normalizer" else 1.0
    value_reduction = "sum" if reduction == "normalizer" else reduction
    grad_reduction = "sum" if reduction in ("none", "normalizer") else reduction
    dz = ref.sparse_zcap_grad(z, y, reduction=grad_reduction, **kw) * scale
    return {"loss": ref.sparse_zcap(z, y, reduction=value_reduction, **kw) * scale,
            "dh": dz @ head, "dw": dz.T @ h, "db": dz.sum(0) if bias is not None else None}


def check_linear(key: tuple, loss: Any, dh: list, dw: np.ndarray, db: Any) -> None:
    """One linear case: the loss, every process's d/dhidden (the whole
    loss's), the assembled weight and bias gradients (0 on padded rows)."""
    _, padded, dtype, name, reduction = key
    want = expected_linear(padded, dtype, name, reduction)
    # Half inputs: the logits are rounded to the input dtype (the kernel's
    # GEMM output, as on a single device) and so is the logits' gradient
    # before the hidden states' and weight's GEMMs (as autograd of the naive
    # product rounds it), which the float64 formula is not: a few units of
    # the dtype's rounding, relative to the values' scale.
    tol = {"bfloat16": 3e-2, "float16": 4e-3}.get(dtype)
    loose = {} if tol is None else {"rtol": tol, "atol": tol}
    reduced = 1 if reduction == "none" else cases.N
    assert_close(np.asarray(loss), want["loss"], dtype=dtype, num_classes=cases.V, reduced=reduced, **loose)
    for got in dh:
        assert_close(got, want["dh"], dtype=dtype, num_classes=cases.V, reduced=cases.V, **loose)
    assert not dw[cases.V:].any(), f"{key}: padded rows got a gradient"
    assert_close(dw[:cases.V], want["dw"], dtype=dtype, num_classes=cases.V, reduced=cases.N, **loose)
    if want["db"] is not None:
        assert_close(db[:cases.V], want["db"], dtype=dtype, num_classes=cases.V, reduced=cases.N, **loose)
