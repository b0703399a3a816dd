"""Dispatch: no framework imports, per-type cache, the registry, entry points,
labels following the predictions' framework, the generic array-API backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xent
from xent import _registry
from xent.backends import Backend

FRAMEWORKS = ("torch", "tensorflow", "jax", "array_api_strict", "dask", "cupy")


def test_import_xent_imports_no_framework():
    code = textwrap.dedent(
        f"""
        import sys, numpy
        before = set(sys.modules)
        import xent
        xent.sparse_softmax_cross_entropy(numpy.zeros((2, 3)), [0, 1])
        xent.available_backends()
        new = {{m.split('.')[0] for m in set(sys.modules) - before}}
        print(sorted(new & set({FRAMEWORKS!r})))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_first_torch_call_loads_no_numpy_namespace():
    # The NumPy backend is built at the first call of any framework (NumPy is
    # always loaded), but array_api_compat.numpy (~0.2 s to import) only when
    # a NumPy computation needs it.
    pytest.importorskip("torch")
    code = textwrap.dedent(
        """
        import sys, torch, xent
        xent.sparse_softmax_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), reduction="mean")
        xent.sigmoid_cross_entropy(torch.zeros(2, 3), torch.ones(2, 3), weights=torch.ones(2, 1))
        print(xent.get_backend("numpy").name, "array_api_compat.numpy" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "False"], out.stdout + out.stderr


def test_numpy_dispatch_is_cached_per_type():
    xent.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1])
    assert _registry._type_cache[np.ndarray].name == "numpy"
    assert xent.get_backend(np.zeros(1)) is _registry._type_cache[np.ndarray]


def test_get_backend_by_name_and_errors():
    assert xent.get_backend("numpy").name == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        xent.get_backend("nope")
    with pytest.raises(TypeError, match="no xent backend handles"):
        xent.get_backend(object())


def test_available_backends_lists_installed():
    names = xent.available_backends()
    assert names[0] == "numpy"
    for name in ("torch", "tensorflow", "jax"):
        from importlib.util import find_spec

        assert (name in names) == (find_spec(name) is not None)


def test_each_framework_is_served_by_its_backend(fw):  # type: ignore[no-untyped-def]
    z = fw.asarray(np.zeros((2, 3), np.float32))
    want = {"array_api_strict": "array_api"}.get(fw.name, fw.name)
    assert xent.get_backend(z).name == want
    out = xent.sparse_softmax_cross_entropy(z, [0, 1])  # labels as a list follow the logits
    assert type(out) is type(z) or xent.get_backend(out).name == want


def test_torch_labels_follow_the_logits_device():
    torch = pytest.importorskip("torch")
    z = torch.zeros(2, 3, dtype=torch.float64)
    out = xent.sparse_softmax_cross_entropy(z, np.array([0, 1]), class_weights=[1.0, 2.0, 3.0], weights=[1.0, 0.5])
    assert isinstance(out, torch.Tensor) and out.device == z.device and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), [np.log(3), np.log(3)])


def test_jax_tracer_and_tf_variable_are_recognised():
    tf = pytest.importorskip("tensorflow")
    v = tf.Variable(np.zeros((2, 3), np.float32))
    assert xent.get_backend(v).name == "tensorflow"
    with tf.GradientTape() as tape:
        out = xent.sparse_softmax_cross_entropy(v, [0, 1], reduction="sum")
    assert tape.gradient(out, v) is not None
    jax = pytest.importorskip("jax")
    names = []
    jax.jit(lambda x: names.append(xent.get_backend(x).name) or x)(np.zeros(2))
    assert names == ["jax"]


def test_dask_through_array_api_compat():
    da = pytest.importorskip("dask.array")
    z = da.from_array(np.random.default_rng(0).normal(size=(6, 4)), chunks=3)
    y = np.array([0, 1, 2, 3, 0, 1])
    out = xent.sparse_softmax_cross_entropy(z, y, reduction="mean")
    from scipy.special import log_softmax

    want = -log_softmax(np.asarray(z), axis=-1)[np.arange(6), y].mean()
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12)


class StrictBackend(Backend):
    """A third-party backend claiming array_api_strict arrays (which the generic
    backend would otherwise serve): registered backends come first."""

    name = "strict"

    def is_array(self, x):  # type: ignore[no-untyped-def]
        return type(x).__module__.startswith("array_api_strict")


def test_register_backend(monkeypatch):  # type: ignore[no-untyped-def]
    xp = pytest.importorskip("array_api_strict")
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_type_cache", {})
    backend = xent.register_backend(StrictBackend())
    z = xp.zeros((2, 3))
    assert xent.get_backend(z) is backend
    assert xent.get_backend("strict") is backend
    assert "strict" in xent.available_backends()
    out = xent.sparse_softmax_cross_entropy(z, [0, 1])
    np.testing.assert_allclose(np.from_dlpack(out), [np.log(3)] * 2)
    with pytest.raises(ValueError, match="taken by a built-in"):
        xent.register_backend(type("T", (StrictBackend,), {"name": "torch"})())
    with pytest.raises(TypeError, match="instance of xent.backends.Backend"):
        xent.register_backend(object())  # type: ignore[arg-type]


def test_entry_point_backend(tmp_path):  # type: ignore[no-untyped-def]
    """A package exposing a backend in the ``xent.backends`` group is found."""
    pkg = tmp_path / "xent_box"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(
        """
        import numpy as np
        from xent.backends import Backend

        class Box:
            def __init__(self, v):
                self.v = np.asarray(v)

        class BoxBackend(Backend):
            name = "box"
            def is_array(self, x):
                return isinstance(x, Box)
        """
    ))
    dist = tmp_path / "xent_box-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: xent-box\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[xent.backends]\nbox = xent_box:BoxBackend\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import xent, xent_box
        print(xent.get_backend(xent_box.Box([1.0])).name, "box" in xent.available_backends())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["box", "True"], out.stderr
