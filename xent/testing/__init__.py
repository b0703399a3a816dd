"""Tools for checking that frameworks compute the same loss, for xent's own tests
and for users' CI.

The tolerance table lives here, once, with its reasoning; every parity check in
xent (tests, ``xent parity``) uses it.

* :func:`assert_backends_agree` runs a loss (or your function built on xent) on
  every installed backend and fails with a readable diff.
* :func:`assert_ports_agree` checks *different* functions, one per framework
  (a TensorFlow pipeline and its PyTorch port), on the same inputs.
* :func:`assert_close` compares one result with expected values.
* The pytest plugin (:mod:`xent.testing.pytest_plugin`, loaded automatically)
  gives the ``xent_framework`` fixture, parametrized over installed backends.
"""

from xent.testing._tolerance import EPS, tolerance

__all__ = ["EPS", "tolerance"]

from xent.testing._frameworks import Framework, framework, installed  # noqa: E402

__all__ += ["Framework", "framework", "installed"]

from xent.testing._assert import assert_backends_agree, assert_close, assert_ports_agree  # noqa: E402

__all__ += ["assert_backends_agree", "assert_close", "assert_ports_agree"]
