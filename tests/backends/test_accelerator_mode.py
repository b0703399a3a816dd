"""Accelerator mode on the CPU: each backend treats CPU arrays as if they were
on an accelerator, so the paths that run only there are tested here.

In that mode no value is read on the host (torch's CPU-only fused and chunked
paths are off, labels are not checked on the host, TF's large dense fast path
with its host checks is off), and out-of-range labels in framework arrays give
NaN instead of an error. Every loss and option must give the same values and
gradients as in the normal CPU mode; a torch dispatch mode that records host
reads shows that none happens (and that it does see them in the normal mode).
"""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests.losses.test_options import INPUTS, PROBES, _call, _options
from xent._losses import CLASS_ID_LOSSES, LOSSES

AUTODIFF = ("torch", "tensorflow", "jax")


@pytest.fixture
def accelerator_mode(monkeypatch):  # type: ignore[no-untyped-def]
    """A function that turns accelerator mode on for the rest of the test."""

    def on() -> None:
        import sys

        if "torch" in sys.modules:
            from xent.backends.torch import backend, fused, tensors

            monkeypatch.setattr(backend.TorchBackend, "can_inspect", lambda self, x: False)
            monkeypatch.setattr(fused, "_fusable", lambda *args, **kwargs: None)
            monkeypatch.setattr(tensors, "host_readable", lambda x: False)
        if "tensorflow" in sys.modules:
            from xent.backends.tensorflow import backend as tf_backend

            monkeypatch.setattr(tf_backend.TensorflowBackend, "can_inspect", lambda self, x: False)
        if "jax" in sys.modules:
            from xent.backends.jax import backend as jax_backend

            monkeypatch.setattr(jax_backend.JaxBackend, "can_inspect", lambda self, x: False)

    return on


def _summed(options):  # type: ignore[no-untyped-def]
    """``options`` reduced to one number: a sum (a normalizer's mean stays)."""
    return options if "normalizer" in options else {**options, "reduction": "sum"}


def _value_and_grad(fw, loss, x, y, options):  # type: ignore[no-untyped-def]
    value = fw.to_numpy(loss(x, y, **options))
    (grad,) = fw.grad(lambda a: loss(a, y, **_summed(options)), [x])
    return value, grad


@pytest.mark.parametrize("fw_name", AUTODIFF)
@pytest.mark.parametrize("name", LOSSES)
def test_every_option_agrees_in_accelerator_mode(fw_name, name, accelerator_mode):  # type: ignore[no-untyped-def]
    from tests.conftest import _get

    fw = _get(fw_name)
    loss = getattr(xent, name)
    cases = [(option, value) for option in _options(loss) for value in PROBES[option] if option != "reduction"]
    calls = [_call(fw, name, option, value) for option, value in [("reduction", "mean"), *cases]]
    normal = [_value_and_grad(fw, loss, x, y, options) for x, y, options in calls]
    accelerator_mode()
    for (x, y, options), (value, grad) in zip(calls, normal):
        got_value, got_grad = _value_and_grad(fw, loss, x, y, options)
        np.testing.assert_allclose(got_value, value, rtol=2e-5, atol=1e-6, err_msg=str(options))
        np.testing.assert_allclose(got_grad, grad, rtol=2e-5, atol=1e-6, err_msg=str(options))


@pytest.mark.parametrize("fw_name", AUTODIFF)
@pytest.mark.parametrize("name", CLASS_ID_LOSSES)
def test_bad_labels_give_nan_in_accelerator_mode(fw_name, name, accelerator_mode):  # type: ignore[no-untyped-def]
    from tests.conftest import _get

    fw = _get(fw_name)
    x, labels = INPUTS[name]
    bad = labels.copy()
    bad[1] = 99
    xs, ys = fw.asarray(x, "float32"), fw.asarray(bad, "int64")
    loss = getattr(xent, name)
    with pytest.raises(ValueError, match="out-of-range label values: 99"):
        loss(xs, ys)
    accelerator_mode()
    out = fw.to_numpy(loss(xs, ys))
    assert np.isnan(out[1]) and np.isfinite(np.delete(out, 1)).all()
    assert np.isnan(fw.to_numpy(loss(xs, ys, reduction="mean")))
    with pytest.raises(ValueError, match="out-of-range label values: 99"):  # host labels are read for free
        loss(xs, bad)


def _host_reads(fn):  # type: ignore[no-untyped-def]
    """How many times ``fn()`` reads torch tensors' values on the host: a
    scalar (``item``, ``bool``, ``float``: aten's ``_local_scalar_dense``) or
    a whole tensor (``Tensor.numpy``)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    real_numpy = torch.Tensor.numpy

    class Reads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func is torch.ops.aten._local_scalar_dense.default:
                Reads.count += 1
            return func(*args, **(kwargs or {}))

    def numpy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        Reads.count += 1
        return real_numpy(self, *args, **kwargs)

    torch.Tensor.numpy = numpy  # type: ignore[method-assign]
    try:
        with Reads():
            fn()
    finally:
        torch.Tensor.numpy = real_numpy  # type: ignore[method-assign]
    return Reads.count


@pytest.mark.parametrize("name", LOSSES)
def test_torch_reads_nothing_on_the_host_in_accelerator_mode(name, accelerator_mode):  # type: ignore[no-untyped-def]
    from tests.conftest import _get

    fw = _get("torch")
    loss = getattr(xent, name)
    big = np.random.default_rng(2).normal(size=(64, 1024))  # (past the sigmoid's one-sum check)
    calls = [_call(fw, name, option, value) for option in _options(loss) for value in PROBES[option]]
    x, y = INPUTS[name]
    if name in ("sigmoid_cross_entropy",):
        calls.append((fw.asarray(big, "float32"), fw.asarray((big > 0).astype(np.float32)), {"reduction": "mean"}))
    # The detector sees the normal CPU mode's reads (the fused path's label
    # check, the binary node's one-sum check), so a read it misses would show.
    normal = sum(_host_reads(lambda: loss(x_, y_, **o)) for x_, y_, o in calls)
    if name in CLASS_ID_LOSSES or name == "sigmoid_cross_entropy":
        assert normal > 0
    accelerator_mode()
    for x_, y_, options in calls:
        assert _host_reads(lambda: loss(x_, y_, **options)) == 0, options
        xg = x_.clone().requires_grad_(True)
        assert _host_reads(lambda: loss(xg, y_, **_summed(options)).backward()) == 0, options


@pytest.mark.parametrize("name", LOSSES)
def test_torch_losses_run_on_the_meta_device(name):  # type: ignore[no-untyped-def]
    # A meta tensor has no data: any host read raises. Every loss, with every
    # option, forward and backward, stays on the device it is given.
    from tests.conftest import _get

    fw = _get("torch")
    torch = fw.torch if hasattr(fw, "torch") else __import__("torch")
    loss = getattr(xent, name)
    meta = lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t  # noqa: E731
    for option in _options(loss):
        for value in PROBES[option]:
            x, y, options = _call(fw, name, option, value)
            x = meta(x).requires_grad_(True)
            out = loss(x, meta(y), **{k: meta(v) for k, v in options.items()})
            assert out.device.type == "meta", options
            (out.sum() if out.ndim else out).backward()
            assert x.grad is not None and x.grad.device.type == "meta", options
