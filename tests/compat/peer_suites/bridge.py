"""The peers' unittest cases as pytest parameters, with the dialect patched in.

A peer's test module (optax's ``_classification_test``, TensorFlow's
``xent_op_test_base``) calls the functions under test through a module-level
name (``_classification.softmax_cross_entropy``, ``nn_ops.…``). :func:`cases`
loads every test method of the chosen classes with ``unittest.TestLoader`` (absl's
parameterized expansions included) and gives each as a ``pytest.param``: in
scope, expected to fail for a named deliberate difference (``xfail``, strict),
or out of scope (``skip`` with the reason). :func:`run_case` runs one case with
the module's names swapped for the dialect (``monkeypatch``, so the peer's
module is restored afterwards) and turns the unittest outcome into pytest's.
"""

from __future__ import annotations

import types
import unittest
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest


def require_backend(name: str) -> None:
    """Skip the calling test module unless backend ``name`` is selected (the rule of
    ``tests/conftest.py``: ``$XENT_TEST_BACKENDS`` narrows the set, and a backend
    named there that cannot be imported fails rather than skips)."""
    from xent.testing import installed
    from xent.testing._assert import ENV_BACKENDS, selected_backends

    names, explicit = selected_backends()
    if name not in names:
        pytest.skip(f"{name} is not in ${ENV_BACKENDS}", allow_module_level=True)
    if not installed(name):
        if explicit:
            pytest.fail(f"backend {name!r} was requested in ${ENV_BACKENDS} but cannot be imported", pytrace=False)
        pytest.skip(f"{name} is not installed", allow_module_level=True)


def case_id(case: unittest.TestCase) -> str:
    return f"{type(case).__name__}.{case._testMethodName}"


def cases(
    classes: Iterable[type[unittest.TestCase]],
    out_of_scope: Mapping[str, str],
    xfails: Mapping[str, str],
) -> list[Any]:
    """One ``pytest.param`` per test method of ``classes``.

    Args:
      classes: the peer's ``TestCase`` classes.
      out_of_scope: class name (or ``Class.method``) -> why it is not run.
      xfails: ``Class.method`` -> the deliberate difference it trips over.

    Returns:
      ``pytest.param(case, id=..., marks=...)`` for each case.
    """
    loader = unittest.TestLoader()
    params, seen = [], set()
    for cls in classes:
        for case in loader.loadTestsFromTestCase(cls):
            cid = case_id(case)
            seen.add(cid)
            marks = []
            why = out_of_scope.get(cid) or out_of_scope.get(type(case).__name__)
            if why:
                marks.append(pytest.mark.skip(reason=f"out of scope: {why}"))
            elif cid in xfails:
                marks.append(pytest.mark.xfail(reason=xfails[cid], strict=True))
            params.append(pytest.param(case, id=cid, marks=marks))
    stale = set(xfails) - seen
    if stale:  # a renamed peer test must not leave an xfail that guards nothing
        raise AssertionError(f"xfails for cases that do not exist: {sorted(stale)}")
    return params


def namespace(**functions: Any) -> types.SimpleNamespace:
    """A stand-in for the peer's module holding only the dialect's functions:
    a test reaching for anything else fails loudly rather than testing the peer."""
    return types.SimpleNamespace(**functions)


def run_case(case: unittest.TestCase, module: types.ModuleType, patches: Mapping[str, Any],
             monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``case`` with ``module``'s globals in ``patches`` replaced; fail,
    skip or pass as it did."""
    for name, value in patches.items():
        monkeypatch.setattr(module, name, value)
    # The peers draw inputs from NumPy's global generator, unseeded: seeded
    # here per case, so that a failure reproduces (optax's test_mask draws a
    # mask that keeps nothing one time in 32).
    np.random.seed(zlib.crc32(case.id().encode()))
    result = unittest.TestResult()
    case.run(result)
    problems = result.errors + result.failures
    if problems:
        pytest.fail("\n".join(text for _, text in problems), pytrace=False)
    if result.skipped:
        pytest.skip(result.skipped[0][1])
    assert result.testsRun == 1
