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
          "cap": options.get("logit_softcap")}
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
