"""The KL dialects, ``xent.compat.torch.kl_div`` and ``xent.compat.optax``'s KL
functions, on every backend against torch's own ``F.kl_div`` and optax's own
functions (never against xent itself)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xent.compat import optax as od
from xent.compat import torch as F

rng = np.random.default_rng(20260101)
SHAPE = (4, 3, 5)
LOGITS = rng.normal(scale=2.0, size=SHAPE)
LOG_P = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))  # log-probabilities
RAW = rng.normal(size=SHAPE)  # log_predictions that are not normalised (neither library normalises)
Q = rng.dirichlet(np.ones(5), size=SHAPE[:-1])
Q[0, 0, [1, 3]] = 0.0  # zeros in the targets
Q[1, 2, :4] = 0.0
Q[1, 2, 4] = 1.0
Q /= Q.sum(-1, keepdims=True)
with np.errstate(divide="ignore"):
    LOG_Q = np.log(Q)  # -inf where Q is 0


def torch_F():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch").nn.functional


def T(x):  # type: ignore[no-untyped-def]
    import torch

    return torch.as_tensor(np.array(x))


def check(fw, got, want, rtol=1e-10, atol=1e-12):  # type: ignore[no-untyped-def]
    got = fw.to_numpy(got) if fw is not None else np.asarray(got)
    np.testing.assert_allclose(got, np.asarray(want, np.float64), rtol=rtol, atol=atol)


# -------------------------------------------------------------------- torch
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("inputs", ["log_probs", "raw"])
def test_kl_div_matches_torch(fw, reduction, log_target, inputs):  # type: ignore[no-untyped-def]
    tF = torch_F()
    x = LOG_P if inputs == "log_probs" else RAW
    target = LOG_Q if log_target else Q
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's notice that "mean" is not "batchmean"
        want = tF.kl_div(T(x), T(target), reduction=reduction, log_target=log_target)
        if log_target:
            # torch: exp(-inf)·(-inf - x) = 0·(-inf) = NaN at a zero target; xent: 0 there
            mask = np.isfinite(LOG_Q)
            assert np.isnan(want.numpy()[~mask]).all() if reduction == "none" else np.isnan(want.numpy())
            want = tF.kl_div(T(x), T(np.where(mask, LOG_Q, -1e300)), reduction=reduction, log_target=True)
    got = F.kl_div(fw.asarray(x, "float64"), fw.asarray(target, "float64"), reduction=reduction,
                   log_target=log_target)
    check(fw, got, want.numpy())
    assert fw.dtype_name(got) == "float64"


@pytest.mark.parametrize("legacy", [{"size_average": False}, {"reduce": False}, {"size_average": True, "reduce": True},
                                    {"reduce": False, "reduction": "batchmean"}])
def test_kl_div_legacy_arguments(legacy):  # type: ignore[no-untyped-def]
    tF = torch_F()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = tF.kl_div(T(LOG_P), T(Q), **legacy)
    check(None, F.kl_div(LOG_P, Q, **legacy), want.numpy())


def test_kl_div_gradients_match_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for log_target, target in [(False, Q), (True, np.log(np.clip(Q, 1e-3, None)))]:
        a, b = T(LOG_P).requires_grad_(), T(LOG_P).requires_grad_()
        ta, tb = T(target).requires_grad_(), T(target).requires_grad_()
        F.kl_div(a, ta, reduction="batchmean", log_target=log_target).backward()
        tF.kl_div(b, tb, reduction="batchmean", log_target=log_target).backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-15)
        if log_target:  # (with probability targets torch's d/d target is -inf at a zero target)
            np.testing.assert_allclose(ta.grad.numpy(), tb.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_kl_div_finite_where_torch_is_nan():
    """Zero targets under -inf log-probabilities (a masked class): 0, with finite
    gradients; torch gives NaN."""
    torch = pytest.importorskip("torch")
    x = LOG_P.copy()
    x[Q == 0] = -np.inf
    want = torch.nn.functional.kl_div(T(x), T(Q), reduction="sum")
    assert torch.isnan(want)
    xa = T(x).requires_grad_()
    got = F.kl_div(xa, T(Q), reduction="sum")
    got.backward()
    finite = Q > 0
    np.testing.assert_allclose(got.item(), (Q[finite] * (np.log(Q[finite]) - x[finite])).sum(), rtol=1e-12)
    np.testing.assert_array_equal(xa.grad.numpy(), -Q)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_kl_div_half_and_single(fw, dtype):  # type: ignore[no-untyped-def]
    if dtype not in fw.dtypes:
        pytest.skip(f"{fw.name} has no {dtype}")
    tF = torch_F()
    import torch

    x = fw.asarray(LOG_P, dtype)
    got = F.kl_div(x, fw.asarray(Q, dtype), reduction="batchmean")
    assert fw.dtype_name(got) == dtype
    want = tF.kl_div(T(fw.to_numpy(x)).double(), T(fw.to_numpy(fw.asarray(Q, dtype))).double(),
                     reduction="batchmean")
    eps = {"float16": 2**-10, "bfloat16": 2**-7, "float32": 2**-23}[dtype]
    check(fw, got, want.numpy(), rtol=2 * eps, atol=2 * eps)
    assert torch is not None


def test_kl_div_bad_arguments():
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.kl_div(LOG_P, Q, reduction="batch")
    with pytest.raises(TypeError, match="floating point"):
        F.kl_div(np.zeros((2, 3), np.int64), np.zeros((2, 3)))


def test_kl_div_distillation_idiom_matches_xent():
    """``F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean") * T²``,
    the usual distillation loss, through the dialect and through torch."""
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    s, t = T(rng.normal(size=(6, 7))), T(rng.normal(size=(6, 7)))
    want = tF.kl_div(tF.log_softmax(s / 2, -1), tF.softmax(t / 2, -1), reduction="batchmean") * 4
    got = F.kl_div(tF.log_softmax(s / 2, -1), tF.softmax(t / 2, -1), reduction="batchmean") * 4
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


# -------------------------------------------------------------------- optax
def optax_losses():  # type: ignore[no-untyped-def]
    return pytest.importorskip("optax").losses


def J(x):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp

    return jnp.asarray(np.asarray(x))


@pytest.mark.parametrize("name", ["kl_divergence", "kl_divergence_with_log_targets", "generalized_kl_divergence"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None])
@pytest.mark.parametrize("inputs", ["log_probs", "raw"])
def test_optax_kl_functions_match_optax(fw, name, axis, inputs):  # type: ignore[no-untyped-def]
    ol = optax_losses()
    x = LOG_P if inputs == "log_probs" else RAW
    log_t = name == "kl_divergence_with_log_targets"
    # optax gives NaN at a -inf log target (0·-inf): compare there with a finite, tiny one
    target = LOG_Q if log_t else Q
    reference_target = np.where(np.isfinite(LOG_Q), LOG_Q, -1e300) if log_t else Q
    want = getattr(ol, name)(J(x), J(reference_target), axis=axis)
    got = getattr(od, name)(fw.asarray(x, "float64"), fw.asarray(target, "float64"), axis=axis)
    check(fw, got, want)
    if log_t:
        assert np.isnan(np.asarray(getattr(ol, name)(J(x), J(target), axis=axis))).any()


@pytest.mark.parametrize("name", ["kl_divergence", "kl_divergence_with_log_targets", "generalized_kl_divergence"])
@pytest.mark.parametrize("mask", ["elements", "classes"])
def test_optax_kl_where(fw, name, mask):  # type: ignore[no-untyped-def]
    ol = optax_losses()
    w = rng.random(SHAPE) < 0.6 if mask == "elements" else np.array([True, False, True, True, False])
    target = np.log(np.clip(Q, 1e-6, None)) if name == "kl_divergence_with_log_targets" else Q
    want = getattr(ol, name)(J(RAW), J(target), where=J(w))
    got = getattr(od, name)(fw.asarray(RAW, "float64"), fw.asarray(target, "float64"), where=fw.asarray(w))
    check(fw, got, want)


def test_optax_convex_kl_divergence_is_deprecated_like_optax():
    ol = optax_losses()
    with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
        want = ol.convex_kl_divergence(J(LOG_P), J(Q))
    with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
        got = od.convex_kl_divergence(LOG_P, Q)
    check(None, got, want)


def test_optax_kl_jit_and_grad_match_optax():
    ol = optax_losses()
    import jax

    x, q = J(LOG_P), J(Q)
    for ours, theirs in [(od.kl_divergence, ol.kl_divergence), (od.generalized_kl_divergence,
                                                                ol.generalized_kl_divergence)]:
        check(None, jax.jit(ours)(x, q), theirs(x, q))
        g = jax.grad(lambda a, b: ours(a, b).sum(), argnums=(0, 1))(x, J(np.clip(Q, 1e-3, None)))
        h = jax.grad(lambda a, b: theirs(a, b).sum(), argnums=(0, 1))(x, J(np.clip(Q, 1e-3, None)))
        for a, b in zip(g, h):
            check(None, a, b)


def test_optax_kl_finite_where_optax_is_nan():
    """Zero targets under -inf log-predictions: 0 here, NaN in optax (``0·inf``)."""
    ol = optax_losses()
    x = LOG_P.copy()
    x[Q == 0] = -np.inf
    assert np.isnan(np.asarray(ol.kl_divergence(J(x), J(Q)))).any()
    got = np.asarray(od.kl_divergence(x, Q))
    finite = Q > 0
    want = np.where(finite, Q * (np.log(np.where(finite, Q, 1.0)) - np.where(finite, x, 0.0)), 0.0).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_optax_kl_names_exist_in_optax_and_losses_namespace():
    ol = optax_losses()
    for name in ("kl_divergence", "kl_divergence_with_log_targets", "generalized_kl_divergence",
                 "convex_kl_divergence"):
        assert hasattr(ol, name), name
        assert getattr(od.losses, name) is getattr(od, name)
        assert name in od.__all__
        assert hasattr(getattr(od, name), "autograph_info__")
    assert "kl_div" in F.__all__ and hasattr(F.kl_div, "autograph_info__")


def test_optax_kl_bad_dtypes():
    with pytest.raises(TypeError, match="log_predictions must be floating point"):
        od.kl_divergence(np.zeros((2, 3), np.int32), Q[0, :2, :3])
    with pytest.raises(TypeError, match="targets must be floating point"):
        od.kl_divergence(LOG_P[0, :2, :3], np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match="log_targets must be floating point"):
        od.kl_divergence_with_log_targets(LOG_P[0, :2, :3], np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="out of bounds"):
        od.kl_divergence(LOG_P, Q, axis=3)


def test_inputs_not_modified(fw):  # type: ignore[no-untyped-def]
    x, q, lq = fw.asarray(LOG_P, "float64"), fw.asarray(Q, "float64"), fw.asarray(LOG_Q, "float64")
    before = [fw.to_numpy(a).copy() for a in (x, q, lq)]
    F.kl_div(x, q, reduction="batchmean")
    F.kl_div(x, lq, log_target=True)
    od.kl_divergence(x, q, axis=(0, 2))
    od.kl_divergence_with_log_targets(x, lq)
    od.generalized_kl_divergence(x, q, where=fw.asarray(Q > 0))
    for a, b in zip((x, q, lq), before):
        np.testing.assert_array_equal(fw.to_numpy(a), b)


def test_compiled_dialects(autodiff_fw):  # type: ignore[no-untyped-def]
    """Both dialects under jax.jit, tf.function(jit_compile=True) and
    torch.compile(fullgraph=True), against the eager peers."""
    fw = autodiff_fw
    tF = torch_F()
    ol = optax_losses()
    with fw.context():
        x, q = fw.asarray(LOG_P, "float32"), fw.asarray(Q, "float32")
        got = fw.compile(lambda a, b: F.kl_div(a, b, reduction="batchmean"))(x, q)
        check(fw, got, tF.kl_div(T(LOG_P), T(Q), reduction="batchmean").numpy(), rtol=1e-5, atol=1e-6)
        got = fw.compile(lambda a, b: od.kl_divergence(a, b))(x, q)
        check(fw, got, ol.kl_divergence(J(LOG_P), J(Q)), rtol=1e-5, atol=1e-6)
