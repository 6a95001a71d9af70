"""What the loaders share: Keras's download address, safe npz reading, the
shuffle-and-split of boston/reuters/digits/iris, and the word-index arithmetic of
imdb and reuters."""
import io
import os
import pickle
import zipfile

import numpy as np

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# What a data-set pickle may reference: numpy arrays and dtypes, nothing that runs code.
_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, strings and numbers, and refuses anything
    else (a data-set file is not allowed to run code)."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a data-set file: "
                                     "it may be corrupted or malicious.")


def _read_npy(buf):
    try:
        return np.lib.format.read_array(buf, allow_pickle=False)
    except ValueError:  # an object array: read it with the restricted unpickler
        buf.seek(0)
        version = np.lib.format.read_magic(buf)
        if version[0] == 1:
            np.lib.format.read_array_header_1_0(buf)
        else:
            np.lib.format.read_array_header_2_0(buf)
        return SafeUnpickler(buf).load()


def load_npz(path):
    """All arrays of an .npz file, object arrays (lists of word ids) included, read
    without unrestricted pickle. A damaged file raises ValueError naming it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {m[:-4]: _read_npy(io.BytesIO(archive.read(m)))
                    for m in archive.namelist() if m.endswith(".npy")}
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is not a readable data-set .npz file: {e}") from e


def require(arrays, keys, path):
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing}; it holds {sorted(arrays)}")
    return [arrays[k] for k in keys]


def shuffle_split(x, y, test_split, seed):
    """Keras's boston_housing split: shuffle with RandomState(seed), then the first
    int(n * (1 - test_split)) samples train and the rest test."""
    if not 0 <= test_split < 1:
        raise ValueError(f"Invalid `test_split` argument: {test_split}. It must be between "
                         "0 and 1 (exclusive of 1).")
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))


class WordIds:
    """Many sequences of word ids as one flat int64 array plus their lengths, so that
    Keras's per-word rules run as array operations."""

    def __init__(self, sequences):
        self.lengths = np.fromiter((len(s) for s in sequences), np.int64, len(sequences))
        parts = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        self.flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _segments(self):
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def shift(self, start_char, index_from):
        """Keras: every id + index_from, then start_char in front of each sequence
        (with start_char None, only the shift)."""
        self.flat = self.flat + (index_from or 0)
        if start_char is not None:
            starts = np.cumsum(self.lengths) - self.lengths
            self.flat = np.insert(self.flat, starts, start_char)
            self.lengths = self.lengths + 1

    def keep(self, mask):
        """Keeps the sequences where mask is true."""
        self.flat = self.flat[np.repeat(mask, self.lengths)]
        self.lengths = self.lengths[mask]

    def shorter_than(self, maxlen):
        """Keras's remove_long_seq keeps sequences strictly shorter than maxlen."""
        return self.lengths < maxlen

    def limit_vocabulary(self, num_words, skip_top, oov_char):
        """Keras: ids outside [skip_top, num_words) become oov_char, or are dropped when
        oov_char is None. Without num_words Keras takes the largest id present, which,
        the bound being exclusive, sends that largest id itself to oov_char too."""
        if not num_words:
            num_words = int(self.flat.max()) if self.flat.size else 0
        inside = (self.flat >= skip_top) & (self.flat < num_words)
        if oov_char is not None:
            self.flat = np.where(inside, self.flat, oov_char)
        else:
            self.lengths = np.bincount(self._segments()[inside],
                                       minlength=len(self.lengths)).astype(np.int64)
            self.flat = self.flat[inside]

    def take(self, rows):
        ends = np.cumsum(self.lengths)
        return [self.flat[ends[i] - self.lengths[i]:ends[i]].tolist() for i in rows]

    def object_array(self, rows):
        """np.array(lists, dtype=object), as Keras returns the word-id lists."""
        return np.array(self.take(rows), dtype="object")


def load_json(path):
    import json
    with open(path) as f:
        return json.load(f)


def packaged(name):
    return os.path.join(os.path.dirname(__file__), "data", name)
