"""CIFAR-10: 50,000 + 10,000 colour 32x32 images in 10 classes."""
import os

import numpy as np

from ._cifar import batches_dir, channels_last, column, load_batch

ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
IMAGES = dict.fromkeys(FILES, 10000)  # images in each file


def load_data():
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (50000, 32, 32, 3)
    and (10000, 32, 32, 3) (channels last), uint8 labels (50000, 1) and (10000, 1)."""
    path = batches_dir("cifar-10-batches-py", ORIGIN, SHA256, IMAGES)
    xs, ys = [], []
    for name in FILES[:5]:
        x, y = load_batch(os.path.join(path, name), images=IMAGES[name])
        xs.append(x)
        ys.extend(y)
    x_test, y_test = load_batch(os.path.join(path, "test_batch"), images=IMAGES["test_batch"])
    return ((channels_last(np.concatenate(xs)), column(ys, np.uint8)),
            (channels_last(x_test), column(y_test, np.uint8)))
