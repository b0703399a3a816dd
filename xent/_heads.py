"""The cross-entropy family of an LM head without its logits: distillation
divergences and per-token statistics, chunk by chunk.

:func:`linear_kl_divergence`, :func:`linear_js_divergence` and
:func:`linear_token_stats` are :func:`xent.kl_divergence`,
:func:`xent.js_divergence` and :func:`xent.token_stats` of ``hidden @
weight.T + bias`` (and, for the divergences, of a teacher's head), computed
``chunk_size`` tokens at a time, as :func:`xent.linear_cross_entropy` is: no
``[tokens, V]`` logits are ever held, neither the student's nor the teacher's.

The per-row formulas are the logits functions' own
(:func:`xent._divergence.divergence_rows`, :func:`xent._stats.stats_rows`),
wrapped in small hashable objectives; the chunk loop is the backend's
``Backend.linear_heads``: torch, JAX and TensorFlow recompute each chunk's
logits in the backward pass and take the chunk's logit gradient from their
own autodiff of the objective (weight and bias gradients accumulated in
float32 for half inputs); NumPy and array-API arrays get the values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from xent import _frontend as fe
from xent._divergence import _check_beta, _check_flag, _check_temperature, divergence_rows
from xent._frontend import Reduction
from xent._linear import chunk_rows, operand
from xent._stats import TokenStats, check_temperature, stats_rows

Array = Any


@dataclass(frozen=True)
class Divergence:
    """The objective of the divergences: one output, the divergence of the
    student's chunk logits ``zs[0]`` against the teacher's ``zs[1]``."""

    temperature: float
    reverse: bool = False
    beta: float | None = None

    #: the number of outputs
    outputs = 1

    def __call__(self, be: Any, zs: list[Array], rows: tuple[Array, ...]) -> tuple[Array, ...]:
        return (divergence_rows(be, zs[0], zs[1], 1, self.temperature, reverse=self.reverse, beta=self.beta),)


@dataclass(frozen=True)
class Stats:
    """The objective of :func:`linear_token_stats`: ``(logprob,) entropy,
    logsumexp`` of the chunk logits ``zs[0]`` (labels ``rows[0]`` if labelled)."""

    temperature: float
    cap: float | None
    labelled: bool

    @property
    def outputs(self) -> int:
        """The number of outputs."""
        return 3 if self.labelled else 2

    def __call__(self, be: Any, zs: list[Array], rows: tuple[Array, ...]) -> tuple[Array, ...]:
        logprob, entropy, lse = stats_rows(be, zs[0], rows[0] if self.labelled else None, 1, self.temperature,
                                           self.cap)
        return (entropy, lse) if logprob is None else (logprob, entropy, lse)


@dataclass(frozen=True)
class Head:
    """One LM head of a call, validated: ``[N, H]`` hidden states, its weight
    ``[V, H]`` and bias ``[V]`` (compute dtype) or None."""

    hidden: Array
    weight: Array
    bias: Array | None


def _head(p: fe.Predictions, weight: Any, bias: Any, prefix: str, vocab: int | None) -> Head:
    """Validate one head; ``vocab`` None for the first (it sets the vocabulary)."""
    be = p.backend
    if len(p.shape) == 0:
        raise ValueError(f"{p.name} must be [..., H], at least 1-D; received {p.name}.shape={p.shape}")
    h_dim = p.shape[-1]
    W = operand(p, weight, f"{prefix}weight", (vocab, h_dim), same_dtype=True)
    v = be.shape(W)[0]
    if not v:
        raise ValueError(f"{prefix}weight has no classes: {prefix}weight.shape={be.shape(W)}")
    b = None if bias is None else be.cast(operand(p, bias, f"{prefix}bias", (v,), False), p.compute_dtype)
    return Head(be.reshape(p.value, (-1, h_dim)), W, b)


def _tokens(p: fe.Predictions) -> tuple[tuple[int | None, ...], int | None, tuple[int, ...]]:
    """``(token shape, number of tokens or None, shape to reshape [N] into)``."""
    token_shape = p.shape[:-1]
    if sum(d is None for d in token_shape) > 1:
        raise ValueError(f"{p.name} may have at most one dimension of unknown size; received {p.name}.shape={p.shape}")
    num = None if None in token_shape else math.prod(token_shape)  # type: ignore[arg-type]
    return token_shape, num, tuple(-1 if d is None else d for d in token_shape)


def _run(p: fe.Predictions, heads: list[Head], rows: tuple[Array, ...], objective: Any, chunk_size: Any,
         num: int | None) -> tuple[Array, ...]:
    """The objective's per-token outputs ``[N]`` (compute dtype)."""
    be = p.backend
    vocab = be.shape(heads[0].weight)[0]
    chunk = chunk_rows(chunk_size, num, vocab)
    if num == 0:
        # No tokens: empty outputs that still depend on the student's head.
        first = heads[0]
        zero = be.sum(be.cast(first.weight, p.compute_dtype)) * 0.0
        if first.bias is not None:
            zero = zero + be.sum(first.bias) * 0.0
        empty = be.sum(be.cast(first.hidden, p.compute_dtype), 1) * 0.0 + zero
        return tuple(empty for _ in range(objective.outputs))
    flat = tuple((h.hidden, h.weight, h.bias) for h in heads)
    return be.linear_heads(flat, rows, objective, chunk, p.compute_dtype)


def _divergence(hidden: Any, weight: Any, teacher_hidden: Any, teacher_weight: Any, bias: Any, teacher_bias: Any,
                objective: Divergence, weights: Any, reduction: Any, chunk_size: Any, normalizer: Any) -> Array:
    p = fe.predictions(hidden, "hidden", cast=False)
    fe.check_reduction(reduction)
    student = _head(p, weight, bias, "", None)
    be = p.backend
    vocab = be.shape(student.weight)[0]
    t = fe.predictions(fe._same_framework(p, teacher_hidden, "teacher_hidden"), "teacher_hidden", cast=False)
    token_shape, num, out_shape = _tokens(p)
    fe._check_shapes_match(
        t.shape[:-1], token_shape,
        f"teacher_hidden must have hidden's token shape {token_shape}: [..., H_teacher]; "
        f"received hidden.shape={p.shape}, teacher_hidden.shape={t.shape}",
    )
    teacher = _head(t, teacher_weight, teacher_bias, "teacher_", vocab)
    w = None if weights is None else fe.broadcast_operand(p, weights, "weights", token_shape, "hidden.shape[:-1]")
    with be.errstate():
        (loss,) = _run(p, [student, teacher], (), objective, chunk_size, num)
        return fe.reduce(p, be.reshape(loss, out_shape), reduction, weights=w, normalizer=normalizer)





@fe.plain_python
def linear_kl_divergence(
    hidden: Array,
    weight: Array,
    teacher_hidden: Array,
    teacher_weight: Array,
    *,
    bias: Array | None = None,
    teacher_bias: Array | None = None,
    temperature: float = 1.0,
    reverse: bool = False,
    weights: Array | None = None,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    normalizer: float | Array | None = None,
) -> Array:
    r""":func:`xent.kl_divergence` between two LM heads, without their logits.

    Per token, with the student's logits ``z = hidden @ weight.T + bias`` and
    the teacher's ``t = teacher_hidden @ teacher_weight.T + teacher_bias``,
    ``KL(softmax(t/T) ‖ softmax(z/T))`` (``reverse``: ``KL(softmax(z/T) ‖
    softmax(t/T))``), then ``weights`` and the reduction as every loss. Tokens
    are taken ``chunk_size`` at a time, so neither ``[tokens, V]`` logits is
    held (:func:`xent.linear_cross_entropy`'s chunks). No ``T²`` factor.

    Only the student's head is differentiated: gradients flow into ``hidden``,
    ``weight``, ``bias`` (and ``weights``); the teacher's head is a constant,
    as in distillation (the logits functions differentiate both).

    Args:
      hidden: ``[..., H]`` floating point, the student's final hidden states.
      weight: ``[V, H]``, the dtype of ``hidden``: the student's LM head.
      teacher_hidden: ``[..., H_t]``, the teacher's hidden states for the same
        tokens (``hidden``'s token shape), from the same framework.
      teacher_weight: ``[V, H_t]``, the dtype of ``teacher_hidden``.
      bias, teacher_bias: optional ``[V]`` biases.
      temperature: ``T``, a finite number ``> 0``: both heads' logits are divided by it.
      reverse: ``KL(student ‖ teacher)`` instead of ``KL(teacher ‖ student)``.
      weights: sample weights broadcastable to ``hidden.shape[:-1]`` (0 for
        padding tokens).
      reduction: ``"mean"`` (default, as :func:`xent.linear_cross_entropy`),
        ``"sum"`` or ``"none"``.
      chunk_size: tokens per chunk; default ``rows·V <= 2**27``, a power of two.
      normalizer: with ``reduction="mean"`` only: divide the sum by it instead.

    Returns:
      The divergence in the dtype of ``hidden``: ``hidden.shape[:-1]`` for
      ``"none"``, a scalar otherwise.

    Raises:
      ValueError: bad shapes, options or ``chunk_size``.
      TypeError: non-floating inputs, a weight of another dtype than its
        hidden states, mixed frameworks.

    >>> import numpy as np, xent
    >>> h, W = np.array([[1.0, 0.0], [0.5, -1.0]]), np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    >>> ht, Wt = np.array([[0.5], [2.0]]), np.array([[1.0], [-1.0], [0.5]])
    >>> xent.linear_kl_divergence(h, W, ht, Wt, reduction="none", chunk_size=1).round(6)
    array([0.589639, 1.892066])
    >>> xent.kl_divergence(h @ W.T, ht @ Wt.T).round(6)
    array([0.589639, 1.892066])
    """
    objective = Divergence(_check_temperature(temperature), _check_flag("reverse", reverse))
    return _divergence(hidden, weight, teacher_hidden, teacher_weight, bias, teacher_bias, objective, weights,
                       reduction, chunk_size, normalizer)


@fe.plain_python
def linear_js_divergence(
    hidden: Array,
    weight: Array,
    teacher_hidden: Array,
    teacher_weight: Array,
    *,
    bias: Array | None = None,
    teacher_bias: Array | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    weights: Array | None = None,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    normalizer: float | Array | None = None,
) -> Array:
    r""":func:`xent.js_divergence` (Liger's generalised JSD) between two LM heads,
    without their logits: per token ``β·KL(q ‖ m) + (1-β)·KL(p ‖ m)`` with
    ``p`` the student's and ``q`` the teacher's softmax, ``m = β·q + (1-β)·p``
    (``β = 0``: ``KL(q ‖ p)``, ``β = 1``: ``KL(p ‖ q)``).

    Only the student's head is differentiated, as :func:`linear_kl_divergence`.

    Args:
      hidden, weight, teacher_hidden, teacher_weight, bias, teacher_bias,
        temperature: as :func:`linear_kl_divergence`.
      beta: ``β`` in ``[0, 1]``, the weight of the teacher.
      weights, reduction, chunk_size, normalizer: as :func:`linear_kl_divergence`.

    Returns:
      The divergence in the dtype of ``hidden``: ``hidden.shape[:-1]`` for
      ``"none"``, a scalar otherwise.

    >>> import numpy as np, xent
    >>> h, W = np.array([[1.0, 0.0], [0.5, -1.0]]), np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    >>> ht, Wt = np.array([[0.5], [2.0]]), np.array([[1.0], [-1.0], [0.5]])
    >>> xent.linear_js_divergence(h, W, ht, Wt, reduction="none").round(6)
    array([0.127488, 0.342445])
    """
    objective = Divergence(_check_temperature(temperature), beta=_check_beta(beta))
    return _divergence(hidden, weight, teacher_hidden, teacher_weight, bias, teacher_bias, objective, weights,
                       reduction, chunk_size, normalizer)


@fe.plain_python
def linear_token_stats(
    hidden: Array,
    weight: Array,
    labels: Array | None = None,
    *,
    bias: Array | None = None,
    temperature: float = 1.0,
    ignore_index: int | None = None,
    logit_softcap: float | None = None,
    chunk_size: int | None = None,
) -> TokenStats:
    r""":func:`xent.token_stats` of an LM head's logits, without the logits.

    Per token, of ``z = hidden @ weight.T + bias`` (soft-capped, then divided
    by the temperature, as :func:`xent.token_stats`): the label's
    log-probability, the entropy and the logsumexp, ``chunk_size`` tokens at a
    time. Each is differentiable with respect to ``hidden``, ``weight`` and
    ``bias`` (torch, JAX, TensorFlow), chunk by chunk.

    Args:
      hidden: ``[..., H]`` floating point.
      weight: ``[V, H]``, the dtype of ``hidden``.
      labels: None, or integer class ids in ``[0, V)``, shape ``hidden.shape[:-1]``.
      bias: optional ``[V]``.
      temperature: ``T``, a finite number ``> 0``.
      ignore_index: with labels only: a label whose ``logprob`` is 0.
      logit_softcap: None or ``c > 0``.
      chunk_size: tokens per chunk; default ``rows·V <= 2**27``.

    Returns:
      A :class:`xent.TokenStats` ``(logprob, entropy, logsumexp)``, each
      ``hidden.shape[:-1]`` in the dtype of ``hidden`` (``logprob`` None without labels).

    Raises:
      ValueError, TypeError: as :func:`xent.token_stats` and
        :func:`xent.linear_cross_entropy`.

    >>> import numpy as np, xent
    >>> h, W = np.array([[1.0, 0.0], [0.5, -1.0]]), np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    >>> xent.linear_token_stats(h, W, [2, 1]).entropy.round(6)
    array([0.524267, 0.831931])
    >>> xent.token_stats(h @ W.T, [2, 1]).entropy.round(6)
    array([0.524267, 0.831931])
    """
    p = fe.predictions(hidden, "hidden", cast=False)
    temp = check_temperature(temperature)
    cap = fe.check_softcap(logit_softcap)
    if labels is None and ignore_index is not None:
        raise ValueError(
            f"ignore_index applies to labels, and labels is None; received ignore_index={ignore_index!r}"
        )
    head = _head(p, weight, bias, "", None)
    be = p.backend
    vocab = be.shape(head.weight)[0]
    token_shape, num, out_shape = _tokens(p)
    y = None if labels is None else fe.sparse_labels(p, labels, len(p.shape) - 1, vocab, ignore_index,
                                                     axis_name="hidden")
    rows = () if y is None else (be.reshape(y.safe, (-1,)),)
    with be.errstate():
        outs = _run(p, [head], rows, Stats(temp, cap, y is not None), chunk_size, num)
        outs = tuple(be.reshape(o, out_shape) for o in outs)
        if y is None:
            return TokenStats(None, p.finish(outs[0]), p.finish(outs[1]))
        logprob, entropy, lse = outs
        return TokenStats(fe.mask_rows(p, logprob, y), p.finish(entropy), p.finish(lse))
