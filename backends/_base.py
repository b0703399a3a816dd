"""The primitive set every xent backend provides.

The losses in :mod:`xent._losses` are written once, over the small set of
primitives below. :class:`Backend` implements each primitive through an
array-API namespace (``self.namespace(x)``), so a backend for a framework that
follows the standard only says how to recognise its arrays and how to move data
into it; the framework backends override the few primitives where a native
kernel is faster or more exact, and say why next to the override.

Arithmetic and comparisons (``+ - * / == < >= & | ~``) are written with Python
operators in the front end; every supported framework overloads them.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from ._rows import combine, row_stats

#: host arrays placed on a device by :meth:`Backend.from_host`, kept at most.
MAX_PLACED = 16
_PLACED: OrderedDict[tuple[str, int, Any], tuple[Any, np.ndarray, Any]] = OrderedDict()
_placed_lock = threading.Lock()

Array = Any

#: dtype names that xent treats as floating point, in the spelling every
#: backend reports through :meth:`Backend.dtype_name`.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: half types: computed with float32 accumulation, returned in their own dtype.
HALF_DTYPES = ("float16", "bfloat16")
INT_DTYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
)


def labels_in_range(values: Any, num: int) -> bool:
    """Whether every integer in the NumPy array ``values`` is in ``[0, num)``:
    one reduction, since negative ids viewed as unsigned are huge."""
    if not values.size:
        return True
    if values.dtype.kind == "i":
        values = values.view(f"u{values.itemsize}")
    return bool(values.max() < num)


def labels_out_of_range(values: Any, num: int, ignore_index: int | None) -> Any:
    """Where the NumPy array ``values`` is neither in ``[0, num)`` nor ``ignore_index``."""
    bad = (values < 0) | (values >= num)
    if ignore_index is not None:
        bad &= values != ignore_index
    return bad


def plain_sparse(label_smoothing: Any, class_weights: Any, weights: Any = None) -> bool:
    """Whether a fused sparse hook's options beyond ``ignore_index`` are at
    their defaults (no smoothing, no class or sample weights); False for a
    smoothing that is not a Python number (the general path validates it)."""
    return class_weights is None and weights is None and type(label_smoothing) in (float, int) and label_smoothing == 0


def labels_valid(values: Any, num: int, ignore_index: int | None) -> bool:
    """Whether every integer in ``values`` is in ``[0, num)`` or ``ignore_index``
    (one reduction when all are in range, the usual case)."""
    return labels_in_range(values, num) or not labels_out_of_range(values, num, ignore_index).any()


class Backend:
    """Base class of every backend: the primitives the losses are built from.

    Subclasses set :attr:`name` (what ``xent.available_backends()`` lists) and
    :attr:`module` (the framework's top-level module: the backend is consulted
    only once that module is in ``sys.modules``, so detection never imports a
    framework), and implement :meth:`is_array`. Everything else has a default
    written against the array API standard.
    """

    name: ClassVar[str] = "?"
    module: ClassVar[str | None] = None
    #: whether :meth:`compiled` may run a whole loss as one program (JAX).
    compiles_eagerly: ClassVar[bool] = False

    # ----------------------------------------------------------------- identity
    def is_array(self, x: Any) -> bool:
        """Whether ``x`` is an array (or tracer) of this backend's framework."""
        raise NotImplementedError

    def namespace(self, x: Array) -> Any:
        """The array-API namespace used by the default primitives."""
        import array_api_compat

        return array_api_compat.array_namespace(x)

    def version(self) -> str:
        """The framework's version string (for ``xent info``)."""
        import importlib.metadata

        try:
            return importlib.metadata.version(self.module or self.name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def devices(self) -> list[str]:
        """Devices this framework can place arrays on (for ``xent info``)."""
        return ["cpu"]

    def __repr__(self) -> str:
        return f"<xent backend {self.name!r}>"

    # ------------------------------------------------------------ conversion
    def asarray(self, x: Any, like: Array) -> Array:
        """``x`` (a NumPy array, list or scalar) as an array of this framework,
        on the device of ``like``; the dtype of ``x`` is kept."""
        xp = self.namespace(like)
        return xp.asarray(x, device=self.device(like))

    def placement_key(self, like: Array) -> Any:
        """Where host data for ``like`` goes, as a hashable key, where moving
        it there costs a transfer (an accelerator's memory, a sharding);
        None where it does not (the CPU) or ``like`` is traced: then
        :meth:`from_host` moves host data on every call."""
        return None

    def from_host(self, x: np.ndarray, like: Array) -> Array:
        """The NumPy array ``x`` as :meth:`asarray` places it for ``like``,
        placed once: where :meth:`placement_key` names a device, the placed
        array is kept (the last ``MAX_PLACED``) and returned again while ``x``
        is the same object with the same values (compared on the host with a
        copy taken when it was placed, so an array changed in place is placed
        again). Class weights given as NumPy then cross to an accelerator
        once, not in every call, each crossing a host sync."""
        key = self.placement_key(like)
        if key is None:
            return self.asarray(x, like)
        slot = (self.name, id(x), key)
        with _placed_lock:
            hit = _PLACED.get(slot)
            if hit is not None and hit[0]() is x and hit[1].dtype == x.dtype and np.array_equal(hit[1], x):
                _PLACED.move_to_end(slot)
                return hit[2]
        placed = self.asarray(x, like)
        try:
            ref = weakref.ref(x)
        except TypeError:  # (a subclass without weak references: moved every call)
            return placed
        with _placed_lock:
            _PLACED[slot] = (ref, x.copy(), placed)
            while len(_PLACED) > MAX_PLACED:
                _PLACED.popitem(last=False)
        return placed

    def device(self, x: Array) -> Any:
        import array_api_compat

        return array_api_compat.device(x)

    def dtype_name(self, x: Array) -> str:
        """The dtype of ``x`` as a plain string: ``"float32"``, ``"int64"``, ``"bool"``..."""
        return str(x.dtype).rsplit(".", 1)[-1]

    def cast(self, x: Array, dtype: str) -> Array:
        """``x`` in the dtype named ``dtype`` (a no-op where it already is)."""
        if self.dtype_name(x) == dtype:
            return x
        xp = self.namespace(x)
        return xp.astype(x, getattr(xp, dtype))

    def with_rank(self, x: Array, shape: tuple[int | None, ...] | None, name: str = "x") -> Array:
        """``x`` with the static ``shape`` it must have, where the framework does
        not know its rank at trace time (TensorFlow: ``tf.squeeze`` in a
        ``tf.function``); ``x`` itself elsewhere. ``shape=None``: no shape is
        expected, and an unknown rank is a ``ValueError`` naming ``name``."""
        return x

    def loss_dtype(self, x: Array, dtype: str) -> str:
        """The dtype a loss of predictions ``x`` (of dtype ``dtype``) is returned
        in: ``dtype``, unless the framework's mixed precision says otherwise."""
        return dtype

    def shape(self, x: Array) -> tuple[int | None, ...]:
        """The static shape; ``None`` for a dimension unknown at trace time."""
        return tuple(x.shape)

    def can_inspect(self, x: Array) -> bool:
        """Whether values of ``x`` can be read on the host now, cheaply and
        without breaking a trace: eager and on the CPU. Out-of-range labels
        raise where this holds, and become NaN losses where it does not."""
        return True

    def to_numpy(self, x: Array) -> Any:
        import numpy as np

        return np.asarray(x)

    def errstate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which IEEE special values raise no warnings."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------- fast path
    def fused_sparse(
        self, logits: Array, labels: Array, *, axis: Any, reduction: Any, ignore_index: Any,
        label_smoothing: Any = 0.0, class_weights: Any = None, weights: Any = None,
    ) -> Array | None:
        """The sparse loss, reduced, in one native call; ``None`` to take
        the next rung of the ladder (``xent._dispatch``). A backend whose
        native kernel has no smoothing, class or sample weights declines when
        they are set (:func:`plain_sparse`).

        The options it honours (given or default) are passed by name, not yet
        validated; every other option is at its default. A
        backend returns a result only inside the envelope where its native
        kernel gives exactly xent's semantics, and ``None`` for anything it
        does not recognise or cannot check cheaply (the general path then
        validates, and raises xent's own errors). This is what makes a small
        eager call cost the same as the framework's own loss.
        """
        return None

    def fused_dense(self, logits: Array, labels: Array, *, axis: Any, reduction: Any) -> Array | None:
        """The plain dense (soft-label) loss, reduced, in one native call. Same
        contract as :meth:`fused_sparse`."""
        return None

    def fused_sigmoid(self, logits: Array, labels: Array, *, reduction: Any) -> Array | None:
        """The plain sigmoid loss, reduced, without the general front end. Same
        contract as :meth:`fused_sparse`."""
        return None

    def compiled(self, fn: Any, check: Any, *args: Array, **options: Any) -> Array | None:
        """``fn(*args, **options)`` as one compiled program, where this framework
        would otherwise run it op by op, or ``None`` (run it as it is).

        ``fn`` is one of xent's public losses; inside the compiled program it is
        called again and takes its general path. ``check``: None, or a callable
        to run before the program, whose False sends the call back to the
        caller (labels it cannot read inside). JAX does this for every eager
        call: its eager mode dispatches each small op separately, and a cached
        ``jax.jit`` of the whole loss costs one dispatch (XLA fuses the rest);
        TensorFlow once a signature's op-by-op calls have cost about one
        compile."""
        return None

    def compiled_arguments(
        self, args: tuple[Any, ...], options: dict[str, Any]
    ) -> tuple[list[str], list[Array]] | None:
        """How :meth:`compiled` passes a call to its program: ``(static, arrays)``,
        the names of the options that are not arrays of this framework (fixed
        when the program is built) and the arrays among ``args`` and the
        options (passed to it); ``None`` where an argument is not such an array
        or an option is host data (a NumPy array, list or tuple), which the
        eager path moves to the framework first."""
        if not all(self.is_array(a) for a in args):
            return None
        static, arrays = [], list(args)
        for name, value in options.items():
            if self.is_array(value):
                arrays.append(value)
            elif isinstance(value, (np.ndarray, list, tuple)):
                return None
            else:
                static.append(name)
        return static, arrays

    # ------------------------------------------------------------------ math
    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        xp = self.namespace(cond)
        return xp.where(cond, a, b)

    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        return self.namespace(x).sum(x, axis=axis, keepdims=keepdims)

    def max(self, x: Array, axis: int, keepdims: bool = False) -> Array:
        return self.namespace(x).max(x, axis=axis, keepdims=keepdims)

    def exp(self, x: Array) -> Array:
        return self.namespace(x).exp(x)

    def log(self, x: Array) -> Array:
        return self.namespace(x).log(x)

    def tanh(self, x: Array) -> Array:
        return self.namespace(x).tanh(x)

    def expm1(self, x: Array) -> Array:
        """``exp(x) - 1``, exact near ``x = 0``."""
        return self.namespace(x).expm1(x)

    def isinf(self, x: Array) -> Array:
        return self.namespace(x).isinf(x)

    def abs(self, x: Array) -> Array:
        return self.namespace(x).abs(x)

    def clip(self, x: Array, lo: float, hi: float) -> Array:
        return self.namespace(x).clip(x, lo, hi)

    def expand_dims(self, x: Array, axis: int) -> Array:
        return self.namespace(x).expand_dims(x, axis=axis)

    def ones_like(self, x: Array) -> Array:
        return self.namespace(x).ones_like(x)

    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array:
        return self.namespace(x).reshape(x, shape)

    def stop_gradient(self, x: Array) -> Array:
        """``x`` with no gradient flowing back through it (identity without autodiff)."""
        return x

    def take(self, table: Array, index: Array) -> Array:
        """``table[index]`` for a 1-D ``table`` and an integer array ``index``."""
        xp = self.namespace(table)
        flat = xp.reshape(index, (-1,))
        return xp.reshape(xp.take(table, flat), tuple(index.shape))

    def take_along_axis(self, x: Array, index: Array, axis: int) -> Array:
        """``x`` gathered at ``index`` (same rank as ``x``, size 1 along ``axis``)."""
        xp = self.namespace(x)
        if hasattr(xp, "take_along_axis"):
            return xp.take_along_axis(x, index, axis=axis)
        # Namespaces older than the 2024.12 standard (Dask): select by comparison.
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        classes = xp.reshape(xp.arange(x.shape[axis], dtype=index.dtype), tuple(shape))
        return xp.sum(xp.where(classes == index, x, xp.zeros_like(x)), axis=axis, keepdims=True)

    def softplus(self, x: Array) -> Array:
        """``log(1 + exp(x))``, exact for every finite ``x`` and its limits at ±inf."""
        xp = self.namespace(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def log_softmax(self, z: Array, axis: int) -> Array:
        """``z - logsumexp(z)`` along ``axis``, computed as ``(z - m) - log Σ exp(z - m)``."""
        shifted = z - self.stop_gradient(self.max(z, axis, keepdims=True))
        return shifted - self.log(self.sum(self.exp(shifted), axis, keepdims=True))

    def any_nan(self, x: Array) -> bool:
        """Whether ``x`` holds a NaN (a host sync: only where :meth:`can_inspect`)."""
        xp = self.namespace(x)
        return bool(xp.any(xp.isnan(x)))

    def weigh(self, weight: Array, value: Array) -> Array:
        """``weight * value`` that is 0 where ``weight`` is 0 and ``value`` is ±inf.

        The guard replaces only infinite values under a zero weight, so no
        ``0 * inf`` is formed forward or backward, while the derivative with
        respect to ``weight`` stays ``value`` wherever that is finite (a one-hot
        label's gradient is ``-log p`` at its zeros too).
        """
        return weight * self.unweighted_inf_as_zero(weight, value)

    def xlogy(self, x: Array, y: Array) -> Array:
        """``x · log(y)``, 0 where ``x`` is 0 (also where ``y`` is 0): :meth:`weigh`
        of ``log(y)``, so its derivatives are finite there too."""
        return self.weigh(x, self.log(y))

    def unweighted_inf_as_zero(self, weight: Array, value: Array) -> Array:
        """``value`` with 0 where ``weight`` is 0 and ``value`` is ±inf: the guard
        of :meth:`weigh`, and what its derivative with respect to ``weight`` is."""
        return self.where((weight == 0) & self.isinf(value), 0.0, value)

    def row_max(self, z: Array, axis: int, narrow: str | None = None) -> Array:
        """The max of ``z`` along ``axis`` (kept), with no derivative: the softmax
        losses' shift. ``narrow``: the half dtype ``z`` was upcast from, or None;
        the max is the same value in either dtype, and a backend whose compiler
        then reads the input narrow (JAX) takes it there."""
        return self.stop_gradient(self.max(z, axis, keepdims=True))

    def held_branch(self, narrow: str | None, fn: Any, *xs: Array) -> Any:
        """``lambda: fn(*xs)``, a branch of a conditional (``lax.cond``,
        ``tf.cond``), with ``xs`` held in the half dtype ``narrow`` they were
        upcast from and upcast again inside the branch. XLA writes out each
        operand of a conditional: an upcast one is a fresh logits-sized float32
        copy, which costs more than the loss itself, while the round trip
        of a value upcast from ``narrow`` folds away to the input itself."""
        if narrow is None:
            return lambda: fn(*xs)
        held = [(self.cast(x, narrow), self.dtype_name(x)) for x in xs]
        return lambda: fn(*(self.cast(h, wide) for h, wide in held))

    def binary_nll(self, z: Array, y: Array, pos_weight: Array | None, narrow: str | None = None) -> Array:
        """``p·y·softplus(-z) + (1-y)·softplus(z)`` elementwise (``p`` = ``pos_weight``
        or 1), with a zero weight times an infinite softplus giving 0.

        Both softplus terms come from one: ``softplus(±z) = relu(±z) + a`` with
        ``a = softplus(-|z|)``, so an element costs one ``exp`` and one ``log1p``,
        and every term is non-negative (no cancellation) for labels in ``[0, 1]``.

        Where values can be read on the host (:meth:`can_inspect`), the short
        form ``relu(±z) = (|z| ± z)/2`` without guards runs first: it is exact
        for every finite ``z`` (below half the dtype's maximum), and NaN exactly
        where a guard was needed (or an input is NaN); only then does the
        guarded form run. Both have the derivative at ``z = 0`` right.

        ``narrow``: the half dtype that ``z`` and ``y`` were both upcast from
        (each value rounds back to it exactly), or None. The result is the same
        either way; a backend whose conditional must hold the inputs holds them
        narrow (:meth:`held_branch`).
        """
        pos = y if pos_weight is None else y * pos_weight
        neg = 1.0 - y
        if self.can_inspect(z):
            t = self.abs(z)
            a = self.softplus(-t)
            if pos_weight is not None:
                a = a * (pos + neg)
            loss = a + pos * ((t - z) * 0.5) + neg * ((t + z) * 0.5)
            if not self.any_nan(loss):
                return loss
        return self.guarded_binary_nll(z, y, pos_weight)

    def guarded_binary_nll(self, z: Array, y: Array, pos_weight: Array | None) -> Array:
        """:meth:`binary_nll` with its ``0·inf`` guards, for every input."""
        pos = y if pos_weight is None else y * pos_weight
        neg = 1.0 - y
        # The branches split at z >= 0 on every side, so d/dz at 0 is exact.
        up = z >= 0
        neg_z = -z
        a = self.softplus(self.where(up, neg_z, z))
        if pos_weight is not None:
            a = a * (pos + neg)
        relu_pos = self.where(up, z, 0.0)
        relu_neg = self.where(up, 0.0, neg_z)
        return a + self.weigh(pos, relu_neg) + self.weigh(neg, relu_pos)

    def soft_nll(self, z: Array, y: Array, axis: int, narrow: str | None = None) -> Array:
        """``-Σ_c y_c · log_softmax(z)_c`` along ``axis``, a term with ``y_c = 0``
        contributing 0 even where ``z_c = -inf``.

        Computed as ``log Σ exp(z - m) · Σ y - Σ y · (z - m)``: three reductions
        that read the logits directly, so a compiler fuses them without a
        logits-sized ``log_softmax`` temporary; both terms are non-negative for
        non-negative labels (no cancellation), and for one-hot labels it is the
        sparse loss's ``log Σ exp(z - m) - (z_y - m)``.

        ``narrow``: the half dtype that ``z`` and ``y`` were both upcast from
        (each value rounds back to it exactly), or None. The result is the same
        either way; a backend whose conditional must hold the inputs holds them
        narrow (:meth:`held_branch`).
        """
        return combine(self, row_stats(self, z, axis, soft=y, narrow=narrow))

    def linear_cross_entropy_chunks(
        self, h: Array, W: Array, b: Array | None, y: Array, cw: Array | None, plan: Any
    ) -> Array | None:
        """The per-token losses ``[N]`` of :func:`xent.linear_cross_entropy` for
        ``[N, H]`` hidden states ``h``, weight ``[V, H]``, bias ``[V]`` or None,
        in-range labels ``y`` ``[N]`` and class weights ``cw`` ``[V]`` or None,
        chunk by chunk as ``plan`` (``xent._linear.Plan``) says, differentiable
        without holding the ``[N, V]`` logits (a custom gradient); None where
        the backend has no such kernel (the front end then computes the value
        chunk by chunk, without autodiff)."""
        return None

    def linear_heads(
        self, heads: tuple[tuple[Array, Array, Array | None], ...], rows: tuple[Array, ...], objective: Any,
        chunk: int, compute: str,
    ) -> tuple[Array, ...]:
        """Per-token outputs of ``objective`` over LM heads' logits, chunk by chunk.

        ``heads``: ``(hidden [N, H_k], weight [V, H_k], bias [V] or None)``
        each, the first differentiable (hidden, weight, bias), the others
        constants (a teacher); ``rows``: constant ``[N]`` arrays (labels).
        ``objective(backend, zs, rows_c)`` returns a tuple of ``[rows]`` arrays
        from one chunk's logits ``zs`` (``[rows, V]`` per head, in ``compute``)
        and rows; ``objective.outputs`` is their number, and the objective is
        hashable (JAX caches its program by it). The result: those outputs for all ``N`` tokens. Here: the
        value, over the array-API namespace (NumPy, array_api_strict); torch,
        JAX and TensorFlow differentiate it chunk by chunk (``xent._heads``).
        """
        xp = self.namespace(heads[0][0])
        n = int(xp.reshape(heads[0][0], (-1, self.shape(heads[0][0])[1])).shape[0])
        weights = [xp.permute_dims(self.cast(W, compute), (1, 0)) for _, W, _ in heads]
        parts = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            zs = []
            for (h, _, b), wt in zip(heads, weights):
                z = xp.matmul(self.cast(h[start:stop, ...], compute), wt)
                zs.append(z if b is None else z + self.cast(b, compute))
            parts.append(objective(self, zs, tuple(r[start:stop] for r in rows)))
        return tuple(xp.concat([part[i] for part in parts]) for i in range(len(parts[0])))

    def rows_in_chunks(self, body: Any, axis: int | None, rows: tuple[Array | None, ...],
                       broadcast: tuple[Array | None, ...] = ()) -> Array:
        """``body(*rows, *broadcast)``: a loss's per-entry terms (in the compute
        dtype) from its arrays as given, half types not upcast (``body`` casts
        them). ``rows`` share the predictions' first axis (``rows[0]``, with the
        class axis ``axis``, or None for an elementwise loss); ``broadcast``
        arrays broadcast against ``rows[0]``. A backend may evaluate ``body``
        on chunks of that first axis instead, each upcast on its own, where the
        whole would cost logits-sized float32 copies (torch off the CPU), so
        ``body`` must treat every entry on its own along that axis and take
        every array it differentiates as an argument, none from its closure."""
        return body(*rows, *broadcast)

    def sparse_rows(self, z: Array, labels: Array, axis: int, cw: Array | None, plan: Any) -> Array | None:
        """The sparse loss's per-row terms for logits ``z`` as given (half
        types not upcast), in-range ``labels``, class weights ``cw`` ``[C]`` or
        None and the options in ``plan`` (``xent._linear.Plan``: smoothing,
        z-loss, soft-capping), computed chunk by chunk without a float32 copy
        of ``z``; None where the backend leaves it to the general path (which
        then upcasts ``z`` whole)."""
        return None

    def smoothed_nll(self, z: Array, labels: Array, axis: int, alpha: float) -> Array:
        """The label-smoothed loss ``(1-α)·(-log p_y) + (α/C)·Σ_c -log p_c`` along
        ``axis`` (removed), for in-range ``labels`` and ``0 < α < 1``: the
        cross-entropy against the smoothed one-hot target."""
        num = self.shape(z)[axis]
        assert num is not None  # (the class axis has a static size: fe.num_classes)
        stats = row_stats(self, z, axis, labels=labels, spread=True)
        return combine(self, stats, alpha=alpha, vocab=num)

    def nll(self, z: Array, labels: Array, axis: int, narrow: str | None = None, raw: bool = False) -> Array:
        """``-log_softmax(z)[labels]`` along ``axis``; every label is in ``[0, C)``.

        Computed as ``log Σ exp(z - m) - (z_y - m)`` with ``m`` the row max, which
        keeps the difference ``z_y - m`` exact instead of rounding a large
        ``logsumexp`` before subtracting ``z_y``.

        ``narrow``: the half dtype ``z`` was upcast from, or None (:meth:`row_max`).
        ``raw``: ``z`` is the loss's own input, not soft-capped or otherwise
        computed from it, so its gradient goes on unchanged (a backend may
        then form it in place).
        """
        return combine(self, row_stats(self, z, axis, labels=labels, narrow=narrow))

    # ----------------------------------------------------------- collectives
    def collectives(self, group: Any, like: Array) -> Any:
        """The collectives of ``group`` on the framework's own engine, for
        arrays like ``like`` (:mod:`xent.distributed`): an object with
        ``max(x)`` (elementwise over the group's processes, no gradient),
        ``sum(*xs)`` (each elementwise, packed into one all-reduce; its
        gradient is the identity, since every process computes the same loss
        from the sums), ``copy(x)`` (the identity, its gradient summed over
        the group: an input every process holds whole) and ``layout(width)``
        (this process's first class id and the group's total width, for
        shards of ``width`` classes). Backends without collectives raise."""
        raise NotImplementedError(f"the {self.name} backend has no collectives")
