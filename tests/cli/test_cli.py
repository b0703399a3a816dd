"""``xent info`` / ``xent parity`` and the parity engine's float64 reference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import xent
from xent import _parity
from xent._cli import main
from xent.testing import installed


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_info_lists_backends(capsys):
    status, out, _ = run_cli(capsys, "info")
    assert status == 0
    assert "numpy" in out and np.__version__ in out


def test_parity_numpy_passes_and_writes_json(capsys, tmp_path):
    path = tmp_path / "parity.json"
    status, out, err = run_cli(capsys, "parity", "--backends", "numpy", "--dtypes", "float32,float64",
                               "--json", str(path))
    assert status == 0, out
    assert "PASSED" in out and "sparse_softmax_cross_entropy/ignore_index, mean" in out
    assert "648" not in err and "/" in err  # progress went to stderr
    data = json.loads(path.read_text())
    assert data["passed"] is True
    cells = {(c["loss"], c["option"], c["dtype"]) for c in data["checks"]}
    assert len(cells) == 2 * len(_parity.CASES)
    assert all(c["backend"] == "numpy" and c["ratio"] <= 1 for c in data["checks"])


def test_parity_names_the_failing_cell(capsys, monkeypatch):
    real = xent.binary_cross_entropy

    def off_by_a_bit(probs, labels, **kw):
        return real(probs, labels, **kw) * 1.0001

    monkeypatch.setattr(xent, "binary_cross_entropy", off_by_a_bit)
    status, out, _ = run_cli(capsys, "parity", "--backends", "numpy", "--losses", "binary_cross_entropy",
                             "--dtypes", "float64", "--quiet")
    assert status == 1
    assert "MISMATCH: binary_cross_entropy/default [float64] on numpy: value" in out
    assert "FAILED" in out


def test_parity_fails_on_a_backend_that_cannot_start(capsys, monkeypatch):
    def broken(name):
        raise ImportError(f"{name} is broken here")

    monkeypatch.setattr(_parity, "framework", broken)
    status, out, _ = run_cli(capsys, "parity", "--backends", "numpy", "--losses", "sigmoid_cross_entropy",
                             "--quiet")
    assert status == 1
    assert "BACKEND FAILED: numpy: ImportError: numpy is broken here" in out


def test_parity_with_only_numpy_says_what_is_missing(capsys, monkeypatch):
    monkeypatch.setattr(_parity, "installed", lambda name: name == "numpy")
    status, out, _ = run_cli(capsys, "parity", "--losses", "sparse_categorical_cross_entropy",
                             "--dtypes", "float32", "--quiet")
    assert status == 0, out
    assert "backends not found (skipped): torch, tensorflow, jax, array_api_strict" in out


def test_parity_rejects_unknown_names(capsys):
    assert run_cli(capsys, "parity", "--backends", "nope", "--quiet")[0] == 2
    assert run_cli(capsys, "parity", "--losses", "hinge", "--quiet")[0] == 2
    assert run_cli(capsys, "parity", "--dtypes", "int8", "--quiet")[0] == 2


def test_python_dash_m_and_console_script():
    cmd = [sys.executable, "-m", "xent", "parity", "--backends", "numpy", "--losses",
           "sigmoid_cross_entropy", "--dtypes", "float64", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_parity_against_native_losses(backend):
    if not installed(backend):
        pytest.skip(f"{backend} not installed")
    report = _parity.run(backends=[backend], dtypes=["float32"],
                         losses=["softmax_cross_entropy", "sparse_softmax_cross_entropy"])
    natives = [c for c in report.checks if c.what.startswith("native ")]
    assert natives, "no native loss was compared"
    assert report.passed, [(c.case, c.what, c.error) for c in report.failures]


# ------------------------------------------------------ the float64 reference
def _inputs(preds, labels, **kw):
    return _parity.Inputs(np.asarray(preds, np.float64), np.asarray(labels), **kw)


def test_reference_matches_the_seed_examples():
    softmax = _parity.Case("softmax_cross_entropy", "seed", shape=(2, 3))
    ref = _parity.reference(softmax, _inputs([[2, 0.5, 1], [0.1, 1, 3]], [[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]]))
    np.testing.assert_allclose(ref.value, [1.4143689, 1.6642545], rtol=1e-7)
    sigmoid = _parity.Case("sigmoid_cross_entropy", "seed", shape=(2, 3))
    ref = _parity.reference(sigmoid, _inputs([[12, 3, 2], [3, 10, 1]], [[1, 0, 0], [0, 1, 0.0]]))
    np.testing.assert_allclose(ref.value, [[6.14419348e-06, 3.04858735, 2.12692801],
                                           [3.04858735, 4.53988992e-05, 1.31326169]], rtol=1e-7)
    scc = _parity.Case("sparse_categorical_cross_entropy", "seed", shape=(2, 3), reduction="mean")
    ref = _parity.reference(scc, _inputs([[0.05, 0.9, 0.05], [0.1, 0.8, 0.1]], [1, 2]))
    np.testing.assert_allclose(ref.value, 1.2039728, rtol=1e-7)
    torch_b1 = _parity.Case("sparse_softmax_cross_entropy", "b1", shape=(2, 3), class_weights=True,
                            reduction="mean")
    z = [[2, 0.5, 1], [0.1, 1, 3]]
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ref = _parity.reference(torch_b1, _inputs(z, [1, 2], class_weights=np.array([1.0, 2, 3])))
    np.testing.assert_allclose(ref.value, (-2 * logp[0, 1] - 3 * logp[1, 2]) / 5, rtol=1e-12)


@pytest.mark.parametrize("case", [c for c in _parity.CASES if c.option != "sum"], ids=lambda c: c.name)
def test_reference_gradient_is_the_derivative_of_the_reference(case):
    inputs = _parity.make_inputs(case, "float64")
    ref = _parity.reference(case, inputs)
    rng = np.random.default_rng(0)
    for name, grad in ref.grads.items():
        base = getattr(inputs, name).astype(np.float64)
        direction = rng.normal(size=base.shape)
        h = 1e-6

        def scalar(x):
            shifted = _parity.Inputs(**{**inputs.__dict__, name: x})
            return float(np.sum(_parity.reference(case, shifted).value))

        numeric = (scalar(base + h * direction) - scalar(base - h * direction)) / (2 * h)
        np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-5, atol=1e-8)


def test_bench_subcommand_runs_and_writes_json(tmp_path):  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "bench", "--backends", "numpy", "--sizes", "32x10",
         "--losses", "sparse", "--no-progress", "--pairs", "40", "--json", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "ratio" in proc.stdout
    data = json.loads(out.read_text())
    assert data["cells"], "the JSON file has no cells"
    # --pairs raises the floor on interleaved pairs (the time budget alone gives
    # a 32x10 NumPy cell about a dozen)
    assert all(cell["pairs"] >= 40 for cell in data["cells"])


@pytest.mark.parametrize("option, value", [("--dtypes", "float16"), ("--backends", "numpy,mxnet"), ("--losses", "hinge")])
def test_bench_rejects_unknown_choices(option, value):  # type: ignore[no-untyped-def]
    # A misspelt filter is a usage error that names the choices, not an empty
    # run or a KeyError deep in the planner.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "xent", "bench", option, value], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"argument {option}: '{value}': pick from" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bench_rejects_bad_pairs(value):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "xent", "bench", "--pairs", value], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"argument --pairs: '{value}': expected a whole number of at least 1" in proc.stderr


def test_bench_device_cpu_runs_every_framework_there(tmp_path):  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "xent", "bench", "--device", "cpu", "--sizes", "32x10", "--losses", "sparse",
         "--dtypes", "float32", "--no-progress", "--pairs", "1", "--json", str(out)],
        capture_output=True, text=True, check=True,
    )
    cells = json.loads(out.read_text())["cells"]
    assert {cell["device"] for cell in cells} == {"cpu"}
    assert not [cell["note"] for cell in cells if cell["note"]]


def test_bench_device_gpu_without_one_names_what_is_missing(tmp_path):  # type: ignore[no-untyped-def]
    # On a machine with no GPU, each framework's cells say so (and NumPy, which
    # has no GPU, is left out), instead of running on the CPU unnoticed.
    import json
    import subprocess
    import sys

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "bench", "--device", "cuda", "--backends", "numpy,torch", "--sizes", "32x10",
         "--losses", "sparse", "--dtypes", "float32", "--no-progress", "--pairs", "1", "--json", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    cells = json.loads(out.read_text())["cells"]
    assert cells and {cell["backend"] for cell in cells} == {"torch"}
    assert all("torch sees no CUDA device" in cell["note"] for cell in cells)


def test_bench_runs_each_framework_in_a_process_of_its_own(tmp_path):  # type: ignore[no-untyped-def]
    # In one process, JAX's and TF's GPU preallocation and each framework's
    # allocator and threads would weigh on the others' numbers: each framework
    # is measured in a fresh process (a pid per framework, not the parent's),
    # and the parent merges the cells in the plan's order. A run of one
    # framework stays in the parent.
    torch = pytest.importorskip("torch")
    argv = [sys.executable, "-m", "xent", "bench", "--sizes", "32x10", "--losses", "sparse", "--dtypes", "float32",
            "--quick", "--no-progress", "--pairs", "1"]
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([*argv, "--backends", "torch,numpy", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    data = json.loads(out.read_text())
    pids = data["pids"]
    assert set(pids) == {"numpy", "torch"}
    assert len(set(pids.values())) == 2 and proc.pid not in pids.values()
    assert [(c["backend"], c["mode"]) for c in data["cells"]] == [("torch", "fwd"), ("torch", "fwd+bwd"),
                                                                  ("numpy", "fwd")]  # as --backends says
    assert not [c["note"] for c in data["cells"] if c["note"]]
    # what the workers saw reaches the table, the summary and the JSON
    assert data["machine"]["torch"] == torch.__version__ and "numpy_32x10" in data["extras"]
    assert "lookup_us" in data["extras"] and "small torch calls on the fused rung" in stdout and "3 cells in" in stdout

    proc = subprocess.Popen([*argv, "--backends", "numpy", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert json.loads(out.read_text())["pids"] == {"numpy": proc.pid}


def test_bench_device_gpu_without_one_fails_in_each_worker(tmp_path):  # type: ignore[no-untyped-def]
    # Two frameworks, two worker processes: each one's cells name the framework
    # that sees no GPU, and the run fails.
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "bench", "--device", "gpu", "--backends", "torch,jax", "--sizes", "32x10",
         "--losses", "sparse", "--dtypes", "float32", "--quick", "--no-progress", "--pairs", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    cells = json.loads(out.read_text())["cells"]
    assert {cell["backend"] for cell in cells} == {"torch", "jax"}
    for cell in cells:
        missing = "torch sees no CUDA device" if cell["backend"] == "torch" else "JAX sees no such device"
        assert missing in cell["note"], cell
    assert "JAX sees no such device" in proc.stdout


def test_linear_benchmark_device_gpu_without_one_names_the_framework(tmp_path):  # type: ignore[no-untyped-def]
    # benchmarks/linear.py --device gpu: a framework that sees no GPU fails the
    # run with a message that names it, instead of timing the CPU unnoticed.
    import pathlib

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "linear.py"
    if not script.exists():
        pytest.skip("no benchmarks/ here")
    out = tmp_path / "linear.json"
    proc = subprocess.run([sys.executable, str(script), "--device", "gpu", "--repeats", "1", "--impls", "xent-torch",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "xent-torch      error: --device gpu: torch sees no CUDA device" in proc.stdout
    assert json.loads(out.read_text())["results"] == [
        {"impl": "xent-torch", "error": "--device gpu: torch sees no CUDA device"}]


def test_family_benchmark_runs_every_row(tmp_path):  # type: ignore[no-untyped-def]
    # benchmarks/family.py at a toy size, both ways: a row per loss with both
    # times and a ratio, and an unknown loss named in the error.
    import pathlib

    pytest.importorskip("torch")
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "family.py"
    if not script.exists():
        pytest.skip("no benchmarks/ here")
    for extra in ([], ["--whole"]):
        proc = subprocess.run([sys.executable, str(script), "--size", "16x8", "--budget", "0.01", "--dtypes", "float32",
                               *extra], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "float32" in line]
        assert len(rows) == 6 and all(len(row.split("|")) == 7 for row in rows), proc.stdout
        assert ("whole arrays" in proc.stdout) == bool(extra)
    proc = subprocess.run([sys.executable, str(script), "--losses", "focal"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "unknown --losses ['focal']" in proc.stderr
