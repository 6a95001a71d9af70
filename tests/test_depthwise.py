"""DepthwiseConv2D and SeparableConv2D: against Keras (outputs, Adam steps, configs),
float64 finite differences, thread-count bits."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(12)


@pytest.mark.parametrize("padding,stride,dm", [("same", 1, 1), ("valid", 2, 2), ("same", 2, 3)])
def test_matches_keras(padding, stride, dm):
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((7, 6, 3)),
                             L.DepthwiseConv2D(3, strides=stride, padding=padding,
                                               depth_multiplier=dm, activation="relu"),
                             L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2),
                             L.Flatten(), L.Dense(2)])
    k, e = build(keras, keras.layers), build(ember, layers)
    e.set_weights(k.get_weights())
    x, y = R.random((8, 7, 6, 3), dtype=np.float32), R.random((8, 2), dtype=np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    # (this Keras's GlorotUniform config has extra keys: initializers are compared by class)
    strip = lambda c: {a: (b["class_name"] if a.endswith("_initializer") else b)  # noqa: E731
                       for a, b in c.items() if a not in ("name", "dtype")}
    for i in (0, 1):
        assert strip(e.layers[i].get_config()) == strip(k.layers[i].get_config())


def depthwise_ref(x, w, b, stride):
    """'valid' depthwise convolution in float64."""
    n, h, wd, c = x.shape
    kh, kw, _, dm = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    y = np.zeros((n, oh, ow, c * dm))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            y[:, i, j, :] = np.einsum("nabc,abcm->ncm", patch, w).reshape(n, -1)
    return y + b


def test_gradients_match_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((5,)), layers.Dense(5 * 5 * 2), layers.Reshape((5, 5, 2)),
                          layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    x = R.normal(size=(3, 5))
    y = R.normal(size=(3,) + m.output_shape[1:])
    w = [v.astype(np.float64) for v in m.get_weights()]

    def loss():
        h = (x @ w[0] + w[1]).reshape(3, 5, 5, 2)
        return ((depthwise_ref(h, w[2], w[3], 2) - y) ** 2).mean()
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        assert_close(w[k] - after, numeric_grad(loss, w[k]), tol=2e-5, what=f"weight {k}")


def test_bits_do_not_depend_on_the_thread_count():
    x = R.random((64, 12, 12, 8), dtype=np.float32)
    y = R.random((64, 2), dtype=np.float32)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.set_random_seed(4)
        m = ember.Sequential([ember.Input((12, 12, 8)),
                              layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
                              layers.SeparableConv2D(8, 3, strides=1), layers.Flatten(),
                              layers.Dense(2)])
        m.compile("adam", "mse")
        m.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth_multiplier must be a positive integer"):
        layers.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="filters"):
        layers.SeparableConv2D(0, 3)
    with pytest.raises(ValueError, match="zero or negative"):
        ember.Sequential([ember.Input((2, 2, 1)), layers.DepthwiseConv2D(3)])
