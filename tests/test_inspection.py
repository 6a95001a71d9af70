"""summary(), count_params, config round trips of every layer and model, freezing,
and bad input to the training API."""
import numpy as np
import pytest

import ember
from ember import layers
from oracles import keras_or_skip

KERAS_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 64)             │        50,240 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dropout (Dropout)               │ (None, 64)             │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ out (Dense)                     │ (None, 10)             │           650 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 50,890 (198.79 KB)
 Trainable params: 650 (2.54 KB)
 Non-trainable params: 50,240 (196.25 KB)"""

# Keras 3.15 on JAX, after one fit with Adam, summary(line_length=60).
KERAS_SUMMARY_TRAINED = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┓
┃ Layer (type)             ┃ Output Shape      ┃   Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━┩
│ dense (Dense)            │ (None, 64)        │    50,240 │
├──────────────────────────┼───────────────────┼───────────┤
│ dropout (Dropout)        │ (None, 64)        │         0 │
├──────────────────────────┼───────────────────┼───────────┤
│ out (Dense)              │ (None, 10)        │       650 │
└──────────────────────────┴───────────────────┴───────────┘
 Total params: 52,192 (203.88 KB)
 Trainable params: 650 (2.54 KB)
 Non-trainable params: 50,240 (196.25 KB)
 Optimizer params: 1,302 (5.09 KB)"""


def frozen_mlp():
    m = ember.Sequential([ember.Input((784,)), layers.Dense(64, activation="relu", name="dense"),
                          layers.Dropout(0.2, name="dropout"),
                          layers.Dense(10, activation="softmax", name="out")])
    m.layers[0].trainable = False
    m.name = "sequential"
    return m


def test_summary_is_keras_formatted(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    m = frozen_mlp()
    lines = []
    m.summary(print_fn=lines.append)
    assert "\n".join(lines) == KERAS_SUMMARY
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(np.zeros((8, 784)), np.zeros(8), verbose=0)
    lines = []
    m.summary(line_length=60, print_fn=lines.append)
    assert "\n".join(lines) == KERAS_SUMMARY_TRAINED
    assert m.count_params() == 50890


def test_count_params_needs_a_built_model():
    with pytest.raises(ValueError, match="has not been built"):
        ember.Sequential([layers.Dense(3)]).count_params()


LAYERS = [
    layers.Dense(5, activation="relu", use_bias=False, kernel_initializer="he_normal",
                 name="d"),
    layers.Activation("tanh"),
    layers.Dropout(0.3, seed=4),
    layers.Flatten(),
    layers.Reshape((2, 3)),
    layers.InputLayer(shape=(4,)),
    layers.BatchNormalization(momentum=0.9, epsilon=1e-4, center=False, name="bn"),
    layers.LayerNormalization(epsilon=1e-5, scale=False, name="ln"),
    layers.GroupNormalization(groups=4, epsilon=1e-4),
    layers.PReLU(shared_axes=[1, 2]),
    layers.Permute((2, 1)),
    layers.Softmax(),
    layers.ReLU(),
    layers.LeakyReLU(0.1),
    layers.SpatialDropout2D(0.2, seed=3),
    layers.GaussianNoise(0.5),
    layers.GaussianDropout(0.1),
    layers.UpSampling2D((2, 3)),
    layers.ZeroPadding2D(((1, 0), (2, 3))),
    layers.Cropping1D((1, 2)),
    layers.Conv2DTranspose(3, 2, strides=2, kernel_regularizer="l2", bias_constraint="non_neg"),
    layers.ELU(0.5),
    layers.Add(name="add"),
    layers.Concatenate(axis=1, name="cat"),
    layers.Dot(axes=1, normalize=True, name="dot"),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda l: type(l).__name__)
def test_every_layer_config_round_trips(layer):
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    assert type(layers.deserialize(layers.serialize(layer))) is type(layer)


def test_model_config_round_trip_and_trainable():
    m = frozen_mlp()
    again = ember.Sequential.from_config(m.get_config())
    assert [type(l) for l in again.layers] == [type(l) for l in m.layers]
    assert again.layers[0].trainable is False
    assert again.count_params() == m.count_params()
    m.trainable = False
    assert not any(l.trainable for l in m.layers) and m.trainable_weights == []


def test_layer_weights_in_keras_order_and_shapes_checked():
    m = frozen_mlp()
    d = m.layers[2]
    k, b = d.get_weights()
    assert k.shape == (64, 10) and b.shape == (10,)
    d.set_weights([np.ones((64, 10)), np.zeros(10)])
    assert (m.get_weights()[2] == 1).all()
    with pytest.raises(ValueError, match=r"has shape \(64, 10\). Received an array of shape "
                                         r"\(10, 64\)"):
        d.set_weights([np.ones((10, 64)), np.zeros(10)])
    with pytest.raises(ValueError, match="expects 4 weight arrays. Received: 1"):
        m.set_weights([np.ones(3)])


def test_bad_training_input_names_the_value():
    m = ember.Sequential([ember.Input((3,)), layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="class_weight has an invalid class id 7"):
        m.fit(x, y, class_weight={7: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be a non-negative number. "
                                         r"Received: -1"):
        m.fit(x, y, class_weight={0: -1}, verbose=0)
    with pytest.raises(ValueError, match="expected 4, received 3"):
        m.fit(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="learning_rate=-0.5"):
        m.optimizer.learning_rate = -0.5
    with pytest.raises(ValueError, match="label value of 5"):
        m.fit(x, np.array([0, 1, 5, 1]), verbose=0)


# Keras 3.15 on JAX, COLUMNS=80: a functional model with a shared layer and a merge.
KERAS_FUNCTIONAL_SUMMARY = """\
Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ a (InputLayer)      │ (None, 5)         │          0 │ -                 │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ b (InputLayer)      │ (None, 5)         │          0 │ -                 │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ shared (Dense)      │ (None, 4)         │         24 │ a[0][0], b[0][0]  │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ add (Add)           │ (None, 4)         │          0 │ shared[0][0],     │
│                     │                   │            │ shared[1][0]      │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ head (Dense)        │ (None, 2)         │         10 │ add[0][0]         │
└─────────────────────┴───────────────────┴────────────┴───────────────────┘
 Total params: 34 (136.00 B)
 Trainable params: 34 (136.00 B)
 Non-trainable params: 0 (0.00 B)"""


def test_functional_summary_has_keras_connected_to_column(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    a, b = ember.Input((5,), name="a"), ember.Input((5,), name="b")
    shared = layers.Dense(4, name="shared")
    x = layers.Add(name="add")([shared(a), shared(b)])
    m = ember.Model([a, b], layers.Dense(2, name="head")(x), name="functional")
    lines = []
    m.summary(print_fn=lines.append)
    assert "\n".join(lines) == KERAS_FUNCTIONAL_SUMMARY


def test_summary_layer_range_prints_the_rows_keras_prints(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    keras = keras_or_skip()

    def rows(model, layer_range):
        lines = []
        model.summary(print_fn=lambda line, **kw: lines.append(line), layer_range=layer_range)
        text = "\n".join(lines)
        return [l.split("\u2502")[1].strip().split(" (")[0] for l in text.splitlines()
                if l.startswith("\u2502")]

    def build(lib):
        return lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, name="first"),
                               lib.layers.Dense(3, name="hidden_a"),
                               lib.layers.Dense(3, name="hidden_b"),
                               lib.layers.Dense(1, name="last")])
    e, k = build(ember), build(keras)
    for layer_range in (["first", "last"], ["hidden_a", "hidden_b"], ["hidden.*", "hidden.*"]):
        assert rows(e, layer_range) == rows(k, layer_range)
    assert rows(e, ["hidden.*", "hidden.*"]) == ["hidden_a", "hidden_b"]
    with pytest.raises(ValueError, match="does not match"):
        e.summary(layer_range=["last", "first"])
    with pytest.raises(ValueError, match="2 strings"):
        e.summary(layer_range=["first"])
