"""Keras' own cross-entropy tests (keras/src/losses/losses_test.py, as installed),
run against xent.compat.keras: run in a fresh process (KERAS_BACKEND set by the
caller), writes one JSON record per test method.

    KERAS_BACKEND=tensorflow python tests/compat/peer_keras/run_losses_test.py OUT.json

The name ``losses`` in Keras' test module (``from keras.src.losses import
losses``) is replaced by a namespace holding the dialect's classes and
functions; a name the dialect does not have raises ``AttributeError`` there.
Keras' ``pytest.mark.skipif`` marks are honoured. Each test runs twice: on the
NumPy inputs as written, and with them converted to Keras' backend tensors.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
import unittest
from typing import Any

#: the test classes run: every *Crossentropy* / *CrossEntropy* class there
PATTERN = re.compile(r"cross_?entropy", re.I)


class DialectLosses:
    """``keras.src.losses.losses`` as seen by Keras' tests: the dialect's names only."""

    def __init__(self, dialect: Any, names: list[str]) -> None:
        self._dialect, self._names = dialect, names

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in self._names:
            raise AttributeError(f"xent.compat.keras has no {name!r}")
        return getattr(self._dialect, name)


def skip_reason(method: Any) -> str | None:
    for mark in getattr(method, "pytestmark", []):
        if mark.name == "skip":
            return mark.kwargs.get("reason", "skip")
        if mark.name == "skipif" and mark.args and bool(mark.args[0]):
            return mark.kwargs.get("reason", "skipif")
    return None


def keras_tensor_inputs(dialect: Any) -> list[tuple[Any, str, Any]]:
    """Make the dialect's classes and functions convert NumPy inputs to Keras' backend
    tensors first (the path ``fit`` takes); returns what to restore."""
    import keras
    import numpy as np

    def to_tensor(x: Any) -> Any:
        if isinstance(x, (np.ndarray, np.generic, list, tuple)):
            return keras.ops.convert_to_tensor(np.asarray(x))
        return x

    saved = []
    for name in ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy"):
        cls = getattr(dialect, name)
        saved.append((cls, "__call__", cls.__dict__.get("__call__")))
        call = cls.__call__

        def __call__(self: Any, y_true: Any, y_pred: Any, sample_weight: Any = None, _call: Any = call) -> Any:
            return _call(self, to_tensor(y_true), to_tensor(y_pred), sample_weight)

        cls.__call__ = __call__
    for name in ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"):
        fn = getattr(dialect, name)
        saved.append((dialect, name, fn))

        def wrapped(y_true: Any, y_pred: Any, *args: Any, _fn: Any = fn, **kwargs: Any) -> Any:
            return _fn(to_tensor(y_true), to_tensor(y_pred), *args, **kwargs)

        setattr(dialect, name, wrapped)
    return saved


def run_tests(peer: Any) -> dict[str, dict[str, str]]:
    records: dict[str, dict[str, str]] = {}
    for cls_name, cls in vars(peer).items():
        if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase) and PATTERN.search(cls_name)):
            continue
        for name in sorted(n for n in dir(cls) if n.startswith("test")):
            key = f"{cls_name}::{name}"
            reason = skip_reason(getattr(cls, name))
            if reason is not None:
                records[key] = {"outcome": "skipped", "detail": reason}
                continue
            result = unittest.TestResult()
            cls(name).run(result)
            if result.skipped:
                records[key] = {"outcome": "skipped", "detail": result.skipped[0][1]}
            elif result.failures or result.errors:
                tb = (result.failures or result.errors)[0][1]
                last = [line for line in tb.strip().splitlines() if line.strip()][-1]
                records[key] = {"outcome": "failed", "detail": last, "traceback": tb}
            else:
                records[key] = {"outcome": "passed", "detail": ""}
    return records


def main(out_path: str) -> None:
    """Two runs: the tests' NumPy inputs as written (with ``dtype=None`` the
    dialect's classes then compute on NumPy, in the inputs' dtype), and the same
    inputs converted to Keras' backend tensors first (Keras' own path, as in fit)."""
    from xent.compat import keras as dialect

    names = list(dialect.__all__)
    import keras.src.losses.losses_test as peer

    peer.losses = DialectLosses(dialect, names)
    records = {"numpy": run_tests(peer)}
    saved = keras_tensor_inputs(dialect)
    try:
        records["keras_tensors"] = run_tests(peer)
    finally:
        for owner, attr, value in saved:
            if value is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, value)
    with open(out_path, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception:  # the whole run failed: say why
        traceback.print_exc()
        sys.exit(2)
