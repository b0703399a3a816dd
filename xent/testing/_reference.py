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


def _weighted(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``a·x``, 0 where ``a`` is 0 (a class of label weight 0 contributes
    nothing, even where its term is infinite)."""
    with np.errstate(invalid="ignore"):
        return np.where(a != 0, a * x, 0.0)


def focal_phi(logp: np.ndarray, gamma: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Focal/PolyLoss per class from ``ℓ = log p``: ``φ = u^γ·(-ℓ + ε·u)``
    with ``u = 1 - p``, and ``dφ/dℓ = -u^γ·(γ·p·(-ℓ + ε·u)/u + 1 + ε·p)``
    (``(-ℓ + ε·u)/u → 1 + ε`` as ``u → 0``)."""
    p = np.exp(logp)
    u = -np.expm1(logp)
    a = -logp + eps * u
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u > 0, a / np.where(u > 0, u, 1.0), 1.0 + eps)
    return u**gamma * a, -(u**gamma) * (gamma * p * ratio + 1.0 + eps * p)


def sparse_terms(
    z: Array, labels: Array, *, alpha: float = 0.0, class_weights: Array | None = None,
    ignore_index: int | None = None, z_loss: float = 0.0, cap: float | None = None,
    gamma: float = 0.0, eps: float = 0.0,
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
    if gamma or eps:  # Σ_c a_c·φ(p_c) instead of Σ_c a_c·(-log p_c)
        with np.errstate(invalid="ignore"):
            phi, dphi = focal_phi(s - lse, gamma, eps)
        per = _weighted(a, phi).sum(-1) + z_loss * lse[..., 0] ** 2
        g = _weighted(a, dphi)
        prob = e / e.sum(-1, keepdims=True)
        dz = g - prob * g.sum(-1, keepdims=True) + 2 * z_loss * lse * prob
    if cap is not None:
        dz = dz * (1 - np.tanh(z / cap) ** 2)
    return Terms(per, dz, None, keep, None if class_weights is None else w[safe])


def dense_terms(z: Array, y: Array, *, alpha: float = 0.0, gamma: float = 0.0, eps: float = 0.0) -> Terms:
    """The softmax loss of soft labels ``t = (1-α)·y + α/C``:
    ``-Σ_c t_c·log_softmax(z)_c``; ``d/dz = Σt·softmax(z) - t``, ``d/dy = -(1-α)·log_softmax(z)``.
    With focal/PolyLoss terms, ``Σ_c t_c·φ(p_c)`` (:func:`focal_phi`)."""
    y = np.asarray(y, np.float64)
    t = (1 - alpha) * y + alpha / y.shape[-1]
    ls = log_softmax(z)
    if gamma or eps:
        with np.errstate(invalid="ignore"):
            phi, dphi = focal_phi(ls, gamma, eps)
        g = _weighted(t, dphi)
        return Terms(_weighted(t, phi).sum(-1), g - np.exp(ls) * g.sum(-1, keepdims=True), (1 - alpha) * phi)
    per = -(t * ls).sum(-1)
    return Terms(per, t.sum(-1, keepdims=True) * np.exp(ls) - t, -(1 - alpha) * ls)


def sigmoid_terms(x: Array, y: Array, *, alpha: float = 0.0, pos_weight: Array | None = None,
                  gamma: float = 0.0, balance: float | None = None) -> Terms:
    """``p·t·softplus(-x) + (1-t)·softplus(x)`` with ``t = (1-α)·y + α/2``; with
    focal terms, times ``b_t·u^γ`` where ``u = 1 - p_t = t·σ(-x) + (1-t)·σ(x)``
    and ``b_t = β·t + (1-β)·(1-t)`` (``balance`` β, 1 without)."""
    x = np.asarray(x, np.float64)
    t = (1 - alpha) * np.asarray(y, np.float64) + alpha / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    per = pw * t * softplus(-x) + (1 - t) * softplus(x)
    dpred = -pw * t * sigmoid(-x) + (1 - t) * sigmoid(x)
    dlab = pw * softplus(-x) - softplus(x)
    if gamma or balance is not None:
        u = t * sigmoid(-x) + (1 - t) * sigmoid(x)
        b_t = 1.0 if balance is None else balance * t + (1 - balance) * (1 - t)
        db = 0.0 if balance is None else 2 * balance - 1
        f = u**gamma
        df_u = gamma * u ** (gamma - 1) if gamma else 0.0
        du_x = (1 - 2 * t) * sigmoid(x) * sigmoid(-x)
        du_t = sigmoid(-x) - sigmoid(x)
        dpred = b_t * (df_u * du_x * per + f * dpred)
        dlab = db * f * per + b_t * (df_u * du_t * per + f * dlab)
        per = b_t * f * per
    return Terms(per, dpred, (1 - alpha) * dlab)


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


def token_stats_terms(
    z: Array, labels: Array | None = None, *, temperature: float = 1.0,
    cap: float | None = None, ignore_index: int | None = None,
) -> dict[str, np.ndarray | None]:
    """The per-token statistics of ``xent.token_stats`` and their derivatives
    with respect to the raw logits ``z`` (classes last).

    With ``u = s / T`` (``s = cap·tanh(z/cap)``, a ``-inf`` logit staying
    ``-inf``; ``s = z`` without a cap), ``p = softmax(u)`` and ``u' = du/dz =
    (1 - tanh²(z/cap)) / T``::

        logsumexp = lse(u)                d/dz = p·u'
        logprob   = u_y - lse(u)          d/dz = (onehot(y) - p)·u'   (0 where ignored)
        entropy   = -Σ_c p_c·log p_c      d/dz = -p·(u - Σ_c p_c·u_c)·u'

    each computed from ``u - max(u)``, a class with ``p_c = 0`` contributing
    0 to the entropy and its derivative. Returns ``logprob``, ``entropy``,
    ``logsumexp`` and ``d_logprob``, ``d_entropy``, ``d_logsumexp``
    (``logprob`` and ``d_logprob`` None without labels).
    """
    z = np.asarray(z, np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = z if cap is None else np.where(z == -np.inf, z, cap * np.tanh(z / cap))
        u = s / temperature
        du = np.full(z.shape, 1.0 / temperature)
        if cap is not None:
            du = np.where(z == -np.inf, 0.0, du * (1 - np.tanh(z / cap) ** 2))
        # Shifted by the row max m, so that no large lse is rounded before a
        # subtraction (logits of 1e4 have entropies and log-probabilities of 1).
        m = u.max(-1, keepdims=True)
        d = u - m
        e = np.exp(d)
        log_s = np.log(e.sum(-1, keepdims=True))
        lse = m + log_s
        prob = e / e.sum(-1, keepdims=True)
        live = prob > 0
        mean_d = np.where(live, prob * d, 0.0).sum(-1, keepdims=True)
        entropy = log_s[..., 0] - mean_d[..., 0]
        d_entropy = np.where(live, -prob * (d - mean_d), 0.0) * du
    out: dict[str, np.ndarray | None] = {
        "logprob": None, "entropy": entropy, "logsumexp": lse[..., 0],
        "d_logprob": None, "d_entropy": d_entropy, "d_logsumexp": prob * du,
    }
    if labels is not None:
        keep, safe = _kept(labels, ignore_index)
        onehot = np.eye(u.shape[-1])[safe]
        d_y = np.take_along_axis(d, safe[..., None], -1)[..., 0]
        out["logprob"] = np.where(keep, d_y - log_s[..., 0], 0.0)
        out["d_logprob"] = (onehot - prob) * du * keep[..., None]
    return out


def _plogp_gap(a: np.ndarray, log_a: np.ndarray, log_b: np.ndarray) -> np.ndarray:
    """``a·(log a - log b)`` elementwise, 0 where ``a`` is 0 (whatever ``log b`` is)."""
    with np.errstate(invalid="ignore"):
        return np.where(a > 0, a * (log_a - log_b), 0.0)


def _softmax_grad(prob: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d/du of a function of ``log_softmax(u)`` whose derivative with respect to
    the probabilities is ``g``: ``prob·(g - Σ prob·g)``, 0 where ``prob`` is 0."""
    g = np.where(prob > 0, g, 0.0)
    return prob * (g - (prob * g).sum(-1, keepdims=True))


def kl_terms(z: Array, t: Array, *, temperature: float = 1.0, reverse: bool = False) -> Terms:
    """``KL(q ‖ p) = Σ q·(log q - log p)`` (``reverse``: ``KL(p ‖ q)``) with
    ``p = softmax(z/T)``, ``q = softmax(t/T)``, a class of probability 0 in the
    first argument contributing 0. Derivatives (``f = KL(a ‖ b)``, ``d = log a - log b``)::

        d f / d u_a = a·(d - f) / T        d f / d u_b = (b - a) / T
    """
    lp = log_softmax(np.asarray(z, np.float64) / temperature)
    lq = log_softmax(np.asarray(t, np.float64) / temperature)
    p, q = np.exp(lp), np.exp(lq)
    (a, la, b, lb) = (p, lp, q, lq) if reverse else (q, lq, p, lp)
    per = _plogp_gap(a, la, lb).sum(-1)
    with np.errstate(invalid="ignore"):
        d = np.where(a > 0, la - lb, 0.0)
        d_first = np.where(a > 0, a * (d - per[..., None]), 0.0) / temperature
    d_second = (b - a) / temperature
    dz, dt = (d_first, d_second) if reverse else (d_second, d_first)
    return Terms(per, dz, dt)


def js_terms(z: Array, t: Array, *, beta: float = 0.5, temperature: float = 1.0) -> Terms:
    """Liger-Kernel's generalised JSD with ``p = softmax(z/T)`` (model),
    ``q = softmax(t/T)`` (target) and ``m = β·q + (1-β)·p``::

        β·KL(q ‖ m) + (1-β)·KL(p ‖ m)      (0 < β < 1)
        KL(q ‖ p) at β = 0,   KL(p ‖ q) at β = 1

    Its derivatives, from ``∂/∂q_c = β·(log q_c - log m_c)`` and
    ``∂/∂p_c = (1-β)·(log p_c - log m_c)`` through each softmax."""
    if beta == 0.0:
        return kl_terms(z, t, temperature=temperature)
    if beta == 1.0:
        return kl_terms(z, t, temperature=temperature, reverse=True)
    lp = log_softmax(np.asarray(z, np.float64) / temperature)
    lq = log_softmax(np.asarray(t, np.float64) / temperature)
    p, q = np.exp(lp), np.exp(lq)
    m = beta * q + (1 - beta) * p
    with np.errstate(divide="ignore"):
        lm = np.log(m)
    per = beta * _plogp_gap(q, lq, lm).sum(-1) + (1 - beta) * _plogp_gap(p, lp, lm).sum(-1)
    with np.errstate(invalid="ignore"):
        dz = _softmax_grad(p, (1 - beta) * (lp - lm)) / temperature
        dt = _softmax_grad(q, beta * (lq - lm)) / temperature
    return Terms(per, dz, dt)
