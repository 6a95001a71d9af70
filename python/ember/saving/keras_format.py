"""Keras 3's files: the `.keras` archive and the `.weights.h5` weights file.

A `.keras` file is a zip of `metadata.json` (keras_version, date_saved), `config.json`
(the serialized model with its build_config and compile_config) and
`model.weights.h5`. In the weights file each object that owns variables has a group
`<path>/vars` holding datasets "0", "1", ...: the model itself at the root (`vars`),
its layers at `layers/<class name in snake case>[_N]` (numbered when a class repeats,
in the order of `model.layers`; a nested model's layers under its own path), and the
optimizer at `optimizer/vars` (see Optimizer._keras_state for its order).

Reading checks every group, dataset, shape and dtype before any weight changes, and
refuses what Keras refuses: links out of the file, external and virtual datasets.
"""
import datetime
import io
import json
import zipfile

import numpy as np

from ..layers.base import _snake_case
from .serialization import serialize_layer

# The Keras release whose layout these files follow (written as keras_version).
KERAS_VERSION = "3.15.1"

# What an archive entry may expand to: the JSON entries at most 64 MB each, the weights
# at most what the model's weights take (plus room for the optimizer's slots and the
# HDF5 structure), and no entry more than 1000 times its compressed size past the first
# megabyte. A zip bomb is refused from its declared sizes, before anything is read.
MAX_JSON_BYTES = 64 << 20
_MAX_RATIO = 1000


def read_entry(z, name, limit):
    """The bytes of entry `name`, refused from its declared size when it would expand
    past `limit` or past _MAX_RATIO times its compressed size."""
    info = z.getinfo(name)
    limit = min(limit, max(1 << 20, _MAX_RATIO * info.compress_size))
    if info.file_size > limit:
        raise ValueError(f"its entry {name!r} expands to {info.file_size} bytes from "
                         f"{info.compress_size}, more than the {limit} it may; the file is "
                         f"corrupt or not a model file")
    return z.read(name)


def weights_bytes_limit(model):
    """The most bytes a weights file of this model can sensibly take: its float32
    weights four times over (the optimizer's slots), plus room for the structure."""
    n = sum(int(np.prod(w.shape)) for w in model.weights)
    return 4 * 4 * n + 4096 * (len(model.weights) + len(model.layers) + 16) + (1 << 20)


def _h5py():
    import h5py
    return h5py


# -- the objects Keras saves, in its order ----------------------------------------------
def _own_variables(obj):
    """A layer's variables as Keras saves them: those created trainable, then the rest
    (whatever `trainable` says now)."""
    from ..models.model import Model
    if isinstance(obj, Model):
        return []
    ws = getattr(obj, "_weights", [])
    return [w for w in ws if w.trainable] + [w for w in ws if not w.trainable]


def saveables(model):
    """(path, name, variables) for the model and every layer under it, each once."""
    from ..models.model import Model
    out, seen = [], set()

    def visit(obj, path):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if hasattr(obj, "_keras_state"):  # a layer whose weights Keras keeps in sublayers
            out.extend((f"{path}/{rel}".strip("/") if rel else path, name, variables)
                       for rel, name, variables in obj._keras_state())
        else:
            out.append((path, obj.name, _own_variables(obj)))
        wrapped = getattr(obj, "_keras_wrapped", None)
        if wrapped is not None:
            visit(wrapped, f"{path}/layer")
        elif getattr(obj, "_traced", False):
            _visit_parts(obj, path, visit)
        elif isinstance(obj, Model):
            used = {}
            for layer in obj.layers:
                base = _snake_case(type(layer).__name__)
                n = used.get(base, -1) + 1
                used[base] = n
                name = base if n == 0 else f"{base}_{n}"
                visit(layer, f"{path}/layers/{name}" if path else f"layers/{name}")
    visit(model, "")
    return out


def _visit_parts(layer, path, visit):
    """A custom layer's or subclassed model's parts as Keras walks them: its attributes
    by name (private ones last; a model's `layers` among them), a layer at
    <path>/<attribute>, a list, tuple or dict of layers at
    <path>/<attribute>/<class in snake case>[_N]."""
    from ..layers.base import Layer
    from ..models.model import Model

    def key(name):
        return "~" + name if name.startswith("_") else name
    attrs = dict(vars(layer))
    if isinstance(layer, Model):
        attrs["layers"] = layer.layers
    for attr in sorted(attrs, key=key):
        if attr.startswith("__") or attr in Layer._NOT_PARTS:
            continue
        value = attrs[attr]
        if isinstance(value, Layer):
            visit(value, f"{path}/{attr}".lstrip("/"))
        elif isinstance(value, (list, tuple, dict)):
            items = list(value.values()) if isinstance(value, dict) else list(value)
            used = {}
            for item in items:
                if not isinstance(item, Layer):
                    continue
                base = _snake_case(type(item).__name__)
                n = used.get(base, -1) + 1
                used[base] = n
                visit(item, f"{path}/{attr}/{base if n == 0 else f'{base}_{n}'}".lstrip("/"))


def _compiled_optimizer(model):
    return model.optimizer if getattr(model, "compiled", False) else None


# -- writing ----------------------------------------------------------------------------
def weights_h5_bytes(model, include_optimizer=True):
    """model.weights.h5 in Keras 3's layout, as bytes."""
    h5py = _h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for path, name, variables in saveables(model):
            g = f.create_group(f"{path}/vars" if path else "vars")
            g.attrs["name"] = name
            for i, v in enumerate(variables):
                value = v.numpy()
                if getattr(v, "_file_dtype", None) is not None:  # Keras's integer variables
                    value = value.astype(v._file_dtype)
                g.create_dataset(str(i), data=value)
        opt = _compiled_optimizer(model) if include_optimizer else None
        if opt is not None:
            g = f.create_group("optimizer/vars")
            g.attrs["name"] = opt.name
            for i, a in enumerate(opt._keras_state(model.trainable_weights)):
                g.create_dataset(str(i), data=a)
    return buf.getvalue()


def model_json(model):
    """config.json: Keras's serialized model with build and compile configs."""
    config = serialize_layer(model, build_config=False)
    shape = model._sample_input_shape() if model.built else None
    if shape is not None:
        config["build_config"] = {"input_shape": _batch_shapes(shape)}
    if getattr(model, "compiled", False):
        config["compile_config"] = model._compile_config()
    return config


def _batch_shapes(shape):
    if isinstance(shape, list):
        return [[None] + list(s) for s in shape]
    return [None] + list(shape)


def keras_archive_writer(model):
    """A function writing the `.keras` archive of `model` to a binary file."""
    config = json.dumps(model_json(model))
    metadata = json.dumps({
        "keras_version": KERAS_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    weights = weights_h5_bytes(model)

    def write(f):
        with zipfile.ZipFile(f, "w") as z:  # stored, as Keras writes it
            z.writestr("metadata.json", metadata)
            z.writestr("config.json", config)
            z.writestr("model.weights.h5", weights)
    return write


# -- reading ----------------------------------------------------------------------------
def _child(h5py, group, name, kind, where):
    """group[name] when it is an object of `kind` stored in this file, else None."""
    if name not in group:
        return None
    link = group.get(name, getlink=True)
    if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
        raise ValueError(f"{where}: {name!r} is a link ({type(link).__name__}); ember "
                         f"reads only objects stored in the file itself")
    obj = group[name]
    if not isinstance(obj, kind):
        raise ValueError(f"{where}: {name!r} is a {type(obj).__name__}, expected a "
                         f"{kind.__name__}")
    if kind is h5py.Dataset and (obj.external or obj.is_virtual):
        raise ValueError(f"{where}: dataset {name!r} keeps its data outside the file")
    return obj


def _group_at(h5py, root, path, where):
    g = root
    for part in path.split("/"):
        g = _child(h5py, g, part, h5py.Group, where)
        if g is None:
            return None
    return g


def read_array(h5py, group, key, shape, where, what):
    """The array group[key], after checking that it is a dataset stored in the file,
    holding numbers of `shape` (None: any shape); data of another shape is never read."""
    ds = _child(h5py, group, key, h5py.Dataset, where)
    if ds is None:
        raise ValueError(f"{where}: {what} is missing")
    if shape is not None and tuple(ds.shape) != tuple(shape):
        raise ValueError(f"{where}: {what} has shape {tuple(ds.shape)}; the model expects "
                         f"{tuple(shape)}")
    if ds.dtype.kind not in "fiu":
        raise ValueError(f"{where}: {what} has dtype {ds.dtype}; expected numbers")
    return np.asarray(ds[()])


def _numbered(h5py, group, count, where, label):
    keys = sorted(group.keys()) if group is not None else []
    if sorted(keys) != sorted(str(i) for i in range(count)):
        raise ValueError(f"{where}: {label} has {count} variables; the file holds "
                         f"{len(keys)} ({', '.join(keys[:8]) or 'none'})")


def plan_weights(f, model, where, skip_mismatch=False, include_optimizer=True):
    """Reads a Keras 3 weights file (an open h5py.File) for `model`: returns a function
    that assigns everything, after every array has been checked."""
    import warnings
    h5py = _h5py()
    assignments = []
    for path, name, variables in saveables(model):
        gpath = f"{path}/vars" if path else "vars"
        group = _group_at(h5py, f, gpath, where)
        label = f"layer '{name}' ({gpath})" if path else f"model '{name}'"
        try:
            _numbered(h5py, group, len(variables), where, label)
            arrays = [read_array(h5py, group, str(i), v.shape, where,
                                 f"{gpath}/{i} (weight '{v.path}')")
                      for i, v in enumerate(variables)]
        except ValueError as e:
            if not skip_mismatch:
                raise
            warnings.warn(f"Skipping {label}: {e}", stacklevel=3)
            continue
        for v, a in zip(variables, arrays):
            integer = getattr(v, "_file_dtype", None) is not None
            if a.dtype.kind != "f" and not (integer and a.dtype.kind in "iu"):
                raise ValueError(f"{where}: weight '{v.path}' has dtype {a.dtype}; expected "
                                 f"{'integers' if integer else 'floats'}")
            assignments.append((v, a))
    opt = _compiled_optimizer(model) if include_optimizer else None
    opt_assign = None
    group = _group_at(h5py, f, "optimizer/vars", where)
    if opt is not None and group is not None:
        keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        _numbered(h5py, group, len(keys), where, f"optimizer '{opt.name}'")
        arrays = [read_array(h5py, group, k, None, where, f"optimizer/vars/{k}")
                  for k in keys]
        opt_assign = opt._load_keras_state(arrays, model.trainable_weights, where)

    def assign():
        for v, a in assignments:
            v.assign(a)
        if opt_assign is not None:
            opt_assign()
    return assign


def open_h5(data_or_path, where):
    """An h5py.File for bytes or a path; anything HDF5 cannot open raises ValueError."""
    h5py = _h5py()
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
        return h5py.File(src, "r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{where} is not a readable HDF5 file ({e})") from None
