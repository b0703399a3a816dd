"""The TensorFlow backend, a file per role:

* ``backend.py``: :class:`TensorflowBackend`, the primitives;
* ``fused.py``: the fused rung of the dispatch ladder (tf.nn's own ops);
* ``compile_cache.py``: the compiled rung, XLA programs per call signature;
* ``traced.py``: the forms XLA fuses when traced, with written-out derivatives;
* ``linear.py``: the chunked linear cross-entropy.
"""

from .backend import TensorflowBackend

__all__ = ["TensorflowBackend"]
