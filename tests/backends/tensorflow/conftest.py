"""Fixtures of the TensorFlow backend tests."""

from __future__ import annotations

import pytest

from tests.backends.shared import tf_or_skip


@pytest.fixture
def tf_functions(monkeypatch):
    """The TF backend module with a fresh cache of compiled losses, which
    compiles a signature at its second call."""
    tf_or_skip()
    from xent.backends.tensorflow import compile_cache as tb

    for name in ("_functions", "_programs", "_eager_s"):
        monkeypatch.setattr(tb, name, {})
    monkeypatch.setattr(tb, "COMPILE_AFTER_S", 0.0)
    return tb
