"""TensorFlow's vocab-parallel cases under MirroredStrategy over logical CPU
devices: run as ``python -m tests.distributed.tf_worker WORLD OUT``; writes
``OUT/tf.pkl`` with each case's per-replica losses, the full logit gradient
and the collectives each replica made forward and backward."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np

from tests.distributed import cases

DTYPES = ("float64", "float32", "bfloat16")


def _linear(strategy, world: int, padded: bool, dtype: str, name: str, reduction: str, counts: dict,  # type: ignore[no-untyped-def]
            phase: list) -> dict:
    """One linear case: the weight (and bias) split over the replicas, the
    hidden states on each; the loss, the gradients of all three, and the
    collectives each replica made forward and backward."""
    import tensorflow as tf

    import xent.distributed

    head, bias = cases.linear_head(padded)
    width = head.shape[0] // world
    options = dict(cases.LINEAR_OPTIONS[name])
    has_bias = options.pop("bias", None) is not None
    labels = tf.constant(cases.plain_labels(options))
    opts = {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}
    h = tf.cast(tf.constant(cases.HIDDEN), dtype)

    def part(values):  # type: ignore[no-untyped-def]
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.cast(tf.constant(values[ctx.replica_id_in_sync_group * width:
                                                   (ctx.replica_id_in_sync_group + 1) * width]), dtype))

    def step(w, b):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch([h, w, b])
            phase[0] = "forward"
            loss = xent.distributed.linear_cross_entropy(h, w, labels, bias=b if has_bias else None,
                                                         vocab_size=cases.V if padded else None, chunk_size=3,
                                                         **opts, **red)
            total = tf.reduce_sum(loss) if reduction == "none" else loss
        phase[0] = "backward"
        dh, dw, db = tape.gradient(total, [h, w, b])
        return loss, dh, dw, db if has_bias else tf.zeros_like(b)

    counts.update(forward=0, backward=0)
    out = strategy.run(step, args=(part(head), part(bias)))
    local = [[np.asarray(tf.cast(v, tf.float64)) for v in strategy.experimental_local_results(x)] for x in out]
    return {"losses": local[0], "dh": local[1], "dw": np.concatenate(local[2]),
            "db": np.concatenate(local[3]) if has_bias else None,
            "forward": counts["forward"] / world, "backward": counts["backward"] / world}


def main() -> None:
    import tensorflow as tf

    world, out = int(sys.argv[1]), sys.argv[2]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * world)
    import xent.distributed

    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(world)])
    counts = {"forward": 0, "backward": 0}
    phase = ["forward"]
    context = type(tf.distribute.get_replica_context())  # (the default context's class's base has them)
    real_reduce, real_gather = tf.distribute.ReplicaContext.all_reduce, tf.distribute.ReplicaContext.all_gather

    def reduce(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts[phase[0]] += 1
        return real_reduce(self, *args, **kwargs)

    def gather(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts[phase[0]] += 1
        return real_gather(self, *args, **kwargs)

    tf.distribute.ReplicaContext.all_reduce = reduce  # type: ignore[method-assign]
    tf.distribute.ReplicaContext.all_gather = gather  # type: ignore[method-assign]
    del context
    results = {}
    for padded, dtype, name, reduction in cases.grid(DTYPES):
        full = cases.padded_logits() if padded else cases.LOGITS
        width = full.shape[1] // world
        options = cases.OPTIONS[name]
        labels = tf.constant(cases.plain_labels(options))
        opts = {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}
        shards = strategy.experimental_distribute_values_from_function(
            lambda ctx, full=full, width=width, dtype=dtype: tf.cast(
                tf.constant(full[:, ctx.replica_id_in_sync_group * width:(ctx.replica_id_in_sync_group + 1) * width]),
                dtype))

        def step(x, labels=labels, opts=opts, red=red, padded=padded, reduction=reduction):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                tape.watch(x)
                phase[0] = "forward"
                loss = xent.distributed.sparse_softmax_cross_entropy(
                    x, labels, vocab_size=cases.V if padded else None, **opts, **red)
                total = tf.reduce_sum(loss) if reduction == "none" else loss
            phase[0] = "backward"
            return loss, tape.gradient(total, x)

        counts.update(forward=0, backward=0)
        losses, grads = strategy.run(step, args=(shards,))
        losses = [np.asarray(tf.cast(v, tf.float64)) for v in strategy.experimental_local_results(losses)]
        grads = [np.asarray(tf.cast(v, tf.float64)) for v in strategy.experimental_local_results(grads)]
        results[padded, dtype, name, reduction] = {
            "losses": losses, "grad": np.concatenate(grads, axis=1),
            "forward": counts["forward"] / world, "backward": counts["backward"] / world,
            "dtype": strategy.experimental_local_results(strategy.run(
                lambda x, labels=labels, opts=opts, red=red, padded=padded: xent.distributed.sparse_softmax_cross_entropy(
                    x, labels, vocab_size=cases.V if padded else None, **opts, **red).dtype.name,
                args=(shards,)))[0],
        }
    for key in cases.linear_grid(DTYPES):
        results[key] = _linear(strategy, world, *key[1:], counts, phase)
    with open(os.path.join(out, "tf.pkl"), "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main()
