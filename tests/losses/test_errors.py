"""Bad input: a clear error naming the argument and the values, never a wrong number."""

from __future__ import annotations

import numpy as np
import pytest

import xent

Z = np.zeros((2, 3), np.float32)


def _z(fw):  # type: ignore[no-untyped-def]
    return fw.asarray(Z)


def test_sparse_label_shape_mismatch(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"logits.shape=\(2, 3\), labels.shape=\(3,\)"):
        xent.sparse_softmax_cross_entropy(_z(fw), np.array([0, 1, 2]))


def test_dense_label_shape_mismatch(fw):  # type: ignore[no-untyped-def]
    # tf.nn and optax would broadcast (1, 3) silently
    with pytest.raises(ValueError, match=r"logits.shape=\(2, 3\), labels.shape=\(1, 3\)"):
        xent.softmax_cross_entropy(_z(fw), fw.asarray(np.ones((1, 3), np.float32)))
    with pytest.raises(ValueError, match=r"probs.shape=\(2, 3\), labels.shape=\(2, 4\)"):
        xent.binary_cross_entropy(_z(fw), fw.asarray(np.ones((2, 4), np.float32)))


@pytest.mark.parametrize("axis", [2, -3, 1.0, "x"])
def test_bad_axis(fw, axis):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="axis"):
        xent.sparse_softmax_cross_entropy(_z(fw), [0, 1], axis=axis)


def test_bad_reduction(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"reduction must be one of .*'avg'"):
        xent.sigmoid_cross_entropy(_z(fw), _z(fw), reduction="avg")


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, "a"])
def test_bad_label_smoothing(fw, alpha):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="label_smoothing"):
        xent.softmax_cross_entropy(_z(fw), _z(fw), label_smoothing=alpha)


def test_bad_class_weights_length(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"class_weights must have shape \(3,\).*class_weights.shape=\(4,\)"):
        xent.sparse_softmax_cross_entropy(_z(fw), [0, 1], class_weights=fw.asarray(np.ones(4, np.float32)))


def test_bad_weights_shape(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"weights.shape=\(3,\)"):
        xent.sparse_softmax_cross_entropy(_z(fw), [0, 1], weights=fw.asarray(np.ones(3, np.float32)))


def test_bad_epsilon(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="epsilon"):
        xent.binary_cross_entropy(_z(fw), _z(fw), epsilon=0.7)


@pytest.mark.parametrize("bad", [3, -1, 100])
def test_out_of_range_label_eager_cpu(fw, bad):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=rf"\[0, 3\).*{bad}"):
        xent.sparse_softmax_cross_entropy(_z(fw), fw.asarray(np.array([0, bad])))
    with pytest.raises(ValueError, match=rf"{bad}"):
        xent.sparse_categorical_cross_entropy(_z(fw) + 0.5, [bad, 0])


def test_ignore_index_is_not_out_of_range(fw):  # type: ignore[no-untyped-def]
    out = xent.sparse_softmax_cross_entropy(_z(fw), fw.asarray(np.array([-100, 1])), ignore_index=-100)
    np.testing.assert_allclose(fw.to_numpy(out), [0.0, np.log(3)], rtol=1e-6)
    with pytest.raises(ValueError, match=r"or ignore_index=-100.*: 5"):
        xent.sparse_softmax_cross_entropy(_z(fw), fw.asarray(np.array([-100, 5])), ignore_index=-100)


def test_float_sparse_labels(fw):  # type: ignore[no-untyped-def]
    # Keras truncates 1.7 to 1 silently
    with pytest.raises(TypeError, match=r"labels must be integer class ids; received labels.dtype=float"):
        xent.sparse_softmax_cross_entropy(_z(fw), fw.asarray(np.array([1.7, 2.2])))


def test_integer_predictions(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=r"logits must be floating point.*logits.dtype=int"):
        xent.sparse_softmax_cross_entropy(fw.asarray(np.zeros((2, 3), np.int32)), [0, 1])


def test_python_numbers_are_accepted_as_predictions():
    out = xent.sparse_softmax_cross_entropy([[0, 0, 0]], [1])
    np.testing.assert_allclose(out, [np.log(3)])


def test_unsupported_type():
    with pytest.raises(TypeError, match="logits has unsupported type"):
        xent.sparse_softmax_cross_entropy({"a": 1}, [0])


def test_labels_from_another_framework():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="labels is a torch array but logits is a numpy array"):
        xent.sparse_softmax_cross_entropy(Z, torch.tensor([0, 1]))


def test_bad_ignore_index_type(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="ignore_index"):
        xent.sparse_softmax_cross_entropy(_z(fw), [0, 1], ignore_index=1.5)


def test_no_class_axis(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="class axis"):
        xent.sparse_softmax_cross_entropy(fw.asarray(np.float32(1.0)), 0)
    with pytest.raises(ValueError, match="no classes"):
        xent.sparse_softmax_cross_entropy(fw.asarray(np.zeros((2, 0), np.float32)), [0, 0])


@pytest.mark.parametrize("value", [-(2**62), -(2**63), 2**63 - 1, -100])
@pytest.mark.parametrize("size", ["small", "chunked"])
def test_extreme_int64_labels_raise_on_every_path(fw, value, size, monkeypatch):  # type: ignore[no-untyped-def]
    """No label value is ignored silently: int64's extremes, the torch fast
    path's internal ignore value (-2**62) and torch's default ignore_index
    (-100) raise without an ignore_index, eagerly on the CPU, on every path
    (the fused op, torch's chunked kernel, every reduction)."""
    if fw.name == "jax" and not fw.jax.config.jax_enable_x64:
        pytest.skip("JAX without x64 has no int64")
    if size == "chunked":
        if fw.name != "torch":
            pytest.skip("only torch has a chunked sparse kernel")
        from xent.backends.torch import fused

        monkeypatch.setattr(fused, "CHUNKED_MIN", 0)
    z = fw.asarray(np.random.default_rng(3).normal(size=(4, 3)), "float32")
    labels = np.array([0, 1, value, 2], dtype=np.int64)
    for reduction in ("none", "sum", "mean"):
        with pytest.raises(ValueError, match="out-of-range label values"):
            xent.sparse_softmax_cross_entropy(z, fw.asarray(labels), reduction=reduction)
