"""ember.ops and custom layers: each op's forward and backward in the core against a
float64 NumPy reference (gradients by central differences), custom layers in every way
of building a model, Keras 3 parity, and the errors bad code gets."""
import numpy as np
import pytest

import ember
from ember import layers, ops

from oracles import keras_or_skip


def _softmax(v, axis=-1):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp(v, axis=None, keepdims=False):
    m = v.max(axis=axis, keepdims=True)
    r = np.log(np.exp(v - m).sum(axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


def _gelu_tanh(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


class N:
    """The ops as float64 NumPy, for the reference."""
    exp, log, sqrt, square, abs, sign = np.exp, np.log, np.sqrt, np.square, np.abs, np.sign
    log1p, expm1, sin, cos, negative = np.log1p, np.expm1, np.sin, np.cos, np.negative
    add, subtract, multiply, divide, power = np.add, np.subtract, np.multiply, np.divide, np.power
    maximum, minimum, clip, matmul, einsum = np.maximum, np.minimum, np.clip, np.matmul, np.einsum
    reshape, transpose, expand_dims, squeeze = np.reshape, np.transpose, np.expand_dims, np.squeeze
    concatenate, stack, split, tile, swapaxes = np.concatenate, np.stack, np.split, np.tile, \
        np.swapaxes
    sum, mean, max, min = np.sum, np.mean, np.max, np.min
    greater = staticmethod(lambda a, b: (a > b).astype(np.float64))
    where = staticmethod(lambda c, a, b: np.where(c != 0, a, b))
    take = staticmethod(lambda v, i, axis: np.take(v, i, axis=axis))
    relu = staticmethod(lambda v: np.maximum(v, 0))
    sigmoid = staticmethod(lambda v: 1 / (1 + np.exp(-v)))
    tanh = np.tanh
    softmax = staticmethod(_softmax)
    log_softmax = staticmethod(lambda v, axis=-1: v - _logsumexp(v, axis, True))
    logsumexp = staticmethod(_logsumexp)
    norm = staticmethod(lambda v, axis=None, keepdims=False:
                        np.sqrt(np.sum(v * v, axis=axis, keepdims=keepdims)))
    elu = staticmethod(lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))))
    silu = staticmethod(lambda v: v / (1 + np.exp(-v)))
    softplus = staticmethod(lambda v: np.log1p(np.exp(v)))
    leaky_relu = staticmethod(lambda v, negative_slope=0.2: np.where(v > 0, v,
                                                                     negative_slope * v))
    gelu = staticmethod(_gelu_tanh)


# (name, per-sample x shape, weight shape, fn(m, x, w)); x is drawn in [0.5, 1.5) and w
# in [-0.25, 0.25), so that h = x + w stays in the domain of log, sqrt and 1 / h.
def H(m, x, w):
    return x + w


CASES = [
    ("exp", (5,), (5,), lambda m, x, w: m.exp(H(m, x, w))),
    ("log", (5,), (5,), lambda m, x, w: m.log(H(m, x, w))),
    ("sqrt", (5,), (5,), lambda m, x, w: m.sqrt(H(m, x, w))),
    ("square", (5,), (5,), lambda m, x, w: m.square(x - w)),
    ("abs", (5,), (5,), lambda m, x, w: m.abs(x * 2.0 - w - 1.0)),
    ("clip", (6,), (6,), lambda m, x, w: m.clip(H(m, x, w), 0.8, 1.2)),
    ("pow", (5,), (5,), lambda m, x, w: H(m, x, w) ** 3),
    ("rdiv", (5,), (5,), lambda m, x, w: 2.0 / H(m, x, w)),
    ("affine", (5,), (5,), lambda m, x, w: 3.0 - H(m, x, w) / 4.0),
    ("log1p", (5,), (5,), lambda m, x, w: m.log1p(H(m, x, w))),
    ("expm1", (5,), (5,), lambda m, x, w: m.expm1(H(m, x, w))),
    ("sin_cos", (5,), (5,), lambda m, x, w: m.sin(H(m, x, w)) * m.cos(x * w)),
    ("negative", (5,), (5,), lambda m, x, w: m.negative(x * w)),
    ("multiply_var_broadcast", (4, 3), (3,), lambda m, x, w: x * w),
    ("add_var_column", (4, 3), (4, 1), lambda m, x, w: m.square(x + w)),
    ("divide_var", (4, 3), (4, 3), lambda m, x, w: (x - 1.0) / w),
    ("power_var", (2, 3), (3,), lambda m, x, w: m.power(x, w)),
    ("tensor_broadcast", (4, 3), (4, 3),
     lambda m, x, w: H(m, x, w) / m.sum(H(m, x, w), axis=-1, keepdims=True)),
    ("subtract_broadcast", (4, 3), (4, 3),
     lambda m, x, w: m.square(H(m, x, w) - m.mean(H(m, x, w) * x, axis=1, keepdims=True))),
    ("maximum", (6,), (6,), lambda m, x, w: m.maximum(x * w, x - 1.0)),
    ("minimum", (6,), (6,), lambda m, x, w: m.minimum(x * w, 0.1 * x)),
    ("power_tensors", (4,), (4,), lambda m, x, w: m.power(H(m, x, w), x * w)),
    ("where", (6,), (6,), lambda m, x, w: m.where(m.greater(x * w, 0.0), x * w, x * w * 0.1)),
    ("sum", (3, 4), (3, 4), lambda m, x, w: m.sum(x * w, axis=-1)),
    ("mean_axes", (2, 3, 4), (2, 3, 4), lambda m, x, w: m.mean(x * w, axis=(1, 3))),
    ("max", (3, 4), (3, 4), lambda m, x, w: m.max(x * w, axis=1)),
    ("min_keepdims", (3, 4), (3, 4), lambda m, x, w: m.min(x * w, axis=2, keepdims=True)),
    ("logsumexp", (3, 4), (3, 4), lambda m, x, w: m.logsumexp(x * w, axis=-1)),
    ("norm", (3, 4), (3, 4), lambda m, x, w: m.norm(x * w, axis=-1)),
    ("transpose", (2, 3, 4), (2, 3, 4),
     lambda m, x, w: m.transpose(x * w, (0, 3, 1, 2)) * np.arange(24.0).reshape(4, 2, 3)),
    ("reshape", (3, 4), (3, 4), lambda m, x, w: m.reshape(x * w, (-1, 2, 6)) * np.arange(12.0).reshape(2, 6)),
    ("expand_squeeze", (3, 4), (3, 4),
     lambda m, x, w: m.squeeze(m.expand_dims(x * w, 1), 1) * np.arange(12.0).reshape(3, 4)),
    ("concatenate", (3, 2), (3, 2), lambda m, x, w: m.concatenate([x * w, m.square(w + x)], axis=-1)),
    ("stack", (3, 2), (3, 2), lambda m, x, w: m.stack([x * w, m.exp(w * x)], axis=1)),
    ("split", (3, 4), (3, 4), lambda m, x, w: m.split(x * w, 2, axis=-1)[1] * 3.0),
    ("tile", (2, 3), (2, 3), lambda m, x, w: m.tile(x * w, (1, 2, 2)) * np.arange(24.0).reshape(4, 6)),
    ("take", (5, 2), (5, 2), lambda m, x, w: m.take(x * w, [4, 0, 4, 1], axis=1)),
    ("getitem", (4, 5), (4, 5), lambda m, x, w: (x * w)[:, 1:3, ::2] * 2.0 + (x * w)[:, 1:3, 0:1]),
    ("matmul_weight", (3, 4), (4, 2), lambda m, x, w: m.matmul(x, w)),
    ("matmul_tensors", (3, 4), (3, 4),
     lambda m, x, w: m.matmul(x * w, m.swapaxes(m.exp(x * w), -1, -2))),
    ("einsum", (3, 4), (3, 4), lambda m, x, w: m.einsum("bij,bkj->bik", x * w, x + w)),
    ("einsum_heads", (4, 2, 3), (4, 2, 3),
     lambda m, x, w: m.einsum("bqhd,bkhd->bhqk", x * w, x + w)),
    ("einsum_outer", (2, 3), (2, 3), lambda m, x, w: m.einsum("bij,bik->bjk", x * w, m.exp(x * w))),
    ("einsum_three", (4,), (4,),
     lambda m, x, w: m.einsum("bi,bi,bj->bij", x * w, x + w, m.square(x))),
    ("einsum_reduce", (2, 3, 4), (2, 3, 4), lambda m, x, w: m.einsum("bijk->bkj", x * w)),
    ("relu", (6,), (6,), lambda m, x, w: m.relu(x * w)),
    ("sigmoid_tanh", (6,), (6,), lambda m, x, w: m.sigmoid(x * w) * m.tanh(x + w)),
    ("softmax", (3, 4), (3, 4), lambda m, x, w: m.softmax(x * w * 4.0)),
    ("softmax_axis1", (3, 4), (3, 4), lambda m, x, w: m.softmax(x * w * 4.0, axis=1)),
    ("log_softmax", (3, 4), (3, 4), lambda m, x, w: m.log_softmax(x * w * 4.0)),
    ("elu_silu", (6,), (6,), lambda m, x, w: m.elu(x * w) + m.silu(x + w)),
    ("softplus_gelu", (6,), (6,), lambda m, x, w: m.softplus(x * w) - m.gelu(x * w)),
    ("leaky_relu", (6,), (6,), lambda m, x, w: m.leaky_relu(x * w)),
]


class Probe(layers.Layer):
    """One weight w and call(x) = fn(ops, x, w)."""

    def __init__(self, fn, wshape, w0, **kw):
        super().__init__(**kw)
        self.fn, self.wshape, self.w0 = fn, wshape, w0

    def build(self, input_shape):
        self.w = self.add_weight(shape=self.wshape, initializer="zeros", name="w")
        self.w.assign(self.w0)

    def call(self, x):
        return self.fn(ops, x, self.w)


def _reference_loss(fn, x, w, t):
    z = np.asarray(fn(N, x, w), dtype=np.float64).reshape(len(x), -1)
    return np.mean(np.mean((z - t) ** 2, axis=-1))


@pytest.mark.parametrize("name,xshape,wshape,fn", CASES, ids=[c[0] for c in CASES])
def test_op_forward_and_gradient(name, xshape, wshape, fn):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    n = 3
    x = (rng.random((n,) + xshape) + 0.5).astype(np.float32)
    w0 = ((rng.random(wshape) - 0.5) * 0.5).astype(np.float32)
    if name == "divide_var":  # away from 0
        w0 = np.where(w0 < 0, w0 - 0.5, w0 + 0.5).astype(np.float32)
    inp = ember.Input(xshape)
    out = layers.Flatten()(Probe(fn, wshape, w0)(inp))
    model = ember.Model(inp, out)
    z = model.predict(x, verbose=0)
    ref = np.asarray(fn(N, x.astype(np.float64), w0.astype(np.float64))).reshape(n, -1)
    np.testing.assert_allclose(z, ref, rtol=2e-5, atol=2e-6)

    t = rng.standard_normal(ref.shape).astype(np.float32)
    model.compile(ember.optimizers.SGD(learning_rate=1.0), "mse")
    model.train_on_batch(x, t)
    grad = w0.astype(np.float64) - model.weights[0].numpy()
    x64, w64 = x.astype(np.float64), w0.astype(np.float64)
    num = np.zeros_like(w64)
    eps = 1e-6
    for i in np.ndindex(w64.shape):
        wp, wm = w64.copy(), w64.copy()
        wp[i] += eps
        wm[i] -= eps
        num[i] = (_reference_loss(fn, x64, wp, t) - _reference_loss(fn, x64, wm, t)) / (2 * eps)
    scale = max(np.abs(num).max(), 1e-3)
    np.testing.assert_allclose(grad, num, rtol=2e-3, atol=2e-4 * scale)


def test_eager_ops_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    np.testing.assert_allclose(ops.add(a, b), a + b)
    np.testing.assert_allclose(ops.matmul(a, a.T), a @ a.T, rtol=1e-6)
    np.testing.assert_allclose(ops.softmax(a), _softmax(a.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(ops.logsumexp(a, axis=1), _logsumexp(a.astype(np.float64), 1),
                               rtol=1e-6)
    np.testing.assert_array_equal(ops.argmax(a, axis=-1), np.argmax(a, axis=-1))
    np.testing.assert_array_equal(ops.one_hot(np.array([0, 2]), 3), np.eye(3)[[0, 2]])
    np.testing.assert_allclose(ops.where(a > 0, a, 0.0), np.maximum(a, 0))
    v = ember.layers.base.Variable(b, "v")
    np.testing.assert_allclose(v * 2.0, b * 2.0)
    np.testing.assert_allclose(a + v, a + b)
    assert ops.shape(a) == (3, 4)


def test_arg_reductions_and_comparisons_in_a_model():
    x = np.array([[[1, 5, 5], [7, 2, 7]], [[0, 0, -1], [3, 9, 1]]], np.float32)
    inp = ember.Input((2, 3))
    m = ember.Model(inp, layers.Concatenate()([ops.argmax(inp, axis=-1),
                                               ops.argmin(inp, axis=2),
                                               ops.cast(ops.greater(inp[..., 0], 2.0),
                                                        "float32")]))
    got = m.predict(x, verbose=0)
    want = np.concatenate([np.argmax(x, -1), np.argmin(x, -1), (x[..., 0] > 2)], axis=1)
    np.testing.assert_array_equal(got, want)
    onehot = ember.Model(inp, layers.Flatten()(ops.one_hot(inp[:, 0, 0:1], 4)))
    np.testing.assert_array_equal(onehot.predict(x, verbose=0), [[0, 1, 0, 0], [1, 0, 0, 0]])


# -- custom layers ---------------------------------------------------------------------------

class Linear(layers.Layer):
    """The Keras guide's example layer."""

    def __init__(self, units=32, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = activation

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", trainable=True, name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True,
                                 name="bias")

    def call(self, inputs):
        y = ops.matmul(inputs, self.w) + self.b
        return ops.relu(y) if self.activation == "relu" else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation}


def _mlp(first, seed=3):
    ember.set_random_seed(seed)
    return ember.Sequential([ember.Input((12,)), first, layers.Dense(4, activation="softmax")])


def test_custom_linear_gives_the_bits_of_dense():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 12)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    custom = _mlp(Linear(16, activation="relu"))
    builtin = _mlp(layers.Dense(16, activation="relu"))
    builtin.set_weights(custom.get_weights())
    assert [w.shape for w in custom.weights] == [w.shape for w in builtin.weights]
    np.testing.assert_array_equal(custom.predict(x, verbose=0), builtin.predict(x, verbose=0))
    assert "bias add into dense at node 0" in custom._graph.fusions
    assert "activation into node 0" in custom._graph.fusions
    for m in (custom, builtin):
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(custom.get_weights(), builtin.get_weights()):
        np.testing.assert_array_equal(a, b)


class Block(layers.Layer):
    """A custom layer made of layers and a weight of its own."""

    def __init__(self, units, **kw):
        super().__init__(**kw)
        self.units = units
        self.inner = Linear(units)
        self.norm = layers.LayerNormalization()
        self.drop = layers.Dropout(0.0)

    def build(self, input_shape):
        self.gate = self.add_weight(shape=(self.units,), initializer="ones", name="gate")

    def call(self, x, training=None):
        h = self.drop(ops.tanh(self.inner(x)), training=training)
        return self.norm(x + h * self.gate)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_with_parts_weights_and_freezing():
    block = Block(6)
    model = ember.Sequential([ember.Input((6,)), block, layers.Dense(1)])
    names = [w.path for w in block.weights]
    assert names == [f"{block.name}/gate", f"{block.inner.name}/kernel",
                     f"{block.inner.name}/bias", f"{block.norm.name}/gamma",
                     f"{block.norm.name}/beta"]
    assert block.count_params() == 6 + 36 + 6 + 12
    x = np.random.default_rng(2).standard_normal((32, 6)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model.compile("adam", "mse")
    before = [w.numpy() for w in block.weights]
    model.fit(x, y, epochs=2, verbose=0)
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, block.weights))
    block.trainable = False
    assert block.inner.trainable is False and block.trainable_weights == []
    model.compile("adam", "mse")
    frozen = [w.numpy() for w in block.weights]
    model.fit(x, y, epochs=1, verbose=0)
    for a, w in zip(frozen, block.weights):
        np.testing.assert_array_equal(a, w.numpy())


@pytest.mark.parametrize("style", ["input", "input_shape", "add", "lazy", "build", "functional"])
def test_custom_layer_in_every_construction_style(style):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    if style == "input":
        model = ember.Sequential([ember.Input((5,)), Linear(3)])
    elif style == "input_shape":
        model = ember.Sequential([Linear(3, input_shape=(5,))])
    elif style == "add":
        model = ember.Sequential()
        model.add(ember.Input((5,)))
        model.add(Linear(3))
    elif style == "lazy":
        model = ember.Sequential([Linear(3)])
    elif style == "build":
        model = ember.Sequential([Linear(3)])
        model.build((None, 5))
    else:
        inp = ember.Input((5,))
        model = ember.Model(inp, Linear(3)(inp))
    lin = [layer for layer in model.layers if isinstance(layer, Linear)][0]
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out, x @ lin.w.numpy() + lin.b.numpy(), rtol=1e-5, atol=1e-6)
    eager = lin(x[:3])
    np.testing.assert_allclose(eager, out[:3], rtol=1e-6)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((20, 3), np.float32), epochs=1, verbose=0)


def test_custom_layers_train_bit_identically_at_one_and_two_threads():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((96, 6)).astype(np.float32)
    y = rng.standard_normal((96, 1)).astype(np.float32)
    results = []
    for threads in (1, 2):
        ember.config.set_num_threads(threads)
        ember.set_random_seed(7)
        model = ember.Sequential([ember.Input((6,)), Block(6), layers.Dense(1)])
        model.compile("adam", "mse")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
        results.append(model.get_weights())
    ember.config.set_num_threads(2)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_ops_on_functional_tensors():
    inp = ember.Input((4,))
    h = layers.Dense(8)(inp)
    out = layers.Dense(1)(ops.relu(h) * 2.0 + ops.sigmoid(h))
    model = ember.Model(inp, out)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense", "Dense"]
    x = np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)
    d1, d2 = model.layers[1], model.layers[2]
    hv = x @ d1.kernel.numpy() + d1.bias.numpy()
    want = (np.maximum(hv, 0) * 2 + 1 / (1 + np.exp(-hv))) @ d2.kernel.numpy() + d2.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    clone = ember.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def ops_between_layers(lib):
    """A functional model with ops of every family between its layers."""
    L, o = lib.layers, lib.ops
    inp = lib.Input((3, 4))
    h = L.Dense(8)(inp)
    a = o.concatenate([o.relu(h) * 2.0 + o.sigmoid(h), h[:, :, ::2], h[..., 1::2]], axis=-1)
    b = o.mean(a, axis=1)
    c = o.expand_dims(o.tanh(b), 1) * np.ones((1, 16), np.float32)
    d = o.reshape(c, (-1, 16)) + o.sqrt(o.sum(o.square(b), axis=-1, keepdims=True))
    e = o.softmax(o.clip(d, -1.0, 1.0), axis=-1) - o.square(o.maximum(d, 0.5))
    return lib.Model(inp, L.Dense(2)(o.transpose(o.stack([e, -e], axis=1), (0, 2, 1))))


def test_ops_between_layers_save_in_keras_layout(tmp_path):
    x = np.random.default_rng(16).standard_normal((5, 3, 4)).astype(np.float32)
    e = ops_between_layers(ember)
    e.save(tmp_path / "e.keras")
    back = ember.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), e.predict(x, verbose=0))
    names = [entry["name"] for entry in e.get_config()["layers"]]
    assert {"get_item", "get_item_1", "multiply_1", "sqrt", "stack", "transpose"} <= set(names)
    inp = ember.Input((6,))  # (Keras 3.15 on JAX cannot run its own Norm op)
    normed = ember.Model(inp, ops.norm(layers.Dense(3)(inp), axis=-1, keepdims=True))
    normed.save(tmp_path / "norm.keras")
    np.testing.assert_array_equal(
        ember.saving.load_model(tmp_path / "norm.keras").predict(x[:, 0, :3].repeat(2, 1),
                                                                  verbose=0),
        normed.predict(x[:, 0, :3].repeat(2, 1), verbose=0))
    keras = keras_or_skip()
    k = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(k.predict(x, verbose=0), e.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    k = ops_between_layers(keras)
    k.save(tmp_path / "k.keras")
    np.testing.assert_allclose(ember.saving.load_model(tmp_path / "k.keras").predict(x, verbose=0),
                               k.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert sorted(entry["class_name"] for entry in k.get_config()["layers"]) == \
        sorted(entry["class_name"] for entry in e.get_config()["layers"])


def test_ops_that_cannot_be_saved_say_so():
    inp = ember.Input((4,))
    dense = layers.Dense(4)
    h = dense(inp)
    with pytest.raises(ValueError, match="ops.multiply reads the weight .*bias"):
        ember.Model(inp, h * dense.bias).get_config()  # a weight read between layers
    first, _ = ops.split(h, 2, axis=-1)
    with pytest.raises(ValueError, match="cannot save it in Keras's layout"):
        ember.Model(inp, first).get_config()


# -- errors ------------------------------------------------------------------------------

def test_bad_code_gets_clear_errors():
    inp = ember.Input((3, 4))
    with pytest.raises(ValueError, match=r"ops.add: shapes \(3, 4\) and \(3,\) do not broadcast"):
        ops.add(inp, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="different ranks"):
        ops.multiply(inp, ember.Input((4,)))
    with pytest.raises(ValueError, match="batch axis"):
        ops.sum(inp, axis=0)
    with pytest.raises(ValueError, match="axis=None would reduce over the batch"):
        ops.mean(inp)
    with pytest.raises(ValueError, match="ops.matmul: cannot multiply"):
        ops.matmul(inp, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="keep the batch axis whole"):
        inp[0]
    with pytest.raises(ValueError, match="out of range"):
        inp[:, 5]
    with pytest.raises(ValueError, match="cannot reshape"):
        ops.reshape(inp, (-1, 5))
    with pytest.raises(ValueError, match="batch axis comes first"):
        ops.einsum("bij,bkj->ibk", inp, inp)
    with pytest.raises(ValueError, match="the term 'bi' .* \\(rank 3\\)"):
        ops.einsum("bi,bkj->bik", inp, inp)
    with pytest.raises(ValueError, match="'ab...j,jk->ab...k'"):
        ops.einsum("bij,kj->bik", inp, np.ones((2, 4), np.float32))

    class Branchy(layers.Layer):
        def call(self, x):
            if ops.sum(x, axis=-1) > 0:
                return x
            return -x
    with pytest.raises(ValueError, match="Layer 'branchy.*Python `if`.*ops.where"):
        Branchy()(ember.Input((3,)))

    class Mismatch(layers.Layer):
        def call(self, x):
            return x + ops.ones((2,))
    with pytest.raises(ValueError, match=r"Layer 'mismatch.*\(None, 3\).*ops.add: shapes "
                                         r"\(3,\) and \(2,\) do not broadcast"):
        Mismatch()(ember.Input((3,)))

    class WeightsAlone(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(4,), name="w")

        def call(self, x):
            return x * ops.exp(self.w)
    alone = WeightsAlone()  # computed once per step, then a weight operand
    m = ember.Model(inp, alone(inp))
    xs = np.ones((2,) + tuple(inp.shape[1:]), np.float32)
    np.testing.assert_allclose(m.predict(xs, verbose=0), xs * np.exp(alone.w.numpy()),
                               rtol=1e-6)

    class NoTensor(layers.Layer):
        def call(self, x):
            return np.zeros(3)
    with pytest.raises(ValueError, match="call\\(\\) must return a tensor.*Received: ndarray"):
        NoTensor()(ember.Input((3,)))

    class LateWeights(layers.Layer):
        def call(self, x):
            w = self.add_weight(shape=(x.shape[-1],), initializer="ones")
            return x * w
    late = LateWeights()
    late(ember.Input((3,)))
    with pytest.raises(ValueError, match="created weights in call\\(\\)"):
        late(ember.Input((4,)))

    class BadWeight(layers.Layer):
        def build(self, input_shape):
            self.add_weight(shape=(0, 3))

        def call(self, x):
            return x
    with pytest.raises(ValueError, match="shape"):
        BadWeight()(ember.Input((3,)))

    class BadInit(layers.Layer):
        def build(self, input_shape):
            self.add_weight(shape=(3,), initializer="no_such_initializer")

        def call(self, x):
            return x
    with pytest.raises(ValueError, match="no_such_initializer"):
        BadInit()(ember.Input((3,)))


class Noisy(layers.Layer):
    """Reads `training`: noise in training, the identity at inference."""

    def call(self, x, training=None):
        if training:
            return x + ember.random.normal(ops.shape(x), stddev=0.5)
        return x


class ModeScale(layers.Layer):
    def call(self, x, training=None):
        return x * 2.0 if training else x * 3.0


def test_a_call_that_reads_training_runs_each_mode():
    x = np.random.default_rng(17).random((6, 4)).astype(np.float32)
    i = ember.Input((4,))
    noisy = ember.Model(i, Noisy()(i))
    np.testing.assert_array_equal(noisy.predict(x, verbose=0), x)
    with ember.GradientTape():
        assert np.abs(np.asarray(noisy(x, training=True)) - x).mean() > 0.2
    dense = layers.Dense(1, use_bias=False, kernel_initializer="ones")
    i = ember.Input((4,))
    m = ember.Model(i, ModeScale()(dense(i)))
    np.testing.assert_allclose(m.predict(x, verbose=0)[:, 0], 3 * x.sum(1), rtol=1e-6)
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(x, np.zeros((6, 1), np.float32))  # the gradient of (2 x w)^2
    x64 = x.astype(np.float64)
    want = 1.0 - (8 * x64.sum(1)[:, None] * x64).mean(0)
    np.testing.assert_allclose(dense.get_weights()[0][:, 0], want, rtol=1e-5)


# -- Keras parity -------------------------------------------------------------------------

def test_same_custom_layer_in_keras_and_ember():
    keras = keras_or_skip()

    def linear(base, o):
        """The same custom layer on either library: base Layer class, ops module."""
        class Linear(base):
            def __init__(self, units, **kw):
                super().__init__(**kw)
                self.units = units

            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                         initializer="random_normal")
                self.b = self.add_weight(shape=(self.units,), initializer="random_normal")
                self.s = self.add_weight(shape=(self.units,), initializer="ones")

            def call(self, x):
                h = o.matmul(x, self.w) + self.b
                h = o.tanh(h) * self.s + o.square(h) / 4.0
                return h - o.logsumexp(h, axis=-1, keepdims=True)
        return Linear

    KLinear, ELinear = linear(keras.layers.Layer, keras.ops), linear(layers.Layer, ops)

    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 7)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    k = keras.Sequential([keras.Input((7,)), KLinear(5), keras.layers.Dense(1)])
    e = ember.Sequential([ember.Input((7,)), ELinear(5), layers.Dense(1)])
    e.set_weights(k.get_weights())
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    lk = k.train_on_batch(x, y)
    le = e.train_on_batch(x, y)
    assert abs(float(lk) - float(le)) < 1e-5 * max(1.0, abs(float(lk)))
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def two_heads(base, o):
    """A custom layer of two outputs on either library."""
    class TwoHeads(base):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 4), initializer="random_normal")

        def call(self, x):
            h = o.matmul(x, self.w)
            return o.relu(h), o.tanh(h) * 2.0
    return TwoHeads


def test_several_outputs_match_keras():
    keras = keras_or_skip()

    def model(lib, heads):
        i = lib.Input((5,))
        a, b = heads()(i)
        return lib.Model(i, [lib.layers.Dense(2)(a), b])

    k = model(keras, two_heads(keras.layers.Layer, keras.ops))
    e = model(ember, two_heads(layers.Layer, ops))
    rng = np.random.default_rng(14)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = [rng.standard_normal((8, 2)).astype(np.float32),
         rng.standard_normal((8, 4)).astype(np.float32)]
    e.set_weights(k.get_weights())
    for a, b in zip(e.predict(x, verbose=0), k.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), ["mse", "mae"])
    e.compile(ember.optimizers.Adam(0.01), ["mse", "mae"])
    lk, le = k.train_on_batch(x, y), e.train_on_batch(x, y)
    assert float(le[0] if isinstance(le, list) else le) == pytest.approx(
        float(lk[0] if isinstance(lk, list) else lk), rel=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


class Forked(ember.Model):
    """A subclassed model of two outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.heads = two_heads(layers.Layer, ops)()
        self.out = layers.Dense(1)

    def call(self, x):
        a, b = self.heads(x)
        return [self.out(a), b]


def test_subclassed_model_with_several_outputs(tmp_path):
    from gradcheck import numeric_grad
    rng = np.random.default_rng(15)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = [rng.standard_normal((16, 1)).astype(np.float32),
         rng.standard_normal((16, 4)).astype(np.float32)]
    m = Forked()
    m.compile("adam", ["mse", "mse"], metrics=[["mae"], ["mae"]])
    h = m.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert m.output_names == ["output_1", "output_2"]
    assert sorted(h.history) == ["loss", "output_1_loss", "output_1_mae", "output_2_loss",
                                 "output_2_mae"]
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert len(m.evaluate(x, y, verbose=0)) == 5
    outs = m(x)
    assert [o.shape for o in outs] == [(16, 1), (16, 4)]
    m.save(tmp_path / "forked.keras")
    loaded = ember.saving.load_model(tmp_path / "forked.keras",
                                     custom_objects={"Forked": Forked})
    for a, b in zip(loaded.predict(x, verbose=0), m.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    # Under a tape: the gradient of a loss of both outputs, against finite differences.
    with ember.GradientTape() as tape:
        a, b = m(x[:4], training=True)
        loss = ops.mean(ops.square(a)) + ops.mean(b)
    grads = tape.gradient(loss, m.trainable_weights)
    w = [v.numpy().astype(np.float64) for v in m.trainable_weights]

    def reference():
        hh = x[:4].astype(np.float64) @ w[0]
        return np.mean((np.maximum(hh, 0) @ w[1] + w[2]) ** 2) + np.mean(np.tanh(hh) * 2)
    for k in range(3):
        np.testing.assert_allclose(grads[k], numeric_grad(reference, w[k]), rtol=1e-3,
                                   atol=1e-5)


# -- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".h5"])
def test_custom_layers_save_and_load(tmp_path, suffix):
    ember.set_random_seed(11)
    model = ember.Sequential([ember.Input((6,)), Block(6, name="block"), Linear(3),
                              layers.Dense(2)])
    x = np.random.default_rng(9).standard_normal((8, 6)).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / f"m{suffix}")
    if suffix == ".weights.h5":
        model.save_weights(path)
        ember.set_random_seed(12)
        other = ember.Sequential([ember.Input((6,)), Block(6), Linear(3), layers.Dense(2)])
        other.load_weights(path)
    else:
        with pytest.warns(UserWarning) if suffix == ".h5" else _no_warning():
            model.save(path)
        with pytest.raises(ValueError, match="Unknown layer class 'Block'"):
            ember.saving.load_model(path)
        other = ember.saving.load_model(path, custom_objects={"Block": Block, "Linear": Linear})
        assert [type(layer).__name__ for layer in other.layers] == ["Block", "Linear", "Dense"]
    np.testing.assert_array_equal(other.predict(x, verbose=0), want)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_registered_custom_layer_loads_without_custom_objects(tmp_path):
    @ember.saving.register_keras_serializable(package="tests")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="s")

        def call(self, x):
            return x * self.s

    model = ember.Sequential([ember.Input((3,)), Scale(), layers.Dense(1)])
    model.layers[0].s.assign([1.0, 2.0, 3.0])
    path = str(tmp_path / "scale.keras")
    model.save(path)
    loaded = ember.saving.load_model(path)
    np.testing.assert_array_equal(loaded.layers[0].s.numpy(), [1.0, 2.0, 3.0])


def test_custom_layer_files_cross_to_and_from_keras(tmp_path):
    keras = keras_or_skip()

    class Linear(keras.layers.Layer):  # noqa: F811 (the same class name on both sides)
        def __init__(self, units=32, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units, self.activation = units, activation

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="random_normal", name="kernel")
            self.b = self.add_weight(shape=(self.units,), initializer="random_normal",
                                     name="bias")

        def call(self, inputs):
            y = keras.ops.matmul(inputs, self.w) + self.b
            return keras.ops.relu(y) if self.activation == "relu" else y

        def get_config(self):
            return {**super().get_config(), "units": self.units, "activation": self.activation}

    x = np.random.default_rng(10).standard_normal((5, 4)).astype(np.float32)
    k = keras.Sequential([keras.Input((4,)), Linear(3, activation="relu"), keras.layers.Dense(2)])
    kpath = str(tmp_path / "k.keras")
    k.save(kpath)
    e = ember.saving.load_model(kpath, custom_objects={"Linear": globals()["Linear"]})
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    epath = str(tmp_path / "e.keras")
    e.save(epath)
    back = keras.saving.load_model(epath, custom_objects={"Linear": Linear})
    np.testing.assert_allclose(back.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-6)


# -- subclassed models -----------------------------------------------------------------------

class Residual(ember.Model):
    """A subclassed model: a residual block of layers and a custom layer."""

    def __init__(self, width=8, outputs=3, **kwargs):
        super().__init__(**kwargs)
        self.width, self.outputs_n = width, outputs
        self.stem = layers.Dense(width, activation="relu")
        self.blocks = [Linear(width, activation="relu"), layers.Dense(width)]
        self.head = layers.Dense(outputs, activation="softmax")

    def call(self, x, training=None):
        h = self.stem(x)
        r = self.blocks[1](self.blocks[0](h))
        return self.head(ops.relu(h + r))


def test_subclassed_model_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = Residual()
    with pytest.raises(ValueError, match="not been built"):
        model.count_params()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Linear", "Dense",
                                                                  "Dense"]
    assert model.count_params() == 5 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 3 + 3
    assert model.get_config()["width"] == 8
    path = str(tmp_path / "res.keras")
    model.save(path)
    loaded = ember.saving.load_model(path, custom_objects={"Residual": Residual,
                                                           "Linear": Linear})
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(model(x[:4]), model.predict(x[:4], verbose=0))
    # The same step as the model's layers in a Sequential-free functional graph.
    inp = ember.Input((5,))
    h = model.stem(inp)
    functional = ember.Model(inp, model.head(ops.relu(h + model.blocks[1](model.blocks[0](h)))))
    np.testing.assert_array_equal(functional.predict(x, verbose=0), model.predict(x, verbose=0))


def test_subclassed_model_files_cross_to_and_from_keras(tmp_path):
    keras = keras_or_skip()

    class Tiny(keras.Model):
        def __init__(self, width=4, **kwargs):
            super().__init__(**kwargs)
            self.width = width
            self.stem = keras.layers.Dense(width)
            self.blocks = [keras.layers.Dense(width), keras.layers.Dense(width)]
            self.head = keras.layers.Dense(1)

        def call(self, x):
            h = self.stem(x)
            for b in self.blocks:
                h = h + keras.ops.tanh(b(h))
            return self.head(h)

        def get_config(self):
            return {**super().get_config(), "width": self.width}

    class ETiny(ember.Model):
        def __init__(self, width=4, **kwargs):
            super().__init__(**kwargs)
            self.width = width
            self.stem = layers.Dense(width)
            self.blocks = [layers.Dense(width), layers.Dense(width)]
            self.head = layers.Dense(1)

        def call(self, x):
            h = self.stem(x)
            for b in self.blocks:
                h = h + ops.tanh(b(h))
            return self.head(h)

    x = np.random.default_rng(13).standard_normal((6, 3)).astype(np.float32)
    k = Tiny()
    want = k.predict(x, verbose=0)
    kpath = str(tmp_path / "tiny.keras")
    k.save(kpath)
    e = ember.saving.load_model(kpath, custom_objects={"Tiny": ETiny})
    np.testing.assert_allclose(e.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    epath = str(tmp_path / "etiny.keras")
    e.save(epath)
    back = keras.saving.load_model(epath, custom_objects={"ETiny": Tiny})
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-6, atol=1e-7)


# -- Lambda -------------------------------------------------------------------------------

def _double_plus_one(x):
    return x * 2.0 + 1.0


def test_lambda_layers_train_save_and_load(tmp_path):
    x = np.random.default_rng(14).standard_normal((10, 4)).astype(np.float32)
    model = ember.Sequential([ember.Input((4,)),
                              layers.Lambda(lambda t, k=0.5: ops.square(t) * k),
                              layers.Lambda(_double_plus_one), layers.Dense(2)])
    d = model.layers[2]
    want = (np.square(x) * 0.5 * 2 + 1) @ d.kernel.numpy() + d.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((10, 2), np.float32), epochs=1, verbose=0)
    path = str(tmp_path / "lam.keras")
    model.save(path)
    with pytest.raises(ValueError, match="Python lambda.*safe mode"):
        ember.saving.load_model(path)
    with pytest.raises(ValueError, match="'_double_plus_one': pass it in custom_objects"):
        ember.saving.load_model(path, safe_mode=False)
    loaded = ember.saving.load_model(path, safe_mode=False,
                                     custom_objects={"_double_plus_one": _double_plus_one})
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keras_lambda_file_loads_with_safe_mode_off(tmp_path):
    keras = keras_or_skip()
    # As a script writes it: `keras` a global the lambda reads.
    fn = eval("lambda t: keras.ops.tanh(t) * 3.0", {"keras": keras})
    k = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(fn), keras.layers.Dense(2)])
    path = str(tmp_path / "klam.keras")
    k.save(path)
    x = np.random.default_rng(15).standard_normal((4, 3)).astype(np.float32)
    e = ember.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_stop_gradient_eager_on_a_tape_and_in_a_model(tmp_path):
    a = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(ops.stop_gradient(a), a)
    with ember.GradientTape() as tape:
        t = ops.convert_to_tensor(np.array([1.0, 2.0, 3.0], np.float32))
        tape.watch(t)
        loss = ops.sum(t * ops.stop_gradient(t * 3.0))
    np.testing.assert_allclose(tape.gradient(loss, t), [3.0, 6.0, 9.0])
    # In a model: the stopped branch's Dense gets no gradient, the other one does.
    ember.set_random_seed(2)
    inp = ember.Input((4,))
    frozen_path, live_path = layers.Dense(2), layers.Dense(2)
    out = layers.Add()([ops.stop_gradient(frozen_path(inp)), live_path(inp)])
    model = ember.Model(inp, out)
    model.compile(ember.optimizers.SGD(0.1), "mse")
    before = [w.numpy() for w in frozen_path.weights + live_path.weights]
    x = np.random.default_rng(3).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, np.ones((16, 2), np.float32), verbose=0)
    after = [w.numpy() for w in frozen_path.weights + live_path.weights]
    assert all(np.array_equal(b, w) for b, w in zip(before[:2], after[:2]))
    assert not np.array_equal(before[2], after[2])
    model.save(tmp_path / "stop.keras")
    back = ember.saving.load_model(tmp_path / "stop.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    keras = keras_or_skip()
    k = keras.saving.load_model(tmp_path / "stop.keras")
    np.testing.assert_allclose(k.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def _activity_model(lib, rate=0.5, kind="mean"):
    class ActivityRegularization(lib.layers.Layer):
        """Keras's guide: "The add_loss() method"."""

        def __init__(self, rate=1e-2, **kwargs):
            super().__init__(**kwargs)
            self.rate = rate

        def call(self, inputs):
            reduce = lib.ops.mean if kind == "mean" else lib.ops.sum
            self.add_loss(self.rate * reduce(lib.ops.square(inputs)) + 0.0)
            return inputs
    inp = lib.Input((4,))
    h = ActivityRegularization(rate)(lib.layers.Dense(3, activation="tanh")(inp))
    return lib.Model(inp, lib.layers.Dense(1)(h))


def _activity_case(kind, rows, data_seed, model_seed, lr):
    """Data (rows, 4) -> (rows, 1) and ember's _activity_model compiled with SGD(lr), mse."""
    rng = np.random.default_rng(data_seed)
    x = rng.standard_normal((rows, 4)).astype(np.float32)
    y = rng.standard_normal((rows, 1)).astype(np.float32)
    ember.set_random_seed(model_seed)
    m = _activity_model(ember, kind=kind)
    m.compile(ember.optimizers.SGD(lr), "mse")
    return x, y, m


@pytest.mark.parametrize("kind", ["mean", "sum"])
def test_add_loss_in_call_trains_as_keras(kind):
    x, y, e = _activity_case(kind, rows=20, data_seed=8, model_seed=1, lr=0.1)
    loss = e.evaluate(x, y, batch_size=8, verbose=0)
    h = np.tanh(x @ e.layers[1].get_weights()[0] + e.layers[1].get_weights()[1])
    pred = h @ e.layers[3].get_weights()[0] + e.layers[3].get_weights()[1]
    if kind == "mean":
        term = 0.5 * np.mean(h ** 2)
    else:  # each batch's own sum, the batches weighted by their sizes (Keras)
        sums = [np.sum(h[s:s + 8] ** 2) * len(h[s:s + 8]) for s in range(0, 20, 8)]
        term = 0.5 * np.sum(sums) / 20
    np.testing.assert_allclose(loss, np.mean((pred - y) ** 2) + term, rtol=1e-4)
    keras = keras_or_skip()
    k = _activity_model(keras, kind=kind)
    k.set_weights(e.get_weights())
    k.compile(keras.optimizers.SGD(0.1), "mse")
    he = e.fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0)
    hk = k.fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(he.history["loss"], hk.history["loss"], rtol=1e-5)


def test_add_loss_misuse_is_refused():
    class Bad(layers.Layer):
        def call(self, inputs):
            self.add_loss(inputs)  # a value per sample, not of the batch
            return inputs
    with pytest.raises(ValueError, match="add_loss takes"):
        ember.Sequential([ember.Input((3,)), Bad()])

    class Centering(layers.Layer):
        def call(self, inputs):
            return inputs - ops.mean(inputs)  # a batch statistic in the output
    with pytest.raises(ValueError, match="value of the whole batch"):
        ember.Sequential([ember.Input((3,)), Centering()])
    with pytest.raises(ValueError, match="add_loss takes"):
        layers.Dense(2).add_loss(1.0)


def test_guide_vae_with_add_loss_trains():
    """Keras's subclassing guide, "Putting it all together": a VariationalAutoEncoder
    whose call adds the KL divergence with add_loss, compiled with MSE."""
    class Sampling(layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.seed_generator = ember.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            batch, dim = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
            eps = ember.random.normal(shape=(batch, dim), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * eps

    class Encoder(layers.Layer):
        def __init__(self, latent_dim=4, intermediate_dim=32, **kw):
            super().__init__(**kw)
            self.dense_proj = layers.Dense(intermediate_dim, activation="relu")
            self.dense_mean = layers.Dense(latent_dim)
            self.dense_log_var = layers.Dense(latent_dim)
            self.sampling = Sampling()

        def call(self, inputs):
            x = self.dense_proj(inputs)
            z_mean, z_log_var = self.dense_mean(x), self.dense_log_var(x)
            return z_mean, z_log_var, self.sampling((z_mean, z_log_var))

    class Decoder(layers.Layer):
        def __init__(self, original_dim, intermediate_dim=32, **kw):
            super().__init__(**kw)
            self.dense_proj = layers.Dense(intermediate_dim, activation="relu")
            self.dense_output = layers.Dense(original_dim, activation="sigmoid")

        def call(self, inputs):
            return self.dense_output(self.dense_proj(inputs))

    class VariationalAutoEncoder(ember.Model):
        def __init__(self, original_dim, **kw):
            super().__init__(**kw)
            self.encoder = Encoder()
            self.decoder = Decoder(original_dim)

        def call(self, inputs):
            z_mean, z_log_var, z = self.encoder(inputs)
            reconstructed = self.decoder(z)
            kl_loss = -0.5 * ops.mean(z_log_var - ops.square(z_mean) - ops.exp(z_log_var) + 1)
            self.add_loss(kl_loss)
            return reconstructed

    ember.set_random_seed(0)
    (x, _), _ = ember.datasets.digits.load_data()
    x = x.reshape(-1, 64).astype(np.float32) / 16.0
    vae = VariationalAutoEncoder(64)
    vae.compile(ember.optimizers.Adam(1e-3), loss=ember.losses.MeanSquaredError())
    hist = vae.fit(x, x, epochs=8, batch_size=64, verbose=0).history["loss"]
    assert hist[-1] < 0.8 * hist[0], hist
    # The reported loss is the MSE plus the KL term: above the MSE alone.
    mse = float(np.mean((vae.predict(x, verbose=0) - x) ** 2))
    assert vae.evaluate(x, x, verbose=0) > mse


def weight_ops_layer(base, o):
    """A custom layer whose call computes with weights alone: a transposed (tied) kernel,
    a positive scale through exp, a weight-normalised direction."""
    class WeightOps(base):
        def __init__(self, units, **kw):
            super().__init__(**kw)
            self.units = units

        def build(self, input_shape):
            self.v = self.add_weight(shape=(self.units, input_shape[-1]),
                                     initializer="random_normal")
            self.log_scale = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, x):
            w = o.transpose(self.v)  # (in, units)
            w = w / o.sqrt(o.sum(o.square(w), axis=0, keepdims=True))
            return o.matmul(x, w) * o.exp(self.log_scale) + self.log_scale * 0.5
    return WeightOps


def test_ops_on_weights_alone_train_as_keras(tmp_path):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    ember.set_random_seed(4)
    e = ember.Sequential([ember.Input((6,)), weight_ops_layer(layers.Layer, ops)(4),
                          layers.Dense(1)])
    e.compile(ember.optimizers.Adam(0.05), "mse")
    # The numbers: NumPy's, and an Adam step's bits at one and two threads.
    v, s = e.layers[0].get_weights()
    w = v.T / np.sqrt((v.T ** 2).sum(0, keepdims=True))
    want = (x @ w * np.exp(s) + 0.5 * s) @ e.layers[1].get_weights()[0] + \
        e.layers[1].get_weights()[1]
    np.testing.assert_allclose(e.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    start = e.get_weights()
    e.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert not np.array_equal(start[0], e.get_weights()[0])
    assert not np.array_equal(start[1], e.get_weights()[1])
    keras = keras_or_skip()
    k = keras.Sequential([keras.Input((6,)), weight_ops_layer(keras.layers.Layer, keras.ops)(4),
                          keras.layers.Dense(1)])
    k.set_weights(start)
    k.compile(keras.optimizers.Adam(0.05), "mse")
    k.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_weights_alone_meet_the_input_only_as_operands():
    class Bad(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(3,), initializer="ones")

        def call(self, x):
            return ops.concatenate([x, ops.exp(self.w)], axis=-1)
    with pytest.raises(ValueError, match="weights alone"):
        ember.Sequential([ember.Input((3,)), Bad()])


@pytest.mark.parametrize("kind", ["mean", "sum"])
def test_add_loss_gradient_matches_finite_differences(kind):
    x, y, m = _activity_case(kind, rows=10, data_seed=12, model_seed=3, lr=1.0)
    kernel = m.layers[1].kernel
    start = [w.numpy() for w in m.weights]

    def loss():
        return float(m.evaluate(x, y, batch_size=10, verbose=0))
    eps, numeric = 1e-2, np.zeros(kernel.shape)
    for i in np.ndindex(kernel.shape):
        for sign in (1, -1):
            v = start[0].astype(np.float64).copy()
            v[i] += sign * eps
            kernel.assign(v)
            numeric[i] += sign * loss() / (2 * eps)
    kernel.assign(start[0])
    m.train_on_batch(x, y)  # SGD(1.0): the update is the gradient
    np.testing.assert_allclose(start[0] - kernel.numpy(), numeric, rtol=2e-2, atol=2e-3)
