"""The distribution ships backends/ as xent.backends, never as a bare `backends`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_wheel_layout(tmp_path):  # type: ignore[no-untyped-def]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("xent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"xent"}, tops
    for module in ("numpy_backend", "torch/__init__", "torch/fused", "tensorflow/compile_cache", "jax/backend",
                   "array_api_backend", "_base", "_rows"):
        assert f"xent/backends/{module}.py" in names
    for module in ("testing/__init__", "testing/pytest_plugin", "compat/__init__", "__main__"):
        assert f"xent/{module}.py" in names
    # The wheel, installed on its own (outside the source tree), works.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import xent, xent.testing, xent.compat, xent.backends; "
            "print(xent.backends.__file__); "
            "print(float(xent.sparse_softmax_cross_entropy([[0.0, 0.0]], [1], reduction='sum')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target)) and abs(float(out[1]) - 0.6931471805599453) < 1e-15


def test_installed_xent_backends_is_the_backends_folder():
    import xent.backends

    assert Path(xent.backends.__file__).resolve().parent == (ROOT / "backends").resolve() or "site-packages" in xent.backends.__file__
