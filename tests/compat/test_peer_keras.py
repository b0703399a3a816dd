"""Keras' own tests of its cross-entropy losses, run against xent.compat.keras.

The installed Keras ships them: ``keras/src/losses/losses_test.py``. For each
Keras backend (a fresh process each: Keras picks its backend at import),
``tests/compat/peer_keras/run_losses_test.py`` imports that module, replaces the name
``losses`` it tests with the dialect's classes and functions, runs every test
method of its ``*Crossentropy*`` classes with unittest (honouring Keras'
``skipif`` marks), and writes each outcome; here each method is one case.
Each method runs twice: on the NumPy inputs Keras' tests write (``numpy``:
with ``dtype=None`` the dialect then computes on NumPy, in the inputs' dtype),
and on those inputs converted to Keras' backend tensors first
(``keras_tensors``: the path of ``model.fit``, through Keras' ``Loss.__call__``).

A failure that comes from a deliberate difference is an xfail whose reason
names it (also in docs/porting.md), and must fail as described: any other
failure, or an xfail that passes, fails here. The test methods are found by
reading the file, so collecting this module imports no framework.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xent.testing import installed

from tests.compat.peer_keras.run_losses_test import PATTERN

RUNNER = Path(__file__).parent / "peer_keras" / "run_losses_test.py"
BACKENDS = ("tensorflow", "jax", "torch")


def _peer_file() -> Path | None:
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "src" / "losses" / "losses_test.py"
    return path if path.exists() else None


def _peer_tests() -> list[str]:
    path = _peer_file()
    if path is None:
        return []
    tree = ast.parse(path.read_text())
    return [f"{node.name}::{item.name}" for node in tree.body
            if isinstance(node, ast.ClassDef) and PATTERN.search(node.name)
            for item in node.body if isinstance(item, ast.FunctionDef) and item.name.startswith("test")]


_NOT_IN_DIALECT = ("not in the dialect: xent.compat.keras has Keras' cross-entropy and focal classes, "
                   "not {0} (AttributeError on losses.{0})")
_ANY_AXIS = ("deliberate: the dialect's sparse loss takes any class axis; Keras' {} backend raises "
             "ValueError for axis != -1 (the test expects that error)")


def expected_failure(backend: str, test: str) -> tuple[str, str] | None:
    """(reason, text the failure must contain) for the deliberate differences."""
    cls, method = test.split("::")
    for missing in ("CategoricalGeneralizedCrossEntropy",):
        if cls == f"{missing}Test":
            return _NOT_IN_DIALECT.format(missing), f"has no '{missing}'"
    if (backend in ("tensorflow", "jax") and cls == "SparseCategoricalCrossentropyTest"
            and method.endswith("segmentation_different_axis")):
        return _ANY_AXIS.format({"tensorflow": "TensorFlow", "jax": "JAX"}[backend]), "DID NOT RAISE ValueError"
    return None


_results: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
MODES = ("numpy", "keras_tensors")


def _run(backend: str, tmp_dir: Path) -> dict[str, dict[str, dict[str, str]]]:
    if backend not in _results:
        out = tmp_dir / f"keras-peer-{backend}.json"
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run([sys.executable, str(RUNNER), str(out)], env=env, capture_output=True,
                              text=True, timeout=900, cwd=Path(__file__).parents[2])
        assert proc.returncode == 0 and out.exists(), proc.stdout[-3000:] + proc.stderr[-6000:]
        _results[backend] = json.loads(out.read_text())
    return _results[backend]


@pytest.fixture(scope="module")
def peer_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("keras_peer")


TESTS = _peer_tests()


@pytest.mark.skipif(not TESTS, reason="keras (with keras/src/losses/losses_test.py) is not installed")
@pytest.mark.parametrize("test", TESTS or ["none"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_losses_test(backend, mode, test, peer_dir):  # type: ignore[no-untyped-def]
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    record = _run(backend, peer_dir)[mode].get(test)
    assert record is not None, f"{test} was not run"
    expected = expected_failure(backend, test)
    if record["outcome"] == "skipped":
        pytest.skip(f"Keras' own mark: {record['detail']}")
    if expected is None:
        assert record["outcome"] == "passed", record.get("traceback", record["detail"])
        return
    reason, text = expected
    assert record["outcome"] == "failed", f"expected to fail ({reason}) but passed"
    assert text in record["detail"], (f"failed otherwise than the deliberate difference ({reason}):\n"
                                      + record.get("traceback", record["detail"]))
    pytest.xfail(reason)


def test_peer_file_has_the_three_classes():
    if _peer_file() is None:
        pytest.skip("keras is not installed")
    classes = {t.split("::")[0] for t in TESTS}
    assert {"CategoricalCrossentropyTest", "SparseCategoricalCrossentropyTest", "BinaryCrossentropyTest"} <= classes
