"""What users' training loops do: any integer label dtype, unknown shapes under
the compilers, no recompiles caused by xent, mixed precision, masked lanes
under soft-capping. Every value is compared with the float64 reference or the
framework's own loss, never with xent itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xent
from tests import reference as ref
from xent.testing import framework, installed

#: integer label dtypes per framework (the ones each framework has)
LABEL_DTYPES = {
    "numpy": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "torch": ("int8", "int16", "int32", "int64", "uint8"),
    "tensorflow": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "jax": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "array_api_strict": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
}

#: every option of the sparse loss that touches the labels
SPARSE_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"class_weights": True},
    {"label_smoothing": 0.2, "class_weights": True},
    {"ignore_index": 3, "reduction": "mean"},
    {"ignore_index": 3, "class_weights": True, "label_smoothing": 0.1, "reduction": "mean"},
    {"z_loss": 0.01, "logit_softcap": 5.0},
    {"weights": True, "reduction": "sum"},
]

rng = np.random.default_rng(7)
Z = rng.normal(scale=2.0, size=(6, 5))
Y = np.array([0, 1, 2, 3, 4, 3])
CW = rng.uniform(0.5, 2.0, size=5)
SW = rng.uniform(0.0, 2.0, size=6)


def _need(name: str):  # type: ignore[no-untyped-def]
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    return framework(name)


@pytest.mark.parametrize("options", SPARSE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_every_integer_label_dtype(fw, options):  # type: ignore[no-untyped-def]
    """Each integer dtype the framework has gives the float64 reference, for every option."""
    kw = dict(options)
    want_kw = {"reduction": kw.get("reduction", "none"), "ignore_index": kw.get("ignore_index"),
               "alpha": kw.get("label_smoothing", 0.0), "z_loss": kw.get("z_loss", 0.0),
               "cap": kw.get("logit_softcap")}
    if kw.pop("class_weights", False):
        kw["class_weights"] = fw.asarray(CW, "float64")
        want_kw["cw"] = CW
    if kw.pop("weights", False):
        kw["weights"] = fw.asarray(SW, "float64")
        want_kw["w"] = SW
    want = ref.sparse_zcap(Z, Y, **want_kw)
    z = fw.asarray(Z, "float64")
    for dtype in LABEL_DTYPES[fw.name]:
        got = xent.sparse_softmax_cross_entropy(z, fw.asarray(Y, dtype), **kw)
        np.testing.assert_allclose(fw.to_numpy(got), want, rtol=1e-10, atol=1e-12, err_msg=dtype)
        probs = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)
        got = xent.sparse_categorical_cross_entropy(fw.asarray(probs, "float64"), fw.asarray(Y, dtype))
        np.testing.assert_allclose(fw.to_numpy(got), -np.log(probs[np.arange(6), Y]), rtol=1e-6, err_msg=dtype)


def test_every_integer_label_dtype_compiled(autodiff_fw):  # type: ignore[no-untyped-def]
    """The same under each framework's compiler, with smoothing and class weights."""
    fw = autodiff_fw
    want = ref.sparse_zcap(Z, Y, alpha=0.1, cw=CW, reduction="mean")
    cw = fw.asarray(CW, "float32")
    fn = fw.compile(lambda z, y: xent.sparse_softmax_cross_entropy(
        z, y, label_smoothing=0.1, class_weights=cw, reduction="mean"))
    for dtype in LABEL_DTYPES[fw.name]:
        if fw.name == "tensorflow" and dtype in ("uint16", "uint32", "uint64", "int8"):
            continue  # (XLA on the CPU has no kernel for these in TF's clip)
        got = fn(fw.asarray(Z, "float32"), fw.asarray(Y, dtype))
        np.testing.assert_allclose(fw.to_numpy(got), want, rtol=1e-5, err_msg=dtype)


# ------------------------------------------------------------------ TF shapes
_LOSSES_DENSE = ["softmax_cross_entropy", "sigmoid_cross_entropy", "categorical_cross_entropy",
                 "binary_cross_entropy"]


@pytest.mark.parametrize("jit", [False, True])
def test_tf_none_batch_and_unknown_rank(jit):  # type: ignore[no-untyped-def]
    """Every loss under tf.function with a None batch and labels of unknown rank
    (tf.squeeze of [None, 1]) gives tf.nn's / Keras' own numbers."""
    tf = _need("tensorflow").tf
    z = rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=(7, 1)).astype(np.int32)
    spec = [tf.TensorSpec([None, 4]), tf.TensorSpec(None, tf.int32)]

    @tf.function(input_signature=spec, jit_compile=jit)
    def sparse(z, y):
        return xent.sparse_softmax_cross_entropy(z, tf.squeeze(y), label_smoothing=0.1, reduction="mean")

    onehot = np.eye(4)[y[:, 0]] * 0.9 + 0.1 / 4
    lsm = z - np.log(np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(sparse(z, y).numpy(), -(onehot * lsm).sum(-1).mean(), rtol=1e-5)

    soft = tf.nn.softmax(rng.normal(size=(7, 4)).astype(np.float32))
    for name in _LOSSES_DENSE:
        probs = name in ("categorical_cross_entropy", "binary_cross_entropy")

        @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec(None)], jit_compile=jit)
        def dense(z, y, name=name, probs=probs):
            return getattr(xent, name)(tf.nn.softmax(z) if probs else z, y, reduction="mean")

        got = dense(z, soft).numpy()
        zt = tf.constant(z)
        native = {
            "softmax_cross_entropy": lambda: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(soft, zt)),
            "sigmoid_cross_entropy": lambda: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(soft, zt)),
            "categorical_cross_entropy": lambda: tf.reduce_mean(
                -tf.reduce_sum(soft * tf.math.log(tf.clip_by_value(tf.nn.softmax(zt), 1e-7, 1 - 1e-7)), -1)),
            "binary_cross_entropy": lambda: tf.reduce_mean(tf.keras.backend.binary_crossentropy(soft, tf.nn.softmax(zt)))
            if hasattr(tf, "keras") and hasattr(tf.keras, "backend") else None,
        }[name]()
        if native is not None:
            np.testing.assert_allclose(got, native.numpy(), rtol=1e-5, err_msg=name)


def test_tf_unknown_rank_logits_are_named():  # type: ignore[no-untyped-def]
    tf = _need("tensorflow").tf

    @tf.function(input_signature=[tf.TensorSpec(None), tf.TensorSpec(None, tf.int32)])
    def f(z, y):
        return xent.sparse_softmax_cross_entropy(z, y)

    with pytest.raises(ValueError, match="logits has an unknown rank"):
        f(tf.zeros([2, 3]), tf.zeros([2], tf.int32))


def test_tf_public_functions_are_not_autograph_converted():  # type: ignore[no-untyped-def]
    """A traced TF step runs xent as written (AutoGraph's conversion tripled the
    trace time): the mark is on every public loss."""
    import inspect

    from xent.compat import keras, optax, tensorflow, torch

    for name in xent.__all__:
        fn = getattr(xent, name)
        if name.endswith("cross_entropy"):
            assert hasattr(fn, "autograph_info__"), name
    for module in (keras, optax, tensorflow, torch):
        functions = [n for n in module.__all__ if inspect.isfunction(vars(module).get(n))]
        assert functions, module.__name__
        for name in functions:
            assert hasattr(getattr(module, name), "autograph_info__"), f"{module.__name__}.{name}"


# ------------------------------------------------------------- torch compile
_RECOMPILE_SCRIPT = """
import sys, numpy as np, torch
torch._dynamo.config.error_on_recompile = True
import xent
torch.manual_seed(0)
model = torch.nn.Linear(8, 5)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
options = dict(label_smoothing=0.1, class_weights=torch.rand(5) + 0.5, ignore_index=-100, reduction="mean")

@torch.compile(fullgraph=True)
def step(x, y):
    return xent.sparse_softmax_cross_entropy(model(x), y, **options)

x, y = torch.randn(16, 8), torch.randint(0, 5, (16,), dtype=torch.int32)
y[-3:] = -100
for i in range(4):
    loss = step(x, y)
    loss.backward(); opt.step(); opt.zero_grad()
    want = torch.nn.functional.cross_entropy(model(x).detach(), y.long(), weight=options["class_weights"],
                                             label_smoothing=0.1)
    # between steps: eager calls on other array types, and a module import
    xent.sparse_softmax_cross_entropy(np.random.randn(4, 5), [0, 1, 2, 3])
    xent.sigmoid_cross_entropy(np.zeros(3), np.ones(3))
    if i == 1:
        import jax.numpy as jnp
        xent.sparse_softmax_cross_entropy(jnp.ones((2, 5)), jnp.array([0, 1]))
print("ok", float(loss))
"""


def test_torch_compile_never_recompiles_for_xent():  # type: ignore[no-untyped-def]
    """A compiled step through xent compiles once, from a fresh process, however
    the process imports modules and calls xent eagerly on other array types in
    between (torch._dynamo.config.error_on_recompile raises otherwise)."""
    _need("torch")
    _need("jax")
    out = subprocess.run([sys.executable, "-c", _RECOMPILE_SCRIPT], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_torch_compile_dynamic_shapes():  # type: ignore[no-untyped-def]
    torch = _need("torch").torch
    fn = torch.compile(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean"),
                       fullgraph=True, dynamic=True)
    for n in (5, 9, 13):
        z = torch.randn(n, 7, dtype=torch.float64)
        y = torch.randint(0, 7, (n,))
        want = torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)
        torch.testing.assert_close(fn(z, y), want)


def test_jax_jit_varying_shapes():  # type: ignore[no-untyped-def]
    fw = _need("jax")
    jax = fw.jax
    fn = jax.jit(lambda z, y: xent.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="mean"))
    for n in (5, 9):
        z = rng.normal(size=(n, 7))
        y = rng.integers(0, 7, size=n)
        np.testing.assert_allclose(np.asarray(fn(fw.asarray(z), fw.asarray(y, "int32"))),
                                   ref.sparse_zcap(z, y, alpha=0.1, reduction="mean"), rtol=1e-10)


# -------------------------------------------------------------- mixed precision
@pytest.mark.parametrize("loss", ["sparse", "dense", "sigmoid"])
def test_torch_autocast_returns_float32_like_torch(loss):  # type: ignore[no-untyped-def]
    """Under torch.autocast(bfloat16) the loss is float32, as torch's own loss is,
    and equals it."""
    torch = _need("torch").torch
    F = torch.nn.functional
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5)
    x = torch.randn(8, 6)
    y = torch.randint(0, 5, (8,))
    soft = torch.softmax(torch.randn(8, 5), -1)
    binary = (torch.rand(8, 5) > 0.5).float()
    for compiled in (False, True):
        def both(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z = lin(x)
                if loss == "sparse":
                    return xent.sparse_softmax_cross_entropy(z, y, reduction="mean"), F.cross_entropy(z, y)
                if loss == "dense":
                    return xent.softmax_cross_entropy(z, soft, reduction="mean"), F.cross_entropy(z, soft)
                return (xent.sigmoid_cross_entropy(z, binary, reduction="mean"),
                        F.binary_cross_entropy_with_logits(z, binary))

        fn = torch.compile(both, fullgraph=True) if compiled else both
        got, want = fn(x)
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- softcap
def test_softcap_keeps_masked_lanes_masked(fw):  # type: ignore[no-untyped-def]
    """``[[1, 2, -inf, -inf]]``, label 0, cap 2: the loss over the two real classes."""
    z = np.array([[1.0, 2.0, -np.inf, -np.inf]])
    got = fw.to_numpy(xent.sparse_softmax_cross_entropy(fw.asarray(z, "float64"), fw.asarray([0]), logit_softcap=2.0))
    s = 2.0 * np.tanh(z[:, :2] / 2.0)
    want = np.log(np.exp(s).sum()) - s[0, 0]
    np.testing.assert_allclose(got, [want], rtol=1e-12)
    if fw.name != "numpy" and fw.name != "array_api_strict":
        (g,) = fw.grad(lambda a: xent.sparse_softmax_cross_entropy(a, fw.asarray([0]), logit_softcap=2.0,
                                                                   reduction="sum"), [fw.asarray(z, "float64")])
        assert np.isfinite(g).all() and (g[0, 2:] == 0).all()


def test_linear_softcap_keeps_masked_vocabulary_masked(autodiff_fw):  # type: ignore[no-untyped-def]
    """A -inf bias masks a vocabulary entry: with soft-capping it stays masked,
    in the chunked forward and backward."""
    fw = autodiff_fw
    h = rng.normal(size=(5, 4))
    w = rng.normal(size=(6, 4))
    b = np.array([0.0, 0.1, 0.0, 0.2, -np.inf, -np.inf])
    y = np.array([0, 1, 2, 3, 0])
    z = h @ w.T + b
    want = ref.sparse_zcap(z[:, :4], y, cap=3.0, reduction="mean")
    args = [fw.asarray(h, "float64"), fw.asarray(w, "float64")]

    def loss(hh, ww):
        return xent.linear_cross_entropy(hh, ww, fw.asarray(y), bias=fw.asarray(b, "float64"),
                                         logit_softcap=3.0, chunk_size=2)

    np.testing.assert_allclose(fw.to_numpy(loss(*args)), want, rtol=1e-10)
    gh, gw = fw.grad(loss, args, argnums=(0, 1))
    assert np.isfinite(gh).all() and np.isfinite(gw).all()
    assert (gw[4:] == 0).all()


def _dialect_calls():  # type: ignore[no-untyped-def]
    """{name: call(logits [N, 4], class ids [N], soft labels [N, 4])}, one per dialect loss."""
    from xent.compat import keras, optax, tensorflow, torch

    return {
        "torch.cross_entropy": lambda z, y, p: torch.cross_entropy(z, y, label_smoothing=0.1),
        "torch.binary_cross_entropy_with_logits": lambda z, y, p: torch.binary_cross_entropy_with_logits(z, p),
        "keras.sparse_categorical_crossentropy": lambda z, y, p: keras.sparse_categorical_crossentropy(
            y, z, from_logits=True),
        "keras.binary_crossentropy": lambda z, y, p: keras.binary_crossentropy(p, z, from_logits=True),
        "optax.softmax_cross_entropy_with_integer_labels":
            lambda z, y, p: optax.softmax_cross_entropy_with_integer_labels(z, y),
        "tf.nn.softmax_cross_entropy_with_logits": lambda z, y, p: tensorflow.softmax_cross_entropy_with_logits(p, z),
    }


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", list(_dialect_calls()))
def test_dialects_under_tf_function_with_none_batch(name, jit):  # type: ignore[no-untyped-def]
    """Each dialect on TF tensors with a None batch dimension (a Keras step's
    short last batch), with and without XLA, equals the same dialect run
    eagerly on NumPy, which tests/compat/test_compat.py compares with the framework."""
    tf = _need("tensorflow").tf
    call = _dialect_calls()[name]
    z = rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.integers(0, 4, size=7).astype(np.int32)
    p = rng.random((7, 4)).astype(np.float32)
    fn = tf.function(lambda z, y, p: call(z, y, p), jit_compile=jit, input_signature=[
        tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 4])])
    got = np.asarray(fn(z, y, p))
    want = np.asarray(call(z.astype(np.float64), y, p.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("ignore_index", [2**40, -(2**40), 2**70])
def test_ignore_index_beyond_the_label_dtype(fw, ignore_index):  # type: ignore[no-untyped-def]
    """An ignore_index no label of the labels' dtype can equal ignores nothing
    (JAX without x64 raised OverflowError comparing int32 labels with it)."""
    want = ref.sparse_zcap(Z, Y, reduction="mean")
    z = fw.asarray(Z, "float64")
    for dtype in ("int32", "int64"):
        got = xent.sparse_softmax_cross_entropy(z, fw.asarray(Y, dtype), ignore_index=ignore_index, reduction="mean")
        np.testing.assert_allclose(fw.to_numpy(got), want, rtol=1e-10, err_msg=dtype)


def test_jax_without_x64():  # type: ignore[no-untyped-def]
    """JAX's default (no 64-bit types): int32 labels, a large ignore_index,
    float32 logits, eagerly and under jax.jit."""
    fw = _need("jax")
    jax, jnp = fw.jax, fw.jnp
    want = ref.sparse_zcap(Z, Y, alpha=0.1, reduction="mean")
    with jax.enable_x64(False):
        z, y = jnp.asarray(Z, jnp.float32), jnp.asarray(Y)
        assert y.dtype == jnp.int32
        for fn in (xent.sparse_softmax_cross_entropy, jax.jit(xent.sparse_softmax_cross_entropy,
                                                              static_argnames=("ignore_index", "label_smoothing",
                                                                               "reduction"))):
            got = fn(z, y, ignore_index=2**40, label_smoothing=0.1, reduction="mean")
            assert got.dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
