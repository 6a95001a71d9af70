"""StringLookup, IntegerLookup, TextVectorization, CategoryEncoding and Discretization:
the results Keras documents for them (Keras 3 needs TensorFlow for the string layers,
so these are the oracle), the two numeric layers inside a model, and bad input."""
import numpy as np
import pytest

import ember
from ember import layers

VOCAB = ["a", "b", "c", "d"]
DATA = [["a", "c", "d", "d"], ["d", "z", "b", "z"]]


def test_string_lookup_as_keras_documents_it():
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB)(
        [["a", "c", "d"], ["d", "z", "b"]]), [[1, 3, 4], [4, 0, 2]])
    adapted = layers.StringLookup()
    adapted.adapt([["a", "c", "d"], ["d", "z", "b"]])
    # by falling count, ties by falling token
    assert adapted.get_vocabulary() == ["[UNK]", "d", "z", "c", "b", "a"]
    np.testing.assert_array_equal(adapted([["a", "c", "d"], ["d", "z", "b"]]),
                                  [[5, 3, 1], [1, 2, 4]])
    np.testing.assert_array_equal(
        layers.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(["a", "b", "c", "d", "z"]),
        np.eye(5)[[1, 2, 3, 4, 0]])
    np.testing.assert_array_equal(
        layers.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(DATA),
        [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(
        layers.StringLookup(vocabulary=VOCAB, output_mode="count")(DATA),
        [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]])
    tfidf = layers.StringLookup(output_mode="tf_idf")
    tfidf.set_vocabulary(VOCAB, idf_weights=[0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(tfidf(DATA), [[0, 0.25, 0, 0.6, 0.8], [1.0, 0, 0.75, 0, 0.4]])
    tfidf.set_vocabulary(["[UNK]"] + VOCAB, idf_weights=[0.9, 0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(tfidf(DATA), [[0, 0.25, 0, 0.6, 0.8], [1.8, 0, 0.75, 0, 0.4]])
    inverse = layers.StringLookup(vocabulary=VOCAB, invert=True)
    np.testing.assert_array_equal(inverse(np.array([[1, 3, 4], [4, 0, 2]])),
                                  [["a", "c", "d"], ["d", "[UNK]", "b"]])
    masked = layers.StringLookup(vocabulary=VOCAB, mask_token="")
    assert masked.get_vocabulary() == ["", "[UNK]"] + VOCAB
    np.testing.assert_array_equal(masked([["a", ""], ["q", "d"]]), [[2, 0], [1, 5]])
    again = layers.StringLookup.from_config(adapted.get_config())
    assert again.get_vocabulary() == adapted.get_vocabulary()


def test_integer_lookup_and_max_tokens():
    np.testing.assert_array_equal(
        layers.IntegerLookup(vocabulary=[12, 36, 1138, 42])(np.array([[12, 1138, 42],
                                                                      [42, 1000, 36]])),
        [[1, 3, 4], [4, 0, 2]])
    lookup = layers.IntegerLookup(max_tokens=3)
    lookup.adapt(np.array([7, 7, 7, 3, 3, 9]))
    assert lookup.get_vocabulary() == [-1, 7, 3]
    np.testing.assert_array_equal(lookup(np.array([9, 3, 7])), [0, 2, 1])


def test_text_vectorization_as_keras_documents_it():
    vectorizer = layers.TextVectorization(max_tokens=5000, output_mode="int",
                                          output_sequence_length=4)
    vectorizer.adapt(["foo bar", "bar baz", "baz bada boom"])
    np.testing.assert_array_equal(vectorizer([["foo qux bar"], ["qux baz"]]),
                                  [[4, 1, 3, 0], [1, 2, 0, 0]])
    given = layers.TextVectorization(output_sequence_length=4,
                                     vocabulary=["earth", "wind", "and", "fire"])
    assert given.get_vocabulary() == ["", "[UNK]", "earth", "wind", "and", "fire"]
    # Standardization (lower case, punctuation gone), padded to the length given or,
    # without one, to the batch's longest text.
    np.testing.assert_array_equal(given(["Earth, WIND & fire!", "and"]),
                                  [[2, 3, 5, 0], [4, 0, 0, 0]])
    free = layers.TextVectorization(vocabulary=["earth", "wind", "and", "fire"])
    np.testing.assert_array_equal(free(["Earth, WIND & fire!", "and"]), [[2, 3, 5], [4, 0, 0]])


def test_text_vectorization_ngrams_and_tf_idf():
    texts = ["the cat sat", "the dog", "a cat"]
    bigrams = layers.TextVectorization(ngrams=2, output_mode="multi_hot", max_tokens=6)
    bigrams.adapt(texts)
    assert bigrams.get_vocabulary() == ["[UNK]", "the", "cat", "the dog", "the cat", "sat"]
    np.testing.assert_array_equal(bigrams(["the cat", "zebra"]),
                                  [[0, 1, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0]])
    tfidf = layers.TextVectorization(output_mode="tf_idf")
    tfidf.adapt(texts)
    idf = np.log(1 + 3 / (1 + np.array([2, 2, 1, 1, 1])))  # the, cat, sat, dog, a
    out = tfidf(["the cat cat", "zebra"])
    np.testing.assert_allclose(out[0], [0, idf[0], 2 * idf[1], 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [idf.mean(), 0, 0, 0, 0, 0], rtol=1e-6)


def test_vectorized_text_trains_a_model():
    texts = ["good great fine", "bad awful poor", "great good", "poor bad", "fine good"] * 20
    labels = np.array([1, 0, 1, 0, 1] * 20)
    vectorizer = layers.TextVectorization(output_sequence_length=3)
    vectorizer.adapt(texts)
    ids = vectorizer(texts)
    m = ember.Sequential([ember.Input((3,), dtype="int32"),
                          layers.Embedding(vectorizer.vocabulary_size(), 4),
                          layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    m.compile(ember.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    m.fit(ids, labels, epochs=30, verbose=0)
    assert m.evaluate(ids, labels, verbose=0)[1] == 1.0


def test_category_encoding_and_discretization_in_and_out_of_models():
    enc = layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")
    np.testing.assert_array_equal(enc([3, 2, 0, 1]), np.eye(4)[[3, 2, 0, 1]])
    ids = np.array([[0, 1], [0, 0], [1, 2], [3, 1]])
    multi = [[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]
    count = [[1, 1, 0, 0], [2, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]
    np.testing.assert_array_equal(layers.CategoryEncoding(4)(ids), multi)
    np.testing.assert_array_equal(layers.CategoryEncoding(4, output_mode="count")(ids), count)
    x = np.array([[-1.5, 1.0, 3.4, 0.5], [0.0, 3.0, 1.3, 0.0]])
    disc = layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0])
    np.testing.assert_array_equal(disc(x), [[0, 2, 3, 1], [1, 3, 2, 1]])
    # Inside a model: the core computes them.
    i = ember.Input((2,))
    m = ember.Model(i, layers.CategoryEncoding(4, output_mode="count")(i))
    np.testing.assert_array_equal(m.predict(ids, verbose=0), count)
    j = ember.Input((4,))
    m = ember.Model(j, layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0])(j))
    np.testing.assert_array_equal(m.predict(x, verbose=0), [[0, 2, 3, 1], [1, 3, 2, 1]])
    adapted = layers.Discretization(num_bins=4)
    adapted.adapt(np.arange(100.0))
    np.testing.assert_allclose(adapted.bin_boundaries, [24.75, 49.5, 74.25])


def test_bad_input_names_the_layer_and_the_value():
    with pytest.raises(ValueError, match=r"runs on NumPy arrays before the model.*Input"):
        layers.TextVectorization()(layers.Dense(1)(ember.Input((1,))))
    with pytest.raises(ValueError, match=r"StringLookup '.*' has no vocabulary"):
        layers.StringLookup()(["a"])
    with pytest.raises(ValueError, match="num_oov_indices.*-2"):
        layers.StringLookup(num_oov_indices=-2)
    with pytest.raises(ValueError, match="'zz' is not in the vocabulary"):
        layers.StringLookup(vocabulary=VOCAB, num_oov_indices=0)(["a", "zz"])
    with pytest.raises(ValueError, match="repeated token 'a'"):
        layers.StringLookup(vocabulary=["a", "b", "a"])
    with pytest.raises(ValueError, match="unknown output_mode 'binary'"):
        layers.StringLookup(output_mode="binary")
    with pytest.raises(ValueError, match="output_sequence_length must be a positive"):
        layers.TextVectorization(output_mode="multi_hot", output_sequence_length=4)
    with pytest.raises(ValueError, match=r"ids must be integers in \[0, 3\).*5"):
        layers.CategoryEncoding(3)([[0, 5]])
    with pytest.raises(ValueError, match="adapt needs texts"):
        layers.TextVectorization().adapt([])
    with pytest.raises(ValueError, match="adapt needs data"):
        layers.StringLookup().adapt(np.array([], dtype=object))
    with pytest.raises(ValueError, match="bin_boundaries must increase"):
        layers.Discretization(bin_boundaries=[1.0, 0.0])
    with pytest.raises(ValueError, match="IntegerLookup .* takes integers.*'x'"):
        layers.IntegerLookup(vocabulary=[1, 2])(np.array(["x"], dtype=object))
