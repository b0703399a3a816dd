"""``tf.nn``'s cross-entropy functions, on any xent backend.

Same names, the same argument order (``labels`` before ``logits``; pass them
as keywords, as TensorFlow's docs do), defaults and ``name=`` as TensorFlow 2:

>>> import numpy as np
>>> from xent.compat import tensorflow as nn
>>> loss = nn.softmax_cross_entropy_with_logits(
...     labels=np.array([[0.2, 0.3, 0.5]]), logits=np.array([[2.0, 0.5, 1.0]]))
>>> np.asarray(loss).round(6)
array([1.414369])

What comes out: an array of the framework that came in (torch tensors give
torch tensors, JAX arrays JAX arrays). Host data (NumPy arrays, lists, numbers)
goes where tf.nn would put it: to the framework of the other argument if that
one is a framework array, else, once TensorFlow is imported (it is in
``sys.modules``), to a ``tf.Tensor`` (``tf.convert_to_tensor``: a list of floats
becomes float32, as in tf.nn), so the result is a ``tf.Tensor`` as tf.nn's is.
Without TensorFlow imported, host data stays NumPy: the dialect never imports
TensorFlow itself. On TensorFlow the ops are built under
``tf.name_scope(name)`` (tf.nn's default names when ``name`` is None); on other
frameworks ``name`` is accepted and ignored.

Differences from tf.nn, all deliberate (docs/porting.md): dense labels must have the
logits' shape (tf.nn broadcasts ``(1, C)`` silently); a ``-inf`` logit under a
zero label gives a finite loss (tf.nn: NaN); sigmoid losses at ``z = ±inf`` give
the limit (tf.nn: NaN); out-of-range sparse labels raise ``ValueError`` eagerly
and give NaN under tracing; integer labels of any integer dtype are accepted.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np

import xent
from xent.compat._common import as_predictions, backend, is_host, like, plain_python, shape

Array = Any

__all__ = [
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "weighted_cross_entropy_with_logits",
]


def _logits(logits: Array, labels: Array) -> Array:
    """The logits in the framework they will be computed in (see the module docstring)."""
    if not is_host(logits):
        return logits
    other = labels if labels is not None and not is_host(labels) else None
    if other is not None and backend(other).name != "tensorflow":
        return like(as_predictions(logits), other)
    if other is not None or "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf.convert_to_tensor(logits)  # as tf.nn: a list of floats is float32
    return as_predictions(logits)


def _static_shape(x: Array) -> tuple[int | None, ...] | None:
    """The static shape of ``x``; None where even the rank is unknown (a TF graph)."""
    if is_host(x):
        return tuple(np.shape(x))
    if backend(x).name == "tensorflow" and x.shape.rank is None:
        return None
    return tuple(shape(x))


def _sparse_labels(labels: Array, z: Array) -> Array:
    """tf.nn's static rank and shape checks of sparse labels, with its messages;
    labels of unknown rank (TF graphs) get tf.nn's run-time rank check."""
    zs, ys = _static_shape(z), _static_shape(labels)
    if zs is not None and not zs:
        raise ValueError(f"`logits` cannot be a scalar. Received logits={z}`")
    if zs is None:
        return labels
    if ys is None:
        import tensorflow as tf

        check = tf.debugging.assert_rank(labels, len(zs) - 1, message=f"labels must be {len(zs) - 1}-D")
        with tf.control_dependencies([check]):
            labels = tf.identity(labels)
        labels.set_shape([None] * (len(zs) - 1))  # checked above, before any use
        return labels
    if len(ys) != len(zs) - 1:
        raise ValueError(
            "`labels.shape.rank` must equal `logits.shape.rank - 1`. "
            f"Received: labels.shape={ys} of rank {len(ys)} and logits.shape={zs} of rank {len(zs)}")
    if None not in ys and None not in zs[:-1] and ys != zs[:-1]:
        raise ValueError(
            "`labels.shape` must equal `logits.shape` except for the last dimension. "
            f"Received: labels.shape={ys} and logits.shape={zs}")
    return labels


def _scope(logits: Array, name: str | None, default: str) -> contextlib.AbstractContextManager[Any]:
    """``tf.name_scope(name or default)`` for TensorFlow tensors; nothing otherwise."""
    if backend(logits).name != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.name_scope(name or default)


def softmax_cross_entropy_with_logits(labels: Array, logits: Array, axis: int = -1, name: str | None = None) -> Array:
    """``tf.nn.softmax_cross_entropy_with_logits``: ``-Σ_c labels_c · log_softmax(logits)_c``.

    Args:
      labels: ``[..., num_classes]`` real, same shape as ``logits`` (rows need not sum to 1).
      logits: ``[..., num_classes]`` floating point.
      axis: the class dimension.
      name: the TensorFlow name scope of the ops (default
        ``"softmax_cross_entropy_with_logits"``); ignored on other frameworks.

    Returns:
      ``logits.shape`` without ``axis``, in the dtype of ``logits``; a
      ``tf.Tensor`` for host inputs once TensorFlow is imported.
    """
    z = _logits(logits, labels)
    with _scope(z, name, "softmax_cross_entropy_with_logits"):
        return xent.softmax_cross_entropy(z, labels, axis=axis)


def sparse_softmax_cross_entropy_with_logits(labels: Array, logits: Array, name: str | None = None) -> Array:
    """``tf.nn.sparse_softmax_cross_entropy_with_logits``: classes on the last axis.

    Args:
      labels: ``[...]`` integer class ids in ``[0, num_classes)``.
      logits: ``[..., num_classes]`` floating point.
      name: the TensorFlow name scope (default ``"SparseSoftmaxCrossEntropyWithLogits"``).

    Returns:
      ``labels.shape``, in the dtype of ``logits``.

    Raises:
      ValueError: scalar logits, labels of the wrong rank or shape (tf.nn's
        messages), out-of-range labels (eagerly).
    """
    z = _logits(logits, labels)
    with _scope(z, name, "SparseSoftmaxCrossEntropyWithLogits"):
        return xent.sparse_softmax_cross_entropy(z, _sparse_labels(labels, z), axis=-1)


def sigmoid_cross_entropy_with_logits(labels: Array = None, logits: Array = None, name: str | None = None) -> Array:
    """``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(z,0) - z·y + log(1+exp(-|z|))``.

    Args:
      labels: same shape as ``logits``, in ``[0, 1]``.
      logits: ``[...]`` floating point.
      name: the TensorFlow name scope (default ``"logistic_loss"``).

    Returns:
      ``logits.shape``, in the dtype of ``logits``.

    Raises:
      ValueError: ``labels`` or ``logits`` missing.
    """
    if labels is None or logits is None:
        raise ValueError("sigmoid_cross_entropy_with_logits needs both labels= and logits=")
    z = _logits(logits, labels)
    with _scope(z, name, "logistic_loss"):
        return xent.sigmoid_cross_entropy(z, labels)


def weighted_cross_entropy_with_logits(labels: Array, logits: Array, pos_weight: Array, name: str | None = None) -> Array:
    """``tf.nn.weighted_cross_entropy_with_logits``: the positive term times ``pos_weight``.

    Args:
      labels: same shape as ``logits``, in ``[0, 1]``.
      logits: ``[...]`` floating point.
      pos_weight: a number or an array broadcastable to ``logits``.
      name: the TensorFlow name scope (default ``"logistic_loss"``).

    Returns:
      ``logits.shape``, in the dtype of ``logits``.
    """
    z = _logits(logits, labels)
    with _scope(z, name, "logistic_loss"):
        return xent.sigmoid_cross_entropy(z, labels, pos_weight=pos_weight)

plain_python(globals(), __all__)
