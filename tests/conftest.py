"""Backends as pytest parameters.

``fw`` runs a test once per framework xent tests on; ``autodiff_fw`` once per
framework with autodiff. ``XENT_TEST_BACKENDS=numpy,torch`` narrows the set;
a backend named there that cannot be imported *fails* the test (a broken
install is never silently skipped). Without the variable, frameworks that are
not installed are skipped with the reason.
"""

from __future__ import annotations

import pytest

from xent.testing import framework, installed
from xent.testing._assert import ENV_BACKENDS, selected_backends
from xent.testing._frameworks import NAMES

AUTODIFF = ("torch", "tensorflow", "jax")


def _get(name: str):  # type: ignore[no-untyped-def]
    # The same selection as xent's pytest plugin (``xent_framework``): one rule.
    names, explicit = selected_backends()
    if name not in names:
        pytest.skip(f"{name} is not in ${ENV_BACKENDS}")
    if not installed(name):
        if explicit:
            pytest.fail(f"backend {name!r} was requested in ${ENV_BACKENDS} but cannot be imported")
        pytest.skip(f"{name} is not installed")
    return framework(name)


@pytest.fixture(params=NAMES)
def fw(request):  # type: ignore[no-untyped-def]
    """Each framework xent runs on (NumPy, torch, TF, JAX, array_api_strict)."""
    return _get(request.param)


@pytest.fixture(params=AUTODIFF)
def autodiff_fw(request):  # type: ignore[no-untyped-def]
    """Each framework with autodiff and a compiler."""
    return _get(request.param)


@pytest.fixture(autouse=True, scope="session")
def _jax_x64():  # type: ignore[no-untyped-def]
    """xent's own suite runs JAX with 64-bit types on throughout (float64 is
    tested on every backend); the pytest plugin that users get turns them on
    inside its fixture only (tests/parity/test_testing.py checks that)."""
    if installed("jax"):  # (some tests use JAX arrays whatever $XENT_TEST_BACKENDS says)
        import jax

        jax.config.update("jax_enable_x64", True)
    yield


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Drop combinations that do not exist rather than skipping them: the array
    API standard (array_api_strict) has no float16 or bfloat16."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        fw_name, dtype = params.get("fw"), params.get("dtype")
        if fw_name is not None and dtype is not None and dtype not in _DTYPES.get(fw_name, (dtype,)):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


#: float dtypes per framework where not all four exist
_DTYPES = {"array_api_strict": ("float32", "float64")}
