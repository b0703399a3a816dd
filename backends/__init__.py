"""xent's backends, installed as ``xent.backends``.

One module per framework, each small: it says how to recognise the framework's
arrays, how to move labels onto their device, and which of the primitives of
:class:`xent.backends._base.Backend` it replaces with a native kernel.
"""

from ._base import Backend

__all__ = ["Backend"]
