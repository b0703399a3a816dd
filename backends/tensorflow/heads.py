"""TensorFlow: ``Backend.linear_heads`` as a ``tf.custom_gradient`` over
``tf.while_loop`` (``parallel_iterations=1``: one chunk's logits at a time; eagerly
the loop runs in Python), as the chunked linear cross-entropy (``linear.py``).

Forward keeps the objective's ``[N]`` outputs; backward recomputes each
chunk's logits and takes the chunk's logit gradient from a ``GradientTape``
over the objective alone, writes ``dh`` chunk by chunk into a ``TensorArray``
and carries the weight and bias gradients in the compute dtype (float32 for
half inputs). Only the first head is differentiated; the others (a teacher)
are constants.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .._base import Array, Backend
from .linear import _chunked, _logits, chunk_grads


def linear_heads(be: Backend, heads: tuple[tuple[Array, Array, Array | None], ...], rows: tuple[Array, ...],
                 objective: Any, chunk: int, compute: str) -> tuple[Array, ...]:
    """The per-token outputs of ``objective`` (see ``Backend.linear_heads``)."""
    k = chunk
    # Variables are read here, outside the custom gradient, so the tape sees the read.
    (h, W, b), *rest = heads
    h, W = tf.convert_to_tensor(h), tf.convert_to_tensor(W)
    others = [(tf.stop_gradient(tf.convert_to_tensor(ho)), tf.stop_gradient(tf.convert_to_tensor(Wo)),
               None if bo is None else tf.stop_gradient(tf.convert_to_tensor(bo))) for ho, Wo, bo in rest]
    n = tf.shape(h)[0]
    nc = (n + k - 1) // k
    o3 = [_chunked(ho, k, nc) for ho, _, _ in others]
    r3 = [_chunked(r, k, nc) for r in rows]

    def run(h: Array, W: Array, b: Array | None) -> Any:
        h3 = _chunked(h, k, nc)

        def zs_of(i: Array, W: Array, b: Array | None) -> list[Array]:
            return [_logits(h3[i], W, b, compute)] + [_logits(oc[i], Wo, bo, compute)
                                                      for oc, (_, Wo, bo) in zip(o3, others)]

        def fbody(i, *tas):  # type: ignore[no-untyped-def]
            outs = objective(be, zs_of(i, W, b), tuple(r[i] for r in r3))
            return (i + 1, *(ta.write(i, x) for ta, x in zip(tas, outs)))

        tas = [tf.TensorArray(compute, size=nc, element_shape=[k]) for _ in range(objective.outputs)]
        _, *tas = tf.while_loop(lambda i, *_: i < nc, fbody, [0, *tas], parallel_iterations=1)
        outs = tuple(tf.reshape(ta.stack(), [-1])[:n] for ta in tas)

        def grad(*gos: Array) -> Any:
            g3 = [_chunked(tf.cast(g, compute), k, nc) for g in gos]

            def bbody(i, dh_ta, dW, db):  # type: ignore[no-untyped-def]
                zs = zs_of(i, W, b)
                with tf.GradientTape() as tape:
                    tape.watch(zs[0])
                    res = objective(be, zs, tuple(r[i] for r in r3))
                g = tape.gradient(list(res), zs[0], output_gradients=[gc[i] for gc in g3],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return chunk_grads(i, g, h3[i], W, h.dtype, dh_ta, dW, db, compute)

            dh_ta = tf.TensorArray(h.dtype, size=nc, element_shape=[k, h.shape[1]])
            dW0 = tf.zeros(tf.shape(W), compute)
            if b is None:
                _, dh_ta, dW = tf.while_loop(lambda i, *_: i < nc, lambda i, t, w: bbody(i, t, w, None)[:3],
                                             [0, dh_ta, dW0], parallel_iterations=1)
            else:
                _, dh_ta, dW, db = tf.while_loop(lambda i, *_: i < nc, bbody,
                                                 [0, dh_ta, dW0, tf.zeros(tf.shape(b), compute)],
                                                 parallel_iterations=1)
            grads = [tf.reshape(dh_ta.stack(), [-1, tf.shape(h)[1]])[:n], tf.cast(dW, W.dtype)]
            if b is not None:
                grads.append(tf.cast(db, b.dtype))
            return grads

        return outs, grad

    if b is None:
        return tuple(tf.custom_gradient(lambda h, W: run(h, W, None))(h, W))
    return tuple(tf.custom_gradient(lambda h, W, b: run(h, W, b))(h, W, tf.convert_to_tensor(b)))
