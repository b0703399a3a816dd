"""Float64 reference formulas for the tests: thin wrappers, with the tests'
argument names and any class axis, over xent's float64 reference
(``xent.testing._reference``, shared with ``xent parity``), which is written
from docs/semantics.md in plain NumPy, independently of xent's losses.

Inputs are first rounded to the dtype under test by the caller, so the
comparison measures xent's computation, not input rounding.
"""

from __future__ import annotations

import numpy as np

from xent.testing import _reference as R


log_softmax = R.log_softmax  # (along the last axis)


def _last(x, axis):
    return np.moveaxis(np.asarray(x, np.float64), axis, -1)


def _value(terms, w, reduction):
    return R.reduced(terms, reduction, w)[0]


def _grads(terms, w, reduction, axis=None):
    grads = R.reduced(terms, reduction, w)[1]
    if axis is not None:
        grads = {k: np.moveaxis(v, -1, axis) for k, v in grads.items()}
    return grads


def sparse(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="none"):
    terms = R.sparse_terms(_last(z, axis), y, alpha=alpha, class_weights=cw, ignore_index=ignore_index)
    return _value(terms, w, reduction)


def sparse_grad(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="sum"):
    """d loss / d logits, analytic: ``(Σ_c a_c)·softmax - a`` per row, with
    ``a = (1-α)·w_y·onehot(y) + (α/C)·w`` the label weights of the row."""
    terms = R.sparse_terms(_last(z, axis), y, alpha=alpha, class_weights=cw, ignore_index=ignore_index)
    return _grads(terms, w, reduction, axis)["predictions"]


def dense(z, y, axis=-1, alpha=0.0, w=None, reduction="none"):
    return _value(R.dense_terms(_last(z, axis), _last(y, axis), alpha=alpha), w, reduction)


def dense_grads(z, y, axis=-1, alpha=0.0, reduction="sum"):
    """(d/d logits, d/d labels) of the summed (or mean) dense loss."""
    grads = _grads(R.dense_terms(_last(z, axis), _last(y, axis), alpha=alpha), None, reduction, axis)
    return grads["predictions"], grads["labels"]


def sigmoid(z, y, pos_weight=None, alpha=0.0, w=None, reduction="none"):
    return _value(R.sigmoid_terms(z, y, alpha=alpha, pos_weight=pos_weight), w, reduction)


def sigmoid_grads(z, y, pos_weight=None, alpha=0.0):
    """(d/d logits, d/d labels) of the summed sigmoid loss."""
    grads = _grads(R.sigmoid_terms(z, y, alpha=alpha, pos_weight=pos_weight), None, "sum")
    return grads["predictions"], grads["labels"]


def categorical(p, y, axis=-1, eps=1e-7, alpha=0.0, w=None, reduction="none", dtype="float32"):
    lo, hi = _clip_bounds(eps, dtype)
    return _value(R.categorical_terms(_last(p, axis), _last(y, axis), alpha=alpha, lo=lo, hi=hi), w, reduction)


def sparse_categorical(p, y, axis=-1, eps=1e-7, ignore_index=None, w=None, reduction="none", dtype="float32"):
    lo, hi = _clip_bounds(eps, dtype)
    terms = R.sparse_categorical_terms(_last(p, axis), y, ignore_index=ignore_index, lo=lo, hi=hi)
    return _value(terms, w, reduction)


def binary(p, y, eps=1e-7, alpha=0.0, w=None, reduction="none", dtype="float32"):
    lo, hi = _clip_bounds(eps, dtype)
    return _value(R.binary_terms(p, y, alpha=alpha, lo=lo, hi=hi), w, reduction)


def _clip_bounds(eps, dtype):
    """Clip bounds as the compute dtype represents them (Keras' float32 1 - 1e-7)."""
    compute = np.float64 if dtype == "float64" else np.float32
    return float(compute(eps)), float(compute(1.0) - compute(eps))


# --------------------------------------------------------------------------
# z-loss, logit soft-capping and the linear (LM-head) cross-entropy.
# Per entry: s = c·tanh(z/c) (z if no cap), lse = logsumexp(s),
# loss = (1-α)·w_y·(lse - s_y) + (α/C)·Σ_c w_c·(lse - s_c) + zl·lse²,
# then sample weight × (not ignored); mean divides by Σ sample w × w_y × kept.


def _zcap_terms(z, y, axis, ignore_index, alpha, cw, z_loss, cap, gamma=0.0, eps=0.0):
    return R.sparse_terms(_last(z, axis), y, alpha=alpha, class_weights=cw, ignore_index=ignore_index,
                          z_loss=z_loss, cap=cap, gamma=gamma, eps=eps)


def sparse_zcap(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="none",
                z_loss=0.0, cap=None, gamma=0.0, eps=0.0):
    """The sparse softmax loss with z-loss, soft-capping and focal/PolyLoss terms, float64."""
    terms = _zcap_terms(z, y, axis, ignore_index, alpha, cw, z_loss, cap, gamma, eps)
    return _value(terms, None if w is None else np.broadcast_to(np.asarray(w, np.float64), np.shape(y)), reduction)


def sparse_zcap_grad(z, y, axis=-1, ignore_index=None, alpha=0.0, cw=None, w=None, reduction="sum",
                     z_loss=0.0, cap=None, gamma=0.0, eps=0.0):
    """d loss / d logits of :func:`sparse_zcap`, analytic:
    ``[(Σ_c a_c + 2·zl·lse)·softmax(s) - a] · (1 - tanh²(z/c))`` per row, with
    ``a = (1-α)·w_y·onehot(y) + (α/C)·w``."""
    terms = _zcap_terms(z, y, axis, ignore_index, alpha, cw, z_loss, cap, gamma, eps)
    w = None if w is None else np.broadcast_to(np.asarray(w, np.float64), np.shape(y))
    return _grads(terms, w, reduction, axis)["predictions"]


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
