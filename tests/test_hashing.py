"""Hashing, and lookups with several OOV indices: Keras's buckets (FarmHash's
Fingerprint64, SipHash-2-4 under a salt, floormod for integers), checked on the values
Keras documents and tests (they need TensorFlow, which Keras's JAX install lacks)."""
import numpy as np
import pytest

import ember
from ember import _core, layers

LETTERS = [["A"], ["B"], ["C"], ["D"], ["E"]]


def test_fingerprint_and_siphash_of_known_strings():
    # Fingerprint64 values published with FarmHash's ports, one per length branch
    # (up to 16, 32, 64 bytes and longer), compared through their buckets modulo two
    # primes (the binding returns buckets, not the 64-bit values).
    known = {"test": 8581389452482819506, "test" * 8: 14250503356343785354,
             "test" * 64: 3500507768004279527,
             "7.b^/n=oR_w(vLN?c?xN<5t$p8HY2!s:U": 2506644862971557451,
             "F7479877-4690-4A44-AFC9-8FE987EA512F:some_other_id": 6862335115798125349}
    for p in (1000003, 2 ** 31 - 1):
        np.testing.assert_array_equal(_core.hash_buckets(list(known), p),
                                      [v % p for v in known.values()])
    assert _core.hash_buckets(["A", b"A"], 7).tolist()[0] == _core.hash_buckets([b"A"], 7)[0]


def test_hashing_layer_matches_keras_documented_outputs():
    np.testing.assert_array_equal(layers.Hashing(3)(LETTERS), [[1], [0], [1], [1], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, mask_value="")(
        [["A"], ["B"], [""], ["C"], ["D"]]), [[1], [1], [0], [2], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, salt=[133, 137])(LETTERS),
                                  [[1], [2], [1], [0], [2]])
    np.testing.assert_array_equal(layers.Hashing(3, salt=133)(LETTERS),
                                  [[0], [0], [2], [1], [0]])
    np.testing.assert_array_equal(layers.Hashing(3)(np.array([0, 1, 2, 3, 4])), [1, 0, 1, 0, 2])
    np.testing.assert_array_equal(layers.Hashing(3)([0.0, 1.9, 2.5, 3.0, 4.2]), [1, 0, 1, 0, 2])
    np.testing.assert_array_equal(layers.Hashing(1)(LETTERS), np.zeros((5, 1)))
    words = np.asarray([["omar"], ["stringer"], ["marlo"], ["wire"], ["skywalker"]])
    np.testing.assert_array_equal(layers.Hashing(2)(words), [[0], [0], [1], [0], [0]])
    assert layers.Hashing(3)(LETTERS).dtype == np.int64


def test_hashing_output_modes():
    hot = layers.Hashing(3, output_mode="one_hot")(LETTERS)
    np.testing.assert_array_equal(hot, np.eye(3, dtype=np.float32)[[1, 0, 1, 1, 2]])
    multi = layers.Hashing(3, output_mode="multi_hot")([["A", "B", "C"]])
    np.testing.assert_array_equal(multi, [[1.0, 1.0, 0.0]])
    count = layers.Hashing(3, output_mode="count")([["A", "C", "E"]])
    np.testing.assert_array_equal(count, [[0.0, 2.0, 1.0]])


def test_hashing_config_and_bad_arguments():
    h = layers.Hashing(5, mask_value="", salt=7, name="h")
    c = h.get_config()
    assert (c["num_bins"], c["mask_value"], c["salt"], c["output_mode"]) == (5, "", [7, 7], "int")
    again = layers.Hashing.from_config(c)
    np.testing.assert_array_equal(again(LETTERS), h(LETTERS))
    for bad in (None, 0, -1, 2.5):
        with pytest.raises(ValueError, match="num_bins"):
            layers.Hashing(bad)
    with pytest.raises(ValueError, match="salt"):
        layers.Hashing(2, salt="string")
    with pytest.raises(ValueError, match="salt"):
        layers.Hashing(2, salt=[1])
    with pytest.raises(ValueError, match="output_mode"):
        layers.Hashing(2, output_mode="tf_idf")
    with pytest.raises(ValueError, match="NaN"):
        layers.Hashing(2)([1.0, float("nan")])
    with pytest.raises(ValueError, match="on an Input"):
        ember.Sequential([ember.Input((1,)), layers.Dense(2), layers.Hashing(3)])


def test_lookups_with_several_oov_indices_as_keras_documents():
    s = layers.StringLookup(vocabulary=["a", "b", "c", "d"], num_oov_indices=2)
    np.testing.assert_array_equal(s([["a", "c", "d"], ["m", "z", "b"]]), [[2, 4, 5], [0, 1, 3]])
    assert s.get_vocabulary()[:3] == ["[UNK]", "[UNK]", "a"]
    i = layers.IntegerLookup(vocabulary=[12, 36, 1138, 42], num_oov_indices=2)
    np.testing.assert_array_equal(i([[12, 1138, 42], [37, 1000, 36]]), [[2, 4, 5], [1, 0, 3]])
    oov = np.array([100, 300, 700, 1100, 1700, 2000])
    np.testing.assert_array_equal(layers.IntegerLookup(
        vocabulary=[10, 20, 30], num_oov_indices=4, oov_method="floormod")(oov), [0] * 6)
    np.testing.assert_array_equal(layers.IntegerLookup(
        vocabulary=[10, 20, 30], num_oov_indices=4, oov_method="farmhash")(oov),
        [3, 3, 2, 2, 0, 1])
    # negative ids: floormod keeps the bucket in [0, n)
    np.testing.assert_array_equal(layers.IntegerLookup(
        vocabulary=[1], num_oov_indices=3)([-1, -5]), [2, 1])


def test_several_oov_indices_with_a_mask_adapt_and_salt():
    s = layers.StringLookup(num_oov_indices=3, mask_token="", salt=[133, 137])
    s.adapt(np.array(["x", "y", "y", "z"]))
    vocab = s.get_vocabulary()
    assert vocab[:4] == ["", "[UNK]", "[UNK]", "[UNK]"] and vocab[4] == "y"
    out = s(np.array(["", "y", "A", "B", "C"]))
    expect = 1 + _core.hash_buckets(["A", "B", "C"], 3, (133, 137))
    np.testing.assert_array_equal(out, [0, 4, *expect])
    hot = layers.StringLookup(vocabulary=["y"], num_oov_indices=2, output_mode="one_hot")
    np.testing.assert_array_equal(hot(np.array(["y", "A"])).argmax(1),
                                  [2, _core.hash_buckets(["A"], 2)[0]])
    back = layers.StringLookup.from_config(s.get_config())
    np.testing.assert_array_equal(back(np.array(["A", "B", "C"])), out[2:])
    with pytest.raises(ValueError, match="oov_method='farmhash'"):
        layers.IntegerLookup(num_oov_indices=2, salt=3)
    with pytest.raises(ValueError, match="num_oov_indices"):
        layers.StringLookup(num_oov_indices=-1)

