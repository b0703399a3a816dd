"""Host data placed once: a NumPy array given with accelerator arrays (class
weights, labels, sample weights) crosses to the device at its first call and
is reused while it is the same array with the same values; an array changed
in place is placed again, so no result ever comes from stale values.

On the CPU nothing is kept (moving host data there costs no transfer); the
tests make each backend's ``placement_key`` name a device, as on an
accelerator, and count the moves."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import xent
from tests import reference as ref
from xent.testing import assert_close

AUTODIFF = ("torch", "tensorflow", "jax")


@pytest.fixture
def as_on_accelerator(monkeypatch):  # type: ignore[no-untyped-def]
    """A function: for framework ``fw``, host data is kept as on an
    accelerator; returns the list each move to the framework appends to."""
    from xent.backends import _base

    monkeypatch.setattr(_base, "_PLACED", _base.OrderedDict())

    def on(fw):  # type: ignore[no-untyped-def]
        from xent._registry import get_backend

        be = get_backend(fw)
        cls = type(be)
        moves: list[tuple[int, ...]] = []
        real = cls.asarray
        monkeypatch.setattr(cls, "placement_key", lambda self, like: "device")
        monkeypatch.setattr(cls, "asarray", lambda self, x, like: moves.append(np.shape(x)) or real(self, x, like))
        return moves

    return on


@pytest.mark.parametrize("fw_name", AUTODIFF)
def test_numpy_class_weights_cross_once_and_again_when_changed(fw_name, as_on_accelerator):
    from tests.conftest import _get

    fw = _get(fw_name)
    r = np.random.default_rng(5)
    z, y = r.standard_normal((6, 5)), r.integers(0, 5, 6)
    cw = np.linspace(0.5, 2.0, 5)
    zs, ys = fw.asarray(z, "float32"), fw.asarray(y, "int64")
    moves = as_on_accelerator(fw_name)

    def loss():  # type: ignore[no-untyped-def]
        return fw.to_numpy(xent.sparse_softmax_cross_entropy(zs, ys, class_weights=cw, reduction="mean"))

    for _ in range(3):
        assert_close(loss(), ref.sparse(z, y, cw=cw, reduction="mean"), num_classes=5, reduced=6)
    assert moves.count((5,)) == 1
    cw[2] = 7.0  # changed in place: placed again, and the result follows
    assert_close(loss(), ref.sparse(z, y, cw=cw, reduction="mean"), num_classes=5, reduced=6)
    assert moves.count((5,)) == 2
    cw = cw.copy()  # another array with the same values: placed for itself
    loss()
    assert moves.count((5,)) == 3


def test_a_placed_array_that_dies_is_never_mistaken_for_a_new_one(as_on_accelerator):
    # A new array may reuse a dead one's id: the weak reference tells them apart.
    from tests.conftest import _get

    fw = _get("torch")
    r = np.random.default_rng(6)
    z, y = r.standard_normal((6, 5)), r.integers(0, 5, 6)
    zs, ys = fw.asarray(z, "float32"), fw.asarray(y, "int64")
    moves = as_on_accelerator("torch")
    for value in (1.0, 2.0, 3.0):
        cw = np.full(5, value)
        got = fw.to_numpy(xent.sparse_softmax_cross_entropy(zs, ys, class_weights=cw))
        assert_close(got, ref.sparse(z, y, cw=cw), num_classes=5)
        del cw
        gc.collect()
    assert moves.count((5,)) == 3


def test_host_data_on_the_cpu_is_not_kept():
    from tests.conftest import _get
    from xent.backends import _base

    fw = _get("torch")
    before = len(_base._PLACED)
    cw = np.linspace(0.5, 2.0, 5)
    xent.sparse_softmax_cross_entropy(fw.asarray(np.zeros((2, 5)), "float32"), fw.asarray([0, 1], "int64"),
                                      class_weights=cw)
    assert len(_base._PLACED) == before
