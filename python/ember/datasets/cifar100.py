"""CIFAR-100: 50,000 + 10,000 colour 32x32 images, 100 fine or 20 coarse classes."""
import os

import numpy as np

from ._cifar import batches_dir, channels_last, column, load_batch

ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
IMAGES = {"train": 50000, "test": 10000}  # images in each file


def load_data(label_mode="fine"):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (50000, 32, 32, 3)
    and (10000, 32, 32, 3), int64 labels (n, 1), as Keras returns them: 100 classes with label_mode='fine',
    20 with 'coarse'."""
    if label_mode not in ("fine", "coarse"):
        raise ValueError('`label_mode` must be one of `"fine"`, `"coarse"`. '
                         f"Received: label_mode={label_mode}.")
    path = batches_dir("cifar-100-python", ORIGIN, SHA256, IMAGES)
    out = []
    for name in ("train", "test"):
        x, y = load_batch(os.path.join(path, name), label_key=f"{label_mode}_labels",
                          images=IMAGES[name])
        out.append((channels_last(x), column(y, np.int64)))
    return tuple(out)
