"""kernel_regularizer / bias_regularizer: the penalty joins the reported loss (training and
evaluation) and its gradient the update, as in Keras; configs; bad input."""
import numpy as np
import pytest

import ember
from ember import layers, regularizers

R = np.random.default_rng(9)


def build(K, L, reg):
    return K.Sequential([K.Input((6, 6, 2)),
                         L.Conv2D(4, 3, kernel_regularizer=reg.l2(1e-2),
                                  bias_regularizer=reg.l1(0.05)),
                         L.Flatten(),
                         L.Dense(3, kernel_regularizer=reg.L1L2(l1=0.01, l2=0.02))])


def test_matches_keras_through_adam_steps_and_evaluate():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k = build(keras, keras.layers, keras.regularizers)
    e = build(ember, layers, regularizers)
    e.set_weights(k.get_weights())
    x, y = R.random((8, 6, 6, 2), dtype=np.float32), R.random((8, 3), dtype=np.float32)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(3):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    assert e.evaluate(x, y, verbose=0) == pytest.approx(k.evaluate(x, y, verbose=0), rel=1e-5)
    assert sum(e.losses) == pytest.approx(sum(float(v) for v in k.losses), rel=1e-5)
    for i in (0, 2):  # (Keras's L1 reports its factor rounded to float32)
        for key in ("kernel_regularizer", "bias_regularizer"):
            got, want = e.layers[i].get_config()[key], k.layers[i].get_config()[key]
            assert (got is None) == (want is None)
            if got is not None:
                assert got["class_name"] == want["class_name"]
                assert got["config"] == pytest.approx(want["config"], rel=1e-7)


def test_reported_loss_is_the_mean_loss_plus_the_penalty():
    m = ember.Sequential([ember.Input((4,)), layers.Dense(2, kernel_regularizer="l2")])
    m.compile(ember.optimizers.SGD(0.0), "mse")
    x, y = R.normal(size=(10, 4)).astype(np.float32), R.normal(size=(10, 2)).astype(np.float32)
    w = m.layers[0].kernel.numpy().astype(np.float64)
    mse = ((x @ w - y) ** 2).mean()
    penalty = 0.01 * (w ** 2).sum()
    assert m.evaluate(x, y, verbose=0, batch_size=3) == pytest.approx(mse + penalty, rel=1e-5)
    assert m.train_on_batch(x, y) == pytest.approx(mse + penalty, rel=1e-5)
    # SGD at lr 1 with a zero-loss target moves the kernel by the penalty's gradient alone.
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(x, m.predict(x, verbose=0))
    np.testing.assert_allclose(m.layers[0].kernel.numpy(), w - 0.02 * w, rtol=1e-5)
    m.layers[0].trainable = False  # Keras counts trainable weights only
    assert m.losses == []


def test_configs_and_bad_input():
    reg = regularizers.get({"module": "keras.regularizers", "class_name": "L1L2",
                            "config": {"l1": 0.5, "l2": 0.25}, "registered_name": None})
    assert isinstance(reg, regularizers.L1L2) and (reg.l1, reg.l2) == (0.5, 0.25)
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    d = layers.Dense(3, kernel_regularizer=regularizers.l2(0.1))
    again = layers.Dense.from_config(d.get_config())
    assert again.kernel_regularizer.get_config() == {"l2": 0.1}
    with pytest.raises(ValueError, match="must be a non-negative number. Received: l2=-1"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: 'l3'"):
        layers.Dense(3, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: 'l3'"):
        layers.Dense(3, activity_regularizer="l3")


def test_activity_regularization_against_a_float64_reference():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, 5)).astype(np.float32)
    y = rng.standard_normal((12, 2)).astype(np.float32)
    ember.set_random_seed(3)
    m = ember.Sequential([ember.Input((5,)),
                          ember.layers.Dense(4, activity_regularizer=ember.regularizers.L1L2(
                              0.01, 0.02)),
                          ember.layers.ActivityRegularization(l2=0.05), ember.layers.Dense(2)])
    w1, b1, w2, b2 = (w.astype(np.float64) for w in m.get_weights())

    def loss(w1_):
        h = x @ w1_ + b1
        pen = (0.01 * np.abs(h).sum() + 0.02 * (h ** 2).sum() + 0.05 * (h ** 2).sum()) / len(x)
        return np.mean(np.mean((h @ w2 + b2 - y) ** 2, axis=1)) + pen
    m.compile(ember.optimizers.SGD(1.0), "mse")
    assert m.evaluate(x, y, verbose=0) == pytest.approx(loss(w1), rel=1e-5)
    m.train_on_batch(x, y)
    grad = w1 - m.get_weights()[0]
    num = np.zeros_like(w1)
    for i in np.ndindex(w1.shape):
        d = np.zeros_like(w1)
        d[i] = 1e-6
        num[i] = (loss(w1 + d) - loss(w1 - d)) / 2e-6
    np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-5)
    assert m.layers[0].get_config()["activity_regularizer"]["config"] == {"l1": 0.01,
                                                                          "l2": 0.02}
    with pytest.raises(ValueError, match="non-negative"):
        ember.layers.ActivityRegularization(l1=-1.0)


def test_activity_regularization_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)

    def build(K):
        return K.Sequential([K.Input((5,)), K.layers.Dense(
            4, activation="relu", activity_regularizer=K.regularizers.L1L2(0.01, 0.02)),
            K.layers.ActivityRegularization(l1=0.0, l2=0.05), K.layers.Dense(2)])
    k, e = build(keras), build(ember)
    e.set_weights(k.get_weights())
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    assert e.evaluate(x, y, verbose=0) == pytest.approx(k.evaluate(x, y, verbose=0), rel=1e-5)
    assert float(e.train_on_batch(x, y)) == pytest.approx(float(k.train_on_batch(x, y)),
                                                          rel=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
