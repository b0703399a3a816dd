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
    with open(os.path.join(out, "tf.pkl"), "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main()
