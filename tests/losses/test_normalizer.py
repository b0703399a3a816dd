"""``normalizer=`` and ``xent.loss_denominator``: the global mean across
micro-batches whose kept-token counts differ, against the float64 mean of the
whole batch, values and gradients, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from xent.testing import assert_close

RNG = np.random.default_rng(31)
N, C = 10, 6
LOGITS = RNG.normal(0, 2, (N, C))
IDS = np.array([0, 5, -100, 2, 3, -100, -100, 1, 4, 2])
SOFT = RNG.random((N, C))
SOFT /= SOFT.sum(-1, keepdims=True)
BIN = RNG.random((N, C))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
CW = np.linspace(0.5, 2.0, C)
W_ROWS = np.linspace(0.2, 1.8, N)
W_ALL = RNG.uniform(0.1, 2.0, (N, C))
SPLIT = 3  # micro-batches of 3 and 7 rows: 2 and 3 kept tokens


def _cases():  # type: ignore[no-untyped-def]
    """(name, predictions, labels, options, float64 mean of the whole batch, its gradient or None)."""
    kept = IDS != -100
    safe = np.where(kept, IDS, 0)
    sparse_terms = -ref.log_softmax(LOGITS)[np.arange(N), safe]
    den = (W_ROWS * CW[safe] * kept).sum()
    yield ("sparse_softmax_cross_entropy", LOGITS, IDS,
           {"ignore_index": -100, "class_weights": CW, "weights": W_ROWS},
           (sparse_terms * W_ROWS * CW[safe] * kept).sum() / den,
           ref.sparse_grad(LOGITS, IDS, ignore_index=-100, cw=CW, w=W_ROWS, reduction="mean"))
    yield ("sparse_softmax_cross_entropy", LOGITS, IDS, {"ignore_index": -100},
           ref.sparse(LOGITS, IDS, ignore_index=-100, reduction="mean"),
           ref.sparse_grad(LOGITS, IDS, ignore_index=-100, reduction="mean"))
    yield ("softmax_cross_entropy", LOGITS, SOFT, {"weights": W_ROWS},
           ref.dense(LOGITS, SOFT, w=W_ROWS, reduction="mean"), None)
    yield ("sigmoid_cross_entropy", LOGITS, BIN, {"weights": W_ALL},
           ref.sigmoid(LOGITS, BIN, w=W_ALL, reduction="mean"), None)
    yield ("sigmoid_cross_entropy", LOGITS, BIN, {}, ref.sigmoid(LOGITS, BIN, reduction="mean"),
           ref.sigmoid_grads(LOGITS, BIN)[0] / LOGITS.size)
    yield ("categorical_cross_entropy", PROBS, SOFT, {}, ref.categorical(PROBS, SOFT, reduction="mean",
                                                                        dtype="float64"), None)
    yield ("sparse_categorical_cross_entropy", PROBS, IDS, {"ignore_index": -100},
           ref.sparse_categorical(PROBS, IDS, ignore_index=-100, reduction="mean", dtype="float64"), None)
    yield ("binary_cross_entropy", 1 / (1 + np.exp(-LOGITS)), BIN, {"weights": W_ALL},
           ref.binary(1 / (1 + np.exp(-LOGITS)), BIN, w=W_ALL, reduction="mean", dtype="float64"), None)


CASES = list(_cases())


def _part(fw, value, rows, dtype="float64"):  # type: ignore[no-untyped-def]
    if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == N:
        value = value[rows]
    if isinstance(value, np.ndarray):
        return fw.asarray(value, "int64" if value.dtype.kind == "i" else dtype)
    return value


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{sorted(c[3])}" for c in CASES])
def test_micro_batches_summed_with_the_global_denominator_are_the_global_mean(xent_framework, case):
    fw = xent_framework
    name, x, labels, options, want, grad_want = CASES[case]
    loss = getattr(xent, name)
    parts = [slice(0, SPLIT), slice(SPLIT, N)]
    batches = [(_part(fw, x, r), _part(fw, labels, r), {k: _part(fw, v, r) for k, v in options.items()})
               for r in parts]
    counts = [xent.loss_denominator(loss, xb, yb, **ob) for xb, yb, ob in batches]
    assert all(fw.is_array(c) for c in counts) if hasattr(fw, "is_array") else True
    den = sum(float(fw.to_numpy(c)) for c in counts)
    whole = float(fw.to_numpy(xent.loss_denominator(loss, _part(fw, x, slice(None)),
                                                    _part(fw, labels, slice(None)),
                                                    **{k: _part(fw, v, slice(None)) for k, v in options.items()})))
    assert den == pytest.approx(whole, rel=1e-12)
    total = sum(float(fw.to_numpy(loss(xb, yb, **ob, reduction="mean", normalizer=den)))
                for xb, yb, ob in batches)
    assert_close(np.float64(total), want, reduced=N)
    if grad_want is None or not fw.differentiable:
        return
    grads = [fw.grad(lambda a, yb=yb, ob=ob: loss(a, yb, **ob, reduction="mean", normalizer=den), [xb])[0]
             for xb, yb, ob in batches]
    assert_close(np.concatenate([np.asarray(g) for g in grads]), grad_want, num_classes=C)


def test_the_denominator_is_the_means_own(xent_framework):
    # normalizer=loss_denominator(...) gives the plain mean, for every case.
    fw = xent_framework
    for name, x, labels, options, _, _ in CASES:
        loss = getattr(xent, name)
        xs, ys = _part(fw, x, slice(None)), _part(fw, labels, slice(None))
        opts = {k: _part(fw, v, slice(None)) for k, v in options.items()}
        den = xent.loss_denominator(loss, xs, ys, **opts)
        got = loss(xs, ys, **opts, reduction="mean", normalizer=den)
        assert_close(fw.to_numpy(got), fw.to_numpy(loss(xs, ys, **opts, reduction="mean")), reduced=N)


def test_linear_cross_entropy_takes_a_normalizer(xent_framework):
    fw = xent_framework
    r = np.random.default_rng(32)
    h, w = r.standard_normal((N, 4)), r.standard_normal((C, 4))
    den = xent.loss_denominator(xent.linear_cross_entropy, fw.asarray(h, "float64"), fw.asarray(w, "float64"),
                                fw.asarray(IDS, "int64"), ignore_index=-100, class_weights=fw.asarray(CW, "float64"))
    kept = IDS != -100
    assert float(fw.to_numpy(den)) == pytest.approx(CW[np.where(kept, IDS, 0)][kept].sum())
    got = xent.linear_cross_entropy(fw.asarray(h, "float64"), fw.asarray(w, "float64"), fw.asarray(IDS, "int64"),
                                    ignore_index=-100, normalizer=7.0)
    want = ref.sparse(h @ w.T, IDS, ignore_index=-100, reduction="sum") / 7.0
    assert_close(fw.to_numpy(got), want, num_classes=C, reduced=N)


@pytest.mark.parametrize("value", [0, 0.0])
def test_a_zero_normalizer_gives_zero(xent_framework, value):
    fw = xent_framework
    z, y = fw.asarray(LOGITS, "float32"), fw.asarray(np.full(N, -100), "int64")
    for norm in (value, fw.asarray(np.asarray(value, np.float32), "float32")):
        out = xent.sparse_softmax_cross_entropy(z, y, ignore_index=-100, reduction="mean", normalizer=norm)
        assert float(fw.to_numpy(out)) == 0.0


@pytest.mark.parametrize("reduction, normalizer, error, match", [
    ("none", 2.0, ValueError, "reduction='mean' only"),
    ("sum", 2.0, ValueError, "reduction='mean' only"),
    ("mean", -1.0, ValueError, ">= 0"),
    ("mean", float("nan"), ValueError, ">= 0"),
    ("mean", True, TypeError, "real number"),
    ("mean", np.ones(2), ValueError, "0-d"),
    ("mean", np.asarray(-2.0), ValueError, ">= 0"),
])
def test_bad_normalizers_raise(xent_framework, reduction, normalizer, error, match):
    fw = xent_framework
    z, y = fw.asarray(LOGITS, "float32"), fw.asarray(np.where(IDS < 0, 0, IDS), "int64")
    for name in ("sparse_softmax_cross_entropy", "sigmoid_cross_entropy"):
        labels = y if name.startswith("sparse") else fw.asarray(BIN, "float32")
        with pytest.raises(error, match=match):
            getattr(xent, name)(z, labels, reduction=reduction, normalizer=normalizer)


def test_loss_denominator_reads_no_logit():
    # The denominator comes from the labels and weights: no op of torch's
    # dispatcher ever takes the logits.
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    z = torch.from_numpy(LOGITS).requires_grad_(True)

    class Uses(TorchDispatchMode):
        seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if any(a is z for a in args) or any(getattr(a, "_base", None) is z for a in args):
                Uses.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Uses():
        den = xent.loss_denominator(xent.sparse_softmax_cross_entropy, z, torch.from_numpy(IDS),
                                    ignore_index=-100, class_weights=torch.from_numpy(CW))
    assert Uses.seen == [] and den.item() == pytest.approx(CW[IDS[IDS >= 0]].sum())


def test_loss_denominator_refuses_other_functions():
    with pytest.raises(TypeError, match="one of xent's losses"):
        xent.loss_denominator(np.mean, LOGITS, IDS)


def test_a_jax_normalizer_that_changes_every_step_compiles_once():
    # A Python number normalizer reaches the compiled program as an argument:
    # a new count per step is not a new program.
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from xent.backends.jax import compile_cache

    z, y = jnp.asarray(LOGITS), jnp.asarray(np.where(IDS < 0, 0, IDS))
    compile_cache._jitted.clear()
    for count in (3.0, 5.0, 7.0):
        out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean", normalizer=count)
        want = ref.sparse(LOGITS, np.where(IDS < 0, 0, IDS), reduction="sum") / count
        assert_close(out, want, num_classes=C, reduced=N)
    assert len(compile_cache._jitted) == 1
    del jax


def test_traced_normalizers(xent_framework):
    # A 0-d array of the framework under its compiler (jax.jit, tf.function).
    fw = xent_framework
    if fw.name not in ("jax", "tensorflow"):
        pytest.skip("jax.jit and tf.function")
    y = np.where(IDS < 0, 0, IDS)
    want = ref.sparse(LOGITS, y, reduction="sum") / 4.0
    if fw.name == "jax":
        import jax

        f = jax.jit(lambda z, yy, d: xent.sparse_softmax_cross_entropy(z, yy, reduction="mean", normalizer=d))
    else:
        import tensorflow as tf

        f = tf.function(lambda z, yy, d: xent.sparse_softmax_cross_entropy(z, yy, reduction="mean", normalizer=d))
    out = f(fw.asarray(LOGITS, "float32"), fw.asarray(y, "int64"), fw.asarray(np.asarray(4.0), "float32"))
    assert_close(fw.to_numpy(out), want, num_classes=C, reduced=N, dtype="float32")
