"""xent.distributed's vocab-parallel loss on each framework's own engine, in
subprocesses: torch.distributed with gloo (2 and 3 ranks, even and uneven
shards), JAX shard_map over forced host devices, TF MirroredStrategy over
logical CPUs. Every option, reduction and a padded vocabulary, in float64,
float32 and bfloat16, against the float64 reference: values, the logit
gradients assembled from every shard, the same loss on every process, and at
most two all-reduces forward and none backward."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import reference as ref
from tests.distributed import cases
from tests.distributed.check import check, check_linear
from xent.testing import assert_close

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str, env: dict | None = None) -> None:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def check_data_parallel(ranks: list[dict]) -> None:
    """Each data-parallel rank's result: the global token mean and its LM-head
    weight gradient, against float64 over the whole batch."""
    z = cases.HIDDEN @ cases.HEAD.T
    want = ref.sparse(z, cases.DP_LABELS, ignore_index=-100, reduction="mean")
    dz = ref.sparse_grad(z, cases.DP_LABELS, ignore_index=-100, reduction="mean")
    for rank in ranks:
        assert_close(rank["loss"], want, num_classes=cases.V, reduced=cases.N)
        if "grad" in rank:
            assert_close(rank["grad"], dz.T @ cases.HIDDEN, num_classes=cases.V, reduced=cases.N)
        if "dz" in rank:
            assert_close(rank["dz"], dz, num_classes=cases.V)


@pytest.mark.parametrize("world", [2, 3])
def test_torch_gloo_ranks_agree_with_the_single_device_loss(world, tmp_path):
    pytest.importorskip("torch")
    _run("tests.distributed.torch_worker", str(world), str(tmp_path))
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(world)]
    if world == 2:
        check_data_parallel([rank.pop("dp") for rank in ranks])
    for rank in ranks:  # eagerly on the CPU, a label past the vocabulary raises xent's error
        assert "out-of-range label values: 12" in rank.pop("bad")
    dtensor = [rank.pop("dtensor") for rank in ranks]  # (a DTensor on torch's own even split)
    key = (False, "float64", "everything", "mean")
    check({key: dtensor[0]["loss"]}, {key: dtensor[0]["grad"]}, [{key: d["loss"]} for d in dtensor])
    for key in [k for k in ranks[0] if k[0] == "linear"]:
        parts = [rank.pop(key) for rank in ranks]
        db = None if parts[0]["db"] is None else np.concatenate([part["db"] for part in parts])
        check_linear(key, parts[0]["loss"], [part["dh"] for part in parts],
                     np.concatenate([part["dw"] for part in parts]), db)
        for part in parts:
            # MAX and the packed SUM forward (the widths' all-gather is not an
            # all-reduce); the hidden states' gradient summed backward
            assert part["forward"] == 2 and part["backward"] == 1, (key, part["forward"], part["backward"])
            np.testing.assert_array_equal(part["loss"], parts[0]["loss"])
    losses = {key: value["loss"] for key, value in ranks[0].items()}
    grads = {key: np.concatenate([rank[key]["grad"] for rank in ranks], axis=1) for key in ranks[0]}
    check(losses, grads, [{k: v["loss"] for k, v in rank.items()} for rank in ranks])
    for rank in ranks:
        for key, value in rank.items():
            assert value["forward"] == 2 and value["backward"] == 0, (key, value["forward"], value["backward"])
            assert value["dtype"] == key[1]


@pytest.mark.parametrize("world", [2, 4])
def test_jax_shard_map_agrees_with_the_single_device_loss(world, tmp_path):
    pytest.importorskip("jax")
    _run("tests.distributed.jax_worker", str(world), str(tmp_path))
    results = pickle.loads((tmp_path / "jax.pkl").read_bytes())
    bad = results.pop("bad")  # traced: a label past the vocabulary is a NaN loss, the other rows exact
    assert np.isnan(bad[1]) and np.isfinite(np.delete(bad, 1)).all()
    if world == 2:
        check_data_parallel([results.pop("dp")])
    for key in [k for k in results if k[0] == "linear"]:
        part = results.pop(key)
        check_linear(key, part["loss"], [part["dh"]], part["dw"], part["db"])
        # MAX and the packed SUM forward; the replicated hidden states'
        # gradient psum'd backward (shard_map's transpose)
        assert part["forward"] == 2 and part["both"] == 3, (key, part["forward"], part["both"])
    check({k: v["loss"] for k, v in results.items()}, {k: v["grad"] for k, v in results.items()})
    for key, value in results.items():
        # MAX and one packed SUM forward; the backward adds none (JAX
        # transposes the replicated psum to the identity)
        assert value["forward"] == 2 and value["both"] == 2, (key, value["forward"], value["both"])
        assert value["dtype"] == key[1]


@pytest.mark.parametrize("world", [2])
def test_tensorflow_mirrored_replicas_agree_with_the_single_device_loss(world, tmp_path):
    pytest.importorskip("tensorflow")
    _run("tests.distributed.tf_worker", str(world), str(tmp_path))
    results = pickle.loads((tmp_path / "tf.pkl").read_bytes())
    for key in [k for k in results if k[0] == "linear"]:
        part = results.pop(key)
        check_linear(key, part["losses"][0], part["dh"], part["dw"], part["db"])
        for loss in part["losses"][1:]:
            np.testing.assert_array_equal(loss, part["losses"][0])
        # the all-gather of the maxima and the packed SUM forward; the hidden
        # states' gradient all-reduced backward
        assert part["forward"] == 2 and part["backward"] == 1, (key, part["forward"], part["backward"])
    check({k: v["losses"][0] for k, v in results.items()}, {k: v["grad"] for k, v in results.items()},
          [{k: v["losses"][r] for k, v in results.items()} for r in range(world)])
    for key, value in results.items():
        # an all-gather of the maxima (TF all-reduces only SUM and MEAN) and
        # one packed SUM forward; none backward
        assert value["forward"] == 2 and value["backward"] == 0, (key, value["forward"], value["backward"])
        assert value["dtype"] == key[1]


def test_focal_with_smoothing_is_refused_before_any_collective():
    """Focal/PolyLoss terms with smoothing would need a third all-reduce: a
    NotImplementedError naming it, raised before the collectives are asked for
    (NumPy has none: any other error would be that)."""
    import xent.distributed as xd

    with pytest.raises(NotImplementedError, match="third all-reduce"):
        xd.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], focal_gamma=2.0, label_smoothing=0.1)
    with pytest.raises(NotImplementedError, match="third all-reduce"):
        xd.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], poly_epsilon=1.0, label_smoothing=0.1)
