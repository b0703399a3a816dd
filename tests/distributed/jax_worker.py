"""JAX's vocab-parallel cases under shard_map over forced host devices: run as
``python -m tests.distributed.jax_worker WORLD OUT`` (a fresh process: the
device count is set before JAX starts); writes ``OUT/jax.pkl`` with each
case's loss, full logit gradient and the collectives in its forward and
forward+backward programs."""

from __future__ import annotations

import os
import pickle
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import numpy as np  # noqa: E402

from tests.distributed import cases  # noqa: E402

DTYPES = ("float64", "float32", "bfloat16")
COLLECTIVES = {"psum", "psum2", "psum_invariant", "pmax", "pmin", "all_gather", "all_to_all", "ppermute",
               "reduce_scatter", "all_gather_invariant"}


def _collectives(jaxpr) -> int:  # type: ignore[no-untyped-def]
    """Collective primitives in a jaxpr, nested ones included."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in COLLECTIVES:
            count += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)  # (a closed jaxpr, or a jaxpr)
                if hasattr(inner, "eqns"):
                    count += _collectives(inner)
    return count


def _linear(mesh, shard_map, padded: bool, dtype: str, name: str, reduction: str) -> dict:  # type: ignore[no-untyped-def]
    """One linear case: the weight (and bias) sharded over the vocabulary, the
    hidden states replicated; the loss, the gradients of all three, and the
    collectives forward and forward+backward."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    import xent.distributed

    head, bias = cases.linear_head(padded)
    options = dict(cases.LINEAR_OPTIONS[name])
    has_bias = options.pop("bias", None) is not None
    labels = jnp.asarray(cases.plain_labels(options))
    arrays = {k: jnp.asarray(v) for k, v in options.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in options.items() if not isinstance(v, np.ndarray)}
    red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}

    def local(h, w, b, y, arrays):  # type: ignore[no-untyped-def]
        return xent.distributed.linear_cross_entropy(h, w, y, group="tp", bias=b if has_bias else None,
                                                     vocab_size=cases.V if padded else None, chunk_size=3,
                                                     **arrays, **static, **red)

    specs = (P(), P("tp", None), P("tp"), P(), {k: P() for k in arrays})
    sharded = shard_map(local, mesh=mesh, in_specs=specs, out_specs=P())

    def total(h, w, b):  # type: ignore[no-untyped-def]
        loss = sharded(h, w, b, labels, arrays)
        return (loss.sum() if reduction == "none" else loss).astype(jnp.float64)

    h, w, b = (jnp.asarray(a).astype(dtype) for a in (cases.HIDDEN, head, bias))
    loss = jax.jit(sharded)(h, w, b, labels, arrays)
    dh, dw, db = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(h, w, b)
    f64 = lambda a: np.asarray(a.astype(jnp.float64))  # noqa: E731
    return {"loss": f64(loss), "dh": f64(dh), "dw": f64(dw), "db": f64(db) if has_bias else None,
            "forward": _collectives(jax.make_jaxpr(lambda h: sharded(h, w, b, labels, arrays))(h).jaxpr),
            "both": _collectives(jax.make_jaxpr(jax.grad(total, argnums=(0, 1, 2)))(h, w, b).jaxpr),
            "dtype": jnp.dtype(loss.dtype).name}


def _data_parallel(mesh, shard_map) -> dict:  # type: ignore[no-untyped-def]
    """The batch split over 2 devices that keep 3 and 2 tokens: the count
    psum'd, each device's sum divided by it, the losses psum'd: the global
    token mean, and its logit gradient."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    import xent

    def local(z, y):  # type: ignore[no-untyped-def]
        count = jax.lax.psum(xent.loss_denominator(xent.sparse_softmax_cross_entropy, z, y, ignore_index=-100),
                             "tp")
        loss = xent.sparse_softmax_cross_entropy(z, y, ignore_index=-100, reduction="mean", normalizer=count)
        return jax.lax.psum(loss, "tp")

    f = jax.jit(shard_map(local, mesh=mesh, in_specs=(P("tp"), P("tp")), out_specs=P()))
    z, y = jnp.asarray(cases.HIDDEN @ cases.HEAD.T), jnp.asarray(cases.DP_LABELS)
    return {"loss": np.asarray(f(z, y)), "dz": np.asarray(jax.grad(f)(z, y))}


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.sharding import Mesh, PartitionSpec as P

    try:
        from jax import shard_map
    except ImportError:  # (older JAX)
        from jax.experimental.shard_map import shard_map

    import xent.distributed

    world, out = int(sys.argv[1]), sys.argv[2]
    mesh = Mesh(np.array(jax.devices()[:world]), ("tp",))
    results = {}
    for padded, dtype, name, reduction in cases.grid(DTYPES):
        full = cases.padded_logits() if padded else cases.LOGITS
        options = cases.OPTIONS[name]
        labels = jnp.asarray(cases.plain_labels(options))
        opts = {k: jnp.asarray(v) for k, v in options.items() if isinstance(v, np.ndarray)}
        static = {k: v for k, v in options.items() if not isinstance(v, np.ndarray)}
        red = {"reduction": "mean", "normalizer": 7.0} if reduction == "normalizer" else {"reduction": reduction}

        def local(z, y, arrays, red=red, static=static, padded=padded):  # type: ignore[no-untyped-def]
            return xent.distributed.sparse_softmax_cross_entropy(
                z, y, group="tp", vocab_size=cases.V if padded else None, **arrays, **static, **red)

        specs = (P(None, "tp"), P(), {k: P() for k in opts})
        sharded = jax.jit(shard_map(local, mesh=mesh, in_specs=specs, out_specs=P()))

        def total(z, sharded=sharded, labels=labels, opts=opts, reduction=reduction):  # type: ignore[no-untyped-def]
            loss = sharded(z, labels, opts)
            return (loss.sum() if reduction == "none" else loss).astype(jnp.float64)

        z = jnp.asarray(full).astype(dtype)
        loss, grad = sharded(z, labels, opts), jax.jit(jax.grad(total))(z)
        results[padded, dtype, name, reduction] = {
            "loss": np.asarray(loss.astype(jnp.float64)), "grad": np.asarray(grad.astype(jnp.float64)),
            "forward": _collectives(jax.make_jaxpr(lambda z: sharded(z, labels, opts))(z).jaxpr),
            "both": _collectives(jax.make_jaxpr(jax.grad(total))(z).jaxpr),
            "dtype": jnp.dtype(loss.dtype).name,
        }
    for key in cases.linear_grid(DTYPES):
        results[key] = _linear(mesh, shard_map, *key[1:])
    bad = cases.plain_labels({}).copy()
    bad[1] = cases.V  # one past the vocabulary: traced, so NaN for that row
    nan_rows = jax.jit(shard_map(lambda z, y: xent.distributed.sparse_softmax_cross_entropy(z, y, group="tp"),
                                 mesh=mesh, in_specs=(P(None, "tp"), P()), out_specs=P()))(
        jnp.asarray(cases.LOGITS), jnp.asarray(bad))
    results["bad"] = np.asarray(nan_rows)
    if world == 2:
        results["dp"] = _data_parallel(mesh, shard_map)
    with open(os.path.join(out, "jax.pkl"), "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main()
