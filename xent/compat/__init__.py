"""Other frameworks' cross-entropy signatures, running on any xent backend.

Each dialect module mirrors one framework's functions: its names, argument order,
defaults and documented quirks, translated into calls to xent's losses. So code
written against ``tf.nn``, ``keras.losses``, ``torch.nn.functional`` or ``optax``
runs unchanged on NumPy, PyTorch, TensorFlow, JAX or array-API arrays:

>>> import numpy as np
>>> from xent.compat import torch as F          # torch's names, not torch itself
>>> logits = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
>>> float(F.cross_entropy(logits, np.array([0, -100])).round(6))   # ignore_index=-100
0.464369

Modules: :mod:`xent.compat.tensorflow` (``tf.nn``), :mod:`xent.compat.keras`
(``keras.losses``), :mod:`xent.compat.torch` (``torch.nn.functional``),
:mod:`xent.compat.optax`, :mod:`xent.compat.torchvision` (``sigmoid_focal_loss``).
Importing a dialect imports no framework (the module
``xent.compat.torch`` does not import torch). See ``docs/porting.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["keras", "optax", "tensorflow", "torch", "torchvision"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"xent.compat.{name}")
    raise AttributeError(f"module 'xent.compat' has no attribute {name!r}")
