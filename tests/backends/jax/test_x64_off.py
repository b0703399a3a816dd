"""JAX with 64-bit types off (its default, and what most users run): every
loss and option, in a fresh process where ``jax_enable_x64`` was never set,
against the NumPy backend on the same float32 inputs; labels are int32 there,
so an ``ignore_index`` beyond int32 must ignore nothing rather than overflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import numpy as np
import jax
assert not jax.config.jax_enable_x64
import xent
from xent._losses import LOSSES
from xent.testing import framework
from tests.losses.test_options import PROBES, _call, _options

jx, npx = framework("jax"), framework("numpy")
checked = 0
for name in LOSSES:
    loss = getattr(xent, name)
    for option in _options(loss):
        for value in PROBES[option]:
            for extra in ({}, {"reduction": "mean"}):
                x, y, opts = _call(jx, name, option, value)
                assert str(x.dtype) == "float32"
                got = np.asarray(loss(x, y, **{**extra, **opts}))
                x0, y0, opts0 = _call(npx, name, option, value)
                want = np.asarray(loss(x0, y0, **{**extra, **opts0}))
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=f"{name} {option}")
                checked += 1
z = jax.numpy.asarray(np.random.default_rng(0).normal(size=(4, 5)), "float32")
y = jax.numpy.asarray([0, 1, 2, 3])
assert str(y.dtype) == "int32"
plain = float(xent.sparse_softmax_cross_entropy(z, y, reduction="mean"))
for ignore in (2**31, -(2**31) - 1, 2**62):
    assert float(xent.sparse_softmax_cross_entropy(z, y, ignore_index=ignore, reduction="mean")) == plain
try:
    xent.sparse_softmax_cross_entropy(z, jax.numpy.asarray([0, 1, 7, 3]))
except ValueError as exc:
    assert "out-of-range label values: 7" in str(exc)
else:
    raise AssertionError("a bad label did not raise")
print("checked", checked)
"""


def test_every_loss_and_option_with_x64_off():  # type: ignore[no-untyped-def]
    pytest.importorskip("jax")
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split("checked")[1]) > 50
