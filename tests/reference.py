"""Float64 reference formulas, written from docs/semantics.md independently of xent's code.

Everything here is plain NumPy/SciPy in float64 on host arrays, with the class
axis moved last. Inputs are first rounded to the dtype under test by the
caller, so the comparison measures xent's computation, not input rounding.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax


def _reduce(loss, weight, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    total = np.broadcast_to(np.asarray(weight, np.float64), loss.shape).sum()
    return 0.0 if total == 0 else loss.sum() / total


def sparse(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="none"):
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    y = np.asarray(y)
    c = z.shape[-1]
    logp = log_softmax(z, axis=-1)
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    cwv = np.ones(c) if cw is None else np.asarray(cw, np.float64)
    nll = -np.take_along_axis(logp, ys[..., None], -1)[..., 0]
    wy = cwv[ys]
    loss = (1 - alpha) * wy * nll + (alpha / c) * -(logp * cwv).sum(-1)
    weight = wy * keep
    if w is not None:
        loss = loss * w
        weight = weight * w
    loss = np.where(keep, loss, 0.0)
    return _reduce(loss, weight, reduction)


def sparse_grad(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="sum"):
    """d loss / d logits, analytic: ``(Σ_c a_c)·softmax - a`` per row, with
    ``a = (1-α)·w_y·onehot(y) + (α/C)·w`` the label weights of the row."""
    zl = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    y = np.asarray(y)
    c = zl.shape[-1]
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    cwv = np.ones(c) if cw is None else np.asarray(cw, np.float64)
    a = (1 - alpha) * cwv[ys][..., None] * np.eye(c)[ys] + (alpha / c) * cwv
    g = a.sum(-1, keepdims=True) * np.exp(log_softmax(zl, axis=-1)) - a
    scale = keep.astype(np.float64)
    weight = cwv[ys] * keep
    if w is not None:
        scale = scale * w
        weight = weight * np.broadcast_to(w, y.shape)
    g = g * scale[..., None]
    if reduction == "mean":
        total = weight.sum()
        g = g / total if total else g * 0
    return np.moveaxis(g, -1, axis)


def dense(z, y, axis=-1, alpha=0.0, w=None, reduction="none"):
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    c = z.shape[-1]
    y = (1 - alpha) * y + alpha / c
    loss = -(y * log_softmax(z, axis=-1)).sum(-1)
    weight = np.ones(loss.shape) if w is None else np.broadcast_to(w, loss.shape)
    return _reduce(loss * weight, weight, reduction)


def dense_grads(z, y, axis=-1, alpha=0.0, reduction="sum"):
    """(d/d logits, d/d labels) of the summed (or mean) dense loss."""
    zl = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    yl = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    c = zl.shape[-1]
    ys = (1 - alpha) * yl + alpha / c
    logp = log_softmax(zl, axis=-1)
    gz = ys.sum(-1, keepdims=True) * np.exp(logp) - ys
    gy = -(1 - alpha) * logp
    if reduction == "mean":
        n = max(int(np.prod(zl.shape[:-1])), 1)
        gz, gy = gz / n, gy / n
    return np.moveaxis(gz, -1, axis), np.moveaxis(gy, -1, axis)


def sigmoid(z, y, pos_weight=None, alpha=0.0, w=None, reduction="none"):
    z = np.asarray(z, np.float64)
    y = (1 - alpha) * np.asarray(y, np.float64) + alpha / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    # torch's formula: (1 - y)·z + (1 + (p - 1)·y)·log(1 + exp(-z)), stably.
    loss = (1 - y) * z + (1 + (pw - 1) * y) * np.logaddexp(0.0, -z)
    weight = np.ones(loss.shape) if w is None else np.broadcast_to(w, loss.shape)
    return _reduce(loss * weight, weight, reduction)


def sigmoid_grads(z, y, pos_weight=None, alpha=0.0):
    """(d/d logits, d/d labels) of the summed sigmoid loss."""
    z = np.asarray(z, np.float64)
    y0 = np.asarray(y, np.float64)
    y = (1 - alpha) * y0 + alpha / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    gz = -pw * y * expit(-z) + (1 - y) * expit(z)
    gy = (1 - alpha) * (pw * np.logaddexp(0.0, -z) - np.logaddexp(0.0, z))
    return gz, gy


def categorical(p, y, axis=-1, eps=1e-7, alpha=0.0, w=None, reduction="none", dtype="float32"):
    p = np.moveaxis(np.asarray(p, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    c = p.shape[-1]
    y = (1 - alpha) * y + alpha / c
    lo, hi = _clip_bounds(eps, dtype)
    q = np.clip(p / p.sum(-1, keepdims=True), lo, hi)
    loss = -(y * np.log(q)).sum(-1)
    weight = np.ones(loss.shape) if w is None else np.broadcast_to(w, loss.shape)
    return _reduce(loss * weight, weight, reduction)


def sparse_categorical(p, y, axis=-1, eps=1e-7, ignore_index=None, w=None, reduction="none", dtype="float32"):
    p = np.moveaxis(np.asarray(p, np.float64), axis, -1)
    y = np.asarray(y)
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    lo, hi = _clip_bounds(eps, dtype)
    q = np.clip(p, lo, hi)
    loss = -np.log(np.take_along_axis(q, ys[..., None], -1)[..., 0] / q.sum(-1))
    weight = keep.astype(np.float64)
    if w is not None:
        loss = loss * w
        weight = weight * w
    return _reduce(np.where(keep, loss, 0.0), weight, reduction)


def binary(p, y, eps=1e-7, alpha=0.0, w=None, reduction="none", dtype="float32"):
    p = np.asarray(p, np.float64)
    y = (1 - alpha) * np.asarray(y, np.float64) + alpha / 2
    lo, hi = _clip_bounds(eps, dtype)
    q = np.clip(p, lo, hi)
    loss = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    weight = np.ones(loss.shape) if w is None else np.broadcast_to(w, loss.shape)
    return _reduce(loss * weight, weight, reduction)


def _clip_bounds(eps, dtype):
    """Clip bounds as the compute dtype represents them (Keras' float32 1 - 1e-7)."""
    compute = np.float64 if dtype == "float64" else np.float32
    return float(compute(eps)), float(compute(1.0) - compute(eps))


# --------------------------------------------------------------------------
# z-loss, logit soft-capping and the linear (LM-head) cross-entropy.
# Per entry: s = c·tanh(z/c) (z if no cap), lse = logsumexp(s),
# loss = (1-α)·w_y·(lse - s_y) + (α/C)·Σ_c w_c·(lse - s_c) + zl·lse²,
# then sample weight × (not ignored); mean divides by Σ sample w × w_y × kept.


def _capped(z, cap):
    # a -inf (masked) logit stays -inf
    return z if cap is None else np.where(z == -np.inf, z, cap * np.tanh(z / cap))


def _zcap_inputs(z, y, axis, ignore_index, cw, cap):
    """Class axis last, capped logits, kept entries, safe labels, class weights."""
    zl = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    s = _capped(zl, cap)
    y = np.asarray(y)
    c = s.shape[-1]
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    cwv = np.ones(c) if cw is None else np.asarray(cw, np.float64)
    return zl, s, y, c, keep, ys, cwv


def sparse_zcap(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="none",
                z_loss=0.0, cap=None):
    """The sparse softmax loss with z-loss and soft-capping, float64."""
    zl, s, y, c, keep, ys, cwv = _zcap_inputs(z, y, axis, ignore_index, cw, cap)
    m = s.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(-1, keepdims=True)))[..., 0]
    nll = lse - np.take_along_axis(s, ys[..., None], -1)[..., 0]
    smooth = (cwv * (lse[..., None] - s)).sum(-1)
    smooth = smooth if alpha else 0.0  # (a -inf logit makes it inf, weighted by 0)
    loss = (1 - alpha) * cwv[ys] * nll + (alpha / c) * smooth + z_loss * lse**2
    weight = cwv[ys] * keep
    if w is not None:
        wb = np.broadcast_to(np.asarray(w, np.float64), y.shape)
        loss = loss * wb
        weight = weight * wb
    loss = np.where(keep, loss, 0.0)
    return _reduce(loss, weight, reduction)


def sparse_zcap_grad(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="sum",
                     z_loss=0.0, cap=None):
    """d loss / d logits of :func:`sparse_zcap`, analytic:
    ``[(Σ_c a_c + 2·zl·lse)·softmax(s) - a] · (1 - tanh²(z/c))`` per row, with
    ``a = (1-α)·w_y·onehot(y) + (α/C)·w``."""
    zl, s, y, c, keep, ys, cwv = _zcap_inputs(z, y, axis, ignore_index, cw, cap)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    lse = m + np.log(e.sum(-1, keepdims=True))
    prob = e / e.sum(-1, keepdims=True)
    a = (1 - alpha) * cwv[ys][..., None] * np.eye(c)[ys] + (alpha / c) * cwv
    g = (a.sum(-1, keepdims=True) + 2 * z_loss * lse) * prob - a
    if cap is not None:
        g = g * (1 - np.tanh(zl / cap) ** 2)
    scale = keep.astype(np.float64)
    weight = cwv[ys] * keep
    if w is not None:
        wb = np.broadcast_to(np.asarray(w, np.float64), y.shape)
        scale = scale * wb
        weight = weight * wb
    g = g * scale[..., None]
    if reduction == "mean":
        total = weight.sum()
        g = g / total if total else g * 0
    return np.moveaxis(g, -1, axis)


def linear(h, W, y, b=None, **kwargs):
    """The linear cross-entropy, naively: logits = h @ W.T + b in float64, then
    :func:`sparse_zcap` along the last axis."""
    z = np.asarray(h, np.float64) @ np.asarray(W, np.float64).T
    if b is not None:
        z = z + np.asarray(b, np.float64)
    return sparse_zcap(z, y, axis=-1, **kwargs)


def linear_grads(h, W, y, b=None, **kwargs):
    """(d/d hidden, d/d weight, d/d bias) of the reduced linear cross-entropy
    (``reduction`` "sum" or "mean"), from the analytic logits gradient."""
    h = np.asarray(h, np.float64)
    W = np.asarray(W, np.float64)
    z = h @ W.T
    if b is not None:
        z = z + np.asarray(b, np.float64)
    g = sparse_zcap_grad(z, y, axis=-1, **kwargs)
    g2 = g.reshape(-1, g.shape[-1])
    return g @ W, g2.T @ h.reshape(-1, h.shape[-1]), g2.sum(0)
