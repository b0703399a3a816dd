"""Row statistics: the softmax cross-entropy family from a few sums per row.

For logits ``s`` along the class axis, with ``m = max_c s_c`` (no gradient) and
``d = s - m``, every softmax loss of xent is a function of these sums per row:

* ``sumexp = Σ_c exp(d_c)``: ``logsumexp(s) = m + log(sumexp)``;
* ``picked = Σ_c y_c·d_c`` for label weights ``y`` (``d_y`` for a class id);
* ``count = Σ_c y_c`` (1 for a class id);
* ``spread = Σ_c w_c·d_c``, for label smoothing (``w``: the class weights, or 1).

:func:`combine` turns them into the loss::

    loss = (1-α)·w_y·(log(sumexp)·count - picked) + (α/V)·(wsum·log(sumexp) - spread)
           + z_loss·(m + log(sumexp))²

``log(sumexp) - d_y`` is ``lse - s_y`` without rounding the large ``lse`` first,
and both smoothing terms are non-negative: no cancellation.

Each statistic but ``m`` is a sum over classes, so for a vocabulary split
across devices the statistics of the whole row are the sums of the shards'
statistics once every shard shifts by the same ``m``, the maximum of the
shards' maxima: :func:`row_stats` takes that ``m`` as an argument, between
the two all-reduces a distributed loss needs (:meth:`Backend.collectives`,
:mod:`xent.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Backend

Array = Any


@dataclass(frozen=True)
class RowStats:
    """The statistics of one set of rows, each with the class axis removed
    (``count`` and ``spread`` None where not asked for)."""

    m: Array
    sumexp: Array
    picked: Array
    count: Array | None = None
    spread: Array | None = None


def row_stats(
    be: Backend,
    z: Array,
    axis: int,
    *,
    labels: Array | None = None,
    soft: Array | None = None,
    spread: Array | bool | None = None,
    m: Array | None = None,
    narrow: str | None = None,
) -> RowStats:
    """The row statistics of logits ``z`` along ``axis``.

    Args:
      labels: in-range class ids (``z``'s shape without ``axis``): ``picked = d_y``.
      soft: label weights of ``z``'s shape instead: ``picked = Σ y·d`` (a term
        with ``y_c = 0`` is 0 even where ``d_c = -inf``) and ``count = Σ y``.
      spread: None, True for ``Σ_c d_c``, or class weights shaped to broadcast
        along ``axis`` for ``Σ_c w_c·d_c`` (0 where ``w_c`` is 0, even at
        ``d_c = -inf``: ``Backend.weigh``).
      m: the row max to shift by, kept along ``axis`` (the global one, for a
        shard of the vocabulary); by default ``Backend.row_max`` of ``z``.
      narrow: the half dtype ``z`` was upcast from, or None (``Backend.row_max``).

    ``picked`` is gathered from ``z``, not from ``d``: ``d`` then feeds only
    reductions, which a compiler (XLA) fuses into one pass without a
    logits-sized temporary; ``z_y - m`` is the same subtraction either way.
    """
    if m is None:
        m = be.row_max(z, axis, narrow)
    d = z - m
    sumexp = be.sum(be.exp(d), axis)
    count = None
    if labels is not None:
        picked = be.sum(be.take_along_axis(z, be.expand_dims(labels, axis), axis) - m, axis)
    else:
        assert soft is not None  # (one of labels and soft)
        picked = be.sum(soft * be.unweighted_inf_as_zero(soft, d), axis)
        count = be.sum(soft, axis)
    total = None
    if spread is True:
        total = be.sum(d, axis)
    elif spread is not None:
        total = be.sum(be.weigh(spread, d), axis)
    return RowStats(be.sum(m, axis), sumexp, picked, count, total)


def combine(
    be: Backend,
    stats: RowStats,
    *,
    w_y: Array | None = None,
    wsum: Any = None,
    alpha: float = 0.0,
    vocab: int | None = None,
    z_loss: float = 0.0,
) -> Array:
    """The loss of each row from its statistics (the module's formula).

    ``w_y``: the label's class weight (None: 1; a zero weight gives 0 even
    where the row's loss is infinite: ``Backend.weigh``); ``wsum = Σ_c w_c`` (``V``
    without class weights); ``alpha`` the smoothing, over ``vocab`` classes;
    ``z_loss`` the scale of the ``logsumexp²`` term.
    """
    log_s = be.log(stats.sumexp)
    nll = log_s - stats.picked if stats.count is None else log_s * stats.count - stats.picked
    if w_y is not None:
        nll = be.weigh(w_y, nll)
    loss = nll
    if alpha:
        assert vocab is not None and stats.spread is not None  # (smoothing needs both)
        smooth = log_s * (vocab if wsum is None else wsum) - stats.spread
        loss = nll * (1.0 - alpha) + smooth * (alpha / vocab)
    if z_loss:
        loss = loss + z_term(be, stats, z_loss, log_s)
    return loss


def z_term(be: Backend, stats: RowStats, z_loss: float, log_s: Array | None = None) -> Array:
    """PaLM's ``z_loss·logsumexp²`` of each row, ``logsumexp = m + log(sumexp)``
    (``log_s``: ``log(sumexp)`` where the caller has it)."""
    lse = stats.m + (be.log(stats.sumexp) if log_s is None else log_s)
    return (lse * lse) * z_loss


def grad_coefficients(
    lse: Array | None, w_y: Array | None, go: Array, *, alpha: float, vocab: int, z_loss: float, wsum: Any
) -> tuple[Array, Array]:
    """``(weight, target)``, both ``[rows]``, of the logit gradient of
    :func:`combine` for class ids, times the upstream gradient ``go``::

        go · d loss / d s = weight·softmax(s) - target·onehot(y) - go·(α/V)·w

    with ``weight = go·(Σ_c a_c + 2·z_loss·lse)`` and ``target = go·(1-α)·w_y``,
    where ``a = (1-α)·w_y·onehot(y) + (α/V)·w`` are the label weights and
    ``Σ_c a_c = (1-α)·w_y + (α/V)·wsum``. ``lse`` is needed only with z-loss.
    """
    target = go if w_y is None else go * w_y
    if alpha:
        target = target * (1.0 - alpha)
    total = (1.0 - alpha) * (1.0 if w_y is None else w_y)
    if alpha:
        total = total + wsum * (alpha / vocab)
    if z_loss:
        assert lse is not None  # (every caller passes lse with z-loss)
        total = total + lse * (2.0 * z_loss)
    return go * total, target
