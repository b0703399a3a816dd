"""Vocab-parallel cross-entropy: logits sharded over the class axis across a
tensor-parallel group, on each framework's own collectives.

Each process holds a contiguous slice of the class axis (its *shard*). Per row
the loss needs the global max ``m`` and three sums over classes, which are
sums of the shards' sums once every shard shifts by the same ``m``
(:mod:`xent.backends._rows`): so a call makes an all-reduce MAX of the shards'
row maxima, then **one** all-reduce SUM of the packed statistics ``[Σ exp(z−m),
z_y − m, Σ_c w_c·(z_c − m)]``, whatever options are on, and combines them with
exactly the single-device formula. Label smoothing is over the real global
vocabulary; class weights are the full ``[V]`` vector; padded lanes past
``vocab_size`` never count. The backward pass communicates nothing: each
process's logit gradient is ``softmax_local·a − onehot_local·b`` from the
all-reduced statistics.

Collectives, by framework (``group=``):

* **torch**: a ``torch.distributed`` process group (None: the default group,
  or a ``DTensor``'s 1-D mesh's), eagerly; ``vocab_start`` defaults to the
  lower ranks' widths summed (one all-gather of the widths: shards may be
  uneven). ``DTensor`` arguments (logits ``Shard`` on the class axis, the
  rest replicated) are taken as their local tensors; the loss is a plain
  tensor, and gradients flow back into the ``DTensor``.
* **JAX**: the mesh axis name(s) of the class axis, inside ``shard_map``;
  shards are even (shard ``i`` starts at ``i·width``).
* **TensorFlow**: the ``tf.distribute`` replica context (None: the current
  one, inside ``strategy.run``); TF all-reduces only SUM and MEAN, so the max
  is an all-gather of the replicas' maxima. Shards are even.

Every process gets the same loss. Out-of-range labels raise ``ValueError``
where they can be read eagerly on the host, and give NaN elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xent import _frontend as fe
from xent._frontend import Reduction
from xent._linear import Plan, chunk_rows, operand
from xent._losses import modulated_nll
from xent.backends._rows import RowStats, combine, z_term

Array = Any

__all__ = ["linear_cross_entropy", "sparse_softmax_cross_entropy"]


@fe.plain_python
def sparse_softmax_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    group: Any = None,
    vocab_start: int | Array | None = None,
    vocab_size: int | None = None,
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
    r""":func:`xent.sparse_softmax_cross_entropy` of logits sharded over the class axis.

    Args:
      logits: this process's shard ``[..., V_local, ...]`` of the class axis
        (contiguous classes ``vocab_start .. vocab_start + V_local``).
      labels: global class ids in ``[0, vocab_size)``, the same on every
        process (a label may live on any shard), shape = ``logits`` without
        ``axis``.
      group: the collectives' group (torch process group, JAX mesh axis
        name(s), TF replica context; see the module's docstring).
      vocab_start: the global id of this shard's first class; default: the
        lower processes' shard widths summed.
      vocab_size: the real vocabulary when the shards are padded (lanes at or
        past it never count, not even in smoothing); default: every shard's
        width summed.
      axis, ignore_index, label_smoothing, class_weights, weights, reduction,
      z_loss, logit_softcap, focal_gamma, poly_epsilon, normalizer: as in
        :func:`xent.sparse_softmax_cross_entropy`; ``class_weights`` is the
        full ``[vocab_size]`` vector on every process.

    Returns:
      The loss, identical on every process, in the dtype of ``logits``.

    Raises:
      ValueError: as the single-device loss; a ``vocab_size`` or
        ``vocab_start`` that does not fit the shards.
      RuntimeError: torch without an initialised process group.
      NotImplementedError: ``focal_gamma`` or ``poly_epsilon`` with
        ``label_smoothing`` (the smoothing term then sums a function of every
        class's probability, which needs the global logsumexp first: a third
        all-reduce).
    """
    group, (logits, labels, class_weights, weights) = _local(group, logits, labels, class_weights, weights)
    p, axis, width, w = fe.class_axis_inputs(logits, "logits", axis, reduction, weights)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    zl = fe.check_z_loss(z_loss)
    cap = fe.check_softcap(logit_softcap)
    gamma = fe.check_focal_gamma(focal_gamma)
    eps = fe.check_poly_epsilon(poly_epsilon)
    if (gamma or eps) and alpha:
        raise NotImplementedError(
            "xent.distributed.sparse_softmax_cross_entropy: focal_gamma or poly_epsilon with label_smoothing "
            "needs a third all-reduce (every class's modulated term, after the global logsumexp); "
            "use them without label_smoothing, or gather the logits"
        )
    be = p.backend
    coll = be.collectives(group, p.value)
    start, total = _layout(coll, width, vocab_start)
    vocab = total if vocab_size is None else _vocab_size(vocab_size, total)
    y = fe.sparse_labels(p, labels, axis, vocab, ignore_index)
    cw = None if class_weights is None else fe.class_weight_vector(p, class_weights, vocab)
    with be.errstate():
        z = fe.softcap(be, p.value, cap)
        # (class ids in int32: any real vocabulary fits, and JAX without x64 has no int64)
        lanes = be.asarray(np.arange(width, dtype=np.int32), like=p.value) + start  # global ids
        padded = vocab_size is not None
        if padded:  # lanes past the real vocabulary: -inf, and weight 0 in smoothing
            z = be.where(fe.along_axis(p, lanes < vocab, axis), z, -np.inf)
        m = coll.max(be.row_max(z, axis))
        d = z - m
        sumexp = be.sum(be.exp(d), axis)
        local = be.cast(y.safe, "int32") - start
        mine = (local >= 0) & (local < width)
        at = be.clip(local, 0, width - 1)
        picked = be.where(mine, be.sum(be.take_along_axis(z, be.expand_dims(at, axis), axis), axis), 0.0)
        sums = [sumexp, picked - be.where(mine, be.sum(m, axis), 0.0)]
        if alpha:
            lane_w = None if cw is None else be.take(cw, be.clip(lanes, 0, vocab - 1))
            if padded:
                inside = be.cast(lanes < vocab, p.compute_dtype)
                lane_w = inside if lane_w is None else lane_w * inside
            if lane_w is None:
                sums.append(be.sum(d, axis))
            else:
                sums.append(be.sum(be.weigh(fe.along_axis(p, lane_w, axis), d), axis))
        summed = coll.sum(*sums)
        stats = RowStats(be.sum(m, axis), summed[0], summed[1], None, summed[2] if alpha else None)
        class_w = None if cw is None else be.take(cw, y.safe)
        wsum = None if cw is None else be.sum(cw)
        if gamma or eps:  # the label's -log p, modulated, then weighted (as the single-device loss)
            loss = modulated_nll(be, stats, class_w, gamma, eps)
            if zl:
                loss = loss + z_term(be, stats, zl)
        else:
            loss = combine(be, stats, w_y=class_w, wsum=wsum, alpha=alpha, vocab=vocab, z_loss=zl)
        return fe.reduce(
            p, loss, reduction, weights=w, class_weight=class_w, keep=y.keep, bad=y.bad, normalizer=normalizer
        )



@fe.plain_python
def linear_cross_entropy(
    hidden: Array,
    weight: Array,
    labels: Array,
    *,
    group: Any = None,
    vocab_start: int | Array | None = None,
    vocab_size: int | None = None,
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
    r""":func:`xent.linear_cross_entropy` of an LM head sharded over the vocabulary.

    Each process holds ``weight``'s shard ``[V_local, H]`` (and ``bias``'s
    ``[V_local]``) and the whole ``hidden`` ``[..., H]``, as a column-parallel
    linear layer does; no process ever holds ``[tokens, V]`` logits, nor even
    ``[tokens, V_local]``: this shard's chunked kernel gives its
    ``logsumexp`` per token, and the label's logit (and, for smoothing,
    ``Σ_c w_c·z_c``, a matrix-vector product) come from the weight's rows.
    Then a MAX and one packed SUM across the group, and the single-device
    formula. The gradient each process gets for ``hidden`` is the whole
    loss's (one all-reduce SUM in the backward pass), and each gets its own
    shard's weight (and bias) gradient.

    Args:
      hidden: ``[..., H]``, the same on every process.
      weight: this process's shard ``[V_local, H]`` of the LM head.
      labels: global class ids, ``hidden.shape[:-1]``.
      group, vocab_start, vocab_size: as in :func:`sparse_softmax_cross_entropy`.
      bias: this shard's ``[V_local]`` bias, or None.
      ignore_index, label_smoothing, z_loss, logit_softcap, class_weights,
      weights, reduction, chunk_size, normalizer: as in
        :func:`xent.linear_cross_entropy` (``class_weights``: the full
        ``[vocab_size]`` vector; ``chunk_size``: tokens per chunk of this
        shard's kernel).

    Returns:
      The loss, identical on every process, in the dtype of ``hidden``.

    Raises:
      NotImplementedError: ``label_smoothing`` with ``logit_softcap`` (the
        smoothing sum of soft-capped logits is not linear in the weight).
    """
    group, (hidden, weight, labels, bias, class_weights, weights) = _local(
        group, hidden, weight, labels, bias, class_weights, weights
    )
    p = fe.predictions(hidden, "hidden", cast=False)
    be = p.backend
    if len(p.shape) == 0:
        raise ValueError(f"hidden must be [..., H], at least 1-D; received hidden.shape={p.shape}")
    h_dim = p.shape[-1]
    fe.check_reduction(reduction)
    alpha = fe.check_fraction("label_smoothing", label_smoothing, 1.0)
    zl = fe.check_z_loss(z_loss)
    cap = fe.check_softcap(logit_softcap)
    if alpha and cap is not None:
        raise NotImplementedError(
            "xent.distributed.linear_cross_entropy: label_smoothing with logit_softcap is not supported "
            "(the smoothing sum of soft-capped logits is not linear in the weight)"
        )
    W = operand(p, weight, "weight", (None, h_dim), same_dtype=True)
    width = be.shape(W)[0]
    if not width:
        raise ValueError(f"weight has no classes: weight.shape={be.shape(W)}")
    b = None if bias is None else be.cast(operand(p, bias, "bias", (width,), False), p.compute_dtype)
    coll = be.collectives(group, p.value)
    start, total = _layout(coll, width, vocab_start)
    vocab = total if vocab_size is None else _vocab_size(vocab_size, total)
    token_shape = p.shape[:-1]
    y = fe.sparse_labels(p, labels, len(p.shape) - 1, vocab, ignore_index, axis_name="hidden")
    w = None if weights is None else fe.broadcast_operand(p, weights, "weights", token_shape, "hidden.shape[:-1]")
    cw = None if class_weights is None else be.stop_gradient(fe.class_weight_vector(p, class_weights, vocab))
    num_tokens = None if None in token_shape else int(np.prod([d or 0 for d in token_shape]))
    plan = Plan(width, chunk_rows(chunk_size, num_tokens, width), 0.0, 0.0, cap, p.compute_dtype)
    out_shape = tuple(-1 if d is None else d for d in token_shape)
    with be.errstate():
        h2 = be.reshape(coll.copy(p.value), (-1, h_dim))
        lanes = be.asarray(np.arange(width, dtype=np.int32), like=p.value) + start
        valid = lanes < vocab
        if vocab_size is not None:
            # Padded lanes: a -inf bias, so they never count; but the kernel
            # keeps its first lane finite, so that a shard of padding alone
            # gives finite numbers (its log Σ exp is then set to -inf below).
            b = be.where(valid | (lanes == start), be.cast(lanes, p.compute_dtype) * 0.0 if b is None else b,
                         -np.inf)
        local = be.cast(be.reshape(y.safe, (-1,)), "int32") - start
        mine = (local >= 0) & (local < width)
        at = be.where(mine, local, 0)  # (a real lane of this shard: its logit is finite)
        # this shard's log Σ exp per token: its kernel's loss at lane `at`, plus that lane's logit
        rows = be.linear_cross_entropy_chunks(h2, W, b, at, None, plan)
        z_at = _row_logits(be, h2, W, b, at, cap, p.compute_dtype)
        lse = rows + z_at
        if vocab_size is not None:  # (a shard of padding alone adds nothing)
            lse = be.where(be.sum(be.cast(valid, p.compute_dtype)) > 0, lse, -np.inf)
        m = coll.max(lse)
        sums = [be.exp(lse - m), be.where(mine, z_at, 0.0)]
        if alpha:  # Σ_c w_c·z_c over this shard's real lanes: h·(Σ_c w_c W_c) + Σ_c w_c b_c
            lane_w = be.cast(valid, p.compute_dtype)
            if cw is not None:
                lane_w = lane_w * be.take(cw, be.clip(lanes, 0, vocab - 1))
            head = be.sum(be.expand_dims(lane_w, 1) * be.cast(W, p.compute_dtype), 0)
            spread = be.sum(be.cast(h2, p.compute_dtype) * be.expand_dims(head, 0), 1)
            if b is not None:
                spread = spread + be.sum(be.where(valid, b, 0.0) * lane_w)
            sums.append(spread)
        summed = coll.sum(*sums)
        wsum = float(vocab) if cw is None else be.sum(cw)
        stats = RowStats(m, summed[0], summed[1] - m, None, summed[2] - m * wsum if alpha else None)
        class_w = None if cw is None else be.take(cw, be.reshape(y.safe, (-1,)))
        loss = combine(be, stats, w_y=class_w, wsum=None if cw is None else wsum, alpha=alpha, vocab=vocab,
                       z_loss=zl)
        loss = be.reshape(loss, out_shape)
        class_w = None if class_w is None else be.reshape(class_w, out_shape)
        return fe.reduce(
            p, loss, reduction, weights=w, class_weight=class_w, keep=y.keep, bad=y.bad, normalizer=normalizer
        )


def _row_logits(be: Any, h: Array, W: Array, b: Array | None, at: Array, cap: float | None, dtype: str) -> Array:
    """Each token's logit at lane ``at`` ``[N]``: ``h·W[at] (+ b[at])``,
    soft-capped, in the compute dtype (from the weight's rows: ``[N, H]``).
    The product is rounded to the weight's dtype first, as the kernel's GEMM
    output is, so that this logit is the kernel's own."""
    z = be.sum(be.cast(h, dtype) * be.cast(be.take(W, at), dtype), 1)
    narrow = be.dtype_name(W)
    if narrow != dtype:
        z = be.cast(be.cast(z, narrow), dtype)
    if b is not None:
        z = z + be.take(b, at)
    return fe.softcap(be, z, cap)


def _local(group: Any, *xs: Any) -> tuple[Any, list[Any]]:
    """torch ``DTensor`` arguments as their local tensors (a shard of the
    class axis, or a replicated whole; autograd flows back into the
    DTensor), and ``group`` their mesh's process group where none is given."""
    out = []
    for x in xs:
        mesh = getattr(x, "device_mesh", None)
        if mesh is not None and hasattr(x, "to_local"):
            if group is None:
                if mesh.ndim != 1:
                    raise ValueError(
                        f"a DTensor on a {mesh.ndim}-D device mesh: pass group= the tensor-parallel "
                        f"process group (e.g. mesh.get_group('tp'))"
                    )
                group = mesh.get_group()
            x = x.to_local()
        out.append(x)
    return group, out


def _layout(coll: Any, width: int, vocab_start: Any) -> tuple[Any, int]:
    """``(vocab_start, the shards' total width)``: the given start, or the
    group's default, which the total comes with."""
    default_start, total = coll.layout(width)
    if vocab_start is None:
        return default_start, total
    if isinstance(vocab_start, bool) or (isinstance(vocab_start, (int, np.integer)) and vocab_start < 0):
        raise ValueError(f"vocab_start must be a non-negative integer; received vocab_start={vocab_start!r}")
    return (int(vocab_start) if isinstance(vocab_start, (int, np.integer)) else vocab_start), total


def _vocab_size(vocab_size: Any, total: int) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or not 0 < vocab_size <= total:
        raise ValueError(
            f"vocab_size must be an integer in (0, {total}] (the shards' widths summed); "
            f"received vocab_size={vocab_size!r}"
        )
    return int(vocab_size)
