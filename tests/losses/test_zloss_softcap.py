"""z-loss and logit soft-capping on the sparse softmax loss, every backend, against
the float64 formulas in :mod:`tests.reference` (values and analytic gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.helpers import assert_matches, loss_shape, rounded

OPTIONS = {
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"cap": 2.5},
    "both": {"z_loss": 0.1, "cap": 4.0},
    "both+ignore+smooth": {"z_loss": 0.05, "cap": 3.0, "ignore_index": 2, "alpha": 0.1},
    "both+class_weights+weights": {"z_loss": 0.05, "cap": 3.0, "cw": True, "w": True, "alpha": 0.2},
}
SHAPES = [((6, 5), -1), ((3, 5, 4), 1)]


def _case(fw, option, shape, axis, dtype, seed=0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    opts = OPTIONS[option]
    c = shape[axis]
    z = rounded(rng.normal(size=shape) * 4, dtype)
    y = rng.integers(0, c, size=loss_shape(shape, axis))
    kwargs, ref_kwargs = {}, {}
    if "z_loss" in opts:
        kwargs["z_loss"] = ref_kwargs["z_loss"] = opts["z_loss"]
    if "cap" in opts:
        kwargs["logit_softcap"] = ref_kwargs["cap"] = opts["cap"]
    if "ignore_index" in opts:
        y.flat[::3] = opts["ignore_index"]
        kwargs["ignore_index"] = ref_kwargs["ignore_index"] = opts["ignore_index"]
    if "alpha" in opts:
        kwargs["label_smoothing"] = ref_kwargs["alpha"] = opts["alpha"]
    if opts.get("cw"):
        cw = rng.uniform(0.5, 2.0, size=c)
        kwargs["class_weights"], ref_kwargs["cw"] = fw.asarray(rounded(cw, dtype), dtype), rounded(cw, dtype)
    if opts.get("w"):
        w = rng.uniform(0.0, 2.0, size=loss_shape(shape, axis))
        kwargs["weights"], ref_kwargs["w"] = fw.asarray(rounded(w, dtype), dtype), rounded(w, dtype)
    return z, y, kwargs, ref_kwargs


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("shape,axis", SHAPES[1:])
def test_values(fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    z, y, kwargs, ref_kwargs = _case(fw, option, shape, axis, dtype)
    got = xent.sparse_softmax_cross_entropy(fw.asarray(z, dtype), y, axis=axis, reduction=reduction, **kwargs)
    want = ref.sparse_zcap(z, y, axis=axis, reduction=reduction, **ref_kwargs)
    reduced = 1 if reduction == "none" else y.size
    assert_matches(fw, got, want, dtype, shape[axis], reduced)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("dtype,shape,axis", [("float64",) + SHAPES[0], ("float64",) + SHAPES[1], ("float32",) + SHAPES[1]])
def test_gradients(autodiff_fw, dtype, reduction, option, shape, axis):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z, y, kwargs, ref_kwargs = _case(fw, option, shape, axis, dtype, seed=1)
    labels = fw.asarray(y)
    (g,) = fw.grad(
        lambda a: xent.sparse_softmax_cross_entropy(a, labels, axis=axis, reduction=reduction, **kwargs),
        [fw.asarray(z, dtype)],
    )
    want = ref.sparse_zcap_grad(z, y, axis=axis, reduction=reduction, **ref_kwargs)
    assert_matches(fw, fw.asarray(g, dtype), want, dtype, shape[axis], what="grad")


def test_gradient_by_finite_differences():
    """The analytic reference gradient itself, against central differences."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 4)) * 3
    y = np.array([0, 3, 1])
    kw = {"z_loss": 0.2, "cap": 2.0, "alpha": 0.1, "cw": rng.uniform(0.5, 2, size=4), "reduction": "mean"}
    g = ref.sparse_zcap_grad(z, y, **kw)
    fd = np.zeros_like(z)
    h = 1e-6
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd[idx] = (ref.sparse_zcap(zp, y, **kw) - ref.sparse_zcap(zm, y, **kw)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_compiled(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z, y, kwargs, ref_kwargs = _case(fw, "both+class_weights+weights", (6, 5), -1, "float32", seed=4)
    fn = fw.compile(lambda a, b: xent.sparse_softmax_cross_entropy(a, b, reduction="mean", **kwargs))
    got = fn(fw.asarray(z, "float32"), fw.asarray(y))
    assert_matches(fw, got, ref.sparse_zcap(z, y, reduction="mean", **ref_kwargs), "float32", 5, y.size)


def test_defaults_leave_the_loss_unchanged(fw):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    z = fw.asarray(rng.normal(size=(4, 6)).astype(np.float32))
    y = rng.integers(0, 6, size=4)
    plain = fw.to_numpy(xent.sparse_softmax_cross_entropy(z, y))
    explicit = fw.to_numpy(xent.sparse_softmax_cross_entropy(z, y, z_loss=0.0, logit_softcap=None))
    np.testing.assert_array_equal(plain, explicit)


def test_z_loss_is_not_class_weighted():
    """With one class weight 0 and z_loss only, the entry keeps exactly its z term."""
    z = np.array([[1.0, 2.0, 3.0]])
    got = xent.sparse_softmax_cross_entropy(z, [0], class_weights=[0.0, 1.0, 1.0], z_loss=0.5)
    lse = np.log(np.exp(z).sum())
    np.testing.assert_allclose(got, [0.5 * lse**2], rtol=1e-12)


def test_softcap_keeps_huge_logits_finite(autodiff_fw):  # type: ignore[no-untyped-def]
    fw = autodiff_fw
    z = np.array([[1e30, -1e30, 0.0], [3e38, 1.0, -np.inf]], np.float32)
    y = np.array([1, 1])
    kw = {"logit_softcap": 30.0, "z_loss": 1e-4, "reduction": "sum"}
    loss = fw.to_numpy(xent.sparse_softmax_cross_entropy(fw.asarray(z), y, **kw))
    (g,) = fw.grad(lambda a: xent.sparse_softmax_cross_entropy(a, fw.asarray(y), **kw), [fw.asarray(z)])
    assert np.isfinite(loss)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(loss, ref.sparse_zcap(z, y, cap=30.0, z_loss=1e-4, reduction="sum"), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"z_loss": -0.1}, "z_loss"), ({"z_loss": float("nan")}, "z_loss"), ({"z_loss": "a"}, "z_loss"),
     ({"logit_softcap": 0.0}, "logit_softcap"), ({"logit_softcap": -3}, "logit_softcap"),
     ({"logit_softcap": float("inf")}, "logit_softcap")],
)
def test_bad_arguments(kwargs, match):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        xent.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], **kwargs)
