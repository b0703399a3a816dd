"""Which backend serves an array: a static table, an import gate, a per-type cache.

Detection never imports a framework: a built-in backend is considered only once
its framework's module is already in ``sys.modules`` (if the user holds a torch
tensor, torch is imported). The first call for a type walks the table; later
calls are one dict lookup on ``type(x)`` (a plain dict: an ``lru_cache`` makes
torch.compile warn).

Order: the built-ins (NumPy, PyTorch, TensorFlow, JAX), then backends added with
:func:`register_backend` or through the ``xent.backends`` entry-point group, then
the generic array-API backend, last because NumPy and JAX arrays carry
``__array_namespace__`` too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

try:
    import xent.backends as _backends
    from xent.backends import Backend
except ImportError as exc:  # pragma: no cover - a broken install, not a code path
    raise ImportError(
        "xent.backends could not be imported. xent ships its backends/ folder as "
        "xent.backends through an install: run `pip install -e .` in the repository "
        "(or `pip install xent`), and run tests with the `pytest` command rather than "
        "`python -m pytest` from a source checkout that is not installed editable."
    ) from exc

# Plain `import` statements, not importlib: torch.compile can trace an import
# (a user's first xent call may be inside a compiled function), not importlib.
def _numpy() -> Backend:
    from xent.backends.numpy_backend import NumpyBackend

    return NumpyBackend()


def _torch() -> Backend:
    from xent.backends.torch import BACKEND

    return BACKEND


def _tensorflow() -> Backend:
    from xent.backends.tensorflow import TensorflowBackend

    return TensorflowBackend()


def _jax() -> Backend:
    from xent.backends.jax import JaxBackend

    return JaxBackend()


def _array_api() -> Backend:
    from xent.backends.array_api_backend import ArrayAPIBackend

    return ArrayAPIBackend()


#: name -> (framework module that must already be imported, factory), in order
_BUILTINS: dict[str, tuple[str, Callable[[], Backend]]] = {
    "numpy": ("numpy", _numpy),
    "torch": ("torch", _torch),
    "tensorflow": ("tensorflow", _tensorflow),
    "jax": ("jax", _jax),
}
#: the built-in backends' names, in detection order
BUILTIN_BACKENDS = tuple(_BUILTINS)
_GENERIC = "array_api"
ENTRY_POINT_GROUP = "xent.backends"

_loaded: dict[str, Backend] = {}  # name -> instance, built-ins made on first use
_registered: dict[str, Backend] = {}  # third-party, in registration order
_entry_points_loaded = False
_type_cache: dict[type, Backend] = {}


def _builtin(name: str) -> Backend:
    backend = _loaded.get(name)
    if backend is None:
        factory = _BUILTINS[name][1] if name in _BUILTINS else _array_api
        backend = _loaded[name] = factory()
    return backend


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registered or ep.name in _BUILTINS:
            continue
        obj = ep.load()
        register_backend(obj() if isinstance(obj, type) else obj)


def register_backend(backend: Backend) -> Backend:
    """Add a backend, consulted after the built-ins and before the generic one.

    Args:
      backend: an instance of a :class:`xent.backends.Backend` subclass that sets
        ``name`` and implements ``is_array``; any primitive it does not override
        goes through its array-API namespace.

    Returns:
      The backend, so this also works as a class decorator's last step.

    Raises:
      TypeError: if ``backend`` is not a ``Backend`` instance.
      ValueError: if its name is one of the built-in backends' names.

    Third-party packages can instead expose a ``Backend`` subclass or instance in
    the ``xent.backends`` entry-point group; it is loaded the first time an array
    is not recognised by a built-in backend.
    """
    if not isinstance(backend, Backend):
        raise TypeError(
            f"register_backend expects an instance of xent.backends.Backend; "
            f"received {type(backend).__name__}. Subclass Backend and pass an instance."
        )
    if backend.name in _BUILTINS or backend.name == _GENERIC:
        raise ValueError(
            f"backend name {backend.name!r} is taken by a built-in backend; "
            f"choose another name. Received: backend.name={backend.name!r}"
        )
    _registered[backend.name] = backend
    _type_cache.clear()
    return backend


def _builtins_imported() -> list[Backend]:
    return [_builtin(name) for name, (module, _) in _BUILTINS.items() if module in sys.modules]


def _first_match(candidates: list[Backend], x: Any) -> Backend | None:
    return next((c for c in candidates if c.is_array(x)), None)


def backend_for(x: Any) -> Backend | None:
    """The backend for array ``x``, or ``None``; cached per ``type(x)``.

    torch's own tensor types skip the cache and the scan of ``sys.modules``:
    under torch.compile this code is traced, and Dynamo would guard on what it
    reads (recompiling the caller whenever the cache or ``sys.modules``
    changes, e.g. after an eager call on a NumPy array or an import).
    """
    kind = type(x)
    if kind.__module__[:5] == "torch":
        torch_backend = _backends.torch.BACKEND
        if torch_backend.is_array(x):
            return torch_backend
    backend = _type_cache.get(kind)
    if backend is not None:
        return backend
    backend = _first_match(_builtins_imported(), x)
    if backend is None:
        _load_entry_points()
        backend = _first_match([*_registered.values(), _builtin(_GENERIC)], x)
    if backend is not None:
        _type_cache[kind] = backend
    return backend


def get_backend(array_or_name: Any) -> Backend:
    """The backend serving an array, or the backend of a given name.

    Args:
      array_or_name: an array of any supported framework, or a backend name as
        listed by :func:`available_backends` (``"numpy"``, ``"torch"``, ...).
        A name imports that framework if needed.

    Returns:
      The :class:`xent.backends.Backend` instance.

    Raises:
      ValueError: for an unknown name (the message lists the known ones).
      TypeError: for an object no backend recognises.

    >>> import numpy as np, xent
    >>> xent.get_backend(np.zeros(3)).name
    'numpy'
    """
    if isinstance(array_or_name, str):
        name = array_or_name
        if name in _BUILTINS or name == _GENERIC:
            return _builtin(name)
        _load_entry_points()
        if name in _registered:
            return _registered[name]
        known = sorted([*_BUILTINS, _GENERIC, *_registered])
        raise ValueError(f"unknown backend {name!r}; known backends: {known}")
    backend = backend_for(array_or_name)
    if backend is None:
        raise TypeError(
            f"no xent backend handles {type(array_or_name).__module__}."
            f"{type(array_or_name).__qualname__}; pass a NumPy, PyTorch, TensorFlow "
            f"or JAX array, an array-API array, or register a backend with "
            f"xent.register_backend"
        )
    return backend


def available_backends() -> list[str]:
    """Names of the backends whose framework is installed (not necessarily imported).

    Checks installation with ``importlib.util.find_spec``, which imports nothing.

    >>> import xent
    >>> "numpy" in xent.available_backends()
    True
    """
    from importlib.util import find_spec

    names = [name for name, (module, _) in _BUILTINS.items() if module and find_spec(module)]
    if find_spec("array_api_compat"):
        names.append(_GENERIC)
    _load_entry_points()
    return names + list(_registered)
