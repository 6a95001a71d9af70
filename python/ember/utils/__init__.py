"""Utilities Keras users reach for: to_categorical, set_random_seed, get_file,
pad_sequences, PyDataset."""
import numpy as np

from .. import _random
from ..preprocessing.sequence import pad_sequences
from .dataset import PyDataset
from .file_utils import get_file


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
