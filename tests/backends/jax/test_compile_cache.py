"""JAX's compiled rung: every eager call as one cached jax.jit of the loss."""

from __future__ import annotations

import numpy as np
import pytest

import xent
from tests import reference as ref
from tests.backends.shared import Y, Z, jax_or_skip
from xent.testing import assert_close


@pytest.mark.parametrize(
    "loss, second, options",
    [
        ("sparse_softmax_cross_entropy", Y, {"reduction": "mean", "ignore_index": 2}),
        ("softmax_cross_entropy", None, {"label_smoothing": 0.1}),
        ("sigmoid_cross_entropy", None, {"reduction": "sum"}),
    ],
)
def test_jax_eager_calls_run_as_one_compiled_program(loss, second, options):
    jax = jax_or_skip()
    import jax.numpy as jnp

    from xent.backends.jax import compile_cache

    soft = np.abs(Z) / np.abs(Z).sum(-1, keepdims=True)
    second = soft if second is None else second
    fn = getattr(xent, loss)
    out = fn(jnp.asarray(Z), jnp.asarray(second), **options)
    assert any(key[0] is fn for key in compile_cache._jitted)  # the compiled route was taken
    if loss == "sparse_softmax_cross_entropy":
        want = ref.sparse(Z, Y, ignore_index=2, reduction="mean")
    elif loss == "softmax_cross_entropy":
        want = ref.dense(Z, soft, alpha=0.1)
    else:
        want = ref.sigmoid(Z, soft, reduction="sum")
    assert_close(out, want, num_classes=7, reduced=Z.size)
    # It composes with jax.grad (a jit inside a grad) and gives the analytic gradient.
    if loss == "sparse_softmax_cross_entropy":
        g = jax.grad(lambda z: fn(z, jnp.asarray(second), **options))(jnp.asarray(Z))
        assert_close(g, ref.sparse_grad(Z, Y, ignore_index=2, reduction="mean"), num_classes=7)


def test_jax_eager_bad_labels_raise_and_traced_ones_give_nan():
    jax = jax_or_skip()
    import jax.numpy as jnp

    bad = jnp.asarray(np.where(np.arange(24) == 4, 11, Y))
    with pytest.raises(ValueError, match="out-of-range label values: 11"):
        xent.sparse_softmax_cross_entropy(jnp.asarray(Z), bad)
    with pytest.raises(ValueError, match="out-of-range label values: 11"):
        jax.grad(lambda z: xent.sparse_softmax_cross_entropy(z, bad, reduction="sum"))(jnp.asarray(Z))
    out = jax.jit(xent.sparse_softmax_cross_entropy)(jnp.asarray(Z), bad)
    assert np.isnan(np.asarray(out)[4]) and np.isfinite(np.delete(np.asarray(out), 4)).all()
    # ignore_index entries are not out of range:
    out = xent.sparse_softmax_cross_entropy(jnp.asarray(Z), bad, ignore_index=11)
    assert float(np.asarray(out)[4]) == 0.0


def test_jax_numpy_options_still_run_as_one_compiled_program():
    # Class and sample weights given as NumPy arrays are moved to JAX before
    # the program, not left to send the call op by op.
    jax_or_skip()
    import jax.numpy as jnp

    from xent.backends.jax import compile_cache

    cw = np.linspace(0.5, 2.0, 7)
    w = np.linspace(0.1, 1.0, 24)
    compile_cache._jitted.clear()
    out = xent.sparse_softmax_cross_entropy(jnp.asarray(Z), jnp.asarray(Y), class_weights=cw, weights=w,
                                            reduction="mean")
    static = [names for fn, names in compile_cache._jitted if fn is xent.sparse_softmax_cross_entropy]
    assert static and not {"class_weights", "weights"} & set(static[0])  # (passed as arrays)
    assert_close(out, ref.sparse(Z, Y, cw=cw, w=w, reduction="mean"), num_classes=7, reduced=24)


@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "softmax_cross_entropy"])
def test_jax_numpy_labels_run_as_one_compiled_program(name):
    # NumPy labels are moved to JAX before the program (class ids checked on
    # the host first, where reading them is free), not left to send the call
    # op by op; bad ones still get xent's own error.
    jax_or_skip()
    import jax.numpy as jnp

    from xent.backends.jax import compile_cache

    loss = getattr(xent, name)
    labels = Y if name.startswith("sparse") else np.eye(7)[Y] * 0.9
    compile_cache._jitted.clear()
    out = loss(jnp.asarray(Z), labels, reduction="sum")
    assert [fn for fn, _ in compile_cache._jitted] == [loss]
    want = ref.sparse(Z, Y, reduction="sum") if name.startswith("sparse") else ref.dense(Z, labels, reduction="sum")
    assert_close(out, want, num_classes=7, reduced=24)
    if name.startswith("sparse"):
        bad = Y.copy()
        bad[3] = 7
        with pytest.raises(ValueError, match="out-of-range label values: 7"):
            loss(jnp.asarray(Z), bad)
