"""xent: one cross-entropy library for every array framework.

Call a loss with NumPy arrays, PyTorch tensors, TensorFlow tensors or JAX arrays
(or any array-API array) and get the same numbers back, in the same framework,
on the same device, differentiable and compilable by that framework.

>>> import numpy as np, xent
>>> xent.sparse_softmax_cross_entropy(np.array([[2.0, 0.5, 1.0]]), [0]).round(6)
array([0.464369])

Importing xent imports no framework: a backend is loaded the first time an
array of its framework is seen.
"""

from xent._losses import (
    binary_cross_entropy,
    categorical_cross_entropy,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    sparse_categorical_cross_entropy,
    sparse_softmax_cross_entropy,
)
from xent._denominator import loss_denominator
from xent._divergence import js_divergence, kl_divergence
from xent._heads import linear_js_divergence, linear_kl_divergence, linear_token_stats
from xent._linear import linear_cross_entropy
from xent._registry import available_backends, get_backend, register_backend
from xent._stats import TokenStats, token_stats

__version__ = "0.1.0"

__all__ = [
    "TokenStats",
    "available_backends",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "get_backend",
    "js_divergence",
    "kl_divergence",
    "linear_cross_entropy",
    "linear_js_divergence",
    "linear_kl_divergence",
    "linear_token_stats",
    "loss_denominator",
    "register_backend",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_categorical_cross_entropy",
    "sparse_softmax_cross_entropy",
    "token_stats",
]
