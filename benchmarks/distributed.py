"""Vocab-parallel cross-entropy: xent.distributed against gathering the logits
and against each framework's own tensor-parallel loss, per rank.

    .nox/all/bin/python benchmarks/distributed.py    # (from the repository root) the defaults:
        # --ranks 1,2,4 --tokens 2048 --vocab 32768 --dtype float32 --repeats 5 --frameworks torch,jax --device cpu
        # (about 2.5 minutes on 2 idle CPU cores)
    python benchmarks/distributed.py --tokens 64 --vocab 256 --ranks 1,2 --repeats 1 --json out.json

What it measures. The logits ``[tokens, vocab]`` are sharded over the class axis
across R ranks (R in ``--ranks``, each shard ``vocab / R`` contiguous classes);
the labels (the same on every rank, about 10% of them ``-100``) are global class
ids. Each method computes the mean loss and the gradient of the rank's logit
shard (forward + backward, one "step"):

* ``xent.distributed``: :func:`xent.distributed.sparse_softmax_cross_entropy`
  with ``reduction="mean", ignore_index=-100, label_smoothing=0.1``: one
  all-reduce MAX of the row maxima and one packed all-reduce SUM of
  ``[Σexp, target logit, smoothing sum]``, nothing in the backward. At R=1 the
  row is the single-device :func:`xent.sparse_softmax_cross_entropy` (same options).
* ``gather``: every rank gathers the whole logits and calls the single-device
  xent loss (same options). torch: ``dist.all_gather`` + ``torch.cat`` in an
  autograd function whose backward is the rank's slice of the full gradient
  (every rank computes the same loss, so no communication); JAX: inside
  ``shard_map``, ``jax.lax.all_gather(..., tiled=True)`` (public API, with
  ``check_vma=False``), whose transpose JAX makes a reduce-scatter of the
  gradient. Not run at R=1 (it is the single-device loss there).
* torch ``loss_parallel``: ``F.cross_entropy(dtensor, labels, ignore_index=-100)``
  under ``torch.distributed.tensor.parallel.loss_parallel()`` with the logits a
  DTensor ``Shard(1)`` over a 1-D CPU device mesh. It has no label smoothing:
  run without (marked "no smoothing"). R=1: plain ``F.cross_entropy``. If it
  fails, the row carries the exception instead of numbers.
* JAX ``optax GSPMD``: ``jax.jit`` of the masked mean of
  ``optax.softmax_cross_entropy_with_integer_labels`` (optax has no
  ignore_index: the ignored rows are masked out of the mean; no smoothing,
  marked) on logits placed with ``NamedSharding(mesh, P(None, "tp"))``: XLA's
  SPMD partitioner chooses the collectives.

How. Each (framework, R) runs in a fresh subprocess: for torch, R ranks
spawned with ``torch.multiprocessing.spawn`` on a gloo process group (a
``file://`` store; R=1: one process, no process group), each with
``torch.set_num_threads(max(1, cpus // R))``; for JAX, one process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=R``, the R host devices
running one SPMD program. The inputs are the same seeded arrays in both
frameworks (NumPy, standard normal times 2, cast to ``--dtype``). Columns:

* ``ms/step/rank``: median of ``--repeats`` timed steps after 2 warm-up steps
  (JAX compiles in the warm-up). torch: each rank times its own steps, each
  started after a barrier; the row shows the slowest rank's median (all ranks'
  are in the JSON). JAX: the wall time of the SPMD step (its devices run
  concurrently), i.e. per rank.
* ``peak MB/rank``: memory beyond the inputs during one step, the gradient
  included. torch: the CPU allocator's peak above what it held before the step,
  from the profiler's allocation and free events
  (``xent._bench.torch_cpu_peak_bytes``), max over ranks. JAX: XLA's plan for
  the per-device program, ``memory_analysis()`` temp bytes + output bytes
  (the loss and the gradient shard); temp alone is in the JSON.
* ``bytes/token/rank``: bytes one rank sends per token, analytically, with ring
  algorithms: an all-reduce of P bytes sends ``2(R-1)/R·P``; an all-gather
  whose result is P bytes, and a reduce-scatter of a P-byte input, send
  ``(R-1)/R·P``. With ``c`` the compute dtype's size (4: float32 for float32
  and bfloat16 inputs), ``s`` the logits' dtype size, V the vocabulary:

  - xent.distributed: ``2(R-1)/R · (c + 3c)`` (MAX of 1 value + SUM of 3 per
    token; 16 B at R=2 in float32). torch also all-gathers the R shard widths
    once per call (8R bytes, not per token).
  - gather, torch: ``(R-1)/R · V·s`` (forward only); JAX:
    ``2 · (R-1)/R · V·s`` (the all-gather, and the reduce-scatter in the backward).
  - loss_parallel: ``2(R-1)/R · (2c + s)`` (MAX of the row max and SUM of
    Σexp in the compute dtype, SUM of the target log-probability in the logits'
    dtype; nothing backward).
  - optax GSPMD: ``2(R-1)/R · 3s`` (what XLA's partitioner emits here: an
    all-reduce of the row max and one of [Σexp, target logit], in the logits'
    dtype; nothing backward).

  ``seen`` is the same ring formula applied to the collectives the step really
  ran: torch's ``dist`` and functional collectives wrapped for one step, JAX's
  collectives read from the compiled per-device HLO. (In bfloat16, XLA's CPU
  compiler converts the logits to float32 before its collectives, so JAX's
  ``seen`` is twice the analytic value for gather and optax GSPMD: the
  analytic column counts the logits' dtype.)
* ``loss``: rank 0's loss, a check (xent and gather agree; the unsmoothed
  methods agree with each other).

On this CPU host the R ranks (or R host devices) share the same cores, so
the per-rank time includes their contention, and gloo's CPU collectives stand
in for a GPU interconnect: the time column is not a speed-up measurement. The
memory column and bytes/token are the meaningful comparisons on a CPU host.
``--device cpu`` is the only device for now; on a GPU machine the next step is
the same measurement with NCCL and one GPU per rank (not implemented).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

IGNORE = -100
SMOOTHING = 0.1
IGNORED_FRACTION = 0.1
WARMUP = 2
METHODS = {
    "torch": ["xent.distributed", "gather", "loss_parallel"],
    "jax": ["xent.distributed", "gather", "optax GSPMD"],
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
COMPUTE_BYTES = 4  # (xent and torch compute in float32 for bfloat16 inputs)


# ----------------------------------------------------------------------------- shared
def make_inputs(tokens: int, vocab: int, seed: int = 0) -> tuple[Any, Any]:
    """The full float32 logits ``[tokens, vocab]`` (std 2) and int64 labels, about
    ``IGNORED_FRACTION`` of them ``IGNORE``: the same in every framework."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((tokens, vocab), dtype=np.float32) * 2
    y = rng.integers(0, vocab, tokens)
    y[rng.random(tokens) < IGNORED_FRACTION] = IGNORE
    return z, y


def ring_bytes(kind: str, payload: float, world: int) -> float:
    """Bytes one rank sends in a ring collective: ``payload`` is an all-reduce's
    buffer, an all-gather's result, a reduce-scatter's input."""
    if world <= 1:
        return 0.0
    if kind == "all_reduce":
        return 2 * (world - 1) / world * payload
    return (world - 1) / world * payload  # all_gather (result), reduce_scatter (input), all_to_all


def analytic_bytes(framework: str, method: str, world: int, vocab: int, dtype: str) -> float:
    """Bytes per token one rank sends (the formulas of the module's docstring)."""
    c, s = COMPUTE_BYTES, DTYPE_BYTES[dtype]
    if method == "xent.distributed":
        return ring_bytes("all_reduce", c + 3 * c, world)
    if method == "gather":
        sends = ring_bytes("all_gather", vocab * s, world)
        return 2 * sends if framework == "jax" else sends
    if method == "loss_parallel":
        return ring_bytes("all_reduce", 2 * c + s, world)
    if method == "optax GSPMD":
        return ring_bytes("all_reduce", 3 * s, world)
    raise ValueError(method)


def notes(method: str, world: int) -> str:
    out = []
    if method in ("loss_parallel", "optax GSPMD"):
        out.append("no smoothing")
    if world == 1:
        out.append({"xent.distributed": "single-device xent", "loss_parallel": "F.cross_entropy",
                    "optax GSPMD": "1 device"}.get(method, ""))
    return "; ".join(o for o in out if o)


def _timed(step: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- torch
def _torch_collective_counter() -> tuple[list[tuple[str, int]], Callable[[], None]]:
    """Wrap torch's collectives: ``(seen, undo)``, ``seen`` getting ``(kind,
    payload bytes)`` per call."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol

    seen: list[tuple[str, int]] = []
    saved: list[tuple[Any, str, Any]] = []

    def nbytes(t: Any) -> int:
        t = getattr(t, "_local_tensor", t)
        return t.numel() * t.element_size()

    sizes = {
        (dist, "all_reduce"): ("all_reduce", lambda t, *a, **k: nbytes(t)),
        (dist, "all_gather"): ("all_gather", lambda outs, t, *a, **k: nbytes(t) * len(outs)),
        (dist, "all_gather_into_tensor"): ("all_gather", lambda out, t, *a, **k: nbytes(out)),
        (dist, "reduce_scatter_tensor"): ("reduce_scatter", lambda out, t, *a, **k: nbytes(t)),
        (funcol, "all_reduce"): ("all_reduce", lambda t, *a, **k: nbytes(t)),
        (funcol, "all_gather_tensor"): ("all_gather", lambda t, *a, **k: nbytes(t) * dist.get_world_size()),
        (funcol, "reduce_scatter_tensor"): ("reduce_scatter", lambda t, *a, **k: nbytes(t)),
    }
    for (mod, name), (kind, size) in sizes.items():
        real = getattr(mod, name)
        saved.append((mod, name, real))

        def wrapped(*a: Any, _real: Any = real, _kind: str = kind, _size: Any = size, **k: Any) -> Any:
            seen.append((_kind, _size(*a, **k)))
            return _real(*a, **k)

        setattr(mod, name, wrapped)

    def undo() -> None:
        for mod, name, real in saved:
            setattr(mod, name, real)

    return seen, undo


def _torch_step(method: str, rank: int, world: int, z: Any, y: Any) -> Callable[[], Any]:
    """One forward + backward of ``method`` on this rank's shard ``z`` (a leaf):
    returns the loss."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    import xent

    if method == "xent.distributed":
        if world == 1:
            def loss() -> Any:
                return xent.sparse_softmax_cross_entropy(z, y, ignore_index=IGNORE, label_smoothing=SMOOTHING,
                                                         reduction="mean")
        else:
            import xent.distributed

            def loss() -> Any:
                return xent.distributed.sparse_softmax_cross_entropy(
                    z, y, ignore_index=IGNORE, label_smoothing=SMOOTHING, reduction="mean")
    elif method == "gather":
        class Gather(torch.autograd.Function):
            """All-gather of the class axis; backward: this rank's slice of the
            full gradient (every rank computes the same loss: no communication)."""

            @staticmethod
            def forward(ctx: Any, shard: Any) -> Any:  # type: ignore[override]
                parts = [torch.empty_like(shard) for _ in range(world)]
                dist.all_gather(parts, shard.contiguous())
                ctx.width = shard.shape[1]
                return torch.cat(parts, dim=1)

            @staticmethod
            def backward(ctx: Any, g: Any) -> Any:  # type: ignore[override]
                return g[:, rank * ctx.width:(rank + 1) * ctx.width]

        def loss() -> Any:
            return xent.sparse_softmax_cross_entropy(Gather.apply(z), y, ignore_index=IGNORE,
                                                     label_smoothing=SMOOTHING, reduction="mean")
    elif method == "loss_parallel":
        if world == 1:
            def loss() -> Any:
                return F.cross_entropy(z, y, ignore_index=IGNORE)
        else:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.tensor import DTensor, Shard
            from torch.distributed.tensor.parallel import loss_parallel

            mesh = init_device_mesh("cpu", (world,))

            def loss() -> Any:
                with loss_parallel():
                    value = F.cross_entropy(DTensor.from_local(z, mesh, [Shard(1)]), y, ignore_index=IGNORE)
                    value.backward()
                return value
            loss.backward_inside = True  # type: ignore[attr-defined]
    else:
        raise ValueError(method)

    def step() -> Any:
        z.grad = None
        value = loss()
        if not getattr(loss, "backward_inside", False):
            value.backward()
        return value

    return step


def _torch_rank(rank: int, world: int, cfg: dict[str, Any], out_dir: str) -> None:
    import torch

    from xent._bench import torch_cpu_peak_bytes

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
        sync = dist.barrier
    else:
        sync = lambda: None  # noqa: E731
    full, labels = make_inputs(cfg["tokens"], cfg["vocab"])
    width = cfg["vocab"] // world
    shard = torch.from_numpy(full[:, rank * width:(rank + 1) * width].copy()).to(getattr(torch, cfg["dtype"]))
    del full
    y = torch.from_numpy(labels)
    results: dict[str, Any] = {}
    for method in METHODS["torch"]:
        if method == "gather" and world == 1:
            continue
        if rank == 0:
            _progress(f"[torch R={world}] {method}")
        z = shard.clone().requires_grad_(True)
        try:
            step = _torch_step(method, rank, world, z, y)
            times = _timed(step, cfg["repeats"], sync)
            z.grad = None  # (freed before the profiler starts: its peak counts from here)
            gc.collect()
            sync()
            peak = torch_cpu_peak_bytes(step)
            sync()
            seen, undo = _torch_collective_counter()
            try:
                value = step()
            finally:
                undo()
            value = value.full_tensor() if hasattr(value, "full_tensor") else value
            results[method] = {"times_ms": times, "median_ms": statistics.median(times), "peak_bytes": peak,
                               "collectives": seen, "loss": float(value.detach().float())}
        except Exception as exc:  # (the row shows the error instead of numbers)
            results[method] = {"error": f"{type(exc).__name__}: {exc}".strip()}
        sync()
    results["_versions"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def torch_worker(cfg: dict[str, Any], world: int) -> dict[str, Any]:
    """Spawn ``world`` ranks and merge their results into one row per method."""
    out_dir = tempfile.mkdtemp(prefix="xent-dist-torch-")
    if world == 1:
        _torch_rank(0, 1, cfg, out_dir)
    else:
        import torch.multiprocessing as mp

        try:
            mp.spawn(_torch_rank, args=(world, cfg, out_dir), nprocs=world, join=True)
        except mp.ProcessExitedException as exc:
            # gloo's teardown can abort a rank after it wrote its results ("terminate called
            # without an active exception"); the results stand, a rank that failed earlier does not.
            if not all(os.path.exists(os.path.join(out_dir, f"rank{r}.json")) for r in range(world)):
                raise
            _progress(f"[torch R={world}] a rank aborted after writing its results: {exc}")
    ranks = []
    for r in range(world):
        with open(os.path.join(out_dir, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    merged: dict[str, Any] = {"_versions": ranks[0].pop("_versions")}
    for method, first in ranks[0].items():
        if "error" in first:
            merged[method] = first
            continue
        per = [rank[method] for rank in ranks]
        merged[method] = {
            "median_ms": max(p["median_ms"] for p in per), "median_ms_per_rank": [p["median_ms"] for p in per],
            "peak_bytes": max(p["peak_bytes"] for p in per), "peak_bytes_per_rank": [p["peak_bytes"] for p in per],
            "collectives": first["collectives"], "loss": first["loss"],
            "losses_per_rank": [p["loss"] for p in per],
        }
    return merged


# ----------------------------------------------------------------------------- JAX
_HLO_BYTES = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s64": 8, "u64": 8, "s32": 4, "u32": 4, "s16": 2,
              "u16": 2, "s8": 1, "u8": 1, "pred": 1}
_HLO_KINDS = {"all-reduce": "all_reduce", "all-gather": "all_gather", "reduce-scatter": "reduce_scatter",
              "all-to-all": "all_to_all", "collective-permute": "collective_permute"}


def hlo_collectives(text: str, world: int) -> list[tuple[str, int]]:
    """``(kind, payload bytes)`` of each collective in a compiled HLO module:
    an all-reduce's result, an all-gather's result, a reduce-scatter's input
    (its result times ``world``, the group being the whole mesh)."""
    import re

    out = []
    op = re.compile(r"=\s*(\(.*?\)|\S+)\s+(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)"
                    r"(-start)?\(")
    shape = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
    for line in text.splitlines():
        m = op.search(line)
        if not m:
            continue
        size = 0
        for dtype, dims in shape.findall(m.group(1)):
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            size += n * _HLO_BYTES.get(dtype, 4)
        kind = _HLO_KINDS[m.group(2)]
        out.append((kind, size * world if kind == "reduce_scatter" else size))
    return out


def jax_worker(cfg: dict[str, Any], world: int) -> dict[str, Any]:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={world}")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    try:
        from jax import shard_map
    except ImportError:  # (older JAX)
        from jax.experimental.shard_map import shard_map

    import xent
    import xent.distributed

    full, labels = make_inputs(cfg["tokens"], cfg["vocab"])
    mesh = Mesh(np.array(jax.devices()[:world]), ("tp",))
    z = jax.device_put(jnp.asarray(full).astype(cfg["dtype"]), NamedSharding(mesh, P(None, "tp")))
    y = jax.device_put(jnp.asarray(labels, jnp.int32), NamedSharding(mesh, P()))
    del full
    opts = {"ignore_index": IGNORE, "label_smoothing": SMOOTHING, "reduction": "mean"}

    def single(a: Any, b: Any) -> Any:
        return xent.sparse_softmax_cross_entropy(a, b, **opts)

    def vocab_parallel(a: Any, b: Any) -> Any:
        return xent.distributed.sparse_softmax_cross_entropy(a, b, group="tp", **opts)

    def gathered(a: Any, b: Any) -> Any:
        return xent.sparse_softmax_cross_entropy(jax.lax.all_gather(a, "tp", axis=1, tiled=True), b, **opts)

    def optax_mean(a: Any, b: Any) -> Any:
        keep = b != IGNORE
        per = optax.softmax_cross_entropy_with_integer_labels(a, jnp.where(keep, b, 0))
        return jnp.sum(jnp.where(keep, per, 0)) / jnp.sum(keep)

    def sharded(f: Any, check: bool = True) -> Any:
        specs = {"mesh": mesh, "in_specs": (P(None, "tp"), P()), "out_specs": P()}
        if check:
            return shard_map(f, **specs)
        try:
            return shard_map(f, **specs, check_vma=False)
        except TypeError:  # (older JAX)
            return shard_map(f, **specs, check_rep=False)

    results: dict[str, Any] = {"_versions": {"jax": jax.__version__, "optax": optax.__version__}}
    for method in METHODS["jax"]:
        if method == "gather" and world == 1:
            continue
        _progress(f"[jax R={world}] {method}")
        try:
            if method == "xent.distributed":
                f = single if world == 1 else sharded(vocab_parallel)
            elif method == "gather":
                f = sharded(gathered, check=False)
            else:
                f = optax_mean
            step = jax.jit(jax.value_and_grad(f))
            times = _timed(lambda: jax.block_until_ready(step(z, y)), cfg["repeats"], lambda: None)
            compiled = step.lower(z, y).compile()
            memory = compiled.memory_analysis()
            loss, grad = step(z, y)
            assert grad.sharding.is_equivalent_to(z.sharding, z.ndim), grad.sharding
            results[method] = {
                "times_ms": times, "median_ms": statistics.median(times),
                "peak_bytes": memory.temp_size_in_bytes + memory.output_size_in_bytes,
                "temp_bytes": memory.temp_size_in_bytes, "output_bytes": memory.output_size_in_bytes,
                "collectives": hlo_collectives(compiled.as_text(), world), "loss": float(loss),
            }
        except Exception as exc:
            results[method] = {"error": f"{type(exc).__name__}: {exc}".strip()}
    return results


# ----------------------------------------------------------------------------- driver
def _row(framework: str, method: str, world: int, r: dict[str, Any] | None, cfg: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"framework": framework, "method": method, "ranks": world, "notes": notes(method, world),
                           "bytes_per_token": analytic_bytes(framework, method, world, cfg["vocab"], cfg["dtype"])}
    if r is None:
        row["error"] = "no result (the worker failed: see stderr)"
        return row
    if "error" in r:
        row["error"] = r["error"]
        return row
    row.update(r)
    row["seen_bytes_per_token"] = sum(ring_bytes(kind, size, world) for kind, size in r["collectives"]) / cfg["tokens"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | ranks | ms/step/rank | peak MB/rank | bytes/token/rank | seen | loss | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            err = " ".join(r["error"].split())[:300].replace("|", "\\|")
            lines.append(f"| {r['method']} | {r['ranks']} | — | — | {r['bytes_per_token']:.1f} | — | — | "
                         f"{'; '.join(filter(None, [r['notes'], 'ERROR: ' + err]))} |")
            continue
        lines.append(f"| {r['method']} | {r['ranks']} | {r['median_ms']:.1f} | {r['peak_bytes'] / 2**20:.1f} | "
                     f"{r['bytes_per_token']:.1f} | {r['seen_bytes_per_token']:.1f} | {r['loss']:.5f} | "
                     f"{r['notes']} |")
    return "\n".join(lines)


def _ranks(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated rank counts expected, got {text!r}") from None
    if not out or any(r < 1 for r in out):
        raise argparse.ArgumentTypeError(f"rank counts must be >= 1, got {text!r}")
    return out


def _frameworks(text: str) -> list[str]:
    out = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in out if t not in METHODS]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"frameworks: a comma-separated subset of torch,jax; got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="CPU only for now (--device cpu): on a GPU machine the next step is the same measurement "
               "with NCCL and one GPU per rank, which this script does not implement. On a CPU host the "
               "ranks share the cores: compare the memory and bytes/token columns, not the times.")
    ap.add_argument("--ranks", type=_ranks, default=[1, 2, 4], help="rank counts (default 1,2,4)")
    ap.add_argument("--tokens", type=int, default=2048, help="rows of the logits (default 2048)")
    ap.add_argument("--vocab", type=int, default=32768, help="classes, divisible by every rank count (default 32768)")
    ap.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32", help="logits dtype (default float32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per row, after 2 warm-up steps (default 5)")
    ap.add_argument("--frameworks", type=_frameworks, default=["torch", "jax"], help="torch,jax (default both)")
    ap.add_argument("--device", choices=["cpu"], default="cpu",
                    help="cpu only (gloo / forced host devices); NCCL on GPUs is the next step, not implemented")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per (framework, ranks) worker (default 900)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--world", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = {"tokens": args.tokens, "vocab": args.vocab, "dtype": args.dtype, "repeats": args.repeats}
    if args.worker:
        result = (torch_worker if args.worker == "torch" else jax_worker)(cfg, args.world)
        with open(args.out, "w") as f:
            json.dump(result, f)
        return 0

    bad = [r for r in args.ranks if args.vocab % r]
    if bad:
        ap.error(f"--vocab {args.vocab} is not divisible by ranks {bad}")
    load = os.getloadavg()
    _progress(f"vocab-parallel cross-entropy: tokens={args.tokens} vocab={args.vocab} {args.dtype} on cpu "
              f"({os.cpu_count()} CPUs, load average {load[0]:.2f}); ranks {args.ranks}; median of "
              f"{args.repeats} after {WARMUP} warm-up steps")
    tmp = tempfile.mkdtemp(prefix="xent-dist-")
    rows: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    started = time.perf_counter()
    for framework in args.frameworks:
        for world in args.ranks:
            out = os.path.join(tmp, f"{framework}-{world}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--world", str(world),
                   "--out", out, "--tokens", str(args.tokens), "--vocab", str(args.vocab), "--dtype", args.dtype,
                   "--repeats", str(args.repeats)]
            env = dict(os.environ)
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            if framework == "jax":
                env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={world}"
                env.setdefault("JAX_PLATFORMS", "cpu")
            t = time.perf_counter()
            _progress(f"[{framework} R={world}] worker starting")
            result: dict[str, Any] | None = None
            try:
                proc = subprocess.run(cmd, stdout=sys.stderr, env=env, timeout=args.timeout)
                if proc.returncode == 0 and os.path.exists(out):
                    with open(out) as f:
                        result = json.load(f)
                else:
                    _progress(f"[{framework} R={world}] worker failed (exit status {proc.returncode})")
            except subprocess.TimeoutExpired:
                _progress(f"[{framework} R={world}] worker timed out after {args.timeout:.0f} s")
            _progress(f"[{framework} R={world}] done in {time.perf_counter() - t:.1f} s")
            if result is not None:
                versions.update(result.pop("_versions", {}))
            for method in METHODS[framework]:
                if method == "gather" and world == 1:
                    continue
                rows.append(_row(framework, method, world, None if result is None else result.get(method), cfg))
    _progress(f"total {time.perf_counter() - started:.1f} s")

    print(f"tokens={args.tokens} vocab={args.vocab} dtype={args.dtype} device=cpu ({os.cpu_count()} CPUs, "
          f"load average at start {load[0]:.2f}); median of {args.repeats} steps after {WARMUP} warm-up; "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "threads"))
    for framework in args.frameworks:
        order = METHODS[framework]
        mine = sorted((r for r in rows if r["framework"] == framework),
                      key=lambda r: (order.index(r["method"]), r["ranks"]))
        print(f"\n### {framework}\n")
        print(table(mine))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": {**cfg, "ranks": args.ranks, "warmup": WARMUP, "cpus": os.cpu_count(),
                                  "load_average": load, "versions": versions}, "rows": rows}, f, indent=2)
    return 0 if all("error" not in r or r["method"] == "loss_parallel" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
