"""How close two cross-entropy results must be, per dtype, and why.

A result is compared with a float64 reference computed from the *same* inputs
(half inputs are first rounded to their dtype, then upcast), so what remains is
the rounding of the computation itself, not of the inputs:

* Each operation of the loss (shift by the max, exp, log, the final subtraction)
  rounds once, to within half an ulp of the compute dtype: a handful of ``eps``.
* The reductions along the class axis (``Σ exp``, ``Σ y·log p``) add ``C``
  rounded terms. Pairwise and vectorised summation (what NumPy, torch, XLA and
  TF use) keeps the relative error near ``eps·log2(C)``; with no assumption on
  the summation order, random rounding errors grow like ``eps·√C``. We allow the
  latter, so the tolerance holds for any backend's summation order.
* Half types (float16, bfloat16) are computed in float32 and rounded once to
  their own dtype at the end: one half-ulp of that dtype, ``eps_half / 2``, plus
  the float32 error, which is much smaller. We allow one full ulp.
* Absolute tolerance: a loss near zero (a confident, correct prediction) is
  computed as a difference of O(1) terms, e.g. ``log Σexp(z-m) - (z_y - m)``,
  so its error is absolute, of the size of the relative error of those terms.
  ``atol`` equals ``rtol`` for losses of unit-scale logits.

Reductions over N elements (``"sum"``, ``"mean"``) add ``eps·√N`` of their own;
callers pass the number of reduced elements as ``reduced``.
"""

from __future__ import annotations

import math

from xent.backends._base import HALF_DTYPES

#: machine epsilon (spacing of floats just above 1) per dtype name
EPS: dict[str, float] = {
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
    "float32": 2.0**-23,
    "float64": 2.0**-52,
}

#: a few roundings per operation, for the handful of elementwise operations
_OPS = 8.0


def tolerance(dtype: str, num_classes: int = 2, reduced: int = 1) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing a loss (or gradient) against a float64 reference.

    Args:
      dtype: the dtype the result was computed in: ``"float16"``, ``"bfloat16"``,
        ``"float32"`` or ``"float64"``.
      num_classes: the size of the class axis that was reduced over.
      reduced: number of elements summed by the reduction (1 for ``"none"``).

    Returns:
      ``(rtol, atol)``, to be used as ``|x - ref| <= atol + rtol·|ref|``.

    >>> rtol, atol = tolerance("float32", num_classes=10)
    >>> 1e-6 < rtol < 1e-5
    True
    """
    if dtype not in EPS:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {sorted(EPS)}")
    compute = "float32" if dtype in HALF_DTYPES else dtype
    eps = EPS[compute]
    rtol = eps * (_OPS + math.sqrt(num_classes) + math.sqrt(reduced))
    if compute != dtype:
        rtol += EPS[dtype]  # one ulp of the output dtype for the final rounding
    return rtol, rtol
