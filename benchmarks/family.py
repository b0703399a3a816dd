"""Large eager calls of the losses without a kernel of their own, on the CPU:
xent against what a torch user writes for the same loss.

    python benchmarks/family.py [--size 1024x32000] [--dtypes float32,bfloat16] [--budget 10]
                                [--losses "sigmoid focal,kl"] [--whole]

Each row times a loss forward+backward (mean reduction), xent against the
hand-written torch form, as interleaved A/B pairs in one process
(``xent._bench.time_ab``, one thread), and prints the median per-call times
and the median ratio (p25-p75). Above 2²³ values xent evaluates these losses'
formulas chunk by chunk in cache and again per chunk for the backward pass
(``Backend.rows_in_chunks``); ``--whole`` turns that off, to time the same
formulas over whole arrays. The torch forms:

- sigmoid focal: torchvision's ``sigmoid_focal_loss`` formula (γ = 2, α = 0.25);
- sparse focal: ``-(1 - p_y)^γ · log p_y`` from ``F.log_softmax`` (γ = 2);
- KL: ``F.kl_div(F.log_softmax(z), F.log_softmax(t), log_target=True)``;
- dense smoothing: ``F.cross_entropy`` with probability targets and ``label_smoothing=0.1``;
- categorical: Keras' formula, ``-Σ y·log clip(p / Σp, ε, 1-ε)``;
- binary: ``F.binary_cross_entropy`` (probabilities).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import xent
from xent._bench import time_ab


def _inputs(torch: Any, n: int, c: int, dtype: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, c, generator=g).to(dtype)
    return {
        "z": z,
        "t": torch.randn(n, c, generator=g).to(dtype),
        "soft": torch.softmax(torch.randn(n, c, generator=g), -1).to(dtype),
        "hard": (torch.rand(n, c, generator=g) < 0.05).to(dtype),
        "probs": torch.softmax(torch.randn(n, c, generator=g), -1).to(dtype),
        "unit": torch.rand(n, c, generator=g).clamp(1e-3, 1 - 1e-3).to(dtype),
        "ids": torch.randint(0, c, (n,), generator=g),
    }


def _pairs(torch: Any, F: Any) -> dict[str, tuple[str, Callable[..., Any], Callable[..., Any]]]:
    """Per loss: (the input that takes the gradient, xent's loss, torch's form)."""

    def sigmoid_focal(z: Any, a: dict[str, Any]) -> Any:  # torchvision.ops.sigmoid_focal_loss
        y = a["hard"]
        p = torch.sigmoid(z)
        ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * ((1 - p_t) ** 2)
        return ((0.25 * y + 0.75 * (1 - y)) * loss).mean()

    def sparse_focal(z: Any, a: dict[str, Any]) -> Any:
        lp = F.log_softmax(z.float(), -1).gather(1, a["ids"][:, None])[:, 0]
        return (-((1 - lp.exp()) ** 2) * lp).mean().to(z.dtype)

    def categorical(p: Any, a: dict[str, Any]) -> Any:
        q = (p / p.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
        return -(a["soft"] * q.log()).sum(-1).mean()

    return {
        "sigmoid focal": ("z", lambda z, a: xent.sigmoid_cross_entropy(
            z, a["hard"], focal_gamma=2.0, focal_alpha=0.25, reduction="mean"), sigmoid_focal),
        "sparse focal": ("z", lambda z, a: xent.sparse_softmax_cross_entropy(
            z, a["ids"], focal_gamma=2.0, reduction="mean"), sparse_focal),
        "kl": ("z", lambda z, a: xent.kl_divergence(z, a["t"], reduction="mean"),
               lambda z, a: F.kl_div(F.log_softmax(z, -1), F.log_softmax(a["t"], -1), log_target=True,
                                     reduction="batchmean")),
        "dense smoothing": ("z", lambda z, a: xent.softmax_cross_entropy(
            z, a["soft"], label_smoothing=0.1, reduction="mean"),
            lambda z, a: F.cross_entropy(z, a["soft"], label_smoothing=0.1)),
        "categorical": ("probs", lambda p, a: xent.categorical_cross_entropy(p, a["soft"], reduction="mean"),
                        categorical),
        "binary": ("unit", lambda p, a: xent.binary_cross_entropy(p, a["hard"], reduction="mean"),
                   lambda p, a: F.binary_cross_entropy(p, a["hard"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1024x32000", help="N x C, e.g. 1024x32000")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32,bfloat16,...")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of pairs per row")
    parser.add_argument("--losses", default=None, help="comma-separated rows (default: all)")
    parser.add_argument("--whole", action="store_true", help="xent's formulas over whole arrays, not chunked")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    pairs = _pairs(torch, F)
    rows = list(pairs) if args.losses is None else [name.strip() for name in args.losses.split(",")]
    unknown = [name for name in rows if name not in pairs]
    if unknown:
        parser.error(f"unknown --losses {unknown}; choose from {list(pairs)}")
    if args.whole:
        from xent.backends.torch import fused

        fused.CHUNKED_MIN = 1 << 62  # (xent's chunks start above it)
    n, c = (int(v) for v in args.size.lower().split("x"))
    print(f"torch {torch.__version__}, {n}x{c}, CPU, one thread, forward+backward, mean; "
          f"{'whole arrays' if args.whole else 'chunked'}; medians of interleaved pairs\n")
    print("| loss | dtype | xent ms | torch ms | ratio (p25-p75) |")
    print("|---|---|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        inputs = _inputs(torch, n, c, getattr(torch, dtype))
        for name in rows:
            grad, ours, native = pairs[name]

            def run(loss: Callable[..., Any]) -> Callable[[], Any]:
                def step() -> Any:
                    x = inputs[grad].detach().requires_grad_(True)
                    loss(x, inputs).backward()
                    return x.grad

                return step

            r = time_ab(run(ours), run(native), args.budget, min_pairs=3, warmup=1)
            print(f"| {name} | {dtype} | {r['xent_s'] * 1e3:.0f} | {r['native_s'] * 1e3:.0f} | "
                  f"{r['ratio']:.2f} ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
