"""Trace time: how long a compiler takes to trace a step through xent, against
the same step through the framework's own loss.

    python benchmarks/trace.py [--repeats 7] [--frameworks tensorflow,jax]

TensorFlow: a ``tf.function`` training step (a GradientTape over the loss of a
``[batch, 10]`` slice of a variable) and the bare loss, each traced for four
batch sizes: the first trace of a fresh ``tf.function`` and the three
retraces after it (what Keras pays for a short last batch). JAX: ``jax.jit``'s
trace and lowering of ``value_and_grad`` of the loss (``.lower``, no XLA
compile), for the same four shapes. Losses: sparse with label smoothing,
dense, sigmoid; ``reduction="mean"``. Each figure is the median over
``--repeats`` rounds, xent and native measured alternately in one process;
the ratio is xent / native.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from typing import Any, Callable

import numpy as np

import xent

BATCHES = (32, 31, 30, 29)
CLASSES = 10


def _tf_losses(tf: Any) -> dict[str, tuple[Callable[..., Any], Callable[..., Any], Any]]:
    """{loss: (native, xent, labels maker)}."""
    def smooth(y: Any) -> Any:
        return tf.one_hot(y, CLASSES) * 0.9 + 0.1 / CLASSES

    return {
        "sparse+smoothing": (
            lambda z, y: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(smooth(y), z)),
            lambda z, y: xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean"),
            lambda n: tf.zeros([n], tf.int32)),
        "dense": (
            lambda z, y: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, z)),
            lambda z, y: xent.softmax_cross_entropy(z, y, reduction="mean"),
            lambda n: tf.fill([n, CLASSES], 1.0 / CLASSES)),
        "sigmoid": (
            lambda z, y: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, z)),
            lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="mean"),
            lambda n: tf.zeros([n, CLASSES])),
    }


def _tf_traces(tf: Any, loss: Callable[..., Any], labels: Callable[[int], Any], tape: bool) -> list[float]:
    """Seconds to trace a fresh tf.function for each of BATCHES in turn."""
    z = tf.Variable(tf.random.normal([max(BATCHES), CLASSES]))

    def step(y: Any) -> Any:
        n = tf.shape(y)[0]
        if not tape:
            return loss(z[:n], y)
        with tf.GradientTape() as g:
            value = loss(z[:n], y)
        return g.gradient(value, z)

    fn = tf.function(step)
    times = []
    for n in BATCHES:
        y = labels(n)
        start = time.perf_counter()
        fn.get_concrete_function(y)
        times.append(time.perf_counter() - start)
    return times


def _jax_losses(jax: Any, jnp: Any, optax: Any) -> dict[str, tuple[Callable[..., Any], Callable[..., Any], Any]]:
    return {
        "sparse+smoothing": (
            lambda z, y: optax.softmax_cross_entropy(z, optax.smooth_labels(jax.nn.one_hot(y, CLASSES), 0.1)).mean(),
            lambda z, y: xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean"),
            lambda n: jnp.zeros([n], jnp.int32)),
        "dense": (
            lambda z, y: optax.softmax_cross_entropy(z, y).mean(),
            lambda z, y: xent.softmax_cross_entropy(z, y, reduction="mean"),
            lambda n: jnp.full([n, CLASSES], 1.0 / CLASSES)),
        "sigmoid": (
            lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean(),
            lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="mean"),
            lambda n: jnp.zeros([n, CLASSES])),
    }


def _jax_traces(jax: Any, jnp: Any, loss: Callable[..., Any], labels: Callable[[int], Any]) -> list[float]:
    fn = jax.jit(jax.value_and_grad(loss))
    times = []
    for n in BATCHES:
        z, y = jnp.zeros([n, CLASSES]), labels(n)
        start = time.perf_counter()
        fn.lower(z, y)
        times.append(time.perf_counter() - start)
    return times


def _report(rows: list[tuple[str, str, str, list[list[float]], list[list[float]]]]) -> None:
    print(f"{'framework':11} {'loss':17} {'what':10} {'first: xent / native':>26} {'retrace: xent / native':>28}")
    for fw, loss, what, ours, native in rows:
        first = (statistics.median(r[0] for r in ours), statistics.median(r[0] for r in native))
        again = (statistics.median(np.mean(r[1:]) for r in ours), statistics.median(np.mean(r[1:]) for r in native))
        print(f"{fw:11} {loss:17} {what:10} "
              f"{first[0] * 1e3:7.1f} / {first[1] * 1e3:6.1f} ms {first[0] / first[1]:5.2f}x "
              f"{again[0] * 1e3:9.1f} / {again[1] * 1e3:6.1f} ms {again[0] / again[1]:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds per cell; the median is shown (default 7)")
    parser.add_argument("--frameworks", default="tensorflow,jax", help="comma-separated (default tensorflow,jax)")
    args = parser.parse_args()
    chosen = [f for f in args.frameworks.split(",") if importlib.util.find_spec(f)]
    rows = []
    if "tensorflow" in chosen:
        import tensorflow as tf

        for name, (native, ours, labels) in _tf_losses(tf).items():
            for tape in (True, False):
                _tf_traces(tf, native, labels, tape), _tf_traces(tf, ours, labels, tape)  # warm-up
                a, b = [], []
                for _ in range(args.repeats):
                    b.append(_tf_traces(tf, native, labels, tape))
                    a.append(_tf_traces(tf, ours, labels, tape))
                rows.append(("tensorflow", name, "tape step" if tape else "loss", a, b))
    if "jax" in chosen and importlib.util.find_spec("optax"):
        import jax
        import jax.numpy as jnp
        import optax

        for name, (native, ours, labels) in _jax_losses(jax, jnp, optax).items():
            _jax_traces(jax, jnp, native, labels), _jax_traces(jax, jnp, ours, labels)
            a, b = [], []
            for _ in range(args.repeats):
                b.append(_jax_traces(jax, jnp, native, labels))
                a.append(_jax_traces(jax, jnp, ours, labels))
            rows.append(("jax", name, "grad jit", a, b))
    _report(rows)


if __name__ == "__main__":
    main()
