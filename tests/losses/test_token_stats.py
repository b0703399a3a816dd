"""xent.token_stats on every backend and dtype: values and gradients against the
float64 formulas of ``xent.testing._reference.token_stats_terms`` (plain NumPy),
extreme logits, agreement with torch and JAX, compilers, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xent
from tests.helpers import SHAPES, assert_matches, loss_shape, rounded
from xent.testing import _reference as R

DTYPES = ["float16", "bfloat16", "float32", "float64"]
FIELDS = ("logprob", "entropy", "logsumexp")

OPTIONS = {
    "plain": {},
    "no_labels": {"labels": False},
    "temperature": {"temperature": 0.7},
    "softcap": {"cap": 2.5},
    "ignore": {"ignore_index": -100},
    "all": {"temperature": 1.6, "cap": 4.0, "ignore_index": 2},
}


def reference(z, y, axis=-1, *, temperature=1.0, cap=None, ignore_index=None):  # type: ignore[no-untyped-def]
    """The float64 statistics of ``z`` (class axis ``axis``), and the derivatives
    of each with respect to ``z`` with the class axis back in place."""
    terms = R.token_stats_terms(
        np.moveaxis(np.asarray(z, np.float64), axis, -1), y,
        temperature=temperature, cap=cap, ignore_index=ignore_index,
    )
    for name in FIELDS:
        d = terms["d_" + name]
        terms["d_" + name] = None if d is None else np.moveaxis(d, -1, axis)
    return terms


def _case(option, shape, axis, dtype, seed=0):  # type: ignore[no-untyped-def]
    """Logits rounded to ``dtype``, labels, xent's keyword arguments and the reference's."""
    opts = OPTIONS[option]
    rng = np.random.default_rng(seed)
    c = shape[axis]
    z = rounded(rng.normal(size=shape) * 3, dtype)
    y = rng.integers(0, c, size=loss_shape(shape, axis))
    kwargs, ref_kwargs = {}, {}
    if "temperature" in opts:
        kwargs["temperature"] = ref_kwargs["temperature"] = opts["temperature"]
    if "cap" in opts:
        kwargs["logit_softcap"] = ref_kwargs["cap"] = opts["cap"]
    if "ignore_index" in opts:
        y.flat[::3] = opts["ignore_index"]
        kwargs["ignore_index"] = ref_kwargs["ignore_index"] = opts["ignore_index"]
    return z, (y if opts.get("labels", True) else None), kwargs, ref_kwargs


def _sum(fw, x):  # type: ignore[no-untyped-def]
    """The framework's own sum of ``x`` (not xent's)."""
    if fw.name == "tensorflow":
        return fw.tf.reduce_sum(x)
    if fw.name == "jax":
        return fw.jnp.sum(x)
    return x.sum()


# ------------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("shape,axis", SHAPES)
def test_values(fw, dtype, option, shape, axis):  # type: ignore[no-untyped-def]
    z, y, kwargs, ref_kwargs = _case(option, shape, axis, dtype)
    logits = fw.asarray(z, dtype)
    got = xent.token_stats(logits, None if y is None else fw.asarray(y), axis=axis, **kwargs)
    want = reference(z, y, axis, **ref_kwargs)
    assert isinstance(got, xent.TokenStats)
    assert got._fields == FIELDS
    c = shape[axis]
    if y is None:
        assert got.logprob is None
    else:
        assert_matches(fw, got.logprob, want["logprob"], dtype, c, what="logprob")
    assert_matches(fw, got.entropy, want["entropy"], dtype, c, what="entropy")
    assert_matches(fw, got.logsumexp, want["logsumexp"], dtype, c, what="logsumexp")


def test_ignored_tokens_have_zero_logprob(fw):  # type: ignore[no-untyped-def]
    z = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    got = xent.token_stats(fw.asarray(z), np.array([1, -1, 4, -1]), ignore_index=-1)
    lp = fw.to_numpy(got.logprob)
    assert lp[1] == 0.0 and lp[3] == 0.0
    assert np.all(lp[[0, 2]] < 0)
    # entropy and logsumexp do not depend on the labels: given at ignored tokens too
    want = reference(z, None)
    np.testing.assert_allclose(fw.to_numpy(got.entropy), want["entropy"], rtol=1e-5)


def test_python_lists_and_numpy_labels(fw):  # type: ignore[no-untyped-def]
    z = np.array([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]], np.float32)
    want = reference(z, np.array([0, 2]))["logprob"]
    for labels in ([0, 2], np.array([0, 2], np.int32), fw.asarray(np.array([0, 2], np.int64))):
        got = xent.token_stats(fw.asarray(z), labels)
        np.testing.assert_allclose(fw.to_numpy(got.logprob), want, rtol=1e-6)


# ---------------------------------------------------------------- gradients


GRAD_OPTIONS = ["plain", "all", "ignore"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("field", [*FIELDS, "weighted"])
@pytest.mark.parametrize("option", GRAD_OPTIONS)
@pytest.mark.parametrize("shape,axis", SHAPES[:3])
def test_grads(autodiff_fw, dtype, field, option, shape, axis):  # type: ignore[no-untyped-def]
    """d/d logits of Σ r·field (random per-token r), or of Σ a·logprob + b·entropy
    + c·logsumexp, against the analytic float64 derivatives."""
    fw = autodiff_fw
    z, y, kwargs, ref_kwargs = _case(option, shape, axis, dtype, seed=1)
    rng = np.random.default_rng(2)
    coef = {name: rng.uniform(-2, 2, size=y.shape) for name in FIELDS}
    names = FIELDS if field == "weighted" else (field,)
    labels = fw.asarray(y)
    weights = {name: fw.asarray(coef[name], dtype) for name in names}

    def total(a):  # type: ignore[no-untyped-def]
        stats = xent.token_stats(a, labels, axis=axis, **kwargs)
        return sum(_sum(fw, getattr(stats, name) * weights[name]) for name in names)

    (g,) = fw.grad(total, [fw.asarray(z, dtype)])
    want = reference(z, y, axis, **ref_kwargs)
    expected = sum(np.expand_dims(coef[name], axis) * want["d_" + name] for name in names)
    assert np.all(np.isfinite(g))
    assert_matches(fw, fw.asarray(g, dtype), expected, dtype, shape[axis], what=f"d {field}")


@pytest.mark.parametrize("option", ["plain", "all", "no_labels"])
def test_reference_derivatives_match_finite_differences(option):  # type: ignore[no-untyped-def]
    """The analytic derivatives the gradient tests use are right (central
    differences of the reference's own float64 values)."""
    z, y, _, ref_kwargs = _case(option, (3, 5), -1, "float64", seed=4)
    want = reference(z, y, **ref_kwargs)
    h = 1e-6
    for name in FIELDS:
        if want[name] is None:
            continue
        numeric = np.zeros_like(z)
        for i in np.ndindex(z.shape):
            step = np.zeros_like(z)
            step[i] = h
            up = reference(z + step, y, **ref_kwargs)[name].sum()
            down = reference(z - step, y, **ref_kwargs)[name].sum()
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(want["d_" + name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


# ----------------------------------------------------------- extreme logits

INF = math.inf
EXTREME = np.array([
    [0.0, -INF, 1.0, -INF, 2.0, 0.5],
    [1e4, -1e4, 0.0, 1e4, -INF, 5.0],  # a tie at the max, classes far below it
    [-1e4, -1e4, -1e4, -1e4, -1e4, -1e4 + 4],
    [-INF, -INF, -INF, -INF, -INF, 3.0],  # one live class: entropy exactly 0
])
EXTREME_LABELS = np.array([2, 3, 0, 5])
EXTREME_OPTIONS = {"plain": {}, "temperature": {"temperature": 0.5}, "softcap": {"cap": 30.0}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("option", list(EXTREME_OPTIONS))
def test_extreme_logits_values(fw, dtype, option):  # type: ignore[no-untyped-def]
    z = rounded(EXTREME, dtype)
    opts = EXTREME_OPTIONS[option]
    kwargs = {"temperature": opts.get("temperature", 1.0), "logit_softcap": opts.get("cap")}
    got = xent.token_stats(fw.asarray(z, dtype), EXTREME_LABELS, **kwargs)
    want = reference(z, EXTREME_LABELS, temperature=kwargs["temperature"], cap=kwargs["logit_softcap"])
    for name in FIELDS:
        value = fw.to_numpy(getattr(got, name))
        assert np.all(np.isfinite(value)), (name, value)
        # each row on its own scale: the logsumexp of a 1e4 row is 1e4
        for row in range(len(z)):
            assert_matches(fw, getattr(got, name)[row], want[name][row], dtype, 6, what=f"{name} row {row}")
    assert fw.to_numpy(got.entropy)[3] == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("option", list(EXTREME_OPTIONS))
def test_extreme_logits_grads(autodiff_fw, dtype, option):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z = rounded(EXTREME, dtype)
    opts = EXTREME_OPTIONS[option]
    kwargs = {"temperature": opts.get("temperature", 1.0), "logit_softcap": opts.get("cap")}
    labels = fw.asarray(EXTREME_LABELS)
    want = reference(z, EXTREME_LABELS, temperature=kwargs["temperature"], cap=kwargs["logit_softcap"])
    for name in FIELDS:
        (g,) = fw.grad(lambda a, name=name: _sum(fw, getattr(xent.token_stats(a, labels, **kwargs), name)),
                       [fw.asarray(z, dtype)])
        assert np.all(np.isfinite(g)), (name, g)
        assert_matches(fw, fw.asarray(g, dtype), want["d_" + name], dtype, 6, what=f"d {name}")


def test_label_at_a_minus_inf_logit(autodiff_fw):  # type: ignore[no-untyped-def]
    """logprob is -inf there (the label is impossible), its gradient the finite onehot - p."""
    fw = autodiff_fw
    z = np.array([[0.0, -INF, 1.0]])
    labels = fw.asarray(np.array([1]))
    got = xent.token_stats(fw.asarray(z), labels)
    assert fw.to_numpy(got.logprob)[0] == -INF
    (g,) = fw.grad(lambda a: _sum(fw, xent.token_stats(a, labels).logprob), [fw.asarray(z)])
    p = np.exp(z - np.log(np.exp(z).sum()))
    np.testing.assert_allclose(g, np.eye(3)[[1]] - p, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------ the frameworks' own


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("masked", [False, True])
def test_agrees_with_torch(dtype, masked):  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, 7)) * 4
    if masked:
        z[rng.random(z.shape) < 0.3] = -INF
        z[:, 0] = rng.normal(size=6)  # a live class per row
    y = np.zeros(6, np.int64)  # (class 0 is live)
    t = torch.tensor(z, dtype=getattr(torch, dtype), requires_grad=True)
    labels = torch.tensor(y)
    ours = xent.token_stats(t, labels)
    dist = torch.distributions.Categorical(logits=t)
    theirs = (torch.log_softmax(t, -1).gather(-1, labels[:, None])[:, 0], dist.entropy(), torch.logsumexp(t, -1))
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for name, mine, native in zip(FIELDS, ours, theirs):
        assert mine.dtype == t.dtype
        np.testing.assert_allclose(mine.detach().numpy(), native.detach().numpy(), rtol=rtol, atol=rtol, err_msg=name)
        (g_mine,) = torch.autograd.grad(mine.sum(), t, retain_graph=True)
        (g_native,) = torch.autograd.grad(native.sum(), t, retain_graph=True)
        if torch.isfinite(g_native).all():
            np.testing.assert_allclose(g_mine.numpy(), g_native.numpy(), rtol=rtol, atol=rtol, err_msg=f"d {name}")
        assert torch.isfinite(g_mine).all()


@pytest.mark.parametrize("masked", [False, True])
def test_agrees_with_jax(masked):  # type: ignore[no-untyped-def]
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from jax.scipy.special import entr

    rng = np.random.default_rng(6)
    z = rng.normal(size=(6, 7)) * 4
    if masked:
        z[rng.random(z.shape) < 0.3] = -INF
        z[:, 0] = rng.normal(size=6)
    y = np.zeros(6, np.int32)
    za, ya = jnp.asarray(z), jnp.asarray(y)

    def native(a):  # type: ignore[no-untyped-def]
        lsm = jax.nn.log_softmax(a, -1)
        return (jnp.take_along_axis(lsm, ya[:, None], -1)[:, 0],
                entr(jax.nn.softmax(a, -1)).sum(-1), jax.nn.logsumexp(a, -1))

    ours = xent.token_stats(za, ya)
    for k, name in enumerate(FIELDS):
        np.testing.assert_allclose(np.asarray(ours[k]), np.asarray(native(za)[k]), rtol=1e-12, atol=1e-12,
                                   err_msg=name)
        g_mine = jax.grad(lambda a, k=k: jnp.sum(xent.token_stats(a, ya)[k]))(za)
        g_native = jax.grad(lambda a, k=k: jnp.sum(native(a)[k]))(za)
        assert np.all(np.isfinite(np.asarray(g_mine)))
        if np.all(np.isfinite(np.asarray(g_native))):  # (entr's derivative at p = 0 is inf)
            np.testing.assert_allclose(np.asarray(g_mine), np.asarray(g_native), rtol=1e-10, atol=1e-12,
                                       err_msg=f"d {name}")


# ----------------------------------------------------------------- compilers

C = 5
COMPILE_KW = {"temperature": 0.8, "ignore_index": -1, "logit_softcap": 6.0}


def _compile_case():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(8)
    z = (rng.normal(size=(6, C)) * 3).astype(np.float32)
    z[1, 2] = -INF
    y = rng.integers(0, C, size=6).astype(np.int32)
    y[4] = -1
    bad = y.copy()
    bad[2] = C + 3  # out of range: NaN under a trace
    want = reference(z, y, temperature=0.8, cap=6.0, ignore_index=-1)
    return z, y, bad, want


def _check_compiled(values, grad, bad_values, want):  # type: ignore[no-untyped-def]
    for name, value in zip(FIELDS, values):
        np.testing.assert_allclose(value, want[name], rtol=2e-5, atol=2e-5, err_msg=name)
    np.testing.assert_allclose(grad, sum(want["d_" + name] for name in FIELDS), rtol=2e-5, atol=2e-5)
    logprob = bad_values[0]
    assert np.isnan(logprob[2])
    mask = np.arange(6) != 2
    np.testing.assert_allclose(logprob[mask], want["logprob"][mask], rtol=2e-5, atol=2e-5)


def test_jax_jit():  # type: ignore[no-untyped-def]
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, y, bad, want = _compile_case()

    @jax.jit
    def stats(a, b):  # type: ignore[no-untyped-def]
        return xent.token_stats(a, b, **COMPILE_KW)

    @jax.jit
    def grad(a, b):  # type: ignore[no-untyped-def]
        return jax.grad(lambda x: sum(jnp.sum(f) for f in xent.token_stats(x, b, **COMPILE_KW)))(a)

    got = stats(jnp.asarray(z), jnp.asarray(y))
    assert isinstance(got, xent.TokenStats)
    _check_compiled([np.asarray(v) for v in got], np.asarray(grad(jnp.asarray(z), jnp.asarray(y))),
                    [np.asarray(v) for v in stats(jnp.asarray(z), jnp.asarray(bad))], want)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_none_batch(jit_compile):  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow")
    z, y, bad, want = _compile_case()
    spec = [tf.TensorSpec([None, C], tf.float32), tf.TensorSpec([None], tf.int32)]

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def stats(a, b):  # type: ignore[no-untyped-def]
        return xent.token_stats(a, b, **COMPILE_KW)

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def grad(a, b):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = tf.add_n([tf.reduce_sum(f) for f in xent.token_stats(a, b, **COMPILE_KW)])
        return tape.gradient(total, a)

    got = stats(tf.constant(z), tf.constant(y))
    assert isinstance(got, xent.TokenStats)
    _check_compiled([v.numpy() for v in got], grad(tf.constant(z), tf.constant(y)).numpy(),
                    [v.numpy() for v in stats(tf.constant(z), tf.constant(bad))], want)


def test_torch_compile_fullgraph():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    z, y, bad, want = _compile_case()

    @torch.compile(fullgraph=True)
    def stats(a, b):  # type: ignore[no-untyped-def]
        return xent.token_stats(a, b, **COMPILE_KW)

    a = torch.tensor(z, requires_grad=True)
    got = stats(a, torch.tensor(y))
    assert isinstance(got, xent.TokenStats)
    (g,) = torch.autograd.grad(sum(f.sum() for f in got), a)
    _check_compiled([v.detach().numpy() for v in got], g.numpy(),
                    [v.detach().numpy() for v in stats(a, torch.tensor(bad))], want)


# ---------------------------------------------------------------- bad input

Z = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("axis", [2, -3, 1.0, "x"])
def test_bad_axis(fw, axis):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="axis"):
        xent.token_stats(fw.asarray(Z), [0, 1], axis=axis)


def test_label_shape_mismatch(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"logits.shape=\(2, 3\), labels.shape=\(3,\)"):
        xent.token_stats(fw.asarray(Z), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels.shape=\(2, 1\)"):
        xent.token_stats(fw.asarray(Z), np.array([[0], [1]]))


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, INF, math.nan, np.float32(-2)])
def test_bad_temperature_value(fw, temperature):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        xent.token_stats(fw.asarray(Z), temperature=temperature)


@pytest.mark.parametrize("temperature", ["1", None, True, np.array([1.0])])
def test_bad_temperature_type(fw, temperature):  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="temperature must be a real number"):
        xent.token_stats(fw.asarray(Z), temperature=temperature)


@pytest.mark.parametrize("cap", [0.0, -1.0, INF])
def test_bad_softcap(fw, cap):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="logit_softcap"):
        xent.token_stats(fw.asarray(Z), logit_softcap=cap)


def test_non_integer_labels(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        xent.token_stats(fw.asarray(Z), fw.asarray(np.array([0.0, 1.0], np.float32)))


def test_non_floating_logits(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="logits must be floating point"):
        xent.token_stats(fw.asarray(np.zeros((2, 3), np.int32)), [0, 1])


def test_out_of_range_labels_raise_eagerly(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="out-of-range label values: 3"):
        xent.token_stats(fw.asarray(Z), [0, 3])
    with pytest.raises(ValueError, match="out-of-range label values: -1"):
        xent.token_stats(fw.asarray(Z), [0, -1], ignore_index=-100)


def test_ignore_index_needs_labels(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="ignore_index applies to labels"):
        xent.token_stats(fw.asarray(Z), ignore_index=-100)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        xent.token_stats(fw.asarray(Z), [0, 1], ignore_index=1.5)


def test_no_class_axis(fw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="class axis"):
        xent.token_stats(fw.asarray(np.float32(1.0)))
    with pytest.raises(ValueError, match="no classes"):
        xent.token_stats(fw.asarray(np.zeros((2, 0), np.float32)), [0, 0])


def test_mixed_frameworks():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="labels is a torch array but logits is a numpy array"):
        xent.token_stats(Z, torch.tensor([0, 1]))
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="labels is a jax array but logits is a torch array"):
        xent.token_stats(torch.zeros(2, 3), jnp.asarray([0, 1]))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_inputs_unmodified(fw, dtype):  # type: ignore[no-untyped-def]
    z = rounded(EXTREME, dtype)
    logits, labels = fw.asarray(z, dtype), fw.asarray(EXTREME_LABELS)
    before = fw.to_numpy(logits).copy(), fw.to_numpy(labels).copy()
    xent.token_stats(logits, labels, temperature=0.5, logit_softcap=30.0, ignore_index=3)
    np.testing.assert_array_equal(fw.to_numpy(logits), before[0])
    np.testing.assert_array_equal(fw.to_numpy(labels), before[1])
    if fw.name == "torch":
        assert logits._version == 0 and labels._version == 0
