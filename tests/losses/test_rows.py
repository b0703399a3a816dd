"""The row-statistics core (``xent.backends._rows``) against the float64
reference: whole rows, and a vocabulary split in two shards whose statistics
are added after shifting by the shards' common maximum (what a
vocabulary-parallel loss all-reduces)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import reference as ref
from xent import get_backend
from xent.backends._rows import combine, row_stats

RNG = np.random.default_rng(3)
Z = RNG.normal(0, 3, (7, 9))
Y = RNG.integers(0, 9, 7)
CW = RNG.uniform(0.5, 2.0, 9)
BE = get_backend("numpy")


def _options(alpha, cw, z_loss):  # type: ignore[no-untyped-def]
    return dict(w_y=None if cw is None else cw[Y], wsum=None if cw is None else cw.sum(),
                alpha=alpha, vocab=9, z_loss=z_loss)


def _want(alpha, cw, z_loss):  # type: ignore[no-untyped-def]
    lse = np.log(np.exp(Z).sum(-1))
    return ref.sparse(Z, Y, alpha=alpha, cw=cw) + z_loss * lse**2


@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("cw", [None, CW])
@pytest.mark.parametrize("z_loss", [0.0, 0.01])
def test_combine_whole_rows(alpha, cw, z_loss):  # type: ignore[no-untyped-def]
    spread = (True if cw is None else cw[None, :]) if alpha else None
    stats = row_stats(BE, Z, -1, labels=Y, spread=spread)
    got = combine(BE, stats, **_options(alpha, cw, z_loss))
    np.testing.assert_allclose(got, _want(alpha, cw, z_loss), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("cw", [None, CW])
@pytest.mark.parametrize("z_loss", [0.0, 0.01])
def test_shard_statistics_add_up(alpha, cw, z_loss):  # type: ignore[no-untyped-def]
    onehot = np.eye(9)[Y]
    weights = np.ones(9) if cw is None else cw
    shards = [slice(0, 4), slice(4, 9)]
    # the all-reduce MAX of the shards' row maxima, then each shard's sums
    m = np.max([Z[:, s].max(-1, keepdims=True) for s in shards], axis=0)
    parts = [row_stats(BE, Z[:, s], -1, soft=onehot[:, s], spread=weights[None, s], m=m) for s in shards]
    # the all-reduce SUM of the statistics
    summed = type(parts[0])(parts[0].m, *(sum(getattr(p, f) for p in parts) for f in ("sumexp", "picked", "count", "spread")))
    got = combine(BE, summed, **_options(alpha, cw, z_loss))
    np.testing.assert_allclose(got, _want(alpha, cw, z_loss), rtol=1e-12)


def test_soft_labels_ignore_minus_inf_under_zero_weight():  # type: ignore[no-untyped-def]
    z = Z.copy()
    z[0, 3] = -np.inf
    y = np.eye(9)[Y]
    y[0] = 0.0
    y[0, 1] = 1.0
    got = combine(BE, row_stats(BE, z, -1, soft=y))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[1:], ref.dense(Z[1:], y[1:]), rtol=1e-12)


def test_backends_without_collectives_say_so():  # type: ignore[no-untyped-def]
    with pytest.raises(NotImplementedError, match="numpy backend has no collectives"):
        BE.collectives(None, Z)
