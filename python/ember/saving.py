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
        # ember writes the arrays stored, not compressed: entries that claim to expand
        # past the file itself are a corrupt or hostile file, refused before reading.
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            declared = sum(i.file_size for i in inner.infolist())
        if declared > len(data):
            raise ValueError(f"its arrays claim {declared} bytes in a file of {len(data)}")
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
        arrays = _read_archive(filepath, "weights",
                               _weights_bytes_limit(model) if model.built else 1 << 62)
    else:
        if model.built and os.path.getsize(filepath) > _weights_bytes_limit(model) * 2:
            raise ValueError(f"{filepath} is far larger than the weights of model "
                             f"'{model.name}'; it is not a weights file of this model")
        with open(filepath, "rb") as f:
            arrays = _read_weights(f.read(), filepath)
    model.set_weights(arrays)


def serialize_model(model):
    """Keras's serialized form of a model's architecture."""
    return {"module": "keras", "class_name": type(model).__name__,
            "config": model.get_config(), "registered_name": None}


def model_from_json(json_string, custom_objects=None):
    """The (unbuilt-weights, freshly initialised) model that `model.to_json()` describes."""
    try:
        config = json.loads(json_string)
    except (TypeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"model_from_json expects the JSON string of model.to_json(). "
                         f"Could not parse it: {e}") from None
    return _model_from_config(config, "model_from_json")


def save_model(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"Invalid filepath extension for saving. Please add the `.keras` "
                         f"extension. Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    config = serialize_model(model)
    if getattr(model, "compiled", False):
        config["compile_config"] = model._compile_config()
    weights = _weights_bytes(model.get_weights())

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("metadata.json", json.dumps({"format": FORMAT}))
            z.writestr("config.json", json.dumps(config))
            z.writestr("weights.npz", weights)
    atomic_write(filepath, write)


# What a model file may expand to: the JSON entries at most 64 MB each, the weights at
# most what the model's weights take (checked against the config once it is built), and
# no entry more than 1000 times its compressed size past the first megabyte. A zip bomb
# is refused from its declared sizes, before anything is decompressed.
_MAX_JSON_BYTES = 64 << 20
_MAX_RATIO = 1000


def _entry(z, name, limit):
    """The bytes of entry `name`, refused from its declared size when it would expand
    past `limit` or past _MAX_RATIO times its compressed size."""
    info = z.getinfo(name)
    limit = min(limit, max(1 << 20, _MAX_RATIO * info.compress_size))
    if info.file_size > limit:
        raise ValueError(f"its entry {name!r} expands to {info.file_size} bytes from "
                         f"{info.compress_size}, more than the {limit} it may; the file is "
                         f"corrupt or not a model file")
    return z.read(name)


def _read_archive(filepath, what, weights_limit=1 << 62):
    """Reads an ember archive: `what` is "config" (the parsed config.json) or "weights"
    (the weight arrays, their entry expanding to at most weights_limit bytes). Anything
    unreadable raises ValueError naming the file."""
    try:
        with zipfile.ZipFile(filepath) as z:
            meta = json.loads(_entry(z, "metadata.json", _MAX_JSON_BYTES))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError(f"unknown format {meta!r:.80}")
            if what == "config":
                return json.loads(_entry(z, "config.json", _MAX_JSON_BYTES))
            return _read_weights(_entry(z, "weights.npz", weights_limit), filepath)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError, RecursionError,
            EOFError, NotImplementedError) as e:
        raise ValueError(f"{filepath} is not a model file ember can read ({e}). ember reads "
                         f"the files its own save() writes.") from None


def _model_from_config(config, filepath):
    """Builds the model a config.json describes; a malformed config raises ValueError
    naming the file and what is wrong."""
    from .models import Functional, Sequential
    classes = {"Sequential": Sequential, "Functional": Functional}
    if not isinstance(config, dict) or config.get("class_name") not in classes:
        raise ValueError(f"{filepath}: ember can load Sequential and functional models. "
                         f"Received: {config.get('class_name') if isinstance(config, dict) else config!r:.80}")
    inner = config.get("config")
    if not isinstance(inner, dict) or not isinstance(inner.get("layers", []), list) or \
            not all(isinstance(e, dict) and isinstance(e.get("config", {}), dict)
                    for e in inner.get("layers", [])):
        raise ValueError(f"{filepath}: config.json does not describe a model (expected "
                         f"{{'config': {{'layers': [{{'class_name': ..., 'config': {{...}}}}, "
                         f"...]}}}})")
    try:
        return classes[config["class_name"]].from_config(inner)
    except ValueError as e:
        raise ValueError(f"{filepath}: {e}") from None
    except (AttributeError, TypeError, KeyError, IndexError, RecursionError) as e:
        raise ValueError(f"{filepath}: config.json is malformed ({type(e).__name__}: {e})") \
            from None


def _weights_bytes_limit(model):
    """The most bytes the weights of `model` can take in an npz file: their float32
    values plus a generous header per array."""
    return sum(4 * int(np.prod(w.shape)) + 4096 for w in model.weights) + 4096


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model written by `model.save(path)`, with its weights and (when it was
    compiled) its compile arguments."""
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath}")
    config = _read_archive(filepath, "config")
    model = _model_from_config(config, filepath)
    model.set_weights(_read_archive(filepath, "weights", _weights_bytes_limit(model)))
    compile_config = config.get("compile_config")
    if compile and compile_config:
        try:
            kwargs = model._compile_from_config(compile_config)
        except (AttributeError, TypeError, KeyError, IndexError) as e:
            raise ValueError(f"{filepath}: its compile_config is malformed "
                             f"({type(e).__name__}: {e})") from None
        model.compile(**kwargs)
    return model
