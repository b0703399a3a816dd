"""A training loop whose batch shape changes: xent against the native loss, eagerly.

    python benchmarks/shapes.py [--shapes 20] [--calls 3] [--classes 1000]

Each framework's eager loss is called ``--calls`` times on each of ``--shapes``
batch sizes (64, 65, ...) of ``--classes`` classes, in one loop, as a
variable-length workload does; the totals include whatever compiling happens
along the way (TF compiles a signature only once its op-by-op calls have cost
about one compile: ``xent.backends.tensorflow.compile_cache.COMPILE_AFTER_S``; JAX's eager calls,
xent's and optax's alike, compile each new shape). Sparse and dense losses,
float32, ``reduction="mean"``. Prints one line per framework and loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from typing import Any, Callable

import numpy as np

from xent._bench import _xent_fn


def _loops(fw: str) -> tuple[Callable[[Any], Any], Callable[[np.ndarray], Any], dict[str, Callable[..., Any]]]:
    """(sync, to_framework, {loss: native}) for one framework; xent's side is
    ``xent bench``'s own call (``_xent_fn``)."""
    if fw == "torch":
        import torch
        import torch.nn.functional as F

        return (lambda x: x.item(), torch.from_numpy, {"sparse": F.cross_entropy, "dense": F.cross_entropy})
    if fw == "tensorflow":
        import tensorflow as tf

        return (lambda x: x.numpy(), tf.constant, {
            "sparse": lambda z, y: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)),
            "dense": lambda z, p: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=p, logits=z)),
        })
    import jax
    import jax.numpy as jnp
    import optax

    return (lambda x: x.block_until_ready(), jnp.asarray, {
        "sparse": lambda z, y: jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(z, y)),
        "dense": lambda z, p: jnp.mean(optax.losses.softmax_cross_entropy(z, p)),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=20, help="distinct batch sizes (default 20)")
    parser.add_argument("--calls", type=int, default=3, help="calls per batch size (default 3)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default 1000)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batches = []
    for rows in range(64, 64 + args.shapes):
        z = (rng.standard_normal((rows, args.classes)) * 2).astype(np.float32)
        y = rng.integers(0, args.classes, rows)
        p = rng.random((rows, args.classes)).astype(np.float32)
        batches.append((z, y, p / p.sum(1, keepdims=True)))
    for fw in ("torch", "tensorflow", "jax"):
        if importlib.util.find_spec(fw) is None:
            print(f"{fw}: not installed, skipped")
            continue
        sync, to_fw, natives = _loops(fw)
        data = [(to_fw(z), to_fw(y), to_fw(p)) for z, y, p in batches]
        for name, native in natives.items():
            mine = _xent_fn(name)
            took = {}
            for side, fn in (("native", native), ("xent", mine)):
                started = time.perf_counter()
                for _ in range(args.calls):
                    for z, y, p in data:
                        sync(fn(z, y if name == "sparse" else p))
                took[side] = time.perf_counter() - started
            print(f"{fw:10s} {name:6s} {args.shapes} shapes x {args.calls} calls: native {took['native']:.2f} s, "
                  f"xent {took['xent']:.2f} s, xent/native {took['xent'] / took['native']:.2f}")


if __name__ == "__main__":
    main()
