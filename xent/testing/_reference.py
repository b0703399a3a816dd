"""xent's float64 reference: every loss and its gradients in plain NumPy.

Written from the formulas of docs/semantics.md, never calling xent's own
code. The test suite and ``xent parity`` both compare against it. Each
``*_terms`` function takes host arrays with the class axis last and returns
the per-element loss and its analytic derivatives; :func:`reduced` applies
sample weights, the ignore mask and the reduction to the value and the
gradients alike (``"mean"`` divides by ``Σ W`` with ``W = sample weight ×
class weight of the label × kept``, and is 0 when that is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any


@dataclass
class Terms:
    """A loss per element and its derivatives (``None`` where not defined).

    ``dpred``: d loss_i / d predictions (classes last for the softmax losses);
    ``dlabels``: d loss_i / d labels; ``keep``: entries not ignored;
    ``class_w``: the class weight of each entry's label (counted in a mean).
    """

    per: np.ndarray
    dpred: np.ndarray
    dlabels: np.ndarray | None = None
    keep: np.ndarray | None = None
    class_w: np.ndarray | None = None


def log_softmax(z: Array) -> np.ndarray:
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def softplus(x: Array) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: Array) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _kept(labels: Array, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    return keep, np.where(keep, labels, 0)


def sparse_terms(
    z: Array, labels: Array, *, alpha: float = 0.0, class_weights: Array | None = None,
    ignore_index: int | None = None, z_loss: float = 0.0, cap: float | None = None,
) -> Terms:
    """The sparse softmax loss: with ``s = cap·tanh(z/cap)`` (``z`` without a
    cap; a ``-inf`` logit stays ``-inf``), ``lse = logsumexp(s)`` and
    ``a = (1-α)·w_y·onehot(y) + (α/C)·w``::

        loss = (1-α)·w_y·(lse - s_y) + (α/C)·Σ_c w_c·(lse - s_c) + z_loss·lse²
        d loss / d z = [(Σ_c a_c + 2·z_loss·lse)·softmax(s) - a] · (1 - tanh²(z/cap))
    """
    z = np.asarray(z, np.float64)
    s = z if cap is None else np.where(z == -np.inf, z, cap * np.tanh(z / cap))
    num = s.shape[-1]
    keep, safe = _kept(labels, ignore_index)
    w = np.ones(num) if class_weights is None else np.asarray(class_weights, np.float64)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    lse = m + np.log(e.sum(-1, keepdims=True))
    nll = lse[..., 0] - np.take_along_axis(s, safe[..., None], -1)[..., 0]
    per = (1 - alpha) * w[safe] * nll + z_loss * lse[..., 0] ** 2
    if alpha:  # (a -inf logit makes this inf; without smoothing it has weight 0)
        per = per + (alpha / num) * (w * (lse - s)).sum(-1)
    a = (1 - alpha) * w[safe][..., None] * np.eye(num)[safe] + (alpha / num) * w
    dz = (a.sum(-1, keepdims=True) + 2 * z_loss * lse) * (e / e.sum(-1, keepdims=True)) - a
    if cap is not None:
        dz = dz * (1 - np.tanh(z / cap) ** 2)
    return Terms(per, dz, None, keep, None if class_weights is None else w[safe])


def dense_terms(z: Array, y: Array, *, alpha: float = 0.0) -> Terms:
    """The softmax loss of soft labels ``t = (1-α)·y + α/C``:
    ``-Σ_c t_c·log_softmax(z)_c``; ``d/dz = Σt·softmax(z) - t``, ``d/dy = -(1-α)·log_softmax(z)``."""
    y = np.asarray(y, np.float64)
    t = (1 - alpha) * y + alpha / y.shape[-1]
    ls = log_softmax(z)
    per = -(t * ls).sum(-1)
    return Terms(per, t.sum(-1, keepdims=True) * np.exp(ls) - t, -(1 - alpha) * ls)


def sigmoid_terms(x: Array, y: Array, *, alpha: float = 0.0, pos_weight: Array | None = None) -> Terms:
    """``p·t·softplus(-x) + (1-t)·softplus(x)`` with ``t = (1-α)·y + α/2``."""
    x = np.asarray(x, np.float64)
    t = (1 - alpha) * np.asarray(y, np.float64) + alpha / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    per = pw * t * softplus(-x) + (1 - t) * softplus(x)
    dpred = -pw * t * sigmoid(-x) + (1 - t) * sigmoid(x)
    return Terms(per, dpred, (1 - alpha) * (pw * softplus(-x) - softplus(x)))


def categorical_terms(p: Array, y: Array, *, alpha: float = 0.0, lo: float = 1e-7, hi: float = 1 - 1e-7) -> Terms:
    """Keras' categorical cross-entropy: ``q = clip(p / Σp, lo, hi)``, ``-Σ t·log q``
    (derivatives where the clip is inactive)."""
    p = np.asarray(p, np.float64)
    t = (1 - alpha) * np.asarray(y, np.float64) + alpha / p.shape[-1]
    total = p.sum(-1, keepdims=True)
    q = np.clip(p / total, lo, hi)
    per = -(t * np.log(q)).sum(-1)
    return Terms(per, -t / p + t.sum(-1, keepdims=True) / total, -(1 - alpha) * np.log(q))


def sparse_categorical_terms(
    p: Array, labels: Array, *, ignore_index: int | None = None, lo: float = 1e-7, hi: float = 1 - 1e-7
) -> Terms:
    """Keras' (TF backend) sparse categorical cross-entropy: clip, then
    renormalise: ``-log(q_y / Σ q)`` with ``q = clip(p, lo, hi)``."""
    p = np.asarray(p, np.float64)
    keep, safe = _kept(labels, ignore_index)
    onehot = np.eye(p.shape[-1])[safe]
    q = np.clip(p, lo, hi)
    per = -np.log((q * onehot).sum(-1) / q.sum(-1))
    return Terms(per, -onehot / p + 1.0 / q.sum(-1, keepdims=True), None, keep)


def binary_terms(p: Array, y: Array, *, alpha: float = 0.0, lo: float = 1e-7, hi: float = 1 - 1e-7) -> Terms:
    """Keras' binary cross-entropy: ``-(t·log q + (1-t)·log(1-q))``, ``q = clip(p, lo, hi)``."""
    p = np.asarray(p, np.float64)
    t = (1 - alpha) * np.asarray(y, np.float64) + alpha / 2
    q = np.clip(p, lo, hi)
    per = -(t * np.log(q) + (1 - t) * np.log1p(-q))
    return Terms(per, -t / p + (1 - t) / (1 - p), -(1 - alpha) * (np.log(q) - np.log1p(-q)))


def reduced(
    terms: Terms, reduction: str, weights: Array | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The value and the gradients (of the reduced loss, or of its sum for
    ``"none"``) with respect to ``"predictions"`` and ``"labels"``.

    Each element's multiplier in the scalar is its sample weight × kept, over
    ``Σ W`` for ``"mean"``. The derivatives of the softmax family have a class
    axis last, which the multiplier broadcasts along.
    """
    coef = np.ones(terms.per.shape)
    if weights is not None:
        coef = coef * np.asarray(weights, np.float64)
    if terms.keep is not None:
        coef = coef * terms.keep
    if reduction == "mean":
        den = (coef if terms.class_w is None else coef * terms.class_w).sum()
        coef = coef / den if den else coef * 0.0
    value = np.where(coef != 0, terms.per, 0.0) * coef  # (an ignored entry's loss is 0, whatever it is)
    value = value.sum() if reduction != "none" else value
    scale = coef[..., None] if terms.dpred.ndim > terms.per.ndim else coef
    grads = {"predictions": terms.dpred * scale}
    if terms.dlabels is not None:
        grads["labels"] = terms.dlabels * scale
    return np.asarray(value, np.float64), grads
