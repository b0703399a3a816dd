"""optax's classification cross-entropies, on any xent backend.

>>> import numpy as np
>>> from xent.compat import optax
>>> optax.softmax_cross_entropy_with_integer_labels(np.array([[2.0, 0.5, 1.0]]), np.array([0])).round(6)
array([0.464369])
>>> optax.losses.softmax_cross_entropy(np.array([[2.0, 0.5, 1.0]]), np.array([[1.0, 0.0, 0.0]])).round(6)
array([0.464369])

Same names (at the top level and as ``optax.losses.…``), argument order
(``logits, labels``), ``axis`` (an int, a tuple of ints, or ``None`` for
``softmax_cross_entropy``) and ``where`` as optax 0.2.8. ``where`` is a boolean
mask either of the loss shape (a whole entry in or out: the loss is 0 where it
is False) or of the logits' shape (per logit: the classes where it is False
leave the softmax, and their labels the sum; an entry with no class left has
loss 0). Any shape that broadcasts to one of those two, as in optax.

What comes out: an array of the framework that came in (JAX arrays give JAX
arrays, torch tensors torch tensors). Host logits (NumPy, lists) go to the
framework of the labels or ``where`` if those are framework arrays (optax moves
everything to JAX); with host data only, the result is NumPy (optax: a
``jax.Array``): the dialect never imports JAX itself.

Provided: ``softmax_cross_entropy``, ``safe_softmax_cross_entropy``,
``softmax_cross_entropy_with_integer_labels``, ``sigmoid_binary_cross_entropy``,
``sigmoid_focal_loss``, ``poly_loss_cross_entropy`` (the cross-entropy plus
optax's polynomial term), ``smooth_labels``, and the KL divergences
``kl_divergence``, ``kl_divergence_with_log_targets``,
``generalized_kl_divergence`` and ``convex_kl_divergence``. Not provided (not
cross-entropies, or not over xent's losses): ``ctc_loss``, the hinge,
perceptron, sparsemax, ranking, regression, segmentation and self-supervised
losses, and the deprecated aliases ``binary_logistic_loss`` and
``multiclass_logistic_loss``.

Differences, deliberate (``docs/porting.md``): labels must have the exact
expected shape (optax broadcasts silently); integer labels outside ``[0, C)``
raise ``ValueError`` eagerly and give NaN under ``jax.jit`` (optax wraps ``-1``
to the last class and gives NaN for ``C`` and above); ``softmax_cross_entropy`` is already "safe" (a ``-inf``
logit under a zero label is finite), so ``safe_softmax_cross_entropy`` is the
same function; a sigmoid loss at a ``±inf`` logit is its limit (optax: NaN);
with a per-logit ``where`` that masks out the labelled class itself,
``softmax_cross_entropy_with_integer_labels`` gives ``+inf`` (that class has
probability 0 under the masked softmax; optax returns ``logsumexp`` of the kept
logits minus the label's logit, which may be negative); ``poly_loss_cross_entropy``
reads a loss-shaped ``where`` as ``softmax_cross_entropy`` does (optax's
broadcasts it against the trailing axes). A bad ``where`` raises ``ValueError``
naming ``where``.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import numpy as np

import xent
from xent.compat._common import as_predictions, backend, is_host, like, plain_python, shape

Array = Any
#: optax's ``axis``: one axis, several (their order matters for integer labels), or all.
Axis = int | tuple[int, ...] | None

__all__ = [
    "losses",
    "poly_loss_cross_entropy",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]


# ------------------------------------------------------------------- plumbing
class _TFOps:
    """The three array functions the backends' primitives lack, for TensorFlow."""

    def __init__(self) -> None:
        import tensorflow as tf  # only reached with TensorFlow tensors in hand

        self.tf = tf

    def permute_dims(self, x: Array, axes: tuple[int, ...]) -> Array:
        return self.tf.transpose(x, axes)

    def broadcast_to(self, x: Array, shape: tuple[int, ...]) -> Array:
        return self.tf.broadcast_to(x, shape)

    def any(self, x: Array, axis: tuple[int, ...], keepdims: bool = False) -> Array:
        return self.tf.reduce_any(x, axis=list(axis), keepdims=keepdims)


def _ops(ref: Array) -> Any:
    """``permute_dims``, ``broadcast_to``, ``any`` for the framework of ``ref``."""
    be = backend(ref)
    return _TFOps() if be.name == "tensorflow" else be.namespace(ref)


def _axes(axis: Axis, ndim: int, allow_none: bool = True) -> tuple[int, ...]:
    """``axis`` as non-negative ints, in the order given (optax's canonicalize_axes)."""
    if axis is None and allow_none:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        raw = tuple(axis)
    elif isinstance(axis, (int, np.integer)):
        raw = (axis,)
    else:
        raise ValueError("Keyword argument 'axis' must be of type 'int' or "
                         f"'tuple[int, ...]' but actual type is {type(axis)}.")
    out = []
    for a in raw:
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in axis={axis!r}")
    return tuple(out)


def _to_last(x: Array, axes: tuple[int, ...]) -> Array:
    """``x`` with ``axes`` moved, in that order, to the end and merged into one."""
    nd = len(shape(x))
    batch = tuple(i for i in range(nd) if i not in axes)
    if batch + axes != tuple(range(nd)):
        x = _ops(x).permute_dims(x, batch + axes)
    dims = shape(x)
    return backend(x).reshape(x, tuple(dims[: len(batch)]) + (-1,))


def _mask(where: Array, logits: Array, axes: tuple[int, ...]) -> Array:
    """``where`` as a boolean array of the logits' shape and framework (optax's
    rule: a mask of another rank gets the class axes inserted first)."""
    if not is_host(where) and backend(where) is not backend(logits):
        raise TypeError(f"where is a {backend(where).name} array but logits are a "
                        f"{backend(logits).name} array")
    lshape = tuple(shape(logits))
    wshape = given = tuple(np.shape(where) if is_host(where) else shape(where))
    if len(wshape) != len(lshape):
        if len(wshape) + len(axes) != len(lshape):
            raise ValueError(f"where must have the loss shape or the logits' shape {lshape} (or broadcast "
                             f"to it); got where.shape={wshape} for axis={axes}")
        for a in sorted(axes):
            wshape = wshape[:a] + (1,) + wshape[a:]
    if None not in lshape and None not in wshape:
        try:
            ok = np.broadcast_shapes(wshape, lshape) == lshape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"where.shape={given} does not broadcast to the logits' shape {lshape} "
                             f"(axis={axes})")
    dtype = str(np.asarray(where).dtype) if is_host(where) else backend(where).dtype_name(where)
    if dtype != "bool":
        raise ValueError(f"where must be None or a boolean array; got where.dtype={dtype}")
    if is_host(where):
        w = like(np.reshape(np.asarray(where), wshape), logits)
    else:
        w = where if tuple(shape(where)) == wshape else backend(where).reshape(where, wshape)
    return w if wshape == lshape else _ops(logits).broadcast_to(w, lshape)


def _masked(logits: Array, labels: Array | None, where: Array, axes: tuple[int, ...]) -> tuple[Array, Array | None, Array]:
    """Logits ``-inf`` where ``where`` is False (0 in entries with no class left,
    so no NaN reaches a gradient), labels 0 there, and which entries keep a class."""
    be = backend(logits)
    w = _mask(where, logits, axes)
    alive = _ops(w).any(w, axis=axes, keepdims=True)
    z = be.where(alive, be.where(w, logits, -np.inf), 0.0)
    y = None if labels is None else be.where(w, like(labels, logits), 0.0)
    return z, y, alive


def _predictions(logits: Array, *others: Array) -> Array:
    """Host logits (NumPy, lists) in the framework of the first framework array
    among ``others`` (labels, ``where``), as optax moves everything to JAX;
    else as they are (lists as NumPy)."""
    if is_host(logits):
        for other in others:
            if other is not None and not is_host(other):
                return like(as_predictions(logits), other)
    return as_predictions(logits)


def _check_same_shape(logits: Array, labels: Array) -> None:
    ls, ys = tuple(shape(logits)), tuple(np.shape(labels) if is_host(labels) else shape(labels))
    if ls != ys and None not in ls and None not in ys:
        raise ValueError(f"labels must have the same shape as logits. Received: logits.shape={ls}, "
                         f"labels.shape={ys}")


def _dense(logits: Array, labels: Array, axis: Axis, where: Array | None) -> tuple[Array, Array, int]:
    """Logits and labels with the classes on one axis, masked by ``where``: ``(z, y, axis)``."""
    logits = _predictions(logits, labels, where)
    axes = _axes(axis, len(shape(logits)))
    if len(axes) != 1 or where is not None:
        _check_same_shape(logits, labels)
    if where is not None:
        logits, labels, _ = _masked(logits, labels, where, axes)
    if len(axes) != 1:
        return _to_last(logits, axes), _to_last(like(labels, logits), axes), -1
    return logits, labels, axes[0]


def _no_classes(z: Array, ax: int) -> Array | None:
    """optax's loss over an empty class axis (``preds[mask]`` with a mask that
    keeps nothing): a sum over nothing, 0 for each entry; None where there are
    classes. (xent's own losses reject an empty class axis.)"""
    if shape(z)[ax] != 0:
        return None
    return backend(z).sum(z, ax)


# -------------------------------------------------------------------- losses
def softmax_cross_entropy(logits: Array, labels: Array, axis: Axis = -1, where: Array | None = None) -> Array:
    """``optax.softmax_cross_entropy``: ``-Σ labels · log_softmax(logits)`` over ``axis``.

    Args:
      logits: ``[..., num_classes]`` floating point (classes on ``axis``).
      labels: the same shape, e.g. probabilities or one-hot rows (need not sum to 1).
      axis: the class axis, a tuple of class axes, or ``None`` (all axes).
      where: boolean mask of the loss shape (``logits.shape`` without ``axis``:
        the loss is 0 where False) or of ``logits.shape`` (per logit: masked
        classes leave the softmax and the sum; an entry with none left has loss 0).

    Returns:
      ``logits.shape`` without ``axis``, in the dtype of ``logits``.

    Raises:
      ValueError: labels of another shape, a bad ``axis`` or ``where``.
    """
    z, y, ax = _dense(logits, labels, axis, where)
    empty = _no_classes(z, ax)
    return empty if empty is not None else xent.softmax_cross_entropy(z, y, axis=ax)


def safe_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """``optax.safe_softmax_cross_entropy``: finite at ``-inf`` logits under zero labels
    (as :func:`softmax_cross_entropy` always is here).

    Args:
      logits: ``[..., num_classes]`` floating point.
      labels: the same shape.

    Returns:
      ``logits.shape[:-1]``, in the dtype of ``logits``.
    """
    return xent.softmax_cross_entropy(_predictions(logits, labels), labels)


def softmax_cross_entropy_with_integer_labels(logits: Array, labels: Array, axis: int | tuple[int, ...] = -1,
                                              where: Array | None = None) -> Array:
    """``optax.softmax_cross_entropy_with_integer_labels``: ``-log_softmax(logits)[labels]``.

    Args:
      logits: ``[..., num_classes]`` floating point (classes on ``axis``).
      labels: integer class ids in ``[0, num_classes)``, shape ``logits.shape``
        without ``axis``. With a tuple ``axis`` the classes are the cells of
        those axes, in the order given, and a label is a flat (C-order) index.
      axis: the class axis or a tuple of class axes.
      where: boolean mask of the loss shape (the loss is 0 where False) or of
        ``logits.shape`` (masked classes leave the softmax; an entry with none
        left has loss 0; a masked labelled class gives ``+inf``).

    Returns:
      ``labels.shape``, in the dtype of ``logits``.

    Raises:
      ValueError: labels of another shape or out of range (eagerly), a bad ``axis`` or ``where``.
      TypeError: non-integer labels.
    """
    logits = _predictions(logits, labels, where)
    axes = _axes(axis, len(shape(logits)), allow_none=False)
    alive = None
    if where is not None:
        logits, _, alive = _masked(logits, None, where, axes)
    ax = axes[0]
    if len(axes) != 1:
        logits, ax = _to_last(logits, axes), -1
    loss = xent.sparse_softmax_cross_entropy(logits, labels, axis=ax)
    if alive is None:
        return loss
    be = backend(loss)
    return be.where(be.reshape(alive, tuple(shape(loss))), loss, 0.0)


def sigmoid_binary_cross_entropy(logits: Array, labels: Array) -> Array:
    """``optax.sigmoid_binary_cross_entropy``: elementwise, labels in ``[0, 1]``.

    Args:
      logits: ``[...]`` floating point.
      labels: the same shape, binary or probabilities.

    Returns:
      ``logits.shape``, in the dtype of ``logits``.
    """
    return xent.sigmoid_cross_entropy(_predictions(logits, labels), labels)


def sigmoid_focal_loss(logits: Array, labels: Array, *, alpha: float | None = None, gamma: float = 2.0) -> Array:
    """``optax.sigmoid_focal_loss``: ``α_t·(1 - p_t)^γ·`` the sigmoid cross-entropy, elementwise.

    Args:
      logits: any shape, floating point.
      labels: the same shape, in ``[0, 1]`` (soft labels allowed: ``1 - p_t =
        y·(1 - p) + (1 - y)·p``).
      alpha: None (no weighting) or the weight of positives in ``[0, 1]``
        (``α·y + (1 - α)·(1 - y)``).
      gamma: the focal exponent ``γ >= 0``.

    Returns:
      ``logits.shape``, in the dtype of ``logits``; the factor is taken in log
      space, as optax >= 0.2.5 does.
    """
    z = _predictions(logits, labels)
    if _number(gamma) and (alpha is None or _number(alpha)):
        return xent.sigmoid_cross_entropy(z, labels, focal_gamma=gamma, focal_alpha=alpha)
    # optax takes gamma and alpha as arrays too (traced, under jax.jit): the same
    # formula with them as operands.
    from xent import _frontend as fe
    from xent._losses import sigmoid_focal

    p = fe.predictions(z, "logits")
    be = p.backend
    y = fe.float_labels(p, labels)
    g = be.cast(like(gamma, p.value), p.compute_dtype)
    a = None if alpha is None else be.cast(like(alpha, p.value), p.compute_dtype)
    with be.errstate():
        loss = be.binary_nll(p.value, y, None)
        # (γ = 0 exactly the cross-entropy, also at a logit where log(1 - p_t) = -inf)
        loss = be.where(g == 0, loss, sigmoid_focal(be, p.value, y, loss, g, None))
        return p.finish(sigmoid_focal(be, p.value, y, loss, None, a))


def _number(x: Any) -> bool:
    """A Python or NumPy real number (not an array, not a tracer)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def poly_loss_cross_entropy(logits: Array, labels: Array, *, epsilon: Array | float = 2.0, axis: Axis = -1,
                            where: Array | None = None) -> Array:
    """``optax.poly_loss_cross_entropy`` (Poly-1): ``CE + ε · Σ labels · (1 - softmax(logits))``.

    Args:
      logits: ``[..., num_classes]`` floating point.
      labels: the same shape, probabilities.
      epsilon: ``ε``, the coefficient of the first polynomial term.
      axis: the class axis, a tuple of class axes, or ``None``.
      where: as in :func:`softmax_cross_entropy`; masked classes leave the
        softmax and both sums.

    Returns:
      ``logits.shape`` without ``axis``, in the dtype of ``logits``.
    """
    z, y, ax = _dense(logits, labels, axis, where)
    empty = _no_classes(z, ax)
    if empty is not None:
        return empty
    be = backend(z)
    y = like(y, z)
    ce = xent.softmax_cross_entropy(z, y, axis=ax)
    y = be.cast(y, be.dtype_name(z))
    p = be.exp(be.log_softmax(z, ax))
    return ce + epsilon * be.sum(y * (1.0 - p), ax)


def smooth_labels(labels: Array, alpha: Array | float, *, axis: Axis = -1, where: Array | None = None) -> Array:
    """``optax.smooth_labels``: ``(1 - α)·labels + α / num_classes``.

    >>> smooth_labels(np.array([[0.0, 1.0, 0.0]]), 0.3).round(2)
    array([[0.1, 0.8, 0.1]])

    Args:
      labels: ``[..., num_classes]`` one-hot (or soft) labels, floating point.
      alpha: the smoothing factor ``α``.
      axis: the class axis (or axes, or ``None``): ``num_classes`` is their size.
      where: boolean mask broadcastable to ``labels``: ``num_classes`` counts
        its True entries along ``axis`` instead.

    Returns:
      ``labels.shape`` (a new array; ``labels`` is not modified).
    """
    labels = as_predictions(labels)
    axes = _axes(axis, len(shape(labels)))
    if where is None:
        num: Any = 1
        for a in axes:
            num *= shape(labels)[a]
    else:
        be = backend(labels)
        w = like(np.asarray(where), labels) if is_host(where) else where
        num = be.cast(w, "float64" if be.dtype_name(labels) == "float64" else "float32")
        for a in sorted(axes):
            num = be.sum(num, a, keepdims=True)
    with backend(labels).errstate():  # no class kept: alpha / 0 = inf, as in optax
        return like(labels, labels) * (1.0 - alpha) + alpha / num


#: ``from xent.compat import optax; optax.losses.softmax_cross_entropy(...)``, as ``optax.losses``.
losses = sys.modules[__name__]

plain_python(globals(), __all__)


# ------------------------------------------------------------ KL divergences
def _kl_sum(log_predictions: Array, targets: Array, axis: Axis, where: Array | None, *, log_targets: bool,
            generalized: bool = False) -> Array:
    """``Σ target·(log target - log_prediction)`` over ``axis`` (``where`` masking
    elements out), each term 0 where the target probability is 0; with
    ``generalized`` plus ``Σ (exp(log_prediction) - target)``. Elementwise
    products guarded as :func:`xent.kl_divergence`'s; half types in float32."""
    from xent._divergence import kl_pointwise
    from xent.backends._base import FLOAT_DTYPES, HALF_DTYPES

    x = _predictions(log_predictions, targets, where)
    be = backend(x)
    y = like(as_predictions(targets), x)
    for name, arr in (("log_predictions", x), ("log_targets" if log_targets else "targets", y)):
        if be.dtype_name(arr) not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be floating point; received {name}.dtype={be.dtype_name(arr)}")
    dtype = be.dtype_name(x)
    compute = "float32" if dtype in HALF_DTYPES else dtype
    x, y = be.cast(x, compute), be.cast(y, compute)
    with be.errstate():
        terms = kl_pointwise(be, be.exp(y), y, x) if log_targets else kl_pointwise(be, y, be.log(y), x)
        if generalized:
            terms = terms + (be.exp(x) - y)
        axes = _axes(axis, len(shape(terms)))
        if where is not None:
            terms = be.where(_mask(_leading_ones(where, terms), terms, axes), terms, 0.0)
        total = be.sum(_to_last(terms, axes), -1)
    return be.cast(total, dtype)


def _leading_ones(where: Array, ref: Array) -> Array:
    """``where`` with ones prepended to its shape where it broadcasts to
    ``ref``'s that way (NumPy's rule, which optax's KL sums follow); as it is
    otherwise (a loss-shaped mask: :func:`_mask` inserts the class axes)."""
    wshape = tuple(np.shape(where) if is_host(where) else shape(where))
    rshape = tuple(shape(ref))
    extra = len(rshape) - len(wshape)
    if extra <= 0 or None in wshape or None in rshape:
        return where
    try:
        ok = np.broadcast_shapes(wshape, rshape) == rshape
    except ValueError:
        ok = False
    if not ok:
        return where
    full = (1,) * extra + wshape
    return np.reshape(np.asarray(where), full) if is_host(where) else backend(where).reshape(where, full)


def kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1, where: Array | None = None) -> Array:
    """``optax.kl_divergence``: ``Σ targets · (log targets - log_predictions)`` over ``axis``.

    ``log_predictions`` are used as they are (not normalised). A term whose
    target is 0 is 0, also where ``log_predictions`` is ``-inf`` (optax: NaN).
    For two sets of logits, :func:`xent.kl_divergence` is the same divergence
    with the softmaxes taken in log space.

    >>> import numpy as np
    >>> kl_divergence(np.log(np.array([0.5, 0.25, 0.25])), np.array([0.4, 0.6, 0.0])).round(6)
    np.float64(0.436024)

    Args:
      log_predictions: ``[..., num_classes]`` log-probabilities, floating point.
      targets: the same shape, probabilities (floating point).
      axis: the class axis, a tuple of axes, or ``None`` (all).
      where: boolean mask of the elements to include (the shape of the inputs
        or broadcastable to it; or the loss shape, as in :func:`softmax_cross_entropy`).

    Returns:
      ``log_predictions.shape`` without ``axis``, in the dtype of ``log_predictions``.

    Raises:
      TypeError: non-floating inputs. ValueError: a bad ``axis`` or ``where``.
    """
    return _kl_sum(log_predictions, targets, axis, where, log_targets=False)


def kl_divergence_with_log_targets(log_predictions: Array, log_targets: Array, axis: Axis = -1,
                                   where: Array | None = None) -> Array:
    """``optax.kl_divergence_with_log_targets``: ``Σ exp(log_targets) · (log_targets - log_predictions)``.

    A term whose ``log_targets`` is ``-inf`` is 0 (optax: NaN, ``0·(-inf)``).

    Args:
      log_predictions: ``[..., num_classes]`` log-probabilities, floating point.
      log_targets: the same shape, log-probabilities.
      axis: the class axis, a tuple of axes, or ``None``.
      where: as in :func:`kl_divergence`.

    Returns:
      ``log_predictions.shape`` without ``axis``, in the dtype of ``log_predictions``.
    """
    return _kl_sum(log_predictions, log_targets, axis, where, log_targets=True)


def generalized_kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1,
                              where: Array | None = None) -> Array:
    """``optax.generalized_kl_divergence``: :func:`kl_divergence` plus
    ``Σ (exp(log_predictions) - targets)``, for unnormalised distributions.

    Args:
      log_predictions: ``[..., num_classes]`` log-probabilities (need not sum to 1).
      targets: the same shape, non-negative (need not sum to 1).
      axis: the class axis, a tuple of axes, or ``None``.
      where: as in :func:`kl_divergence`.

    Returns:
      ``log_predictions.shape`` without ``axis``, in the dtype of ``log_predictions``.
    """
    return _kl_sum(log_predictions, targets, axis, where, log_targets=False, generalized=True)


def convex_kl_divergence(log_predictions: Array, targets: Array, axis: Axis = -1,
                         where: Array | None = None) -> Array:
    """``optax.convex_kl_divergence``: the deprecated name of
    :func:`generalized_kl_divergence` (warns ``DeprecationWarning``, as optax)."""
    import warnings

    warnings.warn("The function convex_kl_divergence is deprecated. Please use generalized_kl_divergence instead.",
                  category=DeprecationWarning, stacklevel=2)
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)


_KL = ["convex_kl_divergence", "generalized_kl_divergence", "kl_divergence", "kl_divergence_with_log_targets"]
__all__ += _KL
plain_python(globals(), _KL)
