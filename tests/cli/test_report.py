"""docs/benchmarks.md and docs/linear.md show exactly the runs in docs/data:
``benchmarks/report.py`` renders their generated blocks from the JSON files,
and the pages must equal what it renders. Also: the targets it reports are the
ones ``xent bench`` checks, computed from the cells."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import pytest

from xent import _bench

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "report.py"


def _report():
    if not SCRIPT.exists():
        pytest.skip("no benchmarks/ here")
    spec = importlib.util.spec_from_file_location("xent_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_equal_their_data(capsys):
    assert _report().main(["--check"]) == 0, capsys.readouterr().out


def test_a_changed_number_makes_the_page_stale(tmp_path, monkeypatch, capsys):
    report = _report()
    data, docs = tmp_path / "docs" / "data", tmp_path / "docs"
    shutil.copytree(ROOT / "docs" / "data", data)
    for page in ("benchmarks.md", "linear.md"):
        shutil.copy(ROOT / "docs" / page, docs / page)
    run = json.loads((data / "bench-cpu.json").read_text())
    run["cells"][0]["xent_ms"] *= 2
    (data / "bench-cpu.json").write_text(json.dumps(run))
    monkeypatch.setattr(report, "ROOT", str(tmp_path))
    monkeypatch.setattr(report, "DATA", str(data))
    monkeypatch.setattr(report, "BENCH_JSON", str(data / "bench-cpu.json"))
    assert report.main(["--check"]) == 1
    assert "docs/benchmarks.md" in capsys.readouterr().out
    assert report.main([]) == 0 and report.main(["--check"]) == 0  # rewritten, in date again


def _cell(**kw):
    base = dict(backend="torch", loss="sparse", n=32, c=10, dtype="float32", mode="fwd", compiled=False,
                native_ms=0.01, xent_ms=0.012, ratio=1.2, delta_us=2.0)
    return _bench.Cell(**{**base, **kw})


def test_targets_follow_the_cells():
    cells = [
        _cell(),  # fused rung: 2 µs, met
        _cell(mode="fwd+bwd", delta_us=4.0),  # fused rung: missed
        _cell(backend="tensorflow", delta_us=30.0),  # other small forward: missed
        _cell(backend="tensorflow", mode="fwd+bwd", delta_us=30.0),  # other small fwd+bwd: met
        _cell(backend="numpy", ratio=1.4),
        _cell(backend="jax", n=4096, c=32000, ratio=1.05),  # large eager: missed
        _cell(backend="numpy", n=4096, c=32000, xent_ms=90.0, ratio=0.2),
        _cell(n=4096, c=32000, compiled=True, native_ms=100.0, ratio=1.0),
        _cell(backend="jax", n=4096, c=32000, compiled=True, native_ms=80.0, ratio=0.9),
    ]
    got = {name: (checked, [label for label, _ in misses]) for name, checked, misses in _bench.check_targets(cells)}
    names = [t[0] for t in _bench.TARGETS]
    assert got[names[0]] == (2, ["torch sparse 32x10 float32 fwd+bwd eager"])
    assert got[names[1]] == (1, ["tensorflow sparse 32x10 float32 fwd eager"])
    assert got[names[2]] == (1, [])
    assert got[names[3]] == (1, [])
    assert got[names[4]] == (2, ["jax sparse 4096x32000 float32 fwd eager"])
    assert got[names[5]] == (2, [])
    numpy_vs_compiled = [v for k, v in got.items() if k.startswith("large NumPy")]
    assert numpy_vs_compiled == [(2, ["numpy sparse vs jax.jit(optax)"])]  # 90 ms: under 100, over 80


def test_bench_png_without_matplotlib_fails_before_measuring(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(_bench, "plan", lambda args: pytest.fail("measured before refusing --png"))
    assert _bench.main(["--backends", "numpy", "--quick", "--png", "chart.png"]) == 2
    assert "--png needs matplotlib" in capsys.readouterr().err
