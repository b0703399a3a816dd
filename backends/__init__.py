"""xent's backends, installed as ``xent.backends``.

One module per framework, each small: it says how to recognise the framework's
arrays, how to move labels onto their device, and which of the primitives of
:class:`xent.backends._base.Backend` it replaces with a native kernel.
"""

from ._base import Backend

__all__ = ["Backend"]


def __getattr__(name: str) -> object:
    # ``xent.backends.torch_backend`` imported on first access: the registry
    # reaches torch's backend this way, an attribute read that torch.compile
    # traces without guarding on the registry's caches.
    if name == "torch_backend":
        import importlib

        return importlib.import_module(f"{__name__}.torch_backend")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
