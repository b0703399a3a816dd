"""NumPy: the reference backend, and the one Python lists and scalars land on."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Array, Backend


class NumpyBackend(Backend):
    name = "numpy"
    module = "numpy"

    def __init__(self) -> None:
        import array_api_compat.numpy as xp

        self._xp = xp

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def namespace(self, x: Array) -> Any:
        return self._xp

    def version(self) -> str:
        return np.__version__

    def asarray(self, x: Any, like: Array) -> Array:
        return np.asarray(x)

    def device(self, x: Array) -> Any:
        return "cpu"

    def dtype_name(self, x: Array) -> str:
        return np.asarray(x).dtype.name

    def cast(self, x: Array, dtype: str) -> Array:
        if np.asarray(x).dtype.name == dtype:
            return x
        if dtype == "bfloat16":  # NumPy has no bfloat16 of its own: ml_dtypes provides it
            import ml_dtypes

            return np.asarray(x).astype(ml_dtypes.bfloat16)
        return np.asarray(x).astype(dtype)

    def errstate(self) -> Any:
        # The losses guard every inf - inf and 0 * inf with `where`; NumPy still
        # evaluates both branches, which is harmless but warns.
        return np.errstate(all="ignore")
