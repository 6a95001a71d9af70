"""Keras's serialized form of layers and models, both ways.

A layer is written as Keras 3 writes it:

    {"module": "keras.layers", "class_name": "Dense", "config": {...},
     "registered_name": null, "build_config": {"input_shape": [null, 8]}}

Reading accepts Keras 3's form and Keras 2's (no module, `batch_input_shape`, one-item
`axis` lists, string dtypes). Keys Keras writes that ember has no argument for load when
they hold the value ember honours (`quantization_config: null`, `renorm: false`, a
float32 dtype policy, ...); any other value raises ValueError naming the key.

Classes are looked up, never imported: ember's own layers and models, the user's
`custom_objects`, and classes registered with `register_keras_serializable`. A module
named in a file is never imported and no code in a file is ever run, except a `Lambda`
layer's Python lambda when the caller passes `safe_mode=False`.
"""
import contextlib
import inspect
import threading

_REGISTERED = {}
_scope = threading.local()

# Keys Keras writes that no ember layer takes, with the value ember honours.
_KERAS_DEFAULTS = {
    "quantization_config": None, "lora_rank": None, "lora_alpha": None,
    "ragged": False, "sparse": False, "optional": False,
    "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99,
    "synchronized": False, "autocast": True, "noise_shape": None, "seed": None,
    "activity_regularizer": None, "embeddings_constraint": None,
    "gamma_regularizer": None, "beta_regularizer": None, "embeddings_regularizer": None,
}
# Keys Keras itself ignores (Keras 2's Embedding input_length).
_IGNORED = {"input_length"}


def register_keras_serializable(package="Custom", name=None):
    """Registers a class (or function) under "package>name" so that load_model and
    from_config find it without custom_objects, as Keras's decorator does."""
    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        _REGISTERED[key] = obj
        obj._registered_name = key
        return obj
    return decorator


def get_custom_objects():
    """The registry of register_keras_serializable (a dict; it may be edited)."""
    return _REGISTERED


def get_registered_name(cls):
    return getattr(cls, "_registered_name", None) if "_registered_name" in \
        getattr(cls, "__dict__", {}) else cls.__name__


@contextlib.contextmanager
def custom_object_scope(custom_objects=None, safe_mode=None):
    """Within the block, deserialization also finds `custom_objects` (and uses
    `safe_mode` when given)."""
    prev = getattr(_scope, "custom", {}), getattr(_scope, "safe_mode", True)
    _scope.custom = {**prev[0], **(custom_objects or {})}
    _scope.safe_mode = prev[1] if safe_mode is None else bool(safe_mode)
    try:
        yield
    finally:
        _scope.custom, _scope.safe_mode = prev


CustomObjectScope = custom_object_scope


def safe_mode():
    """Whether deserialization now refuses to run code from a file (the default)."""
    return getattr(_scope, "safe_mode", True)


def custom_object(name):
    """A registered class or function, or one the current custom_objects name."""
    if not isinstance(name, str):
        return None
    return {**_REGISTERED, **getattr(_scope, "custom", {})}.get(name)


def _builtin_layers():
    from .. import layers, models
    from ..models.functional import Functional
    out = {n: c for n, c in vars(layers).items()
           if isinstance(c, type) and issubclass(c, layers.Layer) and c is not layers.Layer}
    out.update(Sequential=models.Sequential, Functional=Functional, Model=Functional)
    return out


def _is_keras_module(module):
    return module is None or module == "keras" or str(module).startswith("keras.")


def resolve_layer_class(entry):
    """The class an entry names: the user's custom objects and registered classes
    first (by registered_name, then class_name), then ember's layers and models."""
    class_name = entry.get("class_name")
    registered = entry.get("registered_name")
    custom = {**_REGISTERED, **getattr(_scope, "custom", {})}
    for key in (registered, class_name):
        if isinstance(key, str) and key in custom:
            return custom[key]
    builtin = _builtin_layers()
    if _is_keras_module(entry.get("module")) and class_name in builtin:
        return builtin[class_name]
    raise ValueError(
        f"Unknown layer class {class_name!r} (module={entry.get('module')!r}, "
        f"registered_name={registered!r}). If it is your own class, pass it as "
        f"custom_objects={{{class_name!r}: {class_name}}} or decorate it with "
        f"@ember.saving.register_keras_serializable()")


def deserialize_layer(entry):
    """A layer or nested model from its serialized dict."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"A layer entry must be a dict with a 'class_name'. Received: "
                         f"{entry!r:.100}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"The config of layer class {entry['class_name']!r} must be a "
                         f"dict. Received: {config!r:.100}")
    return resolve_layer_class(entry).from_config(config)


def serialize_layer(layer, build_config=True):
    """Keras 3's dict for a layer or a nested model."""
    from ..models.model import Model
    cls = type(layer)
    builtin = _builtin_layers().get(cls.__name__) is cls
    if isinstance(layer, Model) and builtin:
        functional = cls.__name__ != "Sequential"
        entry = {"module": "keras.src.models.functional" if functional else "keras",
                 "class_name": "Functional" if functional else "Sequential",
                 "config": layer.get_config(),
                 "registered_name": "Functional" if functional else None}
    else:
        entry = {"module": "keras.layers" if builtin else cls.__module__,
                 "class_name": cls.__name__, "config": layer.get_config(),
                 "registered_name": None if builtin else get_registered_name(cls)}
    # Keras records a build_config for layers that have a build step (merges do).
    from ..layers.base import Layer
    shape = getattr(layer, "input_shape", None)
    has_build = type(layer).build is not Layer.build or getattr(layer, "_takes_list", False)
    if build_config and has_build and getattr(layer, "built", False) and shape is not None:
        entry["build_config"] = {"input_shape": list(shape) if not isinstance(shape, list)
                                 else [list(s) for s in shape]}
    return entry


def float32_policy(dtype, owner):
    """Checks that a config's dtype (a string or Keras's DTypePolicy dict) is float32."""
    name = dtype
    if isinstance(dtype, dict):
        name = (dtype.get("config") or {}).get("name")
    if name not in (None, "float32"):
        raise ValueError(f"{owner}: ember computes in float32; the config asks for "
                         f"dtype={name!r}")


def dtype_policy():
    """Keras 3's float32 DTypePolicy, as layer configs carry it."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": None}


def _accepted_arguments(cls):
    """The keyword arguments cls's constructor takes (along the chain of __init__s that
    pass **kwargs to their parent, down to Layer's), or None when one takes any."""
    from ..layers.base import Layer
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names.update(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if klass is Layer or not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def layer_arguments(cls, config):
    """The constructor arguments of a layer config: Keras-only keys at the value ember
    honours are dropped, and Keras 2's spellings are translated. Any other key raises
    ValueError naming it."""
    config = dict(config)
    owner = f"{cls.__name__} '{config.get('name', '?')}'"
    float32_policy(config.pop("dtype", None), owner)
    for key in _IGNORED:
        config.pop(key, None)
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1 and cls.__name__ == "BatchNormalization":
        config["axis"] = axis[0]  # Keras 2 wrote BatchNormalization's axis as a list
    accepted = _accepted_arguments(cls)
    if accepted is None:
        return config
    for key in list(config):
        if key in accepted:
            continue
        if key in _KERAS_DEFAULTS and config[key] == _KERAS_DEFAULTS[key] and \
                type(config[key]) is type(_KERAS_DEFAULTS[key]):
            del config[key]
            continue
        raise ValueError(f"{owner}: ember cannot honour the config key "
                         f"{key}={config[key]!r}" +
                         (f" (it supports {key}={_KERAS_DEFAULTS[key]!r} only)"
                          if key in _KERAS_DEFAULTS else ""))
    return config
