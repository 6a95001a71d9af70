"""kernel_constraint / bias_constraint: applied after each update as Keras applies them;
the NumPy forms; configs; bad input."""
import numpy as np
import pytest

import ember
from ember import constraints, layers

R = np.random.default_rng(10)


def build(K, L, C):
    return K.Sequential([K.Input((5, 5, 2)),
                         L.Conv2D(3, 3, kernel_constraint=C.UnitNorm(axis=[0, 1, 2]),
                                  bias_constraint=C.NonNeg()),
                         L.Flatten(),
                         L.Dense(4, kernel_constraint=C.MaxNorm(0.5),
                                 bias_constraint=C.MinMaxNorm(0.1, 0.2, rate=0.5)),
                         L.Dense(2)])


def test_matches_keras_through_adam_steps():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    keras.utils.set_random_seed(0)
    k = build(keras, keras.layers, keras.constraints)
    e = build(ember, layers, constraints)
    e.set_weights(k.get_weights())
    x, y = R.random((8, 5, 5, 2), dtype=np.float32), R.random((8, 2), dtype=np.float32)
    k.compile(keras.optimizers.Adam(0.02), "mse")
    e.compile(ember.optimizers.Adam(0.02), "mse")
    for _ in range(3):  # (the loss falls to ~0.09: rounding shows at 1e-5 of it)
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-4)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    for i in (0, 2):
        for key in ("kernel_constraint", "bias_constraint"):
            assert e.layers[i].get_config()[key] == k.layers[i].get_config()[key]


def test_each_rule_holds_after_a_step_and_matches_its_numpy_form():
    m = ember.Sequential([ember.Input((6,)),
                          layers.Dense(5, kernel_constraint="max_norm", bias_constraint="non_neg"),
                          layers.Dense(3, kernel_constraint=constraints.unit_norm())])
    m.compile(ember.optimizers.SGD(5.0), "mse")
    x, y = R.normal(size=(16, 6)).astype(np.float32), R.normal(size=(16, 3)).astype(np.float32)
    for _ in range(3):
        m.train_on_batch(x, y)
    k0, b0, k1, _ = m.get_weights()
    assert np.linalg.norm(k0, axis=0).max() <= 2 + 1e-5
    assert (b0 >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(k1, axis=0), 1, rtol=1e-5)
    w = R.normal(size=(4, 3)) * 3  # every column's norm above 1
    np.testing.assert_allclose(np.linalg.norm(constraints.MaxNorm(1.0)(w), axis=0), 1,
                               rtol=1e-6)


def test_configs_and_bad_input():
    c = constraints.get({"module": "keras.constraints", "class_name": "MinMaxNorm",
                         "config": {"min_value": 0.5, "max_value": 2.0, "rate": 0.5, "axis": 0},
                         "registered_name": None})
    assert c.get_config() == {"min_value": 0.5, "max_value": 2.0, "rate": 0.5, "axis": 0}
    with pytest.raises(ValueError, match="leading axes"):
        ember.Sequential([ember.Input((4,)), layers.Dense(3, kernel_constraint=constraints.
                                                          MaxNorm(axis=1))])
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'pos'"):
        layers.Dense(3, kernel_constraint="pos")
    with pytest.raises(ValueError, match="min_value must not exceed max_value"):
        constraints.MinMaxNorm(2.0, 1.0)


def test_columns_inside_the_bound_are_left_alone():
    # A zero learning rate: only the constraints act, after the (null) update.
    m = ember.Sequential([ember.Input((6,)),
                          layers.Dense(5, kernel_constraint=constraints.MaxNorm(50.0)),
                          layers.Dense(3, kernel_constraint=constraints.MinMaxNorm(0.0, 50.0))])
    m.compile(ember.optimizers.SGD(0.0), "mse")
    before = m.get_weights()
    m.train_on_batch(R.normal(size=(4, 6)).astype(np.float32),
                     R.normal(size=(4, 3)).astype(np.float32))
    for p, q in zip(before, m.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-6)
    w = R.normal(size=(4, 3)) * 0.1  # every norm inside (0, 1): MaxNorm(1) keeps it
    np.testing.assert_allclose(constraints.MaxNorm(1.0)(w), w, rtol=1e-6)
