"""Write the measured parts of docs/benchmarks.md and docs/linear.md from the
benchmarks' JSON output, so that a page shows exactly one run's numbers.

    python benchmarks/report.py           # rewrite the generated blocks and docs/benchmarks.png
    python benchmarks/report.py --check   # exit 1 where a page differs from its data

The data, committed with the pages (each file names the command that made it):

* ``docs/data/bench-cpu.json``: ``python -m xent bench --json docs/data/bench-cpu.json``
  (every framework, every loss, size and dtype); the chart, docs/benchmarks.png, is
  drawn from it too (where matplotlib is installed);
* ``docs/data/linear-cpu-<dtype>.json``: ``python benchmarks/linear.py --dtype <dtype>
  --json docs/data/linear-cpu-<dtype>.json``.

A page's generated block lies between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->``; everything else on the page is written by hand. The
targets are ``xent._bench.TARGETS``, the same that ``xent bench`` prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xent._bench import BACKENDS, Cell, check_targets, numpy_against_compiled  # noqa: E402

DATA = os.path.join(ROOT, "docs", "data")
BENCH_JSON = os.path.join(DATA, "bench-cpu.json")
LINEAR_DTYPES = ("bfloat16", "float32")
NAMES = {"numpy": "NumPy", "torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX"}
ANCHORS = {
    "numpy": "the NumPy formula (max shift, `exp`, sum, `log`, gather)",
    "torch": "`F.cross_entropy`, `F.binary_cross_entropy_with_logits`; compiled: both under `torch.compile`",
    "tensorflow": "`tf.nn.*_cross_entropy_with_logits` + `tf.reduce_mean`; compiled: both in "
                  "`tf.function(jit_compile=True)`",
    "jax": "`optax.losses.*` + `.mean()`; eager: op by op; compiled: both under `jax.jit`",
}


# ------------------------------------------------------------------ formatting
def _num(v: float | None, digits: int = 3) -> str:
    if v is None or v != v:
        return ""
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def _mem(c: Cell) -> str:
    if c.native_mem_mb is None:
        return ""
    return f"{c.native_mem_mb:.0f} / {c.xent_mem_mb:.0f}" if c.xent_mem_mb is not None else ""


def _command(run: dict[str, Any]) -> str:
    return "python -m xent bench " + " ".join(run.get("argv", []))


def _machine(info: dict[str, Any]) -> str:
    parts = [f"{info.get('cpu', 'CPU ?')}, {info.get('cpus')} CPUs"]
    if "memory_gb" in info:
        parts.append(f"{info['memory_gb']} GB")
    parts.append(info.get("gpu", "no GPU"))
    versions = [f"Python {info.get('python', '?')}"] + [
        f"{mod} {info[mod]}" for mod in ("numpy", "torch", "tensorflow", "jax", "optax", "scipy") if mod in info
    ]
    return ", ".join(parts) + "; " + ", ".join(versions)


# --------------------------------------------------------------- benchmarks.md
def load_bench(path: str | None = None) -> tuple[dict[str, Any], list[Cell]]:
    with open(path or BENCH_JSON) as fh:
        run = json.load(fh)
    return run, [Cell(**c) for c in run["cells"]]


def block_run(run: dict[str, Any], cells: list[Cell]) -> str:
    info = run["machine"]
    return "\n".join([
        f"- **Machine:** {_machine(info)}.",
        f"- **Run:** {run.get('date', '?')}, xent {info.get('xent', '?')}: {len(cells)} cells in "
        f"{run['wall_s'] / 60:.0f} min, nothing else running, each framework in a process of its own.",
        f"- **Command:** `{_command(run)}` (the data: `docs/data/bench-cpu.json`; this page: "
        "`python benchmarks/report.py`).",
    ])


def block_targets(run: dict[str, Any], cells: list[Cell]) -> str:
    lines = ["| target | cells | met | misses (value) |", "|---|---:|---:|---|"]
    for target, checked, misses in check_targets(cells, run.get("extras", {})):
        shown = "; ".join(f"{label}: {value}" for label, value in misses) or "none"
        lines.append(f"| {target} | {checked} | {checked - len(misses)} | {shown} |")
    return "\n".join(lines)


def block_numpy(run: dict[str, Any], cells: list[Cell]) -> str:
    rows = numpy_against_compiled(cells)
    lines = ["| loss | xent NumPy ms | `torch.compile` ms | xent / torch.compile | `jax.jit` (optax) ms | "
             "xent / jax.jit | peak MB naive / xent |", "|---|---:|---:|---:|---:|---:|---:|"]
    for loss, mine, torch_ms, jax_ms, cell in rows:
        def ratio(other: float | None) -> str:
            return f"{mine / other:.2f}" if other else ""
        lines.append(f"| {loss} | {_num(mine)} | {_num(torch_ms)} | {ratio(torch_ms)} | {_num(jax_ms)} | "
                     f"{ratio(jax_ms)} | {_mem(cell)} |")
    extra = run.get("extras", {}).get("numpy_4096x32000", {})
    if extra:
        lines.append("")
        lines.append(f"In the same run: one read of the logits (`z.max()`, the memory floor) "
                     f"{_num(extra.get('floor_ms'))} ms; `scipy.special.log_softmax` + gather "
                     f"{_num(extra.get('scipy_ms'))} ms.")
    return "\n".join(lines)


def block_tables(run: dict[str, Any], cells: list[Cell]) -> str:
    out = []
    for backend in BACKENDS:
        rows = [c for c in cells if c.backend == backend]
        if not rows:
            continue
        out += [f"### {NAMES[backend]}", "", f"Native: {ANCHORS[backend]}.", "",
                "| loss | N×C | dtype | pass | mode | native ms | xent ms | xent / native (p25–p75) | "
                "Δ µs/call | peak MB native / xent | pairs |",
                "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in rows:
            mode = "compiled" if c.compiled else "eager"
            out.append(f"| {c.loss} | {c.n}×{c.c} | {c.dtype} | {c.mode} | {mode} | {_num(c.native_ms)} | "
                       f"{_num(c.xent_ms)} | **{c.ratio:.2f}** ({c.ratio_p25:.2f}–{c.ratio_p75:.2f}) | "
                       f"{c.delta_us:.1f} | {_mem(c)} | {c.pairs} |")
        out += ["", f"One cell's four rows again: `python -m xent bench --backends {backend} --losses LOSS "
                    f"--sizes NxC --dtypes DTYPE`.", ""]
    return "\n".join(out).rstrip()


# ------------------------------------------------------------------- linear.md
IMPL_NAMES = {
    "torch-naive": "torch naive (`F.cross_entropy` of the float32 logits)",
    "torch-compile": "torch naive under `torch.compile`",
    "torch-lce": "torch `F.linear_cross_entropy` (chunked options)",
    "liger": "Liger `LigerFusedLinearCrossEntropyLoss`",
    "xent-torch": "**xent** torch, default `chunk_size`",
    "xent-torch@256": "xent torch, `chunk_size=256`",
    "jax-naive": "JAX naive, `jax.jit`",
    "xent-jax": "**xent** JAX, `jax.jit`, default `chunk_size`",
    "xent-jax@256": "xent JAX, `jax.jit`, `chunk_size=256`",
    "tf-naive": "TF naive, `tf.function`",
    "xent-tf": "**xent** TF, `tf.function`, default `chunk_size`",
    "xent-tf@256": "xent TF, `tf.function`, `chunk_size=256`",
}


def _linear_table(run: dict[str, Any]) -> list[str]:
    cfg = run["config"]
    lines = [f"#### {cfg['tokens']} tokens × hidden {cfg['hidden']} → vocabulary {cfg['vocab']}, "
             f"{cfg['dtype']}, {cfg['device']}", "",
             f"`{run.get('command', '?')}` ({run.get('date', '?')}; {_machine(run.get('machine', {}))})", "",
             "| implementation | fwd ms | fwd+bwd ms | peak MB | loss err | dh err | dW err |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in run["results"]:
        name = IMPL_NAMES.get(r["impl"], r["impl"])
        if "fwd_ms" not in r:
            lines.append(f"| {name} | not run: {r.get('skipped') or r.get('error')} | | | | | |")
            continue
        peak = _num(r.get("peak_mb"))
        if "xla_temp_mb" in r:
            peak += f" (XLA plans {r['xla_temp_mb']:.0f})"
        lines.append(f"| {name} | {_num(r['fwd_ms'])} | {_num(r['fwd_bwd_ms'])} | {peak} | "
                     f"{r['loss_err']:.1e} | {r['dh_err']:.1e} | {r['dW_err']:.1e} |")
    return lines


def block_linear(runs: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for run in runs:
        out += _linear_table(run) + [""]
    return "\n".join(out).rstrip()


# ---------------------------------------------------------------------- driver
def _replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- report:{name} -->\n).*?(<!-- /report:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"report: no block {name!r} in the page")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def pages() -> dict[str, dict[str, Callable[[], str]]]:
    """Each page's blocks and how to render them."""
    run, cells = load_bench()
    linear = []
    for dtype in LINEAR_DTYPES:
        path = os.path.join(DATA, f"linear-cpu-{dtype}.json")
        if os.path.exists(path):
            with open(path) as fh:
                linear.append(json.load(fh))
    return {
        os.path.join(ROOT, "docs", "benchmarks.md"): {
            "run": lambda: block_run(run, cells),
            "targets": lambda: block_targets(run, cells),
            "numpy": lambda: block_numpy(run, cells),
            "tables": lambda: block_tables(run, cells),
        },
        os.path.join(ROOT, "docs", "linear.md"): {"linear": lambda: block_linear(linear)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 where a page is out of date")
    args = ap.parse_args(argv)
    stale = []
    for page, blocks in pages().items():
        with open(page) as fh:
            text = fh.read()
        new = text
        for name, render in blocks.items():
            new = _replace(new, name, render())
        if new != text:
            stale.append(os.path.relpath(page, ROOT))
            if not args.check:
                with open(page, "w") as fh:
                    fh.write(new)
    if not args.check:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("report: no matplotlib here, docs/benchmarks.png left as it is")
        else:
            from xent._bench import draw

            run, cells = load_bench()
            info = run["machine"]
            draw(cells, os.path.join(ROOT, "docs", "benchmarks.png"),
                 f"xent / native, median of interleaved pairs (bars: p25-p75) — {info.get('cpu', '?')}, "
                 f"{info.get('cpus')} CPUs, {run.get('date', '')}")
    if args.check and stale:
        print("out of date with docs/data: " + ", ".join(stale) + " (run python benchmarks/report.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
