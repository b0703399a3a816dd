"""xent.compat.keras as real Keras 3 losses, against Keras' own and a float64 formula.

* Per Keras backend (tensorflow, jax, torch), one fresh process
  (``tests/compat/peer_keras/fit_check.py``): ``fit`` with Keras' loss and with the
  dialect's from the same weights (equal history and weights; also a sequence
  model with an unknown time dimension, ignored labels and (N, T) weights),
  ``model.save`` / ``keras.models.load_model``, ``XentLoss``, ``mixed_bfloat16``.
* In this process, on Keras' TensorFlow backend: configs, serialisation,
  every reduction and dtype against Keras' own classes on Keras tensors, the
  SyntaxWarning, and ``XentLoss`` against a float64 NumPy formula.
* Without Keras: the plain classes (a process where ``import keras`` fails).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from xent.compat import keras as kd
from xent.testing import installed

ROOT = Path(__file__).resolve().parents[2]
HAS_KERAS = importlib.util.find_spec("keras") is not None


def _subprocess(code_or_file: list[str], env_extra: dict[str, str], timeout: int = 900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    return subprocess.run([sys.executable, *code_or_file], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# ------------------------------------------------ one process per backend
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_fit_save_load_mixed_precision(backend, tmp_path):
    if not HAS_KERAS:
        pytest.skip("keras is not installed")
    if not installed(backend):
        pytest.skip(f"{backend} is not installed")
    proc = _subprocess([str(ROOT / "tests" / "compat" / "peer_keras" / "fit_check.py"), str(tmp_path)],
                       {"KERAS_BACKEND": backend})
    assert proc.returncode == 0 and f"ALL OK {backend}" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-8000:]
    if backend == "tensorflow":
        # a fresh process loads them: importing the dialect after Keras registers the classes
        code = ("import sys, keras, xent.compat.keras as kd; "
                "print([type(keras.models.load_model(p).loss).__name__ for p in sys.argv[1:]])")
        paths = sorted(str(p) for p in tmp_path.glob("tensorflow-*.keras"))
        proc = _subprocess(["-c", code, *paths], {"KERAS_BACKEND": backend})
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert proc.stdout.strip() == str([Path(p).stem.split("-")[1] for p in paths])


def test_without_keras_the_plain_classes():
    code = """
import sys
sys.modules["keras"] = None  # as if Keras were not installed
import numpy as np
from xent.compat import keras as kd
loss = kd.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
z = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
print(type(loss).__mro__[1].__name__, round(float(loss(np.array([0, -1]), z)), 6))
print(kd.CategoricalCrossentropy.from_config(kd.CategoricalCrossentropy(axis=1).get_config()).axis)
try:
    kd.XentLoss
except ImportError as e:
    print("ImportError", "keras" in str(e).lower())
"""
    proc = _subprocess(["-c", code], {})
    assert proc.returncode == 0, proc.stderr[-4000:]
    # -log_softmax([2, .5, 1])[0] = 0.464369, the one kept entry
    assert proc.stdout.split() == ["_Dialect", "0.464369", "1", "ImportError", "True"]


# -------------------------------------- in process: Keras' TensorFlow backend
def keras_tf():
    if not HAS_KERAS:
        pytest.skip("keras is not installed")
    if not installed("tensorflow"):
        pytest.skip("tensorflow is not installed")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("these comparisons use Keras' TensorFlow backend in this process")
    import keras

    return keras


rng = np.random.default_rng(7)
N, C = 6, 5
LOGITS = rng.normal(scale=2.0, size=(N, C))
PROBS = rng.dirichlet(np.ones(C), size=N)
IDS = rng.integers(0, C, size=N)
SOFT = rng.dirichlet(np.ones(C), size=N)
BIN_Y = (rng.random((N, C)) < 0.5).astype(np.float64)
SIG = 1 / (1 + np.exp(-LOGITS))
SW = rng.uniform(0.2, 2.0, size=N)
REDUCTIONS = ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None]
TOL = {"float32": 2e-6, "float64": 1e-12, "bfloat16": 3e-2}


def _cases():
    ids_ignored = IDS.copy()
    ids_ignored[[1, 4]] = -1
    return {
        "categorical": (lambda m, **k: m.CategoricalCrossentropy(label_smoothing=0.1, **k), SOFT, PROBS),
        "categorical_logits": (lambda m, **k: m.CategoricalCrossentropy(from_logits=True, **k), SOFT, LOGITS),
        "sparse": (lambda m, **k: m.SparseCategoricalCrossentropy(**k), IDS[:, None], PROBS),
        "sparse_ignore_logits": (lambda m, **k: m.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1,
                                                                                 **k), ids_ignored, LOGITS),
        "binary": (lambda m, **k: m.BinaryCrossentropy(label_smoothing=0.2, **k), BIN_Y, SIG),
        "binary_logits": (lambda m, **k: m.BinaryCrossentropy(from_logits=True, **k), BIN_Y, LOGITS),
        "binary_focal": (lambda m, **k: m.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=1.5,
                                                                  label_smoothing=0.1, **k), BIN_Y, SIG),
        "binary_focal_logits": (lambda m, **k: m.BinaryFocalCrossentropy(from_logits=True, **k), BIN_Y, LOGITS),
        "categorical_focal": (lambda m, **k: m.CategoricalFocalCrossentropy(label_smoothing=0.1, **k), SOFT, PROBS),
        "categorical_focal_logits": (lambda m, **k: m.CategoricalFocalCrossentropy(from_logits=True, alpha=0.5,
                                                                                   gamma=0.5, **k), SOFT, LOGITS),
    }


def _dtype_name(keras, x) -> str:
    return keras.backend.standardize_dtype(x.dtype)


@pytest.mark.parametrize("case", list(_cases()))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [None, "float64", "bfloat16", "mixed_bfloat16_policy"])
def test_reduction_and_dtype_like_keras(case, reduction, dtype):
    keras = keras_tf()
    import tensorflow as tf

    make, y, pred = _cases()[case]
    dt = keras.DTypePolicy("mixed_bfloat16") if dtype == "mixed_bfloat16_policy" else dtype
    ours, theirs = make(kd, reduction=reduction, dtype=dt), make(keras.losses, reduction=reduction, dtype=dt)
    # Keras tensors in (the model's float32 outputs), a sample weight per sample
    args = (tf.constant(y), tf.constant(pred, tf.float32))
    got, want = ours(*args, sample_weight=SW), theirs(*args, sample_weight=SW)
    assert _dtype_name(keras, got) == _dtype_name(keras, want)
    tol = TOL[_dtype_name(keras, want)]
    np.testing.assert_allclose(np.asarray(tf.cast(got, tf.float64)), np.asarray(tf.cast(want, tf.float64)),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("case", list(_cases()))
def test_numpy_inputs_keep_their_dtype(case):
    """The documented difference: NumPy in, dtype=None: NumPy out, in the inputs' dtype."""
    keras = keras_tf()
    make, y, pred = _cases()[case]
    got = make(kd)(y, pred, sample_weight=SW)
    want = make(keras.losses, dtype="float64")(y, pred, sample_weight=SW)
    assert isinstance(got, (np.ndarray, np.generic)) and got.dtype == np.float64
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12)


@pytest.mark.parametrize("case", list(_cases()))
def test_config_and_serialisation(case):
    keras = keras_tf()
    make, _, _ = _cases()[case]
    for kwargs in [{}, {"name": "my_loss", "reduction": "sum"}]:
        ours, theirs = make(kd, **kwargs), make(keras.losses, **kwargs)
        assert isinstance(ours, keras.losses.Loss)
        config = ours.get_config()
        want = theirs.get_config()
        assert {k: config[k] for k in want} == want
        extra = set(config) - set(want)
        assert extra <= {"axis"}, extra  # Keras' SparseCategoricalCrossentropy omits its axis
        again = type(ours).from_config(config)
        assert type(again) is type(ours) and again.get_config() == config
        blob = keras.saving.serialize_keras_object(ours)
        assert blob["registered_name"] == f"xent>{type(ours).__name__}"
        back = keras.saving.deserialize_keras_object(blob)
        assert type(back) is type(ours) and back.get_config() == config
    # an explicit dtype is kept (Keras' own config drops it)
    for dtype in ["bfloat16", keras.DTypePolicy("mixed_bfloat16")]:
        ours = make(kd, dtype=dtype)
        back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
        assert back.dtype == ours.dtype == "bfloat16"
        assert back.get_config()["dtype"] == ours.get_config()["dtype"]


def test_registered_and_lazy():
    keras = keras_tf()
    for name in kd.LAZY:
        cls = getattr(kd, name)
        assert cls is getattr(kd.losses, name) and issubclass(cls, keras.losses.Loss)
        assert keras.saving.get_registered_object(f"xent>{name}") is cls
        assert cls.__module__ == "xent.compat.keras" and cls.__qualname__ == name
        assert cls.__doc__ and "Args:" in cls.__doc__
    assert "XentLoss" in dir(kd)
    with pytest.raises(AttributeError):
        kd.NoSuchLoss  # noqa: B018


def test_rejects_unknown_reduction_like_keras():
    keras = keras_tf()
    with pytest.raises(ValueError, match="reduction"):
        keras.losses.CategoricalCrossentropy(reduction="auto")
    with pytest.raises(ValueError, match="reduction"):
        kd.CategoricalCrossentropy(reduction="auto")


@pytest.mark.parametrize("inputs", ["numpy", "tensorflow"])
def test_syntax_warning_like_keras(inputs):
    keras = keras_tf()
    import tensorflow as tf

    y = np.ones((3, 1), np.float32)
    args = (y, y) if inputs == "numpy" else (tf.constant(y), tf.constant(y))
    messages = []
    for loss in (kd.CategoricalCrossentropy(), keras.losses.CategoricalCrossentropy()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss(*args)
        found = [w for w in caught if w.category is SyntaxWarning]
        assert len(found) == 1, [str(w.message) for w in caught]
        messages.append(str(found[0].message))
    assert messages[0] == messages[1]
    with warnings.catch_warnings(record=True) as caught:  # the sparse and binary losses do not warn
        warnings.simplefilter("always")
        kd.BinaryCrossentropy()(*args)
        kd.SparseCategoricalCrossentropy()(np.zeros(3), np.ones((3, 1), np.float32))
    assert not [w for w in caught if w.category is SyntaxWarning]


# ------------------------------------------------------------- XentLoss
def _ref_sparse(z, y, ignore, sw, reduction, class_weights=None, z_loss=0.0):
    """Keras' reductions of xent's per-entry loss, in float64 NumPy."""
    z = np.asarray(z, np.float64)
    keep = y != ignore
    safe = np.where(keep, y, 0)
    m = z.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0]
    nll = lse - z[np.arange(len(z)), safe]
    if class_weights is not None:
        nll = nll * np.asarray(class_weights)[safe]
    nll = np.where(keep, nll + z_loss * lse**2, 0.0)
    w = np.ones_like(nll) if sw is None else sw
    if reduction in ("none", None):
        return nll * w
    if reduction == "sum":
        return (nll * w).sum()
    if reduction in ("sum_over_batch_size", "mean"):
        return (nll * w).sum() / keep.sum() if keep.any() else 0.0
    return (nll * w).sum() / (w * keep).sum() if keep.any() else 0.0  # mean_with_sample_weight


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_sw", [False, True])
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-2}, {"class_weights": [0.5, 1.0, 2.0, 1.5, 0.25]}])
def test_xent_loss_sparse_ignore_index_against_float64(reduction, with_sw, options):
    keras = keras_tf()
    import tensorflow as tf

    y = IDS.copy()
    y[[0, 3]] = -100
    sw = SW if with_sw else None
    loss = kd.XentLoss("sparse_softmax_cross_entropy", ignore_index=-100, reduction=reduction, dtype="float64",
                       **options)
    got = loss(tf.constant(y), tf.constant(LOGITS), sample_weight=sw)
    assert _dtype_name(keras, got) == "float64"
    want = _ref_sparse(LOGITS, y, -100, sw, reduction, options.get("class_weights"), options.get("z_loss", 0.0))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-14)


def test_xent_loss_mean_is_xents_mean():
    """Without sample or class weights, "sum_over_batch_size" is xent's own "mean"
    (the mean over the kept entries), and 0 when every entry is ignored."""
    keras = keras_tf()
    import xent

    y = IDS.copy()
    y[[0, 3]] = -100
    got = kd.XentLoss("sparse_softmax_cross_entropy", ignore_index=-100, dtype="float64")(y, LOGITS)
    np.testing.assert_allclose(np.asarray(got), _ref_sparse(LOGITS, y, -100, None, "mean"), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(got), xent.sparse_softmax_cross_entropy(LOGITS, y, ignore_index=-100, reduction="mean"),
        rtol=1e-12)
    all_ignored = kd.XentLoss(ignore_index=-100)(np.full(N, -100), LOGITS.astype(np.float32))
    assert float(all_ignored) == 0.0 and _dtype_name(keras, all_ignored) == "float32"


def test_xent_loss_other_losses_against_keras():
    keras = keras_tf()
    for ours, theirs, y, pred in [
        (kd.XentLoss("softmax_cross_entropy", label_smoothing=0.1),
         keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), SOFT, LOGITS),
        (kd.XentLoss(xent_fn("categorical_cross_entropy")), keras.losses.CategoricalCrossentropy(), SOFT, PROBS),
        (kd.XentLoss("sparse_categorical_cross_entropy"), keras.losses.SparseCategoricalCrossentropy(),
         IDS[:, None], PROBS),
        # elementwise: Keras' binary loss means over the last axis, then over the batch: the same mean
        (kd.XentLoss("sigmoid_cross_entropy", reduction="sum_over_batch_size"),
         keras.losses.BinaryCrossentropy(from_logits=True), BIN_Y, LOGITS),
        (kd.XentLoss("binary_cross_entropy"), keras.losses.BinaryCrossentropy(), BIN_Y, SIG),
    ]:
        # (N, 1) sample weights: they broadcast over the elementwise losses' (N, C) too
        got, want = ours(y, pred, sample_weight=SW[:, None]), theirs(y, pred, sample_weight=SW[:, None])
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6, err_msg=repr(ours))


def xent_fn(name):
    import xent

    return getattr(xent, name)


def test_xent_loss_int_labels_survive_a_bfloat16_policy():
    """Class ids keep their integer dtype (Keras casts labels to the loss dtype:
    bfloat16 holds 256 but not 257)."""
    keras = keras_tf()
    import tensorflow as tf

    z = rng.normal(size=(4, 300)).astype(np.float32)
    y = np.array([257, 3, 299, 100])
    loss = kd.XentLoss("sparse_softmax_cross_entropy", reduction="none",
                       dtype=keras.DTypePolicy("mixed_bfloat16"))
    got = loss(tf.constant(y), tf.constant(z))
    assert _dtype_name(keras, got) == "bfloat16"
    z16 = np.asarray(tf.cast(tf.cast(z, tf.bfloat16), tf.float64))
    want = _ref_sparse(z16, y, None, None, "none")
    np.testing.assert_allclose(np.asarray(tf.cast(got, tf.float64)), want, rtol=1e-2)


def test_xent_loss_config_and_errors():
    keras = keras_tf()
    import xent

    loss = kd.XentLoss(xent.sparse_softmax_cross_entropy, ignore_index=-1, z_loss=1e-4,
                       class_weights=np.array([1.0, 2.0, 3.0]), axis=-1, name="lm")
    config = loss.get_config()
    assert config == {"name": "lm", "reduction": "sum_over_batch_size", "loss": "sparse_softmax_cross_entropy",
                      "ignore_index": -1, "z_loss": 1e-4, "class_weights": [1.0, 2.0, 3.0], "axis": -1}
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(back) is kd.XentLoss and back.get_config() == config
    assert kd.XentLoss().get_config()["loss"] == "sparse_softmax_cross_entropy"
    with pytest.raises(ValueError, match="one of xent's losses"):
        kd.XentLoss("cross_entropy")
    with pytest.raises(ValueError, match="one of xent's losses"):
        kd.XentLoss(np.mean)
    with pytest.raises(TypeError, match="Keras applies sample_weight"):
        kd.XentLoss("softmax_cross_entropy", weights=[1.0])
    with pytest.raises(TypeError, match="unexpected option 'ignore_index'"):
        kd.XentLoss("softmax_cross_entropy", ignore_index=0)
    with pytest.raises(ValueError, match="reduction"):
        kd.XentLoss(reduction="batchmean")


def test_plain_classes_against_keras():
    """The keras-free classes (what ``xent.compat.keras`` gives without Keras)."""
    keras = keras_tf()
    plain = kd._define(kd._PlainLoss, "")
    for name, (make, y, pred) in _cases().items():
        for reduction in REDUCTIONS:
            got = make(type("M", (), plain), reduction=reduction)(y, pred, sample_weight=SW)
            want = make(keras.losses, reduction=reduction, dtype="float64")(y, pred, sample_weight=SW)
            np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, err_msg=f"{name} {reduction}")


def test_class_docstring_examples():
    """The classes are built on first use, so pytest's doctest run cannot see them."""
    import doctest

    keras_tf()
    for name in kd.LAZY:
        finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in finder.find(getattr(kd, name), name, globs={}):
            runner.run(test)
        assert runner.summarize(verbose=False).failed == 0, name


def test_import_xent_imports_no_keras():
    code = ("import sys, xent, xent.compat, xent.compat.keras as kd; import numpy as np; "
            "kd.categorical_crossentropy(np.eye(3), np.full((3, 3), 1 / 3)); dir(kd); "
            "print('keras' in sys.modules)")
    proc = _subprocess(["-c", code], {})
    assert proc.returncode == 0 and proc.stdout.split() == ["False"], proc.stderr[-3000:]
