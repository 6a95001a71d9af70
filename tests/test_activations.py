"""Every activation: forward against Keras 3 and a NumPy definition, the derivative
against float64 finite differences, and a Dense layer using it trained against Keras."""
import math

import numpy as np
import pytest

import ember
from ember import _core, activations, layers

# Away from the kinks (0 for relu-like, -3/3 for the hard ones, 6 for relu6).
X = np.array([[-7.1, -3.4, -2.2, -0.9, -0.31, 0.27, 0.8, 1.9, 2.6, 3.7, 5.2, 6.8]])

NUMPY = {
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "exponential": np.exp,
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "gelu_approximate": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                                         (x + 0.044715 * x ** 3))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "log_softmax": lambda x: x - x.max() - np.log(np.exp(x - x.max()).sum(-1, keepdims=True)),
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum(-1, keepdims=True),
}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_forward_and_derivative(name):
    y = _core.activation_forward(X.copy(), name)
    np.testing.assert_allclose(y, NUMPY[name](X), rtol=1e-12, atol=1e-12)
    y32 = _core.activation_forward(X.astype(np.float32), name)
    np.testing.assert_allclose(y32, NUMPY[name](X), rtol=2e-6, atol=1e-6)
    # The derivative of sum(w * f(x)) against central differences, in float64.
    w = np.linspace(-1, 1.5, X.size).reshape(X.shape)
    dx = _core.activation_backward(y, w, name, x=X.copy())
    eps = 1e-6
    num = np.zeros_like(X)
    for i in range(X.size):
        hi, lo = X.copy(), X.copy()
        hi[0, i] += eps
        lo[0, i] -= eps
        # Element-wise activations: only term i moves (summing them all would add the
        # rounding of the largest terms); softmax-like ones couple the row.
        terms = slice(None) if "softmax" in name else (0, i)
        num[0, i] = ((w * _core.activation_forward(hi, name))[terms].sum() -
                     (w * _core.activation_forward(lo, name))[terms].sum()) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["elu", "selu", "softplus", "softsign", "leaky_relu", "relu6",
                                  "hard_sigmoid", "exponential", "gelu", "silu", "swish",
                                  "mish", "hard_silu", "hard_swish", "log_softmax"])
def test_dense_with_activation_matches_keras(name):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    r = np.random.default_rng(3)
    x, y = r.normal(size=(16, 5)).astype(np.float32), r.normal(size=(16, 3)).astype(np.float32)
    k = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation=name),
                          keras.layers.Dense(3)])
    e = ember.Sequential([ember.Input((5,)), layers.Dense(4, activation=name), layers.Dense(3)])
    e.set_weights(k.get_weights())
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=2e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    assert e.layers[0].get_config()["activation"] == \
        {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)


def test_activation_layers_match_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    x = (np.linspace(-3, 3, 24).reshape(4, 6) + 0.01).astype(np.float32)
    for kl, el in ((keras.layers.LeakyReLU(), layers.LeakyReLU()),
                   (keras.layers.LeakyReLU(negative_slope=0.05),
                    layers.LeakyReLU(negative_slope=0.05)),
                   (keras.layers.ELU(alpha=0.5), layers.ELU(alpha=0.5)),
                   (keras.layers.ReLU(max_value=6), layers.ReLU(max_value=6)),
                   (keras.layers.ReLU(negative_slope=0.1), layers.ReLU(negative_slope=0.1)),
                   (keras.layers.Softmax(), layers.Softmax())):
        np.testing.assert_allclose(el(x), np.asarray(kl(x)), rtol=1e-6, atol=1e-7)
        assert {k: v for k, v in el.get_config().items() if k not in ("name", "dtype")} == \
            {k: v for k, v in kl.get_config().items() if k not in ("name", "dtype")}


def test_activation_functions_and_errors():
    assert activations.get("swish") == "silu" and activations.get(activations.gelu) == "gelu"
    np.testing.assert_allclose(activations.leaky_relu(np.array([-2.0]), 0.5), [-1.0])
    with pytest.raises(ValueError, match="Unknown activation: 'sweesh'.*silu"):
        layers.Dense(2, activation="sweesh")
    with pytest.raises(ValueError, match="cannot be None or negative"):
        layers.LeakyReLU(negative_slope=-1)


def test_parametrised_activation_layers_train_like_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    r = np.random.default_rng(4)
    x, y = r.normal(size=(16, 5)).astype(np.float32), r.normal(size=(16, 2)).astype(np.float32)

    def build(K, L):
        return K.Sequential([K.Input((5,)), L.Dense(6), L.ELU(alpha=0.5), L.Dense(6),
                             L.LeakyReLU(negative_slope=0.05), L.Dense(2)])
    k, e = build(keras, keras.layers), build(ember, layers)
    e.set_weights(k.get_weights())
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)


@pytest.mark.parametrize("name,alpha", [("elu", 0.5), ("elu", 2.0), ("leaky_relu", 0.05)])
def test_parameter_reaches_the_derivative(name, alpha):
    y = _core.activation_forward(X.copy(), name, alpha)
    want = np.where(X > 0, X, alpha * (np.expm1(X) if name == "elu" else X))
    np.testing.assert_allclose(y, want, rtol=1e-7)  # alpha travels as float32
    dx = _core.activation_backward(y, np.ones_like(X), name, alpha, X.copy())
    slope = np.where(X > 0, 1.0, alpha * (np.exp(X) if name == "elu" else 1.0))
    np.testing.assert_allclose(dx, slope, rtol=1e-7)


def test_prelu_and_permute_match_keras_through_adam_steps():
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((4, 5, 3)), L.Permute((3, 1, 2)), L.Conv2D(4, 2),
                             L.PReLU(alpha_initializer="random_normal", shared_axes=[1, 2]),
                             L.Flatten(), L.Dense(6), L.PReLU(alpha_initializer="random_normal"),
                             L.Dense(2)])
    k, e = build(keras, keras.layers), build(ember, layers)
    e.set_weights(k.get_weights())
    r = np.random.default_rng(5)
    x = (r.random((8, 4, 5, 3)) - 0.5).astype(np.float32)
    y = r.random((8, 2)).astype(np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    for _ in range(2):
        assert e.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)), rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)
    assert e.layers[2].alpha.shape == (1, 1, 4)
    assert e.layers[0].get_config()["dims"] == (3, 1, 2)


def test_prelu_alpha_gradient_against_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((3, 2)), layers.PReLU(alpha_initializer="ones",
                                                            shared_axes=[1])])
    m.layers[0].alpha.assign([[0.3, -0.2]])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    r = np.random.default_rng(6)
    x, y = r.normal(size=(5, 3, 2)), r.normal(size=(5, 3, 2))
    a = m.layers[0].alpha.numpy().astype(np.float64)
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))

    def loss():
        return ((np.where(x > 0, x, a * x) - y) ** 2).mean()
    assert_close(a - m.layers[0].alpha.numpy(), numeric_grad(loss, a), tol=1e-6, what="alpha")
    with pytest.raises(ValueError, match="permutation"):
        layers.Permute((1, 3))
