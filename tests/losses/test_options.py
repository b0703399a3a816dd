"""Every option of every public loss reaches the result, whichever rung of the
dispatch ladder answers (``xent._dispatch``).

For each loss, each option in its signature is set to a value other than its
default, and the public call (which may take a backend's fused hook or a
compiled program) is compared with the loss's general path alone. An option
that a fused hook dropped would show as a disagreement; the last test builds
such a ladder on purpose and checks that it is caught.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import xent
from xent._dispatch import RUNGS, Rungs, general_of, ladder
from xent._losses import LOSSES

RNG = np.random.default_rng(7)
N, C = 6, 5
LOGITS = RNG.normal(0, 2, (N, C))
CLASS_IDS = np.array([0, 2, 4, 1, 2, 3])
SOFT = RNG.random((N, C))
SOFT /= SOFT.sum(-1, keepdims=True)
BINARY = RNG.random((N, C))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)

#: the inputs of each loss (predictions, labels), class axis last
INPUTS = {
    "softmax_cross_entropy": (LOGITS, SOFT),
    "sparse_softmax_cross_entropy": (LOGITS, CLASS_IDS),
    "sigmoid_cross_entropy": (LOGITS, BINARY),
    "categorical_cross_entropy": (PROBS, SOFT),
    "sparse_categorical_cross_entropy": (PROBS, CLASS_IDS),
    "binary_cross_entropy": (1 / (1 + np.exp(-LOGITS)), BINARY),
}

#: for every option name any loss has: values other than its default. A new
#: option must be added here, or test_every_option_has_a_probe fails.
PROBES = {
    "axis": [0, 1],
    "ignore_index": [2],
    "label_smoothing": [0.1],
    "class_weights": [np.arange(1.0, C + 1)],
    "weights": ["per entry"],
    "reduction": ["sum", "mean"],
    "z_loss": [0.01],
    "logit_softcap": [3.0],
    "pos_weight": [np.linspace(0.5, 2.0, C)],
    "epsilon": [1e-3],
    "normalizer": [3.0],  # (with reduction="mean": _call)
    "focal_gamma": [0.5, 2.0],
    "focal_alpha": [0.25],
    "poly_epsilon": [1.0],
}


def _options(loss):  # type: ignore[no-untyped-def]
    params = inspect.signature(loss).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def _call(fw, name, option, value):  # type: ignore[no-untyped-def]
    """(predictions, labels, options) of one probe, as ``fw`` arrays."""
    x, y = INPUTS[name]
    class_ids = RUNGS[name].class_ids
    if option == "axis" and value == 0:  # classes first
        x, y = x.T, (y if class_ids else y.T)
    elif option == "axis":  # [2, C, 3]: classes in the middle
        x = np.stack([x[:3].T, x[3:].T])
        y = np.stack([y[:3], y[3:]]) if class_ids else np.stack([y[:3].T, y[3:].T])
    if option == "weights":
        elementwise = name in ("sigmoid_cross_entropy", "binary_cross_entropy")
        loss_shape = x.shape if elementwise else x.shape[:-1]
        value = fw.asarray(np.linspace(0.5, 1.5, int(np.prod(loss_shape))).reshape(loss_shape), "float32")
    elif isinstance(value, np.ndarray):
        value = fw.asarray(value, "float32")
    labels = fw.asarray(y, "int64") if class_ids else fw.asarray(y, "float32")
    if option == "normalizer":  # (a mean's option)
        return fw.asarray(x, "float32"), labels, {option: value, "reduction": "mean"}
    return fw.asarray(x, "float32"), labels, {option: value}


def disagreements(loss, fw):  # type: ignore[no-untyped-def]
    """The options (and values) whose public result differs from the general
    path's, on ``fw``; ``[]`` where every rung honours every option."""
    name = loss.__name__
    general = general_of(loss)
    found = []
    for option in _options(loss):
        for value in PROBES[option]:
            x, y, kwargs = _call(fw, name, option, value)
            for extra in ({}, {"reduction": "mean"}):  # (the fused hooks take reduced calls)
                options = {**extra, **kwargs}
                got = fw.to_numpy(loss(x, y, **options))
                want = fw.to_numpy(general(x, y, **options))
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                    found.append((option, value if np.isscalar(value) else "array", extra))
    return found


def test_every_option_has_a_probe():  # type: ignore[no-untyped-def]
    for name in LOSSES:
        missing = set(_options(getattr(xent, name))) - PROBES.keys()
        assert not missing, f"{name}: add a non-default value for {sorted(missing)} to PROBES"


def test_fused_hooks_take_exactly_the_options_they_honour():  # type: ignore[no-untyped-def]
    # Each backend's hook names the options it honours as keyword-only
    # parameters: the ladder passes those, and only those.
    import xent.backends.numpy_backend as numpy_backend

    classes = [xent.backends.Backend, numpy_backend.NumpyBackend]
    for module, cls in (("torch", "TorchBackend"), ("tensorflow", "TensorflowBackend"), ("jax", "JaxBackend")):
        try:
            classes.append(getattr(__import__(f"xent.backends.{module}", fromlist=[cls]), cls))
        except ImportError:
            pass
    for name, rungs in RUNGS.items():
        assert set(rungs.honours) <= set(_options(getattr(xent, name))), name
        if rungs.fused is None:
            continue
        for cls in classes:
            params = inspect.signature(getattr(cls, rungs.fused)).parameters.values()
            keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
            assert keywords == set(rungs.honours), (cls.__name__, rungs.fused, keywords)


@pytest.mark.parametrize("name", LOSSES)
def test_every_option_reaches_the_result(fw, name):  # type: ignore[no-untyped-def]
    assert disagreements(getattr(xent, name), fw) == []


@pytest.mark.parametrize("fw_name", ["torch", "tensorflow"])
def test_a_fused_hook_that_drops_an_option_is_caught(fw_name, monkeypatch):  # type: ignore[no-untyped-def]
    # A ladder that wrongly lists z_loss among the options the sparse
    # fused hook honours. The hook's signature refuses it; a hook that took it
    # and ignored it is what the check above must catch.
    from tests.conftest import _get

    fw = _get(fw_name)
    real = RUNGS["sparse_softmax_cross_entropy"]
    wrong = Rungs(real.fused, (*real.honours, "z_loss"), real.class_ids)
    broken = ladder(general_of(xent.sparse_softmax_cross_entropy), wrong)
    x, y, _ = _call(fw, "sparse_softmax_cross_entropy", "z_loss", 0.01)
    with pytest.raises(TypeError, match="z_loss"):
        broken(x, y, z_loss=0.01, reduction="mean")
    backend = type(xent.get_backend(x))
    hook = backend.fused_sparse

    def sloppy(self, logits, labels, *, z_loss=None, **honoured):  # type: ignore[no-untyped-def]
        return hook(self, logits, labels, **honoured)

    monkeypatch.setattr(backend, "fused_sparse", sloppy)
    found = disagreements(broken, fw)
    assert found and {option for option, _, _ in found} == {"z_loss"}
    assert disagreements(xent.sparse_softmax_cross_entropy, fw) == []  # (the real ladder)
