"""The losses under each framework's compiler: jax.jit, jax.vmap, tf.function
(with and without XLA) and torch.compile(fullgraph=True)."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.helpers import assert_matches
from xent.testing import assert_close

rng = np.random.default_rng(8)
Z = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
Y = rng.integers(0, 5, size=6)
SOFT = rng.random((6, 5)).astype(np.float32)
PROBS = rng.uniform(0.01, 1, size=(6, 5)).astype(np.float32)
CW = rng.uniform(0.5, 2, size=5).astype(np.float32)

# name -> (xent call on (predictions, labels, class weights), float64 reference, label kind)
CASES = {
    "sparse": (
        lambda z, y, cw: xent.sparse_softmax_cross_entropy(z, y, ignore_index=4, label_smoothing=0.1, class_weights=cw, reduction="mean"),
        lambda: ref.sparse(Z, Y, ignore_index=4, alpha=0.1, cw=CW, reduction="mean"), "int"),
    "dense": (lambda z, y, cw: xent.softmax_cross_entropy(z, y, axis=0, label_smoothing=0.1),
              lambda: ref.dense(Z, SOFT, axis=0, alpha=0.1), "soft"),
    "sigmoid": (lambda z, y, cw: xent.sigmoid_cross_entropy(z, y, pos_weight=cw, reduction="sum"),
                lambda: ref.sigmoid(Z, SOFT, pos_weight=CW, reduction="sum"), "soft"),
    "categorical": (lambda z, y, cw: xent.categorical_cross_entropy(z, y, reduction="mean"),
                    lambda: ref.categorical(PROBS, SOFT, reduction="mean"), "soft"),
    "sparse_categorical": (lambda z, y, cw: xent.sparse_categorical_cross_entropy(z, y, ignore_index=0),
                           lambda: ref.sparse_categorical(PROBS, Y, ignore_index=0), "int"),
    "binary": (lambda z, y, cw: xent.binary_cross_entropy(z, y, weights=cw),
               lambda: ref.binary(PROBS, SOFT, w=CW), "soft"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_reference(autodiff_fw, name):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    fn, want, kind = CASES[name]
    preds = PROBS if name in ("categorical", "sparse_categorical", "binary") else Z
    labels = fw.asarray(Y) if kind == "int" else fw.asarray(SOFT)
    got = fw.compile(fn)(fw.asarray(preds), labels, fw.asarray(CW))
    assert_matches(fw, got, want(), "float32", 5, 6)


def test_out_of_range_labels_are_nan_under_compilers(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    fn = fw.compile(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, ignore_index=-100))
    bad = np.array([0, 5, -1, -100, 2, 7])
    out = fw.to_numpy(fn(fw.asarray(Z), fw.asarray(bad)))
    assert np.isnan(out[[1, 2, 5]]).all(), out
    assert out[3] == 0.0
    np.testing.assert_allclose(out[[0, 4]], ref.sparse(Z, bad.clip(0, 4))[[0, 4]], rtol=1e-5)
    mean = fw.compile(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, reduction="mean"))
    assert np.isnan(fw.to_numpy(mean(fw.asarray(Z), fw.asarray(bad.clip(-1, 9)))))


def test_compiled_dense_minus_inf_logits(autodiff_fw):  # type: ignore[no-untyped-def]
    # A zero label under a -inf logit contributes 0; a non-zero one makes the
    # loss inf. (torch.compile uses its own guard-free formula for this.)
    fw = autodiff_fw
    z, y = Z.copy(), SOFT.copy()
    z[0, 1], y[0, 1] = -np.inf, 0.0  # masked class: finite loss
    z[2, 3] = -np.inf  # label > 0 there: inf
    fn = fw.compile(lambda a, b: xent.softmax_cross_entropy(a, b))
    out = fw.to_numpy(fn(fw.asarray(z), fw.asarray(y)))
    assert out[2] == np.inf
    finite = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(out[finite], ref.dense(np.where(np.isinf(z), -1e30, z), y)[finite], rtol=1e-5)
    total = fw.compile(lambda a, b: xent.softmax_cross_entropy(a, b, reduction="sum"))
    (g,) = fw.grad(total, [fw.asarray(z[finite]), fw.asarray(y[finite])])
    want = ref.dense_grads(np.where(np.isinf(z), -1e30, z)[finite], y[finite])[0]
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_jax_dense_forward_mode_and_second_order(monkeypatch, masked):
    # JAX's dense loss has hand-written derivatives (a custom_jvp around a
    # lax.cond that takes the guarded formula when a row is NaN): forward
    # mode, reverse mode and the Hessian against float64 formulas, with and
    # without a zero label under a -inf logit (which takes the cond's branch).
    jax = pytest.importorskip("jax")
    from xent.backends.jax import traced as jax_traced

    monkeypatch.setattr(jax_traced, "SOFT_NLL_MIN", 0)  # (it starts at 2^20 logits)
    z, y = Z.astype(np.float64), SOFT.astype(np.float64)
    finite_z = z.copy()
    if masked:
        z[0, 1], y[0, 1] = -np.inf, 0.0
        finite_z[0, 1] = -1e30  # the same loss and derivatives with a finite logit
    total = jax.jit(lambda a, b: xent.softmax_cross_entropy(a, b, reduction="sum"))
    za, ya = jax.numpy.asarray(z, np.float32), jax.numpy.asarray(y, np.float32)
    np.testing.assert_allclose(float(total(za, ya)), ref.dense(finite_z, y, reduction="sum"), rtol=1e-6)
    gz, gy = ref.dense_grads(finite_z, y)
    if masked:  # d/dy at the masked class is log Σ exp(z - m) (docs/semantics.md)
        row = finite_z[0] - finite_z[0].max()
        gy[0, 1] = np.log(np.exp(row).sum())
    tz, ty = rng.normal(size=z.shape), rng.normal(size=z.shape)
    value, tangent = jax.jvp(total, (za, ya), (jax.numpy.asarray(tz, np.float32), jax.numpy.asarray(ty, np.float32)))
    np.testing.assert_allclose(float(tangent), (gz * tz).sum() + (gy * ty).sum(), rtol=1e-5)
    got_z, got_y = jax.jit(jax.grad(total, argnums=(0, 1)))(za, ya)
    np.testing.assert_allclose(np.asarray(got_z), gz, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(got_y), gy, rtol=1e-5, atol=1e-6)
    hess = np.asarray(jax.jit(jax.hessian(total))(za, ya))
    p = np.exp(finite_z - finite_z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = np.zeros(z.shape * 2)
    for i in range(z.shape[0]):  # Σy·(diag(p) - p pᵀ) within each row
        want[i, :, i, :] = y[i].sum() * (np.diag(p[i]) - np.outer(p[i], p[i]))
    np.testing.assert_allclose(hess, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_tf_dense_traced_form_derivatives(monkeypatch, masked, axis, window):
    # TF's traced dense loss on large logits (tensorflow/traced.py, soft_nll):
    # the unguarded form, a tf.cond to the guarded formula when a row is NaN,
    # derivatives written out. Reverse mode and a Hessian-vector product
    # against float64 formulas, with and without a masked -inf logit. With
    # windows of 2, its reductions are XLA's variadic reduces (_sums: 5
    # classes are two windows and a short one, 6 are three), whose derivative
    # is written out too; otherwise (5-6 classes) tf.reduce_*.
    tf = pytest.importorskip("tensorflow")
    from xent.backends.tensorflow import traced as tensorflow_traced

    monkeypatch.setattr(tensorflow_traced, "SOFT_NLL_MIN", 0)  # (it starts at 2^20 logits)
    if window is not None:
        monkeypatch.setattr(tensorflow_traced, "WINDOW", window)
    z, y = Z.astype(np.float64), SOFT.astype(np.float64)
    if axis == 0:
        z, y = z.T.copy(), y.T.copy()
    finite_z = z.copy()
    at = (0, 1) if axis == -1 else (1, 0)
    if masked:
        z[at], y[at] = -np.inf, 0.0
        finite_z[at] = -1e30  # the same loss and derivatives with a finite logit
    v = rng.normal(size=z.shape)

    @tf.function(jit_compile=True, autograph=False)
    def run(a, b):
        with tf.GradientTape() as outer:
            outer.watch(a)
            with tf.GradientTape() as inner:
                inner.watch([a, b])
                loss = xent.softmax_cross_entropy(a, b, axis=axis, reduction="sum")
            da, db = inner.gradient(loss, [a, b])
            along = tf.reduce_sum(da * v)
        return loss, da, db, outer.gradient(along, a)

    loss, da, db, hv = run(tf.constant(z), tf.constant(y))
    zr, yr = (np.moveaxis(x, axis, -1) for x in (finite_z, y))  # rows last, for the formulas
    np.testing.assert_allclose(float(loss), ref.dense(zr, yr, reduction="sum"), rtol=1e-12)
    gz, gy = ref.dense_grads(zr, yr)
    if masked:  # d/dy at the masked class is log Σ exp(z - m) (docs/semantics.md)
        row = zr[0] - zr[0].max()
        gy[0, 1] = np.log(np.exp(row).sum())
    np.testing.assert_allclose(np.moveaxis(da.numpy(), axis, -1), gz, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.moveaxis(db.numpy(), axis, -1), gy, rtol=1e-10, atol=1e-14)
    p = np.exp(zr - zr.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    vr = np.moveaxis(v, axis, -1)
    # H·v within each row: Σy·(diag(p) - p pᵀ)·v
    want = yr.sum(1, keepdims=True) * (p * vr - p * (p * vr).sum(1, keepdims=True))
    np.testing.assert_allclose(np.moveaxis(hv.numpy(), axis, -1), want, rtol=1e-8, atol=1e-12)
    nan = z.copy()
    nan[at] = np.nan
    assert np.isnan(float(tf.function(lambda a, b: xent.softmax_cross_entropy(a, b, axis=axis, reduction="sum"),
                                      autograph=False)(tf.constant(nan), tf.constant(y))))


def _half_case(loss, masked):  # type: ignore[no-untyped-def]
    """bfloat16-representable float64 logits and labels [256, 512] (a zero
    label under a -inf logit when ``masked``), the loss call and its float64
    reference value and logits gradient (the -inf logit as -1e30: the same)."""
    r = np.random.default_rng(21)
    z, y = r.standard_normal((256, 512)) * 3, r.random((256, 512))
    if loss == "sigmoid":
        y = (y > 0.5) * 1.0
    if masked:
        z[0, 1], y[0, 1] = -np.inf, 0.0
    z = z.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)  # (bf16: the top 16 bits)
    z = z.view(np.float32).astype(np.float64)
    y = (y.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
    finite_z = np.where(np.isinf(z), -1e30, z)
    if loss == "dense":
        return z, y, xent.softmax_cross_entropy, ref.dense(finite_z, y, reduction="sum"), ref.dense_grads(finite_z, y)[0]
    return z, y, xent.sigmoid_cross_entropy, ref.sigmoid(finite_z, y, reduction="sum"), ref.sigmoid_grads(finite_z, y)[0]


def _half_sum_and_grad(fw, fn, z, y):  # type: ignore[no-untyped-def]
    """``fn(z, y, reduction="sum")`` and its logits gradient for bfloat16
    inputs, compiled (jax.jit, tf.function with XLA): (dtype names, float64 values)."""
    if fw == "jax":
        import jax

        za, ya = (jax.numpy.asarray(x, jax.numpy.bfloat16) for x in (z, y))
        total = jax.jit(lambda a, b: fn(a, b, reduction="sum"))
        out, grad = total(za, ya), jax.jit(jax.grad(total))(za, ya)
        return (str(out.dtype), str(grad.dtype)), (np.asarray(out, np.float64), np.asarray(grad, np.float64))
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def run(a, b):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch(a)
            out = fn(a, b, reduction="sum")
        return out, tape.gradient(out, a)

    out, grad = run(*(tf.cast(tf.constant(x), tf.bfloat16) for x in (z, y)))
    return (out.dtype.name, grad.dtype.name), (tf.cast(out, tf.float64).numpy(), tf.cast(grad, tf.float64).numpy())


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("loss", ["dense", "sigmoid"])
@pytest.mark.parametrize("fw", ["jax", "tensorflow"])
def test_half_inputs_under_xla(monkeypatch, fw, loss, masked):
    # JAX's and TF's traced dense and sigmoid forms hold half inputs narrow in
    # their conditional (Backend.held_branch): values and logits gradients
    # under jax.jit / tf.function(jit_compile=True) against float64, with the
    # guarded branch taken (masked) and not.
    traced = pytest.importorskip(f"xent.backends.{fw}.traced")
    monkeypatch.setattr(traced, "SOFT_NLL_MIN", 0)  # (it starts at 2^20 logits)
    z, y, fn, want, want_grad = _half_case(loss, masked)
    dtypes, (out, grad) = _half_sum_and_grad(fw, fn, z, y)
    assert dtypes == ("bfloat16", "bfloat16")
    reduced = 256 if loss == "dense" else z.size
    assert_close(out, want, dtype="bfloat16", num_classes=512, reduced=reduced)
    assert_close(grad, want_grad, dtype="bfloat16", num_classes=512)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tf_sigmoid_traced_form_second_order(dtype, jit_compile):
    # TF's traced sigmoid sum (tensorflow/traced.py) takes
    # σ(z) in its gradient from the forward's exp(-|z|): the second
    # derivative σ(z)·(1 - σ(z)) against float64, at z = 0 too (where |z| has
    # no derivative: through tf.abs it came out 0, not 1/4).
    tf = pytest.importorskip("tensorflow")
    z = Z.astype(np.float64)
    z[0] = 0.0

    @tf.function(jit_compile=jit_compile, autograph=False)
    def run(a, b):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as outer:
            outer.watch(a)
            with tf.GradientTape() as inner:
                inner.watch(a)
                loss = xent.sigmoid_cross_entropy(a, b, reduction="sum")
            da = inner.gradient(loss, a)
            total = tf.reduce_sum(da)
        return da, outer.gradient(total, a)  # the Hessian is diagonal

    da, diag = run(tf.constant(z, dtype), tf.constant(SOFT, dtype))
    s = 1 / (1 + np.exp(-z))
    assert_close(da.numpy(), ref.sigmoid_grads(z, SOFT.astype(np.float64))[0], dtype=dtype)
    assert_close(diag.numpy(), s * (1 - s), dtype=dtype)


def _tf_compiled_entry(fn, *specs):  # type: ignore[no-untyped-def]
    """The entry computation of XLA's optimized program of ``fn`` (compiled, not run)."""
    tf = pytest.importorskip("tensorflow")
    program = tf.function(fn, jit_compile=True, autograph=False)
    text = program.experimental_get_compiler_ir(*specs)(stage="optimized_hlo")
    entry = text[text.index("ENTRY"):]
    return entry[: entry.index("\n}")]


def test_tf_dense_under_xla_writes_no_float32_copy():
    # XLA's CPU backend writes out the (upcast) input of each plain reduction:
    # as tf.reduce_* the dense loss's four reductions wrote four float32
    # copies of the logits' size (1.47x tf.nn's forward+backward at 4096x32000
    # bf16). As variadic reduces over windows (tensorflow/traced.py, _sums) the
    # forward writes none, and forward+backward only the shared exp(z - m).
    tf = pytest.importorskip("tensorflow")
    spec = tf.TensorSpec((4096, 32000), tf.bfloat16)
    mean = lambda a, b: xent.softmax_cross_entropy(a, b, reduction="mean")  # noqa: E731

    def both(a, b):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch(a)
            out = mean(a, b)
        return out, tape.gradient(out, a)

    assert "= f32[4096,32000]" not in _tf_compiled_entry(mean, spec, spec)
    assert _tf_compiled_entry(both, spec, spec).count("= f32[4096,32000]") == 1


def test_tf_dense_under_xla_sums_in_windows(monkeypatch):
    # The variadic reduces of tensorflow/traced.py's _sums add one value at a
    # time: over whole rows of 32000 classes a float32 row's loss was up to
    # 135 ulp off. In windows of 32, then tf.reduce_sum, each row is within
    # 3 ulp of float64 (measured: 1.5 and 2.2; tf.nn's op 2.2 and 3.9, the
    # plain tf.reduce_* form 2.3 and 10), on the last axis and on axis 0 with
    # 31999 classes (the last window short).
    tf = pytest.importorskip("tensorflow")
    from xent.backends.tensorflow import traced as tensorflow_traced

    if tensorflow_traced._xla is None:
        pytest.skip("this TF has no tf2xla variadic reduce (xent uses tf.reduce_*)")

    monkeypatch.setattr(tensorflow_traced, "SOFT_NLL_MIN", 0)
    local = np.random.default_rng(3)
    for axis, (n, c) in ((-1, (48, 32000)), (0, (31999, 16))):
        z = (local.normal(size=(n, c)) * 3).astype(np.float32)
        y = local.random((n, c)).astype(np.float32)
        y /= y.sum(axis, keepdims=True)
        rows = tf.function(lambda a, b: xent.softmax_cross_entropy(a, b, axis=axis), jit_compile=True, autograph=False)
        got = rows(tf.constant(z), tf.constant(y)).numpy().astype(np.float64)
        zr, yr = (np.moveaxis(x.astype(np.float64), axis, -1) for x in (z, y))
        want = ref.dense(zr, yr)
        ulps = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))
        assert ulps.max() <= 3, ulps.max()


def test_jax_half_dense_writes_no_float32_copy():
    # The front end upcasts half inputs, and XLA writes out each operand of a
    # conditional: an upcast one would be a float32 copy of the logits or the
    # labels (measured 4x optax's time at 4096x32000 bf16). Held narrow
    # (Backend.held_branch), the compiled program (compiled only, never run)
    # has no float32 array of the logits' shape outside its branches.
    jax = pytest.importorskip("jax")
    if jax.default_backend() != "cpu":
        pytest.skip("the fused dense form is XLA CPU's")
    spec = jax.ShapeDtypeStruct((4096, 32000), jax.numpy.bfloat16)
    total = jax.jit(lambda a, b: xent.softmax_cross_entropy(a, b, reduction="mean"))
    text = total.lower(spec, spec).compile().as_text()
    entry = text[text.index("ENTRY"):]
    entry = entry[: entry.index("\n}")]
    assert "= f32[4096,32000]" not in entry


@pytest.mark.parametrize("loss", ["dense", "sparse"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_jax_half_row_max_reads_narrow(loss, dtype):
    # The row max of upcast half logits is the same value in their own dtype;
    # taken there (JaxBackend.row_max), XLA reduces the narrow input, where a
    # float32 max read it upcast (7-10% of optax's dense bfloat16 forward).
    # Compiled only: the max's reduce has a half-typed result.
    import re

    jax = pytest.importorskip("jax")
    half = getattr(jax.numpy, dtype)
    z = jax.ShapeDtypeStruct((512, 4096), half)
    if loss == "dense":
        fn, y = xent.softmax_cross_entropy, z
    else:
        fn, y = xent.sparse_softmax_cross_entropy, jax.ShapeDtypeStruct((512,), jax.numpy.int32)
    text = jax.jit(lambda a, b: fn(a, b, reduction="mean")).lower(z, y).compile().as_text()
    short = {"bfloat16": "bf16", "float16": "f16"}[dtype]
    bodies = {}  # computation name -> its text
    for block in text.split("\n\n"):
        head = re.match(r"\s*(?:ENTRY )?%?([\w.]+) \(", block)
        if head:
            bodies[head.group(1)] = block
    reduces = re.findall(r"= (\w+)\[512\]\{0\} reduce\([^\n]*to_apply=%?([\w.]+)", text)
    max_types = {t for t, name in reduces if " maximum(" in bodies[name]}
    assert max_types == {short}, reduces


@pytest.mark.parametrize("pos_weight", [False, True])
def test_jax_sigmoid_forward_mode_and_second_order(pos_weight):
    # JAX's sigmoid loss: the unguarded formula, a lax.cond to the guarded one
    # where it is NaN, derivatives written out. Against float64 formulas, with
    # finite logits, then with infinite ones (the cond's guarded branch).
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, y = Z.astype(np.float64), SOFT.astype(np.float64)
    pw = CW.astype(np.float64) if pos_weight else None
    total = jax.jit(lambda a, b, p: xent.sigmoid_cross_entropy(a, b, pos_weight=p, reduction="sum"))
    f32 = lambda x: None if x is None else jnp.asarray(x, np.float32)  # noqa: E731
    za, ya, pa = f32(z), f32(y), f32(pw)
    np.testing.assert_allclose(float(total(za, ya, pa)), ref.sigmoid(z, y, pos_weight=pw, reduction="sum"), rtol=1e-6)
    gz, gy = ref.sigmoid_grads(z, y, pos_weight=pw)
    tz, ty = rng.normal(size=z.shape), rng.normal(size=z.shape)
    _, tangent = jax.jvp(lambda a, b: total(a, b, pa), (za, ya), (f32(tz), f32(ty)))
    np.testing.assert_allclose(float(tangent), (gz * tz).sum() + (gy * ty).sum(), rtol=1e-5)
    grads = jax.jit(jax.grad(total, argnums=(0, 1) if pw is None else (0, 1, 2)))(za, ya, pa)
    np.testing.assert_allclose(np.asarray(grads[0]), gz, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads[1]), gy, rtol=1e-5, atol=1e-6)
    if pw is not None:  # ∂/∂p = Σ_rows y·softplus(-z)
        np.testing.assert_allclose(np.asarray(grads[2]), (y * np.logaddexp(0.0, -z)).sum(0), rtol=1e-5)
    hess = np.asarray(jax.jit(jax.hessian(lambda a: total(a, ya, pa)))(za))
    q = y if pw is None else y * pw
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(hess.reshape(z.size, z.size), np.diag((sig * (1 - sig) * (q + 1 - y)).ravel()),
                               rtol=1e-5, atol=1e-7)
    # Infinite logits: 0 where the label agrees, inf where it does not, and
    # the guarded formula's derivatives (finite where the loss is).
    zi, yi = z.copy(), y.copy()
    zi[0, 0], yi[0, 0] = -np.inf, 0.0
    zi[1, 1], yi[1, 1] = np.inf, 1.0
    zi[2, 2] = np.inf  # label < 1: inf
    out = np.asarray(jax.jit(lambda a, b, p: xent.sigmoid_cross_entropy(a, b, pos_weight=p))(f32(zi), f32(yi), pa))
    assert out[0, 0] == 0.0 and out[1, 1] == 0.0 and out[2, 2] == np.inf
    rest = np.isfinite(zi)
    np.testing.assert_allclose(out[rest], ref.sigmoid(z, yi, pos_weight=pw)[rest], rtol=1e-5)
    g = np.asarray(jax.jit(jax.grad(total))(f32(zi), f32(yi), pa))
    assert g[0, 0] == 0.0 and g[1, 1] == 0.0
    np.testing.assert_allclose(g[rest], ref.sigmoid_grads(z, yi, pos_weight=pw)[0][rest], rtol=1e-5, atol=1e-7)


def test_compiled_gradient(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    loss = lambda z, y: xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean")  # noqa: E731
    if fw.name == "jax":
        import jax

        g = np.asarray(jax.jit(jax.grad(loss))(fw.asarray(Z), fw.asarray(Y)))
    elif fw.name == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def grad(z, y):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                tape.watch(z)
                out = loss(z, y)
            return tape.gradient(out, z)

        g = grad(fw.asarray(Z), fw.asarray(Y)).numpy()
    else:
        import torch

        def step(z, y):  # type: ignore[no-untyped-def]
            z = z.detach().requires_grad_(True)
            loss(z, y).backward()
            return z.grad

        g = torch.compile(step)(fw.asarray(Z), fw.asarray(Y)).numpy()
    np.testing.assert_allclose(g, ref.sparse_grad(Z, Y, alpha=0.1, reduction="mean"), rtol=1e-5, atol=1e-7)


def test_tf_function_without_xla_and_unknown_batch():
    tf = pytest.importorskip("tensorflow")
    spec = [tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None], tf.int64)]
    fn = tf.function(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, reduction="mean"), input_signature=spec)
    np.testing.assert_allclose(fn(tf.constant(Z), tf.constant(Y)).numpy(), ref.sparse(Z, Y, reduction="mean"), rtol=1e-6)
    # Under plain tf.function the values are not inspected: out of range is NaN.
    assert np.isnan(fn(tf.constant(Z), tf.constant(Y * 0 + 9)).numpy())


def test_jax_vmap():
    jax = pytest.importorskip("jax")
    zs = np.stack([Z, Z[::-1]])
    ys = np.stack([Y, Y[::-1]])
    out = jax.vmap(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, reduction="mean"))(zs, ys)
    want = [ref.sparse(zs[i], ys[i], reduction="mean") for i in range(2)]
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6)


def test_tf_autograph_converts_every_loss(monkeypatch):
    # Under tf.function (AutoGraph on, its default) every xent function a loss
    # calls must convert: one that cannot runs as it is, and TF logs a warning
    # for it on every trace (an assignment expression did that once).
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.autograph.impl import api

    fallbacks = []
    fall_back = api._fall_back_unconverted

    def record(f, args, kwargs, options, exc):
        fallbacks.append((getattr(f, "__module__", None) or "", getattr(f, "__qualname__", f), exc))
        return fall_back(f, args, kwargs, options, exc)

    monkeypatch.setattr(api, "_fall_back_unconverted", record)
    z, soft = tf.constant(Z), tf.constant(SOFT / SOFT.sum(-1, keepdims=True))
    labels = tf.constant(np.argmax(SOFT, -1))
    calls = [
        lambda: xent.sparse_softmax_cross_entropy(z, labels, reduction="mean"),
        lambda: xent.sparse_softmax_cross_entropy(z, labels, label_smoothing=0.1, z_loss=1e-4),
        lambda: xent.softmax_cross_entropy(z, soft, reduction="sum"),
        lambda: xent.sigmoid_cross_entropy(z, soft, reduction="mean"),
        lambda: xent.binary_cross_entropy(tf.sigmoid(z), soft),
        lambda: xent.categorical_cross_entropy(tf.nn.softmax(z), soft),
        lambda: xent.sparse_categorical_cross_entropy(tf.nn.softmax(z), labels),
    ]
    for call in calls:
        tf.function(call)()
    assert not [f for f in fallbacks if f[0].startswith("xent")], fallbacks
