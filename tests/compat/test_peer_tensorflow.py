"""TensorFlow's own tests of its cross-entropy ops, run against ``xent.compat.tensorflow``.

The TensorFlow wheel does not ship ``xent_op_test.py`` or
``sparse_xent_op_test.py``, but it ships the base classes those files subclass
(``tensorflow/python/kernel_tests/nn_ops/xent_op_test_base.py`` and
``.../sparse_ops/sparse_xent_op_test_base.py``), which hold the test methods.
They call the ops as ``nn_ops.<name>``; here that module global is replaced by
the dialect's functions (tf.nn's v1 ``softmax_cross_entropy_with_logits``, which
takes ``dim`` and stops the gradient into the labels, is mapped onto the
dialect the same way) and each test method runs as a pytest parameter
(``tests/compat/peer_suites/bridge.py``). A case that trips over a deliberate
difference of the dialect is a strict ``xfail`` naming it (``docs/porting.md``
lists each).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from tests.compat.peer_suites.bridge import cases, namespace, require_backend, run_case
from xent.compat import tensorflow as tfd

require_backend("tensorflow")
tf = pytest.importorskip("tensorflow")
xent_base = pytest.importorskip("tensorflow.python.kernel_tests.nn_ops.xent_op_test_base")
sparse_base = pytest.importorskip("tensorflow.python.kernel_tests.sparse_ops.sparse_xent_op_test_base")


def _v1_softmax_cross_entropy_with_logits(labels: Any = None, logits: Any = None, dim: int = -1,
                                          name: str | None = None, axis: int | None = None) -> Any:
    """tf.compat.v1.nn.softmax_cross_entropy_with_logits: ``dim``, no gradient into the labels."""
    if tf.is_tensor(labels):
        labels = tf.stop_gradient(labels)
    return tfd.softmax_cross_entropy_with_logits(labels=labels, logits=logits, axis=dim if axis is None else axis,
                                                 name=name)


DENSE = namespace(
    softmax_cross_entropy_with_logits=_v1_softmax_cross_entropy_with_logits,
    softmax_cross_entropy_with_logits_v2=tfd.softmax_cross_entropy_with_logits,
)
SPARSE = namespace(sparse_softmax_cross_entropy_with_logits_v2=tfd.sparse_softmax_cross_entropy_with_logits)

#: Each a deliberate difference, listed in docs/porting.md.
DENSE_XFAILS = {
    "XentOpTestBase.testLabelsBroadcast": (
        "labels must have the logits' shape: tf.nn broadcasts (1, C) and (N, 1) labels silently, the "
        "dialect raises ValueError (and the test's placeholders of unknown rank are refused: xent needs "
        "the rank of the logits to find the class axis)"),
    "XentOpTestBase.testSingleClass": (
        "labels that do not sum to 1: the dialect's gradient is the true derivative "
        "softmax*sum(labels) - labels (0 here, with one class); tf.nn's kernel returns softmax - labels, "
        "right only for rows summing to 1 (tf.nn's docs call it incorrect otherwise)"),
    "XentOpTestBase.testSecondGradient": (
        "asserts that TF's fused kernel puts its second derivative (a BatchMatMulV2 op) in the graph; "
        "the dialect's second derivative is built from other ops (and equals tf.nn's: "
        "test_second_derivative_matches_tf_nn)"),
}
SPARSE_XFAILS = {
    "SparseXentOpTestBase.testInvalidLabelCPU": (
        "out-of-range labels: ValueError eagerly (tf.nn's CPU kernel: InvalidArgumentError 'Received a "
        "label value of ...'), NaN losses inside a graph, where the values cannot be read"),
}
OUT_OF_SCOPE = {
    "XentOpTestBase.test_session": "tf.test.TestCase's deprecated test_session helper, not a test",
    "SparseXentOpTestBase.test_session": "tf.test.TestCase's deprecated test_session helper, not a test",
}


@pytest.mark.parametrize("case", cases([xent_base.XentOpTestBase], OUT_OF_SCOPE, DENSE_XFAILS))
def test_tf_xent_op_suite(case, monkeypatch):
    run_case(case, xent_base, {"nn_ops": DENSE}, monkeypatch)


@pytest.mark.parametrize("case", cases([sparse_base.SparseXentOpTestBase], OUT_OF_SCOPE, SPARSE_XFAILS))
def test_tf_sparse_xent_op_suite(case, monkeypatch):
    run_case(case, sparse_base, {"nn_ops": SPARSE}, monkeypatch)


# ------------------------------------------------------------------ unit tests
# Each new behaviour of the dialect against tf.nn's own function (never xent against itself).
rng = np.random.default_rng(20261202)
Z = rng.normal(scale=2.0, size=(4, 3))
Y = rng.dirichlet(np.ones(3), size=4)
IDS = rng.integers(0, 3, size=4)
B = (rng.random((4, 3)) < 0.5).astype(np.float64)

# (dialect function, tf.nn function, keyword arguments as NumPy)
CALLS = [
    ("softmax_cross_entropy_with_logits", {"labels": Y, "logits": Z}),
    ("sparse_softmax_cross_entropy_with_logits", {"labels": IDS, "logits": Z}),
    ("sigmoid_cross_entropy_with_logits", {"labels": B, "logits": Z}),
    ("weighted_cross_entropy_with_logits", {"labels": B, "logits": Z, "pos_weight": 1.7}),
]
IDS_CALLS = [c[0] for c in CALLS]


def check(got, want):
    assert tf.is_tensor(got), type(got)
    assert got.dtype == want.dtype
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn, kwargs", CALLS, ids=IDS_CALLS)
@pytest.mark.parametrize("as_list", [False, True])
def test_host_inputs_give_tf_tensor(fn, kwargs, as_list):
    if as_list:  # a list of floats is float32 in tf.nn
        kwargs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    check(getattr(tfd, fn)(**kwargs), getattr(tf.nn, fn)(**kwargs))


@pytest.mark.parametrize("fn, kwargs", CALLS, ids=IDS_CALLS)
def test_host_logits_with_tf_labels(fn, kwargs):
    kw = dict(kwargs, labels=tf.constant(kwargs["labels"]))
    check(getattr(tfd, fn)(**kw), getattr(tf.nn, fn)(**kw))


@pytest.mark.parametrize("fn, kwargs", CALLS, ids=IDS_CALLS)
def test_host_logits_with_torch_labels_stay_torch(fn, kwargs):
    from tests.conftest import _get

    torch = _get("torch").torch  # skips unless torch is a selected backend
    got = getattr(tfd, fn)(**dict(kwargs, labels=torch.as_tensor(kwargs["labels"])), name="ignored")
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), getattr(tf.nn, fn)(**kwargs).numpy(), rtol=1e-6, atol=1e-7)


def test_host_inputs_stay_numpy_without_tensorflow_imported():
    code = ("import sys, numpy as np; from xent.compat import tensorflow as nn; "
            "r = nn.softmax_cross_entropy_with_logits(labels=[[0.2, 0.8]], logits=[[1.0, 2.0]], name='x'); "
            "print(type(r).__module__, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "False"]


@pytest.mark.parametrize("fn, kwargs", CALLS, ids=IDS_CALLS)
@pytest.mark.parametrize("name", [None, "my_loss"])
def test_name_scope_as_tf_nn(fn, kwargs, name):
    """Inside a graph the ops carry the same scope, ``name`` or tf.nn's default, as tf.nn's."""
    scopes = {}
    for who, f in [("ours", getattr(tfd, fn)), ("tf", getattr(tf.nn, fn))]:
        graph = tf.Graph()
        with graph.as_default():
            kw = {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
            out = f(**kw, name=name)
        scopes[who] = out.name.split("/")[0].split(":")[0]
    assert scopes["ours"] == scopes["tf"]
    if name:
        assert scopes["ours"] == name


@pytest.mark.parametrize("labels, logits", [
    (np.int32(0), np.float32(1.0)),             # scalar logits
    (np.array([[0, 2]]), np.zeros((3, 2))),     # labels of the wrong rank
    (np.array([0, 1]), np.zeros((3, 2))),       # labels of the wrong shape
])
def test_sparse_shape_errors_as_tf_nn(labels, logits):
    with pytest.raises(ValueError) as theirs:
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.constant(labels), logits=tf.constant(logits))
    expected = str(theirs.value).split(" Received")[0]
    for lab, log in [(labels, logits), (tf.constant(labels), tf.constant(logits))]:
        with pytest.raises(ValueError) as ours:
            tfd.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=log)
        assert str(ours.value).startswith(expected)


def test_sparse_labels_of_unknown_rank_are_checked_at_run_time_as_tf_nn():
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        labels = tf.compat.v1.placeholder(tf.int32)
        logits = tf.constant([[1.0, 2.0, 3.0]])
        ours = tfd.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        theirs = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        np.testing.assert_allclose(*sess.run([ours, theirs], {labels: [2]}), rtol=1e-6)
        for op in (ours, theirs):
            with pytest.raises(tf.errors.InvalidArgumentError, match="labels must be 1-D"):
                sess.run(op, {labels: 2})


def test_second_derivative_matches_tf_nn():
    labels = tf.constant(Y)  # rows summing to 1 (else tf.nn's gradient is not the derivative)
    logits = tf.constant(Z)

    def hessian(f):
        with tf.GradientTape() as outer:
            outer.watch(logits)
            with tf.GradientTape() as inner:
                inner.watch(logits)
                loss = tf.reduce_sum(f(labels=labels, logits=logits))
            grad = inner.gradient(loss, logits)
        return outer.jacobian(grad, logits)

    np.testing.assert_allclose(hessian(tfd.softmax_cross_entropy_with_logits).numpy(),
                               hessian(tf.nn.softmax_cross_entropy_with_logits).numpy(), atol=1e-12)


def test_inputs_not_modified():
    z, y, ids = Z.copy(), Y.tolist(), IDS.copy()
    tfd.softmax_cross_entropy_with_logits(labels=y, logits=z, name="n")
    tfd.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=z)
    np.testing.assert_array_equal(z, Z)
    np.testing.assert_array_equal(ids, IDS)
    assert y == Y.tolist()
