"""The six cross-entropy losses, each written once over the backend primitives.

Every function dispatches on the type of its predictions, so the result is an
array of the caller's framework, on the caller's device, differentiable by that
framework's autodiff. Half-precision inputs are computed in float32 and returned
in their own dtype.
"""

from __future__ import annotations

from typing import Any

from xent import _frontend as fe
from xent._dispatch import ladder
from xent._frontend import Reduction
from xent._linear import Plan
from xent.backends._rows import RowStats, combine, row_stats, z_term

Array = Any


@fe.plain_python
@ladder
def softmax_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    axis: int = -1,
    label_smoothing: float = 0.0,
    weights: Array | None = None,
    reduction: Reduction = "none",
    focal_gamma: float = 0.0,
    poly_epsilon: float = 0.0,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Softmax cross-entropy between logits and soft (dense) labels.

    ``loss = -Σ_c y'_c · log_softmax(logits)_c`` along ``axis``, with
    ``y' = (1 - α)·y + α/C`` for ``label_smoothing = α`` and ``C`` classes.
    Labels need not sum to 1. A class whose label weight ``y'_c`` is 0
    contributes nothing, even where its logit is ``-inf`` (tf.nn and optax give
    NaN there). TensorFlow's ``softmax_cross_entropy_with_logits``, optax's
    ``softmax_cross_entropy`` and torch's ``cross_entropy`` with probability
    targets compute the same values elsewhere.

    Args:
      logits: ``[..., num_classes, ...]`` floating point, any real values.
      labels: same shape as ``logits``; real, e.g. probabilities or one-hot.
        Gradients flow into them.
      axis: the class axis of ``logits``.
      label_smoothing: ``α`` in ``[0, 1)``.
      weights: sample weights broadcastable to the loss shape (``logits`` without
        ``axis``); they multiply the per-element loss.
      reduction: ``"none"`` (per-element losses), ``"sum"``, or ``"mean"``
        (``Σ loss / Σ weights``; 0 when the total weight is 0).
      focal_gamma: ``γ >= 0``: each class's term is multiplied by the focal
        factor ``(1 - p_c)^γ`` (0: the plain loss; see docs/semantics.md).
      poly_epsilon: ``ε``: PolyLoss adds ``ε·(1 - p_c)`` to each class's
        ``-log p_c`` (times the focal factor when both are set).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``logits``: shape ``logits.shape`` without
      ``axis`` for ``"none"``, a scalar otherwise.

    Raises:
      ValueError: shape mismatch, bad ``axis``, ``reduction`` or ``label_smoothing``.
      TypeError: non-floating logits, labels from another framework.

    >>> import numpy as np, xent
    >>> logits = np.array([[2, 0.5, 1], [0.1, 1, 3]], dtype=np.float32)
    >>> labels = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]], dtype=np.float32)
    >>> xent.softmax_cross_entropy(logits, labels).round(5)
    array([1.41437, 1.66425], dtype=float32)
    """
    p, axis, num, w = fe.class_axis_inputs(logits, "logits", axis, reduction, weights, cast=False)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    gamma = fe.check_focal_gamma(focal_gamma)
    eps = fe.check_poly_epsilon(poly_epsilon)
    be = p.backend
    y = fe.float_labels(p, labels, cast=False)
    # Not tf.nn/torch's fused kernels as they are: both give NaN for a -inf
    # logit under a zero label, where the loss is finite.
    narrow = None if alpha else fe.upcast_from(p, labels)

    def rows(z: Array, y: Array) -> Array:
        z, y = be.cast(z, p.compute_dtype), be.cast(y, p.compute_dtype)
        if alpha:
            y = y * (1.0 - alpha) + alpha / num
        if gamma or eps:
            # Each class's cross-entropy -log p_c modulated, then weighted by its label.
            return be.sum(be.weigh(y, fe.modulated(be, -be.log_softmax(z, axis), gamma, eps)), axis)
        return be.soft_nll(z, y, axis, narrow)

    with be.errstate():
        loss = be.rows_in_chunks(rows, axis, (p.value, y))
        return fe.reduce(p, loss, reduction, weights=w, normalizer=normalizer)


@fe.plain_python
@ladder
def sparse_softmax_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    axis: int = -1,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    class_weights: Array | None = None,
    weights: Array | None = None,
    reduction: Reduction = "none",
    z_loss: float = 0.0,
    logit_softcap: float | None = None,
    focal_gamma: float = 0.0,
    poly_epsilon: float = 0.0,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Softmax cross-entropy with integer class labels.

    ``loss_i = -log_softmax(logits_i)[y_i]``; with class weights ``w`` and
    smoothing ``α`` it is, as in ``torch.nn.functional.cross_entropy``,
    ``(1-α)·w[y_i]·(-log p_{i,y_i}) + (α/C)·Σ_c w_c·(-log p_{i,c})``.
    ``logit_softcap = c`` first replaces the logits by ``c·tanh(z/c)`` (Gemma 2);
    ``z_loss = s`` adds PaLM's ``s·logsumexp(z_i)²`` to each entry's loss (not
    multiplied by the class weight, as in Liger-Kernel; sample weights, the
    ignore mask and the reduction apply to it as to the rest of the loss).

    Args:
      logits: ``[..., num_classes, ...]`` floating point.
      labels: integer class ids in ``[0, C)`` (any integer dtype), shape =
        ``logits.shape`` without ``axis``.
      axis: the class axis of ``logits``; any axis, not only the last.
      ignore_index: a label value whose entries get loss 0 and weight 0.
      label_smoothing: ``α`` in ``[0, 1)``.
      class_weights: ``[num_classes]`` weights, one per class.
      weights: sample weights broadcastable to the loss shape.
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` = ``Σ loss_i / Σ W_i`` with
        ``W_i`` = sample weight × class weight of the label × (not ignored);
        0 (with zero gradient) when every entry is ignored.
      z_loss: ``s >= 0``, the scale of the auxiliary ``s·logsumexp(z)²`` term.
      logit_softcap: ``None`` or ``c > 0``: soft-cap the logits to ``(-c, c)``.
      focal_gamma: ``γ >= 0``: each class's term is multiplied by the focal
        factor ``(1 - p_c)^γ`` (0: the plain loss; see docs/semantics.md).
      poly_epsilon: ``ε``: PolyLoss adds ``ε·(1 - p_c)`` to each class's
        ``-log p_c`` (times the focal factor when both are set).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``logits``: shape ``labels.shape`` for ``"none"``,
      a scalar otherwise.

    Raises:
      ValueError: shape mismatch, bad ``axis``/``reduction``/``label_smoothing``/
        ``class_weights``, and labels outside ``[0, C)`` (not ``ignore_index``)
        when running eagerly on the CPU. Under jax.jit, tf.function,
        torch.compile or on an accelerator those entries give NaN instead.
      TypeError: non-integer labels, non-floating logits, mixed frameworks.

    >>> import numpy as np, xent
    >>> logits = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
    >>> xent.sparse_softmax_cross_entropy(logits, [0, 2]).round(6)
    array([0.464369, 0.174255])
    >>> float(xent.sparse_softmax_cross_entropy(logits, [0, -100], ignore_index=-100,
    ...                                         reduction="mean").round(6))
    0.464369
    """
    p, axis, num, w = fe.class_axis_inputs(logits, "logits", axis, reduction, weights, cast=False)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    zl = fe.check_z_loss(z_loss)
    cap = fe.check_softcap(logit_softcap)
    gamma = fe.check_focal_gamma(focal_gamma)
    eps = fe.check_poly_epsilon(poly_epsilon)
    be = p.backend
    y = fe.sparse_labels(p, labels, axis, num, ignore_index)
    cw = None if class_weights is None else fe.class_weight_vector(p, class_weights, num)
    narrow = fe.narrow_of(p)

    def rows(z: Array, labels: Array, class_w: Array | None, cw: Array | None) -> Array:
        z = fe.softcap(be, be.cast(z, p.compute_dtype), cap)
        if gamma or eps:
            return _sparse_modulated(p, z, labels, axis, num, cw, class_w, alpha, zl, gamma, eps)
        return _sparse_terms(p, z, labels, axis, num, cw, class_w, alpha, zl, cap, narrow)

    with be.errstate():
        class_w = None if cw is None else be.take(cw, y.safe)
        # Large half logits on an accelerator: chunk by chunk (torch), without
        # the float32 copy that the general forms start from.
        loss = None if gamma or eps else be.sparse_rows(
            p.value, y.safe, axis, cw, Plan(num, 0, alpha, zl, cap, p.compute_dtype)
        )
        if loss is None:
            loss = be.rows_in_chunks(rows, axis, (p.value, y.safe, class_w), (cw,))
        return fe.reduce(
            p, loss, reduction, weights=w, class_weight=class_w, keep=y.keep, bad=y.bad, normalizer=normalizer
        )


def _sparse_terms(p: fe.Predictions, z: Array, labels: Array, axis: int, num: int, cw: Array | None, class_w: Array | None,
                  alpha: float, zl: float, cap: float | None, narrow: str | None) -> Array:
    """The sparse loss of each entry of the (soft-capped) logits ``z``, in the
    compute dtype, with smoothing, class weights ``cw`` (``class_w``: the
    labels') and the z-loss; ``narrow``: the half dtype the logits were upcast from."""
    be = p.backend
    if alpha and cw is None and not zl:
        return be.smoothed_nll(z, labels, axis, alpha)
    if alpha or zl:
        # The row statistics, combined: the row max, Σ exp, the label's
        # logit and (smoothing) Σ_c w_c·z_c, in one pass over the logits.
        spread = (True if cw is None else fe.along_axis(p, cw, axis)) if alpha else None
        stats = row_stats(be, z, axis, labels=labels, spread=spread)
        wsum = None if cw is None else be.sum(cw)
        return combine(be, stats, w_y=class_w, wsum=wsum, alpha=alpha, vocab=num, z_loss=zl)
    # The backend's negative log-likelihood (a fused native kernel on torch
    # and TF): it only ever sees in-range labels; masks and weights are
    # applied by the caller. (narrow: unless soft-capped)
    loss = be.nll(z, labels, axis, None if cap is not None else narrow, raw=cap is None)
    return loss if class_w is None else be.weigh(class_w, loss)


def _sparse_modulated(p: fe.Predictions, z: Array, labels: Array, axis: int, num: int, cw: Array | None,
                      class_w: Array | None, alpha: float, zl: float, gamma: float, eps: float) -> Array:
    """The sparse loss with focal or PolyLoss terms: each class's ``-log p_c``
    modulated (:func:`xent._frontend.modulated`), then weighted as the plain
    loss weights it: ``(1-α)·w_y·φ_y + (α/C)·Σ_c w_c·φ_c``, plus the z-loss."""
    be = p.backend
    stats = row_stats(be, z, axis, labels=labels)
    if alpha:
        phi = fe.modulated(be, -be.log_softmax(z, axis), gamma, eps)
        picked = be.sum(be.take_along_axis(phi, be.expand_dims(labels, axis), axis), axis)
        spread = be.sum(phi if cw is None else be.weigh(fe.along_axis(p, cw, axis), phi), axis)
        loss = (picked if class_w is None else be.weigh(class_w, picked)) * (1.0 - alpha) + spread * (alpha / num)
    else:
        loss = modulated_nll(be, stats, class_w, gamma, eps)
    return loss + z_term(be, stats, zl) if zl else loss


def modulated_nll(be: Any, stats: RowStats, w_y: Array | None, gamma: float, eps: float) -> Array:
    """``w_y·φ(p_y)`` of each row from its statistics (:func:`xent._frontend.
    modulated` of ``-log p_y = log Σ exp(d) - d_y``): the unsmoothed sparse
    loss with focal or PolyLoss terms, also of a vocabulary split across devices
    (:mod:`xent.distributed`)."""
    loss = fe.modulated(be, be.log(stats.sumexp) - stats.picked, gamma, eps)
    return loss if w_y is None else be.weigh(w_y, loss)


def _log_one_minus_pt(be: Any, z: Array, y: Array) -> Array:
    """``log(1 - p_t)`` for the sigmoid losses, ``1 - p_t = y·σ(-z) + (1-y)·σ(z)``
    (torchvision's ``p_t`` for soft labels), in log space: with ``a = log σ(-z)``,
    ``b = log σ(z)`` and ``M = max(a, b)`` (>= log 1/2), ``M + log(y·e^(a-M) +
    (1-y)·e^(b-M))``. The sum vanishes only for a hard label whose own term
    underflows; there it is ``a`` (y = 1) or ``b`` (y = 0)."""
    a = -be.softplus(z)
    b = -be.softplus(-z)
    m = be.stop_gradient(be.where(a > b, a, b))
    s = y * be.exp(a - m) + (1.0 - y) * be.exp(b - m)
    live = s > 0
    return be.where(live, m + be.log(be.where(live, s, 1.0)), be.where(y == 1, a, b))


@fe.plain_python
@ladder
def sigmoid_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    pos_weight: Array | None = None,
    label_smoothing: float = 0.0,
    weights: Array | None = None,
    reduction: Reduction = "none",
    focal_gamma: float = 0.0,
    focal_alpha: float | None = None,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Elementwise sigmoid (binary) cross-entropy from logits.

    ``loss = max(z, 0) - z·y' + log(1 + exp(-|z|))`` with ``y' = (1-α)·y + α/2``,
    computed as ``p·y'·softplus(-z) + (1-y')·softplus(z)`` (``p`` = ``pos_weight``,
    as in ``torch.nn.functional.binary_cross_entropy_with_logits``), which has the
    right limits at ``z = ±inf``: 0 where the label agrees, ``inf`` where it does
    not (tf.nn, torch, optax and Keras return NaN there).

    Args:
      logits: ``[...]`` floating point.
      labels: same shape, values in ``[0, 1]``.
      pos_weight: weight of the positive term, broadcastable to ``logits``
        (usually ``[num_classes]``, along the last axis).
      label_smoothing: ``α`` in ``[0, 1)``.
      weights: sample weights broadcastable to ``logits``.
      reduction: ``"none"``, ``"sum"``, or ``"mean"`` (``Σ loss / Σ weights``).
      focal_gamma: ``γ >= 0``: the loss is multiplied by the focal factor
        ``(1 - p_t)^γ``, ``1 - p_t = y·(1 - σ(z)) + (1 - y)·σ(z)``, taken in
        log space from the logits (finite at saturated and infinite logits).
      focal_alpha: None, or ``α`` in ``[0, 1]``: the loss is multiplied by
        ``α·y + (1 - α)·(1 - y)`` (torchvision's ``alpha``).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``logits``, shape ``logits.shape`` for ``"none"``.

    >>> import numpy as np, xent
    >>> xent.sigmoid_cross_entropy(np.array([12.0, 3.0, -np.inf]), np.array([1.0, 0.0, 0.0]))
    array([6.14419348e-06, 3.04858735e+00, 0.00000000e+00])
    """
    p, w = fe.elementwise_inputs(logits, "logits", reduction, weights, cast=False)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    gamma = fe.check_focal_gamma(focal_gamma)
    balance = fe.check_focal_alpha(focal_alpha)
    be = p.backend
    y = fe.float_labels(p, labels, cast=False)
    pw = None if pos_weight is None else fe.broadcast_operand(p, pos_weight, "pos_weight", p.shape, "logits.shape")
    # Not the native kernels: all give NaN at z = ±inf, and torch's loses
    # every digit of a small loss at z << 0 (it subtracts log_sigmoid(z) from z).
    narrow = None if alpha or gamma or balance is not None else fe.upcast_from(p, labels)

    def rows(z: Array, y: Array, pw: Array | None) -> Array:
        z, y = be.cast(z, p.compute_dtype), be.cast(y, p.compute_dtype)
        if alpha:
            y = y * (1.0 - alpha) + alpha / 2
        return sigmoid_focal(be, z, y, be.binary_nll(z, y, pw, narrow), gamma, balance)

    with be.errstate():
        loss = be.rows_in_chunks(rows, None, (p.value, y), (pw,))
        return fe.reduce(p, loss, reduction, weights=w, normalizer=normalizer)


def sigmoid_focal(be: Any, z: Array, y: Array, loss: Array, gamma: Any, balance: Any) -> Array:
    """The sigmoid cross-entropy ``loss`` of logits ``z`` and labels ``y`` with
    the focal factor ``(1 - p_t)^γ`` (none for a zero ``gamma``) and the class
    balance ``α·y + (1-α)·(1-y)`` (none for a None ``balance``). ``gamma`` and
    ``balance`` may be arrays (optax's dialect takes traced ones)."""
    if gamma is not None and not (isinstance(gamma, float) and gamma == 0.0):
        loss = fe.focal_factor(be, _log_one_minus_pt(be, z, y), gamma, be.isinf(loss)) * loss
    if balance is not None:
        loss = be.weigh(y * balance + (1.0 - y) * (1.0 - balance), loss)
    return loss


@fe.plain_python
@ladder
def categorical_cross_entropy(
    probs: Array,
    labels: Array,
    *,
    axis: int = -1,
    epsilon: float = 1e-7,
    label_smoothing: float = 0.0,
    weights: Array | None = None,
    reduction: Reduction = "none",
    focal_gamma: float = 0.0,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Cross-entropy from probabilities, as Keras 3 ``categorical_crossentropy``.

    ``p ← p / Σ_c p_c`` along ``axis``, then ``p ← clip(p, ε, 1-ε)``, then
    ``loss = -Σ_c y'_c · log p_c`` with ``y' = (1-α)·y + α/C``.

    Args:
      probs: ``[..., num_classes, ...]`` non-negative floating point.
      labels: same shape as ``probs``, real.
      axis: the class axis.
      epsilon: the clipping constant ``ε`` in ``[0, 0.5)`` (Keras' 1e-7).
      label_smoothing: ``α`` in ``[0, 1)``.
      weights: sample weights broadcastable to the loss shape.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      focal_gamma: ``γ >= 0``: each class's term is multiplied by
        ``(1 - p_c)^γ`` of the clipped probabilities, as Keras'
        ``categorical_focal_crossentropy`` (without its ``alpha``).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``probs``: shape ``probs.shape`` without ``axis``
      for ``"none"``, a scalar otherwise.

    >>> import numpy as np, xent
    >>> xent.categorical_cross_entropy(np.array([[0.05, 0.95, 0.0]]), np.array([[0.0, 1.0, 0.0]])).round(7)
    array([0.0512933])
    """
    p, axis, num, w = fe.class_axis_inputs(probs, "probs", axis, reduction, weights, cast=False)
    eps = fe.check_fraction("epsilon", epsilon, 0.5)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    gamma = fe.check_focal_gamma(focal_gamma)
    be = p.backend
    y = fe.float_labels(p, labels, cast=False)
    times = fe.clipped_log_product(p, eps)

    def rows(q: Array, y: Array) -> Array:
        q, y = be.cast(q, p.compute_dtype), be.cast(y, p.compute_dtype)
        if alpha:
            y = y * (1.0 - alpha) + alpha / num
        q = be.clip(q / be.sum(q, axis, keepdims=True), eps, 1.0 - eps)
        log_q = be.log(q)
        if gamma:
            # Keras' categorical focal loss: the factor from the clipped probabilities.
            factor = fe.focal_factor(be, fe.log_positive(be, 1.0 - q), gamma, be.isinf(log_q))
            return -be.sum(times(y, factor * log_q), axis)
        return -be.sum(times(y, log_q), axis)

    with be.errstate():
        loss = be.rows_in_chunks(rows, axis, (p.value, y))
        return fe.reduce(p, loss, reduction, weights=w, normalizer=normalizer)


@fe.plain_python
@ladder
def sparse_categorical_cross_entropy(
    probs: Array,
    labels: Array,
    *,
    axis: int = -1,
    epsilon: float = 1e-7,
    ignore_index: int | None = None,
    weights: Array | None = None,
    reduction: Reduction = "none",
    focal_gamma: float = 0.0,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Cross-entropy from probabilities and integer labels, as Keras 3 (TF backend).

    ``p ← clip(p, ε, 1-ε)``, then ``loss = -log(p_y / Σ_c p_c)``: renormalised
    *after* the clip, as Keras' TensorFlow backend does (its torch/JAX/NumPy
    backends renormalise first; Keras disagrees with itself there).

    Args:
      probs: ``[..., num_classes, ...]`` non-negative floating point.
      labels: integer class ids, shape = ``probs.shape`` without ``axis``.
      axis: the class axis.
      epsilon: the clipping constant ``ε`` in ``[0, 0.5)``.
      ignore_index: a label value whose entries get loss 0 and weight 0.
      weights: sample weights broadcastable to the loss shape.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      focal_gamma: ``γ >= 0``: the loss is multiplied by ``(1 - p_y)^γ``
        (``p_y`` the renormalised clipped probability of the label).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``probs``.

    Raises:
      ValueError, TypeError: as :func:`sparse_softmax_cross_entropy`.

    >>> import numpy as np, xent
    >>> probs = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
    >>> xent.sparse_categorical_cross_entropy(probs, [1, 2], reduction="mean")
    np.float32(1.1769392)
    """
    p, axis, num, w = fe.class_axis_inputs(probs, "probs", axis, reduction, weights, cast=False)
    eps = fe.check_fraction("epsilon", epsilon, 0.5)
    gamma = fe.check_focal_gamma(focal_gamma)
    be = p.backend
    y = fe.sparse_labels(p, labels, axis, num, ignore_index)

    def rows(q: Array, labels: Array) -> Array:
        # -log(p_y / Σp) is the softmax cross-entropy of log p: Keras' TF backend
        # computes it that way too, so the fused sparse kernel serves here.
        q = be.clip(be.cast(q, p.compute_dtype), eps, 1.0 - eps)
        return fe.modulated(be, be.nll(be.log(q), labels, axis), gamma, 0.0)

    with be.errstate():
        loss = be.rows_in_chunks(rows, axis, (p.value, y.safe))
        return fe.reduce(p, loss, reduction, weights=w, keep=y.keep, bad=y.bad, normalizer=normalizer)


@fe.plain_python
@ladder
def binary_cross_entropy(
    probs: Array,
    labels: Array,
    *,
    epsilon: float = 1e-7,
    label_smoothing: float = 0.0,
    weights: Array | None = None,
    reduction: Reduction = "none",
    focal_gamma: float = 0.0,
    focal_alpha: float | None = None,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Elementwise binary cross-entropy from probabilities, as Keras 3.

    ``p ← clip(p, ε, 1-ε)``, ``loss = -(y'·log p + (1-y')·log(1-p))`` with
    ``y' = (1-α)·y + α/2``. Unlike Keras, no mean over the last axis.

    Args:
      probs: ``[...]`` floating point in ``[0, 1]``.
      labels: same shape, values in ``[0, 1]``.
      epsilon: the clipping constant ``ε`` in ``[0, 0.5)``.
      label_smoothing: ``α`` in ``[0, 1)``.
      weights: sample weights broadcastable to ``probs``.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      focal_gamma: ``γ >= 0``: the loss is multiplied by ``(1 - p_t)^γ``,
        ``1 - p_t = y·(1 - p) + (1 - y)·p`` from the probabilities as given,
        as Keras' ``binary_focal_crossentropy``.
      focal_alpha: None, or ``α`` in ``[0, 1]``: the loss is multiplied by
        ``α·y + (1 - α)·(1 - y)`` (Keras' ``apply_class_balancing=True``).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``probs``, shape ``probs.shape`` for ``"none"``.

    >>> import numpy as np, xent
    >>> xent.binary_cross_entropy(np.array([0.0, 0.5], dtype=np.float32), np.array([1.0, 1.0]))
    array([16.118095 ,  0.6931472], dtype=float32)
    """
    p, w = fe.elementwise_inputs(probs, "probs", reduction, weights, cast=False)
    eps = fe.check_fraction("epsilon", epsilon, 0.5)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    gamma = fe.check_focal_gamma(focal_gamma)
    balance = fe.check_focal_alpha(focal_alpha)
    be = p.backend
    y = fe.float_labels(p, labels, cast=False)
    times = fe.clipped_log_product(p, eps)

    def rows(given: Array, y: Array) -> Array:
        given, y = be.cast(given, p.compute_dtype), be.cast(y, p.compute_dtype)
        if alpha:
            y = y * (1.0 - alpha) + alpha / 2
        q = be.clip(given, eps, 1.0 - eps)
        loss = -(times(y, be.log(q)) + times(1.0 - y, be.log(1.0 - q)))
        if gamma:
            # Keras' binary focal loss: 1 - p_t from the probabilities as given.
            u = y * (1.0 - given) + (1.0 - y) * given
            loss = fe.focal_factor(be, fe.log_positive(be, u), gamma, be.isinf(loss)) * loss
        if balance is not None:
            loss = be.weigh(y * balance + (1.0 - y) * (1.0 - balance), loss)
        return loss

    with be.errstate():
        loss = be.rows_in_chunks(rows, None, (p.value, y))
        return fe.reduce(p, loss, reduction, weights=w, normalizer=normalizer)


#: the six losses' names, in the order they are documented and reported
LOSSES = (
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "categorical_cross_entropy",
    "sparse_categorical_cross_entropy",
    "binary_cross_entropy",
)
#: those whose labels are integer class ids
CLASS_ID_LOSSES = ("sparse_softmax_cross_entropy", "sparse_categorical_cross_entropy")
