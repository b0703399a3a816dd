"""Test sessions: one per backend, a NumPy-only one, and one with all four.

Each session installs xent with that backend's extra (plus the frameworks'
own losses that the tests compare against) and names the backends it must test
in XENT_TEST_BACKENDS, so a backend that fails to import fails the run instead
of being skipped.

    nox -s all        # what CI runs: every backend, nothing skipped
    nox -s numpy      # no framework installed at all
    nox -s torch tensorflow jax
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch: any newer torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"
# What each backend's session installs besides xent[extra,test]: the
# framework's native losses the tests compare against (Keras for the
# probability losses, optax for JAX).
ANCHORS = {"torch": [TORCH], "tensorflow": ["keras"], "jax": ["optax"]}


def _run(session: nox.Session, backends: list[str], extras: str, *anchors: str) -> None:
    # Editable: pytest runs from the repository root, where a regular install
    # would be shadowed by the source xent/ (which has no backends/ inside).
    # tests/test_packaging.py installs the built wheel on its own and runs it.
    session.install(*anchors, "-e", f".[{extras}]")
    env = {"XENT_TEST_BACKENDS": ",".join(backends)}
    session.run("pytest", *session.posargs, env=env)


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy and the generic array-API backend, with no framework installed."""
    _run(session, ["numpy", "array_api_strict"], "test")


@nox.session
@nox.parametrize("backend", ["torch", "tensorflow", "jax"])
def framework(session: nox.Session, backend: str) -> None:
    """One framework (plus NumPy)."""
    _run(session, ["numpy", backend], f"{backend},test", *ANCHORS[backend])


@nox.session(name="all")
def all_backends(session: nox.Session) -> None:
    """All four backends and the generic one: what CI runs."""
    anchors = [a for group in ANCHORS.values() for a in group]
    _run(session, ["numpy", "torch", "tensorflow", "jax", "array_api_strict"], "all,test", *anchors)


@nox.session
def parity(session: nox.Session) -> None:
    """The main job: `xent parity` on every installed backend."""
    anchors = [a for group in ANCHORS.values() for a in group]
    session.install(*anchors, ".[all]")
    session.run("xent", "parity", *session.posargs)
