"""Small models trained for a few steps with each framework's own loss and with
xent's, from the same initial weights: the per-step losses and the final
weights must agree. This is how users meet xent: inside their training loop."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from xent.testing import framework, installed

STEPS = 12
N, D, C, T = 24, 6, 5, 4
rng = np.random.default_rng(11)
X = rng.normal(size=(N, D)).astype(np.float32)
X3 = rng.normal(size=(N, T, D)).astype(np.float32)  # [B, T, D] -> logits [B, C, T]
Y = rng.integers(0, C, size=N)
Y3 = rng.integers(0, C, size=(N, T))
Y3[:, -1] = -100  # padding
W0 = rng.normal(scale=0.3, size=(C, D)).astype(np.float32)
B0 = np.zeros(C, np.float32)
CW = rng.uniform(0.5, 2.0, size=C).astype(np.float32)


def _need(name: str):  # type: ignore[no-untyped-def]
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    return framework(name)


# ---------------------------------------------------------------------- torch
TORCH_CASES = {
    "sgd-plain": ("sgd", {}, {}),
    "adamw-smoothing": ("adamw", {"label_smoothing": 0.1}, {"label_smoothing": 0.1}),
    "sgd-class-weights-int32": ("sgd", {"class_weights": "cw"}, {"weight": "cw"}),
    "adamw-ignore-bct": ("adamw", {"ignore_index": -100, "axis": 1}, {"ignore_index": -100}),
    "sgd-all-bct": ("sgd", {"ignore_index": -100, "axis": 1, "label_smoothing": 0.2, "class_weights": "cw"},
                    {"ignore_index": -100, "label_smoothing": 0.2, "weight": "cw"}),
}


def _torch_run(torch, case: str, use_xent: bool, compiled: bool = False, autocast: bool = False):  # type: ignore[no-untyped-def]
    opt_name, xkw, tkw = TORCH_CASES[case]
    seq = "axis" in xkw
    model = torch.nn.Linear(D, C)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(W0))
        model.bias.copy_(torch.from_numpy(B0))
    opt = (torch.optim.SGD(model.parameters(), lr=0.5) if opt_name == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=0.05))
    cw = torch.from_numpy(CW)
    xkw = {k: (cw if v == "cw" else v) for k, v in xkw.items()}
    tkw = {k: (cw if v == "cw" else v) for k, v in tkw.items()}
    x = torch.from_numpy(X3 if seq else X)
    y = torch.from_numpy(Y3 if seq else Y)
    y = y.to(torch.int32) if use_xent and "int32" in case else y.long()

    def loss_fn(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            z = model(x)
            if seq:
                z = z.transpose(1, 2)  # [B, C, T]
            if use_xent:
                return xent.sparse_softmax_cross_entropy(z, y, reduction="mean", **xkw)
            return torch.nn.functional.cross_entropy(z, y, **tkw)

    step = torch.compile(loss_fn, fullgraph=True) if compiled else loss_fn
    losses = []
    for _ in range(STEPS):
        loss = step(x, y)
        losses.append(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.stack(losses), model.weight.detach().clone(), loss.dtype


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_eager_training(case):  # type: ignore[no-untyped-def]
    torch = _need("torch").torch
    want, w_want, _ = _torch_run(torch, case, use_xent=False)
    got, w_got, _ = _torch_run(torch, case, use_xent=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_got, w_want, rtol=1e-5, atol=1e-6)


def test_torch_compile_training_no_recompile():  # type: ignore[no-untyped-def]
    torch = _need("torch").torch
    import torch._dynamo

    want, w_want, _ = _torch_run(torch, "sgd-all-bct", use_xent=False)
    torch._dynamo.reset()
    old = torch._dynamo.config.error_on_recompile
    torch._dynamo.config.error_on_recompile = True
    try:
        got, w_got, _ = _torch_run(torch, "sgd-all-bct", use_xent=True, compiled=True)
    finally:
        torch._dynamo.config.error_on_recompile = old
        torch._dynamo.reset()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_got, w_want, rtol=1e-5, atol=1e-5)


def test_torch_autocast_bf16_training():  # type: ignore[no-untyped-def]
    torch = _need("torch").torch
    want, w_want, dtype_want = _torch_run(torch, "adamw-smoothing", use_xent=False, autocast=True)
    got, w_got, dtype_got = _torch_run(torch, "adamw-smoothing", use_xent=True, autocast=True)
    assert dtype_got == dtype_want == torch.float32
    # the same bf16 logits; torch's bf16 kernel rounds log_softmax to bf16
    # before its gather (xent computes in float32), so steps agree to bf16
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(w_got, w_want, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------ JAX
def _jax_params(jnp):  # type: ignore[no-untyped-def]
    return {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_jax_optax_jit_training(smoothing):  # type: ignore[no-untyped-def]
    fw = _need("jax")
    try:
        import optax
    except ImportError:
        pytest.skip("optax is not installed")
    jax, jnp = fw.jax, fw.jnp
    x, y = jnp.asarray(X), jnp.asarray(Y, jnp.int32)

    def native(params):
        z = x @ params["w"].T + params["b"]
        onehot = optax.smooth_labels(jax.nn.one_hot(y, C), smoothing) if smoothing else jax.nn.one_hot(y, C)
        return optax.softmax_cross_entropy(z, onehot).mean()

    def ours(params):
        z = x @ params["w"].T + params["b"]
        return xent.sparse_softmax_cross_entropy(z, y, label_smoothing=smoothing, reduction="mean")

    def train(loss_fn):  # type: ignore[no-untyped-def]
        opt = optax.adamw(0.05)
        params = _jax_params(jnp)
        state = opt.init(params)

        @jax.jit
        def step(params, state):
            loss, g = jax.value_and_grad(loss_fn)(params)
            updates, state = opt.update(g, state, params)
            return optax.apply_updates(params, updates), state, loss

        losses = []
        for _ in range(STEPS):
            params, state, loss = step(params, state)
            losses.append(float(loss))
        return np.array(losses), np.asarray(params["w"])

    want, w_want = train(native)
    got, w_got = train(ours)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_got, w_want, rtol=1e-5, atol=1e-6)


def test_jax_vmap_grad_per_example():  # type: ignore[no-untyped-def]
    """Per-example gradients with vmap(grad), against optax's loss."""
    fw = _need("jax")
    try:
        import optax
    except ImportError:
        pytest.skip("optax is not installed")
    jax, jnp = fw.jax, fw.jnp
    params = _jax_params(jnp)

    def native(params, x, y):
        z = x @ params["w"].T + params["b"]
        return optax.softmax_cross_entropy_with_integer_labels(z, y)

    def ours(params, x, y):
        z = x @ params["w"].T + params["b"]
        return xent.sparse_softmax_cross_entropy(z, y)

    x, y = jnp.asarray(X), jnp.asarray(Y, jnp.int32)
    want = jax.vmap(jax.grad(native), (None, 0, 0))(params, x, y)
    got = jax.jit(jax.vmap(jax.grad(ours), (None, 0, 0)))(params, x, y)
    for k in ("w", "b"):
        assert got[k].shape == (N, *params[k].shape)
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ TensorFlow
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_tf_tape_training_short_last_batch(mode):  # type: ignore[no-untyped-def]
    """Batches of 10, 10 and a short 4: under tf.function with a None batch
    dimension and under XLA, with label smoothing and class weights."""
    tf = _need("tensorflow").tf

    def native(z, y):
        # torch's weighted smoothing, written out: (1-α)·w_y·nll + α/C·Σ_c w_c·nll_c
        logp = tf.nn.log_softmax(z)
        cw = tf.constant(CW)
        w_y = tf.gather(cw, y)
        per = -(0.9 * w_y * tf.gather(logp, y, batch_dims=1) + 0.1 / C * tf.reduce_sum(cw * logp, -1))
        return tf.reduce_sum(per) / tf.reduce_sum(w_y)

    def ours(z, y):
        return xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, class_weights=CW, reduction="mean")

    def train(loss_fn):  # type: ignore[no-untyped-def]
        w = tf.Variable(W0.T)
        b = tf.Variable(B0)
        opt_lr = 0.5

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.matmul(x, w) + b, y)
            gw, gb = tape.gradient(loss, [w, b])
            w.assign_sub(opt_lr * gw)
            b.assign_sub(opt_lr * gb)
            return loss

        if mode != "eager":
            step = tf.function(step, jit_compile=mode == "xla", reduce_retracing=True,
                               input_signature=[tf.TensorSpec([None, D]), tf.TensorSpec([None], tf.int32)])
        losses = []
        for _ in range(STEPS // 3):
            for lo, hi in ((0, 10), (10, 20), (20, 24)):
                losses.append(float(step(tf.constant(X[lo:hi]), tf.constant(Y[lo:hi], tf.int32))))
        return np.array(losses), w.numpy()

    want, w_want = train(native)
    got, w_got = train(ours)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w_got, w_want, rtol=1e-5, atol=1e-6)
