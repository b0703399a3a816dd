"""TensorFlow: the chunked linear cross-entropy as a ``tf.custom_gradient`` over
``tf.while_loop`` (``parallel_iterations=1``, so a graph never runs two chunks'
logits at once; eagerly the loop simply runs in Python).

Forward keeps the per-token loss and each row's maximum and ``Σ exp(s - max)``;
backward recomputes each chunk's logits, writes ``dh`` chunk by chunk into a
``TensorArray`` and carries the weight and bias gradients in the compute dtype
(float32 for half inputs) through the loop, cast to the inputs' dtypes at the
end. When the token count is known when tracing and fits one chunk, there is
no loop and the backward pass reuses the forward logits (see
:func:`_one_chunk`). Works eagerly and under ``tf.function`` with or without
XLA, with the token count known or not.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from xent._linear import Plan, chunk_dlogits, chunk_loss

from .._base import Array, Backend


def _logits(h: Array, W: Array, b: Array | None, compute: str) -> Array:
    z = tf.cast(tf.matmul(h, W, transpose_b=True), compute)
    return z if b is None else z + b


def _chunked(x: Array, k: int, nc: Array) -> Array:
    n = tf.shape(x)[0]
    pad = [[0, nc * k - n]] + [[0, 0]] * (len(x.shape) - 1)
    x = tf.pad(x, pad)
    return tf.reshape(x, tf.concat([[nc, k], tf.shape(x)[1:]], 0))


def chunk_grads(i: Array, g: Array, hc: Array, W: Array, h_dtype: Any, dh_ta: Any, dW: Array, db: Array | None,
                compute: str) -> tuple[Array, Any, Array, Array | None]:
    """Chunk ``i``'s share of the gradients from its logit gradient ``g``: ``dh_c``
    written into ``dh_ta``, ``dW`` and ``db`` accumulated in the compute dtype;
    the next loop state ``(i + 1, dh_ta, dW, db)``."""
    dh_ta = dh_ta.write(i, tf.cast(tf.matmul(tf.cast(g, W.dtype), W), h_dtype))
    dW = dW + tf.matmul(g, tf.cast(hc, compute), transpose_a=True)  # float32 for half inputs
    if db is not None:
        db = db + tf.reduce_sum(g, 0)
    return i + 1, dh_ta, dW, db


def _sub_at_labels(g: Array, y: Array, target: Array) -> Array:
    """``g[i, y_i] -= target_i``: a scatter, which TensorFlow can do in ``g``'s
    buffer, instead of a ``[rows, V]`` one-hot mask and a ``where``, which
    take more memory and more time."""
    rows = tf.range(tf.shape(y, out_type=y.dtype)[0], dtype=y.dtype)
    return tf.tensor_scatter_nd_sub(g, tf.stack([rows, y], 1), target)


def linear_cross_entropy_chunks(be: Backend, h: Array, W: Array, b: Array | None, y: Array,
                                cw: Array | None, plan: Plan) -> Array:
    """Per-token loss ``[N]`` (compute dtype) of ``h [N, H]`` against ``W [V, H]``."""
    k = plan.chunk
    y = tf.cast(y, tf.int64)
    # Variables are read here, outside the custom gradient, so the tape sees the read.
    h, W = tf.convert_to_tensor(h), tf.convert_to_tensor(W)
    if h.shape[0] is not None and h.shape[0] <= k:
        run = _one_chunk(be, y, cw, plan)
    else:
        run = _chunks(be, y, cw, plan)
    if b is None:
        return tf.custom_gradient(lambda h, W: run(h, W, None))(h, W)
    return tf.custom_gradient(lambda h, W, b: run(h, W, b))(h, W, tf.convert_to_tensor(b))


def _one_chunk(be: Backend, y: Array, cw: Array | None, plan: Plan) -> Any:
    """All tokens in one chunk (their number known when tracing): no loop; the
    backward pass reuses the forward's logits (one chunk's, which it would
    recompute otherwise: 3 GEMMs in all, as the naive product), and
    ``dW = g.T @ h`` is in the input dtype, the matmul's own float32
    accumulation rounded once (what a float32 accumulator cast at the end gives)."""
    compute = plan.compute_dtype

    def run(h: Array, W: Array, b: Array | None) -> Any:
        z = _logits(h, W, b, compute)
        loss, m, sumexp = chunk_loss(be, z, y, cw, plan)

        def grad(go: Array) -> Any:
            g = chunk_dlogits(be, z, y, cw, m, sumexp, tf.cast(go, compute), None, plan, _sub_at_labels)
            gh = tf.cast(g, W.dtype)
            grads = [tf.cast(tf.matmul(gh, W), h.dtype), tf.matmul(gh, h, transpose_a=True)]
            if b is not None:
                grads.append(tf.cast(tf.reduce_sum(g, 0), b.dtype))
            return grads

        return loss, grad

    return run


def _chunks(be: Backend, y: Array, cw: Array | None, plan: Plan) -> Any:
    """``tf.while_loop`` over chunks, ``dW`` and ``db`` carried in the compute dtype."""
    compute = plan.compute_dtype
    k = plan.chunk

    def run(h: Array, W: Array, b: Array | None) -> Any:
        n = tf.shape(h)[0]
        nc = (n + k - 1) // k
        y3 = _chunked(y, k, nc)
        h3 = _chunked(h, k, nc)

        def fbody(i, *tas):  # type: ignore[no-untyped-def]
            stats = chunk_loss(be, _logits(h3[i], W, b, compute), y3[i], cw, plan)
            return (i + 1, *(ta.write(i, x) for ta, x in zip(tas, stats)))

        tas = [tf.TensorArray(compute, size=nc, element_shape=[k]) for _ in range(3)]
        _, loss_ta, m_ta, sumexp_ta = tf.while_loop(lambda i, *_: i < nc, fbody, [0, *tas],
                                                    parallel_iterations=1)
        loss = tf.reshape(loss_ta.stack(), [-1])[:n]
        m3, sumexp3 = m_ta.stack(), sumexp_ta.stack()  # row max, Σ exp(s - max)

        def grad(go: Array) -> Any:
            go3 = _chunked(tf.cast(go, compute), k, nc)
            # Inside the loop the one-hot term is a where, not _sub_at_labels: the
            # scatter gets no buffer to reuse there, so it raises the peak memory
            # and saves no time.
            classes = tf.range(plan.vocab, dtype=tf.int64)

            def bbody(i, dh_ta, dW, db):  # type: ignore[no-untyped-def]
                hc = h3[i]
                g = chunk_dlogits(be, _logits(hc, W, b, compute), y3[i], cw, m3[i], sumexp3[i], go3[i], classes,
                                  plan)
                return chunk_grads(i, g, hc, W, h.dtype, dh_ta, dW, db, compute)

            dh_ta = tf.TensorArray(h.dtype, size=nc, element_shape=[k, h.shape[1]])
            dW0 = tf.zeros(tf.shape(W), compute)
            db0 = None if b is None else tf.zeros(tf.shape(b), compute)
            loop_vars = [0, dh_ta, dW0] + ([] if b is None else [db0])
            if b is None:
                _, dh_ta, dW = tf.while_loop(
                    lambda i, *_: i < nc, lambda i, t, w: bbody(i, t, w, None)[:3], loop_vars,
                    parallel_iterations=1)
            else:
                _, dh_ta, dW, db = tf.while_loop(lambda i, *_: i < nc, bbody, loop_vars, parallel_iterations=1)
            dh = tf.reshape(dh_ta.stack(), [-1, tf.shape(h)[1]])[:n]
            grads = [dh, tf.cast(dW, W.dtype)]
            if b is not None:
                grads.append(tf.cast(db, b.dtype))
            return grads

        return loss, grad

    return run
