"""The PyTorch backend, a file per role:

* ``backend.py``: :class:`TorchBackend`, the primitives, and ``BACKEND``, its one instance;
* ``fused.py``: the fused rung of the dispatch ladder (one native call);
* ``binary.py``: the sigmoid loss's autograd node;
* ``chunked.py``: the chunked kernels of the softmax and sigmoid losses on large logits;
* ``linear.py``: the chunked linear cross-entropy;
* ``buffers.py``: the chunked kernels' reused work buffers;
* ``tensors.py``: the state checks (eager, recorded, batched) and dtypes.
"""

from .backend import BACKEND, TorchBackend

__all__ = ["BACKEND", "TorchBackend"]
