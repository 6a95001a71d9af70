"""ember.ops applied to a functional model's tensors, in Keras 3's config layout.

Keras 3 saves an op between layers (`keras.ops.mean(h, axis=-1)`, `x * 2.0`, `x[:, 1:]`)
as an entry of the model's `layers` list: the op's class from keras.src.ops (`Mean`), its
constructor's arguments in `config` (`axis`, `keepdims`), and one inbound node whose
`args` are what its call takes (the tensors, and constants such as the 2.0). An op
records the public call that made its tensor; saving writes that call, loading calls
the same ember op again.
"""
import inspect
import numbers
import re

import numpy as np

# ember op -> (keras.src.ops module, class, the parameters its call takes, the ones its
# constructor takes). The parameter names are ember's; they are Keras's too.
_BINARY = ("add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "greater",
           "greater_equal", "less", "less_equal", "equal", "not_equal", "matmul", "dot")
_UNARY = ("negative", "exp", "log", "sqrt", "square", "sign", "floor", "log1p", "expm1", "sin",
          "cos", "tanh")
_NN_UNARY = ("relu", "relu6", "sigmoid", "selu", "silu", "softplus", "softsign", "hard_sigmoid")
_REDUCE = ("sum", "mean", "max", "min", "argmax", "argmin")


def _class(name):
    return "".join(part.capitalize() for part in name.split("_"))


KERAS_OPS = {
    **{n: ("numpy", _class(n), ("x1", "x2"), ()) for n in _BINARY},
    **{n: ("numpy", _class(n), ("x",), ()) for n in _UNARY},
    **{n: ("nn", _class(n), ("x",), ()) for n in _NN_UNARY},
    **{n: ("numpy", _class(n), ("x",), ("axis", "keepdims")) for n in _REDUCE},
    "abs": ("numpy", "Absolute", ("x",), ()),
    "round": ("numpy", "Round", ("x",), ("decimals",)),
    "clip": ("numpy", "Clip", ("x",), ("x_min", "x_max")),
    "where": ("numpy", "Where", ("condition", "x1", "x2"), ()),
    "cast": ("core", "Cast", ("x",), ("dtype",)),
    "stop_gradient": ("core", "StopGradient", ("variable",), ()),
    "elu": ("nn", "Elu", ("x",), ("alpha",)),
    "gelu": ("nn", "Gelu", ("x",), ("approximate",)),
    "leaky_relu": ("nn", "LeakyRelu", ("x",), ("negative_slope",)),
    "softmax": ("nn", "Softmax", ("x",), ("axis",)),
    "log_softmax": ("nn", "LogSoftmax", ("x",), ("axis",)),
    "logsumexp": ("math", "Logsumexp", ("x",), ("axis", "keepdims")),
    "norm": ("linalg", "Norm", ("x",), ("ord", "axis", "keepdims")),
    "einsum": ("numpy", "Einsum", ("*operands",), ("subscripts",)),
    "reshape": ("numpy", "Reshape", ("x",), ("newshape",)),
    "expand_dims": ("numpy", "ExpandDims", ("x",), ("axis",)),
    "squeeze": ("numpy", "Squeeze", ("x",), ("axis",)),
    "transpose": ("numpy", "Transpose", ("x",), ("axes",)),
    "swapaxes": ("numpy", "Swapaxes", ("x",), ("axis1", "axis2")),
    "concatenate": ("numpy", "Concatenate", ("xs",), ("axis",)),
    "stack": ("numpy", "Stack", ("xs",), ("axis",)),
    "tile": ("numpy", "Tile", ("x",), ("repeats",)),
    "take": ("numpy", "Take", ("x", "indices"), ("axis",)),
    "one_hot": ("nn", "OneHot", ("x",), ("num_classes", "axis", "dtype")),
    "getitem": ("numpy", "GetItem", ("x", "key"), ()),
    "zeros_like": ("numpy", "ZerosLike", ("x",), ("dtype",)),
    "ones_like": ("numpy", "OnesLike", ("x",), ("dtype",)),
}
_BY_CLASS = {cls: name for name, (_, cls, _, _) in KERAS_OPS.items()}
_BY_CLASS.update(TrueDivide="divide", Silu="silu", Swish="silu")
_SIGNATURES = {}


def record(name, fn, out, args, kwargs):
    """Remembers on the op that made `out` the call of ember's op `name`, fn(*args,
    **kwargs), when `out` is a new symbolic tensor (an op handing back its input records
    nothing)."""
    from ..layers.core import KerasTensor
    from ..ops import _Op
    if not isinstance(out, KerasTensor) or not isinstance(out._layer, _Op) or \
            any(out is a for a in _tensors((args, kwargs))):
        return
    sig = _SIGNATURES.get(fn)
    if sig is None:
        sig = _SIGNATURES[fn] = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    out._layer._keras_call = (name, dict(bound.arguments))


def _tensors(value):
    from ..layers.core import KerasTensor
    if isinstance(value, KerasTensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _call_of(t):
    """(ember op name, its bound arguments) of the op tensor t, or a clear error."""
    call = getattr(t._layer, "_keras_call", None)
    if call is None or call[0] not in KERAS_OPS:
        what = f"ops.{call[0]}" if call else f"the op '{t._layer.kind}'"
        raise ValueError(f"{what} was applied to the tensors of a functional model, and "
                         f"ember cannot save it in Keras's layout. Put it inside a custom "
                         f"Layer's call()")
    return call


def inputs_of(t):
    """The symbolic tensors the op call that made t read."""
    return _tensors(_call_of(t)[1])


def _call_args(name, arguments):
    params = KERAS_OPS[name][2]
    if params == ("*operands",):
        return list(arguments["operands"])
    return [arguments[p] for p in params]


def entry(t, name, history):
    """The Keras config entry of the op that made tensor t, named `name`; history(tensor)
    gives a tensor's reference."""
    op, arguments = _call_of(t)
    module, cls, _, constructor = KERAS_OPS[op]

    def arg(v):
        from ..layers.base import Variable
        from ..layers.core import KerasTensor
        if isinstance(v, KerasTensor):
            return history(v)
        if isinstance(v, (list, tuple)):
            return [arg(x) for x in v]
        if isinstance(v, slice):
            return {"class_name": "__slice__",
                    "config": {"start": arg(v.start), "stop": arg(v.stop), "step": arg(v.step)}}
        if v is Ellipsis:
            return {"class_name": "__ellipsis__", "config": {}}
        if isinstance(v, Variable):
            raise ValueError(f"ops.{op} reads the weight '{v.path}' between a functional "
                             f"model's layers: ember cannot save that in Keras's layout. Put "
                             f"it inside a custom Layer's call()")
        if isinstance(v, np.ndarray):
            return {"class_name": "__numpy__", "config": {"value": v.tolist(),
                                                          "dtype": v.dtype.name}}
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return float(v)
        return v
    config = {"name": name}
    config.update({p: arg(arguments[p]) for p in constructor})
    return {"module": f"keras.src.ops.{module}", "class_name": cls, "config": config,
            "registered_name": cls, "name": name,
            "inbound_nodes": [{"args": [arg(v) for v in _call_args(op, arguments)],
                               "kwargs": {}}]}


def base_name(t):
    """The name Keras gives such an op: its class in snake case (GetItem: get_item)."""
    cls = KERAS_OPS[_call_of(t)[0]][1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()


def is_op_entry(e):
    return str(e.get("module", "")).startswith(("keras.src.ops", "keras.ops"))


def call(e, resolve):
    """The tensor a Keras op entry makes: its ember op called again on the inbound
    node's arguments; resolve(history) gives the tensor a reference names."""
    from .. import ops
    cls, name = e.get("class_name"), e.get("name")
    op = _BY_CLASS.get(cls)
    nodes = e.get("inbound_nodes") or []
    if op is None:
        raise ValueError(f"The op '{name}' ({cls}) of this functional model has no ember "
                         f"equivalent yet")
    if len(nodes) != 1 or not isinstance(nodes[0], dict):
        raise ValueError(f"The op '{name}' ({cls}) must have one inbound node. Received: "
                         f"{nodes!r:.80}")

    def value(v):
        if isinstance(v, list):
            return [value(x) for x in v]
        if isinstance(v, dict):
            kind, c = v.get("class_name"), v.get("config") or {}
            if kind == "__keras_tensor__":
                return resolve(c.get("keras_history", [None, 0, 0]))
            if kind == "__numpy__":
                return np.asarray(c.get("value"), dtype=c.get("dtype", "float32"))
            if kind == "__slice__":
                return slice(value(c.get("start")), value(c.get("stop")), value(c.get("step")))
            if kind == "__ellipsis__":
                return Ellipsis
            raise ValueError(f"The op '{name}' ({cls}) takes an argument ember cannot read: "
                             f"{v!r:.80}")
        return v
    args = [value(v) for v in nodes[0].get("args") or []]
    kwargs = {k: value(v) for k, v in (nodes[0].get("kwargs") or {}).items()}
    config = {k: value(v) for k, v in (e.get("config") or {}).items() if k != "name"}
    if op == "getitem":
        x, key = args
        return x[tuple(key) if isinstance(key, list) else key]
    fn = getattr(ops, op)
    accepted = inspect.signature(fn).parameters
    for k in list(config):
        if k not in accepted:
            if config[k] not in (None, False):
                raise ValueError(f"The op '{name}' ({cls}) has {k}={config[k]!r}, which "
                                 f"ember's ops.{op} does not take")
            del config[k]
    if op == "einsum":
        return fn(config.pop("subscripts"), *args, **kwargs, **config)
    return fn(*args, **kwargs, **config)
