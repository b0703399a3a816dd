"""The calls of torch tests that take the general formulas chunk by chunk
(``Backend.rows_in_chunks``): every loss and option without a chunked kernel
of its own, over shared inputs."""

from __future__ import annotations

import numpy as np

import xent


def row_calls(a):  # type: ignore[no-untyped-def]
    """Calls that take the general path's formulas chunk by chunk off the CPU
    (``Backend.rows_in_chunks``), over inputs ``a(name)``."""
    return {
        "sparse focal ignore_index": lambda: xent.sparse_softmax_cross_entropy(
            a("z"), a("ids_ignored"), focal_gamma=2.0, ignore_index=-100, reduction="mean"),
        "sparse poly all options": lambda: xent.sparse_softmax_cross_entropy(
            a("z"), a("ids"), poly_epsilon=1.0, label_smoothing=0.1, class_weights=a("cw"), z_loss=1e-3,
            logit_softcap=5.0, reduction="sum"),
        "sparse class weights learnt": lambda: xent.sparse_softmax_cross_entropy(
            a("z"), a("ids"), class_weights=a("cw"), reduction="mean"),
        "sparse class weights learnt smoothing": lambda: xent.sparse_softmax_cross_entropy(
            a("z"), a("ids"), class_weights=a("cw"), label_smoothing=0.1, reduction="none"),
        "dense focal": lambda: xent.softmax_cross_entropy(a("z"), a("soft"), focal_gamma=2.0, reduction="mean"),
        "dense smoothing": lambda: xent.softmax_cross_entropy(a("z"), a("soft"), label_smoothing=0.1),
        "categorical": lambda: xent.categorical_cross_entropy(a("probs"), a("soft"), reduction="mean"),
        "categorical focal smoothing": lambda: xent.categorical_cross_entropy(
            a("probs"), a("soft"), focal_gamma=2.0, label_smoothing=0.1, reduction="sum"),
        "sparse categorical focal": lambda: xent.sparse_categorical_cross_entropy(
            a("probs"), a("ids_ignored"), focal_gamma=2.0, ignore_index=-100, reduction="mean"),
        "binary focal balanced": lambda: xent.binary_cross_entropy(
            a("unit"), a("hard"), focal_gamma=2.0, focal_alpha=0.25, reduction="mean"),
        "binary smoothing": lambda: xent.binary_cross_entropy(a("unit"), a("soft01"), label_smoothing=0.1),
        "sigmoid focal balanced": lambda: xent.sigmoid_cross_entropy(
            a("z"), a("hard"), focal_gamma=2.0, focal_alpha=0.25, reduction="sum"),
        "sigmoid pos_weight": lambda: xent.sigmoid_cross_entropy(
            a("z"), a("soft01"), pos_weight=a("pw"), reduction="mean"),
        "sigmoid pos_weight per row": lambda: xent.sigmoid_cross_entropy(
            a("z"), a("soft01"), pos_weight=a("pw_rows"), label_smoothing=0.1, reduction="none"),
        "kl temperature": lambda: xent.kl_divergence(a("z"), a("target"), temperature=2.0, reduction="mean"),
        "kl reverse": lambda: xent.kl_divergence(a("z"), a("target"), reverse=True),
        "js": lambda: xent.js_divergence(a("z"), a("target"), beta=0.3, reduction="sum"),
    }


def row_inputs(n, v):  # type: ignore[no-untyped-def]
    """Each input of :func:`row_calls` in float64 (``half``: rounded to the
    half dtype there) and whether gradients flow into it."""
    r = np.random.default_rng(31)
    ids = r.integers(0, v, n)
    ignored = ids.copy()
    ignored[::7] = -100
    return {
        "z": (r.standard_normal((n, v)) * 3, True, True),
        "soft": (r.dirichlet(np.ones(v), n), True, True),
        "probs": (r.dirichlet(np.ones(v) * 0.5, n), True, True),
        "unit": (r.uniform(0.0, 1.0, (n, v)), True, True),
        "hard": ((r.uniform(size=(n, v)) < 0.1).astype(np.float64), True, False),
        "soft01": (r.uniform(0.0, 1.0, (n, v)), True, True),
        "target": (r.standard_normal((n, v)) * 2, True, True),
        "cw": (np.linspace(0.5, 2.0, v), False, True),
        "pw": (np.linspace(0.5, 3.0, v), False, True),
        "pw_rows": (np.linspace(0.5, 3.0, n)[:, None], False, True),
        "ids": (ids, False, False),
        "ids_ignored": (ignored, False, False),
    }


def row_tensors(torch, inputs, half, whole=False):  # type: ignore[no-untyped-def]
    """The inputs as tensors: the half ones in ``half`` (``whole``: the same
    values in float32, which xent computes whole, where it computes the half
    ones chunk by chunk, in float32 too), the others in float32, integers as int64."""
    out = {}
    for name, (x, is_half, grad) in inputs.items():
        t = torch.from_numpy(x)
        if t.is_floating_point():
            t = (t.to(half).float() if whole else t.to(half)) if is_half else t.float()
            t.requires_grad_(grad)
        out[name] = t
    return out
