"""Moving test data into each framework and back, differentiating and compiling there.

One :class:`Framework` per backend xent tests on. Used by xent's own test suite,
by ``xent parity`` and by the pytest plugin for users' tests, so the way arrays
are made, gradients taken and functions compiled is written once.

Each framework is imported only when its :class:`Framework` is created.
"""

from __future__ import annotations

import contextlib

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xent._registry import BUILTIN_BACKENDS
from xent.backends._base import FLOAT_DTYPES, HALF_DTYPES

Array = Any

#: every framework xent's tests know, in order: the built-in backends' and,
#: for the generic array-API backend, array_api_strict
NAMES = (*BUILTIN_BACKENDS, "array_api_strict")

#: the module that must be installed for each
_MODULES = {
    "numpy": "numpy",
    "torch": "torch",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "array_api_strict": "array_api_strict",
}


def installed(name: str) -> bool:
    """Whether the framework ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(_MODULES[name]) is not None


def _np_dtype(dtype: str) -> Any:
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


class Framework:
    """Test-side access to one framework: make arrays, read them, take gradients.

    Attributes:
      name: the xent backend name (``"numpy"``, ``"torch"``, ...).
      differentiable: whether :meth:`grad` is available.
      dtypes: the float dtypes this framework supports here.
    """

    name: str = "?"
    differentiable: bool = True
    dtypes: tuple[str, ...] = FLOAT_DTYPES

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        """A NumPy array (or nested list) as an array of this framework."""
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        """Back to NumPy; half types come back as float32."""
        arr = np.asarray(x)
        if arr.dtype.name in HALF_DTYPES:
            arr = arr.astype(np.float32)
        return arr

    def dtype_name(self, x: Array) -> str:
        import xent

        return xent.get_backend(x).dtype_name(x)

    def grad(self, fn: Callable[..., Array], args: Sequence[Array], argnums: Sequence[int] = (0,)) -> list[np.ndarray]:
        """Gradients of the scalar ``fn(*args)`` w.r.t. ``args[i]`` for ``i`` in ``argnums``."""
        raise NotImplementedError(f"{self.name} has no autodiff")

    def compile(self, fn: Callable[..., Array]) -> Callable[..., Array]:
        """``fn`` under the framework's compiler (identity where there is none)."""
        return fn

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """What a test runs under so that every dtype here exists: for JAX,
        64-bit types (``jax.enable_x64``), switched on for that block only and
        never for the rest of the process."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"Framework({self.name!r})"


class NumpyFramework(Framework):
    name = "numpy"
    differentiable = False

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        arr = np.asarray(x)
        return arr.astype(_np_dtype(dtype)) if dtype else arr


class ArrayApiStrictFramework(Framework):
    name = "array_api_strict"
    differentiable = False
    dtypes = ("float32", "float64")

    def __init__(self) -> None:
        import array_api_strict

        self.xp = array_api_strict

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        arr = np.asarray(x)
        if dtype:
            arr = arr.astype(dtype)
        return self.xp.asarray(arr)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(np.from_dlpack(x))


class TorchFramework(Framework):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.device = os.environ.get("XENT_TEST_TORCH_DEVICE", "cpu")

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        arr = np.asarray(x)
        if arr.dtype.name == "bfloat16":
            arr = arr.astype(np.float32)
            dtype = dtype or "bfloat16"
        t = self.torch.as_tensor(arr, device=self.device)
        return t.to(getattr(self.torch, dtype)) if dtype else t

    def to_numpy(self, x: Array) -> np.ndarray:
        x = x.detach().cpu()
        if x.dtype in (self.torch.bfloat16, self.torch.float16):
            x = x.float()
        return x.numpy()

    def grad(self, fn, args, argnums=(0,)):  # type: ignore[no-untyped-def]
        args = [a.detach().clone().requires_grad_(i in argnums) if self.torch.is_floating_point(a) else a
                for i, a in enumerate(args)]
        out = fn(*args)
        grads = self.torch.autograd.grad(out, [args[i] for i in argnums])
        return [self.to_numpy(g) for g in grads]

    def compile(self, fn):  # type: ignore[no-untyped-def]
        return self.torch.compile(fn, fullgraph=True, dynamic=False)


class TensorflowFramework(Framework):
    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        arr = np.asarray(x)
        if arr.dtype.name == "bfloat16":
            arr = arr.astype(np.float32)
            dtype = dtype or "bfloat16"
        t = self.tf.convert_to_tensor(arr)
        return self.tf.cast(t, dtype) if dtype else t

    def to_numpy(self, x: Array) -> np.ndarray:
        if x.dtype in (self.tf.bfloat16, self.tf.float16):
            x = self.tf.cast(x, self.tf.float32)
        return np.asarray(x.numpy())

    def grad(self, fn, args, argnums=(0,)):  # type: ignore[no-untyped-def]
        tf = self.tf
        with tf.GradientTape() as tape:
            for i in argnums:
                tape.watch(args[i])
            out = fn(*args)
        grads = tape.gradient(out, [args[i] for i in argnums])
        return [self.to_numpy(g) for g in grads]

    def compile(self, fn):  # type: ignore[no-untyped-def]
        return self.tf.function(fn, jit_compile=True)


class JaxFramework(Framework):
    name = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def context(self) -> contextlib.AbstractContextManager[Any]:
        return self.jax.enable_x64(True)  # type: ignore[no-any-return]

    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        arr = np.asarray(x)
        return self.jnp.asarray(arr, dtype=dtype) if dtype else self.jnp.asarray(arr)

    def to_numpy(self, x: Array) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype.name in HALF_DTYPES:
            arr = arr.astype(np.float32)
        return arr

    def grad(self, fn, args, argnums=(0,)):  # type: ignore[no-untyped-def]
        grads = self.jax.grad(fn, argnums=tuple(argnums))(*args)
        return [self.to_numpy(g) for g in grads]

    def compile(self, fn):  # type: ignore[no-untyped-def]
        return self.jax.jit(fn)


_CLASSES: dict[str, type[Framework]] = {
    "numpy": NumpyFramework,
    "torch": TorchFramework,
    "tensorflow": TensorflowFramework,
    "jax": JaxFramework,
    "array_api_strict": ArrayApiStrictFramework,
}
_made: dict[str, Framework] = {}


def framework(name: str) -> Framework:
    """The :class:`Framework` for ``name`` (imports that framework; cached)."""
    if name not in _made:
        if name not in _CLASSES:
            raise ValueError(f"unknown framework {name!r}; known: {list(_CLASSES)}")
        _made[name] = _CLASSES[name]()
    return _made[name]
