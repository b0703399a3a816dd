"""``torchvision.ops.sigmoid_focal_loss``, on any xent backend.

Same name, argument order (``inputs, targets``), defaults (``alpha=0.25``,
``gamma=2``, ``reduction="none"``) and quirks as torchvision: ``alpha < 0``
turns the class balance off, ``"mean"`` is the plain mean over every element.

>>> import numpy as np
>>> from xent.compat import torchvision
>>> torchvision.sigmoid_focal_loss(np.array([3.0, -1.0, 0.5]), np.array([1.0, 0.0, 1.0])).round(6)
array([2.7000e-05, 1.6994e-02, 1.6893e-02])

Difference, deliberate: the focal factor ``(1 - p_t)^γ`` is taken in log
space from the logits, so its gradient is finite where torchvision's is NaN
(``γ < 1`` once ``p_t`` rounds to 1 in float32, a logit of about 17), and
the loss is exact at ``±inf`` logits (torchvision: NaN).
"""

from __future__ import annotations

from typing import Any, cast

import xent
from xent._frontend import Reduction
from xent.compat._common import as_predictions, plain_python

Array = Any


def sigmoid_focal_loss(inputs: Array, targets: Array, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Array:
    """``torchvision.ops.sigmoid_focal_loss``: ``α_t·(1 - p_t)^γ·bce`` elementwise.

    Args:
      inputs: logits, any shape.
      targets: labels in ``[0, 1]``, the shape of ``inputs`` (soft labels
        allowed: ``p_t = p·t + (1-p)·(1-t)``, ``α_t = α·t + (1-α)·(1-t)``).
      alpha: the weight of positives in ``[0, 1]``, negatives ``1 - alpha``;
        a negative ``alpha`` applies no weighting.
      gamma: the focal exponent ``γ >= 0``.
      reduction: ``"none"``, ``"mean"`` (over every element) or ``"sum"``.

    Returns:
      The loss in the dtype of ``inputs``: ``inputs.shape`` for ``"none"``, a
      scalar otherwise.

    Raises:
      ValueError: another ``reduction`` (torchvision's message), ``alpha > 1``
        or ``gamma < 0``.
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"
        )
    return xent.sigmoid_cross_entropy(as_predictions(inputs), targets, focal_gamma=gamma,
                                      focal_alpha=alpha if alpha >= 0 else None,
                                      reduction=cast(Reduction, reduction))


__all__ = ["sigmoid_focal_loss"]

plain_python(globals(), __all__)
