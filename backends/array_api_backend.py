"""The generic backend: any array that implements the Python array API standard.

Covers array_api_strict, CuPy and Dask (through array-api-compat), and anything
else with ``__array_namespace__``. It is consulted after the built-in
framework backends, since NumPy and JAX arrays carry ``__array_namespace__`` too.
"""

from __future__ import annotations

from typing import Any

from ._base import Backend


class ArrayAPIBackend(Backend):
    name = "array_api"
    module = None  # not tied to one framework: needs no import gate

    def is_array(self, x: Any) -> bool:
        import array_api_compat

        return hasattr(x, "__array_namespace__") or array_api_compat.is_array_api_obj(x)

    def version(self) -> str:
        import array_api_compat

        return f"array-api-compat {array_api_compat.__version__}"

    def errstate(self) -> Any:
        # array_api_strict and Dask compute with NumPy underneath: silence its
        # warnings for the inf - inf and 0 * inf that the losses guard with `where`.
        import numpy as np

        return np.errstate(all="ignore")
