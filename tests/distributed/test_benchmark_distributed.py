"""benchmarks/distributed.py runs end to end at a tiny size: every method gets
a row with numbers, and the communication seen in the collectives matches the
analytic bytes per token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_distributed_benchmark_prints_a_row_per_method(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distributed.py"), "--tokens", "64", "--vocab", "256",
         "--ranks", "1,2", "--repeats", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    lines = proc.stdout.splitlines()
    for method in ("xent.distributed", "gather", "loss_parallel", "optax GSPMD"):
        assert any(line.startswith(f"| {method} | 2 |") for line in lines), (method, proc.stdout)
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 10  # per framework: 2 + 1 + 2 (no gather at R=1)
    for row in rows:
        assert "error" not in row, row
        assert row["median_ms"] > 0 and row["peak_bytes"] >= 0
        if row["ranks"] > 1:  # (torch's xent also all-gathers the shard widths once a call: 8R bytes)
            assert row["seen_bytes_per_token"] == pytest.approx(row["bytes_per_token"], abs=2 * 8 / 64), row
