"""Small eager calls with options: xent against the native loss with the same options.

    python benchmarks/options.py [--frameworks torch,tensorflow] [--size 32x10] [--budget 1.0]
                                 [--options "weights,all four"]

For a small eager sparse loss on the CPU (float32), each row times xent's
``sparse_softmax_cross_entropy`` and the native loss with the same options
(``ignore_index``, ``label_smoothing``, class weights, sample weights),
forward and forward+backward (under autograd / a ``GradientTape``), as
interleaved A/B pairs in one process (``xent._bench.time_ab``), and prints
the median per-call times, the median ratio (p25-p75) and the median added
time per call. The native losses: torch's ``F.cross_entropy(weight=,
ignore_index=, label_smoothing=)`` (with sample weights: its per-entry
losses times them, summed, the mean divided by the kept entries' total
weight); for TensorFlow what a TF user writes, as Keras does:
``tf.nn.sparse_softmax_cross_entropy_with_logits`` (with smoothing,
``tf.nn.softmax_cross_entropy_with_logits`` against the smoothed one-hot
target) of the labels with ignored ones set to 0, each row times its
label's class weight, its sample weight and its mask, summed, the mean
divided by the total weight. Each framework runs in this process, one
after the other.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import xent
from xent._bench import time_ab

OPTIONS: dict[str, dict[str, Any]] = {
    "ignore_index": {"ignore_index": -100},
    "ignore_index + label_smoothing": {"ignore_index": -100, "label_smoothing": 0.1},
    "class_weights": {"class_weights": True},
    "ignore_index + label_smoothing + class_weights": {"ignore_index": -100, "label_smoothing": 0.1,
                                                       "class_weights": True},
    "weights": {"weights": True},
    "all four": {"ignore_index": -100, "label_smoothing": 0.1, "class_weights": True, "weights": True},
}


def _torch_pair(n: int, c: int, opts: dict[str, Any], reduction: str, backward: bool) -> tuple[Callable[[], Any], ...]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    z = torch.randn(n, c, requires_grad=backward)
    y = torch.randint(0, c, (n,))
    if "ignore_index" in opts:
        y[::4] = -100
    w = torch.rand(c) + 0.5 if opts.get("class_weights") else None
    sw = torch.rand(n) + 0.5 if opts.get("weights") else None
    smoothing = opts.get("label_smoothing", 0.0)
    ignore = opts.get("ignore_index")
    mask = None if ignore is None else y != ignore
    safe = y if mask is None else y.masked_fill(~mask, 0)

    def ours() -> Any:
        loss = xent.sparse_softmax_cross_entropy(z, y, ignore_index=ignore, label_smoothing=smoothing,
                                                 class_weights=w, weights=sw, reduction=reduction)
        if backward:
            loss.backward()
        return loss

    def native() -> Any:
        if sw is None:
            loss = F.cross_entropy(z, y, weight=w, ignore_index=-100 if ignore is None else ignore,
                                   label_smoothing=smoothing, reduction=reduction)
        else:  # per-entry losses times the sample weights, the mean over the total weight
            rows = F.cross_entropy(z, y, weight=w, ignore_index=-100 if ignore is None else ignore,
                                   label_smoothing=smoothing, reduction="none") * sw
            total = sw if w is None else sw * w[safe]
            if mask is not None:
                total = total * mask
            loss = rows.sum() if reduction == "sum" else rows.sum() / total.sum()
        if backward:
            loss.backward()
        return loss

    return ours, native


def _tf_pair(n: int, c: int, opts: dict[str, Any], reduction: str, backward: bool) -> tuple[Callable[[], Any], ...]:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    z = tf.constant(rng.standard_normal((n, c)).astype(np.float32))
    labels = rng.integers(0, c, n)
    if "ignore_index" in opts:
        labels[::4] = -100
    y = tf.constant(labels)
    w = tf.constant((rng.random(c) + 0.5).astype(np.float32)) if opts.get("class_weights") else None
    sw = tf.constant((rng.random(n) + 0.5).astype(np.float32)) if opts.get("weights") else None
    smoothing = opts.get("label_smoothing", 0.0)
    ignore = opts.get("ignore_index")

    def ours_loss() -> Any:
        return xent.sparse_softmax_cross_entropy(z, y, ignore_index=ignore, label_smoothing=smoothing,
                                                 class_weights=w, weights=sw, reduction=reduction)

    def native_loss() -> Any:
        keep = None if ignore is None else tf.not_equal(y, ignore)
        yc = y if keep is None else tf.where(keep, y, tf.zeros_like(y))
        if smoothing:
            target = tf.one_hot(yc, c) * (1.0 - smoothing) + smoothing / c
            rows = tf.nn.softmax_cross_entropy_with_logits(labels=target, logits=z)
        else:
            rows = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yc, logits=z)
        weight = None if w is None else tf.gather(w, yc)
        if sw is not None:
            weight = sw if weight is None else weight * sw
        if keep is not None:
            kept = tf.cast(keep, tf.float32)
            weight = kept if weight is None else weight * kept
        if weight is None:
            return tf.reduce_sum(rows) if reduction == "sum" else tf.reduce_mean(rows)
        total = tf.reduce_sum(rows * weight)
        return total if reduction == "sum" else tf.math.divide_no_nan(total, tf.reduce_sum(weight))

    def run(loss: Callable[[], Any]) -> Callable[[], Any]:
        if not backward:
            return loss

        def both() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(z)
                out = loss()
            return tape.gradient(out, z)

        return both

    return run(ours_loss), run(native_loss)


FRAMEWORKS = {"torch": _torch_pair, "tensorflow": _tf_pair}


def _version(framework: str) -> str:
    import importlib

    return f"{framework} {importlib.import_module(framework).__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", default="torch,tensorflow", help="comma-separated: torch,tensorflow")
    parser.add_argument("--size", default="32x10", help="N x C, e.g. 32x10")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of pairs per row")
    parser.add_argument("--options", default=",".join(OPTIONS),
                        help=f"comma-separated rows, of: {', '.join(OPTIONS)} (default: all)")
    args = parser.parse_args()
    rows = [name.strip() for name in args.options.split(",")]
    unknown = [name for name in rows if name not in OPTIONS]
    if unknown:
        parser.error(f"unknown --options {unknown}; choose from {list(OPTIONS)}")
    n, c = (int(v) for v in args.size.lower().split("x"))
    for framework in args.frameworks.split(","):
        pair = FRAMEWORKS[framework]
        if framework == "torch":
            import torch

            torch.set_num_threads(1)
        print(f"{_version(framework)}, {n}x{c} float32, CPU; medians of interleaved pairs\n")
        print("| options | reduction | pass | xent µs | native µs | ratio (p25-p75) | added µs |")
        print("|---|---|---|---:|---:|---:|---:|")
        for name in rows:
            opts = OPTIONS[name]
            for reduction in ("mean", "sum"):
                for backward in (False, True):
                    ours, native = pair(n, c, opts, reduction, backward)
                    r = time_ab(ours, native, args.budget, min_pairs=15, warmup_s=0.3)
                    print(f"| {name} | {reduction} | {'fwd+bwd' if backward else 'fwd'} | {r['xent_s'] * 1e6:.1f} | "
                          f"{r['native_s'] * 1e6:.1f} | {r['ratio']:.2f} ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}) | "
                          f"{r['delta_s'] * 1e6:.1f} |", flush=True)
        print()


if __name__ == "__main__":
    main()
