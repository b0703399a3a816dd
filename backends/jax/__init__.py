"""The JAX backend, a file per role:

* ``backend.py``: :class:`JaxBackend`, the primitives;
* ``compile_cache.py``: the compiled rung, one cached ``jax.jit`` per loss;
* ``traced.py``: the forms XLA fuses, with written-out derivatives;
* ``linear.py``: the chunked linear cross-entropy.
"""

from .backend import JaxBackend

__all__ = ["JaxBackend"]
