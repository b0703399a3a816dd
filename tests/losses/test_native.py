"""Values and gradients against each framework's own native loss, where semantics match.

Both sides are float32 computations of the same quantity, each within the
tolerance table of the true value, so they may differ by twice that.
"""

from __future__ import annotations

import numpy as np
import pytest

import xent
from xent.testing import tolerance

N, C = 16, 7


def _close(a, b, num_classes=C, reduced=1, what=""):  # type: ignore[no-untyped-def]
    rtol, atol = tolerance("float32", num_classes, reduced)
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=2 * rtol, atol=2 * atol * 10, err_msg=what)


@pytest.fixture
def data():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    return {
        "z": (rng.normal(size=(N, C)) * 3).astype(np.float32),
        "z3": (rng.normal(size=(4, C, 5)) * 3).astype(np.float32),
        "y": rng.integers(0, C, size=N),
        "y3": rng.integers(0, C, size=(4, 5)),
        "soft": (lambda s: (s / s.sum(-1, keepdims=True)).astype(np.float32))(rng.random((N, C))),
        "cw": rng.uniform(0.5, 2, size=C).astype(np.float32),
        "bin": rng.random((N, C)).astype(np.float32),
        "pw": rng.uniform(0.5, 3, size=C).astype(np.float32),
        "probs": (lambda s: (s / s.sum(-1, keepdims=True)).astype(np.float32))(rng.random((N, C)) + 0.01),
    }


# ----------------------------------------------------------------------- torch
torch_cases = [
    ({}, {}),
    ({"class_weights": "cw"}, {"weight": "cw"}),
    ({"label_smoothing": 0.1}, {"label_smoothing": 0.1}),
    ({"class_weights": "cw", "label_smoothing": 0.2}, {"weight": "cw", "label_smoothing": 0.2}),
    ({"ignore_index": -100}, {"ignore_index": -100}),
    ({"ignore_index": 2, "class_weights": "cw", "label_smoothing": 0.1}, {"ignore_index": 2, "weight": "cw", "label_smoothing": 0.1}),
]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ours,theirs", torch_cases)
@pytest.mark.parametrize("three_d", [False, True])
def test_torch_cross_entropy(data, reduction, ours, theirs, three_d):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = torch.tensor(data["z3" if three_d else "z"], requires_grad=True)
    y = torch.tensor(data["y3" if three_d else "y"])
    if "ignore_index" in ours:
        y.view(-1)[::3] = ours["ignore_index"]
    ours = {k: torch.tensor(data[v]) if v == "cw" else v for k, v in ours.items()}
    theirs = {k: torch.tensor(data[v]) if v == "cw" else v for k, v in theirs.items()}
    got = xent.sparse_softmax_cross_entropy(z, y, axis=1, reduction=reduction, **ours)
    want = F.cross_entropy(z, y, reduction=reduction, **theirs)
    _close(got.detach(), want.detach(), reduced=y.numel())
    (g_got,) = torch.autograd.grad(got.sum(), z)
    (g_want,) = torch.autograd.grad(want.sum(), z)
    _close(g_got, g_want, what="grad")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_torch_cross_entropy_probability_targets(data, reduction):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    z = torch.tensor(data["z"], requires_grad=True)
    soft = torch.tensor(data["soft"], requires_grad=True)
    got = xent.softmax_cross_entropy(z, soft, label_smoothing=0.1, reduction=reduction)
    want = torch.nn.functional.cross_entropy(z, soft, label_smoothing=0.1, reduction=reduction)
    _close(got.detach(), want.detach(), reduced=N)
    g_got = torch.autograd.grad(got.sum(), (z, soft))
    g_want = torch.autograd.grad(want.sum(), (z, soft))
    for a, b in zip(g_got, g_want):
        _close(a, b, what="grad")


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("options", ["plain", "pos_weight", "weights", "both"])
def test_torch_bce_with_logits(data, reduction, options):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    z = torch.tensor(data["z"], requires_grad=True)
    y = torch.tensor(data["bin"], requires_grad=True)
    kw_ours, kw_theirs = {}, {}
    if options in ("pos_weight", "both"):
        kw_ours["pos_weight"] = kw_theirs["pos_weight"] = torch.tensor(data["pw"])
    if options in ("weights", "both"):
        # torch's `weight` is a per-element rescaling: xent's sample weights
        # (its mean differs: torch ÷ numel, xent ÷ Σ weights, hence no "mean" here)
        kw_ours["weights"] = kw_theirs["weight"] = torch.tensor(data["cw"])
    got = xent.sigmoid_cross_entropy(z, y, reduction=reduction, **kw_ours)
    want = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction=reduction, **kw_theirs)
    _close(got.detach(), want.detach(), 2, N * C)
    for a, b in zip(torch.autograd.grad(got.sum(), (z, y)), torch.autograd.grad(want.sum(), (z, y))):
        _close(a, b, 2, what="grad")


# ------------------------------------------------------------------ tensorflow
def _tf_grads(tf, fn, *xs):  # type: ignore[no-untyped-def]
    with tf.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        out = tf.reduce_sum(fn(*xs))
    return [g.numpy() for g in tape.gradient(out, list(xs))]


def test_tf_sparse(data):  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow")
    z, y = tf.constant(data["z"]), tf.constant(data["y"])
    got = xent.sparse_softmax_cross_entropy(z, y)
    want = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
    _close(got, want)
    _close(*_tf_grads(tf, lambda a: xent.sparse_softmax_cross_entropy(a, y), z),
           *_tf_grads(tf, lambda a: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=a), z))


@pytest.mark.parametrize("axis", [-1, 0])
def test_tf_dense(data, axis):  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow")
    # Labels that sum to 1 along the axis: TF's gradient is softmax - labels,
    # which is the true gradient, (Σ labels)·softmax - labels, only then.
    soft = data["soft"] if axis == -1 else data["soft"] / data["soft"].sum(0, keepdims=True)
    z, y = tf.constant(data["z"]), tf.constant(soft)
    ours = lambda a, b: xent.softmax_cross_entropy(a, b, axis=axis)  # noqa: E731
    theirs = lambda a, b: tf.nn.softmax_cross_entropy_with_logits(labels=b, logits=a, axis=axis)  # noqa: E731
    _close(ours(z, y), theirs(z, y))
    for a, b in zip(_tf_grads(tf, ours, z, y), _tf_grads(tf, theirs, z, y)):
        _close(a, b, what="grad")


@pytest.mark.parametrize("pos_weight", [False, True])
def test_tf_sigmoid(data, pos_weight):  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow")
    z, y, pw = tf.constant(data["z"]), tf.constant(data["bin"]), tf.constant(data["pw"])
    if pos_weight:
        ours = lambda a, b: xent.sigmoid_cross_entropy(a, b, pos_weight=pw)  # noqa: E731
        theirs = lambda a, b: tf.nn.weighted_cross_entropy_with_logits(labels=b, logits=a, pos_weight=pw)  # noqa: E731
    else:
        ours = lambda a, b: xent.sigmoid_cross_entropy(a, b)  # noqa: E731
        theirs = lambda a, b: tf.nn.sigmoid_cross_entropy_with_logits(labels=b, logits=a)  # noqa: E731
    _close(ours(z, y), theirs(z, y), 2)
    for a, b in zip(_tf_grads(tf, ours, z, y), _tf_grads(tf, theirs, z, y)):
        _close(a, b, 2, what="grad")


# ----------------------------------------------------------------------- optax
@pytest.mark.parametrize("axis", [-1, 1])
def test_optax_integer_labels(data, axis):  # type: ignore[no-untyped-def]
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    z = jax.numpy.asarray(data["z3"] if axis == 1 else data["z"])
    y = jax.numpy.asarray(data["y3"] if axis == 1 else data["y"])
    ours = lambda a: xent.sparse_softmax_cross_entropy(a, y, axis=axis)  # noqa: E731
    theirs = lambda a: optax.softmax_cross_entropy_with_integer_labels(a, y, axis=axis)  # noqa: E731
    _close(ours(z), theirs(z))
    _close(jax.grad(lambda a: ours(a).sum())(z), jax.grad(lambda a: theirs(a).sum())(z), what="grad")


def test_optax_dense_and_sigmoid(data):  # type: ignore[no-untyped-def]
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    z, soft, b = jnp.asarray(data["z"]), jnp.asarray(data["soft"]), jnp.asarray(data["bin"])
    pairs = [
        (lambda a, t: xent.softmax_cross_entropy(a, t), lambda a, t: optax.softmax_cross_entropy(a, t), soft, C),
        (lambda a, t: xent.sigmoid_cross_entropy(a, t), lambda a, t: optax.sigmoid_binary_cross_entropy(a, t), b, 2),
    ]
    for ours, theirs, t, c in pairs:
        _close(ours(z, t), theirs(z, t), c)
        g1 = jax.grad(lambda a, t: ours(a, t).sum(), argnums=(0, 1))(z, t)
        g2 = jax.grad(lambda a, t: theirs(a, t).sum(), argnums=(0, 1))(z, t)
        for x, y in zip(g1, g2):
            _close(x, y, c, what="grad")


# ----------------------------------------------------------------------- Keras
@pytest.mark.parametrize(
    "loss,smoothing",
    # Keras has no label smoothing for the sparse loss
    [("categorical", 0.0), ("categorical", 0.1), ("sparse_categorical", 0.0), ("binary", 0.0), ("binary", 0.1)],
)
def test_keras_probability_losses(fw, data, loss, smoothing):  # type: ignore[no-untyped-def]
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the documented Keras semantics are its TensorFlow backend's")
    probs = data["probs"].copy()
    probs[0, :3] = [0.0, 1.0, 0.0]  # exercise the clip
    if loss == "categorical":
        want = keras.losses.categorical_crossentropy(data["soft"], probs, label_smoothing=smoothing)
        got = xent.categorical_cross_entropy(fw.asarray(probs), fw.asarray(data["soft"]), label_smoothing=smoothing)
    elif loss == "sparse_categorical":
        want = keras.losses.sparse_categorical_crossentropy(data["y"], probs)
        got = xent.sparse_categorical_cross_entropy(fw.asarray(probs), data["y"])
    else:
        # Keras averages over the last axis: give it a trailing axis of 1.
        flat_p, flat_y = probs.reshape(-1, 1), data["bin"].reshape(-1, 1)
        want = np.asarray(keras.losses.binary_crossentropy(flat_y, flat_p, label_smoothing=smoothing)).reshape(N, C)
        got = xent.binary_cross_entropy(fw.asarray(probs), fw.asarray(data["bin"]), label_smoothing=smoothing)
    _close(fw.to_numpy(got), np.asarray(want))
