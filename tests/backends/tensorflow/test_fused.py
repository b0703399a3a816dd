"""TensorFlow's fused rung: tf.nn's ops where their semantics are exactly xent's,
and the traced sigmoid form."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import REDUCTIONS, Y, Z, bf16_ulps, compiled_in, tf_fused, tf_or_skip, zero_weight_at_minus_inf
from xent.testing import assert_close


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_tensorflow_fused_matches_reference(dtype, reduction):
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    z = tf.cast(tf.constant(Z), dtype)
    out = be.fused_sparse(z, tf.constant(Y), **dict(axis=-1, reduction=reduction, ignore_index=None))
    assert out is not None and out.dtype == z.dtype
    zr = tf.cast(z, tf.float64).numpy()
    assert_close(out, ref.sparse(zr, Y, reduction=reduction), num_classes=7,
                 reduced=1 if reduction == "none" else 24)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensorflow_fused_takes_every_rank_and_batch(dtype):
    # The eager fused op as its raw generated ops (tensorflow/fused.py,
    # _sparse_ops): values and logits gradients for batches of several sizes,
    # a rank-3 and a rank-1 one, every reduction.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    cases = [(Z[:rows], Y[:rows]) for rows in (24, 9, 2)] + [(Z.reshape(4, 6, 7), Y.reshape(4, 6)), (Z[3], Y[3])]
    for zs, ys in cases:
        for reduction in REDUCTIONS:
            z = tf.cast(tf.constant(zs), dtype)
            with tf.GradientTape() as tape:
                tape.watch(z)
                out = be.fused_sparse(z, tf.constant(ys), **dict(axis=-1, reduction=reduction, ignore_index=None))
                total = tf.reduce_sum(tf.cast(out, tf.float64) * np.arange(1, np.size(ys) + 1).reshape(np.shape(ys))
                                      if reduction == "none" else tf.cast(out, tf.float64))
            assert out is not None and out.dtype == z.dtype and out.shape == (np.shape(ys) if reduction == "none" else ())
            zr = tf.cast(z, tf.float64).numpy()
            assert_close(out, ref.sparse(zr, ys, reduction=reduction), num_classes=7,
                         reduced=1 if reduction == "none" else np.size(ys))
            cot = np.arange(1.0, np.size(ys) + 1).reshape(np.shape(ys))  # (as sample weights of a sum)
            want = ref.sparse_grad(zr, ys, w=cot, reduction="sum") if reduction == "none" \
                else ref.sparse_grad(zr, ys, reduction=reduction)
            assert_close(tape.gradient(total, z), want, num_classes=7)
            if dtype == "bfloat16" and reduction == "none":  # computed in float32 and rounded once
                assert bf16_ulps(tf.cast(out, tf.float64).numpy(), ref.sparse(zr, ys)) <= 0.5 + 1e-9
    wrong = be.fused_sparse(tf.constant(Z.reshape(4, 6, 7)), tf.constant(Y.reshape(6, 4)),
                            **dict(axis=-1, reduction="sum", ignore_index=None))
    assert wrong is None  # (same size, other shape: the general path raises)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tensorflow_fused_second_derivative_forward_mode_and_variables(reduction):
    # Under a tape the eager fused call is recorded as one operation whose
    # gradient is the op's own softmax - onehot (tensorflow/fused.py, _record).
    # Differentiated again it must still be exact (a Hessian-vector product,
    # where tf.nn's fused op raises), forward mode (ForwardAccumulator) must
    # see it, and a variable's gradient must reach the variable.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    kw = dict(axis=-1, reduction=reduction, ignore_index=None)
    z, y = tf.constant(Z), tf.constant(Y)
    v = np.random.default_rng(1).standard_normal(Z.shape).astype(np.float32)
    p = np.exp(Z - Z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    cot = np.arange(1.0, len(Y) + 1) if reduction == "none" else np.full(len(Y), 1 / len(Y) if reduction == "mean" else 1.0)
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            out = be.fused_sparse(z, y, **kw)
            total = tf.reduce_sum(out * (cot if reduction == "none" else 1.0))
        gv = tf.reduce_sum(inner.gradient(total, z) * v)
    assert out is not None
    hv = p * v - p * (p * v).sum(-1, keepdims=True)  # (per row, before its cotangent)
    assert_close(outer.gradient(gv, z) / tf.constant(cot[:, None], tf.float32), hv, num_classes=7)
    with tf.autodiff.ForwardAccumulator(z, tf.constant(v)) as acc:
        out = be.fused_sparse(z, y, **kw)
    per_row = ((p - np.eye(7)[Y]) * v).sum(-1)
    want = per_row if reduction == "none" else (per_row * cot).sum()
    assert_close(acc.jvp(out), want, num_classes=7, reduced=1 if reduction == "none" else 24)
    var = tf.Variable(Z)
    with tf.GradientTape() as tape:
        out = be.fused_sparse(var, y, **kw)
        total = tf.reduce_sum(out * (cot if reduction == "none" else 1.0))
    assert_close(tape.gradient(total, var), ref.sparse_grad(Z, Y, w=cot, reduction="sum"), num_classes=7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("options", ["ignore_index", "class_weights", "both"])
def test_tensorflow_fused_takes_ignore_index_and_class_weights(options, dtype, reduction):
    # The eager fused op with xent's mask and weighted mean (_weighted_ops):
    # values and logits gradients against the float64 formula. Ignored rows
    # hold a NaN logit and an out-of-range label, which must not show.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    ignore = -100 if options != "class_weights" else None
    cw = np.linspace(0.5, 2.0, 7) if options != "ignore_index" else None
    y = Y.copy()
    zs = Z.astype(np.float64).copy()
    if ignore is not None:
        y[::5] = ignore
        zs[5, 2] = np.nan
    z = tf.cast(tf.constant(zs), dtype)
    w = None if cw is None else tf.cast(tf.constant(cw), dtype)
    cot = np.arange(1.0, 25) if reduction == "none" else 1.0
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = be.fused_sparse(z, tf.constant(y), axis=-1, reduction=reduction, ignore_index=ignore, class_weights=w)
        total = tf.reduce_sum(tf.cast(out, tf.float64) * cot)
    assert out is not None and out.dtype == z.dtype
    zr = np.where(np.isnan(zs), 0.0, tf.cast(z, tf.float64).numpy())
    wr = None if w is None else tf.cast(w, tf.float64).numpy()
    assert_close(out, ref.sparse(zr, y, ignore_index=ignore, cw=wr, reduction=reduction), num_classes=7,
                 reduced=1 if reduction == "none" else 24)
    want = ref.sparse_grad(zr, y, ignore_index=ignore, cw=wr, w=np.broadcast_to(cot, (24,)),
                           reduction="sum" if reduction == "none" else reduction)
    assert_close(tape.gradient(total, z), want, num_classes=7)
    if ignore is not None:  # nothing kept: a mean of 0, as xent's
        none = be.fused_sparse(z, tf.fill([24], -100), axis=-1, reduction="mean", ignore_index=-100, class_weights=w)
        assert float(none) == 0.0
        bad = tf.constant(np.where(np.arange(24) == 3, 9, y))  # a kept out-of-range label: the general path
        assert be.fused_sparse(z, bad, axis=-1, reduction=reduction, ignore_index=ignore, class_weights=w) is None


def test_tensorflow_fused_masked_gradient_keeps_nan_rows_and_infinite_losses():
    # With ignore_index the recorded gradient is one mul_no_nan by the per-row
    # cotangent, 0 outside the mask: a kept row with a NaN logit still gets a
    # NaN gradient where its cotangent is 0 (as softmax - onehot times 0 is),
    # a kept row whose label logit is -inf (loss inf) its finite gradient, an
    # ignored row with a NaN logit 0. Against the float64 formula.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    zs = Z.astype(np.float64).copy()
    y = Y.copy()
    y[0] = -100
    zs[0, 1] = np.nan  # ignored
    zs[1, 3] = np.nan  # kept, cotangent 0
    zs[2, y[2]] = -np.inf  # kept: loss inf, gradient softmax - onehot
    z = tf.constant(zs)
    cot = np.arange(1.0, 25)
    cot[1] = 0.0
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = be.fused_sparse(z, tf.constant(y), axis=-1, reduction="none", ignore_index=-100)
        total = tf.reduce_sum(out * cot)
    grad = tape.gradient(total, z).numpy()
    assert np.isinf(out.numpy()[2]) and out.numpy()[0] == 0.0
    assert np.isnan(grad[1]).all() and not grad[0].any()
    zr = zs.copy()
    zr[:2] = 0.0
    want = ref.sparse_grad(zr, np.where(y < 0, 0, y), w=cot, reduction="sum")
    assert_close(grad[2:], want[2:], num_classes=7)


def test_tensorflow_fused_envelope_and_errors():
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    z, y = tf.constant(Z), tf.constant(Y)
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=0, label_smoothing=0.1)) is None
    assert be.fused_sparse(z, Y, **dict(axis=-1, reduction="mean", ignore_index=None)) is None  # host labels: general path

    @tf.function
    def traced(z, y):
        return be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None))

    assert traced(z, y) is None  # out-of-range labels must give NaN under tf.function
    bad = tf.constant(np.where(np.arange(24) == 5, 9, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 9"):
        xent.sparse_softmax_cross_entropy(z, bad)
    with pytest.raises(ValueError, match="labels.shape must be"):
        xent.sparse_softmax_cross_entropy(z, y[:5])


def test_tensorflow_large_sparse_leaves_the_fused_op_for_the_compiled_call(tf_functions, monkeypatch):
    # From COMPILE_MIN logits on the sparse loss is the compiled call, also
    # under a gradient tape (XLA's fused gradient is faster than the op's):
    # values, gradients and a Hessian-vector product through it.
    tf = tf_or_skip()
    monkeypatch.setattr(tf_fused(), "COMPILE_MIN", Z.size)
    be = xent.get_backend("tensorflow")
    z, y = tf.constant(Z), tf.constant(Y)
    assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None)) is None
    assert be.fused_sparse(z[:-1], y[:-1], **dict(axis=-1, reduction="mean", ignore_index=None)) is not None
    v = np.random.default_rng(8).normal(size=Z.shape)
    for _ in range(2):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as tape:
                tape.watch(z)
                assert be.fused_sparse(z, y, **dict(axis=-1, reduction="mean", ignore_index=None)) is None
                out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
            dz = tape.gradient(out, z)
            along = tf.reduce_sum(tf.cast(dz, tf.float64) * v)
        hv = outer.gradient(along, z)
    assert compiled_in(tf_functions, xent.sparse_softmax_cross_entropy)
    assert_close(out, ref.sparse(Z, Y, reduction="mean"), num_classes=7, reduced=24)
    assert_close(dz, ref.sparse_grad(Z, Y, reduction="mean"), num_classes=7)
    p = np.exp(ref.log_softmax(Z.astype(np.float64)))
    assert_close(hv, (p * v - p * (p * v).sum(-1, keepdims=True)) / len(Z), num_classes=7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensorflow_dense_under_a_tape_is_the_compiled_call(tf_functions, dtype, reduction):
    # Eagerly under a gradient tape the dense loss is the compiled call (TF
    # has no fused dense hook: tf.nn's op is slower under a tape, and its
    # gradient, softmax - y, is xent's only where labels sum to 1). Values,
    # both gradients and a Hessian-vector product against float64 formulas,
    # for labels that sum to 1, labels that do not, and a zero label under a
    # -inf logit (tf.nn's loss is NaN there, xent's finite).
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    soft = np.abs(Z.astype(np.float64)) / np.abs(Z.astype(np.float64)).sum(-1, keepdims=True)
    masked_z, masked_y = Z.astype(np.float64), soft.copy()
    masked_z[0, 1], masked_y[0, 1] = -np.inf, 0.0
    masked_y[0] /= masked_y[0].sum()
    reduced = 1 if reduction == "none" else Z.size
    scale = 1 / len(Z) if reduction == "mean" else 1
    v = np.random.default_rng(8).normal(size=Z.shape)
    for logits, labels in ((Z, soft), (Z, 1.5 * soft), (masked_z, masked_y)):
        z, y = tf.constant(logits.astype(dtype)), tf.constant(labels.astype(dtype))
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as tape:
                tape.watch([z, y])
                assert be.fused_dense(z, y, **dict(axis=-1, reduction=reduction)) is None
                out = xent.softmax_cross_entropy(z, y, reduction=reduction)
            dz, dy = tape.gradient(out, [z, y])
            along = tf.reduce_sum(dz * v)
        hv = outer.gradient(along, z)
        zr = np.where(np.isinf(logits), -1e30, z.numpy().astype(np.float64))
        yr = y.numpy().astype(np.float64)
        assert_close(out, ref.dense(zr, yr, reduction=reduction), num_classes=7, reduced=reduced)
        gz, gy = ref.dense_grads(zr, yr)
        assert_close(dz, gz * scale, num_classes=7)
        finite = ~np.isinf(logits)  # (a label's gradient under a -inf logit is docs/semantics.md's, not this formula's)
        assert_close(tf.boolean_mask(dy, finite), gy[finite] * scale, num_classes=7)
        p = np.exp(ref.log_softmax(zr))
        assert_close(hv, scale * yr.sum(-1, keepdims=True) * (p * v - p * (p * v).sum(-1, keepdims=True)),
                     num_classes=7)
    assert compiled_in(tf_functions, xent.softmax_cross_entropy)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_tensorflow_traced_sigmoid_limits(jit, dtype):
    # Under tf.function a summed sigmoid loss is _reduced_binary_nll: the
    # unguarded sum, the guarded formula where it is NaN, and written-out
    # derivatives that are the guarded formula's.
    tf = tf_or_skip()
    z = (np.random.default_rng(5).standard_normal((6, 5)) * 4).astype(np.float32)
    y = np.random.default_rng(6).random((6, 5)).astype(np.float32)
    z[0, 0], y[0, 0] = np.inf, 1.0  # agrees: loss 0, both gradients 0
    z[1, 1], y[1, 1] = -np.inf, 0.0  # agrees
    z[2, 2], y[2, 2] = -np.inf, 0.25  # disagrees: loss inf
    z[3, 3] = -0.0
    zr, yr = (tf.cast(tf.constant(a), tf.float64).numpy() for a in (tf.cast(z, dtype), tf.cast(y, dtype)))
    finite = np.where(np.isinf(zr), 0.0, zr)
    agree = np.isinf(zr) & (yr == (zr > 0))
    want = np.where(agree, 0.0, ref.sigmoid(finite, yr))
    want[2, 2] = np.inf
    gz, gy = ref.sigmoid_grads(finite, yr)
    gz[2, 2] = -0.25
    gz, gy = np.where(agree, 0.0, gz), np.where(agree, 0.0, gy)
    gy[2, 2] = np.inf

    @tf.function(jit_compile=jit, autograph=False)
    def run(z, y):
        with tf.GradientTape() as tape:
            tape.watch([z, y])
            loss = xent.sigmoid_cross_entropy(z, y, reduction="sum")
        return (loss, *tape.gradient(loss, [z, y]))

    loss, dz, dy = run(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype))
    assert loss.dtype == dtype and float(loss) == np.inf
    assert_close(dz, gz)
    assert_close(dy, gy)
    z[2, 2] = 3.0  # now finite: the mean, through the same derivatives
    want[2, 2] = ref.sigmoid(np.array([3.0]), yr[2, 2])[0]
    loss, dz, dy = tf.function(
        lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="mean"), jit_compile=jit, autograph=False
    )(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype)), None, None
    assert_close(loss, want.mean(), reduced=want.size)
    z[4, 4] = np.nan
    nan = tf.function(lambda z, y: xent.sigmoid_cross_entropy(z, y, reduction="sum"), autograph=False)
    assert np.isnan(float(nan(tf.cast(tf.constant(z), dtype), tf.cast(tf.constant(y), dtype))))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tensorflow_fused_zero_class_weight_under_an_infinite_loss_counts_zero(reduction):
    # An entry whose label logit is -inf under a zero class weight counts 0
    # (Backend.weigh), not 0·inf = NaN, on the fused rung. Against the float64
    # formula over the other entries.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    z, cw, want = zero_weight_at_minus_inf(reduction)
    t = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(t)
        out = be.fused_sparse(t, tf.constant(Y), axis=-1, reduction=reduction, ignore_index=None,
                              class_weights=tf.constant(cw))
        total = tf.reduce_sum(out)
    assert out is not None
    assert_close(out, want, num_classes=Z.shape[1], reduced=1 if reduction == "none" else len(Y))
    assert np.isfinite(tape.gradient(total, t).numpy()).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("options", ["weights", "weights+ignore_index", "weights+class_weights", "all"])
def test_tensorflow_fused_takes_sample_weights(options, dtype, reduction):
    # Sample weights on the fused rung (_weighted_ops): each kept row's loss
    # times its class and sample weight, the mean over the kept rows' total
    # weight. The hook answers; values and the gradients of the logits and of
    # the weights equal the float64 formula (∂ mean / ∂ w_i = (a_i - mean·b_i)
    # / Σ w·b, a_i the row's class-weighted loss, b_i its class weight and mask).
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    rng = np.random.default_rng(5)
    ignore = -100 if options in ("weights+ignore_index", "all") else None
    cw = rng.uniform(0.5, 2.0, size=7) if options in ("weights+class_weights", "all") else None
    y = Y.copy()
    zs = Z.astype(np.float64).copy()
    if ignore is not None:
        y[::4] = ignore
        zs[4, 1] = np.nan  # an ignored row's NaN logit must not show
    compute = tf.float64 if dtype == "float64" else tf.float32
    z = tf.cast(tf.constant(zs), dtype)
    w = tf.constant(rng.uniform(0.0, 2.0, size=len(y)), compute)
    cot = np.arange(1.0, 25) if reduction == "none" else 1.0
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, w])
        out = be.fused_sparse(z, tf.constant(y), axis=-1, reduction=reduction, ignore_index=ignore,
                              class_weights=None if cw is None else tf.constant(cw, dtype), weights=w)
        total = tf.reduce_sum(tf.cast(out, tf.float64) * cot)
    assert out is not None and out.dtype == z.dtype
    zr = np.where(np.isnan(zs), 0.0, tf.cast(z, tf.float64).numpy())
    wr = tf.cast(w, tf.float64).numpy()
    cwr = None if cw is None else tf.cast(tf.constant(cw, dtype), tf.float64).numpy()
    kw = {"ignore_index": ignore, "cw": cwr}
    assert_close(out, ref.sparse(zr, y, w=wr, reduction=reduction, **kw), num_classes=7,
                 reduced=1 if reduction == "none" else 24)
    summed = "sum" if reduction == "none" else reduction
    assert_close(tape.gradient(total, z), ref.sparse_grad(zr, y, w=wr * cot, reduction=summed, **kw), num_classes=7)
    rows = ref.sparse(zr, y, **kw) * cot
    keep = np.ones(len(y), bool) if ignore is None else y != ignore
    b = np.where(keep, 1.0 if cwr is None else cwr[np.where(keep, y, 0)], 0.0)
    want = rows if summed == "sum" else (rows - (wr * rows).sum() / (wr * b).sum() * b) / (wr * b).sum()
    assert_close(tape.gradient(total, w), want, num_classes=7, reduced=24 if summed == "mean" else 1)


def test_tensorflow_fused_sample_weights_edges():
    # A zero total weight gives a mean of 0; a zero sample weight under an
    # infinite loss counts 0 with a finite gradient (Backend.weigh), as the
    # general path gives; rank-3 logits take their weights row by row; weights
    # that are not a float tensor of the labels' shape go to the general path.
    tf = tf_or_skip()
    be = xent.get_backend("tensorflow")
    z, y = tf.constant(Z), tf.constant(Y)
    w = np.linspace(0.5, 2.0, len(Y))
    hook = lambda weights, logits=z, labels=y, reduction="mean": be.fused_sparse(  # noqa: E731
        logits, labels, axis=-1, reduction=reduction, ignore_index=None, weights=weights)
    assert float(hook(tf.zeros([24], tf.float32))) == 0.0
    zi = Z.astype(np.float64).copy()
    zi[0, Y[0]] = -np.inf
    wz = w.copy()
    wz[0] = 0.0
    rows = wz * ref.sparse(np.where(np.isinf(zi), 0.0, zi), Y)
    rows[0] = 0.0
    for reduction, want in (("none", rows), ("sum", rows.sum()), ("mean", rows.sum() / wz.sum())):
        t = tf.constant(zi, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = hook(tf.constant(wz, tf.float32), logits=t, reduction=reduction)
            total = tf.reduce_sum(out)
        assert out is not None
        assert_close(out, want, num_classes=7, reduced=1 if reduction == "none" else 24)
        assert np.isfinite(tape.gradient(total, t).numpy()).all()
    z3, y3, w3 = tf.reshape(z, [4, 6, 7]), tf.reshape(y, [4, 6]), tf.constant(w.reshape(4, 6), tf.float32)
    assert_close(hook(w3, logits=z3, labels=y3), ref.sparse(Z, Y, w=w, reduction="mean"), num_classes=7, reduced=24)
    for other in (w, tf.constant(w[:-1], tf.float32), tf.constant(w[None], tf.float32), tf.ones([24], tf.int32)):
        assert hook(other) is None
