"""Utilities Keras users reach for: to_categorical, set_random_seed, get_file,
pad_sequences, PyDataset, normalize, split_dataset, timeseries_dataset_from_array,
text_dataset_from_directory, image_dataset_from_directory, load_img, img_to_array,
plot_model."""
import numpy as np

from .. import _random
from ..preprocessing.sequence import pad_sequences
from .dataset import PyDataset
from .directory import (image_dataset_from_directory, img_to_array, load_img,
                        text_dataset_from_directory)
from .file_utils import get_file
from .plot import model_to_dot, plot_model


def set_random_seed(seed):
    """Seeds every random draw ember makes (and Python's and NumPy's generators)."""
    _random.set_seed(seed)


def to_categorical(x, num_classes=None):
    """One-hot encodes integer class ids: shape (..., ) -> (..., num_classes), float32.

    As in Keras, a trailing axis of size 1 is dropped first.
    """
    y = np.asarray(x)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("to_categorical expects integer class ids. Received a non-integer value")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical expects non-negative class ids. Received: {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"Class id {int(y.max())} is out of range for num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=np.float32)
    if y.size:
        np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along `axis` (zero norms leave x as it is)."""
    x = np.asarray(x, dtype=np.float32)
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis if axis is not None else -1)


def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None):
    """Splits an array, or a tuple/list of arrays with the same number of samples, into
    (left, right) of the same structure, as Keras's split_dataset does with its sizes: a
    float is a fraction (rounded), an int a count, None the complement."""
    arrays = list(dataset) if isinstance(dataset, (tuple, list)) else [dataset]
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("split_dataset: every array must have the same number of samples. "
                         f"Received lengths {[len(a) for a in arrays]}")
    if left_size is None and right_size is None:
        left_size = 0.5

    def size(v, name):
        if v is None:
            return None
        if isinstance(v, float):
            if not 0 < v < 1:
                raise ValueError(f"{name} as a float must be in (0, 1). Received: {v}")
            return round(v * n)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v <= n:
            return int(v)
        raise ValueError(f"{name} must be a float in (0, 1) or an int in (0, {n}]. "
                         f"Received: {name}={v!r}")
    left, right = size(left_size, "left_size"), size(right_size, "right_size")
    left = n - right if left is None else left
    right = n - left if right is None else right
    if left + right > n or left <= 0 or right <= 0:
        raise ValueError(f"split_dataset: sizes {left} + {right} do not fit {n} samples")
    order = np.arange(n)
    if shuffle:
        np.random.default_rng(seed).shuffle(order)
    lefts = [a[order[:left]] for a in arrays]
    rights = [a[order[left:left + right]] for a in arrays]
    if isinstance(dataset, (tuple, list)):
        return type(dataset)(lefts), type(dataset)(rights)
    return lefts[0], rights[0]


class _Timeseries(PyDataset):
    """The batches of timeseries_dataset_from_array: (sequences, targets) or sequences."""

    def __init__(self, data, targets, starts, length, rate, batch_size):
        super().__init__()
        self.data, self.targets, self.starts = data, targets, starts
        self.length, self.rate = length, rate
        self.batch_size = batch_size or 1

    def __len__(self):
        return -(-len(self.starts) // self.batch_size)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        starts = self.starts[i * self.batch_size:(i + 1) * self.batch_size]
        index = starts[:, None] + np.arange(self.length) * self.rate
        x = self.data[index]
        if self.targets is None:
            return x
        return x, self.targets[starts]


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Sliding windows over an array, as Keras's function makes them: sequence i starts at
    start_index + i * sequence_stride and takes sequence_length steps sampling_rate apart;
    its target is targets[start_index + that start]. A PyDataset of batches that fit,
    evaluate and predict take."""
    data = np.asarray(data)
    n = len(data)
    for name, v in (("sequence_length", sequence_length), ("sequence_stride", sequence_stride),
                    ("sampling_rate", sampling_rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={v!r}")
    if sampling_rate >= n or sequence_stride >= n:
        raise ValueError(f"`sampling_rate` and `sequence_stride` must be lower than the length "
                         f"of the data ({n}). Received: {sampling_rate}, {sequence_stride}")
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, (int, np.integer)) or
                                   batch_size <= 0):
        raise ValueError(f"batch_size must be a positive integer or None. Received: "
                         f"{batch_size!r}")
    start = start_index or 0
    if not 0 <= start < n:
        raise ValueError(f"`start_index` must be in [0, {n}). Received: start_index={start}")
    end = n if end_index is None else end_index
    if not start < end <= n:
        raise ValueError(f"`end_index` must be in ({start}, {n}]. Received: end_index={end}")
    if targets is not None:
        targets = np.asarray(targets)
        if len(targets) != n:
            raise ValueError(f"Expected data and targets to have the same number of time "
                             f"steps. Received: {n} and {len(targets)}")
    count = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        count = min(count, len(targets))
    if count <= 0:
        raise ValueError(f"The data from {start} to {end} is shorter than one sequence of "
                         f"{sequence_length} steps {sampling_rate} apart")
    starts = np.arange(0, count, sequence_stride)
    if shuffle:
        np.random.RandomState(seed if seed is not None else np.random.randint(1e6)) \
            .shuffle(starts)
    window = data[start:end]
    tail = None if targets is None else targets[start:]
    return _Timeseries(window, tail, starts, int(sequence_length), int(sampling_rate),
                       batch_size)
