"""JAX: the collectives of :mod:`xent.distributed` inside ``shard_map`` (or
``pmap``), over named mesh axes."""

from __future__ import annotations

from typing import Any

import jax

Array = Any


class Collectives:
    """``lax.pmax``/``lax.psum`` over the mesh axis name(s) ``group``.
    (JAX differentiates ``psum`` inside ``shard_map`` as the identity on the
    replicated result: no communication in the backward pass.)"""

    def __init__(self, group: Any, like: Array) -> None:
        if group is None or not (isinstance(group, str) or (isinstance(group, tuple) and group)):
            raise ValueError(
                "xent.distributed on JAX needs group= the mesh axis name(s) the class axis is "
                f"sharded over, called inside shard_map; received group={group!r}"
            )
        self.axes = group

    def max(self, x: Array) -> Array:
        return jax.lax.pmax(jax.lax.stop_gradient(x), self.axes)

    def sum(self, *xs: Array) -> tuple[Array, ...]:
        packed = jax.lax.psum(jax.numpy.stack(xs), self.axes)  # (one all-reduce)
        return tuple(packed[i] for i in range(len(xs)))

    def copy(self, x: Array) -> Array:
        # replicated over the axis, made device-varying: the transpose of
        # that cast is the psum of the gradient over the axis
        if hasattr(jax.lax, "pcast"):
            return jax.lax.pcast(x, self.axes, to="varying")
        return getattr(jax.lax, "pvary")(x, self.axes)  # (older JAX)

    def layout(self, width: int) -> tuple[Any, int]:
        # shard_map splits an axis evenly: shard i starts at i·width
        size = jax.lax.psum(1, self.axes)
        return jax.lax.axis_index(self.axes) * width, int(size) * width
