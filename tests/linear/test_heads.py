"""The LM-head forms of the divergences and per-token statistics
(``xent.linear_kl_divergence``, ``linear_js_divergence``, ``linear_token_stats``)
on every backend, against float64 formulas applied to the full logits
``h @ W.T + b`` (``xent.testing._reference``): values, gradients into hidden,
weight and bias (the reference's logit gradient through the product), half
precision, the compilers, and the memory that never holds ``[tokens, V]``."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests.helpers import assert_matches, largest_torch_tensor, rounded
from xent.testing._reference import js_terms, kl_terms, token_stats_terms

TOKENS, H, HT, V = (2, 5), 6, 4, 11  # 10 tokens: chunk 3 leaves a ragged last chunk
KINDS = {
    "kl": {"temperature": 1.0},
    "kl-T2": {"temperature": 2.0},
    "reverse": {"reverse": True},
    "js": {"beta": 0.5},
    "js-0.3-T": {"beta": 0.3, "temperature": 1.5},
    "js-0": {"beta": 0.0},
    "js-1": {"beta": 1.0},
}


def _sum(x):  # type: ignore[no-untyped-def]
    return xent.get_backend(x).sum(x)


def _inputs(dtype, seed=0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    h = rounded(rng.normal(size=TOKENS + (H,)), dtype)
    W = rounded(rng.normal(size=(V, H)) * 0.7, dtype)
    b = rounded(rng.normal(size=V) * 0.5, dtype)
    ht = rounded(rng.normal(size=TOKENS + (HT,)), dtype)
    Wt = rounded(rng.normal(size=(V, HT)), dtype)
    return h, W, b, ht, Wt


def _call(kind, fw, h, W, b, ht, Wt, dtype, **kw):  # type: ignore[no-untyped-def]
    opts = dict(KINDS[kind])
    a = fw.asarray
    if "beta" in opts:
        return xent.linear_js_divergence(a(h, dtype), a(W, dtype), a(ht, dtype), a(Wt, dtype), bias=a(b, dtype),
                                         **opts, **kw)
    return xent.linear_kl_divergence(a(h, dtype), a(W, dtype), a(ht, dtype), a(Wt, dtype), bias=a(b, dtype),
                                     **opts, **kw)


def _terms(kind, h, W, b, ht, Wt):  # type: ignore[no-untyped-def]
    z, t = h @ W.T + b, ht @ Wt.T
    opts = dict(KINDS[kind])
    if "beta" in opts:
        return js_terms(z, t, beta=opts["beta"], temperature=opts.get("temperature", 1.0))
    return kl_terms(z, t, temperature=opts.get("temperature", 1.0), reverse=opts.get("reverse", False))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("kind", list(KINDS))
def test_divergence_values(fw, dtype, reduction, chunk, kind):  # type: ignore[no-untyped-def]
    h, W, b, ht, Wt = _inputs(dtype)
    rng = np.random.default_rng(1)
    w = rounded(rng.uniform(0, 2, size=TOKENS), dtype)
    got = _call(kind, fw, h, W, b, ht, Wt, dtype, reduction=reduction, chunk_size=chunk,
                weights=fw.asarray(w, dtype))
    per = _terms(kind, h, W, b, ht, Wt).per * w
    want = {"none": per, "sum": per.sum(), "mean": per.sum() / w.sum()}[reduction]
    assert_matches(fw, got, want, dtype, V, 1 if reduction == "none" else per.size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_divergence_gradients(autodiff_fw, dtype, kind):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    h, W, b, ht, Wt = _inputs(dtype, seed=2)
    a = fw.asarray
    opts = dict(KINDS[kind])
    fn = xent.linear_js_divergence if "beta" in opts else xent.linear_kl_divergence
    grads = fw.grad(lambda x, w, c: fn(x, w, a(ht, dtype), a(Wt, dtype), bias=c, chunk_size=3, reduction="sum",
                                       **opts), [a(h, dtype), a(W, dtype), a(b, dtype)], argnums=(0, 1, 2))
    g = _terms(kind, h, W, b, ht, Wt).dpred.reshape(-1, V)  # d loss / d logits, [N, V]
    h2 = h.reshape(-1, H)
    want = [(g @ W).reshape(h.shape), g.T @ h2, g.sum(0)]
    for got, ref, what in zip(grads, want, ("hidden", "weight", "bias")):
        assert_matches(fw, fw.asarray(np.asarray(got), dtype), ref, dtype, V, what=what)


STATS = {
    "plain": {},
    "no-labels": {"labels": False},
    "temperature+softcap": {"temperature": 1.7, "logit_softcap": 2.5},
    "ignore": {"ignore_index": -100},
}


def _stats_case(option, dtype, seed=3):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    h, W, b, _, _ = _inputs(dtype, seed)
    opts = dict(STATS[option])
    y = rng.integers(0, V, size=TOKENS) if opts.pop("labels", True) else None
    if "ignore_index" in opts and y is not None:
        y.flat[::3] = opts["ignore_index"]
    return h, W, b, y, opts


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("chunk", [1, 4, None])
@pytest.mark.parametrize("option", list(STATS))
def test_token_stats_values(fw, dtype, chunk, option):  # type: ignore[no-untyped-def]
    h, W, b, y, opts = _stats_case(option, dtype)
    got = xent.linear_token_stats(fw.asarray(h, dtype), fw.asarray(W, dtype), None if y is None else fw.asarray(y),
                                  bias=fw.asarray(b, dtype), chunk_size=chunk, **opts)
    want = token_stats_terms(h @ W.T + b, y, temperature=opts.get("temperature", 1.0),
                             cap=opts.get("logit_softcap"), ignore_index=opts.get("ignore_index"))
    assert (got.logprob is None) == (y is None)
    for field in ("logprob", "entropy", "logsumexp"):
        if getattr(got, field) is not None:
            assert_matches(fw, getattr(got, field), want[field], dtype, V, what=field)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("option", list(STATS))
def test_token_stats_gradients(autodiff_fw, dtype, option):  # type: ignore[no-untyped-def]
    """The gradient of a weighted sum of the three fields."""
    fw = autodiff_fw
    h, W, b, y, opts = _stats_case(option, dtype, seed=4)
    a = fw.asarray
    labels = None if y is None else a(y)

    def objective(x, w, c):  # type: ignore[no-untyped-def]
        s = xent.linear_token_stats(x, w, labels, bias=c, chunk_size=4, **opts)
        total = _sum(s.entropy) * 2.0 - _sum(s.logsumexp) * 0.5
        return total if s.logprob is None else total + _sum(s.logprob)

    grads = fw.grad(objective, [a(h, dtype), a(W, dtype), a(b, dtype)], argnums=(0, 1, 2))
    t = token_stats_terms(h @ W.T + b, y, temperature=opts.get("temperature", 1.0), cap=opts.get("logit_softcap"),
                          ignore_index=opts.get("ignore_index"))
    g = 2.0 * t["d_entropy"] - 0.5 * t["d_logsumexp"] + (0.0 if y is None else t["d_logprob"])
    g = g.reshape(-1, V)
    want = [(g @ W).reshape(h.shape), g.T @ h.reshape(-1, H), g.sum(0)]
    for got, ref, what in zip(grads, want, ("hidden", "weight", "bias")):
        assert_matches(fw, fw.asarray(np.asarray(got), dtype), ref, dtype, V, what=what)


def test_the_teacher_gets_no_gradient():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    h, W, b, ht, Wt = (torch.tensor(x, requires_grad=True) for x in _inputs("float64"))
    xent.linear_kl_divergence(h, W, ht, Wt, bias=b, chunk_size=3).backward()
    assert ht.grad is None and Wt.grad is None
    assert h.grad is not None and W.grad is not None and b.grad is not None


@pytest.mark.parametrize("kind", ["kl", "js", "stats"])
def test_under_the_compilers(autodiff_fw, kind):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    h, W, b, ht, Wt = _inputs("float32", seed=5)
    y = np.random.default_rng(5).integers(0, V, size=TOKENS)
    a = fw.asarray
    W, ht, Wt, y = a(W, "float32"), a(ht, "float32"), a(Wt, "float32"), a(y)

    def call(x):  # type: ignore[no-untyped-def]
        if kind == "stats":
            s = xent.linear_token_stats(x, W, y, chunk_size=3)
            return s.logprob + s.entropy + s.logsumexp
        fn = xent.linear_kl_divergence if kind == "kl" else xent.linear_js_divergence
        return fn(x, W, ht, Wt, chunk_size=3, reduction="none")

    eager = fw.to_numpy(call(a(h, "float32")))
    compiled = fw.to_numpy(fw.compile(call)(a(h, "float32")))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_tf_function_with_an_unknown_token_count():  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow")
    h, W, b, ht, Wt = _inputs("float32", seed=6)
    h2, ht2 = h.reshape(-1, H), ht.reshape(-1, HT)

    @tf.function(input_signature=[tf.TensorSpec([None, H], tf.float32), tf.TensorSpec([None, HT], tf.float32)])
    def run(x, xt):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = xent.linear_js_divergence(x, tf.constant(W, tf.float32), xt, tf.constant(Wt, tf.float32),
                                             chunk_size=3, reduction="sum")
        return loss, tape.gradient(loss, x)

    loss, grad = run(tf.constant(h2, tf.float32), tf.constant(ht2, tf.float32))
    t = js_terms(h2 @ W.T, ht2 @ Wt.T)
    np.testing.assert_allclose(float(loss), t.per.sum(), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), t.dpred @ W, rtol=1e-4, atol=1e-6)


def test_memory_torch_never_holds_the_full_logits():  # type: ignore[no-untyped-def]
    """The largest tensor any aten op creates, forward and backward: one chunk's
    logits, where the naive distillation loss creates ``[N, V]``."""
    torch = pytest.importorskip("torch")
    n, d, v, chunk = 512, 8, 1024, 32

    rng = np.random.default_rng(0)
    h, W = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32), torch.tensor(rng.normal(size=(v, d)),
                                                                                     dtype=torch.float32)
    ht, Wt = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32), torch.tensor(rng.normal(size=(v, d)),
                                                                                       dtype=torch.float32)
    y = torch.tensor(rng.integers(0, v, size=n))

    def largest(fn):  # type: ignore[no-untyped-def]
        hh, WW = h.clone().requires_grad_(), W.clone().requires_grad_()
        return largest_torch_tensor(lambda: fn(hh, WW).backward())

    naive = largest(lambda a, w: xent.kl_divergence(a @ w.T, ht @ Wt.T, reduction="mean"))
    kl = largest(lambda a, w: xent.linear_kl_divergence(a, w, ht, Wt, chunk_size=chunk))
    js = largest(lambda a, w: xent.linear_js_divergence(a, w, ht, Wt, chunk_size=chunk))

    def stats(a, w):  # type: ignore[no-untyped-def]
        s = xent.linear_token_stats(a, w, y, chunk_size=chunk)
        return (s.logprob + s.entropy).sum()

    assert naive >= n * v
    for got in (kl, js, largest(stats)):
        assert got <= chunk * v < n * v, got


def test_errors_and_empty():  # type: ignore[no-untyped-def]
    h, W, b, ht, Wt = _inputs("float64")
    with pytest.raises(ValueError, match="teacher_weight"):
        xent.linear_kl_divergence(h, W, ht, Wt[:-1])
    with pytest.raises(ValueError, match="teacher_hidden"):
        xent.linear_kl_divergence(h, W, ht[:1], Wt)
    with pytest.raises(ValueError, match="chunk_size"):
        xent.linear_js_divergence(h, W, ht, Wt, chunk_size=0)
    with pytest.raises(ValueError, match="beta"):
        xent.linear_js_divergence(h, W, ht, Wt, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        xent.linear_kl_divergence(h, W, ht, Wt, temperature=0.0)
    with pytest.raises(ValueError, match="ignore_index"):
        xent.linear_token_stats(h, W, ignore_index=-100)
    with pytest.raises(ValueError, match="range"):
        xent.linear_token_stats(h, W, np.full(TOKENS, V))
    with pytest.raises(TypeError, match="teacher_weight"):
        xent.linear_kl_divergence(h, W, ht, Wt.astype(np.float32))
    empty = xent.linear_kl_divergence(h[:0], W, ht[:0], Wt, reduction="none")
    assert empty.shape == (0, 5)
    assert float(xent.linear_kl_divergence(h[:0], W, ht[:0], Wt)) == 0.0
