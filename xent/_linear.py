"""Linear + cross-entropy (an LM head and its loss) without the full logits.

The front end (:func:`linear_cross_entropy`) validates once, reusing the sparse
loss's helpers, then hands flat ``[N, H]`` tokens to the backend's
``linear_cross_entropy_chunks`` (torch, JAX, TensorFlow: a custom gradient that
recomputes each chunk's logits in the backward pass) or, for NumPy and the
array-API backend, to the value-only loop here. The per-token formulas are
the row statistics of :mod:`xent.backends._rows` (as for every softmax loss),
bound to a call's options by :func:`token_loss` and :func:`grad_coefficients`
and used by every backend; the ``[rows, V]`` passes around them are :func:`chunk_loss` and
:func:`chunk_dlogits`, over the backend primitives (JAX, TensorFlow, NumPy),
while torch does the same passes in place in ``backends/torch/linear.py``.

The backends return the per-token loss (cross-entropy with class weights, plus
the z-loss term); masks, sample weights and the reduction are applied by
:func:`xent._frontend.reduce` under the framework's own autodiff, which hands
the chunked backward pass one upstream gradient per token.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable


from xent import _frontend as fe
from xent._frontend import Reduction
from xent.backends import Backend, _rows
from xent.backends._base import FLOAT_DTYPES
from xent.backends._rows import RowStats, combine, row_stats

Array = Any

#: elements of one chunk's logits: 2**27 float32 values = 512 MiB. The chunk's
#: probabilities / logit gradient take as much again in the backward pass.
LOGITS_BUDGET = 2**27


def default_chunk_size(num_tokens: int | None, vocab: int) -> int:
    """Rows per chunk: the largest power of two with ``rows·vocab <= 2**27``
    (512 MiB of float32 logits), at least 1 and at most ``num_tokens``.

    For a 128256-token vocabulary that is 1024 rows (8 chunks for 8192 tokens);
    for 32000, 4096 rows. Fewer, larger chunks mean fewer passes over the ``[V, H]``
    float32 weight-gradient accumulator; smaller ones less memory.

    >>> default_chunk_size(8192, 128256), default_chunk_size(8192, 32000), default_chunk_size(10, 50)
    (1024, 4096, 10)
    """
    rows = max(1, LOGITS_BUDGET // max(int(vocab), 1))
    rows = 1 << (rows.bit_length() - 1)
    if num_tokens is not None:
        rows = min(rows, max(int(num_tokens), 1))
    return rows


@dataclass(frozen=True)
class Plan:
    """What every chunk needs to know: sizes and the loss options."""

    vocab: int
    chunk: int
    alpha: float
    z_loss: float
    cap: float | None
    compute_dtype: str


def token_loss(be: Backend, stats: RowStats, w_y: Array | None, plan: Plan, wsum: Any) -> Array:
    """Per-token loss from the row statistics of one chunk (all ``[rows]``):
    :func:`xent.backends._rows.combine` with the plan's options."""
    return combine(be, stats, w_y=w_y, wsum=wsum, alpha=plan.alpha, vocab=plan.vocab, z_loss=plan.z_loss)


def grad_coefficients(lse: Array | None, w_y: Array | None, go: Array, plan: Plan, wsum: Any) -> tuple[Array, Array]:
    """``(weight, target)`` of one chunk's logit gradient:
    :func:`xent.backends._rows.grad_coefficients` with the plan's options."""
    return _rows.grad_coefficients(lse, w_y, go, alpha=plan.alpha, vocab=plan.vocab, z_loss=plan.z_loss, wsum=wsum)


def class_weight_terms(be: Backend, y: Array, cw: Array | None, plan: Plan) -> tuple[Array | None, Any]:
    """``(w_y, wsum)``: the labels' class weights (None without) and ``Σ_c w_c``."""
    if cw is None:
        return None, float(plan.vocab)
    return be.take(cw, y), be.sum(cw)


def chunk_loss(be: Backend, z: Array, y: Array, cw: Array | None, plan: Plan) -> tuple[Array, Array, Array]:
    """Per-token loss of one chunk of raw logits, and the row statistics the
    backward pass needs: ``(loss, m, sumexp)``, each ``[rows]``.

    ``z`` is ``[rows, V]`` in the compute dtype, ``y`` ``[rows]`` in-range labels,
    ``cw`` the ``[V]`` class weights or None. With ``s = softcap(z)``,
    ``m = max_c s_c`` and ``sumexp = Σ_c exp(s_c - m)``, the loss is
    :func:`token_loss`.
    """
    s = fe.softcap(be, z, plan.cap)
    w_y, wsum = class_weight_terms(be, y, cw, plan)
    spread = (True if cw is None else be.expand_dims(cw, 0)) if plan.alpha else None
    stats = row_stats(be, s, 1, labels=y, spread=spread)
    return token_loss(be, stats, w_y, plan, wsum), stats.m, stats.sumexp


def chunk_dlogits(
    be: Backend, z: Array, y: Array, cw: Array | None, m: Array, sumexp: Array, go: Array, classes: Array | None,
    plan: Plan, sub_at_labels: Callable[[Array, Array, Array], Array] | None = None,
) -> Array:
    """``go · d loss / d z`` for one chunk (``[rows, V]``, compute dtype), from the
    ``m`` and ``sumexp`` that :func:`chunk_loss` returned for the same logits.

    ``d loss / d s`` is :func:`grad_coefficients`' formula, and soft-capping adds
    ``d s / d z = 1 - (s / cap)²``. The one-hot term is ``where(classes == y, g -
    target, g)`` with ``classes = arange(V)`` in the labels' dtype, which a
    compiler fuses into the elementwise pass; a backend that runs op by op may
    pass ``sub_at_labels(g, y, target)`` instead (a scatter), and no ``classes``.
    """
    s = fe.softcap(be, z, plan.cap)
    w_y, wsum = class_weight_terms(be, y, cw, plan)
    log_s = be.log(sumexp)
    weight, target = grad_coefficients(m + log_s, w_y, go, plan, wsum)
    # softmax(s) = exp((s - m) - log_s): s - m is exact where s is near m, and
    # log_s is small, unlike exp(s - lse) with a large rounded lse.
    prob = be.exp((s - be.expand_dims(m, 1)) - be.expand_dims(log_s, 1))
    g = prob * be.expand_dims(weight, 1)
    if sub_at_labels is not None:
        g = sub_at_labels(g, y, target)
    else:
        onehot = be.expand_dims(classes, 0) == be.expand_dims(y, 1)
        g = be.where(onehot, g - be.expand_dims(target, 1), g)
    if plan.alpha:
        smooth = be.expand_dims(go * (plan.alpha / plan.vocab), 1)
        g = g - (smooth if cw is None else smooth * be.expand_dims(cw, 0))
    if plan.cap is not None:
        # (clipped: a -inf logit keeps s = -inf, where the derivative is 0)
        t = be.clip(s * (1.0 / plan.cap), -1.0, 1.0)
        g = g * (1.0 - t * t)
    return g


def _value_only(be: Backend, h2: Array, W: Array, b: Array | None, y: Array, cw: Array | None, plan: Plan) -> Array:
    """The chunked forward pass over an array-API namespace (NumPy, array_api_strict):
    value only, no autodiff."""
    xp = be.namespace(h2)
    n = be.shape(h2)[0]
    wt = xp.permute_dims(be.cast(W, plan.compute_dtype), (1, 0))  # a view, or one copy for half W
    parts = []
    for start in range(0, n, plan.chunk):
        stop = min(start + plan.chunk, n)
        z = xp.matmul(be.cast(h2[start:stop, ...], plan.compute_dtype), wt)
        if b is not None:
            z = z + b
        parts.append(chunk_loss(be, z, y[start:stop], cw, plan)[0])
    return xp.concat(parts) if len(parts) != 1 else parts[0]


def chunk_rows(chunk_size: Any, num_tokens: int | None, vocab: int) -> int:
    """Tokens per chunk: ``chunk_size`` checked, or :func:`default_chunk_size`."""
    if chunk_size is None:
        return default_chunk_size(num_tokens, vocab)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None; received chunk_size={chunk_size!r}")
    return int(chunk_size)


def operand(p: fe.Predictions, x: Any, name: str, shape: tuple[int | None, ...], same_dtype: bool) -> Array:
    """``weight`` or ``bias``: the predictions' framework, floating, of ``shape``."""
    be = p.backend
    arr = fe._same_framework(p, x, name)
    dtype = be.dtype_name(arr)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be floating point; received {name}.dtype={dtype}")
    if same_dtype and dtype != p.dtype:
        raise TypeError(
            f"{name} must have the dtype of hidden; received hidden.dtype={p.dtype}, "
            f"{name}.dtype={dtype}. Cast one of them."
        )
    got = be.shape(arr)
    fe._check_shapes_match(
        got, shape,
        f"{name} must have shape {shape} (weight is [vocab, hidden], as an LM head stores it). "
        f"Received: hidden.shape={p.shape}, {name}.shape={got}",
    )
    return arr


@fe.plain_python
def linear_cross_entropy(
    hidden: Array,
    weight: Array,
    labels: Array,
    *,
    bias: Array | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_softcap: float | None = None,
    class_weights: Array | None = None,
    weights: Array | None = None,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    normalizer: float | Array | None = None,
) -> Array:
    r"""Cross-entropy of a linear layer's logits, computed chunk by chunk.

    The value of ``sparse_softmax_cross_entropy(hidden @ weight.T + bias, labels,
    ...)``, without ever holding the ``[tokens, vocab]`` logits: tokens are taken
    ``chunk_size`` at a time, so memory beyond the inputs and the gradients is
    ``O(chunk_size × vocab)``. On torch, JAX and TensorFlow the gradients with
    respect to ``hidden``, ``weight`` and ``bias`` are computed chunk by chunk too
    (each chunk's logits are recomputed in the backward pass), with the weight
    and bias gradients accumulated in float32 for float16/bfloat16 inputs. NumPy
    and array-API arrays get the value.

    Per token ``i``, with ``z = hidden_i @ weight.T + bias``, ``s = c·tanh(z/c)``
    for ``logit_softcap = c`` (``s = z`` without) and ``lse = logsumexp(s)``::

        loss_i = (1-α)·w[y_i]·(lse - s_{y_i}) + (α/V)·Σ_c w_c·(lse - s_c) + z_loss·lse²

    then sample weights, ``ignore_index`` and the reduction exactly as
    :func:`xent.sparse_softmax_cross_entropy`.

    Args:
      hidden: ``[..., H]`` floating point: the final hidden states.
      weight: ``[V, H]``, the dtype of ``hidden``: the output projection
        (``torch.nn.Linear(H, V).weight``, a tied embedding matrix).
      labels: integer class ids in ``[0, V)``, shape ``hidden.shape[:-1]``.
      bias: optional ``[V]`` floating point.
      ignore_index: a label value whose tokens get loss 0 and weight 0.
      label_smoothing: ``α`` in ``[0, 1)``.
      z_loss: ``>= 0``: scale of PaLM's ``logsumexp²`` term (not class-weighted).
      logit_softcap: None or ``c > 0``: Gemma 2's soft-capping of the logits.
      class_weights: ``[V]`` weights, one per class (constants: no gradient
        flows into them here).
      weights: sample weights broadcastable to ``hidden.shape[:-1]``.
      reduction: ``"mean"`` (default, as torch and Liger), ``"sum"`` or ``"none"``.
      chunk_size: tokens per chunk; default :func:`default_chunk_size`
        (``rows·V <= 2**27``, a power of two).
      normalizer: with ``reduction="mean"`` only: the sum is divided by this
        number or 0-d array instead of the mean's own denominator (0 gives 0),
        e.g. a global count across micro-batches and ranks
        (:func:`xent.loss_denominator`); a constant for autodiff.

    Returns:
      The loss in the dtype of ``hidden``: ``hidden.shape[:-1]`` for ``"none"``,
      a scalar otherwise.

    Raises:
      ValueError: bad shapes, options or ``chunk_size``; labels outside ``[0, V)``
        eagerly on the CPU (NaN under tracing or on accelerators, as the sparse loss).
      TypeError: non-floating inputs, ``weight`` of another dtype, mixed frameworks.

    >>> import numpy as np, xent
    >>> h = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> W = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    >>> float(xent.linear_cross_entropy(h, W, [2, 1, 0], chunk_size=2).round(6))
    0.318054
    >>> float(xent.sparse_softmax_cross_entropy(h @ W.T, [2, 1, 0], reduction="mean").round(6))
    0.318054
    """
    p = fe.predictions(hidden, "hidden", cast=False)
    be = p.backend
    if len(p.shape) == 0:
        raise ValueError(f"hidden must be [..., H], at least 1-D; received hidden.shape={p.shape}")
    h_dim = p.shape[-1]
    fe.check_reduction(reduction)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    zl = fe.check_z_loss(z_loss)
    cap = fe.check_softcap(logit_softcap)
    W = operand(p, weight, "weight", (None, h_dim), same_dtype=True)
    vocab = be.shape(W)[0]
    if not vocab:
        raise ValueError(f"weight has no classes: weight.shape={be.shape(W)}")
    b = None if bias is None else be.cast(operand(p, bias, "bias", (vocab,), False), p.compute_dtype)
    token_shape = p.shape[:-1]
    y = fe.sparse_labels(p, labels, len(p.shape) - 1, vocab, ignore_index, axis_name="hidden")
    w = None if weights is None else fe.broadcast_operand(p, weights, "weights", token_shape, "hidden.shape[:-1]")
    cw = None if class_weights is None else be.stop_gradient(fe.class_weight_vector(p, class_weights, vocab))
    num_tokens = None if None in token_shape else math.prod(token_shape)  # type: ignore[arg-type]
    chunk = chunk_rows(chunk_size, num_tokens, vocab)
    plan = Plan(vocab, chunk, alpha, zl, cap, p.compute_dtype)
    unknown = sum(d is None for d in token_shape)
    if unknown > 1:
        raise ValueError(f"hidden may have at most one dimension of unknown size; received hidden.shape={p.shape}")
    out_shape = tuple(-1 if d is None else d for d in token_shape)
    with be.errstate():
        h2 = be.reshape(p.value, (-1, h_dim))
        y2 = be.reshape(y.safe, (-1,))
        if num_tokens == 0:
            # No tokens: an empty loss that still depends on every input.
            zero = be.sum(be.cast(W, p.compute_dtype)) * 0.0
            if b is not None:
                zero = zero + be.sum(b) * 0.0
            loss = be.sum(be.cast(h2, p.compute_dtype), 1) * 0.0 + zero
        else:
            loss = be.linear_cross_entropy_chunks(h2, W, b, y2, cw, plan)
            if loss is None:
                loss = _value_only(be, h2, W, b, y2, cw, plan)
        loss = be.reshape(loss, out_shape)
        class_w = None if cw is None else be.take(cw, y.safe)
        return fe.reduce(
            p, loss, reduction, weights=w, class_weight=class_w, keep=y.keep, bad=y.bad, normalizer=normalizer
        )
