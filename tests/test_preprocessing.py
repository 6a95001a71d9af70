"""Tokenizer and pad_sequences on cases worked out by hand from Keras's documented
behaviour (Keras 2's keras.preprocessing, which Keras 3 no longer ships)."""
import json
import math

import numpy as np
import pytest

import ember
from ember.preprocessing.sequence import pad_sequences
from ember.preprocessing.text import Tokenizer, text_to_word_sequence, tokenizer_from_json

TEXTS = ["The cat sat on the mat.", "The dog ate my homework!", "My cat, the dog?"]


def test_text_to_word_sequence():
    assert text_to_word_sequence("Hello, World!  Foo-bar\tbaz") == ["hello", "world", "foo",
                                                                   "bar", "baz"]
    assert text_to_word_sequence("A,B", filters="", lower=False, split=",") == ["A", "B"]


def test_word_index_by_frequency_then_first_appearance():
    t = Tokenizer()
    t.fit_on_texts(TEXTS)
    # the: 4, cat 2, dog 2, my 2 (in order of first appearance), then the singletons.
    assert list(t.word_index.items())[:4] == [("the", 1), ("cat", 2), ("dog", 3), ("my", 4)]
    assert list(t.word_index)[4:] == ["sat", "on", "mat", "ate", "homework"]
    assert t.word_counts["the"] == 4 and t.word_docs["the"] == 3 and t.word_docs["cat"] == 2
    assert t.index_word[1] == "the" and t.index_docs[t.word_index["dog"]] == 2
    assert t.document_count == 3
    assert t.texts_to_sequences(["the cat ate a fish"]) == [[1, 2, 8]]  # unknown dropped


def test_num_words_and_oov_token():
    t = Tokenizer(num_words=4, oov_token="<OOV>")
    t.fit_on_texts(TEXTS)
    assert t.word_index["<OOV>"] == 1 and t.word_index["the"] == 2
    # ids >= num_words (cat=3 kept; dog=4, my=5, ... become the oov id 1)
    assert t.texts_to_sequences(["the cat dog zebra"]) == [[2, 3, 1, 1]]
    assert t.sequences_to_texts([[2, 3, 4, 99]]) == ["the cat <OOV> <OOV>"]
    plain = Tokenizer(num_words=3)
    plain.fit_on_texts(TEXTS)
    assert plain.texts_to_sequences(["the cat dog"]) == [[1, 2]]
    assert plain.sequences_to_texts([[1, 2, 3]]) == ["the cat"]


def test_char_level_and_token_lists():
    t = Tokenizer(char_level=True)
    t.fit_on_texts(["aab", "Ba"])
    assert t.word_index == {"a": 1, "b": 2}
    assert t.texts_to_sequences(["abc"]) == [[1, 2]]
    t = Tokenizer(lower=False)
    t.fit_on_texts([["New", "York"], ["York"]])
    assert t.word_index == {"York": 1, "New": 2}


def test_texts_to_matrix_modes():
    t = Tokenizer()
    t.fit_on_texts(TEXTS)
    docs = ["the the cat", "dog"]
    n = len(t.word_index) + 1
    binary = t.texts_to_matrix(docs, mode="binary")
    assert binary.shape == (2, n) and binary[0, 1] == 1 and binary[0, 2] == 1
    assert binary[0].sum() == 2
    count = t.texts_to_matrix(docs, mode="count")
    assert count[0, 1] == 2 and count[0, 2] == 1
    freq = t.texts_to_matrix(docs, mode="freq")
    assert freq[0, 1] == pytest.approx(2 / 3) and freq[1, 3] == 1
    tfidf = t.texts_to_matrix(docs, mode="tfidf")
    # tf = 1 + ln(count); idf = ln(1 + documents / (1 + documents containing the word))
    assert tfidf[0, 1] == pytest.approx((1 + math.log(2)) * math.log(1 + 3 / (1 + 3)))
    assert tfidf[1, 3] == pytest.approx(1 * math.log(1 + 3 / (1 + 2)))
    with pytest.raises(ValueError, match="mode"):
        t.texts_to_matrix(docs, mode="onehot")
    with pytest.raises(ValueError, match="num_words"):
        Tokenizer().texts_to_matrix(docs)
    with pytest.raises(ValueError, match="tfidf"):
        Tokenizer(num_words=5).sequences_to_matrix([[1]], mode="tfidf")


def test_json_round_trip_in_keras_layout():
    t = Tokenizer(num_words=6, oov_token="?")
    t.fit_on_texts(TEXTS)
    s = t.to_json()
    data = json.loads(s)
    assert data["class_name"] == "Tokenizer"
    assert set(data["config"]) == {"num_words", "filters", "lower", "split", "char_level",
                                   "oov_token", "document_count", "word_counts", "word_docs",
                                   "index_docs", "index_word", "word_index"}
    back = tokenizer_from_json(s)
    assert back.word_index == t.word_index and back.index_word == t.index_word
    assert back.texts_to_sequences(TEXTS) == t.texts_to_sequences(TEXTS)
    np.testing.assert_array_equal(back.texts_to_matrix(TEXTS, "tfidf"),
                                  t.texts_to_matrix(TEXTS, "tfidf"))
    with pytest.raises(ValueError, match="Tokenizer JSON"):
        tokenizer_from_json('{"config": {}}')


def test_tokenizer_bad_input():
    with pytest.raises(TypeError, match="list of texts"):
        Tokenizer().fit_on_texts("one string")
    with pytest.raises(TypeError, match="strings"):
        Tokenizer().fit_on_texts([3])
    with pytest.raises(ValueError, match="num_words"):
        Tokenizer(num_words=-1)


def test_pad_sequences_defaults_pre():
    out = pad_sequences([[1, 2, 3], [4, 5], [6]])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[1, 2, 3], [0, 4, 5], [0, 0, 6]])


def test_pad_sequences_options():
    seqs = [[1, 2, 3, 4], [5], []]
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2),
                                  [[3, 4], [0, 5], [0, 0]])  # truncating='pre' keeps the end
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=3, padding="post",
                                                truncating="post", value=-1),
                                  [[1, 2, 3], [5, -1, -1], [-1, -1, -1]])
    f = pad_sequences([[0.5], [1.5, 2.5]], dtype="float32", value=9)
    assert f.dtype == np.float32 and f.tolist() == [[9, 0.5], [1.5, 2.5]]
    vec = pad_sequences([[[1, 2]], [[3, 4], [5, 6]]])  # elements with a shape of their own
    assert vec.shape == (2, 2, 2) and vec[0].tolist() == [[0, 0], [1, 2]]
    s = pad_sequences([["a"], ["b", "c"]], dtype=object, value="")
    assert s.tolist() == [["", "a"], ["b", "c"]]
    assert pad_sequences([[1, 2]], maxlen=0).shape == (1, 0)
    assert ember.utils.pad_sequences is pad_sequences


def test_pad_sequences_bad_input():
    with pytest.raises(ValueError, match="Padding type"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="Truncating type"):
        pad_sequences([[1]], truncating="middle")
    with pytest.raises(ValueError, match="non-iterable"):
        pad_sequences([1, 2])
    with pytest.raises(ValueError, match="iterable"):
        pad_sequences(5)
    with pytest.raises(ValueError, match="dtype"):
        pad_sequences([[1]], value="x")
    with pytest.raises(ValueError, match="different from expected shape"):
        pad_sequences([[[1, 2]], [[1, 2, 3]]])
