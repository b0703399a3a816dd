"""Sharded JAX arrays: host data given with sharded predictions is placed on
their devices, whatever its rank. Runs on 2 CPU devices in a subprocess
(``--xla_force_host_platform_device_count=2``: JAX's device count is fixed at
its start)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xent.testing import installed

SCRIPT = r"""
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import xent

assert len(jax.devices()) == 2, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(0)
z = rng.normal(size=(8, 5)).astype(np.float32)
z3 = rng.normal(size=(4, 6, 5)).astype(np.float32)
y = rng.integers(0, 5, 8)
y3 = rng.integers(0, 5, (4, 6))
soft = rng.dirichlet(np.ones(5), 8).astype(np.float32)
binary = (rng.random((8, 5)) > 0.5).astype(np.float32)
cw = rng.uniform(0.5, 2.0, 5).astype(np.float32)
w = rng.uniform(0.0, 2.0, 8).astype(np.float32)
w3 = rng.uniform(0.0, 2.0, (4, 6)).astype(np.float32)
pw = rng.uniform(0.5, 2.0, 5).astype(np.float32)
sharded = lambda a: jax.device_put(jnp.asarray(a), NamedSharding(mesh, P("batch")))
calls = [
    ("sparse", lambda zz: xent.sparse_softmax_cross_entropy(zz, y, class_weights=cw, weights=w,
                                                               label_smoothing=0.1, reduction="mean"), z),
    ("sparse 3-D", lambda zz: xent.sparse_softmax_cross_entropy(zz, y3, class_weights=cw, weights=w3,
                                                                   ignore_index=4, reduction="mean"), z3),
    ("dense", lambda zz: xent.softmax_cross_entropy(zz, soft, weights=w, reduction="sum"), z),
    ("sigmoid", lambda zz: xent.sigmoid_cross_entropy(zz, binary, pos_weight=pw, weights=w[:, None],
                                                         reduction="mean"), z),
]
for name, call, x in calls:
    want = float(call(jnp.asarray(x)))
    got = float(call(sharded(x)))
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (name, got, want)
    g_want = jax.grad(lambda a: call(a))(jnp.asarray(x))
    g_got = jax.jit(jax.grad(lambda a: call(a)))(sharded(x))
    assert np.allclose(np.asarray(g_got), np.asarray(g_want), rtol=1e-5, atol=1e-7), name
print("ok")
"""


def test_sharded_logits_with_host_labels_and_weights():
    """Batch-sharded logits on 2 devices with NumPy labels, class weights and
    sample weights give the unsharded loss and gradient (class weights used to
    be placed with the logits' batch sharding: an IndivisibleError)."""
    if not installed("jax"):
        pytest.skip("jax is not installed")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


CLASS_SHARDED = r"""
import re
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import xent

rng = np.random.default_rng(1)
z = rng.normal(size=(16, 64)).astype(np.float32)
y = rng.integers(0, 64, 16)
y[3] = -100
calls = {
    "plain": lambda a, yy: xent.sparse_softmax_cross_entropy(a, jnp.where(yy < 0, 0, yy), reduction="mean"),
    "options": lambda a, yy: xent.sparse_softmax_cross_entropy(a, yy, ignore_index=-100, label_smoothing=0.1,
                                                               z_loss=1e-3, reduction="mean"),
}
for kind in (AxisType.Auto, AxisType.Explicit):
    mesh = jax.make_mesh((2,), ("tp",), axis_types=(kind,))
    with jax.set_mesh(mesh):
        zs = jax.device_put(jnp.asarray(z), NamedSharding(mesh, P(None, "tp")))
        ys = jax.device_put(jnp.asarray(y), NamedSharding(mesh, P()))
        for name, call in calls.items():
            for f in (call, jax.grad(call)):
                hlo = jax.jit(f).lower(zs, ys).compile().as_text()
                gathered = [line for line in hlo.splitlines() if "all-gather" in line and "f32[16,64]" in line]
                assert not gathered, (kind, name, gathered)
            want = call(jnp.asarray(z), jnp.asarray(y))
            assert abs(float(jax.jit(call)(zs, ys)) - float(want)) <= 1e-6 * abs(float(want)), (kind, name)
            g = jax.jit(jax.grad(call))(zs, ys)
            assert np.allclose(np.asarray(g), np.asarray(jax.grad(call)(jnp.asarray(z), jnp.asarray(y))),
                               rtol=1e-5, atol=1e-7), (kind, name)
print("ok")
"""


def test_class_sharded_logits_under_jit_are_never_gathered():
    """Logits sharded over the class axis (Auto and Explicit mesh axes) under
    plain jax.jit: the loss and its gradient compile with no all-gather of the
    logits (each shard reduces its classes, then XLA all-reduces rows), and
    equal the unsharded ones. Under Explicit axes the label's logit is
    selected by comparison, since a gather there has no inferable sharding
    (optax's loss raises ShardingTypeError there)."""
    if not installed("jax"):
        pytest.skip("jax is not installed")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", CLASS_SHARDED], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
