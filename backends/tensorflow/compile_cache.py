"""TensorFlow: the compiled rung of the dispatch ladder (``Backend.compiled``),
a cache of XLA programs, one per call signature, built once a signature is hot.

An eager TF call runs op by op, each op writing its result out (for large
logits, a fresh logits-sized tensor per op), where XLA fuses the whole loss
into a few loops that take less time than the native loss's eager ops,
forward and backward (the tape differentiates the compiled function as one
op, its gradient compiled too). So an eager call whose signature
(loss, options, shapes, dtypes, devices) comes back runs as one cached
XLA program of the loss, as JAX's eager calls run as one jax.jit.

But each signature costs an XLA compile, where tf.nn's eager ops cost none:
compiled at its second call, a loop over many batch shapes would spend most
of its time compiling. So a signature runs op by op until those calls have
together taken COMPILE_AFTER_S, about one compile's time, and
only then is compiled (the break-even rule of renting before buying: a
signature never costs more than about twice what the better choice, known
in hindsight, would have). A large call passes that at its first call;
a small one after hundreds, once it is clearly a training loop's. Each
signature is its own concrete function, traced once: TF's "triggered
tf.function retracing" warning never fires for xent, and a call skips
tf.function's argument matching, which is slow.

On an accelerator TF dispatches eager ops asynchronously, so the host's clock
measures their dispatch, not the call, and waiting for the device to read a
truer time would be a host sync in every call. There each op-by-op call is
counted as at least ASYNC_CALL_S: a signature is compiled at its ninth call,
after eight op by op.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import tensorflow as tf

from .._base import Array, Backend

#: seconds of op-by-op calls of one signature after which it is compiled.
COMPILE_AFTER_S = 0.2
#: compiled signatures kept at most (each holds an XLA executable); beyond,
#: a new signature runs op by op.
MAX_PROGRAMS = 256
#: the least an op-by-op call counts for when a tensor of it is off the CPU
#: (asynchronous dispatch: see the module's docstring).
ASYNC_CALL_S = COMPILE_AFTER_S / 8

_functions: dict[Any, Any] = {}  # (loss, static option names) -> tf.function
_programs: dict[Any, Any] = {}  # signature -> its concrete function, or None: compiling failed
_eager_s: dict[Any, float] = {}  # signature -> seconds its op-by-op calls took so far
_UNBUILT = object()  # (_programs: a signature not compiled yet)
_lock = threading.Lock()
_local = threading.local()  # .eager: an op-by-op call of compiled() runs on this thread
_clock = time.perf_counter


def running_eagerly() -> bool:
    """Whether this thread is inside an op-by-op run of :func:`compiled` (the
    loss is then computed as it is, with no fused op or program of its own)."""
    return getattr(_local, "eager", False)


def _timed_eagerly(key: Any, fn: Any, args: tuple[Array, ...], options: dict[str, Any], least: float) -> Array:
    """``fn(*args, **options)`` op by op (``compiled`` declines inside it), its
    time (at least ``least``) added to the signature's."""
    _local.eager = True
    started = _clock()
    try:
        out = fn(*args, **options)
    finally:
        _local.eager = False
    with _lock:
        if len(_eager_s) > 10_000:  # (one-off signatures: forget them)
            _eager_s.clear()
        _eager_s[key] = _eager_s.get(key, 0.0) + max(_clock() - started, least)
    return out


def _off_host(device: str) -> bool:
    """Whether a TF device name is not the host's CPU (ops there run asynchronously)."""
    return "CPU:" not in device


def _program(fn: Any, names: tuple[str, ...], args: tuple[Array, ...], options: dict[str, Any]) -> Any:
    """The concrete function of ``tf.function(fn, jit_compile=True)`` for this
    signature (traced here; XLA compiles it at its first call)."""
    with _lock:
        function = _functions.get((fn, names))
        if function is None:
            function = _functions[fn, names] = tf.function(fn, jit_compile=True, autograph=False)
    return function.get_concrete_function(*args, **options)


def compiled(be: Backend, fn: Any, check: Any, *args: Array, **options: Any) -> Array | None:
    # Eagerly only (inside a tf.function the loss is traced as it is);
    # tensors travel as arguments, every other option is static. A
    # signature runs op by op, here and timed, until it is hot (see
    # COMPILE_AFTER_S); `check` is run only before the compiled program.
    if running_eagerly() or not tf.executing_eagerly():
        return None
    split = be.compiled_arguments(args, options)
    if split is None:
        return None
    names, tensors = split
    static = tuple((name, options[name]) for name in names)
    devices = tuple(t.device for t in tensors)
    key = (fn, static, tuple((tuple(t.shape), t.dtype, d) for t, d in zip(tensors, devices)))
    try:
        hash(key)
    except TypeError:  # an option of another kind (the eager path says which)
        return None
    with _lock:
        program = _programs.get(key, _UNBUILT)
        # (less a rounding's worth: eight calls of ASYNC_CALL_S add up to it)
        hot = _eager_s.get(key, -1.0) >= COMPILE_AFTER_S - 1e-12 and len(_programs) < MAX_PROGRAMS
    if program is None:  # compiling it failed: the caller runs it eagerly
        return None
    if program is _UNBUILT and not hot:
        least = ASYNC_CALL_S if any(_off_host(d) for d in devices) else 0.0
        return _timed_eagerly(key, fn, args, options, least)
    if check is not None and not check():
        return None
    try:
        if program is _UNBUILT:
            program = _program(fn, tuple(names), args, options)
            with _lock:
                _programs[key] = program
        return program(*args, **options)
    except Exception:  # a bad argument (the eager path raises xent's own error) or no XLA kernel
        with _lock:
            _programs[key] = None
        return None
