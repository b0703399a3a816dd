"""xent.testing for users: assert_backends_agree, assert_close and the pytest plugin."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xent
from xent.testing import assert_backends_agree, assert_close, assert_ports_agree, installed

pytest_plugins = ["pytester"]

rng = np.random.default_rng(7)
LOGITS = rng.normal(size=(8, 5))
LABELS = rng.integers(0, 5, size=8)


def test_agree_on_every_installed_backend_with_gradients():
    out = assert_backends_agree(xent.sparse_softmax_cross_entropy, LOGITS, LABELS, grad=True,
                                label_smoothing=0.1, reduction="mean")
    want = [n for n in ("numpy", "torch", "tensorflow", "jax", "array_api_strict") if installed(n)]
    assert set(want) <= set(out)
    # the float64 reference is the plain formula
    logp = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    ref = np.mean(-0.9 * logp[np.arange(8), LABELS] - 0.1 * logp.mean(-1))
    np.testing.assert_allclose(out["reference"], ref, rtol=1e-12)


def test_user_function_built_on_xent():
    def my_loss(logits, labels):
        return xent.sparse_softmax_cross_entropy(logits, labels, reduction="sum") * 0.5

    assert_backends_agree(my_loss, LOGITS, LABELS, dtype="bfloat16")


def test_disagreement_gives_a_readable_diff():
    if not installed("torch"):
        pytest.skip("torch is not installed")

    def wrong_on_torch(logits, labels):
        loss = xent.sparse_softmax_cross_entropy(logits, labels)
        return loss * 1.01 if type(loss).__module__.startswith("torch") else loss

    with pytest.raises(AssertionError) as info:
        assert_backends_agree(wrong_on_torch, LOGITS, LABELS, backends=["numpy", "torch"])
    message = str(info.value)
    assert "backends disagree on wrong_on_torch" in message
    assert "torch (float32): 8 of 8 elements differ; worst at index" in message
    assert "numpy" not in message.split("\n", 1)[1]


def test_a_backend_that_raises_is_named():
    def breaks(logits, labels):
        if not isinstance(logits, np.ndarray):
            raise RuntimeError("unsupported here")
        return xent.sparse_softmax_cross_entropy(logits, labels)

    others = [n for n in ("torch", "jax", "tensorflow") if installed(n)]
    if not others:
        pytest.skip("needs a second backend")
    with pytest.raises(AssertionError, match=rf"{others[0]} \(float32\): raised RuntimeError: unsupported here"):
        assert_backends_agree(breaks, LOGITS, LABELS, backends=["numpy", others[0]])


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="unknown backend"):
        assert_backends_agree(xent.sparse_softmax_cross_entropy, LOGITS, LABELS, backends=["mxnet"])


def test_assert_close():
    got = xent.sparse_softmax_cross_entropy(LOGITS.astype(np.float32), LABELS)
    logp = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    assert_close(got, -logp[np.arange(8), LABELS], num_classes=5)
    with pytest.raises(AssertionError, match="worst at index"):
        assert_close(got, -logp[np.arange(8), LABELS] * 1.001, num_classes=5)


PLUGIN_TEST = '''
import numpy as np, xent
from xent.testing import assert_close

def test_each_backend(xent_framework):
    fw = xent_framework
    logits = fw.asarray(np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]]), "float32")
    loss = xent.sparse_softmax_cross_entropy(logits, np.array([0, 2]))
    assert xent.get_backend(loss).name in (fw.name, "array_api")
    assert_close(loss, [0.46436879, 0.17425454], num_classes=3)
'''


def test_pytest_plugin_parametrizes_over_installed_backends(pytester):
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    expected = [n for n in ("numpy", "torch", "tensorflow", "jax", "array_api_strict") if installed(n)]
    result.assert_outcomes(passed=len(expected))
    for name in expected:
        result.stdout.fnmatch_lines([f"*test_each_backend?{name}?*PASSED*"])


def test_pytest_plugin_narrows_and_fails_on_a_missing_backend(pytester, monkeypatch):
    pytester.makepyfile(PLUGIN_TEST)
    monkeypatch.setenv("XENT_TEST_BACKENDS", "numpy")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setattr("xent.testing._frameworks.installed", lambda name: name == "numpy")
    result = pytester.runpytest("-p", "no:cacheprovider", "--xent-backends", "numpy,torch")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*backend 'torch' is not installed, but was asked for*"])


def test_plugin_module_imports_no_framework():
    code = ("import sys; import xent.testing.pytest_plugin; "
            "print([m for m in ('torch', 'tensorflow', 'jax', 'array_api_strict') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _ports():  # type: ignore[no-untyped-def]
    """A loss written natively in each installed framework (the user's pipeline
    and its ports): the mean smoothed cross-entropy, none of them xent."""
    ports = {}

    def numpy_loss(z, y):
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return np.mean(-0.9 * logp[np.arange(len(y)), y] - 0.1 * logp.mean(-1))

    ports["numpy"] = numpy_loss
    if installed("torch"):
        import torch

        ports["torch"] = lambda z, y: torch.nn.functional.cross_entropy(z, y.long(), label_smoothing=0.1)
    if installed("tensorflow"):
        import tensorflow as tf

        def tf_loss(z, y):
            onehot = tf.one_hot(y, z.shape[-1], dtype=z.dtype) * 0.9 + 0.1 / z.shape[-1]
            return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, z))

        ports["tensorflow"] = tf_loss
    if installed("jax"):
        import optax

        ports["jax"] = lambda z, y: optax.softmax_cross_entropy(
            z, optax.smooth_labels(__import__("jax").nn.one_hot(y, z.shape[-1], dtype=z.dtype), 0.1)).mean()
    return ports


def test_ports_agree_values_and_gradients():
    ports = _ports()
    out = assert_ports_agree(ports, LOGITS, LABELS, grad=len(ports) > 1)
    assert set(ports) <= set(out)
    logp = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    np.testing.assert_allclose(out["reference"], np.mean(-0.9 * logp[np.arange(8), LABELS] - 0.1 * logp.mean(-1)),
                               rtol=1e-12)


def test_ports_disagreement_names_the_port():
    ports = _ports()
    ports["numpy"] = lambda z, y: np.float64(1.0)  # a wrong reference port
    others = [n for n in ports if n != "numpy"]
    if not others:
        pytest.skip("no framework installed")
    with pytest.raises(AssertionError) as info:
        assert_ports_agree(ports, LOGITS, LABELS)
    message = str(info.value)
    assert message.startswith("ports disagree (numpy: <lambda>")
    assert "(reference: numpy float64;" in message
    for name in others:
        assert f"{name} (float32): 1 of 1 elements differ" in message


def test_ports_bad_names():
    with pytest.raises(ValueError, match="unknown framework"):
        assert_ports_agree({"pytorch": lambda z, y: z}, LOGITS, LABELS)
    with pytest.raises(ValueError, match="fns is empty"):
        assert_ports_agree({}, LOGITS, LABELS)


X64_TEST = """
import numpy as np


def test_a_jax_test(xent_framework):
    import jax
    assert jax.config.jax_enable_x64  # float64 exists inside the fixture
    assert str(xent_framework.asarray(np.zeros(2), "float64").dtype) == "float64"


def test_after_it():
    import jax
    assert not jax.config.jax_enable_x64  # and nowhere else in the user's session
"""


def test_pytest_plugin_scopes_jax_x64_to_its_fixture(pytester, monkeypatch):
    """The plugin turns JAX's 64-bit types on inside its fixture only, never for
    the user's whole session (a fresh process: this suite keeps them on)."""
    if not installed("jax"):
        pytest.skip("jax is not installed")
    pytester.makepyfile(X64_TEST)
    monkeypatch.setenv("XENT_TEST_BACKENDS", "jax")
    monkeypatch.delenv("JAX_ENABLE_X64", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
