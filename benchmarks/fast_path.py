"""What the torch fast path's host time is made of, part by part.

    python benchmarks/fast_path.py [--rounds 5]

For a small eager sparse mean (32×10 float32 logits on the CPU) it times, each
the best of 7 repeats of 5000 calls, repeated ``--rounds`` times (medians shown):

* xent's call against ``F.cross_entropy`` (the whole added host time);
* the parts of it: the backend lookup, the ``labels.min()`` read that shows no
  label equals the ignore value torch's kernel is given, and what calling
  torch's C++ ``cross_entropy_loss`` binding saves over ``F.cross_entropy``'s
  Python wrapper.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from typing import Any, Callable

import torch
import torch.nn.functional as F

import xent
from xent._registry import backend_for

NO_IGNORE = -(2**62)


def _us(fn: Callable[[], Any]) -> float:
    return min(timeit.repeat(fn, number=5000, repeat=7)) / 5000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    z = torch.randn(32, 10)
    y = torch.randint(0, 10, (32,))
    binding = torch._C._nn.cross_entropy_loss
    pairs = {
        "xent call - F.cross_entropy": (
            lambda: xent.sparse_softmax_cross_entropy(z, y, reduction="mean"), lambda: F.cross_entropy(z, y)),
        "F.cross_entropy wrapper - C++ binding": (
            lambda: F.cross_entropy(z, y, None, None, NO_IGNORE, None, "mean"),
            lambda: binding(z, y, None, 1, NO_IGNORE, 0.0)),
        "labels.min().item()": (lambda: y.min().item(), lambda: None),
        "backend lookup": (lambda: backend_for(z), lambda: None),
    }
    for name, (a, b) in pairs.items():
        deltas = [_us(a) - _us(b) for _ in range(rounds)]
        print(f"{name:40s} {statistics.median(deltas):6.2f} µs  (range {min(deltas):.2f}-{max(deltas):.2f})")


if __name__ == "__main__":
    main()
