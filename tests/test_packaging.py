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
    for module in ("numpy_backend", "torch_backend", "tensorflow_backend", "jax_backend", "array_api_backend", "_base"):
        assert f"xent/backends/{module}.py" in names


def test_installed_xent_backends_is_the_backends_folder():
    import xent.backends

    assert Path(xent.backends.__file__).resolve().parent == (ROOT / "backends").resolve() or "site-packages" in xent.backends.__file__
