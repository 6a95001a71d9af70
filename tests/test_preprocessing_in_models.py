"""String preprocessing layers first in a model: the model takes raw strings, applies
the layers to each batch before its compiled graph, and saves them (vocabulary
included) in its file. Every way to build such a model: Input first, lazily, the
functional API, and Keras's end-to-end idiom around a trained model."""
import numpy as np
import pytest

import ember
from ember import layers

GOOD = ["good great fine", "great good", "fine good nice", "nice great day"]
BAD = ["bad awful poor", "awful bad", "poor bad sad", "sad awful day"]
TEXTS = np.array(GOOD * 6 + BAD * 6)
LABELS = np.array([1.0] * 24 + [0.0] * 24, np.float32)


def vectorizer(length=5):
    v = layers.TextVectorization(max_tokens=20, output_sequence_length=length)
    v.adapt(TEXTS)
    return v


def head():
    return [layers.Embedding(20, 8), layers.GlobalAveragePooling1D(),
            layers.Dense(1, activation="sigmoid")]


def trained(model):
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(TEXTS, LABELS, epochs=80, batch_size=8, verbose=0)
    return model


def check_round_trip(model, tmp_path):
    expect = model.predict(TEXTS[:5], verbose=0)
    model.save(tmp_path / "m.keras")
    back = ember.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(back.predict(TEXTS[:5], verbose=0), expect)
    v = [layer for layer in back.layers if isinstance(layer, layers.TextVectorization)][0]
    assert v.get_vocabulary()[:2] == ["", "[UNK]"] and "good" in v.get_vocabulary()
    return back


@pytest.mark.parametrize("style", ["input_first", "lazy", "input_shape"])
def test_sequential_takes_raw_strings(style, tmp_path):
    ember.set_random_seed(0)
    first = {"input_first": [ember.Input((1,), dtype="string")], "lazy": [],
             "input_shape": []}[style]
    v = vectorizer() if style != "input_shape" else layers.TextVectorization(
        max_tokens=20, output_sequence_length=5, input_shape=(1,))
    if style == "input_shape":
        v.adapt(TEXTS)
    model = trained(ember.Sequential(first + [v] + head()))
    loss, acc = model.evaluate(TEXTS, LABELS, verbose=0)
    assert acc == 1.0
    # The same numbers as the layers applied by hand.
    ids = v(TEXTS[:5])
    inner = ember.Sequential([ember.Input((5,))] + model.layers[1:])
    np.testing.assert_allclose(model.predict(TEXTS[:5], verbose=0),
                               inner.predict(ids.astype(np.float32), verbose=0), atol=1e-6)
    assert model(TEXTS[:2]).shape == (2, 1)
    back = check_round_trip(model, tmp_path)
    assert back.get_config()["layers"][0]["config"]["dtype"] == "string"


def test_functional_with_a_string_input_and_a_numeric_one(tmp_path):
    ember.set_random_seed(1)
    text = ember.Input((1,), dtype="string", name="text")
    kind = ember.Input((1,), dtype="string", name="kind")
    size = ember.Input((2,), name="size")
    lookup = layers.StringLookup(output_mode="one_hot")
    lookup.adapt(np.array(["a", "b", "c"]))
    x = layers.GlobalAveragePooling1D()(layers.Embedding(20, 8)(vectorizer()(text)))
    x = layers.Concatenate()([x, lookup(kind), size])
    out = layers.Dense(1, activation="sigmoid")(x)
    model = ember.Model([text, kind, size], out)
    assert model.input_names == ["text", "kind", "size"]
    kinds = np.array(["a", "b", "c", "zz"] * 12)[:, None]
    sizes = np.zeros((48, 2), np.float32)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit({"text": TEXTS, "kind": kinds, "size": sizes}, LABELS, epochs=80, batch_size=8,
              verbose=0)
    assert model.evaluate([TEXTS, kinds, sizes], LABELS, verbose=0)[1] == 1.0
    expect = model.predict([TEXTS[:4], kinds[:4], sizes[:4]], verbose=0)
    model.save(tmp_path / "f.keras")
    back = ember.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(back.predict([TEXTS[:4], kinds[:4], sizes[:4]], verbose=0),
                                  expect)


def test_keras_end_to_end_idiom_around_a_trained_model(tmp_path):
    ember.set_random_seed(2)
    v = vectorizer()
    model = ember.Sequential([ember.Input((5,), dtype="int64")] + head())
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(v(TEXTS), LABELS, epochs=80, batch_size=8, verbose=0)
    inputs = ember.Input(shape=(1,), dtype="string")
    end_to_end = ember.Model(inputs, model(v(inputs)))
    end_to_end.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    assert end_to_end.evaluate(TEXTS, LABELS, verbose=0)[1] == 1.0
    np.testing.assert_allclose(end_to_end.predict(np.array(["good great", "awful sad"]),
                                                  verbose=0),
                               model.predict(v(np.array(["good great", "awful sad"])),
                                             verbose=0), atol=1e-6)
    check_round_trip(end_to_end, tmp_path)


def test_a_tape_takes_raw_strings():
    model = ember.Sequential([ember.Input((1,), dtype="string"), vectorizer()] + head())
    with ember.GradientTape() as tape:
        loss = ember.losses.BinaryCrossentropy()(LABELS[:4], model(TEXTS[:4], training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == 3 and all(np.isfinite(g).all() for g in grads)


def test_variable_length_vectorization_and_a_data_set(tmp_path):
    ember.set_random_seed(3)
    v = layers.TextVectorization(max_tokens=20)
    v.adapt(TEXTS)
    model = ember.Sequential([ember.Input((1,), dtype="string"), v,
                              layers.Embedding(20, 8, mask_zero=True),
                              layers.GlobalAveragePooling1D(),
                              layers.Dense(1, activation="sigmoid")])

    class Texts(ember.utils.PyDataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return TEXTS[i::6], LABELS[i::6]
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(Texts(), epochs=80, verbose=0)
    assert model.evaluate(TEXTS, LABELS, verbose=0)[1] == 1.0


def test_other_preprocessing_layers_and_modes():
    lazy = ember.Sequential([layers.Hashing(8, output_mode="one_hot"), layers.Dense(1)])
    assert lazy.predict(np.array([[1.5], [7.0]]), verbose=0).shape == (2, 1)
    assert lazy.get_config()["layers"][0]["config"]["dtype"] == "float32"
    hashed = ember.Sequential([ember.Input((1,), dtype="string"),
                               layers.Hashing(8, output_mode="one_hot"), layers.Dense(1)])
    assert hashed.predict(np.array([["a"], ["b"]]), verbose=0).shape == (2, 1)
    assert hashed.input_shape == (None, 1)  # strings, as Keras reports it
    counts = layers.TextVectorization(output_mode="count")
    counts.adapt(TEXTS)
    m = ember.Sequential([ember.Input((1,), dtype="string"), counts, layers.Dense(1)])
    assert m.predict(TEXTS[:3], verbose=0).shape == (3, 1)
    ids = layers.IntegerLookup(vocabulary=[10, 20, 30])
    m = ember.Sequential([ember.Input((3,), dtype="int64"), ids, layers.Embedding(4, 2),
                          layers.Flatten()])
    np.testing.assert_array_equal(m.predict(np.array([[10, 30, 99]]), verbose=0).shape, (1, 6))


def test_what_cannot_be_done_says_so():
    v = vectorizer()
    x = ember.Input((4,))
    with pytest.raises(ValueError, match="on an Input"):
        v(layers.Dense(2)(x))
    unadapted = layers.StringLookup(output_mode="one_hot")
    with pytest.raises(ValueError, match="no vocabulary"):
        ember.Sequential([ember.Input((1,), dtype="string"), unadapted, layers.Dense(1)])
    plain = ember.Sequential([ember.Input((1,)), layers.Dense(1)])
    with pytest.raises(ValueError, match="numeric"):
        plain.predict(np.array([["text"]]), verbose=0)
    text = ember.Input((1,), dtype="string")
    ids = v(text)
    with pytest.raises(ValueError, match="only reader"):
        ember.Model(text, layers.Concatenate()([layers.Dense(1)(ids), layers.Dense(1)(text)]))
