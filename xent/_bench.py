"""``xent bench``: xent against each framework's own loss, same inputs, one process per framework.

For every installed framework (NumPy, PyTorch, TensorFlow, JAX) and every cell
of loss × size × dtype × forward / forward+backward × eager / compiled, the
xent call and the native one are timed A/B interleaved (ABAB, then BABA, so
drift hits both), each sample long enough for the clock, and the median of the
per-pair ratios xent/native is reported with the median times, the per-call
difference in microseconds and the peak memory each call takes beyond its
inputs.

Each framework is measured in a fresh process of its own (``python -m xent
bench`` restricted to it, writing its cells to a JSON file this process reads):
in one process, JAX's and TF's GPU preallocation, allocator pools and thread
pools would weigh on the others' numbers. A run of one framework stays in
process.

Native anchors: ``torch.nn.functional.cross_entropy`` /
``binary_cross_entropy_with_logits``; ``tf.nn.sparse_softmax_cross_entropy_with_logits``
/ ``softmax_cross_entropy_with_logits`` / ``sigmoid_cross_entropy_with_logits``;
``optax.losses.*``. Compiled means ``torch.compile``, ``tf.function(jit_compile=True)``
and ``jax.jit``, applied to both sides. NumPy has no native loss: its anchor is the
best straightforward NumPy formula (max-shift, exp, sum, log, gather), with
``scipy.special.log_softmax`` + gather and one read of the logits (the memory
bandwidth floor) measured alongside.

Used by ``xent bench`` (through :func:`add_arguments` and :func:`run`) and by
``python benchmarks/run.py``. matplotlib is imported only to draw ``--png``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

import xent
from xent._progress import Progress
from xent._registry import BUILTIN_BACKENDS

FULL_SIZES = [(32, 10), (256, 1000), (4096, 32000)]
QUICK_SIZES = [(32, 10), (256, 1000)]
LOSSES = ("sparse", "dense", "sigmoid")
BACKENDS = BUILTIN_BACKENDS
DTYPES = ("float32", "bfloat16")
MODULES = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow", "jax": "optax"}

Fn = Callable[[], Any]
#: interleaved pairs per large cell at least: a large call takes 0.05-4 s on
#: a 2-core VM, so the 1 s budget alone gives 1-10 pairs. With 3, the median
#: moved cells by up to 0.2 between runs of unchanged code (TF XLA sigmoid
#: float32 forward: 1.22x; 0.99x with 9).
LARGE_MIN_PAIRS = 7
SMALL_MIN_PAIRS = 5  # (small cells: the 0.25 s budget gives dozens)


@dataclass
class Cell:
    backend: str
    loss: str
    n: int
    c: int
    dtype: str
    mode: str  # "fwd" or "fwd+bwd"
    compiled: bool
    #: "cpu" or "gpu": where the inputs are made and the calls run
    device: str = "cpu"
    anchor: str = ""
    native_ms: float = float("nan")
    xent_ms: float = float("nan")
    ratio: float = float("nan")
    ratio_p25: float = float("nan")
    ratio_p75: float = float("nan")
    delta_us: float = float("nan")
    native_mem_mb: float | None = None
    xent_mem_mb: float | None = None
    pairs: int = 0
    calls_per_sample: int = 0
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return f"{self.n}x{self.c}"

    def label(self) -> str:
        kind = "jit" if self.compiled else "eager"
        return f"{self.backend} {self.loss} {self.size} {self.dtype} {self.mode} {kind}"


# -------------------------------------------------------------------- timing
def _once(f: Fn) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def time_ab(
    xent_fn: Fn, native_fn: Fn, budget_s: float, min_pairs: int = 3, max_pairs: int = 200,
    warmup: int = 2, warmup_s: float = 0.0,
) -> dict[str, float]:
    """Interleaved A/B timing: medians of per-call times and of the per-pair ratios.

    Both functions are warmed up first, ``warmup`` calls each and then on
    until each has run ``warmup_s`` seconds (compiles happen there: TF's eager
    calls are compiled once a signature's op-by-op calls have taken about one
    compile's time, ``xent.backends.tensorflow.compile_cache.COMPILE_AFTER_S``). Each sample runs
    a function ``k`` times in a row, with ``k`` chosen so a sample lasts about a
    millisecond; pairs alternate which side runs first.
    """
    for f in (xent_fn, native_fn):
        started, calls = time.perf_counter(), 0
        while calls < warmup or (time.perf_counter() - started < warmup_s and calls < 100_000):
            f()
            calls += 1
    ta, tb = _once(xent_fn), _once(native_fn)
    k = max(1, min(1000, int(1e-3 / max(min(ta, tb), 1e-7))))
    pairs = int(budget_s / max((ta + tb) * k, 1e-9))
    pairs = max(min_pairs, min(max_pairs, pairs))
    xs, ns, ratios = [], [], []
    for i in range(pairs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        got = [0.0, 0.0]
        for side in order:
            f = xent_fn if side == 0 else native_fn
            t0 = time.perf_counter()
            for _ in range(k):
                f()
            got[side] = (time.perf_counter() - t0) / k
        xs.append(got[0])
        ns.append(got[1])
        ratios.append(got[0] / got[1])
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "xent_s": statistics.median(xs),
        "native_s": statistics.median(ns),
        "ratio": statistics.median(ratios),
        "ratio_p25": q[0],
        "ratio_p75": q[2],
        "delta_s": statistics.median(a - b for a, b in zip(xs, ns)),
        "pairs": pairs,
        "k": k,
    }


# -------------------------------------------------------------------- memory
def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name):
                return int(line.split()[1])
    return -1


def _rss_peak_mb(f: Fn) -> float | None:
    """Peak resident memory during ``f()`` beyond what was resident before, in MB.

    Linux only: the high-water mark is reset through ``/proc/self/clear_refs``.
    It counts pages the process touched, so allocator pools that a framework
    keeps from earlier calls are not counted again (a lower bound).
    """
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _rss_kb("VmRSS:")
        f()
        peak = _rss_kb("VmHWM:")
    except OSError:
        return None
    return max(0.0, (peak - before) / 1024)


def _traced_peak_mb(f: Fn) -> float:
    """Peak NumPy allocation during ``f()`` beyond what was allocated before, in MB
    (NumPy reports its buffers to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        f()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return max(0.0, (peak - before) / 2**20)


def _torch_gpu_peak_mb(f: Fn) -> float | None:
    """Peak CUDA memory during ``f()`` beyond what was allocated before, in MB
    (torch's caching allocator's own count)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    f()
    return max(0.0, (torch.cuda.max_memory_allocated() - before) / 2**20)


def _tf_gpu_peak_mb(f: Fn) -> float | None:
    """Peak GPU memory during ``f()`` beyond what was in use before, in MB (TF's
    allocator's own count)."""
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("GPU:0")
    before = tf.config.experimental.get_memory_info("GPU:0")["current"]
    f()
    return max(0.0, (tf.config.experimental.get_memory_info("GPU:0")["peak"] - before) / 2**20)


#: a framework allocator's peak on the GPU; JAX's has no reset (its column stays empty)
_DEVICE_PEAKS: dict[str, Callable[[Fn], float | None]] = {"torch": _torch_gpu_peak_mb, "tensorflow": _tf_gpu_peak_mb}


def torch_cpu_peak_bytes(fn: Fn) -> int:
    """The most bytes torch's CPU allocator held at once during ``fn()``, above
    what it held before: the profiler's allocation and free events, summed in
    order (RSS cannot see allocator reuse; these events can)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# --------------------------------------------------------------------- inputs
class Inputs:
    """Random logits (std 2), labels, soft labels and sigmoid targets, float32."""

    def __init__(self, n: int, c: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.logits = rng.standard_normal((n, c), dtype=np.float32) * np.float32(2)
        self.labels = rng.integers(0, c, n)
        soft = rng.random((n, c), dtype=np.float32)
        soft /= soft.sum(axis=1, keepdims=True)
        self.soft = soft
        self.targets = rng.random((n, c), dtype=np.float32)


def _xent_fn(loss: str) -> Callable[..., Any]:
    if loss == "sparse":
        return lambda z, y: xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
    if loss == "dense":
        return lambda z, y: xent.softmax_cross_entropy(z, y, reduction="mean")
    return lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="mean")


def _second(inp: Inputs, loss: str) -> np.ndarray:
    second: dict[str, np.ndarray] = {"sparse": inp.labels, "dense": inp.soft, "sigmoid": inp.targets}
    return second[loss]


# ------------------------------------------------------------- per framework
# Each builder returns (xent_fn, native_fn, anchor name); every fn runs one
# call and blocks until its result (and gradient, for fwd+bwd) exists.


def _build_numpy(cell: Cell, inp: Inputs) -> tuple[Fn, Fn, str]:
    z, y = inp.logits, _second(inp, cell.loss)
    f = _xent_fn(cell.loss)
    return (lambda: f(z, y)), (lambda: _NUMPY_NATIVE[cell.loss](z, y)), "numpy formula"


def _np_sparse(z: np.ndarray, y: np.ndarray) -> Any:
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    picked = s[np.arange(len(z)), y]
    return np.mean(np.log(np.exp(s).sum(axis=-1)) - picked)


def _np_dense(z: np.ndarray, p: np.ndarray) -> Any:
    s = z - z.max(axis=-1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
    return np.mean(-(p * logp).sum(axis=-1))


def _np_sigmoid(z: np.ndarray, t: np.ndarray) -> Any:
    return np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))


def _scipy_sparse(z: np.ndarray, y: np.ndarray) -> Any:
    import scipy.special

    return -np.mean(scipy.special.log_softmax(z, axis=-1)[np.arange(len(z)), y])


_NUMPY_NATIVE = {"sparse": _np_sparse, "dense": _np_dense, "sigmoid": _np_sigmoid}


def _build_torch(cell: Cell, inp: Inputs) -> tuple[Fn, Fn, str]:
    import torch
    import torch.nn.functional as F

    dt = getattr(torch, cell.dtype)
    device = _torch_device(cell.device)
    z = torch.from_numpy(inp.logits).to(device=device, dtype=dt)
    second = torch.from_numpy(_second(inp, cell.loss)).to(device)
    if cell.loss != "sparse":
        second = second.to(dt)
    # (CUDA calls return before the GPU is done: each timed call waits for it)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if cell.loss == "sigmoid":
        native: Callable[..., Any] = F.binary_cross_entropy_with_logits
        anchor = "F.binary_cross_entropy_with_logits"
    else:
        native, anchor = F.cross_entropy, "F.cross_entropy"
    mine = _xent_fn(cell.loss)
    if cell.compiled:
        torch._dynamo.reset()  # each cell compiles afresh (no recompile limit)
        native, mine = torch.compile(native), torch.compile(mine)
        anchor = f"torch.compile({anchor})"
    if cell.mode == "fwd":
        def fwd(f: Callable[..., Any]) -> Fn:
            def call() -> Any:
                with torch.no_grad():
                    out = f(z, second)
                sync()
                return out
            return call
        return fwd(mine), fwd(native), anchor
    zg = z.clone().requires_grad_(True)

    def both(f: Callable[..., Any]) -> Fn:
        def call() -> Any:
            zg.grad = None
            f(zg, second).backward()
            sync()
        return call
    return both(mine), both(native), anchor


def _torch_device(device: str) -> Any:
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device gpu: torch sees no CUDA device")
    return torch.device("cuda")


def _build_tensorflow(cell: Cell, inp: Inputs) -> tuple[Fn, Fn, str]:
    import tensorflow as tf

    placement = _tf_placement(cell.device)
    with placement:
        z = tf.cast(tf.constant(inp.logits), cell.dtype)
        second = tf.constant(_second(inp, cell.loss))
        if cell.loss != "sparse":
            second = tf.cast(second, cell.dtype)
    op, anchor = {
        "sparse": (tf.nn.sparse_softmax_cross_entropy_with_logits, "tf.nn.sparse_softmax_cross_entropy_with_logits"),
        "dense": (tf.nn.softmax_cross_entropy_with_logits, "tf.nn.softmax_cross_entropy_with_logits"),
        "sigmoid": (tf.nn.sigmoid_cross_entropy_with_logits, "tf.nn.sigmoid_cross_entropy_with_logits"),
    }[cell.loss]

    def native(z: Any, y: Any) -> Any:
        return tf.reduce_mean(op(labels=y, logits=z))

    mine = _xent_fn(cell.loss)

    def with_grad(f: Callable[..., Any]) -> Callable[..., Any]:
        def g(z: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = f(z, y)
            return loss, tape.gradient(loss, z)
        return g

    fa, fb = (mine, native) if cell.mode == "fwd" else (with_grad(mine), with_grad(native))
    if cell.compiled:
        fa, fb = tf.function(fa, jit_compile=True), tf.function(fb, jit_compile=True)
        anchor = f"tf.function(jit_compile=True)({anchor})"

    def block(f: Callable[..., Any]) -> Fn:
        def call() -> Any:
            with placement:
                out = f(z, second)
            loss = out if cell.mode == "fwd" else out[0]
            # (reading the scalar waits for the device; TF's CPU ops are synchronous)
            return loss.numpy()
        return call
    return block(fa), block(fb), anchor


def _tf_placement(device: str) -> Any:
    """A context that places TF's ops on ``device``: none where TF places them
    there anyway (the CPU on a machine without a GPU; the GPU where there is
    one), since entering a device scope costs time in every small call."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if device == "cpu":
        return tf.device("/CPU:0") if gpus else contextlib.nullcontext()
    if not gpus:
        raise RuntimeError("--device gpu: TensorFlow sees no GPU")
    return contextlib.nullcontext()


def _build_jax(cell: Cell, inp: Inputs) -> tuple[Fn, Fn, str]:
    import jax
    import jax.numpy as jnp
    import optax

    device = _jax_device(cell.device)
    z = jax.device_put(jnp.asarray(inp.logits), device).astype(cell.dtype)
    second = jax.device_put(jnp.asarray(_second(inp, cell.loss)), device)
    if cell.loss != "sparse":
        second = second.astype(cell.dtype)
    op, anchor = {
        "sparse": (optax.losses.softmax_cross_entropy_with_integer_labels, "optax...with_integer_labels"),
        "dense": (optax.losses.softmax_cross_entropy, "optax.losses.softmax_cross_entropy"),
        "sigmoid": (optax.losses.sigmoid_binary_cross_entropy, "optax.losses.sigmoid_binary_cross_entropy"),
    }[cell.loss]

    def native(z: Any, y: Any) -> Any:
        return jnp.mean(op(z, y))

    fa, fb = _xent_fn(cell.loss), native
    if cell.mode == "fwd+bwd":
        fa, fb = jax.value_and_grad(fa), jax.value_and_grad(fb)
    if cell.compiled:
        fa, fb = jax.jit(fa), jax.jit(fb)
        anchor = f"jax.jit({anchor})"

    def block(f: Callable[..., Any]) -> Fn:
        return lambda: jax.block_until_ready(f(z, second))
    return block(fa), block(fb), anchor


def _jax_device(device: str) -> Any:
    import jax

    try:
        return jax.devices("cpu" if device == "cpu" else "gpu")[0]
    except RuntimeError as exc:
        raise RuntimeError(f"--device {device}: JAX sees no such device ({exc})") from None


BUILDERS = {
    "numpy": _build_numpy,
    "torch": _build_torch,
    "tensorflow": _build_tensorflow,
    "jax": _build_jax,
}


# ---------------------------------------------------------------------- plan
def plan(args: argparse.Namespace) -> list[Cell]:
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]  # type: ignore[misc]
    backends = args.backends or list(BACKENDS)
    losses = args.losses or list(LOSSES)
    device = args.device
    cells = []
    for backend in backends:
        if importlib.util.find_spec(MODULES[backend]) is None or (backend == "numpy" and device != "cpu"):
            continue
        for n, c in sizes:
            for loss in losses:
                if backend == "numpy":
                    cells.append(Cell(backend, loss, n, c, "float32", "fwd", False))
                    continue
                dtypes = ["float32"] if args.quick else args.dtypes
                for dtype in dtypes:
                    for compiled in (False, True):
                        if compiled and args.quick and backend == "torch":
                            continue  # torch.compile takes seconds per graph on a CPU
                        for mode in ("fwd", "fwd+bwd"):
                            cells.append(Cell(backend, loss, n, c, dtype, mode, compiled, device))
    return cells


def _budget(cell: Cell, quick: bool) -> float:
    elements = cell.n * cell.c
    if elements >= 10**7:
        return 1.0
    return 0.1 if quick else 0.25


def _measure(cell: Cell, inp: Inputs, quick: bool, min_pairs: int | None = None) -> None:
    xent_fn, native_fn, cell.anchor = BUILDERS[cell.backend](cell, inp)
    large = cell.n * cell.c >= 10**7
    if min_pairs is None:
        min_pairs = LARGE_MIN_PAIRS if large else SMALL_MIN_PAIRS
    r = time_ab(xent_fn, native_fn, _budget(cell, quick), min_pairs=min_pairs,
                warmup=1 if large else 2, warmup_s=0.0 if large else 0.75)
    cell.xent_ms, cell.native_ms = r["xent_s"] * 1e3, r["native_s"] * 1e3
    cell.ratio, cell.ratio_p25, cell.ratio_p75 = r["ratio"], r["ratio_p25"], r["ratio_p75"]
    cell.delta_us = r["delta_s"] * 1e6
    cell.pairs, cell.calls_per_sample = int(r["pairs"]), int(r["k"])
    if cell.n * cell.c >= 10**5:
        if cell.device != "cpu":
            peak = _DEVICE_PEAKS.get(cell.backend, lambda f: None)
        else:
            peak = _traced_peak_mb if cell.backend == "numpy" else _rss_peak_mb
        cell.native_mem_mb, cell.xent_mem_mb = peak(native_fn), peak(xent_fn)


def _numpy_extras(inp: Inputs, quick: bool) -> dict[str, float]:
    """The other NumPy anchors at one size: scipy, the read floor, the registry lookup."""
    z, y = inp.logits, inp.labels
    sparse = _xent_fn("sparse")
    budget = 0.3 if z.size < 10**7 else 1.0
    floor = time_ab(lambda: z.max(), lambda: _np_sparse(z, y), budget)
    out = {"floor_ms": floor["xent_s"] * 1e3}
    if importlib.util.find_spec("scipy") is not None:
        sc = time_ab(lambda: sparse(z, y), lambda: _scipy_sparse(z, y), budget, min_pairs=3)
        out["scipy_ms"] = sc["native_s"] * 1e3
        out["xent_vs_scipy"] = sc["ratio"]
    return out


def _lookup_us() -> float:
    """The per-call cost of choosing the backend (a dict lookup on the type)."""
    from xent._registry import backend_for

    z = np.zeros((2, 3), np.float32)
    backend_for(z)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        backend_for(z)
    return (time.perf_counter() - t0) / n * 1e6


# ---------------------------------------------------------------------- output
def _fmt_mem(v: float | None) -> str:
    return "" if v is None else f"{v:.0f}"


def table(cells: list[Cell]) -> str:
    head = (
        f"{'backend':<10} {'loss':<7} {'size':>10} {'dtype':<8} {'pass':<7} {'mode':<5} "
        f"{'native ms':>10} {'xent ms':>10} {'ratio':>6} {'p25-p75':>11} {'Δ µs':>8} "
        f"{'mem MB n/x':>11}"
    )
    lines = [head, "-" * len(head)]
    for c in cells:
        mem = "" if c.native_mem_mb is None else f"{_fmt_mem(c.native_mem_mb)}/{_fmt_mem(c.xent_mem_mb)}"
        lines.append(
            f"{c.backend:<10} {c.loss:<7} {c.size:>10} {c.dtype:<8} {c.mode:<7} "
            f"{'jit' if c.compiled else 'eager':<5} {c.native_ms:>10.4g} {c.xent_ms:>10.4g} "
            f"{c.ratio:>6.3f} {c.ratio_p25:>5.2f}-{c.ratio_p75:<5.2f} {c.delta_us:>8.1f} {mem:>11}"
            + (f"  {c.note}" if c.note else "")
        )
    return "\n".join(lines)


def machine(found: dict[str, Any] | None = None) -> dict[str, Any]:
    """This machine and the versions of the frameworks imported here; ``found``:
    what worker processes saw (their ``machine()``), for the frameworks that were
    imported there only (their versions and the GPU's name)."""
    found = found or {}
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "numpy": np.__version__,
        "xent": xent.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    for mod in ("torch", "tensorflow", "jax", "optax", "scipy"):
        if mod in sys.modules:
            info[mod] = getattr(sys.modules[mod], "__version__", "?")
        elif mod in found:
            info[mod] = found[mod]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    elif "gpu" in found:
        info["gpu"] = found["gpu"]
    return info


#: the torch calls whose small eager form is the fused rung (its added time is a target of its own)
_FUSED_SMALL = {("torch", "sparse", "float32"), ("torch", "dense", "float32")}


def _small(c: Cell) -> bool:
    return (c.n, c.c) == (32, 10) and not c.compiled


def _large(c: Cell) -> bool:
    return c.n * c.c >= 10**8


#: What a run is held to: (name, which cells, the value checked, its limit).
#: ``xent bench`` prints them after its table; ``benchmarks/report.py`` puts
#: them in docs/benchmarks.md.
TARGETS: list[tuple[str, Callable[[Cell], bool], str, float]] = [
    ("small torch calls on the fused rung (sparse and dense, float32, 32×10): ≤ 3 µs over native",
     lambda c: _small(c) and (c.backend, c.loss, c.dtype) in _FUSED_SMALL, "delta_us", 3.0),
    ("every other small eager forward (torch, TF, JAX, 32×10): ≤ 25 µs over native",
     lambda c: _small(c) and c.backend != "numpy" and c.mode == "fwd"
     and (c.backend, c.loss, c.dtype) not in _FUSED_SMALL, "delta_us", 25.0),
    ("every other small eager forward+backward: ≤ 50 µs over native",
     lambda c: _small(c) and c.backend != "numpy" and c.mode == "fwd+bwd"
     and (c.backend, c.loss, c.dtype) not in _FUSED_SMALL, "delta_us", 50.0),
    ("small NumPy calls (32×10): ≤ 1.5× the NumPy formula",
     lambda c: _small(c) and c.backend == "numpy", "ratio", 1.5),
    ("large eager calls (4096×32000): ≤ 1.03× native",
     lambda c: _large(c) and not c.compiled, "ratio", 1.03),
    ("large compiled calls (4096×32000): ≤ 1.03× native",
     lambda c: _large(c) and c.compiled, "ratio", 1.03),
]


def numpy_against_compiled(cells: list[Cell]) -> list[tuple[str, float, float | None, float | None, Cell]]:
    """NumPy's large float32 calls against the compiled anchors of other
    frameworks: (loss, xent NumPy ms, torch.compile ms, jax.jit ms, the NumPy
    cell) per loss. Measured in different processes of one run, so not
    interleaved: absolute times, read with the run's spread."""
    rows = []
    for c in cells:
        if c.backend != "numpy" or not _large(c):
            continue
        native = {}
        for other in cells:
            if (other.backend in ("torch", "jax") and other.loss == c.loss and (other.n, other.c) == (c.n, c.c)
                    and other.dtype == "float32" and other.mode == "fwd" and other.compiled):
                native[other.backend] = other.native_ms
        rows.append((c.loss, c.xent_ms, native.get("torch"), native.get("jax"), c))
    return rows


def check_targets(cells: list[Cell], extras: dict[str, Any] | None = None
                  ) -> list[tuple[str, int, list[tuple[str, str]]]]:
    """Each target of :data:`TARGETS` (and NumPy against the compiled anchors)
    that this run's cells reach: (target, how many cells it checks, the misses
    as (cell, value))."""
    out = []
    for name, picks, field_name, limit in TARGETS:
        checked = [c for c in cells if picks(c) and not c.note]
        unit = " µs" if field_name == "delta_us" else "×"
        misses = [(c.label(), f"{getattr(c, field_name):.{1 if unit == ' µs' else 2}f}{unit}")
                  for c in checked if not getattr(c, field_name) <= limit]
        if checked:
            out.append((name, len(checked), misses))
    rows = numpy_against_compiled(cells)
    checked_n, misses = 0, []
    for loss, mine, torch_ms, jax_ms, cell in rows:
        for anchor, theirs in (("torch.compile", torch_ms), ("jax.jit(optax)", jax_ms)):
            if theirs:
                checked_n += 1
                if not mine <= theirs:
                    misses.append((f"numpy {loss} vs {anchor}", f"{mine / theirs:.2f}×"))
    if checked_n:
        out.append(("large NumPy calls (float32): ≤ 1.0× torch.compile and jax.jit of the native loss",
                    checked_n, misses))
    return out


def summary(cells: list[Cell], extras: dict[str, Any]) -> str:
    """How far the targets are met, from this run's numbers."""
    out = []
    for name, checked, misses in check_targets(cells, extras):
        shown = "; ".join(f"{label} {value}" for label, value in misses)
        out.append(f"{name}: {checked - len(misses)}/{checked} met" + (f" (misses: {shown})" if shown else ""))
    small = [c for c in cells if _small(c) and c.backend != "numpy"]
    if small:
        out.append(f"small eager calls: median Δ {statistics.median(c.delta_us for c in small):.1f} µs/call")
    if "lookup_us" in extras:
        out.append(f"backend lookup (type -> backend dict): {extras['lookup_us']:.2f} µs/call")
    for key, value in extras.items():
        if key.startswith("numpy_") and value.get("floor_ms", 0) >= 1:
            size = key.removeprefix("numpy_")
            out.append(f"numpy {size}: read floor (z.max()) {value['floor_ms']:.1f} ms"
                       + (f", scipy log_softmax+gather {value['scipy_ms']:.1f} ms" if "scipy_ms" in value else ""))
    return "\n".join(out)


def draw(cells: list[Cell], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in BACKENDS if any(c.backend == b for c in cells)]
    fig, axes = plt.subplots(len(backends), 1, figsize=(14, 3.2 * len(backends)), squeeze=False)
    colors = {"32x10": "tab:blue", "256x1000": "tab:orange", "4096x32000": "tab:red"}
    for ax, backend in zip(axes[:, 0], backends):
        rows = [c for c in cells if c.backend == backend]
        labels = [f"{c.loss} {c.dtype[:4]} {c.mode} {'jit' if c.compiled else 'eag'}" for c in rows]
        keys = sorted(set(labels), key=labels.index)
        for c, lab in zip(rows, labels):
            x = keys.index(lab)
            ax.scatter(x, c.ratio, color=colors.get(c.size, "gray"), s=28, zorder=3)
            ax.plot([x, x], [c.ratio_p25, c.ratio_p75], color=colors.get(c.size, "gray"), lw=1)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("xent / native")
        ax.set_title(f"{backend}", loc="left", fontsize=10)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=35, ha="right", fontsize=7)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=v, label=k) for k, v in colors.items()]
    axes[0, 0].legend(handles=handles, title="N x C", fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------ CLI
def _subset(choices: tuple[str, ...]) -> Any:
    """An argparse type: a comma-separated subset of ``choices``, as a list."""
    def parse(text: str) -> list[str]:
        picked = [v for v in text.split(",") if v]
        bad = [v for v in picked if v not in choices]
        if bad or not picked:
            raise argparse.ArgumentTypeError(f"{text!r}: pick from {','.join(choices)}")
        return picked
    return parse


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``xent bench``'s options to ``parser``."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, float32, no torch.compile (about a minute)")
    parser.add_argument("--json", metavar="FILE", help="write every cell and the machine to FILE")
    parser.add_argument("--png", metavar="FILE", help="draw the ratios to FILE (needs matplotlib)")
    parser.add_argument("--backends", metavar="LIST", type=_subset(tuple(BACKENDS)),
                        help=f"comma-separated subset of {','.join(BACKENDS)}")
    parser.add_argument("--losses", metavar="LIST", type=_subset(tuple(LOSSES)),
                        help=f"comma-separated subset of {','.join(LOSSES)}")
    parser.add_argument("--sizes", metavar="LIST", help="comma-separated NxC, e.g. 32x10,4096x32000")
    parser.add_argument("--dtypes", metavar="LIST", type=_subset(DTYPES), default=list(DTYPES),
                        help="comma-separated subset of float32,bfloat16 (default: both; NumPy: float32)")
    parser.add_argument("--pairs", metavar="N", type=_positive,
                        help=f"at least N interleaved pairs per cell (default: {LARGE_MIN_PAIRS} at "
                             f"10^7 logits and more, {SMALL_MIN_PAIRS} below; more pairs, steadier medians)")
    parser.add_argument("--device", choices=("cpu", "gpu", "cuda"), default="cpu",
                        help="where inputs are made and calls run (default cpu; gpu = cuda: torch's "
                             "first CUDA device, TF's /GPU:0, JAX's first GPU; NumPy is skipped there)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    # (set by the parent run on the process it starts for each framework)
    parser.add_argument("--worker-json", metavar="FILE", help=argparse.SUPPRESS)


def _measure_all(cells: list[Cell], args: argparse.Namespace, extras: dict[str, Any]) -> int:
    """Measure ``cells`` here, size by size (one set of inputs at a time), with a
    progress bar; NumPy's other anchors go to ``extras``. Returns how many failed."""
    progress = Progress(len(cells), not args.no_progress)
    failures = 0
    by_size: dict[tuple[int, int], list[Cell]] = {}
    for cell in cells:
        by_size.setdefault((cell.n, cell.c), []).append(cell)
    for (n, c), group in by_size.items():
        progress.show(f"inputs {n}x{c}")
        inp = Inputs(n, c)
        if any(cell.backend == "numpy" for cell in group):
            extras[f"numpy_{n}x{c}"] = _numpy_extras(inp, args.quick)
        for cell in group:
            progress.show(cell.label())
            try:
                _measure(cell, inp, args.quick, args.pairs)
            except Exception as exc:  # a broken cell is reported, the run goes on
                failures += 1
                cell.note = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            progress.step(cell.label())
        del inp
        gc.collect()
    progress.close()
    return failures


def _worker(args: argparse.Namespace, cells: list[Cell]) -> int:
    """One framework's part of a run (``--worker-json FILE``): measure ``cells``
    and write them, this process's extras, ``machine()``, pid and failure count to
    FILE, or ``{"error": ...}`` where the run itself broke; nothing on stdout."""
    result: dict[str, Any] = {"pid": os.getpid()}
    try:
        extras: dict[str, Any] = {}
        failures = _measure_all(cells, args, extras)
        result.update(cells=[asdict(c) for c in cells], extras=extras, failures=failures, machine=machine())
    except Exception as exc:
        failures = 1
        result["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    with open(args.worker_json, "w") as fh:
        json.dump(result, fh)
    return 1 if failures else 0


def _worker_argv(args: argparse.Namespace, backend: str, path: str) -> list[str]:
    """``xent bench``'s arguments for the process that measures ``backend``: every
    option of :func:`add_arguments` that shapes the cells (not ``--json`` and
    ``--png``: the parent writes those)."""
    argv = ["--backends", backend, "--dtypes", ",".join(args.dtypes), "--device", args.device,
            "--worker-json", path]
    if args.quick:
        argv.append("--quick")
    if args.sizes:
        argv += ["--sizes", args.sizes]
    if args.losses:
        argv += ["--losses", ",".join(args.losses)]
    if args.pairs is not None:
        argv += ["--pairs", str(args.pairs)]
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def _run_argv(args: argparse.Namespace) -> list[str]:
    """``xent bench``'s arguments that reproduce this run (what the JSON file says)."""
    argv = _worker_argv(args, "", "")
    argv = argv[2:argv.index("--worker-json")] + argv[argv.index("--worker-json") + 2:]
    if args.backends:
        argv = ["--backends", ",".join(args.backends), *argv]
    argv = [a for a in argv if a != "--no-progress"]
    for flag, default in (("--dtypes", ",".join(DTYPES)), ("--device", "cpu")):
        at = argv.index(flag)
        if argv[at + 1] == default:
            del argv[at:at + 2]
    for flag in ("json", "png"):
        if getattr(args, flag):
            argv += [f"--{flag}", getattr(args, flag)]
    return argv


def _cell_key(cell: Cell) -> tuple[Any, ...]:
    return (cell.backend, cell.loss, cell.n, cell.c, cell.dtype, cell.mode, cell.compiled)


def _run_workers(args: argparse.Namespace, cells: list[Cell], extras: dict[str, Any],
                 pids: dict[str, int], found: dict[str, Any]) -> int:
    """Measure each framework's cells in a fresh ``python -m xent bench`` process,
    one framework after the other, and put what each measured into ``cells`` (in
    place, so the order stays the plan's), its extras into ``extras``, its pid into
    ``pids`` and its ``machine()`` into ``found``. A process that breaks marks its
    framework's cells with its error, also said on stderr. Returns how many cells
    failed."""
    # The workers import this very xent, wherever it was imported from here.
    root = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="xent-bench-") as tmp:
        for backend in dict.fromkeys(cell.backend for cell in cells):
            path = os.path.join(tmp, f"{backend}.json")
            # stdout and stderr are this process's: the worker's progress bar and
            # warnings show as they come.
            proc = subprocess.run([sys.executable, "-m", "xent", "bench", *_worker_argv(args, backend, path)],
                                  env=env, stdin=subprocess.DEVNULL)
            try:
                with open(path) as fh:
                    got = json.load(fh)
            except (OSError, ValueError):  # it died before writing (its own message is above)
                how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else \
                    f"exited with status {proc.returncode}"
                got = {"error": f"its process {how} and wrote no cells"}
            measured = {_cell_key(c): c for c in (Cell(**d) for d in got.get("cells", []))}
            if "pid" in got:
                pids[backend] = got["pid"]
            if "error" in got:
                print(f"xent bench: {backend}: {got['error']}", file=sys.stderr)
            else:
                found.update(got["machine"])
                extras.update(got["extras"])
                failures += got["failures"]
            for i, cell in enumerate(cells):
                if cell.backend != backend:
                    continue
                if _cell_key(cell) in measured:
                    cells[i] = measured[_cell_key(cell)]
                else:
                    failures += 1
                    cell.note = f"error: {backend} worker: {got.get('error', 'cell not measured')[:80]}"
    return failures


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; print the table; 0 on success."""
    if args.device == "cuda":
        args.device = "gpu"
    if args.device == "gpu":
        # No framework takes most of the GPU's memory up front: each grows its pool
        # as it needs (the worker processes inherit this).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if args.png and not args.worker_json and importlib.util.find_spec("matplotlib") is None:
        print("xent bench: --png needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    cells = plan(args)
    if not cells:
        print("xent bench: nothing to run (no framework found for the chosen backends)", file=sys.stderr)
        return 1
    if args.worker_json:
        return _worker(args, cells)
    extras: dict[str, Any] = {"lookup_us": _lookup_us()}
    pids: dict[str, int] = {}
    found: dict[str, Any] = {}
    started = time.perf_counter()
    if len({cell.backend for cell in cells}) == 1:
        failures = _measure_all(cells, args, extras)
        pids[cells[0].backend] = os.getpid()
    else:
        failures = _run_workers(args, cells, extras, pids, found)
    wall = time.perf_counter() - started
    info = machine(found)
    print(table(cells))
    print()
    print(summary(cells, extras))
    gpu = f", GPU {info['gpu']}" if args.device == "gpu" and "gpu" in info else ""
    print(f"\n{len(cells)} cells in {wall:.0f} s on {info.get('cpu', '?')}, {info.get('cpus')} CPUs{gpu}, "
          f"device {args.device}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "date": time.strftime("%Y-%m-%d"), "argv": _run_argv(args),
                       "wall_s": wall, "extras": extras, "pids": pids,
                       "cells": [asdict(c) for c in cells]}, fh, indent=1)
    if args.png:
        draw(cells, args.png, f"xent / native, median of interleaved pairs (bars: p25-p75) — "
                              f"{info.get('cpu', '?')}, {info.get('cpus')} CPUs")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xent bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
