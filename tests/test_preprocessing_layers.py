"""Normalization (adapt, given statistics, invert) and Rescaling: against NumPy and
Keras 3, inside models (trained, saved, loaded both ways), and their errors."""
import numpy as np
import pytest

import ember
from ember import layers

from oracles import keras_or_skip

rng = np.random.default_rng(0)
X = (rng.standard_normal((64, 3)) * [1, 10, 100] + [0, 5, -3]).astype(np.float32)


def test_adapt_computes_the_population_statistics():
    norm = layers.Normalization()
    norm.adapt(X)
    np.testing.assert_allclose(norm.mean, X.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.variance, X.astype(np.float64).var(0), rtol=1e-6)
    assert float(norm.count.numpy()) == 64
    out = norm(X)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-4)
    # A model built before adapt() reads the new statistics without a rebuild.
    late = layers.Normalization()
    model = ember.Sequential([ember.Input((3,)), late])
    before = model.predict(X, verbose=0)
    np.testing.assert_array_equal(before, X)  # mean 0, variance 1
    late.adapt(X)
    np.testing.assert_allclose(model.predict(X, verbose=0), out, rtol=1e-6)


def test_axes_invert_and_constant_features():
    seq = rng.standard_normal((10, 4, 3)).astype(np.float32)
    per_feature = layers.Normalization(axis=-1)
    per_feature.adapt(seq)
    np.testing.assert_allclose(per_feature.mean, seq.mean((0, 1)), rtol=1e-5, atol=1e-7)
    per_step = layers.Normalization(axis=(1, 2))
    per_step.adapt(seq)
    assert per_step.mean.shape == (4, 3)
    everything = layers.Normalization(axis=None)
    everything.adapt(seq)
    assert everything.mean.shape == ()
    np.testing.assert_allclose(everything(seq), (seq - seq.mean()) / seq.std(), rtol=1e-4,
                               atol=1e-5)
    inv = layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 9.0, 16.0], invert=True)
    np.testing.assert_allclose(inv(X[:4]), X[:4] * [2, 3, 4] + [1, 2, 3], rtol=1e-6)
    const = layers.Normalization()
    const.adapt(np.ones((5, 2), np.float32))  # variance 0: divided by 1e-7, not NaN
    assert np.isfinite(const(np.full((1, 2), 2.0, np.float32))).all()


def test_rescaling():
    img = rng.integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(layers.Rescaling(1 / 255)(img), img / 255, rtol=1e-6)
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1)(img), img / 127.5 - 1,
                               rtol=1e-5, atol=1e-6)
    per_channel = layers.Rescaling([1.0, 2.0, 3.0], offset=[0.0, 1.0, 2.0])
    np.testing.assert_allclose(per_channel(img), img * [1, 2, 3] + [0, 1, 2], rtol=1e-6)


def test_normalization_in_training_and_files(tmp_path):
    ember.set_random_seed(1)
    norm = layers.Normalization()
    norm.adapt(X)
    model = ember.Sequential([ember.Input((3,)), norm, layers.Dense(4, activation="relu"),
                              layers.Dense(1)])
    y = X[:, :1] / 10 + X[:, 1:2] / 100
    model.compile("adam", "mse")
    model.fit(X, y, epochs=3, verbose=0)
    assert [w.name for w in norm.weights] == ["mean", "variance", "count"]
    assert all(not w.trainable for w in norm.weights)
    np.testing.assert_allclose(norm.mean, X.astype(np.float64).mean(0), rtol=1e-6)  # untouched
    for suffix in (".keras", ".h5"):
        path = str(tmp_path / f"n{suffix}")
        with pytest.warns(UserWarning) if suffix == ".h5" else _nothing():
            model.save(path)
        loaded = ember.saving.load_model(path)
        np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_same_as_keras_both_ways(tmp_path):
    keras = keras_or_skip()
    k = keras.layers.Normalization()
    k.adapt(X)
    km = keras.Sequential([keras.Input((3,)), k, keras.layers.Dense(2),
                           keras.layers.Rescaling(0.5, offset=1.0)])
    kpath = str(tmp_path / "k.keras")
    km.save(kpath)
    e = ember.saving.load_model(kpath)
    np.testing.assert_allclose(e.predict(X, verbose=0), km.predict(X, verbose=0), rtol=1e-5,
                               atol=1e-6)
    assert e.get_config()["layers"][1]["config"]["axis"] == [-1]
    epath = str(tmp_path / "e.keras")
    e.save(epath)
    back = keras.saving.load_model(epath)
    np.testing.assert_allclose(back.predict(X, verbose=0), km.predict(X, verbose=0), rtol=1e-6)
    # One Adam step through the normalization, on shared weights.
    y = rng.standard_normal((64, 2)).astype(np.float32)
    km.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    assert abs(float(km.train_on_batch(X, y)) - float(e.train_on_batch(X, y))) < 1e-4
    for a, b in zip(e.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        layers.Normalization(mean=[1.0])
    with pytest.raises(ValueError, match="non-empty"):
        layers.Normalization().adapt(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="not finite"):
        layers.Normalization().adapt(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="batch axis"):
        layers.Normalization(axis=0)(ember.Input((3,)))
    with pytest.raises(ValueError, match="trailing axes"):
        layers.Normalization(axis=1)(ember.Input((3, 4)))
    with pytest.raises(ValueError, match="were given"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(X)
    with pytest.raises(ValueError, match="finite numbers"):
        layers.Rescaling(np.nan)
