"""The focal dialects: ``xent.compat.torchvision.sigmoid_focal_loss`` against
torchvision's own formula (written out below as torchvision computes it:
torchvision cannot be installed beside the CPU torch build CI uses), on every
backend, and its NaN gradients that the dialect does not have."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_matches
from xent.compat import torchvision as tvd
from xent.testing._reference import sigmoid, softplus


def torchvision_formula(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):  # type: ignore[no-untyped-def]
    """torchvision.ops.sigmoid_focal_loss's arithmetic, in float64 NumPy."""
    p = sigmoid(inputs)
    ce = targets * softplus(-inputs) + (1 - targets) * softplus(inputs)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.75, 0.5), (0.25, 0.0)])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_focal_loss_like_torchvision(fw, dtype, reduction, alpha, gamma, soft):  # type: ignore[no-untyped-def]
    from tests.helpers import rounded

    rng = np.random.default_rng(0)
    x = rounded(rng.normal(size=(4, 5)) * 4, dtype)
    t = rng.random(x.shape) if soft else (rng.random(x.shape) < 0.3).astype(float)
    t = rounded(t, dtype)
    got = tvd.sigmoid_focal_loss(fw.asarray(x, dtype), fw.asarray(t, dtype), alpha=alpha, gamma=gamma,
                                 reduction=reduction)
    want = torchvision_formula(x, t, alpha, gamma, reduction)
    assert_matches(fw, got, want, dtype, 2, 1 if reduction == "none" else x.size)


def test_defaults_and_errors():  # type: ignore[no-untyped-def]
    x, t = np.array([2.0, -1.0, 0.3]), np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(tvd.sigmoid_focal_loss(x, t), torchvision_formula(x, t), rtol=1e-12)
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
        tvd.sigmoid_focal_loss(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="focal_alpha"):
        tvd.sigmoid_focal_loss(x, t, alpha=1.5)
    with pytest.raises(ValueError, match="focal_gamma"):
        tvd.sigmoid_focal_loss(x, t, gamma=-1.0)


def test_finite_gradients_where_torchvisions_are_nan():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    x = torch.tensor([18.0, 25.0, -3.0, 0.5], requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0, 1.0])
    p = torch.sigmoid(x)  # torchvision's arithmetic, in torch: p_t rounds to 1 at 18 in float32
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    (ce * (1 - p_t) ** 0.5 * (0.25 * t + 0.75 * (1 - t))).sum().backward()
    assert torch.isnan(x.grad[:2]).all(), x.grad
    x2 = x.detach().clone().requires_grad_(True)
    tvd.sigmoid_focal_loss(x2, t, gamma=0.5, reduction="sum").backward()
    assert torch.isfinite(x2.grad).all(), x2.grad
    np.testing.assert_allclose(x2.grad[2:].numpy(), x.grad[2:].numpy(), rtol=1e-5)


def test_optax_dialect_takes_traced_gamma_and_alpha():  # type: ignore[no-untyped-def]
    """optax passes gamma and alpha as arrays (traced under jax.jit); the dialect does too."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    from xent.compat import optax as od

    rng = np.random.default_rng(1)
    z = jax.numpy.asarray(rng.normal(size=(4, 6)) * 3, "float32")
    y = jax.numpy.asarray((rng.random((4, 6)) < 0.5).astype(np.float32))
    for alpha, gamma in ((0.25, 2.0), (1.0, 0.0), (0.5, 0.5)):
        want = optax.losses.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma)
        traced = jax.jit(od.sigmoid_focal_loss)(z, y, alpha=alpha, gamma=gamma)
        static = od.sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma)
        np.testing.assert_allclose(np.asarray(traced), np.asarray(want), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(static), np.asarray(want), rtol=2e-5, atol=1e-7)
