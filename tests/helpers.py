"""Shared test helpers: random inputs and comparison against the float64 reference."""

from __future__ import annotations

import numpy as np

from xent.testing import tolerance

#: (shape, axis): the class axis last, first and in the middle
SHAPES = [((6, 5), -1), ((5, 6), 0), ((3, 7, 4), 1), ((2, 3, 5), 2)]


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` and back to float64: what the backend really sees."""
    if dtype == "bfloat16":
        import ml_dtypes

        return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
    return np.asarray(x).astype(dtype).astype(np.float64)


def assert_matches(fw, got, ref, dtype, num_classes=2, reduced=1, what="loss"):  # type: ignore[no-untyped-def]
    """``got`` (a backend array) equals the float64 ``ref`` within the tolerance table,
    and is of the framework and dtype it should be."""
    assert fw.dtype_name(got) == dtype, f"{what}: dtype {fw.dtype_name(got)} != {dtype}"
    rtol, atol = tolerance(dtype, num_classes, reduced)
    arr = fw.to_numpy(got).astype(np.float64)
    ref = np.asarray(ref, np.float64)
    assert arr.shape == ref.shape, f"{what}: shape {arr.shape} != {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(arr, ref, rtol=rtol, atol=atol * scale, err_msg=f"{what} ({fw.name}, {dtype})")


def loss_shape(shape, axis):  # type: ignore[no-untyped-def]
    axis = axis % len(shape)
    return shape[:axis] + shape[axis + 1 :]


def soft_labels(rng, shape, axis):  # type: ignore[no-untyped-def]
    y = rng.random(shape)
    return y / y.sum(axis=axis, keepdims=True)


def largest_torch_tensor(run):  # type: ignore[no-untyped-def]
    """The most elements of any tensor a torch aten op creates while ``run()``
    runs (forward and backward, if ``run`` calls ``backward``), seen by a
    dispatch mode."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    with Largest():
        run()
    return Largest.numel
