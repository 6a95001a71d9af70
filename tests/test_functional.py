"""The functional API: Model(inputs, outputs) over layers called on symbolic tensors.
Chains only so far (one input, one output, each layer called once); everything else
raises a ValueError that says what is not supported yet."""
import json

import numpy as np
import pytest

import ember
from ember import layers

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 12)).astype(np.float32)
Y = rng.integers(0, 3, 40)


def functional(lib=ember, seed=1):
    (lib.utils.set_random_seed if lib is not ember else ember.set_random_seed)(seed)
    inputs = lib.Input(shape=(12,))
    x = lib.layers.Dense(16, activation="relu")(inputs)
    x = lib.layers.Dropout(0.2, seed=5)(x)
    x = lib.layers.Dense(8, activation="tanh")(x)
    outputs = lib.layers.Dense(3, activation="softmax")(x)
    return lib.Model(inputs=inputs, outputs=outputs)


def test_seed_style_functional_model_trains_like_its_sequential_twin():
    m = functional()
    assert isinstance(m, ember.Model) and type(m).__name__ == "Functional"
    assert [l.name for l in m.layers][0].startswith("input_layer")
    assert m.output_shape == (None, 3) and m.count_params() == 16 * 13 + 8 * 17 + 3 * 9
    ember.set_random_seed(1)  # the same draws: Dropout takes its seed when it is made
    seq = ember.Sequential([layers.Input((12,)), layers.Dense(16, activation="relu"),
                            layers.Dropout(0.2, seed=5), layers.Dense(8, activation="tanh"),
                            layers.Dense(3, activation="softmax")])
    seq.set_weights(m.get_weights())
    for model in (m, seq):
        ember.set_random_seed(7)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    ember.set_random_seed(7)
    h = m.fit(X, Y, epochs=3, batch_size=8, verbose=0)
    ember.set_random_seed(7)
    hs = seq.fit(X, Y, epochs=3, batch_size=8, verbose=0)
    assert h.history == hs.history
    for a, b in zip(m.get_weights(), seq.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m.predict(X, verbose=0), seq.predict(X, verbose=0))
    assert m.evaluate(X, Y, verbose=0) == seq.evaluate(X, Y, verbose=0)
    np.testing.assert_array_equal(m(X[:1]), seq(X[:1]))


def test_inputs_and_outputs_lists_and_properties():
    inputs = ember.Input((12,), name="features")
    outputs = layers.Dense(2)(layers.Dense(4)(inputs))
    m = ember.Model([inputs], [outputs], name="two")
    assert m.name == "two" and m.inputs == [inputs] and m.outputs == [outputs]
    assert m.predict(X, verbose=0).shape == (40, 2)
    assert m.layers[1].output_shape == (None, 4)


def test_config_round_trip_save_and_load(tmp_path):
    m = functional()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(X, Y, epochs=1, verbose=0)
    config = json.loads(json.dumps(m.get_config()))
    assert config["input_layers"] == [m.layers[0].name, 0, 0]
    assert config["output_layers"] == [m.layers[-1].name, 0, 0]
    assert config["layers"][2]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] == \
        [m.layers[1].name, 0, 0]
    clone = ember.models.Functional.from_config(config)
    assert [type(l) for l in clone.layers] == [type(l) for l in m.layers]
    m.save(tmp_path / "f.keras")
    back = ember.models.load_model(tmp_path / "f.keras")
    assert type(back).__name__ == "Functional"
    np.testing.assert_array_equal(back.predict(X, verbose=0), m.predict(X, verbose=0))
    back.fit(X, Y, epochs=1, verbose=0)


def test_summary_lists_the_input_layer():
    lines = []
    functional().summary(print_fn=lines.append)
    row = [l for l in lines if "(InputLayer)" in l]
    assert len(row) == 1 and "(None, 12)" in row[0] and row[0].rstrip("│ ").endswith("0")


def test_graph_errors_name_the_problem():
    a, b = ember.Input((12,)), ember.Input((12,))
    x = layers.Dense(4)(a)
    with pytest.raises(ValueError, match="Graph disconnected.*not one of the model's inputs"):
        ember.Model(b, x)
    with pytest.raises(ValueError, match="must come from ember.Input"):
        ember.Model(x, layers.Dense(2)(x))
    with pytest.raises(ValueError, match="listed twice"):
        ember.Model([a, a], x)
    dense = layers.Dense(3)
    dense(ember.Input((5,)))
    with pytest.raises(ValueError, match="built for inputs of shape"):
        dense(ember.Input((6,)))
    with pytest.raises(ValueError, match="takes a single tensor"):
        layers.Dense(2)([a, b])
    with pytest.raises(ValueError, match="takes a list of tensors"):
        layers.Add()(a)
    with pytest.raises(ValueError, match="same shape|one shape"):
        layers.Add()([a, layers.Dense(3)(b)])
    with pytest.raises(ValueError, match="symbolic tensors"):
        ember.Model(X, X)


def test_functional_model_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    e, k = functional(ember), functional(keras)
    e.set_weights(k.get_weights())
    np.testing.assert_allclose(e.predict(X, verbose=0), k.predict(X, verbose=0), atol=1e-6)
    ours, theirs = e.get_config(), k.get_config()
    assert set(ours) == set(theirs)
    for a, b in zip(ours["layers"], theirs["layers"]):
        assert set(a) == set(b), a["class_name"]
        assert a["class_name"] == b["class_name"]
    # Keras's functional summary shows the same rows.
    lines_e, lines_k = [], []
    e.summary(print_fn=lines_e.append)
    k.summary(print_fn=lambda s, **kw: lines_k.extend(s.splitlines()))
    assert [l.split("│")[2].strip() for l in lines_e if l.count("│") == 4] == \
        [l.split("│")[2].strip() for l in lines_k if l.count("│") == 4]


def test_get_layer_input_output_and_json():
    m = functional()
    assert m.get_layer(index=1) is m.layers[1]
    assert m.get_layer(name=m.layers[2].name) is m.layers[2]
    with pytest.raises(ValueError, match="No such layer: nope"):
        m.get_layer("nope")
    with pytest.raises(ValueError, match="only has 5 layers"):
        m.get_layer(index=9)
    with pytest.raises(ValueError, match="either a layer name or layer index"):
        m.get_layer()
    with pytest.raises(ValueError, match="only a layer name or a layer index"):
        m.get_layer("a", 1)
    assert m.input is m.inputs[0] and m.output is m.outputs[0]
    assert m.layers[1].input is m.layers[0].output
    assert m.layers[-1].output is m.output
    with pytest.raises(ValueError, match="never been called"):
        layers.Dense(3).output
    for model in (m, ember.Sequential([layers.Input((12,)), layers.Dense(4)])):
        text = model.to_json()
        assert json.loads(text)["class_name"] == type(model).__name__
        clone = ember.models.model_from_json(text)
        assert type(clone) is type(model)
        assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
        assert clone.predict(X, verbose=0).shape == model.predict(X, verbose=0).shape
    with pytest.raises(ValueError, match="model_from_json"):
        ember.models.model_from_json("{nope")


def test_to_json_matches_keras_layout():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    ours, theirs = json.loads(functional().to_json()), json.loads(functional(keras).to_json())
    assert ours["class_name"] == theirs["class_name"] == "Functional"
    assert {"module", "class_name", "config", "registered_name"} <= set(theirs)
    assert set(ours["config"]) == set(theirs["config"])


def test_a_call_with_training_false_always_infers():
    """Keras's transfer-learning idiom: `base(inputs, training=False)` keeps the base's
    BatchNormalization and Dropout in inference mode inside fit, frozen or not."""
    ember.set_random_seed(1)
    base = ember.Sequential([ember.Input((4,)), layers.Dense(6), layers.BatchNormalization(),
                             layers.Dropout(0.5)])
    inputs = ember.Input((4,))
    model = ember.Model(inputs, layers.Dense(1)(base(inputs, training=False)))
    model.compile(ember.optimizers.SGD(0.0), "mse")
    bn = base.layers[1]
    moving = [w.numpy() for w in bn.non_trainable_weights]
    x = np.random.default_rng(2).standard_normal((32, 4)).astype(np.float32)
    y = np.ones((32, 1), np.float32)
    # A training step's forward equals inference (in training mode the batch's statistics
    # and the dropped half would change it), and the moving statistics stay.
    np.testing.assert_allclose(model.train_on_batch(x, y), model.test_on_batch(x, y),
                               rtol=1e-6)
    for w, m in zip(bn.non_trainable_weights, moving):
        np.testing.assert_array_equal(w.numpy(), m)
    free = ember.Model(inputs, model.layers[-1](base(inputs)))  # the same layers
    free.compile(ember.optimizers.SGD(0.0), "mse")
    assert abs(free.train_on_batch(x, y) - free.test_on_batch(x, y)) > 1e-3
    # The same in a custom layer's call, and in a model called by a subclassed model.

    class Head(ember.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.base, self.out = base, layers.Dense(1)

        def call(self, x, training=None):
            return self.out(self.base(x, training=False))
    head = Head()
    head.compile(ember.optimizers.SGD(0.0), "mse")
    head.build((None, 4))
    np.testing.assert_allclose(head.train_on_batch(x, y), head.test_on_batch(x, y), rtol=1e-6)
