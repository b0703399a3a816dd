"""TensorFlow: the chunked linear cross-entropy as a ``tf.custom_gradient`` over
``tf.while_loop`` (``parallel_iterations=1``, so a graph never runs two chunks'
logits at once; eagerly the loop simply runs in Python).

Forward keeps the per-token loss and ``logsumexp``; backward recomputes each
chunk's logits, writes ``dh`` chunk by chunk into a ``TensorArray`` and carries
the weight and bias gradients in the compute dtype (float32 for half inputs)
through the loop, cast to the inputs' dtypes at the end. Works eagerly and
under ``tf.function`` with or without XLA, with the token count known or not.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from xent._linear import Plan, chunk_dlogits, chunk_loss

from ._base import Array, Backend


def _logits(h: Array, W: Array, b: Array | None, compute: str) -> Array:
    z = tf.cast(tf.matmul(h, W, transpose_b=True), compute)
    return z if b is None else z + b


def _chunked(x: Array, k: int, nc: Array) -> Array:
    n = tf.shape(x)[0]
    pad = [[0, nc * k - n]] + [[0, 0]] * (len(x.shape) - 1)
    x = tf.pad(x, pad)
    return tf.reshape(x, tf.concat([[nc, k], tf.shape(x)[1:]], 0))


def linear_cross_entropy_chunks(be: Backend, h: Array, W: Array, b: Array | None, y: Array,
                                cw: Array | None, plan: Plan) -> Array:
    """Per-token loss ``[N]`` (compute dtype) of ``h [N, H]`` against ``W [V, H]``."""
    compute = plan.compute_dtype
    k = plan.chunk
    y = tf.cast(y, tf.int64)
    # Variables are read here, outside the custom gradient, so the tape sees the read.
    h, W = tf.convert_to_tensor(h), tf.convert_to_tensor(W)
    n = tf.shape(h)[0]
    nc = (n + k - 1) // k
    y3 = _chunked(y, k, nc)

    def run(h: Array, W: Array, b: Array | None) -> Any:
        h3 = _chunked(h, k, nc)

        def fbody(i, loss_ta, lse_ta):  # type: ignore[no-untyped-def]
            loss, lse = chunk_loss(be, _logits(h3[i], W, b, compute), y3[i], cw, plan)
            return i + 1, loss_ta.write(i, loss), lse_ta.write(i, lse)

        tas = [tf.TensorArray(compute, size=nc, element_shape=[k]) for _ in range(2)]
        _, loss_ta, lse_ta = tf.while_loop(lambda i, *_: i < nc, fbody, [0, *tas], parallel_iterations=1)
        loss = tf.reshape(loss_ta.stack(), [-1])[:n]
        lse3 = lse_ta.stack()

        def grad(go: Array) -> Any:
            go3 = _chunked(tf.cast(go, compute), k, nc)
            classes = tf.range(plan.vocab, dtype=tf.int64)

            def bbody(i, dh_ta, dW, db):  # type: ignore[no-untyped-def]
                hc = h3[i]
                g = chunk_dlogits(be, _logits(hc, W, b, compute), y3[i], cw, lse3[i], go3[i], classes, plan)
                dh_ta = dh_ta.write(i, tf.cast(tf.matmul(tf.cast(g, W.dtype), W), h.dtype))
                dW = dW + tf.matmul(g, tf.cast(hc, compute), transpose_a=True)  # float32 for half inputs
                if db is not None:
                    db = db + tf.reduce_sum(g, 0)
                return i + 1, dh_ta, dW, db

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

    if b is None:
        return tf.custom_gradient(lambda h, W: run(h, W, None))(h, W)
    return tf.custom_gradient(lambda h, W, b: run(h, W, b))(h, W, tf.convert_to_tensor(b))
