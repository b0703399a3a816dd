"""``xent parity --distributed``: the vocab-parallel loss on each framework's own engine.

:func:`xent.distributed.sparse_softmax_cross_entropy` is run with the logits
sharded over the class axis, for real, in a fresh subprocess per framework
(``python -m xent._parity_distributed FRAMEWORK RANKS OUTFILE``):

* **torch**: ``torch.distributed`` with gloo, one process per rank
  (``torch.multiprocessing.spawn``, a ``file://`` store); the shards are
  *uneven* (torch is the one engine that allows them);
* **JAX**: ``jax.jit`` of a ``shard_map`` over a mesh of host CPU devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count`` set before JAX starts);
* **TensorFlow**: ``MirroredStrategy`` over logical CPU devices.

Every case runs on one fixed random batch (:data:`N` tokens, :data:`V`
classes, labels on every shard, some rows ignored) in float32: with the
vocabulary split exactly, and padded past ``V`` (``vocab_size=V``; the padded
lanes hold a value that would dominate the softmax if it counted), for a few
option sets and the reductions ``"none"`` and ``"mean"``. The worker writes
the sharded loss (every rank's copy), the logit gradient assembled from the
shards, and :func:`xent.sparse_softmax_cross_entropy` on the unsharded
logits in the same process, value and gradient. :func:`evaluate` compares

* the sharded value and gradient with the single-device ones (at twice the
  tolerance: each is within it of the truth),
* both with xent's float64 reference (:mod:`xent.testing._reference`:
  ``sparse_terms`` and ``reduced``) on the float32-rounded logits; a padded
  lane's gradient must be 0,
* every rank's loss with rank 0's,

with :func:`xent.testing.tolerance` for float32, ``V`` classes and ``N``
reduced tokens for a mean. :func:`run` launches the workers and returns a
:class:`Report`; :func:`format_report` prints it, one line per framework ×
case. Nothing here runs at import, and the frameworks are imported only by a
worker.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from xent._parity import Check, compare
from xent.testing import _reference
from xent.testing._frameworks import NAMES, installed
from xent.testing._tolerance import tolerance

#: the frameworks with a vocab-parallel engine, in the order the report shows them
FRAMEWORKS = tuple(n for n in NAMES if n in ("torch", "tensorflow", "jax"))
N, V = 16, 50  #: tokens, real classes
PAD = 4  #: the padded layout has at least this many lanes past V
IGNORE = -100
IGNORED_ROWS = (3, 8, 13)  #: rows whose label is IGNORE when ignore_index is on
PAD_VALUE = 40.0  #: what a padded lane holds (it would dominate the softmax if it counted)
DTYPE = "float32"
MAX_RANKS = 8
REDUCTIONS = ("none", "mean")
#: a worker that has not finished after this many seconds has failed
TIMEOUT = 300.0

#: option sets: report label -> which options (arrays by name, drawn in :func:`batch`)
OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "ignore_index, label_smoothing=0.1": {"ignore_index": IGNORE, "label_smoothing": 0.1},
    "ignore_index, class_weights, weights": {"ignore_index": IGNORE, "class_weights": True, "weights": True},
    "ignore_index, z_loss=1e-3, logit_softcap=5": {"ignore_index": IGNORE, "z_loss": 1e-3, "logit_softcap": 5.0},
}

ENGINES = {
    "torch": "torch.distributed (gloo), {r} processes, uneven shards",
    "tensorflow": "MirroredStrategy, {r} logical CPUs",
    "jax": "jit(shard_map), {r} host CPU devices",
}


# ----------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One sharded call: a layout of the class axis, an option set, a reduction.

    ``widths`` are the shards' widths (summing to ``V``, or more when
    ``padded``: the lanes past ``V`` are padding, passed as ``vocab_size=V``).
    """

    widths: tuple[int, ...]
    padded: bool
    option: str
    reduction: str

    @property
    def total(self) -> int:
        return sum(self.widths)

    @property
    def layout(self) -> str:
        shards = "+".join(map(str, self.widths))
        return f"{shards} ({self.total - V} pad)" if self.padded else shards

    @property
    def label(self) -> str:
        return f"{self.option}, {self.reduction}"

    @property
    def vocab_size(self) -> int | None:
        return V if self.padded else None


def _split(total: int, ranks: int, even: bool) -> tuple[int, ...]:
    if even:
        assert total % ranks == 0, (total, ranks)
        return (total // ranks,) * ranks
    base = total // ranks
    widths = [base] * ranks
    for i in range(total - base * ranks):
        widths[-1 - i] += 1
    if ranks > 1:  # the first shard narrower, the last (which holds any padding) wider
        shift = max(1, base // 4)
        widths[0] -= shift
        widths[-1] += shift
    return tuple(widths)


def layouts(framework: str, ranks: int) -> list[tuple[tuple[int, ...], bool]]:
    """``(widths, padded)`` of the layouts ``framework`` runs on ``ranks``:
    ``V`` split exactly (JAX and TF only when it splits evenly), and padded
    to a multiple of ``ranks`` with at least :data:`PAD` lanes to spare."""
    even = framework != "torch"
    out = []
    if not even or V % ranks == 0:
        out.append((_split(V, ranks, even), False))
    total = ranks * -(-(V + PAD) // ranks)
    out.append((_split(total, ranks, even), True))
    return out


def cases(framework: str, ranks: int) -> list[Case]:
    """Every case ``framework`` runs on ``ranks``, in order (the worker's
    results are indexed by position in this list)."""
    if not 1 <= ranks <= MAX_RANKS:
        raise ValueError(f"ranks must be in [1, {MAX_RANKS}]; received {ranks}")
    return [Case(widths, padded, option, reduction)
            for widths, padded in layouts(framework, ranks)
            for option in OPTIONS for reduction in REDUCTIONS]


@dataclass
class Batch:
    """The fixed random batch: ``logits`` ``[N, V]`` (float64 values exact in
    float32), class and sample weights (multiples of 1/8)."""

    logits: np.ndarray
    class_weights: np.ndarray
    weights: np.ndarray
    draw: np.ndarray  # random labels before a case places one on every shard


def batch() -> Batch:
    rng = np.random.default_rng(zlib.crc32(b"xent parity --distributed"))
    logits = rng.normal(0.0, 3.0, (N, V)).astype(np.float32).astype(np.float64)
    class_weights = rng.integers(1, 17, V) / 8
    weights = rng.integers(0, 17, N) / 8
    return Batch(logits, class_weights, weights, rng.integers(0, V, N))


def padded_logits(data: Batch, case: Case) -> np.ndarray:
    """The logits of ``case``'s whole class axis, ``[N, total]``."""
    pad = np.full((N, case.total - V), PAD_VALUE)
    return np.concatenate([data.logits, pad], axis=1)


def labels(data: Batch, case: Case) -> np.ndarray:
    """Random labels with one kept row in the middle of each shard's real
    classes (a label on every shard), and :data:`IGNORED_ROWS` set to
    :data:`IGNORE` when the case passes ``ignore_index``."""
    y = data.draw.copy()
    kept = [i for i in range(N) if i not in IGNORED_ROWS]
    start = 0
    for row, width in zip(kept, case.widths):
        hi = min(start + width, V)
        if hi > start:
            y[row] = (start + hi - 1) // 2
        start += width
    if "ignore_index" in OPTIONS[case.option]:
        y[list(IGNORED_ROWS)] = IGNORE
    return y


def kwargs(data: Batch, case: Case) -> dict[str, Any]:
    """The loss's keyword arguments (NumPy arrays; the worker converts them)."""
    kw: dict[str, Any] = {"reduction": case.reduction}
    for name, value in OPTIONS[case.option].items():
        if name == "class_weights":
            kw[name] = data.class_weights
        elif name == "weights":
            kw[name] = data.weights
        else:
            kw[name] = value
    return kw


def reference(data: Batch, case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The float64 loss and logit gradient (``[N, total]``, 0 on padded
    lanes) of ``case``, from :mod:`xent.testing._reference`."""
    opts = OPTIONS[case.option]
    terms = _reference.sparse_terms(
        data.logits, labels(data, case), alpha=opts.get("label_smoothing", 0.0),
        class_weights=data.class_weights if opts.get("class_weights") else None,
        ignore_index=opts.get("ignore_index"), z_loss=opts.get("z_loss", 0.0), cap=opts.get("logit_softcap"))
    value, grads = _reference.reduced(terms, case.reduction, data.weights if opts.get("weights") else None)
    return value, _pad(grads["predictions"], case.total)


def _pad(grad: np.ndarray, total: int) -> np.ndarray:
    grad = np.asarray(grad, np.float64)
    return np.concatenate([grad, np.zeros((grad.shape[0], total - grad.shape[1]))], axis=1)


# --------------------------------------------------------------------- workers
# Each engine returns, per case index i: "i.loss" (rank 0's), "i.rank_losses"
# ([ranks, ...]), "i.grad" ([N, total], the shards' gradients side by side),
# "i.single_loss" and "i.single_grad" ([N, V]): xent.sparse_softmax_cross_entropy
# on the unsharded logits; the gradients are of the loss, or of its sum for
# "none". A case that raises has "i.error" instead (a failed case, named).

def _each(case_list: list[Case], fn: Callable[[Case], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, case in enumerate(case_list):
        try:
            out.update({f"{i}.{k}": np.asarray(v, np.float64) for k, v in fn(case).items()})
        except Exception as exc:  # noqa: BLE001 - one case's crash is that case's failure
            out[f"{i}.error"] = np.asarray(f"{type(exc).__name__}: {exc}".strip().splitlines()[0])
    return out


def _torch_rank(rank: int, ranks: int, outfile: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    import xent
    import xent.distributed as xd

    torch.set_num_threads(1)
    # (a rank left waiting in a collective fails after a minute rather than hanging)
    dist.init_process_group("gloo", init_method=f"file://{outfile}.store", rank=rank, world_size=ranks,
                            timeout=timedelta(seconds=60))
    data = batch()

    def one(case: Case) -> dict[str, Any]:
        start = sum(case.widths[:rank])
        full = padded_logits(data, case)
        x = torch.from_numpy(full[:, start:start + case.widths[rank]]).float().requires_grad_(True)
        y = torch.from_numpy(labels(data, case))
        kw: dict[str, Any] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                              for k, v in kwargs(data, case).items()}
        loss = xd.sparse_softmax_cross_entropy(x, y, vocab_size=case.vocab_size, **kw)
        loss.sum().backward()
        out = {"loss": loss.detach().double(), "grad": x.grad}
        if rank == 0:
            z = torch.from_numpy(data.logits).float().requires_grad_(True)
            single = xent.sparse_softmax_cross_entropy(z, y, **kw)
            single.sum().backward()
            out.update(single_loss=single.detach().double(), single_grad=z.grad)
        return {k: v.double().numpy() for k, v in out.items()}

    try:
        out = _each(cases("torch", ranks), one)
        with open(f"{outfile}.rank{rank}", "wb") as f:
            np.savez(f, **out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _torch(ranks: int) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    # (by module name, so that the spawned ranks import it rather than __main__)
    from xent._parity_distributed import _torch_rank

    with tempfile.TemporaryDirectory(prefix="xent-parity-torch-") as tmp:
        outfile = os.path.join(tmp, "out")
        mp.spawn(_torch_rank, args=(ranks, outfile), nprocs=ranks, join=True)
        parts = [dict(np.load(f"{outfile}.rank{r}")) for r in range(ranks)]
    out: dict[str, Any] = {"version": torch.__version__}
    for i in range(len(cases("torch", ranks))):
        errors = [str(p[f"{i}.error"]) for p in parts if f"{i}.error" in p]
        if errors:
            out[f"{i}.error"] = errors[0]
            continue
        out[f"{i}.loss"] = parts[0][f"{i}.loss"]
        out[f"{i}.rank_losses"] = np.stack([p[f"{i}.loss"] for p in parts])
        out[f"{i}.grad"] = np.concatenate([p[f"{i}.grad"] for p in parts], axis=1)
        out[f"{i}.single_loss"], out[f"{i}.single_grad"] = parts[0][f"{i}.single_loss"], parts[0][f"{i}.single_grad"]
    return out


def _jax(ranks: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    shard_map: Any
    try:
        from jax import shard_map
    except ImportError:  # (older JAX)
        from jax.experimental.shard_map import shard_map

    import xent
    import xent.distributed as xd

    devices = jax.devices("cpu")
    if len(devices) < ranks:
        raise RuntimeError(f"JAX has {len(devices)} host devices, {ranks} needed: XLA_FLAGS="
                           f"--xla_force_host_platform_device_count must be set before JAX starts")
    mesh = Mesh(np.array(devices[:ranks]), ("tp",))
    data = batch()

    def one(case: Case) -> dict[str, Any]:
        kw = kwargs(data, case)
        arrays = {k: jnp.asarray(v, jnp.float32) for k, v in kw.items() if isinstance(v, np.ndarray)}
        static = {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)}
        y = jnp.asarray(labels(data, case), jnp.int32)

        def local(z: Any, y: Any, arrays: Any) -> Any:
            loss = xd.sparse_softmax_cross_entropy(z, y, group="tp", vocab_size=case.vocab_size, **arrays, **static)
            return loss, loss[None]  # (the replicated loss, and each device's copy)

        sharded = shard_map(local, mesh=mesh, in_specs=(P(None, "tp"), P(), {k: P() for k in arrays}),
                            out_specs=(P(), P("tp")))

        def total(z: Any, y: Any, arrays: Any) -> Any:
            loss, copies = sharded(z, y, arrays)
            return jnp.sum(loss), (loss, copies)

        def single(z: Any, y: Any, arrays: Any) -> Any:
            loss = xent.sparse_softmax_cross_entropy(z, y, **arrays, **static)
            return jnp.sum(loss), loss

        z = jnp.asarray(padded_logits(data, case), jnp.float32)
        (_, (loss, copies)), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(z, y, arrays)
        (_, one_loss), one_grad = jax.jit(jax.value_and_grad(single, has_aux=True))(
            jnp.asarray(data.logits, jnp.float32), y, arrays)
        return {"loss": loss, "rank_losses": copies, "grad": grad, "single_loss": one_loss, "single_grad": one_grad}

    return {"version": jax.__version__, **_each(cases("jax", ranks), one)}


def _tensorflow(ranks: int) -> dict[str, Any]:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * ranks)
    import xent
    import xent.distributed as xd

    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(ranks)])
    data = batch()

    def one(case: Case) -> dict[str, Any]:
        full, width = padded_logits(data, case), case.widths[0]
        y = tf.constant(labels(data, case))
        kw = {k: tf.constant(v, tf.float32) if isinstance(v, np.ndarray) else v for k, v in kwargs(data, case).items()}
        shards = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(
                full[:, ctx.replica_id_in_sync_group * width:(ctx.replica_id_in_sync_group + 1) * width], tf.float32))

        def step(x: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = xd.sparse_softmax_cross_entropy(x, y, vocab_size=case.vocab_size, **kw)
                total = tf.reduce_sum(loss)
            return loss, tape.gradient(total, x)

        losses, grads = strategy.run(step, args=(shards,))
        losses = [np.asarray(v) for v in strategy.experimental_local_results(losses)]
        grads = [np.asarray(v) for v in strategy.experimental_local_results(grads)]
        z = tf.constant(data.logits, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z)
            single = xent.sparse_softmax_cross_entropy(z, y, **kw)
            total = tf.reduce_sum(single)
        return {"loss": losses[0], "rank_losses": np.stack(losses), "grad": np.concatenate(grads, axis=1),
                "single_loss": single, "single_grad": tape.gradient(total, z)}

    return {"version": tf.__version__, **_each(cases("tensorflow", ranks), one)}


#: the engine of each framework: ``engine(ranks) -> results`` (see above)
WORKERS: dict[str, Callable[[int], dict[str, Any]]] = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow}


def worker(framework: str, ranks: int, outfile: str) -> None:
    """Run ``framework``'s cases on ``ranks`` and write the results to
    ``outfile`` (``.npz``)."""
    results = WORKERS[framework](ranks)
    with open(outfile, "wb") as f:
        np.savez(f, **results)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xent._parity_distributed FRAMEWORK RANKS OUTFILE``."""
    framework, ranks, outfile = argv if argv is not None else sys.argv[1:]
    if framework == "jax":  # (before JAX starts; the parent sets it too)
        flag = f"--xla_force_host_platform_device_count={int(ranks)}"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    worker(framework, int(ranks), outfile)
    return 0


# ---------------------------------------------------------------------- checks
def evaluate(framework: str, ranks: int, results: dict[str, Any]) -> list[Check]:
    """Every check of a worker's ``results``: per case, the value and the
    gradient against the single-device loss and the float64 reference, and
    the ranks' losses against rank 0's."""
    data, checks = batch(), []
    for i, case in enumerate(cases(framework, ranks)):
        rtol, atol = tolerance(DTYPE, V, 1 if case.reduction == "none" else N)
        want, want_grad = reference(data, case)
        error = results.get(f"{i}.error")
        r = {name: results.get(f"{i}.{name}") for name in ("loss", "rank_losses", "grad", "single_loss", "single_grad")}
        if r["single_grad"] is not None:
            r["single_grad"] = _pad(r["single_grad"], case.total)
        if r["rank_losses"] is not None and r["loss"] is not None:
            r["rank0"] = np.broadcast_to(r["loss"], np.shape(r["rank_losses"]))
        checklist: list[tuple[str, str, Any, float]] = [
            ("value vs 1 device", "loss", "single_loss", 2.0),
            ("grad vs 1 device", "grad", "single_grad", 2.0),
            ("value vs float64", "loss", want, 1.0),
            ("grad vs float64", "grad", want_grad, 1.0),
            ("ranks agree", "rank_losses", "rank0", 1.0),
        ]
        for what, got, expected, scale in checklist:
            a = r.get(got)
            b = r.get(expected) if isinstance(expected, str) else expected
            problem: str | None
            if error is not None or a is None or b is None:
                mabs = mrel = ratio = math.inf
                problem = f"raised {error}" if error is not None else \
                    f"the worker wrote no {got if a is None else expected!r}"
            else:
                mabs, mrel, ratio, problem = compare(a, b, rtol * scale, atol * scale)
            checks.append(Check(case.layout, case.label, DTYPE, framework, what, mabs, mrel, ratio,
                                rtol * scale, ratio <= 1, problem))
    return checks


# ------------------------------------------------------------------------- run
@dataclass
class Report:
    """Everything one ``xent parity --distributed`` run found."""

    checks: list[Check]
    frameworks: list[str]
    ranks: int
    missing: list[str]
    broken: dict[str, str]
    cases: dict[str, list[Case]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.broken

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "distributed": True,
            "ranks": self.ranks,
            "frameworks": self.frameworks,
            "versions": self.versions,
            "missing": self.missing,
            "broken": self.broken,
            "checks": [asdict(c) for c in self.checks],
        }


def _command(framework: str, ranks: int, outfile: str) -> list[str]:
    return [sys.executable, "-m", "xent._parity_distributed", framework, str(ranks), outfile]


def _environment(framework: str, ranks: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if framework == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={ranks}".strip()
        env["JAX_PLATFORMS"] = "cpu"  # (host devices, whatever accelerator JAX may also have)
    # the worker imports the xent this process runs (a source checkout on sys.path included)
    import xent

    root = os.path.dirname(os.path.dirname(os.path.abspath(xent.__file__)))
    if any(os.path.abspath(p or os.curdir) == root for p in sys.path):
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def run_framework(framework: str, ranks: int, timeout: float = TIMEOUT) -> tuple[dict[str, Any] | None, str | None]:
    """``(results, None)`` from ``framework``'s worker subprocess, or
    ``(None, why)`` when it fails (its exit status and stderr's tail)."""
    with tempfile.TemporaryDirectory(prefix="xent-parity-") as tmp:
        outfile = os.path.join(tmp, f"{framework}.npz")
        try:
            proc = subprocess.run(_command(framework, ranks, outfile), capture_output=True, text=True,
                                  timeout=timeout, env=_environment(framework, ranks))
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return None, f"worker timed out after {timeout:.0f}s; stderr:\n{_tail(err)}"
        if proc.returncode != 0:
            return None, f"worker exited with status {proc.returncode}; stderr:\n{_tail(proc.stderr or proc.stdout)}"
        try:
            with np.load(outfile) as npz:
                return {k: npz[k] for k in npz.files}, None
        except Exception as exc:  # noqa: BLE001
            return None, f"worker wrote no readable results ({type(exc).__name__}: {exc}); stderr:\n{_tail(proc.stderr)}"


ProgressFn = Callable[[int, int, str], None]


def run(frameworks: Sequence[str] | None = None, ranks: int = 2, progress: ProgressFn | None = None) -> Report:
    """Run the vocab-parallel checks.

    Args:
      frameworks: among torch, tensorflow, jax; default: every installed one.
        A named one that is not installed is reported in ``broken``.
      ranks: processes (torch), logical CPUs (TF), host devices (JAX).
      progress: called as ``progress(done, total, label)``.

    Raises:
      ValueError: an unknown framework, one without a vocab-parallel engine,
        or ranks outside ``[1, MAX_RANKS]``.
    """
    explicit = frameworks is not None
    names = list(frameworks) if frameworks is not None else list(FRAMEWORKS)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown backend {unknown}; known: {list(NAMES)}")
    other = [n for n in names if n not in FRAMEWORKS]
    if other:
        raise ValueError(f"--distributed runs on {', '.join(FRAMEWORKS)} (xent.distributed's engines); "
                         f"not on {', '.join(other)}")
    if not 1 <= ranks <= MAX_RANKS:
        raise ValueError(f"--ranks must be between 1 and {MAX_RANKS}; received {ranks}")
    names = [n for n in FRAMEWORKS if n in names]
    missing = [n for n in names if not installed(n)]
    todo = [n for n in names if n not in missing]
    report = Report([], [], ranks, [] if explicit else missing,
                    {n: "not installed" for n in missing} if explicit else {})
    for k, name in enumerate(todo):
        if progress:
            progress(k, len(todo), f"{name}: {ENGINES[name].format(r=ranks)}")
        start = time.monotonic()
        try:
            results, why = run_framework(name, ranks)
        except Exception as exc:  # noqa: BLE001 - a framework that cannot run is a failure, named
            results, why = None, f"{type(exc).__name__}: {exc}"
        report.frameworks.append(name)
        report.cases[name] = cases(name, ranks)
        if results is None:
            report.broken[name] = why or "failed"
        else:
            report.versions[name] = str(results.get("version", ""))
            report.checks += evaluate(name, ranks, results)
        if progress:
            progress(k + 1, len(todo), f"{name} done in {time.monotonic() - start:.1f}s")
    return report


# ---------------------------------------------------------------------- report
_COLUMNS = {"vs 1 device": ("value vs 1 device", "grad vs 1 device"),
            "vs float64": ("value vs float64", "grad vs float64"),
            "ranks": ("ranks agree",)}


def _cell(checks: list[Check]) -> str:
    if not checks:
        return "-"
    worst = max(c.max_rel for c in checks)
    shown = "crash" if worst == math.inf else f"{worst:.1e}"
    return f"{shown} {'ok' if all(c.passed for c in checks) else 'FAIL'}"


def format_report(report: Report) -> str:
    """One line per framework × case: the largest relative error of the
    value and gradient checks against the single-device loss, against the
    float64 reference, and between the ranks' losses, ``ok`` when every
    element is within tolerance."""
    lines = [f"distributed: xent.distributed.sparse_softmax_cross_entropy, logits sharded over the class "
             f"axis, {DTYPE}, {N} tokens x {V} classes, {report.ranks} rank{'s' if report.ranks != 1 else ''}"]
    for name in report.frameworks:
        version = report.versions.get(name)
        note = ""
        if all(case.padded for case in report.cases.get(name, [])):
            note = f" ({V} classes do not split evenly over {report.ranks}: padded layout only)"
        lines.append(f"  {name}{' ' + version if version else ''}: {ENGINES[name].format(r=report.ranks)}{note}")
    lines.append("max relative error of value and logit gradient vs single-device xent (same process), "
                 "vs float64 reference; ranks: loss on each rank vs rank 0")
    by_case: dict[tuple[str, str, str], list[Check]] = {}
    for c in report.checks:
        by_case.setdefault((c.backend, c.loss, c.option), []).append(c)
    rows = [(name, case) for name in report.frameworks if name not in report.broken
            for case in report.cases.get(name, [])]
    lw = max([len(case.layout) for _, case in rows] + [6])
    ow = max([len(case.label) for _, case in rows] + [17])
    fw = max([len(n) for n in report.frameworks] + [9])
    head = f"{'framework':<{fw}}  {'shards':<{lw}}  {'option, reduction':<{ow}}"
    lines.append(head + "".join(f"  {col:>13}" for col in _COLUMNS))
    for name, case in rows:
        checks = by_case.get((name, case.layout, case.label), [])
        cells = [_cell([c for c in checks if c.what in whats]) for whats in _COLUMNS.values()]
        lines.append(f"{name:<{fw}}  {case.layout:<{lw}}  {case.label:<{ow}}" + "".join(f"  {c:>13}" for c in cells))
    lines.append("")
    if report.missing:
        lines.append("backends not found (skipped): " + ", ".join(report.missing))
    for name, why in report.broken.items():
        lines.append(f"FRAMEWORK FAILED: {name}: {why}")
    for c in report.failures:
        lines.append(f"MISMATCH: distributed {c.backend} [{c.loss}] {c.option}: {c.what}: "
                     f"max rel err {c.max_rel:.3g} > tolerance {c.rtol:.3g}" + (f"; {c.error}" if c.error else ""))
    n, fails = len(report.checks), len(report.failures)
    if not report.frameworks and not report.broken:
        lines.append("no framework with a vocab-parallel engine (torch, tensorflow, jax) is installed: nothing ran")
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"{verdict}: {n - fails}/{n} checks passed ({len(rows)} framework x case lines, "
                 f"{report.ranks} rank{'s' if report.ranks != 1 else ''})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
