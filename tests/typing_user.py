"""A user's script, type-checked by tests/test_typing.py with ``mypy --strict``
against xent installed from its wheel (so through its ``py.typed`` marker).

Not a test module (pytest collects ``test_*.py`` only); importing it, as
``--doctest-modules`` does, only defines functions: nothing runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

import xent
import xent.testing
from xent.backends import Backend
from xent.compat import torch as F

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def losses(logits: Floats, labels: Ints, soft: Floats, targets: Floats) -> list[float]:
    """Each public loss on NumPy arrays, with its keyword options."""
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    values = [
        xent.sparse_softmax_cross_entropy(logits, labels, reduction="mean"),
        xent.sparse_softmax_cross_entropy(
            logits, labels, axis=-1, ignore_index=-100, label_smoothing=0.1,
            class_weights=np.ones(logits.shape[-1]), reduction="sum", z_loss=1e-4, logit_softcap=30.0,
        ),
        xent.softmax_cross_entropy(logits, soft, label_smoothing=0.1, reduction="mean"),
        xent.sigmoid_cross_entropy(logits, targets, pos_weight=np.full(logits.shape[-1], 2.0), reduction="sum"),
        xent.categorical_cross_entropy(probs, soft, epsilon=1e-7, reduction="mean"),
        xent.sparse_categorical_cross_entropy(probs, labels, ignore_index=0, reduction="mean"),
        xent.binary_cross_entropy(probs, targets, reduction="mean"),
        F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.1),
    ]
    return [float(v) for v in values]


def linear(hidden: Floats, weight: Floats, labels: Ints) -> float:
    """The LM-head loss without the full logits."""
    return float(xent.linear_cross_entropy(hidden, weight, labels, chunk_size=1024))


def backends() -> list[str]:
    """The installed backends, and one of them by name."""
    names: list[str] = xent.available_backends()
    numpy_backend: Backend = xent.get_backend("numpy")
    return [numpy_backend.name, *names]


def agree(logits: Floats, labels: Ints) -> dict[str, npt.NDArray[Any]]:
    """A user's CI check that every installed framework gives the same loss."""
    return xent.testing.assert_backends_agree(
        xent.sparse_softmax_cross_entropy, logits, labels, backends=["numpy"], grad=True,
    )


def checked_reduction(logits: Floats, labels: Ints) -> None:
    """The signatures reach users: a misspelt reduction is a type error (were
    it not, --strict would report the ignore below as unused)."""
    xent.sparse_softmax_cross_entropy(logits, labels, reduction="average")  # type: ignore[arg-type]
