"""``xent parity --distributed``: the vocab-parallel loss on each installed
framework's engine (subprocesses), and that its comparison can fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xent import _parity_distributed as pd
from xent._cli import main
from xent.testing import installed

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = [name for name in pd.FRAMEWORKS if installed(name)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.skipif(not FRAMEWORKS, reason="none of torch, tensorflow, jax is installed")
def test_distributed_parity_passes_on_every_installed_framework(tmp_path):
    path = tmp_path / "distributed.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "parity", "--distributed", "--quiet", "--backends", ",".join(FRAMEWORKS),
         "--json", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for name in FRAMEWORKS:
        rows = [line for line in lines if line.startswith(name + " ")]
        assert len(rows) == len(pd.cases(name, 2)), (name, proc.stdout)
        assert all(line.count(" ok") == 3 for line in rows), rows
    assert "PASSED" in proc.stdout
    data = json.loads(path.read_text())
    assert data["passed"] is True and data["ranks"] == 2 and data["frameworks"] == FRAMEWORKS
    whats = {c["what"] for c in data["checks"]}
    assert whats == {"value vs 1 device", "grad vs 1 device", "value vs float64", "grad vs float64", "ranks agree"}


def test_a_loss_that_lets_the_padded_lanes_count_fails(capsys, monkeypatch):
    """The JAX worker run in this process (one host device, so ranks=1) with
    xent.distributed's loss called without vocab_size: the padded lanes
    (holding 40) then count, and every padded case must fail against both
    the single-device loss and the float64 reference (the class-weights
    cases crash: xent then rejects the 50 weights for 54 classes), while the
    layout without padding still passes."""
    pytest.importorskip("jax")
    import xent.distributed

    real = xent.distributed.sparse_softmax_cross_entropy

    def forgets_vocab_size(logits, labels, **kw):  # type: ignore[no-untyped-def]
        kw.pop("vocab_size", None)
        return real(logits, labels, **kw)

    monkeypatch.setattr(xent.distributed, "sparse_softmax_cross_entropy", forgets_vocab_size)
    monkeypatch.setattr(pd, "run_framework", lambda name, ranks: (pd.WORKERS[name](ranks), None))
    status, out, _ = run_cli(capsys, "parity", "--distributed", "--backends", "jax", "--ranks", "1", "--quiet")
    assert status == 1, out
    rows = [line for line in out.splitlines() if line.startswith("jax ")]
    assert len(rows) == len(pd.cases("jax", 1)) == 16
    padded = [line for line in rows if "pad)" in line]
    assert len(padded) == 8
    for line in padded:
        cells = line.split()[-6:]  # vs 1 device, vs float64, ranks
        assert cells[1] == cells[3] == "FAIL", line
        if "class_weights" in line:
            assert cells == ["crash", "FAIL"] * 3, line
        else:  # (wrong, but every device agrees with itself)
            assert cells[5] == "ok", line
    assert all("FAIL" not in line for line in rows if line not in padded)
    assert "MISMATCH: distributed jax [54 (4 pad)] plain, none: value vs 1 device" in out
    assert "MISMATCH: distributed jax [54 (4 pad)] plain, mean: grad vs float64" in out
    assert "raised ValueError: class_weights must have shape (54,)" in out
    assert out.splitlines()[-2].startswith("FAILED: 46/80 checks passed")


def test_a_failing_worker_is_named_with_its_stderr(capsys, monkeypatch):
    def crashes(framework, ranks, outfile):  # type: ignore[no-untyped-def]
        code = "import sys; sys.stderr.write('Traceback\\nRuntimeError: gloo could not connect\\n'); sys.exit(3)"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(pd, "_command", crashes)
    monkeypatch.setattr(pd, "installed", lambda name: True)
    status, out, _ = run_cli(capsys, "parity", "--distributed", "--backends", "torch", "--quiet")
    assert status == 1
    assert "FRAMEWORK FAILED: torch: worker exited with status 3; stderr:" in out
    assert "RuntimeError: gloo could not connect" in out
    assert "FAILED: 0/0 checks passed" in out


def test_a_named_framework_that_is_missing_fails(capsys, monkeypatch):
    monkeypatch.setattr(pd, "installed", lambda name: False)
    status, out, _ = run_cli(capsys, "parity", "--distributed", "--backends", "jax", "--quiet")
    assert status == 1
    assert "FRAMEWORK FAILED: jax: not installed" in out


def test_without_any_framework_nothing_runs(capsys, monkeypatch):
    monkeypatch.setattr(pd, "installed", lambda name: False)
    status, out, _ = run_cli(capsys, "parity", "--distributed", "--quiet")
    assert status == 0
    assert "backends not found (skipped): torch, tensorflow, jax" in out
    assert "nothing ran" in out


@pytest.mark.parametrize("argv", [
    ["--ranks", "2"],  # (without --distributed)
    ["--distributed", "--ranks", "0"],
    ["--distributed", "--ranks", str(pd.MAX_RANKS + 1)],
    ["--distributed", "--backends", "numpy"],
    ["--distributed", "--backends", "nope"],
    ["--distributed", "--dtypes", "float32"],
    ["--distributed", "--losses", "sparse_softmax_cross_entropy"],
])
def test_bad_distributed_arguments(capsys, argv):
    status, _, err = run_cli(capsys, "parity", "--quiet", *argv)
    assert status == 2
    assert err.startswith("xent parity: error:")


@pytest.mark.parametrize("ranks", range(1, pd.MAX_RANKS + 1))
@pytest.mark.parametrize("framework", pd.FRAMEWORKS)
def test_every_layout_puts_a_label_on_every_shard_and_pads_past_the_vocabulary(framework, ranks):
    data = pd.batch()
    layouts = pd.layouts(framework, ranks)
    assert [padded for _, padded in layouts] == ([False, True] if framework == "torch" or pd.V % ranks == 0
                                                else [True])
    for case in pd.cases(framework, ranks):
        assert len(case.widths) == ranks and min(case.widths) > 0
        if framework != "torch":
            assert len(set(case.widths)) == 1
        assert case.total - pd.V >= pd.PAD if case.padded else case.total == pd.V
        y = pd.labels(data, case)
        edges = np.cumsum((0,) + case.widths)
        for lo, hi in zip(edges[:-1], edges[1:]):
            assert ((y >= lo) & (y < min(hi, pd.V))).any(), (case, lo, hi)
        assert (y[list(pd.IGNORED_ROWS)] == pd.IGNORE).all() == ("ignore_index" in pd.OPTIONS[case.option])
        z = pd.padded_logits(data, case)
        assert z.shape == (pd.N, case.total) and (z[:, pd.V:] == pd.PAD_VALUE).all()
    if framework == "torch" and ranks > 1:
        assert len(set(layouts[0][0])) > 1  # uneven
