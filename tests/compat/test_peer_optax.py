"""optax's own tests of its cross-entropies, run against ``xent.compat.optax``.

optax ships its tests inside the package (``optax/losses/_classification_test.py``,
``optax/losses/_smoothing_test.py``). They call the losses as
``_classification.<name>`` / ``_smoothing.smooth_labels``; here those module
globals are replaced by the dialect's functions and every test method runs as a
pytest parameter (``tests/compat/peer_suites/bridge.py``). Tests of losses that are not
cross-entropies (hinge, sparsemax, CTC) are skipped with the reason;
a case that trips over a deliberate difference of the dialect is a strict
``xfail`` naming it (and ``docs/porting.md`` lists it).
"""

from __future__ import annotations

import unittest

import numpy as np
import pytest

from tests.compat.peer_suites.bridge import cases, namespace, require_backend, run_case
from xent.compat import optax as od

require_backend("jax")  # optax's tests and the reference values run on JAX
pytest.importorskip("optax")
pytest.importorskip("absl.testing.parameterized")
classification_test = pytest.importorskip("optax.losses._classification_test")
smoothing_test = pytest.importorskip("optax.losses._smoothing_test")

DIALECT = namespace(
    softmax_cross_entropy=od.softmax_cross_entropy,
    safe_softmax_cross_entropy=od.safe_softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels=od.softmax_cross_entropy_with_integer_labels,
    sigmoid_binary_cross_entropy=od.sigmoid_binary_cross_entropy,
    poly_loss_cross_entropy=od.poly_loss_cross_entropy,
    sigmoid_focal_loss=od.sigmoid_focal_loss,
    kl_divergence=od.kl_divergence,
    kl_divergence_with_log_targets=od.kl_divergence_with_log_targets,
    generalized_kl_divergence=od.generalized_kl_divergence,
    convex_kl_divergence=od.convex_kl_divergence,
)
SMOOTHING = namespace(smooth_labels=od.smooth_labels)

OUT_OF_SCOPE = {
    "HingeTest": "hinge losses are not cross-entropies",
    "PerceptronTest": "perceptron losses are not cross-entropies",
    "SparsemaxTest": "sparsemax losses are not cross-entropies",
    "CTCTest": "CTC is a sequence loss, not provided",
}

XFAILS: dict[str, str] = {}


def _classes(module):
    return [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, unittest.TestCase)
            and v.__module__ == module.__name__]


@pytest.mark.parametrize("case", cases(_classes(classification_test), OUT_OF_SCOPE, XFAILS))
def test_optax_classification_suite(case, monkeypatch):
    run_case(case, classification_test, {"_classification": DIALECT}, monkeypatch)


@pytest.mark.parametrize("case", cases(_classes(smoothing_test), {}, {}))
def test_optax_smoothing_suite(case, monkeypatch):
    run_case(case, smoothing_test, {"_smoothing": SMOOTHING}, monkeypatch)


# ------------------------------------------------------------------ unit tests
# Each new behaviour of the dialect against optax's own function (never xent against itself).
rng = np.random.default_rng(20261202)
Z = rng.normal(scale=2.0, size=(3, 4, 5))
Y = rng.dirichlet(np.ones(5), size=(3, 4))
IDS = rng.integers(0, 5, size=(3, 4))
W_ROWS = rng.random((3, 4)) < 0.6
W_LOGITS = rng.random((3, 4, 5)) < 0.6
W_LOGITS[0, 0] = False  # an entry with no class left: loss 0
W_CLASSES = rng.random((1, 1, 5)) < 0.6  # broadcasts to the logits' shape
W_CLASSES[..., 0] = True


def optax_losses():
    return pytest.importorskip("optax").losses


def jnp():
    import jax.numpy

    return jax.numpy


def check(got, want, fw=None):
    got = fw.to_numpy(got) if fw is not None else np.asarray(got)
    np.testing.assert_allclose(got, np.asarray(want), rtol=2e-5, atol=2e-5)


def test_losses_namespace_mirrors_optax_losses():
    ol = optax_losses()
    for name in ("softmax_cross_entropy", "safe_softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
                 "sigmoid_binary_cross_entropy", "poly_loss_cross_entropy", "smooth_labels"):
        assert getattr(od.losses, name) is getattr(od, name)
        assert hasattr(ol, name), name  # the same name exists in optax.losses
    check(od.losses.softmax_cross_entropy(Z, Y), ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(Y)))


@pytest.mark.parametrize("mask", ["rows", "logits", "classes"])
def test_where_dense_and_poly(fw, mask):
    ol = optax_losses()
    w = {"rows": W_ROWS, "logits": W_LOGITS, "classes": W_CLASSES}[mask]
    z, y, ww = fw.asarray(Z, "float64"), fw.asarray(Y, "float64"), fw.asarray(w)
    want = ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(Y), where=jnp().asarray(w))
    check(od.softmax_cross_entropy(z, y, where=ww), want, fw)
    if mask != "rows":  # optax's poly_loss does not insert the class axis into a loss-shaped where
        want = ol.poly_loss_cross_entropy(jnp().asarray(Z), jnp().asarray(Y), epsilon=1.5, where=jnp().asarray(w))
        check(od.poly_loss_cross_entropy(z, y, epsilon=1.5, where=ww), want, fw)


@pytest.mark.parametrize("mask", ["rows", "logits", "classes"])
def test_where_integer_labels(fw, mask):
    ol = optax_losses()
    w = {"rows": W_ROWS, "logits": W_LOGITS, "classes": W_CLASSES}[mask]
    ids = IDS.copy()
    full = np.broadcast_to(w if w.ndim == 3 else w[..., None], Z.shape)
    kept = full.any(-1)
    # labels on kept classes (a masked labelled class is a deliberate difference, tested below)
    for idx in zip(*np.nonzero(kept)):
        if not full[idx][ids[idx]]:
            ids[idx] = int(np.flatnonzero(full[idx])[0])
    z, t, ww = fw.asarray(Z, "float64"), fw.asarray(ids), fw.asarray(w)
    want = ol.softmax_cross_entropy_with_integer_labels(jnp().asarray(Z), jnp().asarray(ids), where=jnp().asarray(w))
    check(od.softmax_cross_entropy_with_integer_labels(z, t, where=ww), want, fw)


def test_where_masking_the_labelled_class_is_inf_not_optax_value():
    ol = optax_losses()
    z, ids = Z[0, :2], np.array([1, 2])
    w = np.array([[True, False, True, True, True], [True, True, True, True, True]])
    got = np.asarray(od.softmax_cross_entropy_with_integer_labels(z, ids, where=w))
    want = np.asarray(ol.softmax_cross_entropy_with_integer_labels(jnp().asarray(z), jnp().asarray(ids),
                                                                   where=jnp().asarray(w)))
    assert got[0] == np.inf and np.isfinite(want[0])  # the documented difference
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)


@pytest.mark.parametrize("axis", [(1, 2), (2, 1), (0, 2), (-1, 0), None])
def test_tuple_axis_dense(fw, axis):
    ol = optax_losses()
    y = rng.dirichlet(np.ones(60), size=()).reshape(Z.shape) if axis is None else Y.reshape(3, 4, 5)
    z, yy = fw.asarray(Z, "float64"), fw.asarray(y, "float64")
    check(od.softmax_cross_entropy(z, yy, axis=axis),
          ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(y), axis=axis), fw)


@pytest.mark.parametrize("axis", [(1, 2), (2, 1), (0, 2), (-1, -3)])
def test_tuple_axis_integer_labels(fw, axis):
    ol = optax_losses()
    canon = tuple(a % 3 for a in axis)
    n = int(np.prod([Z.shape[a] for a in canon]))
    ids = rng.integers(0, n, size=[Z.shape[i] for i in range(3) if i not in canon])
    z, t = fw.asarray(Z, "float64"), fw.asarray(ids)
    check(od.softmax_cross_entropy_with_integer_labels(z, t, axis=axis),
          ol.softmax_cross_entropy_with_integer_labels(jnp().asarray(Z), jnp().asarray(ids), axis=axis), fw)
    w = rng.random(Z.shape) < 0.7
    w[..., 0] = True
    # with a per-logit where, on labels whose class is kept
    flat_w = np.moveaxis(w, canon, range(3 - len(canon), 3)).reshape(ids.shape + (n,))
    ids = np.where(np.take_along_axis(flat_w, ids[..., None], -1)[..., 0], ids,
                   np.argmax(flat_w, -1))
    check(od.softmax_cross_entropy_with_integer_labels(z, fw.asarray(ids), axis=axis, where=fw.asarray(w)),
          ol.softmax_cross_entropy_with_integer_labels(jnp().asarray(Z), jnp().asarray(ids), axis=axis,
                                                       where=jnp().asarray(w)), fw)


def test_bad_where_is_named_where():
    ol = optax_losses()
    bad = np.ones((2, 4), dtype=bool)  # the loss shape is (3, 4)
    with pytest.raises(Exception):  # optax refuses it too
        ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(Y), where=jnp().asarray(bad))
    for fn, labels in [(od.softmax_cross_entropy, Y), (od.softmax_cross_entropy_with_integer_labels, IDS),
                       (od.poly_loss_cross_entropy, Y)]:
        with pytest.raises(ValueError, match=r"^where") as info:
            fn(Z, labels, where=bad)
        assert "weights" not in str(info.value)
    with pytest.raises(ValueError, match=r"^where"):
        od.softmax_cross_entropy(Z, Y, where=np.ones((5,), dtype=bool))  # neither rank
    ints = W_ROWS.astype(np.int32)
    with pytest.raises(ValueError, match="boolean"):  # optax (JAX) refuses a non-boolean mask
        ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(Y), where=jnp().asarray(ints))
    with pytest.raises(ValueError, match=r"^where must be None or a boolean array"):
        od.softmax_cross_entropy(Z, Y, where=ints)


@pytest.mark.parametrize("options", [{}, {"axis": (0, 2)}, {"where": "mask"}, {"axis": None}])
def test_smooth_labels(options):
    ol = optax_losses()
    opts = dict(options)
    if opts.get("where") == "mask":
        opts["where"] = W_CLASSES
    jopts = {k: (jnp().asarray(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    check(od.smooth_labels(Y, 0.2, **opts), ol.smooth_labels(jnp().asarray(Y), 0.2, **jopts))


def test_poly_loss(fw):
    ol = optax_losses()
    for eps, axis in [(2.0, -1), (-1.0, 1), (0.5, (0, 2))]:
        z, y = fw.asarray(Z, "float64"), fw.asarray(Y, "float64")
        check(od.poly_loss_cross_entropy(z, y, epsilon=eps, axis=axis),
              ol.poly_loss_cross_entropy(jnp().asarray(Z), jnp().asarray(Y), epsilon=eps, axis=axis), fw)


def test_host_logits_with_jax_labels_and_where():
    import jax

    ol = optax_losses()
    got = od.softmax_cross_entropy(Z, jnp().asarray(Y))
    assert isinstance(got, jax.Array)
    check(got, ol.softmax_cross_entropy(jnp().asarray(Z), jnp().asarray(Y)))
    got = od.softmax_cross_entropy_with_integer_labels(Z, IDS, where=jnp().asarray(W_ROWS))
    assert isinstance(got, jax.Array)
    check(got, ol.softmax_cross_entropy_with_integer_labels(jnp().asarray(Z), jnp().asarray(IDS),
                                                            where=jnp().asarray(W_ROWS)))


def test_jit_and_grad_with_where_match_optax():
    import jax

    ol = optax_losses()
    z, y, w = jnp().asarray(Z), jnp().asarray(Y), jnp().asarray(W_LOGITS)

    def total(fn):
        return lambda z: fn(z, y, where=w).sum()

    check(jax.jit(total(od.softmax_cross_entropy))(z), total(ol.softmax_cross_entropy)(z))
    got = jax.grad(total(od.softmax_cross_entropy))(z)
    assert bool(jax.numpy.isfinite(got).all())
    check(got, jax.grad(total(ol.softmax_cross_entropy))(z))


def test_inputs_not_modified():
    z, y, ids, w = Z.copy(), Y.copy(), IDS.copy(), W_LOGITS.copy()
    od.softmax_cross_entropy(z, y, axis=(1, 2), where=w)
    od.softmax_cross_entropy_with_integer_labels(z, ids, where=w)
    od.poly_loss_cross_entropy(z, y, where=w)
    od.smooth_labels(y, 0.1, where=w)
    for a, b in [(z, Z), (y, Y), (ids, IDS), (w, W_LOGITS)]:
        np.testing.assert_array_equal(a, b)


def test_empty_class_axis_like_optax():
    """``preds[mask]`` with a mask that keeps nothing (optax's own test_mask
    draws such masks at random): optax's loss over no classes is 0."""
    optax = pytest.importorskip("optax")
    from xent.compat import optax as od

    z, y = np.zeros((0,), np.float32), np.zeros((0,), np.float32)
    for ours, theirs in [(od.softmax_cross_entropy, optax.losses.softmax_cross_entropy),
                         (od.poly_loss_cross_entropy, optax.losses.poly_loss_cross_entropy)]:
        np.testing.assert_array_equal(np.asarray(ours(z, y)), np.asarray(theirs(z, y)))
        np.testing.assert_array_equal(np.asarray(ours(z[None], y[None])), np.asarray(theirs(z[None], y[None])))
