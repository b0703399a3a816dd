"""xent type-checks, and ships its types to users (PEP 561 ``py.typed``).

* mypy over the package sources (``xent`` and ``backends``) is clean, with the
  configuration of ``[tool.mypy]`` in pyproject.toml.
* A user's script (tests/typing_user.py) passes ``mypy --strict`` against xent
  installed from its wheel: through the ``py.typed`` marker, with the
  signatures of the public API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (it is in the `test` extra)")

ROOT = Path(__file__).resolve().parents[1]

needs_source = pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")


def _mypy(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def _sources() -> list[str]:
    files = sorted(
        p.relative_to(ROOT).as_posix()
        for top in ("xent", "backends")
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    )
    return files


@needs_source
def test_package_type_checks() -> None:
    # (Its own cache: other options than a plain `mypy xent backends` run.)
    cache = ROOT / ".mypy_cache" / "package_check"
    result = _mypy(["--follow-imports=silent", "--cache-dir", str(cache), *_sources()], cwd=ROOT)
    assert result.returncode == 0, f"mypy over xent reported errors:\n{result.stdout}{result.stderr}"


@needs_source
def test_user_script_passes_strict(tmp_path: Path) -> None:
    # Install the wheel, as a user gets it, and check a script against it.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("xent-*.whl")
    assert "xent/py.typed" in zipfile.ZipFile(wheel).namelist(), "the wheel does not ship xent/py.typed"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    # Outside the source tree (mypy also searches the current directory) and
    # without the project's mypy configuration: the user's own settings.
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(ROOT / "tests" / "typing_user.py", user / "typing_user.py")
    (user / "mypy.ini").write_text("[mypy]\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = _mypy(
        ["--strict", "--config-file", "mypy.ini", "--cache-dir", str(ROOT / ".mypy_cache" / "typing_user"),
         "typing_user.py"],
        cwd=user, env=env,
    )
    assert result.returncode == 0, f"mypy --strict on a user's script reported errors:\n{result.stdout}{result.stderr}"
