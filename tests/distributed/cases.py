"""The cases every framework's vocab-parallel test runs: one global batch of
logits and labels, option sets, and shard layouts (uneven, padded). Shared by
the workers (subprocesses, one per rank or one per host-device mesh) and the
tests that check their results against the float64 reference."""

from __future__ import annotations

import numpy as np

RNG = np.random.default_rng(41)
N, V = 8, 12
LOGITS = RNG.normal(0, 3, (N, V))
LOGITS[2, 7] = -np.inf  # a -inf logit in a real lane (under a zero label)
#: labels on every shard, two rows ignored
LABELS = np.array([0, 11, 5, -100, 6, 3, -100, 9])
CW = np.linspace(0.5, 2.0, V)
W = np.linspace(0.25, 1.75, N)

#: option sets (names for the report); each is also run with every reduction
OPTIONS = {
    "plain": {},
    "ignore": {"ignore_index": -100},
    "smooth": {"ignore_index": -100, "label_smoothing": 0.1},
    "class_weights": {"ignore_index": -100, "class_weights": CW},
    "weights": {"ignore_index": -100, "weights": W},
    "z_loss": {"ignore_index": -100, "z_loss": 1e-3},
    "softcap": {"ignore_index": -100, "logit_softcap": 5.0},
    "everything": {"ignore_index": -100, "label_smoothing": 0.1, "class_weights": CW, "weights": W,
                   "z_loss": 1e-3, "logit_softcap": 5.0},
    "focal": {"ignore_index": -100, "focal_gamma": 2.0, "poly_epsilon": 1.0, "class_weights": CW, "weights": W,
              "z_loss": 1e-3, "logit_softcap": 5.0},
}
REDUCTIONS = ("none", "sum", "mean", "normalizer")  # (normalizer: a mean divided by 7)


def grid(dtypes: tuple[str, ...]) -> list[tuple[bool, str, str, str]]:
    """The (padded, dtype, option set, reduction) cases a worker runs: every
    option set and reduction in the first dtype (float64); in the others,
    every option set as a mean and everything with every reduction."""
    out = []
    for padded in (False, True):
        for i, dtype in enumerate(dtypes):
            for name in OPTIONS:
                for reduction in REDUCTIONS:
                    if i == 0 or reduction == "mean" or name == "everything":
                        out.append((padded, dtype, name, reduction))
    return out


def plain_labels(options: dict) -> np.ndarray:
    """The labels a case uses: without ignore_index, the ignored rows get class 1."""
    return LABELS if "ignore_index" in options else np.where(LABELS < 0, 1, LABELS)


#: data parallelism: the batch split over 2 ranks, which keep 3 and 2 tokens
#: (JAX: rows 0-3 and 4-7; torch: rows 0-1 and 2-7, keeping 2 and 3)
DP_LABELS = np.array([0, 11, 5, -100, 6, -100, -100, 9])
HIDDEN = RNG.normal(0, 1, (N, 4))
HEAD = RNG.normal(0, 1, (V, 4))

BIAS = RNG.normal(0, 0.5, V)
#: the linear loss's option sets: those of the logits loss (smoothing and
#: soft-capping not together), with and without a bias
LINEAR_OPTIONS = {
    **{k: v for k, v in OPTIONS.items() if k not in ("everything", "focal")},
    "everything": {k: v for k, v in OPTIONS["everything"].items() if k != "logit_softcap"},
    "bias": {"ignore_index": -100, "bias": BIAS, "z_loss": 1e-3, "logit_softcap": 5.0},
}


def linear_grid(dtypes: tuple[str, ...]) -> list[tuple[bool, str, str, str]]:
    """The linear loss's cases: every option set as a mean in the first dtype
    (float64), padded or not; everything and the bias set unreduced too; in the
    other dtypes, everything as a mean (the reductions themselves are the
    front end's, shared with the logits loss)."""
    out = []
    for padded in (False, True):
        for i, dtype in enumerate(dtypes):
            for name in LINEAR_OPTIONS:
                for reduction in ("mean", "none"):
                    if (i == 0 and (reduction == "mean" or name in ("everything", "bias"))) or \
                            (name == "everything" and reduction == "mean"):
                        out.append(("linear", padded, dtype, name, reduction))
    return out


def linear_head(padded: bool) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the LM head, padded rows holding values that would count if they did."""
    if not padded:
        return HEAD, BIAS
    return (np.concatenate([HEAD, np.full((PADDED - V, HEAD.shape[1]), 3.0)]),
            np.concatenate([BIAS, np.full(PADDED - V, 30.0)]))


PADDED = 16  # (the vocabulary padded to 16 lanes: 4 that never count)


def widths(world: int, padded: bool) -> list[int]:
    """Shard widths of the class axis: even for 2 and 4 processes, uneven for 3."""
    total = PADDED if padded else V
    if world == 3:
        return [6, 5, 5] if padded else [5, 3, 4]
    return [total // world] * world


def padded_logits() -> np.ndarray:
    """The logits padded to ``PADDED`` lanes, holding a value that would
    dominate the softmax if it counted."""
    return np.concatenate([LOGITS, np.full((N, PADDED - V), 40.0)], axis=1)
