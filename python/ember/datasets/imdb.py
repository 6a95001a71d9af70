"""IMDB movie reviews: 25,000 + 25,000 reviews as lists of word ids, labels 0/1."""
import warnings

import numpy as np

from ..utils.file_utils import get_file
from ._common import ORIGIN, WordIds, load_json, load_npz, require

SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113,
              start_char=1, oov_char=2, index_from=3, **kwargs):
    """Returns `(x_train, y_train), (x_test, y_test)`: object arrays of lists of word
    ids and int labels, with Keras's arithmetic: each set shuffled with one
    `RandomState(seed)`; ids shifted by `index_from` and prefixed by `start_char`;
    sequences of `maxlen` words or more dropped; ids outside [skip_top, num_words)
    replaced by `oov_char` (or dropped when it is None). Word id i + index_from stands
    for the word ranked i in `get_word_index()`."""
    if kwargs:  # Keras 3 accepts and ignores them; say so rather than stay silent
        warnings.warn(f"imdb.load_data ignores the keyword arguments {sorted(kwargs)}",
                      stacklevel=2)
    path = get_file(fname=path, origin=ORIGIN + "imdb.npz", file_hash=SHA256)
    x_train, y_train, x_test, y_test = require(
        load_npz(path), ["x_train", "y_train", "x_test", "y_test"], path)
    rng = np.random.RandomState(seed)
    order = np.arange(len(x_train))
    rng.shuffle(order)
    x_train, y_train = x_train[order], y_train[order]
    order = np.arange(len(x_test))
    rng.shuffle(order)
    x_test, y_test = x_test[order], y_test[order]

    words = WordIds(list(x_train) + list(x_test))
    words.shift(start_char, index_from)
    labels = np.concatenate([y_train, y_test])
    n_train = len(x_train)
    if maxlen:
        keep = words.shorter_than(maxlen)
        n_train = int(keep[:n_train].sum())
        if n_train == 0 or n_train == int(keep.sum()):
            raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, "
                             "no sequence was kept. Increase maxlen.")
        words.keep(keep)
        labels = labels[keep]
    words.limit_vocabulary(num_words, skip_top, oov_char)
    n = len(labels)
    return ((words.object_array(range(n_train)), labels[:n_train]),
            (words.object_array(range(n_train, n)), labels[n_train:]))


def get_word_index(path="imdb_word_index.json"):
    """The dict word -> rank (1 = most frequent) behind the word ids."""
    return load_json(get_file(fname=path, origin=ORIGIN + "imdb_word_index.json",
                              file_hash=WORD_INDEX_MD5))
