"""xent.kl_divergence and xent.js_divergence on every backend and dtype, against
the float64 reference (``kl_terms``/``js_terms`` in xent.testing._reference),
torch's ``F.kl_div`` and optax's KL functions."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import xent
from tests.helpers import SHAPES, assert_matches, loss_shape, rounded
from xent.testing import _reference as R
from xent.testing import tolerance

DTYPES = ["float16", "bfloat16", "float32", "float64"]
REDUCTIONS = ["none", "sum", "mean"]

#: (function, options): every direction, β ∈ {0, 0.3, 0.5, 1} and temperatures other than 1
KINDS = {
    "kl": ("kl", {}),
    "kl-T2.5": ("kl", {"temperature": 2.5}),
    "kl-reverse": ("kl", {"reverse": True}),
    "kl-reverse-T0.7": ("kl", {"reverse": True, "temperature": 0.7}),
    "js-beta0": ("js", {"beta": 0.0}),
    "js-beta0.3-T2": ("js", {"beta": 0.3, "temperature": 2.0}),
    "js-beta0.5": ("js", {"beta": 0.5}),
    "js-beta1": ("js", {"beta": 1.0, "temperature": 1.5}),
}


def _last(x, axis):  # type: ignore[no-untyped-def]
    return np.moveaxis(np.asarray(x, np.float64), axis, -1)


def ours(kind, z, t, **kwargs):  # type: ignore[no-untyped-def]
    fn, opts = KINDS[kind]
    f = xent.kl_divergence if fn == "kl" else xent.js_divergence
    return f(z, t, **opts, **kwargs)


def reference(kind, z, t, axis=-1, reduction="none", w=None):  # type: ignore[no-untyped-def]
    """(value, d/d logits, d/d target logits) in float64, the class axis where it was."""
    fn, opts = KINDS[kind]
    terms = (R.kl_terms if fn == "kl" else R.js_terms)(_last(z, axis), _last(t, axis), **opts)
    if w is not None:
        w = np.broadcast_to(np.asarray(w, np.float64), terms.per.shape)
    value, grads = R.reduced(terms, reduction, w)
    return value, np.moveaxis(grads["predictions"], -1, axis), np.moveaxis(grads["labels"], -1, axis)


def assert_grad_matches(fw, got, ref, dtype, num_classes, spread, what):  # type: ignore[no-untyped-def]
    """:func:`assert_matches` for a gradient that is a sum of terms ``a·(d - f)``
    with ``d`` a log-probability ratio: its rounding error scales with the
    largest ``|d|`` (``spread``), not only with the gradient itself."""
    assert fw.dtype_name(got) == dtype, f"{what}: dtype {fw.dtype_name(got)} != {dtype}"
    rtol, atol = tolerance(dtype, num_classes)
    ref = np.asarray(ref, np.float64)
    scale = max(1.0, float(np.max(np.abs(ref)))) * spread
    np.testing.assert_allclose(fw.to_numpy(got).astype(np.float64), ref, rtol=rtol, atol=atol * scale,
                               err_msg=f"{what} ({fw.name}, {dtype})")


def _spread(kind, z, t, axis=-1):  # type: ignore[no-untyped-def]
    """The largest finite ``|log q - log p|``, at least 1."""
    temperature = KINDS[kind][1].get("temperature", 1.0)
    d = R.log_softmax(_last(t, axis) / temperature) - R.log_softmax(_last(z, axis) / temperature)
    d = np.abs(d[np.isfinite(d)])
    return max(1.0, float(d.max())) if d.size else 1.0


def _reduced(shape, axis, reduction):  # type: ignore[no-untyped-def]
    return 1 if reduction == "none" else int(np.prod(loss_shape(shape, axis)))


def _pair(rng, shape, dtype):  # type: ignore[no-untyped-def]
    """Student and teacher logits: unrelated rows, and rows where they are close
    (a small divergence, whose digits a subtraction of entropies would lose)."""
    z = rng.normal(size=shape) * 3
    t = rng.normal(size=shape) * 3
    flat_t, flat_z = t.reshape(-1), z.reshape(-1)
    flat_t[::4] = flat_z[::4] + rng.normal(size=flat_t[::4].shape) * 0.05
    return rounded(z, dtype), rounded(t, dtype)


# ------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_values(fw, dtype, reduction, kind, shape, axis):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(zlib.crc32(f"{kind}{shape}".encode()))
    z, t = _pair(rng, shape, dtype)
    got = ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype), axis=axis, reduction=reduction)
    want = reference(kind, z, t, axis, reduction)[0]
    assert_matches(fw, got, want, dtype, shape[axis], _reduced(shape, axis, reduction))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["kl", "kl-reverse", "js-beta0.3-T2"])
def test_weights_and_normalizer(fw, dtype, reduction, kind):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    shape, axis = (3, 7, 4), 1
    z, t = _pair(rng, shape, dtype)
    w = rng.uniform(0, 2, size=(1, 4)).astype(np.float32)
    w[0, 1] = 0.0
    got = ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype), axis=axis, weights=fw.asarray(w),
               reduction=reduction)
    assert_matches(fw, got, reference(kind, z, t, axis, reduction, w)[0], dtype, 7, _reduced(shape, axis, reduction))
    if reduction == "mean":
        got = ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype), axis=axis, weights=fw.asarray(w),
                   reduction="mean", normalizer=7.0)
        assert_matches(fw, got, reference(kind, z, t, axis, "sum", w)[0] / 7.0, dtype, 7, 12)
        got = ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype), axis=axis, reduction="mean", normalizer=0)
        assert fw.to_numpy(got) == 0.0


def test_host_target_and_python_lists(fw):  # type: ignore[no-untyped-def]
    """NumPy/list targets follow the logits' framework, as labels do elsewhere."""
    z = [[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]]
    t = [[1.5, 1.0, 0.0], [0.0, 2.0, 2.5]]
    want = reference("kl", np.array(z), np.array(t))[0]
    assert_matches(fw, xent.kl_divergence(fw.asarray(np.array(z), "float64"), t), want, "float64", 3)
    assert_matches(fw, xent.kl_divergence(fw.asarray(np.array(z), "float64"), np.array(t)), want, "float64", 3)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_grads_into_both_arguments(autodiff_fw, dtype, reduction, kind, shape, axis):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(zlib.crc32(f"{kind}{shape}grad".encode()))
    z, t = _pair(rng, shape, dtype)
    w = rng.uniform(0, 2, size=loss_shape(shape, axis)) if reduction == "mean" else None
    kwargs = {} if w is None else {"weights": fw.asarray(w, dtype)}
    gz, gt = fw.grad(lambda a, b: ours(kind, a, b, axis=axis, reduction=reduction, **kwargs),
                     [fw.asarray(z, dtype), fw.asarray(t, dtype)], argnums=(0, 1))
    _, want_z, want_t = reference(kind, z, t, axis, reduction, w)
    spread = _spread(kind, z, t, axis)
    assert_grad_matches(fw, fw.asarray(gz, dtype), want_z, dtype, shape[axis], spread, "grad logits")
    assert_grad_matches(fw, fw.asarray(gt, dtype), want_t, dtype, shape[axis], spread, "grad target_logits")


def _numeric_grad(f, x, h=1e-6):  # type: ignore[no-untyped-def]
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("kind", list(KINDS))
def test_reference_gradients_are_the_derivatives(kind):
    """The reference's analytic gradients against central differences of its own
    values, so that the gradient tests above compare with the right numbers."""
    rng = np.random.default_rng(8)
    z, t = rng.normal(size=(3, 5)) * 2, rng.normal(size=(3, 5)) * 2
    w = rng.uniform(0.5, 2, size=3)
    _, gz, gt = reference(kind, z, t, reduction="mean", w=w)
    np.testing.assert_allclose(gz, _numeric_grad(lambda a: reference(kind, a, t, reduction="mean", w=w)[0], z),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gt, _numeric_grad(lambda b: reference(kind, z, b, reduction="mean", w=w)[0], t),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------- zero probabilities, -inf
def _with_zeros():  # type: ignore[no-untyped-def]
    """Target logits with -inf (q = 0) and far below the rest (q underflows to 0
    in float32 but not float64), the logits -inf at some of the same classes
    (p = 0 where q = 0, so every direction is finite)."""
    rng = np.random.default_rng(12)
    z = rng.normal(size=(5, 6)) * 2
    t = rng.normal(size=(5, 6)) * 2
    t[0, [1, 4]] = -np.inf
    t[1, :5] = -np.inf  # one class left: q one-hot
    t[2, 2] = -1e4  # q = 0 in every dtype
    z[0, 1] = z[1, 3] = z[2, 2] = -np.inf  # p = 0 under q = 0
    z[3, 0] = t[3, 0] = -np.inf  # both: 0·(-inf - -inf)
    z[4, :] = t[4, :]  # identical rows: KL = 0 exactly
    return z, t


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["kl", "kl-T2.5", "js-beta0", "js-beta0.3-T2", "js-beta0.5"])
def test_zero_target_probabilities_values(fw, dtype, kind):  # type: ignore[no-untyped-def]
    z, t = _with_zeros()
    got = fw.to_numpy(ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype)))
    assert np.isfinite(got).all(), got
    assert_matches(fw, ours(kind, fw.asarray(z, dtype), fw.asarray(t, dtype)), reference(kind, z, t)[0], dtype, 6)
    assert got[4] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["kl", "kl-T2.5", "js-beta0", "js-beta0.3-T2", "js-beta0.5"])
def test_zero_target_probabilities_grads(autodiff_fw, dtype, kind):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z, t = _with_zeros()
    gz, gt = fw.grad(lambda a, b: ours(kind, a, b, reduction="sum"), [fw.asarray(z, dtype), fw.asarray(t, dtype)],
                     argnums=(0, 1))
    assert np.isfinite(gz).all() and np.isfinite(gt).all(), (gz, gt)
    _, want_z, want_t = reference(kind, z, t, reduction="sum")
    assert_matches(fw, fw.asarray(gz, dtype), want_z, dtype, 6, what="grad logits")
    assert_matches(fw, fw.asarray(gt, dtype), want_t, dtype, 6, what="grad target_logits")


@pytest.mark.parametrize("kind", ["kl-reverse", "js-beta1", "js-beta0.5"])
def test_zero_model_probabilities(autodiff_fw, kind):  # type: ignore[no-untyped-def]
    """The mirror image: -inf logits (p = 0), finite target. Reverse KL and the JSD
    are finite there, values and gradients."""
    fw = autodiff_fw
    t, z = _with_zeros()
    got = ours(kind, fw.asarray(z, "float64"), fw.asarray(t, "float64"))
    assert_matches(fw, got, reference(kind, z, t)[0], "float64", 6)
    gz, gt = fw.grad(lambda a, b: ours(kind, a, b, reduction="mean"), [fw.asarray(z, "float64"),
                     fw.asarray(t, "float64")], argnums=(0, 1))
    _, want_z, want_t = reference(kind, z, t, reduction="mean")
    assert np.isfinite(gz).all() and np.isfinite(gt).all()
    assert_matches(fw, fw.asarray(gz, "float64"), want_z, "float64", 6, what="grad logits")
    assert_matches(fw, fw.asarray(gt, "float64"), want_t, "float64", 6, what="grad target_logits")


def test_support_mismatch_is_inf(fw):  # type: ignore[no-untyped-def]
    """q > 0 where p = 0: KL(q ‖ p) is infinite; the JSD stays finite (≤ log 2 at β = 1/2)."""
    z = np.array([[0.0, -np.inf, 1.0]])
    t = np.array([[0.0, 1.0, 2.0]])
    kl = fw.to_numpy(xent.kl_divergence(fw.asarray(z), fw.asarray(t)))
    assert kl[0] == np.inf
    js = fw.to_numpy(xent.js_divergence(fw.asarray(z), fw.asarray(t)))
    assert 0 < js[0] <= math.log(2)
    np.testing.assert_allclose(js, reference("js-beta0.5", z, t)[0], rtol=1e-12)


def test_no_underflow_in_log_space(fw):  # type: ignore[no-untyped-def]
    """Far apart float32 logits: log(softmax) would give log(0) = -inf and an
    infinite divergence; log_softmax keeps it finite and exact."""
    z = np.array([[0.0, -200.0, 5.0]], np.float32)
    t = np.array([[0.0, 90.0, -50.0]], np.float32)
    for kind in ["kl", "kl-reverse", "js-beta0.5"]:
        assert_matches(fw, ours(kind, fw.asarray(z), fw.asarray(t)), reference(kind, z, t)[0], "float32", 3)


def test_beta_endpoints_are_the_kls_exactly():
    """β = 0 and β = 1 are the plain KLs (Liger's forward/reverse KL), not the
    limit of the mixture formula (which is 0 there)."""
    rng = np.random.default_rng(2)
    z, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    fwd, rev = R.kl_terms(z, t).per, R.kl_terms(z, t, reverse=True).per
    np.testing.assert_allclose(xent.js_divergence(z, t, beta=0.0), fwd, rtol=1e-13)
    np.testing.assert_allclose(xent.js_divergence(z, t, beta=1.0), rev, rtol=1e-13)
    # near the ends the generalised JSD is about β·KL(q ‖ p) and (1-β)·KL(p ‖ q)
    np.testing.assert_allclose(xent.js_divergence(z, t, beta=1e-7), 1e-7 * fwd, rtol=1e-5)
    np.testing.assert_allclose(xent.js_divergence(z, t, beta=1 - 1e-7), 1e-7 * rev, rtol=1e-5)


# --------------------------------------------------------------- the peers
def _rows(rng, shape=(4, 6)):  # type: ignore[no-untyped-def]
    return rng.normal(size=shape) * 2, rng.normal(size=shape) * 2


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_matches_torch_kl_div(temperature):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    z, t = (torch.as_tensor(a) for a in _rows(rng))
    lp, lq = F.log_softmax(z / temperature, -1), F.log_softmax(t / temperature, -1)
    want = F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
    np.testing.assert_allclose(xent.kl_divergence(z, t, temperature=temperature).numpy(), want.numpy(), rtol=1e-12)
    want = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
    got = xent.kl_divergence(z, t, temperature=temperature, reverse=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    # probability targets (log_target=False), "batchmean": the distillation idiom
    want = F.kl_div(lp, lq.exp(), reduction="batchmean")
    got = xent.kl_divergence(z, t, temperature=temperature, reduction="mean")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    # and the gradients of both, against torch's autograd through kl_div
    za, ta = z.clone().requires_grad_(), t.clone().requires_grad_()
    zb, tb = z.clone().requires_grad_(), t.clone().requires_grad_()
    F.kl_div(F.log_softmax(zb / temperature, -1), F.log_softmax(tb / temperature, -1), log_target=True,
             reduction="batchmean").backward()
    xent.kl_divergence(za, ta, temperature=temperature, reduction="mean").backward()
    np.testing.assert_allclose(za.grad.numpy(), zb.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ta.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_torch_kl_div_is_nan_at_zero_targets_where_xent_is_not():
    """The documented difference: torch's ``exp(t)·(t - x)`` is ``0·(-inf)`` at a -inf target."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t = (torch.as_tensor(a) for a in _with_zeros())
    want = F.kl_div(F.log_softmax(z, -1), F.log_softmax(t, -1), log_target=True, reduction="none").sum(-1)
    got = xent.kl_divergence(z, t)
    assert torch.isnan(want[:4]).any() and torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), reference("kl", z.numpy(), t.numpy())[0], rtol=1e-12, atol=1e-15)


def test_matches_optax():
    pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(6)
    z, t = (jnp.asarray(a) for a in _rows(rng, (3, 4, 5)))
    lp, lq = jax.nn.log_softmax(z), jax.nn.log_softmax(t)
    np.testing.assert_allclose(xent.kl_divergence(z, t), optax.losses.kl_divergence(lp, jnp.exp(lq)), rtol=1e-12)
    np.testing.assert_allclose(xent.kl_divergence(z, t), optax.losses.kl_divergence_with_log_targets(lp, lq),
                               rtol=1e-12)
    np.testing.assert_allclose(xent.kl_divergence(z, t, axis=0),
                               optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(z, 0),
                                                                           jax.nn.log_softmax(t, 0), axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(xent.kl_divergence(z, t, reverse=True),
                               optax.losses.kl_divergence_with_log_targets(lq, lp), rtol=1e-12)
    grads = jax.grad(lambda a, b: xent.kl_divergence(a, b).sum(), argnums=(0, 1))(z, t)
    want = jax.grad(lambda a, b: optax.losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(a), jax.nn.log_softmax(b)).sum(), argnums=(0, 1))(z, t)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- compilers
@pytest.mark.parametrize("kind", ["kl-T2.5", "kl-reverse", "js-beta0.3-T2"])
def test_compiled(autodiff_fw, kind):  # type: ignore[no-untyped-def]
    """Under jax.jit, tf.function(jit_compile=True) and torch.compile(fullgraph=True):
    values and gradients, with -inf target logits."""
    fw = autodiff_fw
    z, t = _with_zeros()
    if kind == "kl-reverse":
        z, t = t, z  # finite in this direction
    with fw.context():
        w = fw.asarray(np.linspace(0.5, 1.5, 5), "float32")
        fn = fw.compile(lambda a, b: ours(kind, a, b, weights=w, reduction="mean"))
        za, ta = fw.asarray(z, "float32"), fw.asarray(t, "float32")
        want, want_z, want_t = reference(kind, z, t, reduction="mean", w=np.linspace(0.5, 1.5, 5))
        assert_matches(fw, fn(za, ta), want, "float32", 6, 5)
        gz, gt = fw.grad(fn, [za, ta], argnums=(0, 1))
        assert_matches(fw, fw.asarray(gz, "float32"), want_z, "float32", 6, what="grad logits")
        assert_matches(fw, fw.asarray(gt, "float32"), want_t, "float32", 6, what="grad target_logits")


def test_jax_jit_of_grad():
    pytest.importorskip("jax")
    import jax

    z, t = _with_zeros()
    g = jax.jit(jax.grad(lambda a, b: xent.js_divergence(a, b, beta=0.3).sum(), argnums=(0, 1)))(z, t)
    want = R.reduced(R.js_terms(z, t, beta=0.3), "sum")[1]
    np.testing.assert_allclose(g[0], want["predictions"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g[1], want["labels"], rtol=1e-10, atol=1e-14)


# -------------------------------------------------------------- bad inputs
def test_bad_inputs(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.zeros((2, 3)), "float32")
    t = fw.asarray(np.ones((2, 3)), "float32")
    for f in (xent.kl_divergence, xent.js_divergence):
        with pytest.raises(ValueError, match=r"target_logits must have the same shape as logits"):
            f(z, fw.asarray(np.zeros((3, 2)), "float32"))
        with pytest.raises(ValueError, match=r"target_logits must have the same shape"):
            f(z, fw.asarray(np.zeros((2, 3, 1)), "float32"))
        with pytest.raises(ValueError, match=r"axis=2 is out of range"):
            f(z, t, axis=2)
        with pytest.raises(ValueError, match=r"axis must be an integer"):
            f(z, t, axis=1.0)
        for bad in (0, -1.0, math.inf, math.nan, "2", True, None):
            with pytest.raises(ValueError, match=r"temperature must be a finite number > 0"):
                f(z, t, temperature=bad)
        with pytest.raises(ValueError, match=r"reduction must be one of"):
            f(z, t, reduction="batchmean")
        with pytest.raises(ValueError, match=r"normalizer applies to reduction='mean' only"):
            f(z, t, reduction="sum", normalizer=3)
        with pytest.raises(ValueError, match=r"weights must broadcast"):
            f(z, t, weights=fw.asarray(np.ones(3), "float32"))
        with pytest.raises(TypeError, match=r"logits must be floating point"):
            f(fw.asarray(np.zeros((2, 3), np.int32)), t)
        with pytest.raises(TypeError, match=r"target_logits must be floating point.*int32"):
            f(z, fw.asarray(np.zeros((2, 3), np.int32)))
        with pytest.raises(TypeError, match=r"target_logits must be floating point.*int64"):
            f(z, np.zeros((2, 3), np.int64))
        with pytest.raises(TypeError, match=r"target_logits must be floating point.*bool"):
            f(z, fw.asarray(np.zeros((2, 3), bool)))
        with pytest.raises(ValueError, match=r"logits needs a class axis"):
            f(fw.asarray(np.float32(1.0)), fw.asarray(np.float32(1.0)))
    for bad in (-0.1, 1.5, math.nan, "0.5", None, True):
        with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\]"):
            xent.js_divergence(z, t, beta=bad)
    with pytest.raises(TypeError, match=r"reverse must be True or False"):
        xent.kl_divergence(z, t, reverse="yes")


def test_two_frameworks_are_a_type_error():
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    import jax.numpy as jnp

    with pytest.raises(TypeError, match=r"target_logits is a jax array but logits is a torch array"):
        xent.kl_divergence(torch.zeros(2, 3), jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"target_logits is a torch array but logits is a jax array"):
        xent.js_divergence(jnp.zeros((2, 3)), torch.zeros(2, 3))


@pytest.mark.parametrize("kind", ["kl", "kl-reverse", "js-beta0.3-T2"])
def test_inputs_not_modified(fw, kind):  # type: ignore[no-untyped-def]
    z, t = _with_zeros()
    za, ta = fw.asarray(z, "float32"), fw.asarray(t, "float32")
    w = fw.asarray(np.ones(5), "float32")
    before = [fw.to_numpy(a).copy() for a in (za, ta, w)]
    ours(kind, za, ta, weights=w, reduction="mean")
    ours(kind, za, ta, axis=0)
    for a, b in zip((za, ta, w), before):
        np.testing.assert_array_equal(fw.to_numpy(a), b)
    z16 = fw.asarray(z, "float16") if "float16" in fw.dtypes else None
    if z16 is not None:
        ours(kind, z16, fw.asarray(t, "float16"))
        np.testing.assert_array_equal(fw.to_numpy(z16), z.astype(np.float16).astype(np.float32))
