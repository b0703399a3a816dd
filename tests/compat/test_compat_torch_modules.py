"""``xent.compat.torch.nn`` (loss modules) and ``xent.compat.torch.linear_cross_entropy``
against PyTorch's own modules and functions (never against xent itself), and
``XentLoss`` against a float64 NumPy reference."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pytest

import xent
from xent.testing import framework, installed
from xent.testing._assert import selected_backends

_names, _explicit = selected_backends()
if "torch" not in _names:
    pytest.skip("torch is not among the backends under test", allow_module_level=True)
if not _explicit and importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed", allow_module_level=True)
import torch  # noqa: E402  (named in $XENT_TEST_BACKENDS: a broken install fails)
import torch.nn.functional as TF  # noqa: E402
from scipy.special import log_softmax, logsumexp  # noqa: E402

from xent.compat import torch as F  # noqa: E402

xnn = F.nn
N, C, D, H = 6, 5, 3, 4
REDUCTIONS = ("none", "mean", "sum")
rng = np.random.default_rng(2024)
LOGITS = rng.normal(scale=2.0, size=(N, C))
LOGITS3 = rng.normal(scale=2.0, size=(N, C, D))  # classes on dim 1
IDS = rng.integers(0, C, size=N)
IDS3 = rng.integers(0, C, size=(N, D))
IDS3[0, :2] = -100
SOFT = rng.dirichlet(np.ones(C), size=N)
CW = rng.uniform(0.5, 2.0, size=C)
BIN_Y = (rng.random((N, C)) < 0.5).astype(np.float64)
PROBS = rng.uniform(0.02, 0.98, size=(N, C))
ELEM_W = rng.uniform(0.0, 2.0, size=(N, 1))


def t(a, dtype=torch.float64, grad=False):
    """A fresh float64 (or integer) tensor from NumPy."""
    x = torch.tensor(a)
    if x.is_floating_point():
        x = x.to(dtype)
    return x.requires_grad_(grad)


def close(got, want, **kw):
    torch.testing.assert_close(got, want, equal_nan=True, **kw)


def value_and_grad(module, x, *rest):
    """The module's output and d <output, cotangent> / d x (x: a fresh leaf)."""
    x = x.detach().clone().requires_grad_(True)
    out = module(x, *rest)
    cot = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (g,) = torch.autograd.grad((out * cot).sum(), x)
    return out, g


def same_as_torch(ours, theirs, x, *rest, **kw):
    """``ours`` and ``theirs`` modules agree on values and input gradients, and
    ``ours`` leaves its inputs alone."""
    before = [a.detach().clone() for a in (x, *rest)]
    got, got_g = value_and_grad(ours, x, *rest)
    want, want_g = value_and_grad(theirs, x, *rest)
    assert got.shape == want.shape and got.dtype == want.dtype
    close(got, want, **kw)
    close(got_g, want_g, **kw)
    for a, b in zip((x, *rest), before):
        assert torch.equal(a.detach(), b)


# ------------------------------------------------------------- CrossEntropyLoss
CE_OPTIONS = [
    {},
    {"weight": CW},
    {"label_smoothing": 0.15},
    {"weight": CW, "label_smoothing": 0.1},
    {"ignore_index": 2},
    {"weight": CW, "ignore_index": 3, "label_smoothing": 0.05},
    {"size_average": False},
    {"reduce": False},
    {"size_average": True, "reduce": True, "weight": CW},
]


# (torch rejects ignore_index with probability targets: tested below)
CE_CASES = [pytest.param(targets, options, id=f"{targets}-{','.join(options) or 'default'}")
            for targets in ("ids", "ids_kdim", "probabilities", "unbatched") for options in CE_OPTIONS
            if not (targets == "probabilities" and "ignore_index" in options)]


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("targets", "options"), CE_CASES)
def test_cross_entropy_loss_matches_torch(targets, options, reduction):
    kw = {k: (t(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    x, y = {"ids": (LOGITS, IDS), "ids_kdim": (LOGITS3, IDS3), "probabilities": (LOGITS, SOFT),
            "unbatched": (LOGITS[0], IDS[1])}[targets]
    if "ignore_index" in options and targets == "ids_kdim":
        y = np.where(y == -100, options["ignore_index"], y)  # -100 is out of range there
    ours = xnn.CrossEntropyLoss(reduction=reduction, **kw)
    theirs = torch.nn.CrossEntropyLoss(reduction=reduction, **kw)
    assert ours.reduction == theirs.reduction
    same_as_torch(ours, theirs, t(x), t(y))


def test_cross_entropy_loss_quirks_match_torch():
    all_ignored = t(np.full(N, -100))
    for reduction in REDUCTIONS:
        close(xnn.CrossEntropyLoss(reduction=reduction)(t(LOGITS), all_ignored),
              torch.nn.CrossEntropyLoss(reduction=reduction)(t(LOGITS), all_ignored))
    assert torch.isnan(xnn.CrossEntropyLoss()(t(LOGITS), all_ignored))
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        xnn.CrossEntropyLoss(ignore_index=1)(t(LOGITS), t(SOFT))
    with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
        torch.nn.CrossEntropyLoss(ignore_index=1)(t(LOGITS), t(SOFT))
    for module in (xnn.CrossEntropyLoss, torch.nn.CrossEntropyLoss):
        with pytest.raises(ValueError, match="not a valid value for reduction"):
            module(reduction="batchmean")(t(LOGITS), t(IDS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cross_entropy_loss_keeps_dtype(dtype):
    x = t(LOGITS).to(dtype)
    got = xnn.CrossEntropyLoss(weight=t(CW).to(dtype), label_smoothing=0.1)(x, t(IDS))
    want = torch.nn.CrossEntropyLoss(weight=t(CW).to(dtype).float(), label_smoothing=0.1)(x.float(), t(IDS))
    assert got.dtype == dtype
    close(got.float(), want, rtol=1e-2 if dtype != torch.float32 else 1e-6, atol=1e-5)


# ------------------------------------------------------------ binary losses
BCE_OPTIONS = [{}, {"weight": ELEM_W}, {"pos_weight": CW}, {"weight": ELEM_W, "pos_weight": CW},
               {"size_average": False}, {"reduce": False}]


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", BCE_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_bce_with_logits_loss_matches_torch(options, reduction):
    kw = {k: (t(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    same_as_torch(xnn.BCEWithLogitsLoss(reduction=reduction, **kw),
                  torch.nn.BCEWithLogitsLoss(reduction=reduction, **kw), t(LOGITS), t(BIN_Y))


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"weight": ELEM_W}, {"size_average": False}, {"reduce": False}],
                         ids=lambda o: ",".join(o) or "default")
def test_bce_loss_matches_torch(options, reduction):
    kw = {k: (t(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    soft_y = rng.uniform(0, 1, size=(N, C))
    same_as_torch(xnn.BCELoss(reduction=reduction, **kw), torch.nn.BCELoss(reduction=reduction, **kw),
                  t(PROBS), t(soft_y))


def test_bce_loss_log_clamp_matches_torch():
    p, y = t([0.0, 1.0, 1e-50, 0.5]), t([1.0, 0.0, 1.0, 1.0])
    close(xnn.BCELoss(reduction="none")(p, y), torch.nn.BCELoss(reduction="none")(p, y))


# --------------------------------------------- modules: buffers, state, copies
def module_pairs():
    w, pw = t(CW), t(CW[::-1].copy())
    return [
        (xnn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1), (LOGITS, IDS)),
        (xnn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), (LOGITS, IDS)),
        (xnn.BCEWithLogitsLoss(weight=t(ELEM_W), pos_weight=pw),
         torch.nn.BCEWithLogitsLoss(weight=t(ELEM_W), pos_weight=pw), (LOGITS, BIN_Y)),
        (xnn.BCEWithLogitsLoss(pos_weight=pw), torch.nn.BCEWithLogitsLoss(pos_weight=pw), (LOGITS, BIN_Y)),
        (xnn.BCELoss(weight=t(ELEM_W)), torch.nn.BCELoss(weight=t(ELEM_W)), (PROBS, BIN_Y)),
    ]


PAIR_IDS = ["ce_weighted", "ce", "bce_logits_weighted", "bce_logits_pos_weight", "bce"]


@pytest.mark.parametrize("index", range(5), ids=PAIR_IDS)
def test_module_state_matches_torch(index):
    ours, theirs, (x, y) = module_pairs()[index]
    assert isinstance(ours, type(theirs)) and isinstance(ours, torch.nn.Module)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.parameters()) == []
    # torch's state_dict loads into ours and back
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    # .to(dtype) moves the buffers as torch's does
    for dtype in (torch.float32, torch.float64):
        ours.to(dtype)
        theirs.to(dtype)
        for (n1, b1), (n2, b2) in zip(ours.named_buffers(), theirs.named_buffers()):
            assert n1 == n2 and b1.dtype == b2.dtype == dtype and torch.equal(b1, b2)
        close(ours(t(x, dtype), t(y, dtype)), theirs(t(x, dtype), t(y, dtype)))


@pytest.mark.parametrize("index", range(5), ids=PAIR_IDS)
def test_module_deepcopy_and_pickle(index):
    ours, theirs, (x, y) = module_pairs()[index]
    want = theirs(t(x), t(y))
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(clone) is type(ours)
        assert list(clone.state_dict()) == list(ours.state_dict())
        for b1, b2 in zip(clone.buffers(), ours.buffers()):
            assert torch.equal(b1, b2) and b1.data_ptr() != b2.data_ptr()
        close(clone(t(x), t(y)), want)


@pytest.fixture
def no_recompiles():
    import torch._dynamo

    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize("index", [0, 1, 2, 4],
                         ids=["ce_weighted", "ce", "bce_logits_weighted", "bce"])
def test_module_compiles_fullgraph_without_recompiles(index, no_recompiles):
    ours, theirs, (x, y) = module_pairs()[index]
    compiled = torch.compile(ours, fullgraph=True)
    step_rng = np.random.default_rng(index)
    for _ in range(3):  # same shapes, new values: one compilation
        xs = step_rng.uniform(0.02, 0.98, x.shape) if index == 4 else x + step_rng.normal(size=x.shape)
        ys = y if y.dtype.kind == "i" else (step_rng.random(y.shape) < 0.5).astype(np.float64)
        got, got_g = value_and_grad(compiled, t(xs), t(ys))
        want, want_g = value_and_grad(theirs, t(xs), t(ys))
        close(got, want)
        close(got_g, want_g)


# ---------------------------------------------------------- a training loop
@pytest.mark.parametrize("options", [{}, {"weight": CW.astype(np.float32), "label_smoothing": 0.1}],
                         ids=["default", "weight_smoothing"])
def test_training_loop_matches_torch(options):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 8, 16, generator=gen)  # 20 batches of 8 samples
    y = torch.randint(0, C, (20, 8), generator=gen)
    y[3, :4] = -100
    kw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    torch.manual_seed(1)
    init = torch.nn.Linear(16, C).state_dict()
    runs = []
    for criterion in (torch.nn.CrossEntropyLoss(**kw), xnn.CrossEntropyLoss(**kw)):
        model = torch.nn.Linear(16, C)
        model.load_state_dict(init)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        losses = []
        for step in range(20):
            opt.zero_grad()
            loss = criterion(model(x[step]), y[step])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append((losses, model.state_dict()))
    (want_losses, want_state), (got_losses, got_state) = runs
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-6, atol=1e-6)
    for name in want_state:
        close(got_state[name], want_state[name], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ XentLoss
def reference_sparse(z, y, ignore_index=None, z_loss=0.0, cw=None, w=None, reduction="none"):
    """Float64 NumPy: xent's sparse loss with z-loss (classes last)."""
    z = np.asarray(z, np.float64)
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    ys = np.where(keep, y, 0)
    logp = log_softmax(z, axis=-1)
    wy = np.ones(y.shape) if cw is None else np.asarray(cw)[ys]
    loss = -wy * np.take_along_axis(logp, ys[..., None], -1)[..., 0] + z_loss * logsumexp(z, axis=-1) ** 2
    weight = wy * keep
    if w is not None:
        loss, weight = loss * w, weight * w
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return 0.0 if weight.sum() == 0 else loss.sum() / weight.sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("class_weights", [None, "tensor", "numpy"])
def test_xent_loss_sparse_matches_numpy_reference(reduction, with_weights, class_weights):
    y = IDS.copy()
    y[[1, 4]] = -1
    cw = {None: None, "tensor": t(CW), "numpy": CW}[class_weights]
    options = {"ignore_index": -1, "z_loss": 1e-2, "reduction": reduction}
    if cw is not None:
        options["class_weights"] = cw
    module = xnn.XentLoss("sparse_softmax_cross_entropy", **options)
    w = rng.uniform(0.5, 1.5, size=N) if with_weights else None
    z = t(LOGITS, grad=True)
    got = module(z, t(y), None if w is None else t(w))
    want = reference_sparse(LOGITS, y, -1, 1e-2, None if cw is None else CW, w, reduction)
    close(got, torch.as_tensor(want))
    got.sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad[[1, 4]] == 0).all()
    assert list(module.state_dict()) == ([] if cw is None else ["class_weights"])


def test_xent_loss_all_ignored_mean_is_zero():
    module = xnn.XentLoss("sparse_softmax_cross_entropy", ignore_index=-1, reduction="mean")
    assert module(t(LOGITS), t(np.full(N, -1))).item() == 0.0  # xent's mean, not torch's NaN


def test_xent_loss_by_function_and_axis_matches_torch():
    module = xnn.XentLoss(xent.sparse_softmax_cross_entropy, axis=1, label_smoothing=0.1, reduction="sum")
    same_as_torch(module, torch.nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"), t(LOGITS3),
                  t(np.where(IDS3 < 0, 0, IDS3)))


def test_xent_loss_sigmoid_pos_weight_buffer_matches_torch():
    module = xnn.XentLoss("sigmoid_cross_entropy", pos_weight=[float(v) for v in CW], reduction="sum")
    assert list(module.state_dict()) == ["pos_weight"]
    module.to(torch.float32)
    assert module.pos_weight.dtype == torch.float32
    module.to(torch.float64)
    same_as_torch(module, torch.nn.BCEWithLogitsLoss(pos_weight=t(CW), reduction="sum"), t(LOGITS), t(BIN_Y))
    for clone in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert clone.pos_weight.data_ptr() != module.pos_weight.data_ptr()
        close(clone(t(LOGITS), t(BIN_Y)), module(t(LOGITS), t(BIN_Y)))
        assert "pos_weight=<buffer>" in repr(clone) and "reduction='sum'" in repr(clone)


def test_xent_loss_does_not_share_numpy_options():
    cw = CW.copy()
    module = xnn.XentLoss("sparse_softmax_cross_entropy", class_weights=cw)
    module.class_weights.mul_(0)
    assert np.array_equal(cw, CW)


def test_xent_loss_compiles_fullgraph(no_recompiles):
    module = xnn.XentLoss("sparse_softmax_cross_entropy", ignore_index=-100, z_loss=1e-3,
                          class_weights=t(CW), reduction="mean")
    compiled = torch.compile(module, fullgraph=True)
    for step in range(3):
        z = LOGITS + step
        close(compiled(t(z), t(IDS)), torch.as_tensor(reference_sparse(z, IDS, -100, 1e-3, CW, None, "mean")))


def test_xent_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one of xent's losses"):
        xnn.XentLoss("cross_entropy")
    with pytest.raises(TypeError, match="does not take"):
        xnn.XentLoss("sparse_softmax_cross_entropy", pos_weight=t(CW))
    with pytest.raises(TypeError, match="pass them to forward"):
        xnn.XentLoss("sparse_softmax_cross_entropy", weights=t(CW))
    with pytest.raises(TypeError, match="name or a callable"):
        xnn.XentLoss(3)


# ------------------------------------------------------- linear_cross_entropy
LCE_OPTIONS = [
    {},
    {"weight": CW},
    {"label_smoothing": 0.1},
    {"ignore_index": 2},
    {"weight": CW, "label_smoothing": 0.2, "ignore_index": 1},
    {"options": "chunk2"},
    {"bias": True, "weight": CW, "options": "chunk4"},
]


def lce_kwargs(options, dtype=torch.float64):
    kw = {}
    for k, v in options.items():
        if k == "options":
            kw[k] = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=int(v[5:]), chunking_method=None)
        elif k != "bias":
            kw[k] = t(v, dtype) if isinstance(v, np.ndarray) else v
    return kw


def lce_grads(fn, h, W, b, y, kw):
    h, W = h.detach().clone().requires_grad_(True), W.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    out = fn(h, W, y, linear_bias=b, **kw)
    cot = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * cot).sum(), [a for a in (h, W, b) if a is not None])
    return out, grads


HID = rng.normal(size=(N + 3, H))
LW = rng.normal(size=(C, H))
LB = rng.normal(size=C)
LY = rng.integers(0, C, size=N + 3)
LY[[0, 5]] = -100


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="torch < 2.13 has no F.linear_cross_entropy")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", LCE_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_linear_cross_entropy_matches_torch(options, reduction):
    kw = lce_kwargs(options)
    y = LY.copy()
    if "ignore_index" in options:
        y[y == -100] = options["ignore_index"]
        y[1] = options["ignore_index"]
    b = t(LB) if options.get("bias") else None
    inputs = (t(HID), t(LW), b, t(y))
    before = [a.clone() for a in inputs if a is not None]
    got, got_g = lce_grads(F.linear_cross_entropy, *inputs, kw=dict(kw, reduction=reduction))
    # torch's reference path (options=None) is the definition; its chunked path is compared too
    want, want_g = lce_grads(TF.linear_cross_entropy, *inputs, kw=dict(kw, reduction=reduction, options=None))
    close(got, want)
    for g1, g2 in zip(got_g, want_g):
        close(g1, g2)
    assert all(torch.equal(a, c) for a, c in zip([a for a in inputs if a is not None], before))
    if "options" in options and "label_smoothing" not in options:
        chunked = TF.linear_cross_entropy(t(HID), t(LW), t(y), linear_bias=b, reduction=reduction, **kw)
        close(got.detach(), chunked.detach())


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="torch < 2.13 has no F.linear_cross_entropy")
def test_linear_cross_entropy_shapes_and_quirks_match_torch():
    h, W, b = t(HID), t(LW), t(LB)
    # unbatched input, scalar target
    close(F.linear_cross_entropy(h[0], W, t(LY[1]), linear_bias=b),
          TF.linear_cross_entropy(h[0], W, t(LY[1]), linear_bias=b))
    # probability targets (torch's reference path)
    soft = t(rng.dirichlet(np.ones(C), size=N + 3))
    for reduction in REDUCTIONS:
        same = dict(linear_bias=b, weight=t(CW), label_smoothing=0.1, reduction=reduction)
        close(F.linear_cross_entropy(h, W, soft, **same), TF.linear_cross_entropy(h, W, soft, **same))
    # a K-dimensional loss: linear_weight (C, D, H), target (N, D)
    Wk, bk, yk = t(rng.normal(size=(C, D, H))), t(rng.normal(size=(C, D))), t(IDS3)
    lin = TF.linear_cross_entropy
    close(F.linear_cross_entropy(h[:N], Wk, yk, linear_bias=bk, reduction="none"),
          lin(h[:N], Wk, yk, linear_bias=bk, reduction="none"))
    # every target ignored: torch's NaN mean, 0 sum
    ignored = t(np.full(N + 3, -100))
    for reduction in ("mean", "sum"):
        close(F.linear_cross_entropy(h, W, ignored, reduction=reduction),
              TF.linear_cross_entropy(h, W, ignored, reduction=reduction))
    # an empty batch: NaN mean, 0 sum, an empty "none"
    for reduction in REDUCTIONS:
        empty = (h[:0], W, t(LY[:0]))
        close(F.linear_cross_entropy(*empty, reduction=reduction), TF.linear_cross_entropy(*empty, reduction=reduction))
    # an int32 target (torch: int64 only) gives the int64 target's loss
    close(F.linear_cross_entropy(h, W, t(LY).int()), TF.linear_cross_entropy(h, W, t(LY)))
    # torch's RuntimeErrors are ValueErrors here
    for args, kw, match in [
        ((h[None], W, t(LY)[None]), {}, "dimensionality 1 or 2"),
        ((h, W[:, :-1], t(LY)), {}, "in_features"),
        ((h, W, t(LY)), {"linear_bias": b[:-1]}, "linear_bias shape"),
        ((h, W, soft), {"ignore_index": -100}, "ignore_index cannot be specified"),
        ((h[0], Wk, t(IDS3[0])), {}, "requires batched input"),
    ]:
        with pytest.raises(ValueError, match=match):
            F.linear_cross_entropy(*args, **kw)
        with pytest.raises(RuntimeError, match=match):
            TF.linear_cross_entropy(*args, **kw)


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="torch < 2.13 has no F.linear_cross_entropy")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_linear_cross_entropy_low_precision_matches_torch_float64(dtype):
    # the inputs rounded to dtype, then torch's float64 result: xent computes
    # each chunk in float32 and rounds the loss once
    gen = np.random.default_rng(5)
    h, W, b = (t(gen.normal(size=s)).to(dtype) for s in ((64, 32), (100, 32), (100,)))
    y = t(gen.integers(0, 100, size=64))
    got, got_g = lce_grads(F.linear_cross_entropy, h, W, b, y, {"options": torch.nn.LinearCrossEntropyOptions(
        batch_chunk_size=16, chunking_method=None)})
    want, want_g = lce_grads(TF.linear_cross_entropy, h.double(), W.double(), b.double(), y, {})
    assert got.dtype == dtype and all(g.dtype == dtype for g in got_g)
    ulp = {torch.float32: 2.0**-20, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]  # f32: 8 ulps
    close(got.double(), want, rtol=ulp, atol=0)
    for g1, g2 in zip(got_g, want_g):
        close(g1.double(), g2, rtol=4 * ulp, atol=4 * ulp * g2.abs().max().item())


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="torch < 2.13 has no F.linear_cross_entropy")
def test_linear_cross_entropy_compiles_fullgraph(no_recompiles):
    def step(h, W, y, b, w):
        return F.linear_cross_entropy(h, W, y, linear_bias=b, weight=w, label_smoothing=0.1)

    compiled = torch.compile(step, fullgraph=True)
    W, b, w = t(LW), t(LB), t(CW)
    for k in range(3):
        h = t(HID + k)
        got, got_g = lce_grads(lambda h, W, y, linear_bias: compiled(h, W, y, linear_bias, w), h, W, b, t(LY), {})
        want, want_g = lce_grads(TF.linear_cross_entropy, h, W, b, t(LY), {"weight": w, "label_smoothing": 0.1})
        close(got, want)
        for g1, g2 in zip(got_g, want_g):
            close(g1, g2)


@pytest.mark.skipif(not hasattr(TF, "linear_cross_entropy"), reason="torch < 2.13 has no F.linear_cross_entropy")
@pytest.mark.parametrize("inputs_in", ["numpy", "jax", "tensorflow"])
def test_linear_cross_entropy_on_other_frameworks_matches_torch(inputs_in):
    # the dialect runs on any backend (with the framework's arrays out)
    if inputs_in not in _names or not installed(inputs_in):
        pytest.skip(f"{inputs_in} is not among the installed backends under test")
    fw = framework(inputs_in)
    soft = rng.dirichlet(np.ones(C), size=N + 3)
    for target, kw in [(LY, {"weight": CW, "label_smoothing": 0.1, "reduction": "mean"}),
                       (LY, {"reduction": "none"}), (soft, {"weight": CW, "reduction": "sum"})]:
        args = [fw.asarray(a, "float64" if a.dtype.kind == "f" else None) for a in (HID, LW, target, LB)]
        got = F.linear_cross_entropy(*args[:3], linear_bias=args[3], **{
            k: fw.asarray(v, "float64") if isinstance(v, np.ndarray) else v for k, v in kw.items()})
        assert xent.get_backend(got).name == fw.name
        want = TF.linear_cross_entropy(t(HID), t(LW), t(target), linear_bias=t(LB), **{
            k: t(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
        np.testing.assert_allclose(fw.to_numpy(got), want.numpy(), rtol=1e-12)


@pytest.mark.skipif(not hasattr(torch.nn, "LinearCrossEntropyLoss"), reason="torch < 2.13")
@pytest.mark.parametrize("options", [{}, {"bias": True, "weight": CW, "label_smoothing": 0.1, "ignore_index": 2}],
                         ids=["default", "all"])
def test_linear_cross_entropy_loss_module_matches_torch(options):
    kw = {k: (t(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    ours = xnn.LinearCrossEntropyLoss(H, C, dtype=torch.float64, **kw)
    theirs = torch.nn.LinearCrossEntropyLoss(H, C, dtype=torch.float64, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    y = t(np.where(LY == -100, options.get("ignore_index", -100), LY))
    outs = []
    for module in (ours, theirs):
        module.zero_grad()
        h = t(HID, grad=True)
        loss = module(h, y)
        loss.backward()
        outs.append([loss, h.grad, *(p.grad for p in module.parameters())])
    for a, b in zip(*outs):
        close(a, b)


# ----------------------------------------------------------- lazy imports
def test_nn_is_lazy_and_needs_torch():
    code = ("import sys, xent, xent.compat.torch as F; assert 'torch' not in sys.modules; "
            "assert 'nn' in dir(F); F.nn.CrossEntropyLoss; assert 'torch' in sys.modules; "
            "from xent.compat.torch import nn; assert nn is F.nn")
    subprocess.run([sys.executable, "-c", code], check=True)
    # without PyTorch: nn raises ModuleNotFoundError, and the module behind it
    # still imports (pytest's --doctest-modules collects it), empty
    code = ("import sys; sys.modules['torch'] = None; import xent.compat.torch as F\n"
            "import xent.compat._torch_nn as m; assert m.__all__ == [] and not hasattr(m, 'XentLoss')\n"
            "try:\n    F.nn\nexcept ModuleNotFoundError:\n    pass\nelse:\n    raise AssertionError('no error')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_weighted_mean_with_an_out_of_range_target_under_compile():
    """Under torch.compile an out-of-range target makes the loss NaN (it cannot
    be read there); the weighted mean's divisor must not index the weights
    with it (on an accelerator that is a device assert that kills the context)."""
    from xent.compat import torch as xF

    w = torch.tensor([1.0, 2.0, 3.0])
    fn = torch.compile(lambda z, y: xF.cross_entropy(z, y, weight=w), fullgraph=True)
    z = torch.randn(4, 3)
    assert torch.isnan(fn(z, torch.tensor([0, 1, 7, 2])))
    torch.testing.assert_close(fn(z, torch.tensor([0, 1, 2, 2])),
                               torch.nn.functional.cross_entropy(z, torch.tensor([0, 1, 2, 2]), weight=w))
