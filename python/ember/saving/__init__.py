"""Saving and loading in Keras's formats, both ways.

- `model.save('m.keras')`: Keras 3's archive (config.json, metadata.json,
  model.weights.h5), with the compile arguments and the optimizer's state.
- `model.save_weights('w.weights.h5')` / `model.load_weights(...)`: Keras 3's HDF5
  weights layout (a `.keras` file's weights load too).
- `model.save('m.h5')`: the legacy HDF5 format of Keras 2, which Keras 3 still reads;
  `load_model` and `load_weights` read it, from Keras 2 or Keras 3.
- `model.to_json()` / `model_from_json(...)`: the architecture alone.

Every file is written beside its destination and renamed over it, so a crash mid-save
never leaves a broken file where a good one was. Reading never runs code from a file;
a corrupt, truncated or foreign file raises ValueError naming the file and the problem,
and leaves the model it was being loaded into unchanged.
"""
import json
import os
import warnings
import zipfile

from ..utils.file_utils import atomic_write
from . import interim, keras_format, legacy_h5
from .serialization import (CustomObjectScope, custom_object_scope, deserialize_layer,
                            get_custom_objects, get_registered_name,
                            register_keras_serializable, serialize_layer)

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "model_from_json",
           "register_keras_serializable", "get_custom_objects", "custom_object_scope",
           "CustomObjectScope", "get_registered_name"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _check_overwrite(path, overwrite):
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")


def _is_h5_path(path):
    return path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")


def save_model(model, filepath, overwrite=True, zipped=None, include_optimizer=True,
               **kwargs):
    """Writes `model` to a `.keras` archive or a legacy `.h5` file."""
    filepath = os.fspath(filepath)
    if kwargs:
        raise ValueError(f"The following argument(s) are not supported: {list(kwargs)}")
    if zipped is False:
        raise ValueError("ember writes `.keras` files zipped (zipped=False is not "
                         "supported)")
    if _is_h5_path(filepath):
        warnings.warn(
            "You are saving your model as an HDF5 file via `model.save()` or "
            "`keras.saving.save_model(model)`. This file format is considered legacy. We "
            "recommend using instead the native Keras format, e.g. "
            "`model.save('my_model.keras')` or "
            "`keras.saving.save_model(model, 'my_model.keras')`.", stacklevel=3)
        _check_overwrite(filepath, overwrite)
        data = legacy_h5.h5_bytes(model, include_optimizer)
        atomic_write(filepath, lambda f: f.write(data))
        return
    if not filepath.endswith(".keras"):
        raise ValueError(f"Invalid filepath extension for saving. Please add either a "
                         f"`.keras` extension for the native Keras format (recommended) or "
                         f"a `.h5` extension. Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    atomic_write(filepath, keras_format.keras_archive_writer(model))


def save_weights(model, filepath, overwrite=True):
    """Writes the weights (and a compiled model's optimizer state) in Keras 3's
    `.weights.h5` layout."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: "
                         f"filepath={filepath}")
    if not model.built:
        raise ValueError(f"Model '{model.name}' has not been built, so it has no weights "
                         f"to save. Build it (call it on data, or give it an input shape) "
                         f"first.")
    _check_overwrite(filepath, overwrite)
    data = keras_format.weights_h5_bytes(model)
    atomic_write(filepath, lambda f: f.write(data))


def _magic(filepath):
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath}")
    with open(filepath, "rb") as f:
        return f.read(8)


def _open_zip(filepath):
    try:
        return zipfile.ZipFile(filepath)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{filepath} is not a readable .keras archive ({e})") from None


def _archive_weights(z, filepath, model):
    """The bytes of a `.keras` archive's model.weights.h5."""
    names = z.namelist()
    if "model.weights.h5" not in names:
        raise ValueError(f"{filepath}: the archive holds no model.weights.h5 (entries: "
                         f"{names[:8]})")
    return keras_format.read_entry(z, "model.weights.h5",
                                   keras_format.weights_bytes_limit(model))


def _apply_h5(data, filepath, model, skip_mismatch=False):
    """Loads the weights of an HDF5 file (bytes or a path) in Keras 3's layout or the
    legacy one, after checking all of them."""
    with keras_format.open_h5(data, filepath) as f:
        if "model_weights" in f or "layer_names" in f.attrs:
            assign = legacy_h5.plan_weights(legacy_h5.weights_group(f, filepath), model,
                                            filepath, skip_mismatch)
        else:
            assign = keras_format.plan_weights(f, model, filepath, skip_mismatch)
    assign()


def load_weights(model, filepath, skip_mismatch=False):
    """Loads weights from a `.weights.h5` file, a `.keras` archive or a legacy `.h5`
    file (Keras 2's `save_weights` or a full model), into a built model."""
    filepath = os.fspath(filepath)
    magic = _magic(filepath)
    if not model.built:
        raise ValueError(f"Model '{model.name}' has not been built, so its weights cannot "
                         f"be loaded yet. Build it (call it on data, or give it an input "
                         f"shape) first.")
    try:
        if magic.startswith(b"PK"):
            with _open_zip(filepath) as z:
                if interim.is_interim_archive(z):
                    _, arrays = interim.read_archive(
                        z, filepath, keras_format.weights_bytes_limit(model))
                    model.set_weights(arrays)
                    return
                if filepath.endswith(".keras"):
                    _apply_h5(_archive_weights(z, filepath, model), filepath, model,
                              skip_mismatch)
                    return
            if os.path.getsize(filepath) > keras_format.weights_bytes_limit(model):
                raise ValueError(f"{filepath} is far larger than the weights of model "
                                 f"'{model.name}'; it is not a weights file of this model")
            with open(filepath, "rb") as f:
                model.set_weights(interim.read_weights(f.read(), filepath))
            return
        if not magic.startswith(_HDF5_MAGIC):
            raise ValueError(f"{filepath} is neither an HDF5 weights file nor a .keras "
                             f"archive (it starts with {magic!r})")
        _apply_h5(filepath, filepath, model, skip_mismatch)
    except (KeyError, OSError, RecursionError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{filepath}: could not read weights ({type(e).__name__}: {e})") \
            from None


def model_from_config(config, where, custom_objects=None, safe_mode=True):
    """Builds the model a serialized config describes (Keras 3's or Keras 2's form); a
    malformed config raises ValueError naming `where` and what is wrong."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"{where}: expected a serialized model ({{'class_name': ..., "
                         f"'config': {{...}}}}). Received: {config!r:.80}")
    try:
        with custom_object_scope(custom_objects, safe_mode):
            model = deserialize_layer(config)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    except (AttributeError, TypeError, KeyError, IndexError, RecursionError) as e:
        raise ValueError(f"{where}: the model config is malformed ({type(e).__name__}: "
                         f"{e})") from None
    from ..models.model import Model
    if not isinstance(model, Model):
        raise ValueError(f"{where}: the config describes a {type(model).__name__} layer, "
                         f"not a model")
    shape = (config.get("build_config") or {}).get("input_shape")
    if not model.built and shape is not None:
        model.build(shape)
    return model


def _compile(model, compile_config, where, legacy=False):
    try:
        if legacy:
            compile_config = dict(compile_config)
            compile_config["optimizer"] = compile_config.pop("optimizer_config")
        kwargs = model._compile_from_config(compile_config)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{where}: its compile config cannot be used "
                         f"({type(e).__name__}: {e})") from None
    model.compile(**kwargs)


def model_from_json(json_string, custom_objects=None):
    """The model that `model.to_json()` describes, freshly initialised (and compiled
    when the JSON holds a compile config, as in Keras)."""
    try:
        config = json.loads(json_string)
    except (TypeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"model_from_json expects the JSON string of model.to_json(). "
                         f"Could not parse it: {e}") from None
    if isinstance(config, dict) and "module" not in config and "config" in config:
        config = dict(config)  # Keras 2's to_json
    model = model_from_config(config, "model_from_json", custom_objects)
    if config.get("compile_config"):
        _compile(model, config["compile_config"], "model_from_json")
    return model


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model from a `.keras` archive or a legacy `.h5` file (Keras 2 or 3),
    with its weights, and, when `compile` is true and the file holds them, its compile
    arguments and its optimizer's state."""
    filepath = os.fspath(filepath)
    magic = _magic(filepath)
    try:
        if magic.startswith(b"PK"):
            return _load_archive(filepath, custom_objects, compile, safe_mode)
        if magic.startswith(_HDF5_MAGIC):
            return _load_legacy(filepath, custom_objects, compile, safe_mode)
    except (KeyError, OSError, RecursionError, EOFError, zipfile.BadZipFile,
            json.JSONDecodeError) as e:
        raise ValueError(f"{filepath}: could not read the model ({type(e).__name__}: {e})") \
            from None
    raise ValueError(f"{filepath} is neither a .keras archive nor an HDF5 (.h5) model file "
                     f"(it starts with {magic!r})")


def _load_archive(filepath, custom_objects, compile, safe_mode):
    with _open_zip(filepath) as z:
        if interim.is_interim_archive(z):
            config, arrays = interim.read_archive(z, filepath, 1 << 40)
            model = model_from_config(config, filepath, custom_objects, safe_mode)
            model.set_weights(arrays)
            if compile and config.get("compile_config"):
                _compile(model, config["compile_config"], filepath)
            return model
        if "config.json" not in z.namelist():
            raise ValueError(f"{filepath}: the archive holds no config.json; it is not a "
                             f".keras model file")
        config = json.loads(keras_format.read_entry(z, "config.json",
                                                    keras_format.MAX_JSON_BYTES))
        model = model_from_config(config, filepath, custom_objects, safe_mode)
        if compile and config.get("compile_config"):
            _compile(model, config["compile_config"], filepath)
        data = _archive_weights(z, filepath, model)
    with keras_format.open_h5(data, filepath) as f:
        assign = keras_format.plan_weights(f, model, filepath, include_optimizer=compile)
    assign()
    return model


def _load_legacy(filepath, custom_objects, compile, safe_mode):
    with keras_format.open_h5(filepath, filepath) as f:
        config = legacy_h5.read_model_config(f, filepath)
        model = model_from_config(config, filepath, custom_objects, safe_mode)
        assign = legacy_h5.plan_weights(legacy_h5.weights_group(f, filepath), model,
                                        filepath)
        training = legacy_h5.read_training_config(f, filepath) if compile else None
        opt_assign = None
        if training:
            _compile(model, training, filepath, legacy=True)
            opt_assign = legacy_h5.plan_optimizer(f, model, filepath)
    assign()
    if opt_assign is not None:
        opt_assign()
    return model
