"""torch's sigmoid autograd node (binary.py): autograd modes, the small-input
form, the limits at infinite logits."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import REDUCTIONS, torch_or_skip
from xent.testing import assert_close


# The sigmoid loss on torch is one autograd node with closed-form derivatives
# (backends/torch/binary.py, BinaryNLL), in three variants: eager, under
# torch.compile, under torch.func transforms.
def _sigmoid_inputs(torch, shape=(5, 7)):
    r = np.random.default_rng(3)
    z = r.standard_normal(shape) * 4
    z.flat[:4] = [0.0, -0.0, 40.0, -40.0]
    y = r.random(shape)
    pw = r.uniform(0.5, 2.0, shape[-1:])
    return z, y, pw


def test_torch_sigmoid_node_autograd_modes():
    torch = torch_or_skip()
    z, y, pw = _sigmoid_inputs(torch)
    args = [torch.tensor(v, requires_grad=True) for v in (z, y, pw)]
    loss = lambda a, b, c: xent.sigmoid_cross_entropy(a, b, pos_weight=c)  # noqa: E731
    # reverse, forward (dual tensors), batched and second-order derivatives
    assert torch.autograd.gradcheck(loss, args, check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(loss, args)
    assert torch.autograd.gradcheck(lambda a, b: xent.sigmoid_cross_entropy(a, b, reduction="mean"),
                                    args[:2], check_forward_ad=True)
    # torch.func: per-row gradients (vmap of grad) and a forward-mode Jacobian
    total = lambda a, b: xent.sigmoid_cross_entropy(a, b, reduction="sum")  # noqa: E731
    want_z, want_y = ref.sigmoid_grads(z, y)
    per_row = torch.func.vmap(torch.func.grad(total))(torch.tensor(z), torch.tensor(y))
    np.testing.assert_allclose(per_row.numpy(), want_z, rtol=1e-12, atol=1e-15)
    jac = torch.func.jacfwd(total, argnums=(0, 1))(torch.tensor(z), torch.tensor(y))
    np.testing.assert_allclose(jac[0].numpy(), want_z, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jac[1].numpy(), want_y, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_torch_small_sigmoid_without_autodiff(dtype, reduction):
    # Small inputs that no autodiff records skip the node (_small_binary_nll,
    # unguarded): the same values, and the node's where the result is NaN.
    torch = torch_or_skip()
    t = getattr(torch, dtype)
    z, y, _ = _sigmoid_inputs(torch)
    zt, yt = torch.tensor(z).to(t), torch.tensor(y).to(t)
    zr, yr = zt.double().numpy(), yt.double().numpy()
    reduced = 1 if reduction == "none" else z.size
    with torch.no_grad():
        out = xent.sigmoid_cross_entropy(zt, yt, reduction=reduction)
    assert out.dtype == t
    assert_close(out, ref.sigmoid(zr, yr, reduction=reduction), reduced=reduced)
    zt[0, :3], yt[0, :3] = torch.tensor([np.inf, -np.inf, -np.inf]), torch.tensor([1.0, 0.0, 0.25])
    zr, yr = zt.double().numpy(), yt.double().numpy()
    want = ref.sigmoid(np.where(np.isinf(zr), 0.0, zr), yr)
    want[0, :3] = [0.0, 0.0, np.inf]  # an infinite logit its label agrees with gives 0
    want = want if reduction == "none" else want.sum() / (z.size if reduction == "mean" else 1)
    out = xent.sigmoid_cross_entropy(zt, yt, reduction=reduction)
    assert_close(out, want, reduced=reduced)
    zt[0, 0] = np.nan
    assert np.isnan(xent.sigmoid_cross_entropy(zt, yt, reduction=reduction).float().numpy()).any()


def test_torch_small_sigmoid_under_a_device_context(monkeypatch):
    # (its cached constant is made on the CPU, not on a torch.device context's device)
    torch = torch_or_skip()
    from xent.backends.torch import fused

    monkeypatch.setattr(fused, "_ONES", {})
    z, y, _ = _sigmoid_inputs(torch)
    with torch.device("meta"), torch.no_grad():
        out = xent.sigmoid_cross_entropy(torch.tensor(z, device="cpu"), torch.tensor(y, device="cpu"), reduction="sum")
    assert out.is_cpu
    assert_close(out, ref.sigmoid(z, y, reduction="sum"), reduced=z.size)


def test_torch_small_sigmoid_forward_mode_on_dual_tensors():
    # Dual tensors do not require grad: forward mode must still get the node's
    # derivative, σ(z) - y, also at z = 0 (where |z| has none).
    torch = torch_or_skip()
    import torch.autograd.forward_ad as fwad

    z, y, _ = _sigmoid_inputs(torch)
    tangent = np.random.default_rng(4).standard_normal(z.shape)
    with fwad.dual_level():
        dual = fwad.make_dual(torch.tensor(z), torch.tensor(tangent))
        jvp = fwad.unpack_dual(xent.sigmoid_cross_entropy(dual, torch.tensor(y), reduction="sum")).tangent
    np.testing.assert_allclose(float(jvp), (ref.sigmoid_grads(z, y)[0] * tangent).sum(), rtol=1e-12)


@pytest.mark.parametrize("with_pw", [False, True])
def test_torch_sigmoid_node_under_compile(with_pw):
    torch = torch_or_skip()
    z, y, pw = _sigmoid_inputs(torch)
    pw_ref = pw if with_pw else None
    fn = torch.compile(lambda a, b, c: xent.sigmoid_cross_entropy(a, b, pos_weight=c, reduction="sum"),
                       fullgraph=True, backend="aot_eager")
    zt = torch.tensor(z, requires_grad=True)
    out = fn(zt, torch.tensor(y), torch.tensor(pw) if with_pw else None)
    out.backward()
    np.testing.assert_allclose(out.item(), ref.sigmoid(z, y, pos_weight=pw_ref, reduction="sum"), rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), ref.sigmoid_grads(z, y, pos_weight=pw_ref)[0],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fill", [np.inf, 3e38])
def test_torch_sigmoid_large_input_limits(fill):
    # From 2**16 logits on, one sum over them decides whether the 0·inf mask is
    # needed: an infinite logit (or finite ones whose sum overflows) must still
    # give the limits, and everything else the reference values.
    torch = torch_or_skip()
    r = np.random.default_rng(5)
    z = (r.standard_normal((256, 300)) * 3).astype(np.float32)
    y = r.random((256, 300)).astype(np.float32)
    z[0, :4], y[0, :4] = [fill, -fill, fill, -fill], [1.0, 0.0, 0.0, 1.0]
    zt = torch.tensor(z, requires_grad=True)
    out = xent.sigmoid_cross_entropy(zt, torch.tensor(y))
    out.sum().backward()
    got = out.detach().numpy()
    want = ref.sigmoid(z, y)
    want[0, :4] = [0.0, 0.0, fill, fill] if fill == np.inf else ref.sigmoid(z[0, :4], y[0, :4])
    assert_close(got, want, reduced=1)
    np.testing.assert_array_equal(zt.grad.numpy()[0, :4], [0.0, 0.0, 1.0, -1.0])
