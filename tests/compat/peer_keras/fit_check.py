"""Run in a fresh process per Keras backend (KERAS_BACKEND set by the caller):
xent.compat.keras' losses in ``fit``/``save``/``load_model`` against Keras' own.

    KERAS_BACKEND=jax python tests/compat/peer_keras/fit_check.py OUTDIR

Every check compares with Keras' own losses on the same model from the same
weights (never xent with itself); an assertion error exits non-zero. A tiny
Dense model, 40 samples, batch 16 (so the last batch is short), 2 epochs.
"""

from __future__ import annotations

import os
import sys
import warnings


def main(outdir: str) -> None:
    import numpy as np

    from xent.compat import keras as kd

    assert "keras" not in sys.modules, "importing the dialect imported keras"
    Sparse = kd.SparseCategoricalCrossentropy  # touching a class imports Keras
    assert "keras" in sys.modules
    import keras

    backend = keras.backend.backend()
    assert backend == os.environ["KERAS_BACKEND"], backend
    assert issubclass(Sparse, keras.losses.Loss)

    rng = np.random.default_rng(0)
    n, d, c = 40, 6, 4
    x = rng.normal(size=(n, d)).astype("float32")
    ids = rng.integers(0, c, size=n)
    ids_ignored = np.where(rng.random(n) < 0.25, -1, ids)
    onehot = np.eye(c, dtype="float32")[ids]
    binary = (rng.random((n, c)) < 0.5).astype("float32")
    binary_1d = (rng.random(n) < 0.5).astype("float32")
    sample_weight = rng.uniform(0.2, 2.0, size=n).astype("float32")

    def model(out: int, activation: str | None) -> keras.Model:
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((d,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(out, activation=activation)])
        m.set_weights([w.astype("float32") for w in INIT[out]])
        return m

    INIT = {}
    for out in (1, c):
        keras.utils.set_random_seed(1)
        INIT[out] = [np.asarray(w) for w in keras.Sequential(
            [keras.Input((d,)), keras.layers.Dense(8), keras.layers.Dense(out)]).get_weights()]

    def fit(loss, y, out, activation, sw=None):
        m = model(out, activation)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hist = m.fit(x, y, sample_weight=sw, batch_size=16, epochs=2, shuffle=False, verbose=0)
        bad = [str(w.message) for w in caught if "int64" in str(w.message)]
        assert not bad, bad  # JAX without x64: no "requested dtype int64 ... truncated"
        return m, np.asarray(hist.history["loss"]), [np.asarray(w) for w in m.get_weights()]

    def same(ours, theirs, label, rtol=1e-6, atol=1e-6):
        m1, h1, w1 = ours
        m2, h2, w2 = theirs
        np.testing.assert_allclose(h1, h2, rtol=rtol, atol=atol, err_msg=f"{label}: history")
        for a, b in zip(w1, w2):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{label}: weights")
        print(f"ok {backend} {label}: history {h1.tolist()}")

    KL = keras.losses
    cases = [
        ("sparse logits", kd.SparseCategoricalCrossentropy(from_logits=True),
         KL.SparseCategoricalCrossentropy(from_logits=True), ids, c, None, None),
        ("sparse softmax (N,1) labels, sample_weight", kd.SparseCategoricalCrossentropy(),
         KL.SparseCategoricalCrossentropy(), ids[:, None], c, "softmax", sample_weight),
        ("sparse ignore_class", kd.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
         KL.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1), ids_ignored, c, None, None),
        ("categorical logits smoothing", kd.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
         KL.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), onehot, c, None, None),
        ("categorical softmax", kd.CategoricalCrossentropy(), KL.CategoricalCrossentropy(),
         onehot, c, "softmax", None),
        ("binary sigmoid", kd.BinaryCrossentropy(), KL.BinaryCrossentropy(), binary, c, "sigmoid", None),
        ("binary logits (N,) labels, (N, 1) outputs", kd.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
         KL.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), binary_1d, 1, None, sample_weight),
        # XentLoss with ignore_index: the mean over the kept entries, as Keras' ignore_class.
        ("XentLoss sparse ignore_index", kd.XentLoss("sparse_softmax_cross_entropy", ignore_index=-1),
         KL.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1), ids_ignored, c, None, sample_weight),
        ("XentLoss sigmoid", kd.XentLoss("sigmoid_cross_entropy", label_smoothing=0.1),
         KL.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), binary, c, None, None),
        ("binary focal logits", kd.BinaryFocalCrossentropy(from_logits=True, gamma=1.5, apply_class_balancing=True),
         KL.BinaryFocalCrossentropy(from_logits=True, gamma=1.5, apply_class_balancing=True), binary, c, None, None),
        ("categorical focal softmax", kd.CategoricalFocalCrossentropy(gamma=2.0, label_smoothing=0.1),
         KL.CategoricalFocalCrossentropy(gamma=2.0, label_smoothing=0.1), onehot, c, "softmax", sample_weight),
    ]
    fitted = {}
    for label, ours, theirs, y, out, act, sw in cases:
        fitted[label] = fit(ours, y, out, act, sw)
        same(fitted[label], fit(theirs, y, out, act, sw), label)

    # A sequence model: unknown time dimension, (N, T) labels with ignored entries, (N, T) weights.
    xs = rng.normal(size=(20, 5, 3)).astype("float32")
    ys = rng.integers(0, c, size=(20, 5))
    ys[rng.random((20, 5)) < 0.3] = -1
    sws = rng.uniform(0.5, 1.5, size=(20, 5)).astype("float32")

    def fit_seq(loss):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((None, 3)), keras.layers.Dense(c)])
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        hist = m.fit(xs, ys, sample_weight=sws, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return m, np.asarray(hist.history["loss"]), [np.asarray(w) for w in m.get_weights()]

    theirs = fit_seq(KL.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1))
    same(fit_seq(kd.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)), theirs, "sequence ignore_class")
    same(fit_seq(kd.XentLoss(ignore_index=-1)), theirs, "sequence XentLoss ignore_index")

    # model.save / keras.models.load_model with the xent loss: same class, same evaluate.
    for label, cls in [("sparse ignore_class", kd.SparseCategoricalCrossentropy),
                       ("categorical logits smoothing", kd.CategoricalCrossentropy),
                       ("binary sigmoid", kd.BinaryCrossentropy),
                       ("XentLoss sparse ignore_index", kd.XentLoss),
                       ("binary focal logits", kd.BinaryFocalCrossentropy),
                       ("categorical focal softmax", kd.CategoricalFocalCrossentropy)]:
        m = fitted[label][0]
        y = {c2[0]: c2[3] for c2 in cases}[label]
        path = os.path.join(outdir, f"{backend}-{cls.__name__}.keras")
        m.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.loss) is cls, (type(loaded.loss), cls)
        assert loaded.loss.get_config() == m.loss.get_config(), (loaded.loss.get_config(), m.loss.get_config())
        e1 = m.evaluate(x, y, batch_size=16, verbose=0)
        e2 = loaded.evaluate(x, y, batch_size=16, verbose=0)
        np.testing.assert_allclose(e2, e1, rtol=1e-6, err_msg=label)
        print(f"ok {backend} save/load {cls.__name__}: evaluate {e1}")

    # mixed_bfloat16: the layers compute in bfloat16, both losses in float32 (dtype=None).
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        ours = fit(kd.SparseCategoricalCrossentropy(from_logits=True), ids, c, None)
        theirs = fit(KL.SparseCategoricalCrossentropy(from_logits=True), ids, c, None)
        same(ours, theirs, "mixed_bfloat16 sparse", rtol=1e-2, atol=1e-2)
        ours = fit(kd.CategoricalCrossentropy(), onehot, c, "softmax")
        theirs = fit(KL.CategoricalCrossentropy(), onehot, c, "softmax")
        same(ours, theirs, "mixed_bfloat16 categorical softmax", rtol=1e-2, atol=1e-2)
        # the loss called on the model's bfloat16 output, under dtype=None and a policy
        y_pred = ours[0](x[:8])
        assert keras.backend.standardize_dtype(y_pred.dtype) == "bfloat16"
        for dtype in (None, "mixed_bfloat16", keras.DTypePolicy("mixed_bfloat16"), "float32"):
            for o, t, y in [(kd.CategoricalCrossentropy(dtype=dtype), KL.CategoricalCrossentropy(dtype=dtype), onehot),
                            (kd.SparseCategoricalCrossentropy(dtype=dtype),
                             KL.SparseCategoricalCrossentropy(dtype=dtype), ids),
                            (kd.BinaryCrossentropy(dtype=dtype), KL.BinaryCrossentropy(dtype=dtype), binary)]:
                a, b = o(y[:8], y_pred), t(y[:8], y_pred)
                da, db = (keras.backend.standardize_dtype(v.dtype) for v in (a, b))
                assert da == db, (type(o).__name__, dtype, da, db)
                np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(a, "float32")),
                                           keras.ops.convert_to_numpy(keras.ops.cast(b, "float32")),
                                           rtol=2e-2, err_msg=f"{type(o).__name__} dtype={dtype}")
        print(f"ok {backend} mixed_bfloat16 dtypes")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    print(f"ALL OK {backend}")


if __name__ == "__main__":
    main(sys.argv[1])
