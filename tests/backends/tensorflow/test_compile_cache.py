"""TensorFlow's compile cache (compile_cache.py): an eager call whose signature
comes back runs as one cached XLA program once its op-by-op calls have cost
about one compile; xent's errors, labels checked on the host, programs capped."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import BIN, Y, Z, compiled_in, tf_fused, tf_or_skip
from xent.testing import assert_close


SOFT_TF = np.abs(Z) / np.abs(Z).sum(-1, keepdims=True)


TF_CALLS = [
    ("sparse_softmax_cross_entropy", {"reduction": "mean", "ignore_index": 2, "label_smoothing": 0.1}),
    ("softmax_cross_entropy", {"label_smoothing": 0.1}),
    ("softmax_cross_entropy", {"reduction": "mean"}),
    ("sigmoid_cross_entropy", {"reduction": "sum"}),
    ("sigmoid_cross_entropy", {"reduction": "mean"}),
    ("sigmoid_cross_entropy", {"reduction": "none", "pos_weight": True}),
    ("sigmoid_cross_entropy", {"reduction": "sum", "pos_weight": "numpy"}),  # (moved to TF for the program)
]


def _tf_reference(loss, options):
    """(values, d/dz of their sum) from the float64 formulas."""
    if loss == "sparse_softmax_cross_entropy":
        kw = {"ignore_index": 2, "alpha": 0.1, "reduction": options["reduction"]}
        return ref.sparse(Z, Y, **kw), ref.sparse_grad(Z, Y, **kw)
    if loss == "softmax_cross_entropy":
        kw = {"alpha": options.get("label_smoothing", 0.0)}
        red = options.get("reduction", "none")
        scale = 1 / len(Z) if red == "mean" else 1
        return ref.dense(Z, SOFT_TF, reduction=red, **kw), ref.dense_grads(Z, SOFT_TF, **kw)[0] * scale
    pw = PW if "pos_weight" in options else None
    red = options["reduction"]
    scale = 1 / Z.size if red == "mean" else 1
    return ref.sigmoid(Z, BIN, pos_weight=pw, reduction=red), ref.sigmoid_grads(Z, BIN, pos_weight=pw)[0] * scale


PW = np.linspace(0.5, 2.0, 7)


@pytest.mark.parametrize("loss, options", TF_CALLS)
def test_tensorflow_eager_calls_run_compiled_once_hot(tf_functions, loss, options):
    tf = tf_or_skip()
    fn = getattr(xent, loss)
    second = tf.constant(Y if loss.startswith("sparse") else SOFT_TF if "softmax" in loss else BIN)
    kwargs = dict(options)
    if "pos_weight" in kwargs:
        kwargs["pos_weight"] = PW if kwargs["pos_weight"] == "numpy" else tf.constant(PW)
    want, want_grad = _tf_reference(loss, options)
    z = tf.constant(Z.astype(np.float64))
    reduced = 1 if options.get("reduction", "none") == "none" else Z.size
    for call in range(3):  # the first call eagerly, then compiled
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = fn(z, second, **kwargs)
        assert compiled_in(tf_functions, fn) == (call >= 1)
        assert out.dtype == z.dtype
        assert_close(out, want, num_classes=7, reduced=reduced)
        assert_close(tape.gradient(out, z), want_grad, num_classes=7)


def test_tensorflow_compiled_calls_keep_xents_errors(tf_functions):
    tf = tf_or_skip()
    z, y = tf.constant(Z), tf.constant(Y)
    fn = xent.sparse_softmax_cross_entropy
    for _ in range(3):
        fn(z, y, ignore_index=0, label_smoothing=0.1, reduction="sum")  # (not the fused rung)
    assert compiled_in(tf_functions, fn)
    # labels are checked on the host before the compiled call: a bad one raises
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 9"):
        fn(z, bad, ignore_index=0, label_smoothing=0.1, reduction="sum")
    # a call that cannot be compiled (here: it raises) stays eager and says why
    for _ in range(3):
        with pytest.raises(ValueError, match="labels must have the same shape") as info:
            xent.sigmoid_cross_entropy(z, tf.constant(BIN[:, :3]), reduction="sum")
        assert "in user code" not in str(info.value)


def test_tensorflow_compiles_a_signature_once_its_eager_calls_cost_a_compile(tf_functions, monkeypatch):
    # Each op-by-op call of a signature is timed (the backend's clock, faked
    # here: every reading 0.3 s later), and the signature is compiled once they
    # add up to _COMPILE_AFTER_S; another shape starts from zero.
    tf = tf_or_skip()
    ticks = iter(np.arange(0.0, 100.0, 0.3))
    monkeypatch.setattr(tf_functions, "_clock", lambda: next(ticks))
    monkeypatch.setattr(tf_functions, "COMPILE_AFTER_S", 0.5)  # two calls' worth (0.3 s each)
    fn = xent.sigmoid_cross_entropy
    z, y = tf.constant(Z), tf.constant(BIN)
    want = ref.sigmoid(Z, BIN, reduction="mean")
    for call in range(4):
        assert_close(fn(z, y, reduction="mean"), want, reduced=Z.size)
        assert compiled_in(tf_functions, fn) == (call >= 2)
    assert len(tf_functions._programs) == 1
    fn(z[:-1], y[:-1], reduction="mean")  # a new shape: op by op again
    assert len(tf_functions._programs) == 1


def _sigmoid_sums_thrice(tf, row_counts) -> None:  # type: ignore[no-untyped-def]
    """Three sigmoid sums of the first ``rows`` rows, for each count: the last
    against the float64 formula."""
    for rows in row_counts:
        z, y = tf.constant(Z[:rows]), tf.constant(BIN[:rows])
        for _ in range(3):
            out = xent.sigmoid_cross_entropy(z, y, reduction="sum")
        assert_close(out, ref.sigmoid(Z[:rows], BIN[:rows], reduction="sum"), reduced=Z[:rows].size)


def test_tensorflow_compiled_shapes_are_traced_once_each(tf_functions, monkeypatch, caplog):
    # One concrete function per signature: no signature is traced twice, and
    # TF's "triggered tf.function retracing" warning (five traces of one
    # function within a few calls) never fires for xent's own programs.
    tf = tf_or_skip()
    traces = []
    real = tf_functions._program
    monkeypatch.setattr(tf_functions, "_program", lambda *a: traces.append(a[2][0].shape) or real(*a))
    with caplog.at_level("WARNING"):
        _sigmoid_sums_thrice(tf, range(2, 10))
    assert [s[0] for s in traces] == list(range(2, 10))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_tensorflow_compiled_programs_are_capped(tf_functions, monkeypatch):
    tf = tf_or_skip()
    monkeypatch.setattr(tf_functions, "MAX_PROGRAMS", 2)
    _sigmoid_sums_thrice(tf, (5, 6, 7))
    assert sorted(key[2][0][0][0] for key in tf_functions._programs) == [5, 6]  # the third: op by op


def test_tensorflow_labels_are_checked_on_the_host_once_per_call(tf_functions, monkeypatch):
    # The front end's host check of class ids runs only before a compiled
    # program (which cannot read them); an op-by-op call checks them itself.
    tf = tf_or_skip()
    from xent import _dispatch

    monkeypatch.setattr(tf_fused(), "COMPILE_MIN", 1)  # (the fused eager op below 2^15 logits)
    checks = []
    real = _dispatch._ids_valid_or_unseen
    monkeypatch.setattr(_dispatch, "_ids_valid_or_unseen", lambda *a: checks.append(1) or real(*a))
    z, y = tf.constant(Z), tf.constant(Y)
    fused = []
    real_ops = tf_fused()._sparse_ops
    monkeypatch.setattr(tf_fused(), "_sparse_ops", lambda *a: fused.append(1) or real_ops(*a))

    def fused_calls() -> int:
        return len(fused)

    for call in range(3):
        before = fused_calls()
        out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
        assert_close(out, ref.sparse(Z, Y, reduction="mean"), num_classes=7, reduced=24)
        assert len(checks) == call  # none on the first, op-by-op call
        assert fused_calls() - before == (call == 0)  # which takes the fused op
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    for _ in range(2):  # a new signature's op-by-op call and the compiled one both name it
        with pytest.raises(ValueError, match="out-of-range label values: 9"):
            xent.sparse_softmax_cross_entropy(z, tf.cast(bad, tf.int32), reduction="mean")


def test_tensorflow_compiled_calls_second_order_and_variables(tf_functions):
    tf = tf_or_skip()
    z = tf.Variable(Z.astype(np.float64))
    y = tf.constant(BIN.astype(np.float64))
    for _ in range(3):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = xent.sigmoid_cross_entropy(z, y, reduction="sum")
            gz = inner.gradient(loss, z)  # (the Variable is watched on its own)
            total = tf.reduce_sum(gz)
        hess_diag = outer.gradient(total, z)  # the Hessian is diagonal: σ(z)·(1 - σ(z))
    assert compiled_in(tf_functions, xent.sigmoid_cross_entropy)
    s = 1 / (1 + np.exp(-Z.astype(np.float64)))
    assert_close(gz, ref.sigmoid_grads(Z, BIN)[0])
    assert_close(hess_diag, s * (1 - s))


def test_tensorflow_counts_asynchronous_calls_at_least_an_eighth_of_a_compile(tf_functions, monkeypatch):
    # Off the CPU the host's clock sees only the dispatch (here: no time at
    # all), so each op-by-op call counts as ASYNC_CALL_S: compiled at the
    # eighth call, without reading anything from the device. On the CPU the
    # clock is the call's time: a call that takes none never compiles.
    tf = tf_or_skip()
    monkeypatch.setattr(tf_functions, "_clock", lambda: 0.0)
    monkeypatch.setattr(tf_functions, "COMPILE_AFTER_S", 0.2)
    monkeypatch.setattr(tf_functions, "ASYNC_CALL_S", 0.2 / 8)
    fn = xent.sigmoid_cross_entropy
    z, y = tf.constant(Z), tf.constant(BIN)
    for _ in range(10):
        fn(z, y, reduction="sum")
    assert not compiled_in(tf_functions, fn)
    monkeypatch.setattr(tf_functions, "_off_host", lambda device: True)
    want = ref.sigmoid(Z, BIN, reduction="sum")
    for call in range(10):
        assert_close(fn(z, y, reduction="sum"), want, reduced=Z.size)
        assert compiled_in(tf_functions, fn) == (call >= 8)
