"""Tools for checking that frameworks compute the same loss, for xent's own tests
and for users' CI.

The tolerance table lives here, once, with its reasoning; every parity check in
xent (tests, ``xent parity``) uses it.
"""

from xent.testing._tolerance import EPS, tolerance

__all__ = ["EPS", "tolerance"]

from xent.testing._frameworks import Framework, framework, installed  # noqa: E402

__all__ += ["Framework", "framework", "installed"]
