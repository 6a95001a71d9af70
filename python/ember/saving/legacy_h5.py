"""The legacy HDF5 format (`.h5`) of Keras 2, which Keras 3 still reads and writes.

A full model file has root attributes `model_config` (JSON: class_name and config),
`training_config` (JSON: the compile arguments, the optimizer under
`optimizer_config`), `keras_version` and `backend`; a group `model_weights` whose
attribute `layer_names` lists the layers, each layer's group listing its arrays in the
attribute `weight_names` (trainable ones first); and `optimizer_weights`, the
optimizer's variables in the order of its `weight_names`. A weights-only file (Keras 2's
`save_weights('w.h5')`) is a `model_weights` group at the root. Weights are matched to
layers by order, among the layers that have weights, as Keras does.
"""
import io
import json
import warnings

import numpy as np

from .keras_format import KERAS_VERSION, _child, _h5py, read_array


def _strings(values):
    """An attribute value as Keras writes a list of names (bytes), or an empty float
    array for an empty list, as numpy makes it."""
    return np.array([v.encode("utf8") for v in values]) if values else np.asarray([])


def _legacy_weights(layer):
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def legacy_config(entry):
    """Keras's legacy model_config: the Keras 3 entry without module, registered_name
    and build_config on the model and its layers (nested objects keep theirs)."""
    out = {k: v for k, v in entry.items()
           if k not in ("module", "registered_name", "build_config", "compile_config")}
    config = out.get("config")
    if isinstance(config, dict) and isinstance(config.get("layers"), list):
        out["config"] = dict(config, layers=[legacy_config(e) for e in config["layers"]])
    return out


def h5_bytes(model, include_optimizer=True):
    """The legacy `.h5` file of a model, as bytes."""
    from .keras_format import model_json
    h5py = _h5py()
    config = model_json(model)
    model_config = legacy_config(config)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["backend"] = "ember"
        f.attrs["model_config"] = json.dumps(model_config)
        opt = model.optimizer if getattr(model, "compiled", False) else None
        if opt is not None and include_optimizer:
            training = dict(config["compile_config"])
            training.pop("optimizer", None)
            training["optimizer_config"] = {"class_name": type(opt).__name__,
                                            "config": opt.get_config()}
            f.attrs["training_config"] = json.dumps(training)
        write_weights_group(f.create_group("model_weights"), model)
        if opt is not None and include_optimizer:
            state = opt._keras_state(model.trainable_weights)
            names = _optimizer_names(opt, model, len(state))
            g = f.create_group("optimizer_weights")
            g.attrs["weight_names"] = _strings(names)
            for n, a in zip(names, state):
                g.create_dataset(n, data=a)
    return buf.getvalue()


def _optimizer_names(opt, model, count):
    """Names for the optimizer's variables (Keras reads them by order)."""
    names = [f"{opt.name}/iteration"]
    if opt._has_lr_variable():
        names.append(f"{opt.name}/learning_rate")
    if count > len(names):
        names += [f"{opt.name}/{v.path.replace('/', '_')}_slot{k}"
                  for block in opt._slot_blocks() for v in model.trainable_weights
                  for k in block]
    names += [f"{opt.name}/extra{i}" for i in range(count - len(names))]
    return names


def write_weights_group(group, model):
    group.attrs["layer_names"] = _strings([layer.name for layer in model.layers])
    group.attrs["backend"] = "ember"
    group.attrs["keras_version"] = KERAS_VERSION
    for layer in sorted(model.layers, key=lambda layer: layer.name):
        g = group.create_group(layer.name)
        weights = _legacy_weights(layer)
        names = [w.path for w in weights]
        g.attrs["weight_names"] = _strings(names)
        for n, w in zip(names, weights):
            g.create_dataset(n, data=w.numpy())
    group.create_group("top_level_model_weights").attrs["weight_names"] = _strings([])


def _names(attrs, key, where):
    """A list-of-names attribute (Keras may split a long one into key0, key1, ...)."""
    if key in attrs:
        raw = list(np.atleast_1d(attrs[key]))
    else:
        raw, i = [], 0
        while f"{key}{i}" in attrs:
            raw += list(np.atleast_1d(attrs[f"{key}{i}"]))
            i += 1
    out = []
    for v in raw:
        if isinstance(v, bytes):
            v = v.decode("utf8")
        if not isinstance(v, str):
            raise ValueError(f"{where}: attribute {key!r} holds {v!r}, expected names")
        out.append(v)
    return out


def weights_group(f, where):
    """The group that holds the layers' weights: model_weights, or the root of a
    Keras 2 weights-only file."""
    h5py = _h5py()
    g = _child(h5py, f, "model_weights", h5py.Group, where)
    if g is not None:
        return g
    if "layer_names" in f.attrs:
        return f
    raise ValueError(f"{where} is an HDF5 file, but neither a Keras model (no "
                     f"'model_weights' group) nor a Keras weights file (no 'layer_names')")


def plan_weights(group, model, where, skip_mismatch=False):
    """Reads the layers' weights from a legacy weights group by order, as Keras does:
    returns a function that assigns them once everything has been checked."""
    h5py = _h5py()
    layers = [layer for layer in model.layers if _legacy_weights(layer)]
    saved = []
    for name in _names(group.attrs, "layer_names", where):
        g = _child(h5py, group, name, h5py.Group, where)
        if g is None:
            raise ValueError(f"{where}: layer '{name}' is listed but has no group")
        weight_names = _names(g.attrs, "weight_names", where)
        if weight_names:
            saved.append((name, g, weight_names))
    if len(saved) != len(layers):
        raise ValueError(f"{where}: the file holds weights for {len(saved)} layers "
                         f"({[s[0] for s in saved]}); model '{model.name}' has "
                         f"{len(layers)} layers with weights ({[x.name for x in layers]})")
    assignments = []
    for layer, (name, g, weight_names) in zip(layers, saved):
        variables = _legacy_weights(layer)
        try:
            if len(weight_names) != len(variables):
                raise ValueError(f"{where}: layer '{name}' of the file holds "
                                 f"{len(weight_names)} weights; layer '{layer.name}' has "
                                 f"{len(variables)}")
            arrays = [read_array(h5py, g, wn, v.shape, where, f"weight '{name}/{wn}'")
                      for wn, v in zip(weight_names, variables)]
        except ValueError as e:
            if not skip_mismatch:
                raise
            warnings.warn(f"Skipping layer '{layer.name}': {e}", stacklevel=3)
            continue
        assignments += list(zip(variables, arrays))

    def assign():
        for v, a in assignments:
            v.assign(a)
    return assign


def read_model_config(f, where):
    raw = f.attrs.get("model_config")
    if raw is None:
        raise ValueError(f"{where} holds no model_config: it is a weights file, not a "
                         f"model (load it with model.load_weights)")
    return _json_attr(raw, "model_config", where)


def read_training_config(f, where):
    raw = f.attrs.get("training_config")
    return None if raw is None else _json_attr(raw, "training_config", where)


def _json_attr(raw, key, where):
    if isinstance(raw, bytes):
        raw = raw.decode("utf8")
    try:
        return json.loads(str(raw))
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{where}: its {key} attribute is not JSON ({e})") from None


def plan_optimizer(f, model, where):
    """The optimizer's state from `optimizer_weights` (Keras 3's layout; a file whose
    state does not match it, such as Keras 2's, is skipped with a warning)."""
    h5py = _h5py()
    g = _child(h5py, f, "optimizer_weights", h5py.Group, where)
    if g is None:
        return lambda: None
    names = _names(g.attrs, "weight_names", where)
    arrays = [read_array(h5py, g, n, None, where, f"optimizer weight {n!r}") for n in names]
    if names and names[0].split("/")[-1] in ("iter:0", "iter"):
        warnings.warn(f"{where}: the optimizer's state was written by Keras 2's optimizer, "
                      f"whose layout ember does not read; training resumes with a fresh "
                      f"optimizer", stacklevel=3)
        return lambda: None
    return model.optimizer._load_keras_state(arrays, model.trainable_weights, where)
