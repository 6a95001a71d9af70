"""Layer options built from the core's op nodes: ReLU's threshold and max_value,
Softmax over any axis, BatchNormalization over a channel axis other than the last.
Checked against NumPy, by finite differences through a training step, and against
Keras 3 (outputs and an Adam step)."""
import numpy as np
import pytest

import ember
from ember import layers

from oracles import keras_or_skip

rng = np.random.default_rng(0)


def keras_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Keras's activations.relu, term by term, in NumPy."""
    neg = np.maximum(threshold - x, 0) if negative_slope else 0
    y = x * (x > threshold) if threshold else np.maximum(x, 0)
    if max_value is not None:
        y = np.clip(y, 0, max_value)
    return y - negative_slope * neg


RELUS = [dict(max_value=6.0), dict(max_value=2.5), dict(threshold=0.3),
         dict(negative_slope=0.1, threshold=-0.2), dict(max_value=1.0, negative_slope=0.2),
         dict(max_value=3.0, negative_slope=0.05, threshold=0.5)]


@pytest.mark.parametrize("kw", RELUS, ids=[str(k) for k in RELUS])
def test_relu_options(kw):
    x = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    np.testing.assert_allclose(layers.ReLU(**kw)(x), keras_relu(x, **kw), rtol=1e-6, atol=1e-6)


def test_softmax_over_other_axes():
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    for axis in (1, -2, 2, -1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        np.testing.assert_allclose(layers.Softmax(axis=axis)(x), e / e.sum(axis, keepdims=True),
                                   rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="batch axis"):
        layers.Softmax(axis=0)(ember.Input((3, 5)))


def test_batchnorm_channels_first():
    x = (rng.standard_normal((8, 3, 4, 4)) * 2 + 1).astype(np.float32)
    bn = layers.BatchNormalization(axis=1)
    model = ember.Sequential([ember.Input((3, 4, 4)), bn])
    model.compile("sgd", "mse")
    model.train_on_batch(x, np.zeros_like(x))
    mean = x.mean((0, 2, 3))
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * mean, rtol=1e-4, atol=1e-6)
    bn.moving_mean.assign(mean)
    bn.moving_variance.assign(x.var((0, 2, 3)))
    gamma, beta = bn.gamma.numpy()[:, None, None], bn.beta.numpy()[:, None, None]
    want = (x - mean[:, None, None]) / np.sqrt(x.var((0, 2, 3))[:, None, None] + 1e-3) * \
        gamma + beta
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)


def _keras_pair(keras, build):
    k = keras.Sequential(build(keras))
    e = ember.Sequential(build(ember))
    e.set_weights(k.get_weights())
    return k, e


@pytest.mark.parametrize("case", ["relu", "softmax", "bn"])
def test_same_as_keras(case):
    keras = keras_or_skip()
    if case == "relu":
        shape = (6,)
        def build(K):  # noqa: E306
            return [K.Input(shape), K.layers.Dense(8),
                    K.layers.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2),
                    K.layers.Dense(2)]
    elif case == "softmax":
        shape = (3, 4)
        def build(K):  # noqa: E306
            # No bias before it: softmax over axis 1 cancels a bias shared along it,
            # whose gradient is then rounding noise that Adam would amplify.
            return [K.Input(shape), K.layers.Dense(5, use_bias=False), K.layers.Softmax(axis=1),
                    K.layers.Flatten(), K.layers.Dense(2)]
    else:
        shape = (3, 5)
        def build(K):  # noqa: E306
            return [K.Input(shape), K.layers.BatchNormalization(axis=1), K.layers.Flatten(),
                    K.layers.Dense(2)]
    k, e = _keras_pair(keras, build)
    x = rng.standard_normal((16,) + shape).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    assert abs(float(k.train_on_batch(x, y)) - float(e.train_on_batch(x, y))) < 1e-5
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
