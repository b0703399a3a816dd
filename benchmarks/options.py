"""Small torch calls with options: xent against ``F.cross_entropy`` with the same options.

    python benchmarks/options.py [--size 32x10] [--budget 1.0]

For a small eager sparse loss on the CPU (float32), each row times xent's
``sparse_softmax_cross_entropy`` and ``torch.nn.functional.cross_entropy``
with the same options (``ignore_index``, ``label_smoothing``, class weights),
forward and forward+backward, as interleaved A/B pairs in one process
(``xent._bench.time_ab``), and prints the median per-call times, the median
ratio (p25-p75) and the median added time per call.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import torch
import torch.nn.functional as F

import xent
from xent._bench import time_ab

OPTIONS: dict[str, dict[str, Any]] = {
    "ignore_index": {"ignore_index": -100},
    "ignore_index + label_smoothing": {"ignore_index": -100, "label_smoothing": 0.1},
    "class_weights": {"class_weights": True},
    "ignore_index + label_smoothing + class_weights": {"ignore_index": -100, "label_smoothing": 0.1,
                                                       "class_weights": True},
}


def _pair(n: int, c: int, opts: dict[str, Any], reduction: str, backward: bool) -> tuple[Callable[[], Any], ...]:
    torch.manual_seed(0)
    z = torch.randn(n, c, requires_grad=backward)
    y = torch.randint(0, c, (n,))
    if "ignore_index" in opts:
        y[::4] = -100
    w = torch.rand(c) + 0.5 if opts.get("class_weights") else None
    smoothing = opts.get("label_smoothing", 0.0)
    ignore = opts.get("ignore_index")

    def ours() -> Any:
        loss = xent.sparse_softmax_cross_entropy(z, y, ignore_index=ignore, label_smoothing=smoothing,
                                                 class_weights=w, reduction=reduction)
        if backward:
            loss.backward()
        return loss

    def native() -> Any:
        loss = F.cross_entropy(z, y, weight=w, ignore_index=-100 if ignore is None else ignore,
                               label_smoothing=smoothing, reduction=reduction)
        if backward:
            loss.backward()
        return loss

    return ours, native


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="32x10", help="N x C, e.g. 32x10")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of pairs per row")
    args = parser.parse_args()
    n, c = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {n}x{c} float32, CPU, 1 thread; medians of interleaved pairs\n")
    print("| options | reduction | pass | xent µs | native µs | ratio (p25-p75) | added µs |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, opts in OPTIONS.items():
        for reduction in ("mean", "sum"):
            for backward in (False, True):
                ours, native = _pair(n, c, opts, reduction, backward)
                r = time_ab(ours, native, args.budget, min_pairs=15)
                print(f"| {name} | {reduction} | {'fwd+bwd' if backward else 'fwd'} | {r['xent_s'] * 1e6:.1f} | "
                      f"{r['native_s'] * 1e6:.1f} | {r['ratio']:.2f} ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}) | "
                      f"{r['delta_s'] * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
