"""BatchNormalization: Keras parity (training and inference, frozen), gradients against
float64 finite differences, thread-count bits, config and bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(2)


def cnn(K, L, frozen=False):
    bn = L.BatchNormalization()
    m = K.Sequential([K.Input((6, 6, 3)), L.Conv2D(4, 3, use_bias=False), bn,
                      L.Activation("relu"), L.Flatten(), L.Dense(5, use_bias=False),
                      L.BatchNormalization(momentum=0.9, epsilon=1e-2),
                      L.Dense(2, activation="softmax")])
    bn.trainable = not frozen
    return m


@pytest.mark.parametrize("frozen", [False, True])
def test_matches_keras_through_adam_steps(frozen):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k, e = cnn(keras, keras.layers, frozen), cnn(ember, layers, frozen)
    e.set_weights(k.get_weights())
    x = R.random((16, 6, 6, 3), dtype=np.float32)
    y = R.integers(0, 2, 16)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    e.compile(ember.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for w, p, q in zip(e.weights, e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5, err_msg=w.path)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-5)
    if frozen:  # inference mode inside the step: the moving statistics stay put
        bn = e.layers[1]
        np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(4, np.float32))
        np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(4, np.float32))


def reference_loss(w, x, y, eps):
    """Dense(4, no bias) -> BatchNormalization (training) -> Dense(3) -> MSE, float64."""
    h = x @ w[0]
    mean, var = h.mean(0), h.var(0)
    h = (h - mean) / np.sqrt(var + eps) * w[1] + w[2]
    return ((h @ w[5] + w[6] - y) ** 2).mean()


def test_gradients_match_float64_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((5,)), layers.Dense(4, use_bias=False),
                          layers.BatchNormalization(epsilon=0.1), layers.Dense(3)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.layers[1].gamma.assign(R.normal(size=4) + 1)
    m.layers[1].beta.assign(R.normal(size=4))
    x, y = R.normal(size=(9, 5)), R.normal(size=(9, 3))
    w = [v.astype(np.float64) for v in m.get_weights()]
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    after = m.get_weights()
    for k in (0, 1, 2, 5, 6):  # the trainable ones (3, 4: moving statistics)
        num = numeric_grad(lambda: reference_loss(w, x, y, 0.1), w[k])
        assert_close(w[k] - after[k], num, tol=5e-5, what=f"weight {k}")
    # The moving statistics took one step toward the batch's.
    h = x.astype(np.float32) @ w[0].astype(np.float32)
    np.testing.assert_allclose(after[3], 0.01 * h.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(after[4], 0.99 + 0.01 * h.var(0), rtol=1e-5)


def test_bits_do_not_depend_on_the_thread_count():
    x = R.random((64, 8, 8, 3), dtype=np.float32)
    y = R.integers(0, 3, 64)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.set_random_seed(1)
        m = ember.Sequential([ember.Input((8, 8, 3)), layers.Conv2D(16, 3, padding="same"),
                              layers.BatchNormalization(), layers.Activation("relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
        m.compile("adam", ember.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_inference_uses_the_moving_statistics():
    bn = layers.BatchNormalization(center=False, scale=False)
    m = ember.Sequential([ember.Input((3,)), bn])
    bn.moving_mean.assign([1.0, 2.0, 3.0])
    bn.moving_variance.assign([4.0, 1.0, 0.25])
    x = R.normal(size=(4, 3)).astype(np.float32)
    want = (x - [1, 2, 3]) / np.sqrt(np.array([4.0, 1.0, 0.25]) + 1e-3)
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-5)
    assert [w.name for w in bn.weights] == ["moving_mean", "moving_variance"]


def conv_bn_model(block_fold, act, bias):
    """Conv2D > BatchNormalization (> act), twice, then a head. With block_fold a
    Dropout(0.0) sits between each convolution and its BatchNormalization: an identity,
    but the convolution's output is then not the BatchNormalization's input."""
    ember.utils.set_random_seed(6)
    L = layers
    i = ember.Input((9, 9, 3))
    x = i
    for filters, strides in ((8, 1), (12, 2)):
        x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=bias)(x)
        if block_fold:
            x = L.Dropout(0.0)(x)
        x = L.BatchNormalization()(x)
        if act:
            x = L.Activation(act)(x)
    x = L.GlobalAveragePooling2D()(x)
    m = ember.Model(i, L.Dense(3)(x))
    m.compile("adam", "mse")
    return m


@pytest.mark.parametrize("act,bias", [("relu", False), (None, True), ("tanh", False)])
def test_batchnorm_folded_into_the_convolution_gives_the_same_bits(act, bias):
    x = R.normal(size=(70, 9, 9, 3)).astype(np.float32)
    y = R.normal(size=(70, 3)).astype(np.float32)
    folded, plain = conv_bn_model(False, act, bias), conv_bn_model(True, act, bias)
    plain.set_weights(folded.get_weights())
    for m in (folded, plain):
        m.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)  # moving stats move
    assert sum("batch normalization" in f for f in folded._graph.fusions) == (
        2 if act != "tanh" else 0)
    assert not any("batch normalization" in f for f in plain._graph.fusions)
    for a, b in zip(folded.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    for batch in (1, 3, 70):
        np.testing.assert_array_equal(folded.predict(x[:batch], verbose=0),
                                      plain.predict(x[:batch], verbose=0))
    np.testing.assert_array_equal(folded.evaluate(x, y, verbose=0),
                                  plain.evaluate(x, y, verbose=0))
    # and the folded model still trains (its BatchNormalization runs in training)
    before = folded.evaluate(x, y, verbose=0)
    folded.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert folded.evaluate(x, y, verbose=0) < before


def dense_bn_model(block_fold, act):
    """An MLP of Dense > BatchNormalization (> act) blocks (a chain of Dense layers at
    batch 1 once the normalizations fold); block_fold as in conv_bn_model."""
    ember.utils.set_random_seed(7)
    L = layers
    i = ember.Input((12,))
    x = i
    for units in (16, 8):
        x = L.Dense(units)(x)
        if block_fold:
            x = L.Dropout(0.0)(x)
        x = L.BatchNormalization()(x)
        if act:
            x = L.Activation(act)(x)
    m = ember.Model(i, L.Dense(3)(x))
    m.compile("adam", "mse")
    return m


@pytest.mark.parametrize("act", ["relu", None])
def test_batchnorm_folded_into_dense_gives_the_same_bits(act):
    x = R.normal(size=(50, 12)).astype(np.float32)
    y = R.normal(size=(50, 3)).astype(np.float32)
    folded, plain = dense_bn_model(False, act), dense_bn_model(True, act)
    plain.set_weights(folded.get_weights())
    for m in (folded, plain):
        m.fit(x, y, batch_size=10, epochs=2, verbose=0, shuffle=False)
    fusions = folded._graph.fusions
    assert sum("batch normalization" in f for f in fusions) == 2
    assert any("dense chain of 3" in f for f in fusions)  # through the folded ones
    for a, b in zip(folded.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    for batch in (1, 4, 50):
        np.testing.assert_array_equal(folded.predict(x[:batch], verbose=0),
                                      plain.predict(x[:batch], verbose=0))


@pytest.mark.parametrize("model", [conv_bn_model, dense_bn_model])
def test_a_tape_outside_training_applies_a_folded_batchnorm_once(model):
    m = model(False, "relu") if model is dense_bn_model else model(False, "relu", True)
    shape = (6, 12) if model is dense_bn_model else (6, 9, 9, 3)
    x = R.normal(size=shape).astype(np.float32)
    m.fit(x, R.normal(size=(6, 3)).astype(np.float32), epochs=2, verbose=0)
    with ember.GradientTape():
        taped = m(x, training=False)
    np.testing.assert_array_equal(np.asarray(taped), m.predict(x, verbose=0))


def test_config_round_trip_and_bad_arguments():
    bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-4, center=False)
    clone = layers.BatchNormalization.from_config(bn.get_config())
    assert clone.get_config() == {**bn.get_config(), "name": clone.name}
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\]. Received: momentum=1.5"):
        layers.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be positive"):
        layers.BatchNormalization(epsilon=-1)
    with pytest.raises(ValueError, match="gamma_regularizer is not supported"):
        layers.BatchNormalization(gamma_regularizer="l2")
    with pytest.raises(ValueError, match="batch axis or out of range"):
        ember.Sequential([ember.Input((4, 4, 2)), layers.BatchNormalization(axis=0)])
    with pytest.raises(ValueError, match="batch axis or out of range"):
        ember.Sequential([ember.Input((4, 4, 2)), layers.BatchNormalization(axis=4)])


def test_layer_normalization_matches_keras_on_sequences():
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((5, 6)), L.Dense(8), L.LayerNormalization(),
                             L.Dense(4, activation="relu"),
                             L.LayerNormalization(epsilon=1e-5, center=False),
                             L.Flatten(), L.Dense(2)])
    k, e = build(keras, keras.layers), build(ember, layers)
    e.set_weights(k.get_weights())
    x = R.normal(size=(12, 5, 6)).astype(np.float32)
    y = R.normal(size=(12, 2)).astype(np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for w, p, q in zip(e.weights, e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5, err_msg=w.path)
    assert e.layers[1].get_config()["axis"] == k.layers[1].get_config()["axis"]


def layer_norm_loss(w, x, y, eps):
    h = x @ w[0]
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) / np.sqrt(var + eps) * w[1] + w[2]
    return ((h @ w[3] + w[4] - y) ** 2).mean()


def test_layer_normalization_gradients_match_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((5,)), layers.Dense(4, use_bias=False),
                          layers.LayerNormalization(epsilon=0.1), layers.Dense(3)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.layers[1].gamma.assign(R.normal(size=4) + 1)
    m.layers[1].beta.assign(R.normal(size=4))
    x, y = R.normal(size=(7, 5)), R.normal(size=(7, 3))
    w = [v.astype(np.float64) for v in m.get_weights()]
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        num = numeric_grad(lambda: layer_norm_loss(w, x, y, 0.1), w[k])
        assert_close(w[k] - after, num, tol=5e-5, what=f"weight {k}")


def test_group_normalization_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((4, 4, 6)), L.Conv2D(8, 3, padding="same"),
                             L.GroupNormalization(groups=4, gamma_initializer="random_normal",
                                                  beta_initializer="random_normal"),
                             L.Activation("relu"), L.GlobalAveragePooling2D(), L.Dense(2)])
    k, e = build(keras, keras.layers), build(ember, layers)
    e.set_weights(k.get_weights())
    x, y = R.random((8, 4, 4, 6), dtype=np.float32), R.random((8, 2), dtype=np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    strip = lambda c: {a: b for a, b in c.items() if a not in ("name", "dtype")}  # noqa: E731
    assert strip(e.layers[1].get_config()) == strip(k.layers[1].get_config())


def group_norm_loss(w, x, y, groups, eps):
    n, p, c = x.shape[0], x.shape[1], w[0].shape[1]
    h = (x @ w[0]).reshape(n, p, groups, c // groups)
    mean, var = h.mean((1, 3), keepdims=True), h.var((1, 3), keepdims=True)
    h = ((h - mean) / np.sqrt(var + eps)).reshape(n, p, c) * w[1] + w[2]
    return ((h - y) ** 2).mean()


def test_group_normalization_gradients_match_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((3, 4)), layers.Dense(6, use_bias=False),
                          layers.GroupNormalization(groups=2, epsilon=0.1)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.layers[1].gamma.assign(R.normal(size=6) + 1)
    m.layers[1].beta.assign(R.normal(size=6))
    x, y = R.normal(size=(5, 3, 4)), R.normal(size=(5, 3, 6))
    w = [v.astype(np.float64) for v in m.get_weights()]
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        num = numeric_grad(lambda: group_norm_loss(w, x, y, 2, 0.1), w[k])
        assert_close(w[k] - after, num, tol=5e-5, what=f"weight {k}")
    with pytest.raises(ValueError, match="multiple of the number of channels"):
        ember.Sequential([ember.Input((3, 5)), layers.GroupNormalization(groups=2)])
