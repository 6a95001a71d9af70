"""The CIFAR archives: Python pickles of uint8 (n, 3072) arrays inside a tar.gz.

Two cache layouts are accepted, so files a Keras install extracted are reused:
Keras 3 extracts `<name>-target_archive` into `<name>-target/<name>/`; Keras 2 kept
`<name>.tar.gz` and extracted it into `<name>/`.
"""
import os
import pickle
import shutil

import numpy as np

from ..utils.file_utils import cache_directory, extract_archive, get_file, validate_file
from ._common import SafeUnpickler


def load_batch(fpath, label_key="labels", images=None):
    """(data (n, 3, 32, 32) uint8, labels list) of one pickled CIFAR batch file;
    `images`, when given, is the number of images the file must hold."""
    try:
        with open(fpath, "rb") as f:
            d = SafeUnpickler(f, encoding="bytes").load()
        d = {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in d.items()}
        data, labels = np.asarray(d["data"], dtype=np.uint8), d[label_key]
        data = data.reshape(data.shape[0], 3, 32, 32)
        labels = list(labels)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError,
            AttributeError, IndexError) as e:
        raise ValueError(f"{fpath} is not a readable CIFAR batch file: {e!r}") from e
    if images is not None and len(data) != images:
        raise ValueError(f"{fpath} holds {len(data)} images, not the {images} of the CIFAR "
                         f"file it is named after: the cached copy is damaged or not "
                         f"CIFAR. Delete {os.path.dirname(fpath)} to download it again.")
    if len(labels) != len(data):
        raise ValueError(f"{fpath} holds {len(data)} images but {len(labels)} labels")
    return data, labels


def batches_dir(name, origin, sha256, images):
    """The directory holding the extracted `name/` files, from the cache (either
    layout) or by downloading and extracting Keras's archive. `images` maps each
    required file to the images it holds: a cached file too small for them (3072 bytes
    an image) does not count as there."""
    required = list(images)
    datadir = cache_directory("datasets")
    keras3 = os.path.join(datadir, name + "-target")
    keras2 = os.path.join(datadir, name)

    def complete(d):
        return all(os.path.isfile(os.path.join(d, f)) and
                   os.path.getsize(os.path.join(d, f)) >= 3072 * n for f, n in images.items())

    if complete(os.path.join(keras3, name)):
        return os.path.join(keras3, name)
    if complete(keras2):
        return keras2
    archive2 = keras2 + ".tar.gz"
    if not os.path.exists(keras3 + "_archive") and os.path.exists(archive2):
        if not validate_file(archive2, sha256):
            raise ValueError(f"{archive2} does not have the sha256 {sha256} of {origin}; "
                             "it is incomplete or not the CIFAR archive. Delete it to "
                             "download the archive again.")
        # Keras 2 extracted its archive into the cache directory itself.
        staging = keras2 + "-extracting"
        extract_archive(archive2, staging)
        if not os.path.isdir(os.path.join(staging, name)):
            shutil.rmtree(staging)
            raise ValueError(f"{archive2} does not hold a {name}/ directory")
        if os.path.isdir(keras2):
            shutil.rmtree(keras2)  # incomplete (checked above): replaced by the archive's
        os.replace(os.path.join(staging, name), keras2)
        shutil.rmtree(staging)
        if complete(keras2):
            return keras2
    path = os.path.join(get_file(fname=name + "-target", origin=origin, extract=True,
                                 file_hash=sha256), name)
    if not complete(path):
        raise ValueError(f"The archive from {origin} did not hold {required} under {path}")
    return path


def channels_last(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def column(labels, dtype):
    return np.asarray(labels, dtype=dtype).reshape(len(labels), 1)
