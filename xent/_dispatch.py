"""The dispatch ladder of every public loss, written once.

A call goes down three rungs and stops at the first that answers:

1. **fused**: the backend's fused hook (``Backend.fused_sparse``,
   ``fused_dense``, ``fused_sigmoid``): one native call where its semantics
   are exactly xent's (torch and TensorFlow, eagerly). Taken only while every
   option outside the hook's ``honours`` is at its default, so an option the
   hook does not know can never be dropped by it; the hook receives the
   options it honours by name (its keyword-only parameters, which a test
   checks against ``honours``) and may still decline (``None``).
2. **compiled**: the whole call as one program (``Backend.compiled``: JAX
   always, TensorFlow once a signature is hot); inside that program the loss is
   called again and takes rung 3. With ``class_ids`` the labels are integer
   class ids, checked on the host first where they can be read (a bad one
   sends the call on to rung 3, which names it).
3. **general**: the loss's own body, over the backend primitives: validation,
   the row statistics, masks and :func:`xent._frontend.reduce`.

The table of which loss has which hook and honours which options is
:data:`RUNGS`; docs/semantics.md draws it as a map.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import numbers
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np

from xent._frontend import normalizer_error
from xent._registry import backend_for
from xent.backends import Backend
from xent.backends._base import labels_valid

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Rungs:
    """Which rungs one loss has: its fused hook (a ``Backend`` method name, or
    None), the options that hook honours, and whether its labels are class ids."""

    fused: str | None = None
    honours: tuple[str, ...] = ()
    class_ids: bool = False


#: every public loss's rungs, side by side. A fused hook gets the options in
#: ``honours`` as keyword arguments (each at its value or default) and is
#: skipped whenever any other option is set.
RUNGS: dict[str, Rungs] = {
    "softmax_cross_entropy": Rungs("fused_dense", ("axis", "reduction")),
    "sparse_softmax_cross_entropy": Rungs(
        "fused_sparse", ("axis", "reduction", "ignore_index", "label_smoothing", "class_weights", "weights"),
        class_ids=True,
    ),
    "sigmoid_cross_entropy": Rungs("fused_sigmoid", ("reduction",)),
    "categorical_cross_entropy": Rungs(),
    "sparse_categorical_cross_entropy": Rungs(class_ids=True),
    "binary_cross_entropy": Rungs(),
}


class Ladder:
    """The dispatch of one loss: its general body, its rungs, and the defaults
    of its options (read once from the body's signature)."""

    def __init__(self, general: Callable[..., Any], rungs: Rungs) -> None:
        params = inspect.signature(general).parameters.values()
        self.general = general
        self.rungs = rungs
        #: the positional parameters' names (predictions, labels)
        self.inputs = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        #: every option (keyword-only parameter) and its default
        self.defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        unknown = set(rungs.honours) - self.defaults.keys()
        if unknown:
            raise TypeError(f"{general.__name__} has no options {sorted(unknown)} for its fused hook")
        self.honours = frozenset(rungs.honours)

    def compiled(self, loss: Any, backend: Backend, x: Any, labels: Any, options: dict[str, Any]) -> Any:
        """Rung 2: the whole call as one program, or None.

        Labels and options given as NumPy arrays (class weights, sample
        weights, ``pos_weight``) are moved to the predictions' framework and
        device first (``Backend.from_host``, as the general path moves them),
        so that they reach the program as arguments instead of sending the
        call op by op; class ids given so are checked on the host first,
        where reading them is free. (The generated function calls it only
        where ``backend.compiles_eagerly``.)"""
        check = None
        if backend.is_array(x):
            norm = options.get("normalizer")
            if norm is not None and normalizer_error(options["reduction"], norm) is not None:
                return None  # (the general path raises it)
            options = {
                name: backend.from_host(value, like=x) if type(value) is np.ndarray else value
                for name, value in options.items()
            }
            if isinstance(norm, numbers.Real):  # an argument, not a constant: no program per count
                options["normalizer"] = backend.asarray(np.asarray(float(norm)), like=x)
            if type(labels) is np.ndarray:
                if self.rungs.class_ids and not _host_ids_valid(
                    backend, x, labels, options["axis"], options.get("ignore_index")
                ):
                    return None  # (the general path names what is wrong)
                return backend.compiled(loss, None, x, backend.from_host(labels, like=x), **options)
        if self.rungs.class_ids:
            axis, ignore = options["axis"], options.get("ignore_index")
            check = functools.partial(_ids_valid_or_unseen, backend, x, labels, axis, ignore)
        return backend.compiled(loss, check, x, labels, **options)


def _equal(value: Any, default: Any) -> bool:
    """``value == default`` for an option's plain default (a number or string);
    False for anything whose comparison is not a plain bool (an array)."""
    try:
        return bool(value == default)
    except Exception:
        return False


def ladder(general: _F, rungs: Rungs | None = None) -> _F:
    """Make ``general`` (a loss's body) a public loss that goes down the rungs of
    ``RUNGS[general.__name__]`` (or of ``rungs``).

    The public function is generated with ``general``'s own signature (as
    :mod:`dataclasses` generates ``__init__``), so a call binds its arguments
    as any Python function does and the fused rung costs no more than a
    hand-written guard: each option outside ``honours`` is compared with its
    default in one expression, and the hook gets the honoured ones by name.
    Its docstring, name and module are ``general``'s, and it is defined in
    ``general``'s module globals (doctest finds its examples)."""
    spec = Ladder(general, RUNGS[general.__name__] if rungs is None else rungs)
    name = general.__name__
    x, labels = spec.inputs
    options = list(spec.defaults)
    params = ", ".join(f"{o}=_d_{o}" for o in options)
    every = ", ".join(f"{o}={o}" for o in options)
    lines = [f"def _make(_spec, _general, _backend_for, _equal, {', '.join(f'_d_{o}' for o in options)}):"]
    lines.append(f"    def {name}({x}, {labels}, *, {params}):")
    lines.append(f"        backend = _backend_for({x})")
    lines.append("        if backend is not None:")
    if spec.rungs.fused is not None:
        guard = " and ".join(
            f"{o} is None" if spec.defaults[o] is None else f"({o} is _d_{o} or _equal({o}, _d_{o}))"
            for o in options if o not in spec.honours
        ) or "True"
        honoured = ", ".join(f"{o}={o}" for o in spec.rungs.honours)
        lines += [
            f"            if {guard}:",
            f"                out = backend.{spec.rungs.fused}({x}, {labels}, {honoured})",
            "                if out is not None:",
            "                    return out",
        ]
    lines += [
        "            if backend.compiles_eagerly:",
        f"                out = _spec.compiled({name}, backend, {x}, {labels}, dict({every}))",
        "                if out is not None:",
        "                    return out",
        f"        return _general({x}, {labels}, {every})",
        f"    return {name}",
    ]
    source = "\n".join(lines) + "\n"
    filename = f"<xent ladder: {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), general.__globals__, scope)
    loss = scope["_make"](spec, general, backend_for, _equal, *spec.defaults.values())
    functools.update_wrapper(loss, general)
    del loss.__wrapped__  # (its own signature: inspect need not follow it)
    loss.ladder = spec
    return loss  # type: ignore[no-any-return]


def general_of(loss: Any) -> Callable[..., Any]:
    """A public loss's general body (rung 3 alone), for tests and ``xent parity``."""
    return loss.ladder.general  # type: ignore[no-any-return]


def _host_ids_valid(be: Backend, logits: Any, labels: np.ndarray, axis: Any, ignore_index: Any) -> bool:
    """Whether host ``labels`` are integer class ids, each in range (or
    ``ignore_index``), for ``logits``' classes along ``axis``."""
    try:
        num = be.shape(logits)[axis]
    except (IndexError, TypeError):
        return False
    if labels.dtype.kind not in "iu" or not num:
        return False
    return labels_valid(labels, num, ignore_index)


def _ids_valid_or_unseen(be: Backend, logits: Any, labels: Any, axis: Any, ignore_index: Any) -> bool:
    """Whether integer ``labels`` are all in range (or ``ignore_index``) where
    they can be read on the host now; True where they cannot (a compiled
    program then marks bad ones NaN)."""
    if backend_for(labels) is not be:
        return False
    assert be is not None  # (mypy narrows be to backend_for's Optional result)
    if not be.can_inspect(labels):
        return True
    return _host_ids_valid(be, logits, be.to_numpy(labels), axis, ignore_index)
