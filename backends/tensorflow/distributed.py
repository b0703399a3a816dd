"""TensorFlow: the collectives of :mod:`xent.distributed` in a
``tf.distribute`` replica context. TF all-reduces only SUM and MEAN, so the
row max is an all-gather of the replicas' maxima, reduced locally."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

Array = Any


class Collectives:
    """The replica context ``group`` (None: the current one, inside
    ``strategy.run``)."""

    def __init__(self, group: Any, like: Array) -> None:
        ctx = group if group is not None else tf.distribute.get_replica_context()
        if ctx is None or not hasattr(ctx, "all_reduce"):
            raise ValueError(
                "xent.distributed on TensorFlow runs in a tf.distribute replica context "
                "(inside strategy.run), or with group= one"
            )
        self.ctx = ctx

    def max(self, x: Array) -> Array:
        gathered = self.ctx.all_gather(tf.stop_gradient(x)[None], axis=0)
        return tf.reduce_max(gathered, axis=0)

    def sum(self, *xs: Array) -> tuple[Array, ...]:
        ctx = self.ctx

        @tf.custom_gradient
        def summed(v: Array) -> Any:
            # the identity gradient: every replica computes the same loss
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, v), lambda g: g

        return tuple(tf.unstack(summed(tf.stack(xs))))  # (packed: one all-reduce)

    def copy(self, x: Array) -> Array:
        ctx = self.ctx

        @tf.custom_gradient
        def copied(v: Array) -> Any:
            # the gradient of the whole loss: every replica's part, summed
            return tf.identity(v), lambda g: ctx.all_reduce(tf.distribute.ReduceOp.SUM, g)

        return copied(x)

    def layout(self, width: int) -> tuple[Any, int]:
        # replicas hold even shards: replica i starts at i·width
        rank = self.ctx.replica_id_in_sync_group
        return tf.cast(rank, tf.int32) * width, int(self.ctx.num_replicas_in_sync) * width
