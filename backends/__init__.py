"""xent's backends, installed as ``xent.backends``.

``_base.py`` declares the primitives every backend provides (and the optional
hooks: the fused and compiled rungs, the chunked LM-head kernel, collectives);
``_rows.py`` builds the softmax losses from per-row statistics. NumPy and the
generic array-API backend are one module each; torch, TensorFlow and JAX are
packages with a file per role (the primitives, the fused rung, the compile
cache, the traced forms, the chunked kernels), listed in each package's
docstring.
"""

from ._base import Backend

__all__ = ["Backend"]


def __getattr__(name: str) -> object:
    # ``xent.backends.torch`` imported on first access: the registry
    # reaches torch's backend this way, an attribute read that torch.compile
    # traces without guarding on the registry's caches.
    if name == "torch":
        import importlib

        return importlib.import_module(f"{__name__}.torch")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
