"""linear_cross_entropy on every backend against the naive float64 computation
(logits = h @ W.T + b in float64, then the formula of tests/reference.py):
values, gradients for hidden / weight / bias, bfloat16, compilers, memory."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.helpers import assert_matches, largest_torch_tensor, rounded
from xent._bench import torch_cpu_peak_bytes
from xent._linear import default_chunk_size
from xent.testing import framework

TOKENS, H, V = (2, 5), 6, 11  # 10 tokens; chunk_size 3 leaves a ragged last chunk
CHUNK = 3

OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "ignore": {"ignore_index": -100},
    "smooth": {"alpha": 0.1},
    "class_weights": {"cw": True},
    "weights": {"w": True},
    "z_loss": {"z_loss": 0.05},
    "softcap": {"cap": 2.0},
    "all": {"bias": True, "ignore_index": 4, "alpha": 0.2, "cw": True, "w": True, "z_loss": 0.02, "cap": 3.0},
}


def _case(fw, option, dtype, seed=0):  # type: ignore[no-untyped-def]
    """Inputs (rounded to ``dtype``), xent kwargs and reference kwargs."""
    rng = np.random.default_rng(seed)
    opts = OPTIONS[option]
    h = rounded(rng.normal(size=TOKENS + (H,)), dtype)
    W = rounded(rng.normal(size=(V, H)) * 0.7, dtype)
    y = rng.integers(0, V, size=TOKENS)
    kw, rk = {}, {}
    if opts.get("bias"):
        b = rounded(rng.normal(size=V), dtype)
        kw["bias"], rk["b"] = fw.asarray(b, dtype), b
    if "ignore_index" in opts:
        y.flat[::3] = opts["ignore_index"]
        kw["ignore_index"] = rk["ignore_index"] = opts["ignore_index"]
    if "alpha" in opts:
        kw["label_smoothing"] = rk["alpha"] = opts["alpha"]
    if "z_loss" in opts:
        kw["z_loss"] = rk["z_loss"] = opts["z_loss"]
    if "cap" in opts:
        kw["logit_softcap"] = rk["cap"] = opts["cap"]
    if opts.get("cw"):
        cw = rounded(rng.uniform(0.5, 2.0, size=V), "float32")
        kw["class_weights"], rk["cw"] = cw.astype(np.float32), cw
    if opts.get("w"):
        w = rounded(rng.uniform(0.0, 2.0, size=TOKENS), "float32")
        kw["weights"], rk["w"] = w.astype(np.float32), w
    return h, W, y, kw, rk


def _grads(fw, h, W, y, kw, dtype, reduction, chunk=CHUNK):  # type: ignore[no-untyped-def]
    bias = kw.pop("bias", None)
    labels = fw.asarray(y)
    args = [fw.asarray(h, dtype), fw.asarray(W, dtype)] + ([] if bias is None else [bias])

    def fn(h_, W_, b_=None):  # type: ignore[no-untyped-def]
        return xent.linear_cross_entropy(h_, W_, labels, bias=b_, reduction=reduction, chunk_size=chunk, **kw)

    return fw.grad(fn, args, argnums=tuple(range(len(args))))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_values(fw, dtype, reduction, option):  # type: ignore[no-untyped-def]
    h, W, y, kw, rk = _case(fw, option, dtype)
    got = xent.linear_cross_entropy(fw.asarray(h, dtype), fw.asarray(W, dtype), y, reduction=reduction,
                                    chunk_size=CHUNK, **kw)
    want = ref.linear(h, W, y, reduction=reduction, **rk)
    assert_matches(fw, got, want, dtype, V * H, 1 if reduction == "none" else y.size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradients(autodiff_fw, dtype, reduction, option):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    h, W, y, kw, rk = _case(fw, option, dtype, seed=1)
    got = _grads(fw, h, W, y, kw, dtype, reduction)
    want = ref.linear_grads(h, W, y, reduction=reduction, **rk)
    for name, g, r in zip(("d hidden", "d weight", "d bias"), got, want):
        assert_matches(fw, fw.asarray(g, dtype), r, dtype, V * H, y.size, what=name)


@pytest.mark.parametrize("chunk", [1, 5, 10, None])
@pytest.mark.parametrize("option", ["plain", "all"])
def test_gradients_chunkings(autodiff_fw, chunk, option):  # type: ignore[no-untyped-def]
    """Every chunking gives the reference gradients: one token per chunk, chunks
    that divide the 10 tokens, one chunk (torch's single-product weight gradient),
    the default."""
    fw = autodiff_fw
    h, W, y, kw, rk = _case(fw, option, "float32", seed=10)
    got = _grads(fw, h, W, y, kw, "float32", "mean", chunk=chunk)
    want = ref.linear_grads(h, W, y, reduction="mean", **rk)
    for name, g, r in zip(("d hidden", "d weight", "d bias"), got, want):
        assert_matches(fw, fw.asarray(g, "float32"), r, "float32", V * H, y.size, what=name)


@pytest.mark.parametrize("chunk", [3, None])
def test_torch_backward_twice(chunk):  # type: ignore[no-untyped-def]
    """torch keeps the last chunk's softmax for the first backward pass; a second one
    (retain_graph) recomputes it and accumulates the same gradients again."""
    torch = pytest.importorskip("torch")
    fw = framework("torch")
    h, W, y, kw, rk = _case(fw, "all", "float64", seed=11)
    hh, WW = torch.tensor(h, requires_grad=True), torch.tensor(W, requires_grad=True)
    bias = kw.pop("bias")
    loss = xent.linear_cross_entropy(hh, WW, y, bias=bias, chunk_size=chunk, **kw)
    loss.backward(retain_graph=True)
    loss.backward()
    gh, gW, _ = ref.linear_grads(h, W, y, reduction="mean", **rk)
    np.testing.assert_allclose(hh.grad.numpy(), 2 * gh, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(WW.grad.numpy(), 2 * gW, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("option", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-2}, {"logit_softcap": 3.0}])
def test_torch_second_order(option):  # type: ignore[no-untyped-def]
    """A recorded backward (create_graph=True): gradients and a Hessian-vector
    product against torch's autograd of the naive float64 loss."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(12)
    h, W, b = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in ((10, 4), (7, 4), (7,)))
    y = torch.randint(0, 7, (10,), generator=gen)
    vs = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in (h, W, b)]

    def naive(a, w, c):  # type: ignore[no-untyped-def]
        z = a @ w.T + c
        if "logit_softcap" in option:
            z = 3.0 * torch.tanh(z / 3.0)
        loss = F.cross_entropy(z, y, label_smoothing=option.get("label_smoothing", 0.0), reduction="none")
        return (loss + option.get("z_loss", 0.0) * torch.logsumexp(z, 1) ** 2).mean()

    def grads_and_hvp(fn):  # type: ignore[no-untyped-def]
        g = torch.autograd.grad(fn(h, W, b), (h, W, b), create_graph=True)
        hv = torch.autograd.grad(sum((gi * v).sum() for gi, v in zip(g, vs)), (h, W, b))
        return [t.detach() for t in (*g, *hv)]

    got = grads_and_hvp(lambda a, w, c: xent.linear_cross_entropy(a, w, y, bias=c, reduction="mean", chunk_size=3, **option))
    for g, want in zip(got, grads_and_hvp(naive)):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)


def test_reference_gradients_by_finite_differences():
    """The analytic reference itself, against central differences of the naive loss."""
    h, W, y, _, rk = _case(framework("numpy"), "all", "float64", seed=2)
    b = rk.pop("b")
    rk["reduction"] = "mean"
    gh, gW, gb = ref.linear_grads(h, W, y, b, **rk)
    for x, g in ((h, gh), (W, gW), (b, gb)):
        fd = np.zeros_like(x)
        for idx in list(np.ndindex(x.shape))[:12]:
            old = x[idx]
            x[idx] = old + 1e-6
            up = ref.linear(h, W, y, b, **rk)
            x[idx] = old - 1e-6
            down = ref.linear(h, W, y, b, **rk)
            x[idx] = old
            fd[idx] = (up - down) / 2e-6
            np.testing.assert_allclose(g[idx], fd[idx], rtol=1e-6, atol=1e-8)


def _offset_case(where, seed=8):  # type: ignore[no-untyped-def]
    """Logits ``10000 + O(1)``, exact in float32: every input is a multiple of 1/8
    and every product and partial sum a multiple of 1/64 below 2**14, so the
    float32 matmul (any summation order) gives the float64 logits exactly. The
    large common offset goes in the bias or in a hidden column against a
    weight column of ones."""
    rng = np.random.default_rng(seed)
    n, d, v = 48, 5, 37
    h = rng.integers(-16, 17, size=(n, d)) / 8
    W = rng.integers(-8, 9, size=(v, d)) / 8
    b = None
    if where == "bias":
        b = 10000 + rng.integers(-8, 9, size=v) / 8
    else:
        h[:, 0], W[:, 0] = 10000.0, 1.0
    y = rng.integers(0, v, size=n)
    return h, W, b, y


def _offset_options(fw, option, b):  # type: ignore[no-untyped-def]
    kw, rk = {}, {}
    if option == "smooth":
        kw["label_smoothing"] = rk["alpha"] = 0.25
    if option == "class_weights":
        cw = np.random.default_rng(9).integers(1, 9, size=37) / 4
        kw["class_weights"], rk["cw"] = cw.astype(np.float32), cw
    if b is not None:
        kw["bias"], rk["b"] = fw.asarray(b, "float32"), b
    return kw, rk


@pytest.mark.parametrize("where", ["bias", "hidden"])
@pytest.mark.parametrize("option", ["plain", "smooth", "class_weights"])
def test_large_common_offset(fw, where, option):  # type: ignore[no-untyped-def]
    """``log Σ exp(s - m) - (s_y - m)``, not ``lse - s_y``: with logits near 1e4 a
    float32 lse is rounded to a multiple of 2**-10, an error of up to 5e-4 that
    ``lse - s_y`` keeps (a relative error of 1e-4 in the loss)."""
    h, W, b, y = _offset_case(where)
    assert np.array_equal(h.astype(np.float32) @ W.astype(np.float32).T, h @ W.T)
    kw, rk = _offset_options(fw, option, b)
    got = xent.linear_cross_entropy(fw.asarray(h, "float32"), fw.asarray(W, "float32"), y,
                                    reduction="none", chunk_size=16, **kw)
    assert_matches(fw, got, ref.linear(h, W, y, reduction="none", **rk), "float32", W.shape[0], 1)


@pytest.mark.parametrize("where", ["bias", "hidden"])
@pytest.mark.parametrize("option", ["plain", "smooth", "class_weights"])
def test_large_common_offset_gradients(autodiff_fw, where, option):  # type: ignore[no-untyped-def]
    """The backward pass's softmax as ``exp(s - m) / Σ exp(s - m)``: ``exp(s - lse)``
    with the rounded float32 lse is off by up to 5e-4 relative."""
    fw = autodiff_fw
    h, W, b, y = _offset_case(where)
    kw, rk = _offset_options(fw, option, b)
    got = _grads(fw, h, W, y, kw, "float32", "sum", chunk=16)
    want = ref.linear_grads(h, W, y, reduction="sum", **rk)
    for name, g, r in zip(("d hidden", "d weight", "d bias"), got, want):
        assert_matches(fw, fw.asarray(g, "float32"), r, "float32", W.shape[0], y.size, what=name)


#: bfloat16 against the float64 loss of the same (bf16-rounded) inputs. The logits
#: come out of the framework's bf16 matmul (rounded to bf16 on torch/TF, float32
#: on JAX), so each logit carries up to 2^-9 relative error: loss and gradients
#: are held to 2e-2 of their largest reference value.
BF16_TOL = 2e-2


@pytest.mark.parametrize("chunk", [CHUNK, None])
@pytest.mark.parametrize("fw_name", ["numpy", "torch", "tensorflow", "jax"])
def test_bfloat16(fw_name, chunk):  # type: ignore[no-untyped-def]
    from tests.conftest import _get

    fw = _get(fw_name)
    h, W, y, kw, rk = _case(fw, "all", "bfloat16", seed=3)
    loss = xent.linear_cross_entropy(fw.asarray(h, "bfloat16"), fw.asarray(W, "bfloat16"), y,
                                     reduction="none", chunk_size=chunk, **kw)
    assert fw.dtype_name(loss) == "bfloat16"
    want = ref.linear(h, W, y, reduction="none", **rk)
    np.testing.assert_allclose(fw.to_numpy(loss), want, atol=BF16_TOL * np.abs(want).max())
    if not fw.differentiable:
        return
    got = _grads(fw, h, W, y, dict(kw), "bfloat16", "mean", chunk=chunk)
    want = ref.linear_grads(h, W, y, reduction="mean", **rk)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, atol=BF16_TOL * np.abs(r).max())


def test_weight_gradient_accumulates_in_float32(autodiff_fw):  # type: ignore[no-untyped-def]
    """260 one-token chunks each add -0.5 / +0.5 to dW. In bfloat16 the running sum
    would stall at 128 (128 + 0.5 rounds back to 128); in float32 it reaches 130."""
    fw = autodiff_fw
    n = 260
    h = np.ones((n, 1))
    W = np.zeros((2, 1))
    y = np.zeros(n, np.int64)
    args = [fw.asarray(h, "bfloat16"), fw.asarray(W, "bfloat16"), fw.asarray(np.zeros(2), "bfloat16")]
    labels = fw.asarray(y)
    gh, gW, gb = fw.grad(
        lambda a, w, b: xent.linear_cross_entropy(a, w, labels, bias=b, reduction="sum", chunk_size=1),
        args, argnums=(0, 1, 2))
    np.testing.assert_array_equal(gW, [[-130.0], [130.0]])
    np.testing.assert_array_equal(gb, [-130.0, 130.0])


def test_compiled(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    h, W, y, kw, rk = _case(fw, "all", "float32", seed=4)
    bias = kw.pop("bias")
    labels = fw.asarray(y)

    def fn(h_, W_, b_):  # type: ignore[no-untyped-def]
        return xent.linear_cross_entropy(h_, W_, labels, bias=b_, chunk_size=6, **kw)

    compiled = fw.compile(fn)
    args = [fw.asarray(h, "float32"), fw.asarray(W, "float32"), bias]
    assert_matches(fw, compiled(*args), ref.linear(h, W, y, reduction="mean", **rk), "float32", V * H, y.size)
    got = fw.grad(compiled, args, argnums=(0, 1, 2))
    for g, r in zip(got, ref.linear_grads(h, W, y, reduction="mean", **rk)):
        assert_matches(fw, fw.asarray(g, "float32"), r, "float32", V * H, y.size, what="grad")


def test_out_of_range_labels(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    rng = np.random.default_rng(5)
    h = fw.asarray(rng.normal(size=(4, 3)).astype(np.float32))
    W = fw.asarray(rng.normal(size=(5, 3)).astype(np.float32))
    bad = np.array([0, 5, 1, -1])
    with pytest.raises(ValueError, match="out-of-range"):
        xent.linear_cross_entropy(h, W, bad)
    fn = fw.compile(lambda a, w, lab: xent.linear_cross_entropy(a, w, lab, ignore_index=-1, reduction="none",
                                                                 chunk_size=2))
    loss = fw.to_numpy(fn(h, W, fw.asarray(bad)))
    assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all() and loss[3] == 0


def test_default_chunk_size():
    assert default_chunk_size(8192, 128256) == 1024
    assert default_chunk_size(8192, 32000) == 4096
    assert default_chunk_size(100, 1000) == 100
    assert default_chunk_size(10**6, 2**28) == 1
    assert default_chunk_size(None, 2**20) == 128
    # the default (one chunk here) gives the same value
    h, W, y, kw, rk = _case(framework("numpy"), "all", "float64")
    kw["bias"] = rk["b"]
    got = xent.linear_cross_entropy(h, W, y, **kw)
    np.testing.assert_allclose(got, ref.linear(h, W, y, reduction="mean", **rk), rtol=1e-12)


def test_empty_batch(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    h = fw.asarray(np.zeros((0, 3), np.float32))
    W = fw.asarray(np.ones((4, 3), np.float32))
    y = np.zeros(0, np.int64)
    assert fw.to_numpy(xent.linear_cross_entropy(h, W, y)) == 0
    assert fw.to_numpy(xent.linear_cross_entropy(h, W, y, reduction="none")).shape == (0,)
    gh, gW = fw.grad(lambda a, w: xent.linear_cross_entropy(a, w, fw.asarray(y)), [h, W], argnums=(0, 1))
    assert gh.shape == (0, 3) and not gW.any()


def test_inputs_unchanged_and_torch_anchor():
    """Agrees with torch's own F.linear_cross_entropy (torch >= 2.13) and leaves inputs alone."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    h = torch.tensor(rng.normal(size=(9, 4)))
    W = torch.tensor(rng.normal(size=(7, 4)))
    b = torch.tensor(rng.normal(size=7))
    y = torch.tensor(rng.integers(0, 7, size=9))
    y[2] = -100
    copies = [t.clone() for t in (h, W, b, y)]
    got = xent.linear_cross_entropy(h, W, y, bias=b, ignore_index=-100, label_smoothing=0.1, chunk_size=4)
    for t, c in zip((h, W, b, y), copies):
        assert torch.equal(t, c)
    if hasattr(F, "linear_cross_entropy"):
        want = F.linear_cross_entropy(h, W, y, linear_bias=b, ignore_index=-100, label_smoothing=0.1)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "change,error,match",
    [
        ({"weight": np.zeros((5, 4))}, ValueError, "weight must have shape"),
        ({"weight": np.zeros((5, 3), np.float32)}, TypeError, "dtype of hidden"),
        ({"labels": np.zeros(3, np.int64)}, ValueError, "labels.shape"),
        ({"labels": np.zeros(4)}, TypeError, "integer"),
        ({"bias": np.zeros(4)}, ValueError, "bias must have shape"),
        ({"class_weights": np.ones(4)}, ValueError, "class_weights"),
        ({"weights": np.ones(3)}, ValueError, "weights"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": 2.0}, ValueError, "chunk_size"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        ({"logit_softcap": 0.0}, ValueError, "logit_softcap"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
    ],
)
def test_bad_input(change, error, match):  # type: ignore[no-untyped-def]
    args = {"hidden": np.zeros((4, 3)), "weight": np.zeros((5, 3)), "labels": np.zeros(4, np.int64)}
    kwargs = {k: v for k, v in change.items() if k not in args}
    args.update({k: v for k, v in change.items() if k in args})
    with pytest.raises(error, match=match):
        xent.linear_cross_entropy(args["hidden"], args["weight"], args["labels"], **kwargs)


# --------------------------------------------------------------------------- memory
# N tokens × V classes: the full float32 logits are N·V elements (8 MiB); one
# chunk's are CHUNK_M·V (1 MiB). Each test also runs the naive computation, to
# show that the same measurement does see the full logits when they exist.
N_M, H_M, V_M, CHUNK_M = 1024, 16, 2048, 128
FULL = N_M * V_M


def _memory_inputs():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    return (rng.normal(size=(N_M, H_M)).astype(np.float32), rng.normal(size=(V_M, H_M)).astype(np.float32),
            rng.integers(0, V_M, size=N_M))


def test_memory_torch():
    """A dispatch mode records the largest tensor any aten op creates, forward and backward."""
    torch = pytest.importorskip("torch")
    h, W, y = (torch.tensor(a) for a in _memory_inputs())

    def largest(fn):  # type: ignore[no-untyped-def]
        hh, WW = h.clone().requires_grad_(), W.clone().requires_grad_()
        return largest_torch_tensor(lambda: fn(hh, WW).backward())

    naive = largest(lambda a, w: torch.nn.functional.cross_entropy(a @ w.T, y))
    chunked = largest(lambda a, w: xent.linear_cross_entropy(a, w, y, chunk_size=CHUNK_M, z_loss=1e-4))
    assert naive >= FULL
    assert chunked <= CHUNK_M * V_M < FULL


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_memory_torch_peak(dtype):  # type: ignore[no-untyped-def]
    """Peak bytes allocated during forward + backward (gradients included): the
    default single chunk stays under the naive computation (float32 logits, as a
    bfloat16 model upcasts them), and chunk_size=CHUNK_M with every option under
    three float32 chunks of logits plus the gradients, where the naive one holds
    the full logits several times over."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h, W, y = (torch.tensor(a) for a in _memory_inputs())
    tdtype = getattr(torch, dtype)

    def peak(fn):  # type: ignore[no-untyped-def]
        a, w = h.to(tdtype).requires_grad_(), W.to(tdtype).requires_grad_()
        fn(a, w).backward()  # warm-up: lazy initialisation outside the measurement
        a.grad = w.grad = None
        return torch_cpu_peak_bytes(lambda: fn(a, w).backward())

    grads = (N_M + V_M) * H_M * tdtype.itemsize
    naive = peak(lambda a, w: F.cross_entropy((a @ w.T).float(), y))
    assert naive >= 2 * FULL * 4
    default = peak(lambda a, w: xent.linear_cross_entropy(a, w, y))
    assert default <= naive * 0.6
    chunked = peak(lambda a, w: xent.linear_cross_entropy(
        a, w, y, bias=torch.zeros(V_M, dtype=tdtype), chunk_size=CHUNK_M, label_smoothing=0.1, z_loss=1e-4,
        logit_softcap=5.0))
    assert chunked <= 3 * CHUNK_M * V_M * 4 + 2 * grads


def test_memory_jax():
    """XLA's own plan: temporary bytes of the compiled value-and-grad."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    h, W, y = (jnp.asarray(a) for a in _memory_inputs())

    def temp_bytes(loss):  # type: ignore[no-untyped-def]
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        return step.lower(h, W).compile().memory_analysis().temp_size_in_bytes

    def naive(a, w):  # type: ignore[no-untyped-def]
        z = a @ w.T
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, y[:, None], -1)[:, 0])

    full_bytes = FULL * 4
    assert temp_bytes(naive) >= full_bytes
    chunked = temp_bytes(lambda a, w: xent.linear_cross_entropy(a, w, y, chunk_size=CHUNK_M))
    assert chunked < full_bytes // 2


def test_memory_tensorflow():
    """The HLO that XLA compiles for tf.function(jit_compile=True) value-and-gradient
    holds no [N, V] array (the naive one does)."""
    tf = pytest.importorskip("tensorflow")
    h, W, y = (tf.constant(a) for a in _memory_inputs())

    def hlo(loss):  # type: ignore[no-untyped-def]
        @tf.function(jit_compile=True)
        def step(a, w):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                tape.watch([a, w])
                value = loss(a, w)
            return value, tape.gradient(value, [a, w])

        return step.experimental_get_compiler_ir(h, W)(stage="hlo")

    full = f"[{N_M},{V_M}]"
    assert full in hlo(lambda a, w: tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.matmul(a, w, transpose_b=True))))
    text = hlo(lambda a, w: xent.linear_cross_entropy(a, w, y, chunk_size=CHUNK_M))
    assert full not in text and f"[{V_M},{N_M}]" not in text
    assert f"[{CHUNK_M},{V_M}]" in text
