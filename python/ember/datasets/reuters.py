"""Reuters newswires: 11,228 wires as lists of word ids, 46 topics."""
import numpy as np

from ..utils.file_utils import get_file
from ._common import ORIGIN, WordIds, load_json, load_npz, require

SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
WORD_INDEX_MD5 = "4d44cc38712099c9e383dc6e5f11a921"
LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing",
    "money-supply", "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass",
    "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum",
    "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi",
    "iron-steel", "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem",
    "dlr", "gas", "silver", "wpi", "hog", "lead")


def load_data(path="reuters.npz", num_words=None, skip_top=0, maxlen=None, test_split=0.2,
              seed=113, start_char=1, oov_char=2, index_from=3):
    """Returns `(x_train, y_train), (x_test, y_test)`: object arrays of lists of word
    ids and int topic labels. Keras's arithmetic: shuffled with `RandomState(seed)`;
    ids shifted by `index_from` and prefixed by `start_char`; sequences of `maxlen`
    words or more dropped; ids outside [skip_top, num_words) replaced by `oov_char`
    (or dropped when it is None); the first int(n * (1 - test_split)) wires train."""
    path = get_file(fname=path, origin=ORIGIN + "reuters.npz", file_hash=SHA256)
    xs, labels = require(load_npz(path), ["x", "y"], path)
    order = np.arange(len(xs))
    np.random.RandomState(seed).shuffle(order)
    xs, labels = xs[order], labels[order]

    words = WordIds(list(xs))
    if start_char is not None or index_from:
        words.shift(start_char, index_from)
    if maxlen:
        keep = words.shorter_than(maxlen)
        words.keep(keep)
        labels = labels[keep]
    words.limit_vocabulary(num_words, skip_top, oov_char)
    n = len(labels)
    cut = int(n * (1 - test_split))
    return ((words.object_array(range(cut)), np.array(labels[:cut])),
            (words.object_array(range(cut, n)), np.array(labels[cut:])))


def get_word_index(path="reuters_word_index.json"):
    """The dict word -> rank (1 = most frequent) behind the word ids."""
    return load_json(get_file(path, origin=ORIGIN + "reuters_word_index.json",
                              file_hash=WORD_INDEX_MD5))


def get_label_names():
    """The 46 topic names, in label order."""
    return LABEL_NAMES
