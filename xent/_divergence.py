"""The distillation divergences between two sets of logits: KL and generalised JSD.

Both are written once over the backend primitives, in log space: the two
distributions are ``log_softmax`` of the (temperature-scaled) logits and are
never formed as ``log(softmax)``. Half-precision inputs are computed in float32
and returned in their own dtype; weights, reductions and ``normalizer`` are
those of the cross-entropy losses (:mod:`xent._losses`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from xent import _frontend as fe
from xent._frontend import Reduction
from xent._registry import backend_for
from xent.backends import Backend
from xent.backends._base import FLOAT_DTYPES

Array = Any


def _check_temperature(value: Any) -> float:
    """The softmax temperature: a finite number ``> 0``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    if not (number > 0.0 and number < math.inf):
        raise ValueError(f"temperature must be a finite number > 0; received temperature={value!r}")
    return number


def _check_beta(value: Any) -> float:
    """The JSD mixing weight: a number in ``[0, 1]``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"beta must be a number in [0, 1]; received beta={value!r}")
    return number


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; received {name}={value!r}")
    return bool(value)


def _target_logits(p: fe.Predictions, x: Any) -> Array:
    """The target logits: floating point (as the logits must be), the logits'
    framework and shape, in the compute dtype."""
    if isinstance(x, (numbers.Number, list, tuple)):
        x = np.asarray(x)
        if x.dtype.kind in "biu":  # (Python numbers: ints become floats, as for the logits)
            x = x.astype(np.float64)
    owner = backend_for(x)
    dtype = owner.dtype_name(x) if owner is not None else None
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"target_logits must be floating point (float16, bfloat16, float32 or float64); "
            f"received target_logits.dtype={dtype}. Cast it first, e.g. to float32."
        )
    return fe.float_labels(p, x, "target_logits", cast=False)


def _log_probs(be: Backend, z: Array, axis: int, temperature: float) -> Array:
    return be.log_softmax(z if temperature == 1.0 else z / temperature, axis)


def kl_pointwise(be: Backend, a: Array, log_a: Array, log_b: Array) -> Array:
    """``a·(log a - log b)`` elementwise, 0 where ``a`` is 0.

    The difference is replaced by 0 where ``a`` is 0 *before* it is multiplied,
    so no ``0·inf`` or ``0·nan`` (``-inf - -inf``) is formed forward or backward;
    a class whose ``a`` underflowed to 0 is dropped too (its term is below the
    dtype's smallest number). Also the dialects' pointwise KL (``xent.compat``)."""
    return a * be.where(a == 0, 0.0, log_a - log_b)


def _kl(be: Backend, a: Array, log_a: Array, log_b: Array, axis: int) -> Array:
    """``Σ a·(log a - log b)`` along ``axis``, a class with ``a = 0`` contributing 0."""
    return be.sum(kl_pointwise(be, a, log_a, log_b), axis)


def _log_mixture(be: Backend, lq: Array, lp: Array, beta: float) -> Array:
    """``log(β·exp(lq) + (1-β)·exp(lp))`` for ``0 < β < 1``, elementwise in log
    space: ``hi + softplus(lo - hi)`` of the two weighted logs. Where both are
    ``-inf`` it is ``-inf`` (with zero derivatives)."""
    a = lq + math.log(beta)
    b = lp + math.log1p(-beta)
    up = a >= b
    hi = be.where(up, a, b)
    lo = be.where(up, b, a)
    gap = be.where(hi == -math.inf, 0.0, lo - hi)
    return hi + be.softplus(gap)


def divergence_rows(be: Backend, z: Array, target: Array, axis: int, temperature: float, *,
                    reverse: bool = False, beta: float | None = None) -> Array:
    """The divergence of each row (``axis`` removed) of model logits ``z``
    against ``target`` logits, both in the compute dtype: ``KL(q ‖ p)``
    (``reverse``: ``KL(p ‖ q)``) without ``beta``, the generalised JSD with it.
    Shared by :func:`kl_divergence`, :func:`js_divergence` and their LM-head
    forms (:mod:`xent._heads`)."""
    lp = _log_probs(be, z, axis, temperature)
    lq = _log_probs(be, target, axis, temperature)
    if beta == 0.0 or (beta is None and not reverse):
        return _kl(be, be.exp(lq), lq, lp, axis)
    if beta == 1.0 or beta is None:
        return _kl(be, be.exp(lp), lp, lq, axis)
    lm = _log_mixture(be, lq, lp, beta)
    return _kl(be, be.exp(lq), lq, lm, axis) * beta + _kl(be, be.exp(lp), lp, lm, axis) * (1.0 - beta)


@fe.plain_python
def kl_divergence(
    logits: Array,
    target_logits: Array,
    *,
    temperature: float = 1.0,
    reverse: bool = False,
    axis: int = -1,
    weights: Array | None = None,
    reduction: Reduction = "none",
    normalizer: float | Array | None = None,
) -> Array:
    r"""Kullback-Leibler divergence between the softmax of two sets of logits.

    With ``p = softmax(logits / T)`` (the model, or student) and
    ``q = softmax(target_logits / T)`` (the target, or teacher), along ``axis``::

        loss = KL(q ‖ p) = Σ_c q_c · (log q_c - log p_c)        (reverse=False)
        loss = KL(p ‖ q) = Σ_c p_c · (log p_c - log q_c)        (reverse=True)

    The default direction is that of ``torch.nn.functional.kl_div(log p, log q,
    log_target=True)`` and of optax's ``kl_divergence``: the forward KL of
    distillation. Both distributions come from ``log_softmax``, never from
    ``log(softmax)``. A class with ``q_c = 0`` (e.g. a ``-inf`` target logit)
    contributes 0, and so do its derivatives, also where ``logits`` is ``-inf``
    there (``reverse=True``: the same for ``p_c = 0``); ``p_c = 0`` under
    ``q_c > 0`` gives ``inf``, as the mathematics says. No ``T²`` factor is
    applied: multiply by ``T**2`` yourself for Hinton's distillation loss (torch
    and optax take log-probabilities and apply no temperature either).

    Gradients flow into both arguments; stop the target's gradient yourself if
    it is a fixed teacher.

    Args:
      logits: ``[..., num_classes, ...]`` floating point, the model's logits.
      target_logits: same shape, floating point, the target's logits (from the
        same framework, or NumPy / Python lists, which are moved to it). Need not
        be normalised; ``-inf`` marks a class of probability 0.
      temperature: ``T``, a finite number ``> 0``; both sets of logits are
        divided by it.
      reverse: ``True`` for ``KL(p ‖ q)`` (mode-seeking) instead of ``KL(q ‖ p)``.
      axis: the class axis.
      weights: sample weights broadcastable to the loss shape (``logits``
        without ``axis``); they multiply the per-element loss.
      reduction: ``"none"`` (per-element losses), ``"sum"``, or ``"mean"``
        (``Σ loss / Σ weights``; 0 when the total weight is 0).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0);
        a constant for autodiff.

    Returns:
      The divergence (``>= 0``) in the dtype of ``logits``: shape
      ``logits.shape`` without ``axis`` for ``"none"``, a scalar otherwise.

    Raises:
      ValueError: shape mismatch, bad ``axis``, ``reduction``, ``temperature``,
        ``weights`` or ``normalizer``.
      TypeError: non-floating logits or target logits, arrays of two frameworks,
        ``reverse`` not a bool.

    >>> import numpy as np, xent
    >>> student = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
    >>> teacher = np.array([[1.5, 1.0, -np.inf], [0.0, 2.0, 2.5]])
    >>> xent.kl_divergence(student, teacher).round(6)
    array([0.367832, 0.208572])
    >>> xent.kl_divergence(student, teacher, reverse=True).round(6)  # p > 0 where q = 0
    array([     inf, 0.160626])
    >>> float(xent.kl_divergence(student, teacher, temperature=2.0, reduction="mean").round(6))
    0.215813
    """
    p, axis, _, w = fe.class_axis_inputs(logits, "logits", axis, reduction, weights, cast=False)
    t = _check_temperature(temperature)
    rev = _check_flag("reverse", reverse)
    return _divergence_loss(p, axis, w, _target_logits(p, target_logits), t, rev, None, reduction, normalizer)


@fe.plain_python
def js_divergence(
    logits: Array,
    target_logits: Array,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    axis: int = -1,
    weights: Array | None = None,
    reduction: Reduction = "none",
    normalizer: float | Array | None = None,
) -> Array:
    r"""Generalised Jensen-Shannon divergence between the softmax of two sets of logits.

    With ``p = softmax(logits / T)`` (the model, or student),
    ``q = softmax(target_logits / T)`` (the target, or teacher) and their
    mixture ``m = β·q + (1-β)·p``, along ``axis``::

        loss = β·KL(q ‖ m) + (1-β)·KL(p ‖ m)     for 0 < β < 1
        loss = KL(q ‖ p)                         for β = 0 (forward KL)
        loss = KL(p ‖ q)                         for β = 1 (reverse KL)

    This is Liger-Kernel's generalised JSD (``LigerJSD``, with ``log_q`` the
    student and ``log_p`` the teacher): ``β`` weights the *target* in the
    mixture and the target's KL term; ``β = 0.5`` is the symmetric
    Jensen-Shannon divergence (at most ``log 2``). At ``β = 0`` and ``β = 1``
    the formula above tends to 0 (like ``β·KL(q ‖ p)`` and ``(1-β)·KL(p ‖ q)``);
    there, as in Liger, the loss is the plain KL instead, exactly
    :func:`kl_divergence` and ``kl_divergence(..., reverse=True)``. The mixture's
    log is computed in log space; classes with ``q_c = 0`` or ``p_c = 0``
    contribute 0 to their KL term, forward and backward, and ``m_c > 0`` wherever
    one of them is not 0, so for ``0 < β < 1`` the loss is finite for any logits
    (each row needs one finite logit). No ``T²`` factor is applied.

    Args:
      logits: ``[..., num_classes, ...]`` floating point, the model's logits.
      target_logits: same shape, floating point, the target's logits.
      beta: ``β`` in ``[0, 1]``, the weight of the target.
      temperature: ``T``, a finite number ``> 0``; both sets of logits are
        divided by it.
      axis: the class axis.
      weights: sample weights broadcastable to the loss shape.
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` (``Σ loss / Σ weights``).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead (0 gives 0); a constant for autodiff.

    Returns:
      The divergence (``>= 0``) in the dtype of ``logits``: shape
      ``logits.shape`` without ``axis`` for ``"none"``, a scalar otherwise.

    Raises:
      ValueError: shape mismatch, bad ``axis``, ``reduction``, ``beta``,
        ``temperature``, ``weights`` or ``normalizer``.
      TypeError: non-floating logits or target logits, arrays of two frameworks.

    >>> import numpy as np, xent
    >>> student = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
    >>> teacher = np.array([[1.5, 1.0, -np.inf], [0.0, 2.0, 2.5]])
    >>> xent.js_divergence(student, teacher).round(6)
    array([0.108373, 0.044269])
    >>> xent.js_divergence(student, teacher, beta=0.0).round(6)  # KL(q ‖ p)
    array([0.367832, 0.208572])
    """
    p, axis, _, w = fe.class_axis_inputs(logits, "logits", axis, reduction, weights, cast=False)
    b = _check_beta(beta)
    t = _check_temperature(temperature)
    return _divergence_loss(p, axis, w, _target_logits(p, target_logits), t, False, b, reduction, normalizer)


def _divergence_loss(p: fe.Predictions, axis: int, w: Array | None, target: Array, temperature: float, reverse: bool,
                beta: float | None, reduction: str, normalizer: Any) -> Array:
    """:func:`kl_divergence` (``beta`` None) or :func:`js_divergence` of the
    validated logits and target logits, both as given (half types not upcast)."""
    be = p.backend

    def rows(z: Array, target: Array) -> Array:
        z, target = be.cast(z, p.compute_dtype), be.cast(target, p.compute_dtype)
        return divergence_rows(be, z, target, axis, temperature, reverse=reverse, beta=beta)

    with be.errstate():
        loss = be.rows_in_chunks(rows, axis, (p.value, target))
        return fe.reduce(p, loss, reduction, weights=w, normalizer=normalizer)
