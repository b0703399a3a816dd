"""torch.distributed (gloo) ranks running every vocab-parallel case: run as
``python -m tests.distributed.torch_worker WORLD OUT``; each rank writes
``OUT/rank<r>.pkl`` with its shard's loss, logit gradient and the number of
all-reduces each call made forward and backward."""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np

from tests.distributed import cases

DTYPES = ("float64", "float32", "bfloat16")


def _run(rank: int, world: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    import xent
    import xent.distributed

    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=world)
    counts = {"all_reduce": 0}
    real = dist.all_reduce

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        counts["all_reduce"] += 1
        return real(*args, **kwargs)

    dist.all_reduce = counted  # type: ignore[assignment]
    results = {}
    for padded, dtype, name, reduction in cases.grid(DTYPES):
        full = cases.padded_logits() if padded else cases.LOGITS
        widths = cases.widths(world, padded)
        start = sum(widths[:rank])
        shard = full[:, start:start + widths[rank]]
        options = cases.OPTIONS[name]
        labels = torch.from_numpy(cases.plain_labels(options))
        opts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
        x = torch.from_numpy(shard).to(getattr(torch, dtype)).requires_grad_(True)
        red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}
        counts["all_reduce"] = 0
        loss = xent.distributed.sparse_softmax_cross_entropy(
            x, labels, vocab_size=cases.V if padded else None, **opts, **red)
        forward = counts["all_reduce"]
        (loss.sum() if reduction == "none" else loss).backward()
        results[padded, dtype, name, reduction] = {
            "loss": loss.detach().double().numpy(), "grad": x.grad.double().numpy(),
            "forward": forward, "backward": counts["all_reduce"] - forward,
            "dtype": str(loss.dtype).removeprefix("torch."),
        }
    for key in cases.linear_grid(DTYPES):
        results[key] = _linear(rank, world, *key[1:], counts)
    results["dtensor"] = _dtensor(world)
    bad = cases.plain_labels({}).copy()
    bad[1] = cases.V  # one past the vocabulary
    try:
        xent.distributed.sparse_softmax_cross_entropy(torch.from_numpy(cases.LOGITS[:, :cases.widths(world, False)[rank]]),
                                                      torch.from_numpy(bad), vocab_start=0, vocab_size=cases.V)
        results["bad"] = "no error"
    except ValueError as exc:
        results["bad"] = str(exc)
    if world == 2:
        results["dp"] = _data_parallel(rank)
    with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


def _linear(rank: int, world: int, padded: bool, dtype: str, name: str, reduction: str, counts: dict) -> dict:
    """One linear case on this rank: the loss, d/dhidden (the whole loss's),
    this shard's d/dweight and d/dbias, and the all-reduces forward and backward."""
    import torch

    import xent.distributed

    head, bias = cases.linear_head(padded)
    widths = cases.widths(world, padded)
    start = sum(widths[:rank])
    part = slice(start, start + widths[rank])
    t = getattr(torch, dtype)
    h = torch.from_numpy(cases.HIDDEN).to(t).requires_grad_(True)
    w = torch.from_numpy(head[part]).to(t).requires_grad_(True)
    options = dict(cases.LINEAR_OPTIONS[name])
    b = None
    if "bias" in options:
        options.pop("bias")
        b = torch.from_numpy(bias[part]).to(t).requires_grad_(True)
    labels = torch.from_numpy(cases.plain_labels(options))
    opts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}
    counts["all_reduce"] = 0
    loss = xent.distributed.linear_cross_entropy(h, w, labels, bias=b, vocab_size=cases.V if padded else None,
                                                 chunk_size=3, **opts, **red)
    forward = counts["all_reduce"]
    (loss.sum() if reduction == "none" else loss).backward()
    return {"loss": loss.detach().double().numpy(), "dh": h.grad.double().numpy(), "dw": w.grad.double().numpy(),
            "db": None if b is None else b.grad.double().numpy(), "forward": forward,
            "backward": counts["all_reduce"] - forward, "dtype": str(loss.dtype).removeprefix("torch.")}


def _dtensor(world: int) -> dict:
    """The logits as a DTensor sharded on the class axis (torch's own even
    split): the loss with every option, and the full logit gradient."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    import xent.distributed

    mesh = init_device_mesh("cpu", (world,))
    z = distribute_tensor(torch.from_numpy(cases.LOGITS), mesh, [Shard(1)]).requires_grad_(True)
    options = cases.OPTIONS["everything"]
    opts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    loss = xent.distributed.sparse_softmax_cross_entropy(z, torch.from_numpy(cases.LABELS), reduction="mean",
                                                         **opts)
    loss.backward()
    return {"loss": loss.detach().numpy(), "grad": z.grad.full_tensor().numpy()}


def _data_parallel(rank: int) -> dict:
    """A DDP step of an LM head over 2 ranks whose micro-batches keep
    different numbers of tokens: the global count all-reduced, each rank's
    loss times the world size (DDP averages gradients): the weight gradient
    of the global token mean."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import xent

    rows = slice(0, 2) if rank == 0 else slice(2, cases.N)
    head = torch.nn.Linear(4, cases.V, bias=False, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(cases.HEAD))
    model = DistributedDataParallel(head)
    h, y = torch.from_numpy(cases.HIDDEN[rows]), torch.from_numpy(cases.DP_LABELS[rows])
    logits = model(h)
    count = xent.loss_denominator(xent.sparse_softmax_cross_entropy, logits, y, ignore_index=-100)
    dist.all_reduce(count)
    loss = xent.sparse_softmax_cross_entropy(logits, y, ignore_index=-100, reduction="mean", normalizer=count)
    (loss * dist.get_world_size()).backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    return {"loss": total.numpy(), "grad": head.weight.grad.numpy()}


def main() -> None:
    import torch.multiprocessing as mp

    world, out = int(sys.argv[1]), sys.argv[2]
    mp.spawn(_run, args=(world, out), nprocs=world, join=True)


if __name__ == "__main__":
    main()
