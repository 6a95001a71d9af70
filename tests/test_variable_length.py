"""Inputs of any length (Input(shape=(None,)), Input(shape=(None, features))): a graph
per length, built on first use and kept in a bounded cache; masks make padding
irrelevant; against Keras 3 at several lengths; files; streams of mixed lengths."""
import numpy as np
import pytest

import ember
from ember import layers

from oracles import keras_or_skip

rng = np.random.default_rng(0)


def text_model(K=ember, units=6):
    inp = K.Input((None,), dtype="int32")
    x = K.layers.Embedding(50, 8, mask_zero=True)(inp)
    x = K.layers.LSTM(units)(x)
    return K.Model(inp, K.layers.Dense(1, activation="sigmoid")(x))


def test_any_length_and_padding_is_masked():
    ember.set_random_seed(1)
    m = text_model()
    assert m.input_shape == (None, None) and m.output_shape == (None, 1)
    m.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    for steps in (5, 9, 5, 12):
        loss, acc = m.train_on_batch(rng.integers(1, 50, (16, steps)), rng.integers(0, 2, 16))
        assert np.isfinite(loss)
    seq = rng.integers(1, 50, (3, 4))
    outs = [m.predict(np.pad(seq, ((0, 0), (0, pad))), verbose=0) for pad in (0, 3, 8)]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="incompatible"):
        m.predict(np.ones((2, 3, 4)), verbose=0)


def test_graph_cache_is_bounded_and_reused():
    m = text_model()
    m.compile("adam", "binary_crossentropy")
    for steps in range(1, 13):
        m.predict(rng.integers(1, 50, (2, steps)), verbose=0)
    assert len(m._graphs) == ember.Model._MAX_GRAPHS
    g = m._graphs[((12,),)]["_graph"]
    m.predict(rng.integers(1, 50, (2, 12)), verbose=0)
    assert m._graph is g  # the same graph, its buffers kept
    before = g.allocations
    for _ in range(3):
        m.train_on_batch(rng.integers(1, 50, (8, 12)), rng.integers(0, 2, 8))
    after_first = g.allocations
    m.train_on_batch(rng.integers(1, 50, (8, 12)), rng.integers(0, 2, 8))
    assert g.allocations == after_first  # steady state at a length already seen
    assert before <= after_first


def test_sequential_and_streams_of_mixed_lengths():
    ember.set_random_seed(2)
    m = ember.Sequential([ember.Input((None, 3)), layers.GRU(4, return_sequences=True),
                          layers.Dense(2)])
    assert m.output_shape == (None, None, 2)
    assert m.predict(np.ones((2, 5, 3), np.float32), verbose=0).shape == (2, 5, 2)
    assert m.predict(np.ones((2, 7, 3), np.float32), verbose=0).shape == (2, 7, 2)
    clf = ember.Sequential([ember.Input((None, 3)), layers.SimpleRNN(4), layers.Dense(1)])
    clf.compile("adam", "mse")

    def batches():
        for steps in (3, 6, 4, 6):
            yield (rng.standard_normal((8, steps, 3)).astype(np.float32),
                   rng.standard_normal((8, 1)).astype(np.float32))
    hist = clf.fit(batches(), epochs=1, steps_per_epoch=4, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    with pytest.raises(ValueError, match="Flatten.*unknown size"):
        ember.Sequential([ember.Input((None, 3)), layers.Flatten()])


def test_files_keep_the_unknown_length(tmp_path):
    m = text_model()
    path = str(tmp_path / "m.keras")
    m.save(path)
    assert m.get_config()["layers"][0]["config"]["batch_shape"] == [None, None]
    loaded = ember.saving.load_model(path)
    x = rng.integers(1, 50, (2, 6))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))


def test_same_as_keras_at_several_lengths():
    keras = keras_or_skip()
    k = text_model(keras)
    e = text_model(ember)
    e.set_weights(k.get_weights())
    for steps in (4, 11):
        x = rng.integers(0, 50, (8, steps))
        x[:, -2:] = 0  # padding, masked
        np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-6)
    k.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    e.compile(ember.optimizers.Adam(0.01), "binary_crossentropy")
    for steps in (4, 11):
        x = rng.integers(1, 50, (8, steps))
        y = rng.integers(0, 2, 8)
        assert abs(float(k.train_on_batch(x, y)) - float(e.train_on_batch(x, y))) < 1e-5
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_graphs_built_before_compile_train_after_it():
    m = text_model()
    for steps in (5, 7):
        m.predict(rng.integers(1, 50, (2, steps)), verbose=0)  # two graphs, no loss yet
    m.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    for steps in (5, 7, 5):
        loss, acc = m.train_on_batch(rng.integers(1, 50, (4, steps)), rng.integers(0, 2, 4))
        assert np.isfinite(loss) and 0 <= acc <= 1
    m.compile("adam", "mse")  # recompiled: every cached length takes the new loss
    for steps in (5, 7):
        assert np.isfinite(m.train_on_batch(rng.integers(1, 50, (4, steps)),
                                            rng.random((4, 1))))


def test_a_data_set_of_varying_lengths_reports_metrics():
    """The graph (and so the metrics' layout) is made at the first batch of the epoch."""
    m = ember.Sequential([ember.Input((None,)), layers.Embedding(20, 8, mask_zero=True),
                          layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])

    class Batches(ember.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.ones((4, 3 + i)), np.ones((4, 1))
    m.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    h = m.fit(Batches(), epochs=2, verbose=0).history
    assert set(h) == {"accuracy", "loss"} and len(h["accuracy"]) == 2
    assert 0 <= h["accuracy"][1] <= 1
