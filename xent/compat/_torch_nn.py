"""``torch.nn``'s cross-entropy loss modules, running on xent: ``xent.compat.torch.nn``.

Reached as ``xent.compat.torch.nn`` (``from xent.compat.torch import nn``),
which imports PyTorch on first access; ``import xent.compat.torch`` alone
does not.

``CrossEntropyLoss``, ``BCEWithLogitsLoss``, ``BCELoss`` and
``LinearCrossEntropyLoss`` are subclasses of torch's own classes that replace
only ``forward``, which calls the :mod:`xent.compat.torch` function of the
same semantics. The constructor, the buffers (``weight``, ``pos_weight``),
``state_dict`` keys, ``.to(...)``, ``repr`` and ``isinstance(m,
torch.nn.CrossEntropyLoss)`` are therefore torch's. ``XentLoss`` wraps any of
xent's own losses, with xent's options, as a module.

A training loop, unchanged but for the import (plain text: this module is
also imported, without PyTorch, by the NumPy-only test session)::

    from xent.compat.torch import nn as xnn      # was: from torch import nn
    criterion = xnn.CrossEntropyLoss(weight=class_weights, label_smoothing=0.1)
    loss = criterion(model(x), target)            # (N, C) logits, (N,) class ids
    loss.backward()

Without PyTorch installed this module is empty (and ``xent.compat.torch.nn``
raises ``ModuleNotFoundError``).
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any, Callable

import xent
from xent._losses import LOSSES
from xent.compat import torch as _F

#: xent's losses that ``XentLoss`` accepts by name: ``loss(predictions, labels, ...)``.
XENT_LOSSES = LOSSES
#: xent options that are arrays: they become buffers of ``XentLoss``.
TENSOR_OPTIONS = ("class_weights", "pos_weight")

__all__: list[str] = []

# Importable without PyTorch, for pytest's --doctest-modules collection in the
# NumPy-only session: the classes (and their doctests) exist only with torch.
if importlib.util.find_spec("torch") is not None:
    import torch
    from torch import Tensor

    class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
        """``torch.nn.CrossEntropyLoss`` whose forward is :func:`xent.compat.torch.cross_entropy`.

        Same constructor as torch's (``weight`` is a buffer: it follows
        ``.to()`` and appears in ``state_dict()``; ``size_average``/``reduce``
        are the legacy arguments), same values and gradients, plus what
        :mod:`xent.compat.torch` adds: any integer target dtype, a finite loss
        for a ``-inf`` logit under a zero probability target, ``ValueError``
        for out-of-range targets (eagerly, on the CPU).

        Args:
          weight: ``(C,)`` class weights, or None.
          size_average, reduce: deprecated, as in PyTorch.
          ignore_index: a target id that contributes nothing (default -100).
          reduction: ``"none"``, ``"mean"`` (÷ Σ weight[target] for index
            targets; NaN when every target is ignored) or ``"sum"``.
          label_smoothing: ``α`` in ``[0, 1)``.

        Shapes (forward):
          input: ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)`` logits.
          target: class ids ``(N,)``/``(N, d1, ...)``/``()``, or class
            probabilities of ``input``'s shape.
          returns: ``target``'s shape for ``"none"`` (index targets; ``input``
            without dim 1 for probabilities), else a scalar.

        >>> import torch
        >>> from xent.compat.torch import nn as xnn
        >>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
        >>> target = torch.tensor([0, 2])
        >>> w = torch.tensor([1.0, 2.0, 3.0])
        >>> round(xnn.CrossEntropyLoss(weight=w)(logits, target).item(), 5)
        0.24678
        >>> round(torch.nn.CrossEntropyLoss(weight=w)(logits, target).item(), 5)
        0.24678
        >>> list(xnn.CrossEntropyLoss(weight=w).state_dict())
        ['weight']
        """

        def __init__(
            self,
            weight: Tensor | None = None,
            size_average: bool | None = None,
            ignore_index: int = -100,
            reduce: bool | None = None,
            reduction: str = "mean",
            label_smoothing: float = 0.0,
        ) -> None:
            super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)

        def forward(self, input: Tensor, target: Tensor) -> Tensor:
            """The loss of ``input`` logits (classes on dim 1) against ``target``."""
            return _F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing)

    class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
        """``torch.nn.BCEWithLogitsLoss`` on :func:`xent.compat.torch.binary_cross_entropy_with_logits`.

        Same constructor, buffers (``weight``, ``pos_weight``) and values as
        torch's; at ``z = ±inf`` logits the loss is 0 or ``inf`` (torch: NaN),
        and a small loss at ``z << 0`` keeps its digits.

        Args:
          weight: elementwise weights broadcastable to the input, or None.
          size_average, reduce: deprecated, as in PyTorch.
          reduction: ``"none"``, ``"mean"`` (÷ number of elements, also with
            ``weight``) or ``"sum"``.
          pos_weight: weight of the positive term, broadcast along the last
            dim (``(C,)``), or None.

        Shapes (forward): ``input`` logits of any shape, ``target`` the same
        shape in ``[0, 1]``; returns ``input``'s shape for ``"none"``, else a
        scalar.

        >>> import torch
        >>> from xent.compat.torch import nn as xnn
        >>> z = torch.tensor([[1.5, -0.5], [0.2, 3.0]])
        >>> y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> pw = torch.tensor([2.0, 0.5])
        >>> round(xnn.BCEWithLogitsLoss(pos_weight=pw)(z, y).item(), 5)
        0.42483
        >>> round(torch.nn.BCEWithLogitsLoss(pos_weight=pw)(z, y).item(), 5)
        0.42483
        """

        def __init__(
            self,
            weight: Tensor | None = None,
            size_average: bool | None = None,
            reduce: bool | None = None,
            reduction: str = "mean",
            pos_weight: Tensor | None = None,
        ) -> None:
            super().__init__(weight, size_average, reduce, reduction, pos_weight)

        def forward(self, input: Tensor, target: Tensor) -> Tensor:
            """The loss of ``input`` logits against ``target`` probabilities."""
            return _F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                       reduction=self.reduction)

    class BCELoss(torch.nn.BCELoss):
        """``torch.nn.BCELoss`` on :func:`xent.compat.torch.binary_cross_entropy`.

        Same constructor, ``weight`` buffer and values as torch's, including
        the clamp of each ``log`` at -100.

        Args:
          weight: elementwise weights broadcastable to the input, or None.
          size_average, reduce: deprecated, as in PyTorch.
          reduction: ``"none"``, ``"mean"`` (÷ number of elements) or ``"sum"``.

        Shapes (forward): ``input`` probabilities of any shape, ``target``
        the same shape in ``[0, 1]``; returns ``input``'s shape for
        ``"none"``, else a scalar.

        >>> import torch
        >>> from xent.compat.torch import nn as xnn
        >>> p = torch.tensor([0.0, 0.25, 0.9])
        >>> y = torch.tensor([1.0, 0.0, 1.0])
        >>> xnn.BCELoss(reduction="none")(p, y)
        tensor([100.0000,   0.2877,   0.1054])
        """

        def __init__(
            self,
            weight: Tensor | None = None,
            size_average: bool | None = None,
            reduce: bool | None = None,
            reduction: str = "mean",
        ) -> None:
            super().__init__(weight, size_average, reduce, reduction)

        def forward(self, input: Tensor, target: Tensor) -> Tensor:
            """The loss of ``input`` probabilities against ``target``."""
            return _F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)

    class XentLoss(torch.nn.Module):
        """One of xent's losses, with xent's own options, as a ``torch.nn.Module``.

        ``XentLoss(loss, **options)(predictions, labels, weights)`` is
        ``loss(predictions, labels, weights=weights, **options)``: xent's
        semantics and defaults, not torch's (the class axis is ``axis=-1``,
        ``reduction="none"`` unless given, ``"mean"`` is ``Σ loss / Σ
        weights`` and 0 over nothing). Array options (``class_weights``,
        ``pos_weight``; any ``torch.Tensor`` option) are registered as buffers
        under their own names, so they follow ``.to()`` and are saved in
        ``state_dict()``; the other options are plain attributes
        (``self.options``).

        Args:
          loss: one of xent's losses or its name: ``"softmax_cross_entropy"``,
            ``"sparse_softmax_cross_entropy"``, ``"sigmoid_cross_entropy"``,
            ``"categorical_cross_entropy"``,
            ``"sparse_categorical_cross_entropy"``, ``"binary_cross_entropy"``;
            or any callable ``loss(predictions, labels, *, weights=None,
            **options)``.
          **options: keyword options of ``loss`` (``axis``, ``ignore_index``,
            ``label_smoothing``, ``z_loss``, ``logit_softcap``,
            ``class_weights``, ``pos_weight``, ``epsilon``, ``reduction``);
            not ``weights``, which is per batch: pass it to ``forward``.
            Array options given as lists or NumPy arrays are copied into
            tensors.

        Shapes (forward):
          predictions: as ``loss`` takes them, e.g. ``(..., C)`` logits.
          labels: e.g. ``(...)`` class ids for the sparse losses.
          weights: optional sample weights broadcastable to the loss shape.
          returns: the loss shape for ``reduction="none"``, else a scalar.

        Raises:
          ValueError: an unknown loss name.
          TypeError: an option that ``loss`` does not take, or ``weights``
            among the options.

        >>> import torch
        >>> from xent.compat.torch import nn as xnn
        >>> criterion = xnn.XentLoss("sparse_softmax_cross_entropy", ignore_index=-1, z_loss=1e-4,
        ...                          reduction="mean")
        >>> criterion
        XentLoss(loss=sparse_softmax_cross_entropy, ignore_index=-1, z_loss=0.0001, reduction='mean')
        >>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.1, 1.0, 3.0]])
        >>> round(criterion(logits, torch.tensor([0, -1])).item(), 5)
        0.46498
        >>> xnn.XentLoss("sigmoid_cross_entropy", pos_weight=[2.0, 0.5]).state_dict()
        OrderedDict([('pos_weight', tensor([2.0000, 0.5000]))])
        """

        loss: Callable[..., Tensor]
        options: dict[str, Any]

        def __init__(self, loss: str | Callable[..., Tensor], **options: Any) -> None:
            super().__init__()
            if isinstance(loss, str):
                if loss not in XENT_LOSSES:
                    raise ValueError(f"loss must be one of xent's losses {XENT_LOSSES} or a callable; "
                                     f"received loss={loss!r}")
                fn = getattr(xent, loss)
            elif callable(loss):
                fn = loss
            else:
                raise TypeError(f"loss must be a name or a callable; received {type(loss).__name__}")
            if "weights" in options:
                raise TypeError("weights are per batch: pass them to forward(predictions, labels, weights)")
            _check_options(fn, options)
            self.loss = fn
            self.options = {}
            tensors = []
            for name, value in options.items():
                if isinstance(value, torch.Tensor) or name in TENSOR_OPTIONS:
                    if value is not None and not isinstance(value, torch.Tensor):
                        value = torch.tensor(value)  # a copy: the caller's array stays theirs
                    self.register_buffer(name, value)
                    tensors.append(name)
                else:
                    self.options[name] = value
            self._tensor_options = tuple(tensors)

        def forward(self, predictions: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
            """``loss(predictions, labels, weights=weights, **options)``."""
            kwargs = dict(self.options)
            for name in self._tensor_options:
                kwargs[name] = getattr(self, name)
            if weights is not None:
                kwargs["weights"] = weights
            return self.loss(predictions, labels, **kwargs)

        def extra_repr(self) -> str:
            name = getattr(self.loss, "__name__", repr(self.loss))
            opts = [f"{k}={v!r}" for k, v in self.options.items()]
            opts += [f"{k}=<buffer>" if getattr(self, k) is not None else f"{k}=None"
                     for k in self._tensor_options]
            return ", ".join([f"loss={name}", *opts])

    def _check_options(fn: Callable[..., Any], options: dict[str, Any]) -> None:
        """A TypeError now, not at the first forward, for an option ``fn`` lacks."""
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or C callable: nothing to check
            return
        try:
            sig.bind(None, None, **options)
        except TypeError as err:
            name = getattr(fn, "__name__", repr(fn))
            raise TypeError(f"{name}() does not take these options {sorted(options)}: {err}") from None

    __all__ += ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "XentLoss"]

    if hasattr(torch.nn, "LinearCrossEntropyLoss"):  # PyTorch >= 2.13

        class LinearCrossEntropyLoss(torch.nn.LinearCrossEntropyLoss):
            """``torch.nn.LinearCrossEntropyLoss`` on :func:`xent.compat.torch.linear_cross_entropy`.

            Same constructor as torch's (``in_features``, ``num_classes``, then
            keyword-only ``out_features``, ``bias``, ``device``, ``dtype``,
            ``reduction``, ``weight``, ``ignore_index``, ``label_smoothing``,
            ``options``), the same ``self.linear`` parameters and ``weight``
            buffer; the forward pass is xent's chunked
            :func:`xent.linear_cross_entropy`, so the ``(N, C)`` logits are
            never held whole, whatever ``options`` is. Probability targets and
            ``out_features != ()`` take torch's reference path (the logits).

            Shapes (forward):
              input: ``(in_features,)`` or ``(N, in_features)``.
              target: class ids ``()``/``(N,)``/``(N, *out_features)``, or
                probabilities ``(C,)``/``(N, C, *out_features)``.
              returns: the target's shape for ``"none"``, else a scalar.

            >>> import torch
            >>> from xent.compat.torch import nn as xnn
            >>> _ = torch.manual_seed(0)
            >>> criterion = xnn.LinearCrossEntropyLoss(4, 10, bias=True)
            >>> h, y = torch.randn(6, 4), torch.tensor([1, 2, 3, -100, 5, 9])
            >>> logits = torch.nn.functional.linear(h, criterion.linear.weight, criterion.linear.bias)
            >>> bool(torch.allclose(criterion(h, y), torch.nn.functional.cross_entropy(logits, y)))
            True
            """

            def forward(self, input: Tensor, target: Tensor) -> Tensor:
                """The loss of ``self.linear(input)`` against ``target``."""
                linear_weight = self.linear.weight.reshape(
                    (self.num_classes, *self.out_features, self.linear.in_features))
                linear_bias = (None if self.linear.bias is None
                               else self.linear.bias.reshape((self.num_classes, *self.out_features)))
                return _F.linear_cross_entropy(
                    input, linear_weight, target, linear_bias=linear_bias, weight=self.weight,
                    reduction=self.reduction, ignore_index=self.ignore_index,
                    label_smoothing=self.label_smoothing, options=self.options)

        __all__ += ["LinearCrossEntropyLoss"]
