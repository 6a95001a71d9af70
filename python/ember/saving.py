"""Saving and loading models and weights, always atomically.

Until ember writes Keras's own formats, `model.save('m.keras')` writes an ember
archive (a zip of metadata.json, config.json and weights.npz) and
`model.save_weights('w.weights.h5')` writes ember's weights file (an npz archive).
Both are read back by ember only. Every file is written beside its destination and
renamed over it, so a crash mid-save never leaves a broken file where a good one was.
"""
import io
import json
import os
import zipfile

import numpy as np

from .utils.file_utils import atomic_write

FORMAT = "ember-0"


def _weights_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **{f"arr_{i:04d}": a for i, a in enumerate(arrays)})
    return buf.getvalue()


def _read_weights(data, what):
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return [z[k] for k in sorted(z.files)]
    except Exception as e:
        raise ValueError(f"{what} is not a valid ember weights file ({e})") from None


def _check_overwrite(path, overwrite):
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: "
                         f"filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    data = _weights_bytes(model.get_weights())
    atomic_write(filepath, lambda f: f.write(data))


def load_weights(model, filepath):
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath}")
    if filepath.endswith(".keras"):
        _, arrays = _read_archive(filepath)
    else:
        with open(filepath, "rb") as f:
            arrays = _read_weights(f.read(), filepath)
    model.set_weights(arrays)


def save_model(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"Invalid filepath extension for saving. Please add the `.keras` "
                         f"extension. Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    config = {"module": "keras", "class_name": type(model).__name__,
              "config": model.get_config(), "registered_name": None}
    if getattr(model, "compiled", False):
        config["compile_config"] = model._compile_config()
    weights = _weights_bytes(model.get_weights())

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("metadata.json", json.dumps({"format": FORMAT}))
            z.writestr("config.json", json.dumps(config))
            z.writestr("weights.npz", weights)
    atomic_write(filepath, write)


def _read_archive(filepath):
    try:
        with zipfile.ZipFile(filepath) as z:
            meta = json.loads(z.read("metadata.json"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            config = json.loads(z.read("config.json"))
            arrays = _read_weights(z.read("weights.npz"), filepath)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"{filepath} is not a model file ember can read ({e}). ember reads "
                         f"the files its own save() writes.") from None
    return config, arrays


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model written by `model.save(path)`, with its weights and (when it was
    compiled) its compile arguments."""
    from .models import Sequential
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath}")
    config, arrays = _read_archive(filepath)
    if config.get("class_name") != "Sequential":
        raise ValueError(f"ember can load Sequential models only. Received: "
                         f"{config.get('class_name')!r}")
    model = Sequential.from_config(config["config"])
    model.set_weights(arrays)
    if compile and config.get("compile_config"):
        model.compile(**model._compile_from_config(config["compile_config"]))
    return model
