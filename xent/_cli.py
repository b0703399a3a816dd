"""The ``xent`` command line: ``xent info`` and ``xent parity``.

The checks themselves live in :mod:`xent._parity`; this module only parses
arguments, shows progress and formats the results.

Subcommands are registered in :func:`build_parser`, one ``_add_<name>`` function
each: ``info``, ``parity`` and ``bench`` (whose engine is :mod:`xent._bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from xent._progress import Progress
from xent.testing._frameworks import NAMES

#: what ``xent parity`` tests, in the order the table shows them
_BACKEND_ORDER = NAMES


def _split(values: Sequence[str] | None) -> list[str] | None:
    """``--backends torch,jax --backends numpy`` -> ``["torch", "jax", "numpy"]``."""
    if not values:
        return None
    return [v for value in values for v in value.replace(" ", ",").split(",") if v]


# ----------------------------------------------------------------------- info
def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="list the backends found, their versions and devices")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    import importlib.util

    import xent
    from xent._registry import _BUILTINS

    out.write(f"xent {xent.__version__} (python {sys.version.split()[0]})\n")
    found = xent.available_backends()
    rows = []
    status = 0
    for name in found:
        try:
            be = xent.get_backend(name)
            rows.append((name, be.version(), ", ".join(be.devices())))
        except Exception as exc:  # noqa: BLE001 - an installed backend that cannot load
            rows.append((name, "ERROR", f"{type(exc).__name__}: {exc}"))
            status = 1
    width = max(len(r[0]) for r in rows) if rows else 7
    out.write(f"{'backend':<{width}}  {'version':<14}  devices\n")
    for name, version, devices in rows:
        out.write(f"{name:<{width}}  {version:<14}  {devices}\n")
    absent = [n for n, (module, _) in _BUILTINS.items()
              if n not in found and module and importlib.util.find_spec(module) is None]
    if absent:
        out.write(f"not found: {', '.join(absent)}\n")
    return status


# --------------------------------------------------------------------- parity
def _add_parity(sub: Any) -> None:
    from xent._parity import DTYPES, LOSSES

    p = sub.add_parser(
        "parity",
        help="check every loss x option x dtype x backend against a float64 reference "
             "and the frameworks' native losses",
        description="Run every xent loss with each of its options, in each dtype, on each "
                    "installed backend; compare values and gradients with a float64 reference "
                    "and with the framework's native loss. Exit status 1 on any mismatch.",
    )
    p.add_argument("--backends", action="append", metavar="NAMES",
                   help=f"comma-separated subset of {', '.join(_BACKEND_ORDER)} "
                        f"(default: all installed; a named backend that is missing fails)")
    p.add_argument("--losses", action="append", metavar="NAMES",
                   help=f"comma-separated subset of {', '.join(LOSSES)} (or loss/option)")
    p.add_argument("--dtypes", action="append", metavar="NAMES",
                   help=f"comma-separated subset of {', '.join(DTYPES)}")
    p.add_argument("--json", metavar="FILE", help="write every check to FILE as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="instead: run xent.distributed.sparse_softmax_cross_entropy with the logits sharded "
                        "over the class axis on torch (gloo ranks), tensorflow (MirroredStrategy) and jax "
                        "(shard_map), one subprocess each, against the single-device loss and the float64 "
                        "reference (--backends picks among those three)")
    p.add_argument("--ranks", type=int, metavar="N",
                   help="with --distributed: processes / logical CPUs / host devices (default: 2)")
    p.set_defaults(func=_cmd_parity)


def _cell(checks: list[Any]) -> str:
    if not checks:
        return "-"
    worst = max(c.max_rel for c in checks)
    ok = all(c.passed for c in checks)
    shown = "crash" if worst == float("inf") else f"{worst:.1e}"
    return f"{shown} {'ok' if ok else 'FAIL'}"


def format_report(report: Any) -> str:
    """The parity table: one block per dtype, rows = loss/option, columns = backend.

    A cell is the largest relative error of any check in it (value, gradients,
    native loss) and ``ok`` when every check is within tolerance.
    """
    lines: list[str] = []
    backends = [b for b in _BACKEND_ORDER if b in report.backends]
    by_cell: dict[tuple[str, str, str], list[Any]] = {}
    for c in report.checks:
        by_cell.setdefault((c.case, c.dtype, c.backend), []).append(c)
    names = [case.name for case in report.cases]
    width = max([len(n) for n in names] + [10])
    colw = max([len(b) for b in backends] + [13])
    for dtype in report.dtypes:
        lines.append(f"\n{dtype}: max relative error vs float64 reference"
                     + (" and native losses" if dtype in ("float32", "float64") else ""))
        lines.append(f"{'loss/option':<{width}}  " + "  ".join(f"{b:>{colw}}" for b in backends))
        for name in names:
            cells = [_cell(by_cell.get((name, dtype, b), [])) for b in backends]
            lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>{colw}}" for c in cells))
    n_checks = len(report.checks)
    fails = report.failures
    lines.append("")
    natives = sorted({c.what[len("native "):] for c in report.checks if c.what.startswith("native ")})
    if natives:
        lines.append("native losses compared: " + ", ".join(natives))
    if report.missing:
        lines.append("backends not found (skipped): " + ", ".join(report.missing))
    for name, why in report.broken.items():
        lines.append(f"BACKEND FAILED: {name}: {why}")
    for c in fails:
        lines.append(f"MISMATCH: {c.case} [{c.dtype}] on {c.backend}: {c.what}: "
                     f"max rel err {c.max_rel:.3g} > tolerance {c.rtol:.3g}"
                     + (f"; {c.error}" if c.error else ""))
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"{verdict}: {n_checks - len(fails)}/{n_checks} checks passed "
                 f"({len(report.cases)} cases x {len(report.dtypes)} dtypes x "
                 f"{len(report.backends)} backends)")
    return "\n".join(lines).lstrip("\n") + "\n"


def _cmd_parity(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.distributed or args.ranks is not None:
        return _cmd_parity_distributed(args, out, err)
    from xent import _parity

    try:
        backends, losses, dtypes = _split(args.backends), _split(args.losses), _split(args.dtypes)
        progress = Progress(enabled=not args.quiet, stream=err)
        start = time.monotonic()
        report = _parity.run(backends=backends, losses=losses, dtypes=dtypes, progress=progress)
    except ValueError as exc:
        err.write(f"xent parity: error: {exc}\n")
        return 2
    out.write(format_report(report))
    out.write(f"time: {time.monotonic() - start:.1f}s\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(), f, indent=1, default=float)
        out.write(f"wrote {args.json}\n")
    return 0 if report.passed else 1


def _cmd_parity_distributed(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``xent parity --distributed``: the engine is :mod:`xent._parity_distributed`."""
    from xent import _parity_distributed

    try:
        if not args.distributed:
            raise ValueError("--ranks needs --distributed")
        if args.losses or args.dtypes:
            raise ValueError("--losses and --dtypes do not apply to --distributed (it runs "
                             "sparse_softmax_cross_entropy in float32)")
        ranks = 2 if args.ranks is None else args.ranks
        progress = Progress(enabled=not args.quiet, stream=err)
        start = time.monotonic()
        report = _parity_distributed.run(frameworks=_split(args.backends), ranks=ranks, progress=progress)
        progress.close()
    except ValueError as exc:
        err.write(f"xent parity: error: {exc}\n")
        return 2
    out.write(_parity_distributed.format_report(report))
    out.write(f"time: {time.monotonic() - start:.1f}s\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(), f, indent=1, default=float)
        out.write(f"wrote {args.json}\n")
    return 0 if report.passed else 1


# ----------------------------------------------------------------------- main
# ---------------------------------------------------------------------- bench
def _add_bench(sub: Any) -> None:
    from xent import _bench

    p = sub.add_parser(
        "bench",
        help="time xent against each framework's native loss (ratios, overhead, memory)",
        description="Benchmark xent against the native losses, A/B interleaved, each framework "
                    "in a process of its own; prints a table of xent/native ratios, writes JSON and "
                    "a PNG chart.",
    )
    _bench.add_arguments(p)
    p.set_defaults(func=_bench.run)


def build_parser() -> argparse.ArgumentParser:
    """The ``xent`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="xent", description="xent: one cross-entropy library for every array framework.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_info(sub)
    _add_parity(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xent`` command line; returns the exit status.

    >>> import io, contextlib
    >>> with contextlib.redirect_stdout(io.StringIO()) as buf:
    ...     status = main(["parity", "--backends", "numpy", "--losses",
    ...                    "binary_cross_entropy", "--dtypes", "float64", "--quiet"])
    >>> status, "PASSED" in buf.getvalue()
    (0, True)
    """
    # quiet TensorFlow's C++ start-up logging unless the user asked for it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))
