"""pytest plugin: run a test once per installed backend.

Installed with xent (entry point ``pytest11``), so in any project with xent
installed a test can ask for the ``xent_framework`` fixture::

    import numpy as np, xent

    def test_my_loss(xent_framework):
        fw = xent_framework                      # a xent.testing.Framework
        logits = fw.asarray(np.random.randn(4, 3), "float32")
        loss = xent.sparse_softmax_cross_entropy(logits, np.array([0, 1, 2, 0]))
        assert fw.to_numpy(loss).shape == (4,)

The test runs once per installed framework (ids ``numpy``, ``torch``, ...).
``XENT_TEST_BACKENDS=torch,jax`` (or ``--xent-backends torch,jax``) narrows it;
a backend named there that cannot be imported **fails** the test instead of
skipping it, so a broken install is never silently green. ``fw.asarray``,
``fw.to_numpy``, ``fw.grad`` and ``fw.compile`` move arrays in and out,
differentiate and compile (on JAX the test runs with 64-bit types on, which
are switched off again after it: the plugin never changes them for the rest
of the session); :func:`xent.testing.assert_close` compares with xent's
tolerance table. Disable the plugin with ``-p no:xent``.

Importing this module imports no framework: each is imported when its test runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from xent.testing._assert import ENV_BACKENDS, selected_backends


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("xent")
    group.addoption("--xent-backends", default=None, metavar="NAMES",
                    help=f"comma-separated backends for the xent_framework fixture "
                         f"(default: ${ENV_BACKENDS} or every installed one)")


def _names(config: Any) -> tuple[list[str], bool]:
    opt = config.getoption("--xent-backends", default=None)
    return selected_backends([b.strip() for b in opt.split(",") if b.strip()] if opt else None)


def pytest_generate_tests(metafunc: Any) -> None:
    if "xent_framework" in metafunc.fixturenames:
        names, _ = _names(metafunc.config)
        metafunc.parametrize("xent_framework", names, indirect=True, ids=names)


@pytest.fixture
def xent_framework(request: Any) -> Any:
    """The :class:`xent.testing.Framework` of the backend this test instance runs on."""
    from xent.testing._frameworks import framework, installed

    name = request.param
    _, explicit = _names(request.config)
    if not installed(name):
        message = f"backend {name!r} is not installed"
        if explicit:
            pytest.fail(f"{message}, but was asked for (${ENV_BACKENDS} / --xent-backends)")
        pytest.skip(message)
    try:
        fw = framework(name)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"backend {name!r} is installed but cannot start: {type(exc).__name__}: {exc}")
    with fw.context():  # (JAX: 64-bit types for this test only)
        yield fw
