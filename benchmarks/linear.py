"""Linear + cross-entropy (LM head): xent.linear_cross_entropy against the naive
computation and the fused implementations that exist.

    python benchmarks/linear.py                      # CPU size: 1024 x 512 -> 32768, bfloat16
    python benchmarks/linear.py --size gpu           # 8192 x 4096 -> 128256, bfloat16, on CUDA
    python benchmarks/linear.py --device gpu         # the CPU size on the GPU
    python benchmarks/linear.py --impls xent-torch,torch-naive --dtype float32 --json out.json

Each implementation runs in its own subprocess (so one's memory or compiler state
cannot leak into another's numbers) on the same inputs (seeded), with
``reduction="mean"``, no other options. ``--device cpu|gpu`` (``cuda`` = ``gpu``;
default: the size's, ``cpu`` for ``--size cpu``) is where the inputs are made and
the calls run, as in ``xent bench --device``: torch's first CUDA device (each timed
call waits for the GPU), JAX's first GPU, TF's ``/GPU:0``; the workers start with
JAX's and TF's GPU preallocation off, and a framework that sees no GPU fails the
run (exit status 1) with a message that names it. Reported per implementation:

* ``fwd ms``, ``fwd+bwd ms``: median of ``--repeats`` timed calls after one warm-up
  (torch.compile and jax.jit compile during the warm-up);
* ``peak MB``: memory beyond the inputs during one fwd+bwd call, gradients
  included (torch on CUDA: ``torch.cuda.max_memory_allocated``; torch on the
  CPU: the allocator's own allocation and free events, from the profiler;
  TensorFlow on the GPU: the allocator's peak (``get_memory_info``), on the
  CPU: the BFC allocator's peak, in a second process started with
  ``TF_CPU_ALLOCATOR_USE_BFC=true``; JAX on the GPU: the allocator's
  ``peak_bytes_in_use``, which has no reset, so it also counts the timed calls
  and the compile's scratch (an upper bound), on the CPU: the process's
  resident set, sampled every 0.5 ms by a thread, indicative only, as its
  allocator keeps freed memory; JAX also: the temporary bytes XLA plans);
* ``loss err``, ``dh err``, ``dW err``: ``‖x - ref‖ / ‖ref‖`` against a float64
  computation of the same (rounded) inputs, done chunk by chunk in the parent.

Implementations: ``torch-naive`` (``F.cross_entropy((h @ W.T).float(), y)``),
``torch-compile`` (the same under ``torch.compile``), ``torch-lce``
(``F.linear_cross_entropy`` with ``torch.nn.LinearCrossEntropyOptions()``, its
chunked path; torch >= 2.13), ``liger`` (``LigerFusedLinearCrossEntropyLoss``,
where liger-kernel and a GPU are available), ``xent-torch``, ``jax-naive``
(optax-style, jitted), ``xent-jax`` (jitted), ``tf-naive``
(``tf.nn.sparse_softmax_cross_entropy_with_logits`` of the float32 logits, in a
``tf.function``), ``xent-tf`` (in a ``tf.function``); ``xent-torch@256`` /
``xent-jax@256`` / ``xent-tf@256`` are xent with ``chunk_size=256`` instead of
the default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: each size's device where --device is not given
SIZES = {
    "cpu": {"tokens": 1024, "hidden": 512, "vocab": 32768, "device": "cpu"},
    "gpu": {"tokens": 8192, "hidden": 4096, "vocab": 128256, "device": "cuda"},
}
IMPLS = ["torch-naive", "torch-compile", "torch-lce", "liger", "xent-torch", "xent-torch@256",
         "jax-naive", "xent-jax", "xent-jax@256", "tf-naive", "xent-tf", "xent-tf@256"]


def _chunk(name: str) -> int | None:
    """``xent-torch@256``: xent with chunk_size=256 (default chunk_size without ``@``)."""
    return int(name.split("@")[1]) if "@" in name else None


# ----------------------------------------------------------------------------- inputs
def make_inputs(cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Seeded hidden [N, H], weight [V, H] (in cfg["dtype"]) and labels [N], on the CPU."""
    import torch

    g = torch.Generator().manual_seed(0)
    n, d, v = cfg["tokens"], cfg["hidden"], cfg["vocab"]
    dtype = getattr(torch, cfg["dtype"])
    h = torch.randn(n, d, generator=g).to(dtype)
    W = (torch.randn(v, d, generator=g) * (2.0 / d**0.5)).to(dtype)  # logits of std about 2
    y = torch.randint(0, v, (n,), generator=g)
    return h, W, y


def reference(cfg: dict[str, Any], path: str) -> None:
    """Loss, dh and dW of the mean cross-entropy in float64, chunk by chunk."""
    import numpy as np
    import torch

    h, W, y = make_inputs(cfg)
    # (with a torch without CUDA, on the CPU: JAX and TF may still see a GPU)
    dev = cfg["device"] if cfg["device"] == "cpu" or torch.cuda.is_available() else "cpu"
    h, W, y = h.to(dev, torch.float64), W.to(dev, torch.float64), y.to(dev)
    n = h.shape[0]
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    dh = torch.empty_like(h)
    dW = torch.zeros_like(W)
    for s in range(0, n, 1024):
        z = h[s : s + 1024] @ W.T
        lse = torch.logsumexp(z, 1)
        loss += (lse - z.gather(1, y[s : s + 1024, None])[:, 0]).sum()
        g = torch.exp(z - lse[:, None])
        g[torch.arange(g.shape[0], device=dev), y[s : s + 1024]] -= 1
        g /= n
        dh[s : s + 1024] = g @ W
        dW += g.T @ h[s : s + 1024]
    np.savez(path, loss=(loss / n).cpu().numpy(), dh=dh.cpu().numpy(), dW=dW.cpu().numpy())
    if dev != "cpu":  # the workers share the GPU with this process: its cached blocks go back
        del h, W, y, loss, dh, dW, z, lse, g
        torch.cuda.empty_cache()


def device(name: str, cfg: dict[str, Any]) -> Any:
    """Where ``name``'s framework makes its inputs and runs (``xent bench``'s choice):
    a torch device, a JAX device or a TF placement context; RuntimeError, naming
    the framework, where it sees no GPU."""
    from xent._bench import _jax_device, _tf_placement, _torch_device

    where = "cpu" if cfg["device"] == "cpu" else "gpu"
    if "jax" in name:  # (as the worker dispatches)
        return _jax_device(where)
    if "tf" in name:
        return _tf_placement(where)
    return _torch_device(where)


# ----------------------------------------------------------------------------- worker
class PeakRSS:
    """Highest resident set size seen by a sampling thread while active (bytes)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.0005)

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.rss())


def torch_impl(name: str, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """(loss function of (h, W), a function that reads (dh, dW) back) for a torch impl."""
    import torch
    import torch.nn.functional as F

    _, _, y = make_inputs(cfg)
    y = y.to(cfg["device"])
    if name in ("torch-naive", "torch-compile"):
        def fn(h, W):  # type: ignore[no-untyped-def]
            return F.cross_entropy((h @ W.T).float(), y)
        if name == "torch-compile":
            fn = torch.compile(fn)
    elif name == "torch-lce":
        if not hasattr(F, "linear_cross_entropy"):
            raise RuntimeError("torch.nn.functional.linear_cross_entropy needs torch >= 2.13")
        options = torch.nn.LinearCrossEntropyOptions()

        def fn(h, W):  # type: ignore[no-untyped-def]
            return F.linear_cross_entropy(h, W, y, options=options)
    elif name == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        module = LigerFusedLinearCrossEntropyLoss()

        def fn(h, W):  # type: ignore[no-untyped-def]
            return module(W, h, y)
    elif name.startswith("xent-torch"):
        import xent

        def fn(h, W):  # type: ignore[no-untyped-def]
            return xent.linear_cross_entropy(h, W, y, chunk_size=_chunk(name))
    else:
        raise ValueError(name)
    return fn, None


def run_torch(name: str, cfg: dict[str, Any], repeats: int) -> dict[str, Any]:
    import torch

    dev = device(name, cfg)
    fn, _ = torch_impl(name, cfg)
    h, W, _ = make_inputs(cfg)
    h, W = h.to(dev).requires_grad_(), W.to(dev).requires_grad_()
    cuda = dev.type == "cuda"
    # (CUDA calls return before the GPU is done: each clock stops after it is)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def fwd():  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return fn(h, W)

    def fwd_bwd():  # type: ignore[no-untyped-def]
        h.grad = W.grad = None
        loss = fn(h, W)
        loss.backward()
        return loss

    def timed(f):  # type: ignore[no-untyped-def]
        f()
        sync()
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            sync()
            out.append((time.perf_counter() - t) * 1e3)
        return statistics.median(out)

    t_fwd = timed(fwd)
    t_both = timed(fwd_bwd)
    h.grad = W.grad = None
    out: list[Any] = []
    if cuda:
        from xent._bench import _torch_gpu_peak_mb

        peak_mb = _torch_gpu_peak_mb(lambda: out.append(fwd_bwd()))
    else:
        from xent._bench import torch_cpu_peak_bytes

        peak_mb = torch_cpu_peak_bytes(lambda: out.append(fwd_bwd())) / 2**20
    loss = out[0]
    return {"fwd_ms": t_fwd, "fwd_bwd_ms": t_both, "peak_mb": peak_mb,
            "loss": float(loss), "dh": h.grad.double().cpu().numpy(), "dW": W.grad.double().cpu().numpy()}


def run_jax(name: str, cfg: dict[str, Any], repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import xent

    dev = device(name, cfg)
    h, W, y = (jax.device_put(jnp.asarray(t.float().numpy()), dev) for t in make_inputs(cfg))
    h, W = h.astype(cfg["dtype"]), W.astype(cfg["dtype"])
    y = jax.device_put(jnp.asarray(y, jnp.int32), dev)

    if name == "jax-naive":
        def loss_fn(a, w):  # type: ignore[no-untyped-def]
            z = (a @ w.T).astype(jnp.float32)
            return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, y[:, None], -1)[:, 0])
    else:
        def loss_fn(a, w):  # type: ignore[no-untyped-def]
            return xent.linear_cross_entropy(a, w, y, chunk_size=_chunk(name))

    fwd = jax.jit(loss_fn)
    both = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

    def timed(f):  # type: ignore[no-untyped-def]
        jax.block_until_ready(f(h, W))
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(f(h, W))
            out.append((time.perf_counter() - t) * 1e3)
        return statistics.median(out)

    t_fwd, t_both = timed(fwd), timed(both)
    planned = both.lower(h, W).compile().memory_analysis()
    if dev.platform == "cpu":
        with PeakRSS() as p:
            loss, (dh, dW) = jax.block_until_ready(both(h, W))
        peak_mb = (p.peak - p.base) / 2**20
    else:  # the allocator's peak over the process's life (no reset): an upper bound
        stats = dev.memory_stats() or {}
        loss, (dh, dW) = jax.block_until_ready(both(h, W))
        peak_mb = float("nan")
        if "peak_bytes_in_use" in stats:
            peak_mb = (dev.memory_stats()["peak_bytes_in_use"] - stats["bytes_in_use"]) / 2**20
    return {"fwd_ms": t_fwd, "fwd_bwd_ms": t_both, "peak_mb": peak_mb,
            "xla_temp_mb": planned.temp_size_in_bytes / 2**20, "loss": float(loss),
            "dh": np.asarray(dh, np.float64), "dW": np.asarray(dW, np.float64)}


def run_tf(name: str, cfg: dict[str, Any], repeats: int, memory: bool = False) -> dict[str, Any]:
    """Times with TensorFlow's default CPU allocator; with ``memory``, only the peak
    instead, from the BFC allocator's statistics (the default CPU allocator keeps
    none), in a process of its own. On the GPU, the peak comes with the times,
    from the GPU allocator's statistics."""
    if memory:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # read when TensorFlow starts
    import numpy as np
    import tensorflow as tf

    import xent

    placement = device(name, cfg)
    h, W, y = (t.float().numpy() for t in make_inputs(cfg))
    with placement:
        h, W = tf.cast(tf.constant(h), cfg["dtype"]), tf.cast(tf.constant(W), cfg["dtype"])
        y = tf.constant(y.astype(np.int64))

    if name == "tf-naive":
        def loss_fn(a, w):  # type: ignore[no-untyped-def]
            z = tf.cast(tf.matmul(a, w, transpose_b=True), tf.float32)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, z))
    else:
        def loss_fn(a, w):  # type: ignore[no-untyped-def]
            return xent.linear_cross_entropy(a, w, y, chunk_size=_chunk(name))

    fwd = tf.function(loss_fn)

    @tf.function
    def both(a, w):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch([a, w])
            value = loss_fn(a, w)
        return value, tape.gradient(value, [a, w])

    def call(f):  # type: ignore[no-untyped-def]
        with placement:
            return f(h, W)

    def timed(f):  # type: ignore[no-untyped-def]
        tf.nest.map_structure(lambda t: t.numpy(), call(f))
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), call(f))
            out.append((time.perf_counter() - t) * 1e3)
        return statistics.median(out)

    if memory:
        call(both)  # trace and warm up
        tf.config.experimental.reset_memory_stats("CPU:0")
        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
        call(both)  # (the peak is a high-water mark: it keeps the outputs' bytes)
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
        return {"peak_mb": peak / 2**20}
    t_fwd, t_both = timed(fwd), timed(both)
    result: dict[str, Any] = {"fwd_ms": t_fwd, "fwd_bwd_ms": t_both}
    if cfg["device"] != "cpu":
        from xent._bench import _tf_gpu_peak_mb

        result["peak_mb"] = _tf_gpu_peak_mb(lambda: call(both)[0].numpy())
    loss, (dh, dW) = call(both)
    loss, dh, dW = float(loss), tf.cast(dh, tf.float64).numpy(), tf.cast(dW, tf.float64).numpy()
    return {**result, "loss": loss, "dh": dh, "dW": dW}


def worker(name: str, cfg: dict[str, Any], repeats: int, ref_path: str, out_path: str) -> None:
    import numpy as np

    if name.endswith(":memory"):  # TensorFlow's peak, in a process of its own
        with open(out_path, "w") as f:
            json.dump(run_tf(name.removesuffix(":memory"), cfg, repeats, memory=True), f)
        return
    try:
        device(name, cfg)  # first: a framework that sees no GPU fails the run (not skipped)
    except RuntimeError as exc:
        with open(out_path, "w") as f:
            json.dump({"error": str(exc)}, f)
        return
    run = run_jax if "jax" in name else run_tf if "tf" in name else run_torch
    result = run(name, cfg, repeats)
    ref = np.load(ref_path)

    def rel(a: Any, b: Any) -> float:
        return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))

    result["loss_err"] = abs(result["loss"] - float(ref["loss"])) / abs(float(ref["loss"]))
    result["dh_err"] = rel(result.pop("dh"), ref["dh"])
    result["dW_err"] = rel(result.pop("dW"), ref["dW"])
    with open(out_path, "w") as f:
        json.dump(result, f)


# ----------------------------------------------------------------------------- driver
def _command(args: argparse.Namespace) -> str:
    """The command that reproduces this run (what its JSON file says)."""
    parts = ["python benchmarks/linear.py"]
    if args.size != "cpu":
        parts.append(f"--size {args.size}")
    if args.device:
        parts.append(f"--device {args.device}")
    if args.dtype != "bfloat16":
        parts.append(f"--dtype {args.dtype}")
    if args.impls != ",".join(IMPLS):
        parts.append(f"--impls {args.impls}")
    if args.repeats != 3:
        parts.append(f"--repeats {args.repeats}")
    return " ".join(parts + [f"--json {args.json}"])


def _machine() -> dict[str, Any]:
    """The CPU, its cores and memory, and the versions of what the workers import."""
    import platform
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0))}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    for dist in ("numpy", "torch", "tensorflow", "jax", "liger-kernel"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
    ap.add_argument("--device", choices=["cpu", "gpu", "cuda"],
                    help="where inputs are made and calls run (gpu = cuda; default: the size's, cpu for "
                         "--size cpu, gpu for --size gpu)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = dict(SIZES[args.size], dtype=args.dtype)
    if args.device:
        cfg["device"] = "cpu" if args.device == "cpu" else "cuda"
    if args.worker:
        worker(args.worker, cfg, args.repeats, args.ref, args.out)
        return 0

    print(f"linear cross-entropy: tokens={cfg['tokens']} hidden={cfg['hidden']} vocab={cfg['vocab']} "
          f"{cfg['dtype']} on {cfg['device']}; median of {args.repeats}", flush=True)
    tmp = tempfile.mkdtemp(prefix="xent-linear-")
    ref_path = os.path.join(tmp, "ref.npz")
    reference(cfg, ref_path)
    rows = []
    failed = False
    # No worker takes most of the GPU's memory up front: JAX and TF grow their pools
    # as they need (a worker on the CPU needs none of it).
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    header = f"{'impl':<16}{'fwd ms':>10}{'fwd+bwd ms':>12}{'peak MB':>10}{'loss err':>10}{'dh err':>10}{'dW err':>10}"
    print(header, flush=True)
    for name in args.impls.split(","):
        out = os.path.join(tmp, f"{name}.json")
        cmd = [sys.executable, __file__, "--worker", name, "--size", args.size, "--dtype", args.dtype,
               "--device", cfg["device"], "--repeats", str(args.repeats), "--ref", ref_path, "--out", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode or not os.path.exists(out):
            reason = (proc.stderr.strip().splitlines() or ["failed"])[-1][:100]
            print(f"{name:<16}skipped: {reason}", flush=True)
            rows.append({"impl": name, "skipped": reason})
            continue
        with open(out) as f:
            r = json.load(f)
        if "error" in r:  # its framework sees no GPU
            print(f"{name:<16}error: {r['error']}", flush=True)
            rows.append({"impl": name, "error": r["error"]})
            failed = True
            continue
        if "tf" in name and "peak_mb" not in r:  # (as the worker dispatches; on the GPU it came with the times)
            mem = os.path.join(tmp, f"{name}.memory.json")
            r["peak_mb"] = float("nan")
            if not subprocess.run([*cmd[:3], f"{name}:memory", *cmd[4:-1], mem], capture_output=True,
                                  env=env).returncode:
                with open(mem) as f:
                    r.update(json.load(f))
        r["impl"] = name
        rows.append(r)
        extra = f"  (XLA temp {r['xla_temp_mb']:.0f} MB)" if "xla_temp_mb" in r else ""
        print(f"{name:<16}{r['fwd_ms']:>10.1f}{r['fwd_bwd_ms']:>12.1f}{r['peak_mb']:>10.0f}"
              f"{r['loss_err']:>10.1e}{r['dh_err']:>10.1e}{r['dW_err']:>10.1e}{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cfg, "command": _command(args), "date": time.strftime("%Y-%m-%d"),
                       "machine": _machine(), "results": rows}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
