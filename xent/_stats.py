"""Per-token statistics of a softmax from its logits: what RL trainers need.

Policy-gradient losses (PPO, GRPO) use the log-probability of each sampled
token, the entropy of each token's distribution (an entropy bonus, or a
diagnostic) and sometimes the logsumexp. :func:`token_stats` computes the three
from the logits in log space, with the row statistics of
:mod:`xent.backends._rows`, so none of them goes through the log of an
underflowed softmax, and each is differentiable by the framework's autodiff.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from xent import _frontend as fe
from xent.backends._rows import row_stats

Array = Any


class TokenStats(NamedTuple):
    """The statistics of :func:`token_stats`, each of shape ``logits.shape``
    without the class axis, in the dtype of the logits."""

    #: ``log softmax(z)_y`` of each token's label (None without labels; 0 at
    #: ``ignore_index``)
    logprob: Array | None
    #: ``H = -Σ_c p_c·log p_c``, the entropy of ``softmax(z)``
    entropy: Array
    #: ``logsumexp(z)``
    logsumexp: Array


def check_temperature(value: Any) -> float:
    """The softmax temperature: a finite Python (or NumPy) number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"temperature must be a real number (not an array); received temperature={value!r}"
        )
    number = float(value)
    if not 0.0 < number < math.inf:
        raise ValueError(f"temperature must be a finite number > 0; received temperature={value!r}")
    return number


def stats_rows(be: Any, logits: Array, labels: Array | None, axis: int, temperature: float, cap: float | None,
               narrow: str | None = None) -> tuple[Array | None, Array, Array]:
    """``(logprob, entropy, logsumexp)`` of each row (``axis`` removed) of
    compute-dtype ``logits``, for in-range ``labels`` or None (then ``logprob``
    is None); no masks. Shared by :func:`token_stats` and its LM-head form
    (:mod:`xent._heads`). ``narrow``: the half dtype the logits were upcast from."""
    z = fe.softcap(be, logits, cap)
    if temperature != 1.0:
        z = z / temperature  # (a -inf logit stays -inf)
    # The max of upcast half logits is read in their own dtype where z is
    # still exactly those values (Backend.row_max).
    m = be.row_max(z, axis, narrow if cap is None and temperature == 1.0 else None)
    e = be.exp(z - m)
    # e as the label weights of the row statistics: picked = Σ_c e_c·d_c,
    # each term 0 where e_c = 0, also at d_c = -inf (forward and backward).
    # (row_stats takes the sum of exp itself: a compiler merges the two exps.)
    stats = row_stats(be, z, axis, soft=e, m=m)
    log_s = be.log(stats.sumexp)
    entropy = log_s - stats.picked / stats.sumexp
    lse = stats.m + log_s
    logprob = None
    if labels is not None:
        # z_y - m, not z_y - lse: the large lse is not rounded before the subtraction.
        picked = be.sum(be.take_along_axis(z, be.expand_dims(labels, axis), axis) - m, axis)
        logprob = picked - log_s
    return logprob, entropy, lse


@fe.plain_python
def token_stats(
    logits: Array,
    labels: Array | None = None,
    *,
    axis: int = -1,
    temperature: float = 1.0,
    ignore_index: int | None = None,
    logit_softcap: float | None = None,
) -> TokenStats:
    r"""Log-probability of the label, entropy and logsumexp of each token's softmax.

    With ``z = s / T``, where ``s = c·tanh(logits / c)`` for ``logit_softcap = c``
    (a ``-inf`` logit stays ``-inf``, as in :func:`xent.sparse_softmax_cross_entropy`)
    or ``s = logits``, and ``T = temperature``, along ``axis``::

        logsumexp = lse(z) = log Σ_c exp(z_c)
        logprob   = log softmax(z)_y = z_y - lse(z)
        entropy   = -Σ_c p_c·log p_c = lse(z) - Σ_c p_c·z_c,   p = softmax(z)

    computed from the row max ``m`` and ``d = z - m`` as
    ``log Σ exp(d) - Σ_c exp(d_c)·d_c / Σ_c exp(d_c)`` (two non-negative terms:
    no cancellation, and no log of a probability that underflowed to 0). A
    class with ``p_c = 0`` (a ``-inf`` logit, or one far below the max)
    contributes exactly 0 to the entropy and to every gradient, never NaN.

    ``logprob`` is ``-sparse_softmax_cross_entropy(...)`` at ``reduction="none"``
    (with the same temperature applied to the logits). The entropy and the
    logsumexp do not depend on the labels and are given for every token,
    ignored or not. A row whose logits are all ``-inf`` (or any ``+inf`` or
    NaN) has no softmax: its statistics are NaN.

    Args:
      logits: ``[..., num_classes, ...]`` floating point; float16 and bfloat16
        are computed in float32.
      labels: None, or integer class ids in ``[0, C)`` (any integer dtype) of
        shape ``logits.shape`` without ``axis``, from the logits' framework
        (or NumPy / a Python list).
      axis: the class axis of ``logits``.
      temperature: ``T``, a finite number ``> 0``; the logits are divided by it
        (after soft-capping), as RL samplers do.
      ignore_index: with labels only: a label value whose ``logprob`` is 0
        (with zero gradient).
      logit_softcap: ``None`` or ``c > 0``: soft-cap the logits to ``(-c, c)``.

    Returns:
      A :class:`TokenStats` ``(logprob, entropy, logsumexp)``, each of shape
      ``logits.shape`` without ``axis`` and in the dtype of ``logits``
      (``logprob`` None when ``labels`` is None). Each is differentiable with
      respect to ``logits``.

    Raises:
      ValueError: bad ``axis``, ``temperature`` or ``logit_softcap``; labels of
        the wrong shape; ``ignore_index`` without labels; labels outside
        ``[0, C)`` (not ``ignore_index``) when running eagerly on the CPU.
        Under jax.jit, tf.function, torch.compile or on an accelerator those
        tokens' ``logprob`` is NaN instead.
      TypeError: non-floating logits, non-integer labels, labels from another
        framework, a ``temperature`` that is not a number.

    >>> import numpy as np, xent
    >>> logits = np.array([[2.0, 0.5, 1.0], [0.0, -np.inf, 0.0]])
    >>> stats = xent.token_stats(logits, [0, 2])
    >>> stats.logprob.round(6)
    array([-0.464369, -0.693147])
    >>> stats.entropy.round(6)
    array([0.905959, 0.693147])
    >>> stats.logsumexp.round(6)
    array([2.464369, 0.693147])
    """
    p, axis, num, _ = fe.class_axis_inputs(logits, "logits", axis, "none", None)
    temp = check_temperature(temperature)
    cap = fe.check_softcap(logit_softcap)
    if labels is None and ignore_index is not None:
        raise ValueError(
            f"ignore_index applies to labels, and labels is None; received ignore_index={ignore_index!r}"
        )
    be = p.backend
    y = None if labels is None else fe.sparse_labels(p, labels, axis, num, ignore_index)
    with be.errstate():
        logprob, entropy, lse = stats_rows(be, p.value, None if y is None else y.safe, axis, temp, cap,
                                           fe.narrow_of(p))
        if y is not None:
            logprob = fe.mask_rows(p, logprob, y)
        return TokenStats(logprob, p.finish(entropy), p.finish(lse))
