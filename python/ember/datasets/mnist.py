"""MNIST handwritten digits: 60,000 + 10,000 grayscale 28x28 images, labels 0-9."""
import numpy as np

from ..utils.file_utils import get_file
from ._common import ORIGIN, load_npz, require

SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def load_data(path="mnist.npz"):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shapes
    (60000, 28, 28), (60000,), (10000, 28, 28), (10000,). `path` is the file name
    in the cache (`$KERAS_HOME/datasets` or `~/.keras/datasets`)."""
    path = get_file(fname=path, origin=ORIGIN + "mnist.npz", file_hash=SHA256)
    x_train, y_train, x_test, y_test = require(
        load_npz(path), ["x_train", "y_train", "x_test", "y_test"], path)
    return (x_train, y_train), (x_test, y_test)
