"""The dialects against the real frameworks' functions, on random inputs.

Each dialect runs on NumPy inputs and on another framework's arrays, and is
compared with the framework it imitates (never with xent itself).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from xent.compat import keras as kd
from xent.compat import optax as od
from xent.compat import tensorflow as tfd
from xent.compat import torch as F
from xent.testing import framework, installed, tolerance


def need(name: str):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    return framework(name)


def close(got, want, dtype="float64", num_classes=2, reduced=1):
    got_np = _np(got)
    want_np = _np(want)
    rtol, atol = tolerance(dtype, num_classes, reduced)
    np.testing.assert_allclose(got_np, want_np, rtol=2 * rtol, atol=2 * atol, equal_nan=True)


def _np(x):
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return np.asarray(x, dtype=np.float64)
    import xent

    name = xent.get_backend(x).name
    return np.asarray(framework("array_api_strict" if name == "array_api" else name).to_numpy(x), np.float64)


def via(name: str, *arrays, dtype="float64"):
    """The arrays in framework ``name`` (floats in ``dtype``)."""
    fw = need(name)
    return [fw.asarray(a, dtype if np.asarray(a).dtype.kind == "f" else None) for a in arrays]


rng = np.random.default_rng(1234)
N, C, D = 6, 5, 3
LOGITS = rng.normal(scale=2.0, size=(N, C))
LOGITS3 = rng.normal(scale=2.0, size=(N, C, D))  # torch layout: classes on dim 1
IDS = rng.integers(0, C, size=N)
IDS3 = rng.integers(0, C, size=(N, D))
SOFT = rng.dirichlet(np.ones(C), size=N)
CW = rng.uniform(0.5, 2.0, size=C)
BIN_Y = (rng.random((N, C)) < 0.5).astype(np.float64)
PROBS = rng.uniform(0.01, 0.99, size=(N, C))
SW = rng.uniform(0.0, 2.0, size=N)


# ---------------------------------------------------------------------- torch
@pytest.mark.parametrize("inputs_in", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"weight": CW}, {"label_smoothing": 0.2},
                                     {"weight": CW, "label_smoothing": 0.1, "ignore": True}])
def test_torch_cross_entropy_index_targets(inputs_in, reduction, options):
    torch = need("torch").torch
    opts = dict(options)
    ignore = opts.pop("ignore", False)
    target = IDS3.copy()
    if ignore:
        target[0, :] = -100
    z, t = via(inputs_in, LOGITS3, target)
    kw = {k: (via(inputs_in, v)[0] if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    got = F.cross_entropy(z, t, reduction=reduction, **kw)
    tkw = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    want = torch.nn.functional.cross_entropy(torch.as_tensor(LOGITS3), torch.as_tensor(target),
                                             reduction=reduction, **tkw)
    close(got, want, num_classes=C, reduced=N * D)


@pytest.mark.parametrize("inputs_in", ["numpy", "torch"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_torch_cross_entropy_probability_targets(inputs_in, reduction):
    torch = need("torch").torch
    z, y, w = via(inputs_in, LOGITS, SOFT, CW)
    got = F.cross_entropy(z, y, weight=w, label_smoothing=0.1, reduction=reduction)
    want = torch.nn.functional.cross_entropy(torch.as_tensor(LOGITS), torch.as_tensor(SOFT),
                                             weight=torch.as_tensor(CW), label_smoothing=0.1,
                                             reduction=reduction)
    close(got, want, num_classes=C, reduced=N)


def test_torch_quirks():
    torch = need("torch").torch
    ignored = np.full(N, -100)
    assert np.isnan(_np(F.cross_entropy(LOGITS, ignored)))
    assert np.isnan(torch.nn.functional.cross_entropy(torch.as_tensor(LOGITS), torch.as_tensor(ignored)).item())
    assert _np(F.cross_entropy(LOGITS, ignored, reduction="sum")) == 0
    # unbatched (C,) input: classes on dim 0
    close(F.cross_entropy(LOGITS[0], IDS[0]),
          torch.nn.functional.cross_entropy(torch.as_tensor(LOGITS[0]), torch.as_tensor(IDS[0])))
    # legacy arguments
    close(F.cross_entropy(LOGITS, IDS, size_average=False),
          torch.nn.functional.cross_entropy(torch.as_tensor(LOGITS), torch.as_tensor(IDS), reduction="sum"))
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        F.cross_entropy(LOGITS, SOFT, ignore_index=1)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(LOGITS, IDS, reduction="batchmean")


@pytest.mark.parametrize("inputs_in", ["numpy", "torch", "tensorflow"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_torch_binary_cross_entropy_with_logits(inputs_in, reduction):
    torch = need("torch").torch
    z, y, w, pw = via(inputs_in, LOGITS, BIN_Y, SW[:, None], CW)
    got = F.binary_cross_entropy_with_logits(z, y, weight=w, pos_weight=pw, reduction=reduction)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.as_tensor(LOGITS), torch.as_tensor(BIN_Y), weight=torch.as_tensor(SW[:, None]),
        pos_weight=torch.as_tensor(CW), reduction=reduction)
    close(got, want, reduced=N * C)


@pytest.mark.parametrize("inputs_in", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_torch_binary_cross_entropy(inputs_in, reduction):
    torch = need("torch").torch
    p = PROBS.copy()
    p[0, :3] = [0.0, 1.0, 1e-50]  # the log clamp at -100
    y = BIN_Y.copy()
    y[0, :3] = [1.0, 0.0, 1.0]
    pp, yy, w = via(inputs_in, p, y, SW[:, None])
    got = F.binary_cross_entropy(pp, yy, weight=w, reduction=reduction)
    want = torch.nn.functional.binary_cross_entropy(torch.as_tensor(p), torch.as_tensor(y),
                                                    weight=torch.as_tensor(SW[:, None]), reduction=reduction)
    close(got, want, reduced=N * C)


# -------------------------------------------------------------------- tf.nn
@pytest.mark.parametrize("inputs_in", ["numpy", "tensorflow", "torch"])
def test_tf_nn(inputs_in):
    tf = need("tensorflow").tf
    z, z3, y, ids, by, pw = via(inputs_in, LOGITS, LOGITS3, SOFT, IDS, BIN_Y, CW)
    close(tfd.softmax_cross_entropy_with_logits(labels=y, logits=z),
          tf.nn.softmax_cross_entropy_with_logits(labels=SOFT, logits=LOGITS), num_classes=C)
    soft3 = np.moveaxis(rng.dirichlet(np.ones(C), size=(N, D)), -1, 1)
    close(tfd.softmax_cross_entropy_with_logits(via(inputs_in, soft3)[0], z3, axis=1),  # positional: labels, logits
          tf.nn.softmax_cross_entropy_with_logits(soft3, LOGITS3, axis=1), num_classes=C)
    close(tfd.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=z),
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels=IDS, logits=LOGITS), num_classes=C)
    close(tfd.sigmoid_cross_entropy_with_logits(labels=by, logits=z),
          tf.nn.sigmoid_cross_entropy_with_logits(labels=BIN_Y, logits=LOGITS))
    close(tfd.weighted_cross_entropy_with_logits(labels=by, logits=z, pos_weight=pw),
          tf.nn.weighted_cross_entropy_with_logits(labels=BIN_Y, logits=LOGITS, pos_weight=CW))


# ---------------------------------------------------------------------- Keras
def keras_losses():
    need("tensorflow")
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("these comparisons use Keras' TensorFlow backend")
    import keras

    return keras.losses


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
def test_keras_categorical(from_logits, reduction):
    kl = keras_losses()
    pred = LOGITS if from_logits else PROBS
    for ours, theirs in [(kd.CategoricalCrossentropy, kl.CategoricalCrossentropy)]:
        got = ours(from_logits=from_logits, label_smoothing=0.1, reduction=reduction)(SOFT, pred, sample_weight=SW)
        want = theirs(from_logits=from_logits, label_smoothing=0.1, reduction=reduction, dtype="float64")(
            SOFT, pred, sample_weight=SW)
        close(got, want, num_classes=C, reduced=N)
    close(kd.categorical_crossentropy(SOFT, pred, from_logits=from_logits),
          kl.categorical_crossentropy(SOFT, pred, from_logits=from_logits), num_classes=C)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
@pytest.mark.parametrize("labels_as", ["ids", "column", "float"])
def test_keras_sparse(from_logits, reduction, labels_as):
    kl = keras_losses()
    pred = LOGITS if from_logits else PROBS
    ids = IDS.copy()
    ids[1] = -1
    y = {"ids": ids, "column": ids[:, None], "float": ids.astype(np.float64) + 0.3}[labels_as]
    y_keras = ids if labels_as == "float" else y  # Keras truncates toward zero; -0.7 -> 0 there
    if labels_as == "float":
        y = np.where(ids >= 0, ids + 0.3, -1.0)
    got = kd.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=-1, reduction=reduction)(
        y, pred, sample_weight=SW)
    want = kl.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=-1, reduction=reduction,
                                            dtype="float64")(y_keras, pred, sample_weight=SW)
    close(got, want, num_classes=C, reduced=N)


def test_keras_sparse_all_ignored_and_functional():
    kl = keras_losses()
    ignored = np.full(N, 7)
    assert _np(kd.SparseCategoricalCrossentropy(ignore_class=7)(ignored, PROBS)) == 0
    close(kd.sparse_categorical_crossentropy(IDS, PROBS), kl.sparse_categorical_crossentropy(IDS, PROBS),
          num_classes=C)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_keras_binary(from_logits, reduction):
    kl = keras_losses()
    pred = LOGITS if from_logits else PROBS
    got = kd.BinaryCrossentropy(from_logits=from_logits, label_smoothing=0.1, reduction=reduction)(
        BIN_Y, pred, sample_weight=SW)
    want = kl.BinaryCrossentropy(from_logits=from_logits, label_smoothing=0.1, reduction=reduction,
                                 dtype="float64")(BIN_Y, pred, sample_weight=SW)
    close(got, want, reduced=N * C)
    close(kd.binary_crossentropy(BIN_Y, pred, from_logits=from_logits),
          kl.binary_crossentropy(BIN_Y, pred, from_logits=from_logits))


def test_keras_dialect_runs_on_torch_tensors():
    kl = keras_losses()
    z, y = via("torch", LOGITS, IDS)
    got = kd.SparseCategoricalCrossentropy(from_logits=True)(y, z)
    assert type(got).__module__.startswith("torch")
    close(got, kl.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(IDS, LOGITS),
          num_classes=C, reduced=N)


def test_keras_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        kd.CategoricalCrossentropy(reduction="auto")


# ---------------------------------------------------------------------- optax
@pytest.mark.parametrize("inputs_in", ["numpy", "jax", "torch"])
def test_optax(inputs_in):
    fw = need("jax")
    import optax

    jnp = fw.jnp
    where = rng.random(N) < 0.7
    z, y, ids, by, w = via(inputs_in, LOGITS, SOFT, IDS, BIN_Y, where)
    close(od.softmax_cross_entropy(z, y), optax.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(SOFT)),
          num_classes=C)
    close(od.softmax_cross_entropy(z, y, where=w),
          optax.softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(SOFT), where=jnp.asarray(where)),
          num_classes=C)
    close(od.softmax_cross_entropy_with_integer_labels(z, ids, where=w),
          optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(LOGITS), jnp.asarray(IDS),
                                                          where=jnp.asarray(where)), num_classes=C)
    zt, idt = via(inputs_in, LOGITS.T.copy(), IDS)
    close(od.softmax_cross_entropy_with_integer_labels(zt, idt, axis=0),
          optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(LOGITS.T), jnp.asarray(IDS), axis=0),
          num_classes=C)
    close(od.sigmoid_binary_cross_entropy(z, by),
          optax.sigmoid_binary_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(BIN_Y)))
    close(od.smooth_labels(y, 0.2), optax.smooth_labels(jnp.asarray(SOFT), 0.2))
    masked = LOGITS.copy()
    masked[0, 0] = -np.inf
    onehot = np.eye(C)[np.where(IDS == 0, 1, IDS)]
    close(od.safe_softmax_cross_entropy(masked, onehot),
          optax.safe_softmax_cross_entropy(jnp.asarray(masked), jnp.asarray(onehot)), num_classes=C)


def test_dialects_import_no_framework():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from xent.compat import torch, keras, tensorflow, optax; "
            "torch.cross_entropy(np.zeros((2, 3)), np.array([0, 1])); "
            "print([m for m in ('torch', 'tensorflow', 'jax', 'keras', 'optax') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
