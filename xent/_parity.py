"""The parity engine behind ``xent parity``: cases, a float64 reference, native anchors.

Every loss × option set (:data:`CASES`) is run for every dtype on every requested
backend and compared

* with a **float64 reference** written here in plain NumPy, independently of
  xent's own loss code (the formulas of docs/semantics.md), on the same inputs rounded to
  the dtype under test: values, and for autodiff backends the analytic gradients
  w.r.t. the predictions (and the soft labels where they are real);
* with the framework's **own native loss** where its semantics match
  (``torch.nn.functional``, ``tf.nn``, ``optax``, ``keras.losses`` for
  probability inputs), in float32 and float64. Native kernels on float16/bfloat16
  accumulate in the half type itself (torch's bfloat16 cross-entropy rounds its
  log-softmax to bfloat16 before the gather), so they are no reference there and
  are not compared.

Tolerances come from :func:`xent.testing.tolerance` (reasoning in
``xent/testing/_tolerance.py`` and ``docs/parity.md``). A native loss is itself
within that tolerance of the truth, so xent is compared with it at twice the
tolerance.

Nothing here formats output: :func:`run` returns :class:`Check` records and the
CLI (:mod:`xent._cli`) prints them.

>>> from xent._parity import run
>>> report = run(backends=["numpy"], losses=["sigmoid_cross_entropy"], dtypes=["float64"])
>>> report.passed
True
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast, overload

import numpy as np

from xent._losses import CLASS_ID_LOSSES as _CLASS_ID_LOSSES
from xent._losses import LOSSES as _CROSS_ENTROPIES
from xent.testing import _reference
from xent.testing._frameworks import NAMES, Framework, framework, installed
from xent.testing._tolerance import tolerance

Array = Any

DTYPES = ("float32", "float64", "float16", "bfloat16")
#: losses whose predictions are logits (the others take probabilities)
_SPARSE = ("sparse_softmax_cross_entropy", "sparse_categorical_cross_entropy")
#: the divergences between two sets of logits (the "labels" are the target logits)
_DIVERGENCES = ("kl_divergence", "js_divergence")
#: every function ``xent parity`` checks, in the order it reports them
LOSSES = _CROSS_ENTROPIES + _DIVERGENCES
_SOFTMAX_FAMILY = _DIVERGENCES + ("softmax_cross_entropy", "sparse_softmax_cross_entropy",
                   "categorical_cross_entropy", "sparse_categorical_cross_entropy")
IGNORE = -100
EPSILON = 1e-7


@dataclass(frozen=True)
class Case:
    """One loss with one set of options.

    Attributes:
      loss: the xent function name.
      option: a short label for the options (``"axis=1"``, ``"weights, mean"``).
      shape: shape of the predictions.
      axis: class axis (softmax family).
      smoothing: label smoothing ``α``.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      weights: pass random sample weights.
      class_weights: pass random class weights (sparse softmax).
      pos_weight: pass a random ``pos_weight`` along the last axis (sigmoid).
      ignore: mark some labels ``ignore_index=-100`` (sparse losses).
      gamma: ``focal_gamma`` (softmax and sigmoid losses).
      poly: ``poly_epsilon`` (softmax losses).
      balance: ``focal_alpha`` (sigmoid), or None.
    """

    loss: str
    option: str
    shape: tuple[int, ...] = (16, 7)
    axis: int = -1
    smoothing: float = 0.0
    reduction: str = "none"
    weights: bool = False
    class_weights: bool = False
    pos_weight: bool = False
    ignore: bool = False
    gamma: float = 0.0
    poly: float = 0.0
    balance: float | None = None
    #: other keyword options, as ``(name, value)`` pairs (the divergences' ``temperature``, ...)
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.loss}/{self.option}"

    @property
    def num_classes(self) -> int:
        return self.shape[self.axis] if self.loss in _SOFTMAX_FAMILY else 2

    @property
    def reduced(self) -> int:
        """Elements summed by the reduction (for the tolerance)."""
        if self.reduction == "none":
            return 1
        return math.prod(self.shape) // (self.num_classes if self.loss in _SOFTMAX_FAMILY else 1)

    def kwargs(self, inputs: Inputs) -> dict[str, Any]:
        """The keyword arguments of the xent call (host arrays; xent moves them)."""
        kw: dict[str, Any] = {"reduction": self.reduction}
        if self.loss in _SOFTMAX_FAMILY:
            kw["axis"] = self.axis
        if self.smoothing:
            kw["label_smoothing"] = self.smoothing
        if self.weights:
            kw["weights"] = inputs.weights
        if self.class_weights:
            kw["class_weights"] = inputs.class_weights
        if self.pos_weight:
            kw["pos_weight"] = inputs.pos_weight
        if self.ignore:
            kw["ignore_index"] = IGNORE
        if self.gamma:
            kw["focal_gamma"] = self.gamma
        if self.poly:
            kw["poly_epsilon"] = self.poly
        if self.balance is not None:
            kw["focal_alpha"] = self.balance
        kw.update(self.extra)
        return kw

    @property
    def focal(self) -> bool:
        """Whether the case sets a focal or PolyLoss option."""
        return bool(self.gamma or self.poly or self.balance is not None)


def _cases() -> tuple[Case, ...]:
    c: list[Case] = []
    sm, sp, sg = "softmax_cross_entropy", "sparse_softmax_cross_entropy", "sigmoid_cross_entropy"
    cc, scc, bc = "categorical_cross_entropy", "sparse_categorical_cross_entropy", "binary_cross_entropy"
    for loss in (sm, sp, cc, scc):
        c.append(Case(loss, "default"))
        c.append(Case(loss, "axis=1 (3-D)", shape=(4, 5, 6), axis=1))
        if loss != scc:
            c.append(Case(loss, "label_smoothing=0.1", smoothing=0.1))
        c.append(Case(loss, "weights, mean", weights=True, reduction="mean"))
        c.append(Case(loss, "sum", reduction="sum"))
        c.append(Case(loss, "mean", reduction="mean"))
    c.insert(8, Case(sp, "class_weights, mean", class_weights=True, reduction="mean"))
    c.insert(9, Case(sp, "ignore_index, mean", ignore=True, reduction="mean"))
    c.insert(10, Case(sp, "all options, mean", class_weights=True, ignore=True, smoothing=0.1,
                      weights=True, reduction="mean"))
    c.append(Case(scc, "ignore_index, mean", ignore=True, reduction="mean"))
    for loss in (sg, bc):
        c.append(Case(loss, "default"))
        if loss == sg:
            c.append(Case(loss, "pos_weight", pos_weight=True))
        c.append(Case(loss, "label_smoothing=0.1", smoothing=0.1))
        c.append(Case(loss, "weights, mean", weights=True, reduction="mean"))
        c.append(Case(loss, "sum", reduction="sum"))
    c += [
        Case(sm, "focal_gamma=2", gamma=2.0),
        Case(sm, "poly_epsilon=1", poly=1.0),
        Case(sm, "focal_gamma=0.5, poly_epsilon=-1, label_smoothing=0.1, mean", gamma=0.5, poly=-1.0, smoothing=0.1,
             reduction="mean"),
        Case(sp, "focal_gamma=2", gamma=2.0),
        Case(sp, "poly_epsilon=2", poly=2.0),
        Case(sp, "focal_gamma=0.5, class_weights, ignore_index, label_smoothing=0.1, mean", gamma=0.5,
             class_weights=True, ignore=True, smoothing=0.1, reduction="mean"),
        Case(sg, "focal_gamma=2, focal_alpha=0.25", gamma=2.0, balance=0.25),
        Case(sg, "focal_gamma=0.5, pos_weight, weights, mean", gamma=0.5, pos_weight=True, weights=True,
             reduction="mean"),
    ]
    for loss in _DIVERGENCES:
        c.append(Case(loss, "default"))
        c.append(Case(loss, "axis=1 (3-D)", shape=(4, 5, 6), axis=1))
        c.append(Case(loss, "weights, mean", weights=True, reduction="mean"))
    c += [
        Case("kl_divergence", "temperature=2, sum", reduction="sum", extra=(("temperature", 2.0),)),
        Case("kl_divergence", "reverse=True", extra=(("reverse", True),)),
        Case("js_divergence", "beta=0.3, temperature=1.5", extra=(("beta", 0.3), ("temperature", 1.5))),
        Case("js_divergence", "beta=0", extra=(("beta", 0.0),)),
    ]
    order = {name: i for i, name in enumerate(LOSSES)}
    return tuple(sorted(c, key=lambda case: order[case.loss]))


#: every case ``xent parity`` runs, grouped by loss
CASES: tuple[Case, ...] = _cases()


# --------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """NumPy inputs of one case in one dtype; float arrays hold dtype-rounded values."""

    predictions: np.ndarray  # in the dtype under test (bfloat16 via ml_dtypes)
    labels: np.ndarray  # int64 class ids, or floats in the dtype under test
    weights: np.ndarray | None = None  # float32, exact in every dtype
    class_weights: np.ndarray | None = None
    pos_weight: np.ndarray | None = None

    @overload
    def f64(self, x: np.ndarray) -> np.ndarray: ...
    @overload
    def f64(self, x: None) -> None: ...

    def f64(self, x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.asarray(x, dtype=np.float64)


def _np_dtype(dtype: str) -> Any:
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _exact(rng: np.random.Generator, shape: tuple[int, ...], lo: int = 0) -> np.ndarray:
    """Weights that are multiples of 1/8 in [lo/8, 2]: exact in every float dtype."""
    return (rng.integers(lo, 17, size=shape) / 8).astype(np.float32)


def make_inputs(case: Case, dtype: str) -> Inputs:
    """Deterministic random inputs for ``case`` (same seed for every backend).

    Probabilities stay inside ``[ε, 1-ε]`` after renormalisation, so the
    clipping of the probability losses is inactive and the analytic gradient
    holds.
    """
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    dt = _np_dtype(dtype)
    shape = case.shape
    axis = case.axis % len(shape)
    num = shape[axis]
    loss_shape = shape[:axis] + shape[axis + 1:]
    z = rng.normal(scale=2.0, size=shape)
    if case.loss in _DIVERGENCES:
        labels = rng.normal(scale=2.0, size=shape).astype(dt)  # the target logits
    elif case.loss in ("softmax_cross_entropy", "categorical_cross_entropy"):
        y = rng.dirichlet(np.ones(num), size=loss_shape)  # [..., C]
        y = np.moveaxis(y, -1, axis)
        labels = y.astype(dt)
    elif case.loss in _SPARSE:
        labels = rng.integers(0, num, size=loss_shape)
        if case.ignore:
            labels[rng.random(loss_shape) < 0.3] = IGNORE
            labels.flat[0] = 0  # at least one kept
    else:
        labels = rng.random(shape).astype(dt)
        labels[rng.random(shape) < 0.3] = 1.0  # hard labels too
    if case.loss in ("categorical_cross_entropy", "sparse_categorical_cross_entropy"):
        e = np.exp(z / 2 - (z / 2).max(axis=axis, keepdims=True))
        # rows that do not sum to 1 exercise the renormalisation
        preds = e / e.sum(axis=axis, keepdims=True) * rng.uniform(0.6, 1.0, size=e.shape[:axis] + (1,) + e.shape[axis + 1:])
    elif case.loss == "binary_cross_entropy":
        preds = rng.uniform(0.02, 0.98, size=shape)
    else:
        preds = z
    inp = Inputs(np.asarray(preds).astype(dt), labels)
    wshape = loss_shape if case.loss in _SOFTMAX_FAMILY else shape
    if case.weights:
        inp.weights = _exact(rng, wshape)
    if case.class_weights:
        inp.class_weights = _exact(rng, (num,), lo=1)
    if case.pos_weight:
        inp.pos_weight = _exact(rng, (shape[-1],), lo=1)
    return inp


# ------------------------------------------------------------------ reference
@dataclass
class Reference:
    """Float64 value and gradients (of the reduced loss, or of its sum for ``"none"``)."""

    value: np.ndarray
    grads: dict[str, np.ndarray] = field(default_factory=dict)


def reference(case: Case, inputs: Inputs) -> Reference:
    """The float64 loss and analytic gradients of ``case`` on ``inputs``, from
    xent's float64 reference (:mod:`xent.testing._reference`, written from the
    formulas of docs/semantics.md without calling xent's losses, and shared
    with the test suite)."""
    loss = case.loss
    x = inputs.f64(inputs.predictions)
    assert x is not None
    softmax_family = loss in _SOFTMAX_FAMILY
    axis = case.axis % x.ndim
    alpha = case.smoothing
    bounds = {"lo": EPSILON, "hi": 1 - EPSILON}
    if softmax_family:
        x = np.moveaxis(x, axis, -1)  # classes last inside the reference
        if loss not in _CLASS_ID_LOSSES:
            y = np.moveaxis(np.asarray(inputs.labels, np.float64), axis, -1)
    else:
        y = np.asarray(inputs.labels, np.float64)
    options = dict(case.extra)
    if loss == "kl_divergence":
        terms = _reference.kl_terms(x, y, temperature=options.get("temperature", 1.0),
                                    reverse=options.get("reverse", False))
    elif loss == "js_divergence":
        terms = _reference.js_terms(x, y, beta=options.get("beta", 0.5), temperature=options.get("temperature", 1.0))
    elif loss == "softmax_cross_entropy":
        terms = _reference.dense_terms(x, y, alpha=alpha, gamma=case.gamma, eps=case.poly)
    elif loss == "sparse_softmax_cross_entropy":
        cw = None if inputs.class_weights is None else inputs.f64(inputs.class_weights)
        terms = _reference.sparse_terms(x, inputs.labels, alpha=alpha, class_weights=cw, ignore_index=IGNORE,
                                        gamma=case.gamma, eps=case.poly)
    elif loss == "categorical_cross_entropy":
        terms = _reference.categorical_terms(x, y, alpha=alpha, **bounds)
    elif loss == "sparse_categorical_cross_entropy":
        terms = _reference.sparse_categorical_terms(x, inputs.labels, ignore_index=IGNORE, **bounds)
    elif loss == "sigmoid_cross_entropy":
        pw = None if inputs.pos_weight is None else inputs.f64(inputs.pos_weight)
        terms = _reference.sigmoid_terms(x, y, alpha=alpha, pos_weight=pw, gamma=case.gamma, balance=case.balance)
    else:
        terms = _reference.binary_terms(x, y, alpha=alpha, **bounds)
    weights = None if inputs.weights is None else inputs.f64(inputs.weights)
    value, grads = _reference.reduced(terms, case.reduction, weights)
    if softmax_family:
        grads = {k: np.moveaxis(v, -1, axis) for k, v in grads.items()}
    return Reference(value, grads)


# ------------------------------------------------------------ native anchors
@dataclass(frozen=True)
class Native:
    """A framework's own loss for a case: ``fn(fw, inputs) -> array`` of that framework."""

    name: str
    backend: str
    fn: Callable[[Framework, Inputs, Case], Array]


def _reduce_native(fw: Framework, loss: Array, reduction: str) -> Array:
    if reduction == "none":
        return loss
    if fw.name == "tensorflow":
        return fw.tf.reduce_sum(loss) if reduction == "sum" else fw.tf.reduce_mean(loss)  # type: ignore[attr-defined]
    return loss.sum() if reduction == "sum" else loss.mean()


def _smoothed(case: Case, inputs: Inputs) -> np.ndarray:
    y = np.asarray(inputs.labels, np.float64)
    k = case.num_classes
    return (1 - case.smoothing) * y + case.smoothing / k


def _keras() -> Any:
    import keras

    return keras


def natives(case: Case) -> list[Native]:
    """The native losses whose semantics match ``case`` exactly."""
    if case.focal:
        return _focal_natives(case)
    if case.loss in _DIVERGENCES:
        return _divergence_natives(case)
    out: list[Native] = []
    loss, r = case.loss, case.reduction
    dt = lambda inp: inp.predictions.dtype.name  # noqa: E731
    unweighted = not case.weights
    if loss == "softmax_cross_entropy" and unweighted:
        def tf_sm(fw, inp, c):  # type: ignore[no-untyped-def]
            y = fw.asarray(_smoothed(c, inp), dt(inp))
            l = fw.tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=fw.asarray(inp.predictions), axis=c.axis)
            return _reduce_native(fw, l, r)

        def optax_sm(fw, inp, c):  # type: ignore[no-untyped-def]
            import optax

            y = optax.smooth_labels(fw.asarray(inp.labels), c.smoothing) if c.axis == -1 else fw.asarray(_smoothed(c, inp), dt(inp))
            return _reduce_native(fw, optax.softmax_cross_entropy(fw.asarray(inp.predictions), y, axis=c.axis), r)

        out += [Native("tf.nn.softmax_cross_entropy_with_logits", "tensorflow", tf_sm),
                Native("optax.softmax_cross_entropy", "jax", optax_sm)]
        if case.axis % len(case.shape) == 1:
            def torch_sm(fw, inp, c):  # type: ignore[no-untyped-def]
                F = fw.torch.nn.functional
                return F.cross_entropy(fw.asarray(inp.predictions), fw.asarray(inp.labels),
                                       label_smoothing=c.smoothing, reduction=r)

            out.append(Native("torch.nn.functional.cross_entropy", "torch", torch_sm))
    if loss == "sparse_softmax_cross_entropy" and unweighted:
        if case.axis % len(case.shape) == 1:
            def torch_sp(fw, inp, c):  # type: ignore[no-untyped-def]
                F = fw.torch.nn.functional
                z = fw.asarray(inp.predictions)
                w = None if inp.class_weights is None else fw.asarray(inp.class_weights).to(z.dtype)
                return F.cross_entropy(z, fw.asarray(inp.labels), weight=w, ignore_index=IGNORE,
                                       label_smoothing=c.smoothing, reduction=r)

            out.append(Native("torch.nn.functional.cross_entropy", "torch", torch_sp))
        if not (case.smoothing or case.class_weights or case.ignore):
            def tf_sp(fw, inp, c):  # type: ignore[no-untyped-def]
                tf = fw.tf
                z, y, ax = fw.asarray(inp.predictions), fw.asarray(inp.labels), c.axis % len(c.shape)
                if ax != len(c.shape) - 1:  # tf.nn: last axis only
                    z = tf.experimental.numpy.moveaxis(z, ax, -1)
                return _reduce_native(fw, tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z), r)

            def optax_sp(fw, inp, c):  # type: ignore[no-untyped-def]
                import optax

                l = optax.softmax_cross_entropy_with_integer_labels(
                    fw.asarray(inp.predictions), fw.asarray(inp.labels), axis=c.axis)
                return _reduce_native(fw, l, r)

            out += [Native("tf.nn.sparse_softmax_cross_entropy_with_logits", "tensorflow", tf_sp),
                    Native("optax.softmax_cross_entropy_with_integer_labels", "jax", optax_sp)]
    if loss == "sigmoid_cross_entropy":
        if unweighted or r != "mean":  # torch's weighted mean divides by numel, xent's by Σw
            def torch_sg(fw, inp, c):  # type: ignore[no-untyped-def]
                F = fw.torch.nn.functional
                z = fw.asarray(inp.predictions)
                y = fw.asarray((1 - c.smoothing) * np.asarray(inp.labels, np.float64) + c.smoothing / 2, dt(inp))
                w = None if inp.weights is None else fw.asarray(inp.weights).to(z.dtype)
                pw = None if inp.pos_weight is None else fw.asarray(inp.pos_weight).to(z.dtype)
                return F.binary_cross_entropy_with_logits(z, y, weight=w, pos_weight=pw, reduction=r)

            out.append(Native("torch.nn.functional.binary_cross_entropy_with_logits", "torch", torch_sg))
        if unweighted:
            def tf_sg(fw, inp, c):  # type: ignore[no-untyped-def]
                tf = fw.tf
                z = fw.asarray(inp.predictions)
                y = fw.asarray((1 - c.smoothing) * np.asarray(inp.labels, np.float64) + c.smoothing / 2, dt(inp))
                if inp.pos_weight is not None:
                    l = tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=z, pos_weight=fw.asarray(inp.pos_weight, dt(inp)))
                else:
                    l = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
                return _reduce_native(fw, l, r)

            name = "tf.nn.weighted_cross_entropy_with_logits" if case.pos_weight else "tf.nn.sigmoid_cross_entropy_with_logits"
            out.append(Native(name, "tensorflow", tf_sg))
            if not case.pos_weight:
                def optax_sg(fw, inp, c):  # type: ignore[no-untyped-def]
                    import optax

                    y = fw.asarray((1 - c.smoothing) * np.asarray(inp.labels, np.float64) + c.smoothing / 2, dt(inp))
                    return _reduce_native(fw, optax.sigmoid_binary_cross_entropy(fw.asarray(inp.predictions), y), r)

                out.append(Native("optax.sigmoid_binary_cross_entropy", "jax", optax_sg))
    keras_ok = unweighted and r == "none"
    if loss == "categorical_cross_entropy" and keras_ok:
        def keras_cc(fw, inp, c):  # type: ignore[no-untyped-def]
            return _keras().losses.categorical_crossentropy(
                fw.asarray(inp.labels), fw.asarray(inp.predictions), label_smoothing=c.smoothing, axis=c.axis)

        out.append(Native("keras.losses.categorical_crossentropy", "tensorflow", keras_cc))
    if loss == "sparse_categorical_cross_entropy" and keras_ok and case.axis == -1:
        def keras_scc(fw, inp, c):  # type: ignore[no-untyped-def]
            return _keras().losses.sparse_categorical_crossentropy(
                fw.asarray(inp.labels), fw.asarray(inp.predictions))

        out.append(Native("keras.losses.sparse_categorical_crossentropy", "tensorflow", keras_scc))
    if loss == "binary_cross_entropy" and keras_ok:
        def keras_bc(fw, inp, c):  # type: ignore[no-untyped-def]
            tf = fw.tf
            # Keras means over the last axis: a trailing axis of 1 makes it elementwise
            l = _keras().losses.binary_crossentropy(
                fw.asarray(inp.labels)[..., None], fw.asarray(inp.predictions)[..., None],
                label_smoothing=c.smoothing)
            return tf.reshape(l, c.shape)

        out.append(Native("keras.losses.binary_crossentropy", "tensorflow", keras_bc))
    if any(n.backend == "tensorflow" and n.name.startswith("keras") for n in out):
        # keras.losses run on Keras' global backend; compare only when that is TensorFlow
        import os

        if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or not installed_module("keras"):
            out = [n for n in out if not n.name.startswith("keras")]
    return out


def _focal_natives(case: Case) -> list[Native]:
    """The native focal and PolyLoss losses that match ``case`` exactly: optax's
    (JAX; both take the factor in log space, as xent)."""
    out: list[Native] = []
    r = case.reduction
    if case.weights or case.smoothing or case.pos_weight or case.class_weights or case.ignore:
        return out
    if case.loss == "sigmoid_cross_entropy":
        def optax_focal(fw, inp, c):  # type: ignore[no-untyped-def]
            import optax

            l = optax.losses.sigmoid_focal_loss(fw.asarray(inp.predictions), fw.asarray(inp.labels),
                                                alpha=c.balance, gamma=c.gamma)
            return _reduce_native(fw, l, r)

        out.append(Native("optax.losses.sigmoid_focal_loss", "jax", optax_focal))
    if case.loss == "softmax_cross_entropy" and not case.gamma and case.axis == -1:
        def optax_poly(fw, inp, c):  # type: ignore[no-untyped-def]
            import optax

            l = optax.losses.poly_loss_cross_entropy(fw.asarray(inp.predictions), fw.asarray(inp.labels),
                                                     epsilon=c.poly)
            return _reduce_native(fw, l, r)

        out.append(Native("optax.losses.poly_loss_cross_entropy", "jax", optax_poly))
    return out


def _divergence_natives(case: Case) -> list[Native]:
    """torch's ``F.kl_div`` and optax's ``kl_divergence`` for the KL cases
    (class axis last, no sample weights)."""
    options = dict(case.extra)
    if case.loss != "kl_divergence" or case.weights or case.axis % len(case.shape) != len(case.shape) - 1:
        return []
    t, rev, r = options.get("temperature", 1.0), options.get("reverse", False), case.reduction

    def torch_kl(fw, inp, c):  # type: ignore[no-untyped-def]
        F = fw.torch.nn.functional
        lp = F.log_softmax(fw.asarray(inp.predictions) / t, -1)
        lq = F.log_softmax(fw.asarray(inp.labels) / t, -1)
        a, b = (lp, lq) if rev else (lq, lp)  # kl_div(input=log b, target=log a): KL(a ‖ b)
        return _reduce_native(fw, F.kl_div(b, a, reduction="none", log_target=True).sum(-1), r)

    def optax_kl(fw, inp, c):  # type: ignore[no-untyped-def]
        import jax
        import optax

        lp = jax.nn.log_softmax(fw.asarray(inp.predictions) / t, -1)
        lq = jax.nn.log_softmax(fw.asarray(inp.labels) / t, -1)
        a, b = (lp, lq) if rev else (lq, lp)
        return _reduce_native(fw, optax.losses.kl_divergence_with_log_targets(b, a), r)

    return [Native("torch.nn.functional.kl_div", "torch", torch_kl),
            Native("optax.losses.kl_divergence_with_log_targets", "jax", optax_kl)]


def installed_module(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


# --------------------------------------------------------------------- checks
@dataclass
class Check:
    """One comparison: a value, a gradient or a native loss, of one case/dtype/backend.

    ``ratio`` is ``max |x - ref| / (atol + rtol·|ref|)``: at most 1 passes.
    ``max_rel`` is ``max |x - ref| / max(|ref|, atol)``.
    """

    loss: str
    option: str
    dtype: str
    backend: str
    what: str
    max_abs: float
    max_rel: float
    ratio: float
    rtol: float
    passed: bool
    error: str | None = None

    @property
    def case(self) -> str:
        return f"{self.loss}/{self.option}"


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> tuple[float, float, float, str | None]:
    """``(max_abs, max_rel, ratio, problem)`` of ``got`` against ``want``."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf, math.inf, math.inf, f"shape {got.shape} != expected {want.shape}"
    if got.size == 0:
        return 0.0, 0.0, 0.0, None
    same_inf = (got == want) & np.isinf(want)
    err = np.where(same_inf, 0.0, np.abs(got - want))
    if np.isnan(err).any():
        i = np.unravel_index(int(np.argmax(np.isnan(err))), err.shape)
        return math.inf, math.inf, math.inf, f"non-finite at {tuple(map(int, i))}: got {float(got[i]):.9g}, expected {float(want[i]):.9g}"
    allowed = atol + rtol * np.abs(want)
    ratio = err / allowed
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    problem = None
    if ratio[worst] > 1:
        problem = f"worst at {tuple(map(int, worst))}: got {float(got[worst]):.9g}, expected {float(want[worst]):.9g}"
    rel = err / np.maximum(np.abs(want), atol)
    return float(err.max()), float(rel.max()), float(ratio.max()), problem


@dataclass
class Report:
    """Everything one parity run found."""

    checks: list[Check]
    backends: list[str]
    missing: list[str]
    broken: dict[str, str]
    dtypes: list[str]
    cases: list[Case]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.broken

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "backends": self.backends,
            "missing": self.missing,
            "broken": self.broken,
            "dtypes": self.dtypes,
            "checks": [asdict(c) for c in self.checks],
        }


def _scalar(out: Array) -> Array:
    import xent

    be = xent.get_backend(out)
    return out if not be.shape(out) else be.sum(out)


def _call(case: Case, fw: Framework, inputs: Inputs, dtype: str) -> tuple[Callable[..., Array], list[Array]]:
    import xent

    fn = getattr(xent, case.loss)
    kw = case.kwargs(inputs)
    pred = fw.asarray(inputs.predictions, dtype)
    labels = fw.asarray(inputs.labels, None if case.loss in _SPARSE else dtype)
    return (lambda p, y: fn(p, y, **kw)), [pred, labels]


def run_one(case: Case, dtype: str, fw: Framework, native_list: Sequence[Native] = ()) -> list[Check]:
    """All checks of ``case`` in ``dtype`` on framework ``fw``."""
    inputs = make_inputs(case, dtype)
    ref = reference(case, inputs)
    rtol, atol = tolerance(dtype, case.num_classes, case.reduced)
    checks: list[Check] = []

    def record(what: str, got: Callable[[], np.ndarray], want: np.ndarray, scale: float = 1.0) -> None:
        try:
            arr = got()
        except Exception as exc:  # noqa: BLE001 - a crash is a failed cell, named
            checks.append(Check(case.loss, case.option, dtype, fw.name, what, math.inf, math.inf,
                                math.inf, rtol * scale, False, f"{type(exc).__name__}: {exc}"))
            return
        mabs, mrel, ratio, problem = compare(arr, want, rtol * scale, atol * scale)
        checks.append(Check(case.loss, case.option, dtype, fw.name, what, mabs, mrel, ratio,
                            rtol * scale, ratio <= 1, problem))

    fn, args = _call(case, fw, inputs, dtype)
    record("value", lambda: fw.to_numpy(fn(*args)), ref.value)
    value_now: dict[str, np.ndarray] = {}
    if fw.differentiable:
        argnums = [0] + ([1] if "labels" in ref.grads else [])
        names = ["predictions", "labels"]
        try:
            grads = fw.grad(lambda *a: _scalar(fn(*a)), args, argnums)
            for i, g in zip(argnums, grads):
                value_now[names[i]] = g
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(case.loss, case.option, dtype, fw.name, "grad", math.inf, math.inf,
                                math.inf, rtol, False, f"{type(exc).__name__}: {exc}"))
        for name in value_now:
            record(f"grad {name}", cast(Callable[[], np.ndarray], lambda n=name: value_now[n]), ref.grads[name])
    if dtype in ("float32", "float64"):
        for native in native_list:
            if native.backend != fw.name:
                continue
            try:
                want = fw.to_numpy(native.fn(fw, inputs, case))
            except Exception as exc:  # noqa: BLE001
                checks.append(Check(case.loss, case.option, dtype, fw.name, f"native {native.name}",
                                    math.inf, math.inf, math.inf, rtol, False,
                                    f"native raised {type(exc).__name__}: {exc}"))
                continue
            record(f"native {native.name}", lambda: fw.to_numpy(fn(*args)), want, scale=2.0)
    return checks


def select(losses: Iterable[str] | None = None) -> list[Case]:
    """The cases of the given losses (all by default); a loss may be given as
    ``loss`` or ``loss/option``."""
    if not losses:
        return list(CASES)
    wanted = list(losses)
    unknown = [w for w in wanted if not any(c.loss == w or c.name == w for c in CASES)]
    if unknown:
        raise ValueError(f"unknown loss {unknown}; known: {list(LOSSES)}")
    return [c for c in CASES if c.loss in wanted or c.name in wanted]


ProgressFn = Callable[[int, int, str], None]


def run(
    backends: Sequence[str] | None = None,
    losses: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Run the parity checks.

    Args:
      backends: framework names (``numpy``, ``torch``, ``tensorflow``, ``jax``,
        ``array_api_strict``); default: every installed one. A named backend that
        is not installed or fails to import is reported in ``broken``.
      losses: xent loss names (or ``loss/option``); default: all six.
      dtypes: dtype names; default: float32, float64, float16, bfloat16.
      progress: called as ``progress(done, total, label)`` after each step.

    Returns:
      A :class:`Report`; ``report.passed`` is False on any mismatch or broken backend.
    """
    explicit = backends is not None
    names = list(backends) if backends is not None else list(NAMES)  # (explicit)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown backend {unknown}; known: {list(NAMES)}")
    dts = list(dtypes) if dtypes else list(DTYPES)
    bad = [d for d in dts if d not in DTYPES]
    if bad:
        raise ValueError(f"unknown dtype {bad}; known: {list(DTYPES)}")
    cases = select(losses)
    missing = [n for n in names if not installed(n)]
    broken: dict[str, str] = {}
    if explicit:
        for n in missing:
            broken[n] = "not installed"
    fws: list[Framework] = []
    for n in names:
        if n in missing:
            continue
        try:
            fws.append(framework(n))
        except Exception as exc:  # noqa: BLE001 - a backend that cannot start is a failure
            broken[n] = f"{type(exc).__name__}: {exc}"
    tasks = [(c, d, fw) for c in cases for d in dts for fw in fws if d in fw.dtypes]
    native_of = {c: natives(c) for c in cases}
    checks: list[Check] = []
    for i, (case, dtype, fw) in enumerate(tasks):
        try:
            with fw.context():  # (JAX: float64 exists inside this block only)
                checks += run_one(case, dtype, fw, native_of[case])
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(case.loss, case.option, dtype, fw.name, "run", math.inf, math.inf,
                                math.inf, 0.0, False, f"{type(exc).__name__}: {exc}"))
        if progress:
            progress(i + 1, len(tasks), f"{case.name} {dtype} {fw.name}")
    return Report(checks, [fw.name for fw in fws], [] if explicit else missing, broken, dts, cases)
