"""Fashion-MNIST: 60,000 + 10,000 grayscale 28x28 images of clothing, labels 0-9."""
import gzip
import os
import zlib

import numpy as np

from ..utils.file_utils import get_file
from ._common import ORIGIN

FILES = ["train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]


def read_idx(path, offset):
    """The payload of a gzipped IDX file (labels: 8-byte header; images: 16)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path} is not a readable gzip file ({e}); delete it to download "
                         f"it again") from e
    if len(data) < offset:
        raise ValueError(f"{path} is too short for an IDX file ({len(data)} bytes)")
    return np.frombuffer(data, np.uint8, offset=offset)


def load_data():
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shapes
    (60000, 28, 28), (60000,), (10000, 28, 28), (10000,). The four files are cached in
    `datasets/fashion-mnist/`, as Keras does (Keras publishes no checksum for them)."""
    subdir = os.path.join("datasets", "fashion-mnist")
    paths = [get_file(name, origin=ORIGIN + name, cache_subdir=subdir) for name in FILES]
    out = []
    for labels_path, images_path in (paths[0:2], paths[2:4]):
        y = read_idx(labels_path, 8)
        pixels = read_idx(images_path, 16)
        if pixels.size != len(y) * 28 * 28:
            raise ValueError(f"{images_path} holds {pixels.size} pixels, not {len(y)} 28x28 "
                             f"images as {labels_path} says")
        out.append((pixels.reshape(len(y), 28, 28), y))
    return tuple(out)
