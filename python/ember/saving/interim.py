"""Reading the files ember wrote before it wrote Keras's formats: a `.keras` zip of
metadata.json ({"format": "ember-0"}), config.json and weights.npz, and `.weights.h5`
files that were npz archives. They still load, with a warning saying how to convert
them; ember no longer writes them."""
import io
import json
import warnings
import zipfile

import numpy as np

from .keras_format import MAX_JSON_BYTES, read_entry

FORMAT = "ember-0"


def _advice(path):
    return (f"{path} is in the interim format of an earlier ember. It still loads, but "
            f"Keras cannot read it: convert it by saving it again "
            f"(ember.models.load_model(path).save(path), or model.save_weights(path))")


def is_interim_archive(z):
    if "metadata.json" not in z.namelist() or "weights.npz" not in z.namelist():
        return False
    try:
        meta = json.loads(read_entry(z, "metadata.json", MAX_JSON_BYTES))
    except (ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def read_npz(data, where):
    """The arrays of an interim weights file, in order."""
    try:
        # The arrays were stored, not compressed: entries that claim to expand past the
        # file itself are a corrupt or hostile file, refused before reading.
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            declared = sum(i.file_size for i in inner.infolist())
        if declared > len(data):
            raise ValueError(f"its arrays claim {declared} bytes in a file of {len(data)}")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return [z[k] for k in sorted(z.files)]
    except Exception as e:
        raise ValueError(f"{where} is not a valid ember weights file ({e})") from None


def read_weights(data, path):
    warnings.warn(_advice(path), stacklevel=4)
    return read_npz(data, path)


def read_archive(z, path, weights_limit):
    """(config, weight arrays) of an interim `.keras` archive."""
    warnings.warn(_advice(path), stacklevel=4)
    config = json.loads(read_entry(z, "config.json", MAX_JSON_BYTES))
    return config, read_npz(read_entry(z, "weights.npz", weights_limit), path)
