"""ember.ops: NumPy-like operations for custom layers and models.

On arrays (NumPy, lists, numbers, ember Variables) an op computes at once and returns
a NumPy array. On symbolic tensors (inside a custom layer's `call`, or on the tensors of
a functional model) it records a node of the model's C++ graph, with its forward and
backward pass in the core:

    class Linear(ember.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 32))
            self.b = self.add_weight(shape=(32,), initializer="zeros")

        def call(self, x):
            return ops.relu(ops.matmul(x, self.w) + self.b)

Symbolic tensors keep the batch axis first; ops work within a sample (broadcasting
follows NumPy over the other axes) and may not reduce, index or reorder the batch
axis. `matmul(x, w)` with a weight is the same GEMM a Dense layer runs, and a bias
added after it and an activation after that fuse into it as they do for Dense.
"""
import builtins as _builtins
import numbers

import numpy as np

from . import activations as _activations
from . import step_trace as _step_trace
from . import tape as _tape
from .layers.base import Layer, Variable
from .layers.core import InputLayer, KerasTensor

__all__ = [
    "abs", "absolute", "add", "argmax", "argmin", "cast", "clip", "concatenate", "convert_to_numpy",
    "convert_to_tensor", "cos", "divide", "dot", "einsum", "elu", "equal", "exp",
    "expand_dims", "expm1", "floor", "gelu", "greater", "greater_equal", "hard_sigmoid",
    "leaky_relu", "less", "less_equal", "log", "log1p", "log_softmax", "logsumexp",
    "matmul", "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "norm",
    "not_equal", "one_hot", "ones", "ones_like", "power", "relu", "relu6", "reshape", "round",
    "selu", "shape", "sigmoid", "sign", "silu", "sin", "softmax", "softplus", "softsign",
    "split", "sqrt", "square", "squeeze", "stack", "stop_gradient", "subtract", "sum", "swish",
    "take", "tanh",
    "tile", "transpose", "true_divide", "where", "zeros", "zeros_like",
]


# -- recording ------------------------------------------------------------------------------

class _Op(Layer):
    """One recorded op of a traced graph: a node with no weights of its own. Constant
    operands become frozen core variables that the model's builder owns. An op of no
    tensors (random values) is a source of the graph."""

    _takes_list = True

    def __init__(self, kind, lower, source=False):
        super().__init__(name=f"{kind}_op")
        self.kind = kind
        self._lower_fn = lower
        self._source = source
        self.built = True

    def _lower(self, graph, args):
        return self._lower_fn(graph, args)

    def get_config(self):
        raise ValueError(f"The op '{self.kind}' was applied to the tensors of a functional "
                         f"model: ember cannot save such a model yet. Put the op inside a "
                         f"custom Layer's call()")


def _symbolic(kind, tensors, sample_shape, lower, batch_reduce=None):
    """A new symbolic tensor: `lower(graph, values)` adds its nodes for the values of
    `tensors`. batch_reduce: the tensor stands for a value of the whole batch, the mean
    or sum over its samples of this per-sample value (ops.mean(x) without an axis inside
    a call, for add_loss)."""
    if batch_reduce is None and any(getattr(t, "_batch_reduce", None) for t in tensors):
        raise ValueError(f"ops.{kind}: a value of the whole batch (ops.mean or ops.sum "
                         f"without an axis) can only be scaled, added to another such mean "
                         f"or passed to self.add_loss inside a model")
    derived = [_weights_only(t) for t in tensors]
    if any(derived) and not all(derived):
        raise ValueError(f"ops.{kind}: a value computed from weights alone meets the input "
                         f"only in +, -, *, /, maximum, minimum, the comparisons and matmul "
                         f"(as the weight); compute the rest from the input")
    for d in sample_shape:
        if d <= 0:
            raise ValueError(f"ops.{kind}: the result would have an empty axis "
                             f"{(None,) + tuple(sample_shape)}")
    out = KerasTensor._from_call(_Op(kind, lower, source=not tensors), tensors,
                                 (None,) + tuple(sample_shape), 0)
    if batch_reduce is not None:
        out._batch_reduce = batch_reduce
    if tensors and all(derived):
        out._weights_only = True
    return out


def _weights_only(t):
    """Whether a symbolic tensor is computed from weights (and constants) alone."""
    return getattr(t, "_weights_only", False)


class _DerivedWeight:
    """A value computed from weights alone, used as a weight operand."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.shape = tuple(tensor.shape[1:])


def _is_sym(x):
    return isinstance(x, KerasTensor)


def _any_sym(*xs):
    return any(_is_sym(x) for x in xs)


def _sample(x):
    return tuple(x.shape[1:])


# Depth of custom-layer traces in progress (Layer._trace).
_tracing = [0]


def _array(x):
    """An eager operand as a float32 array."""
    if isinstance(x, Variable):
        if _tracing[0]:
            raise ValueError(
                f"The weight '{x.path}' read as an array inside a traced call(): ember would "
                f"freeze its value at trace time. Compute with it through ember.ops (ops on "
                f"weights alone run in the model's graph)")
        return x.value
    return np.asarray(x, dtype=np.float32)


def _operand_ref(builder, x):
    """A non-symbolic operand as the core sees it: a Variable's storage, a weight
    computed from weights, or a constant."""
    if isinstance(x, Variable):
        return x._storage, x.shape
    if isinstance(x, _DerivedWeight):
        return builder.derived(x.tensor), x.shape
    a = np.asarray(x, dtype=np.float32)
    return builder.constant(a), a.shape


def _axis(axis, rank, op):
    """A per-sample axis (0 is the first axis after the batch) of a full-rank axis."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"ops.{op}: axis must be an integer. Received: axis={axis!r}")
    a = int(axis) + rank if axis < 0 else int(axis)
    if not 0 <= a < rank:
        raise ValueError(f"ops.{op}: axis {axis} is out of range for a tensor of rank {rank}")
    if a == 0:
        raise ValueError(f"ops.{op}: the batch axis (axis 0) cannot be reduced, indexed or "
                         f"moved inside a model; ops work within each sample. Received: "
                         f"axis={axis}")
    return a - 1


def _broadcast(kind, *shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"ops.{kind}: shapes {' and '.join(str(s) for s in shapes)} do not "
                         f"broadcast") from None


def _index_map(shape, out):
    """For each element of `out`, the element of an array of `shape` that broadcasting
    reads (empty when the shapes are equal)."""
    if tuple(shape) == tuple(out):
        return np.zeros(0, np.int32)
    shape = (1,) * (len(out) - len(shape)) + tuple(shape)
    idx = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    return np.ascontiguousarray(np.broadcast_to(idx, out)).ravel()


def _gather(kind, x, index_fn):
    """A symbolic op that picks elements of each sample: index_fn(per-sample array of
    element indices) -> the indices of the output."""
    idx = index_fn(np.arange(int(np.prod(_sample(x))), dtype=np.int32).reshape(_sample(x)))
    idx = np.asarray(idx, dtype=np.int32)
    shape = idx.shape
    flat = np.ascontiguousarray(idx).ravel()
    return _symbolic(kind, [x], shape, lambda g, v: g.add_gather(v[0], flat, list(shape)))


# -- arithmetic -------------------------------------------------------------------------------

_NUMPY_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "power": np.power, "maximum": np.maximum, "minimum": np.minimum, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
    "equal": np.equal, "not_equal": np.not_equal,
}


def _binary(kind, a, b):
    if not _any_sym(a, b):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _NUMPY_BINARY[kind](_array(a), _array(b)).astype(np.float32)
    # A number on one side: one unary node where the op allows.
    if isinstance(b, numbers.Real) and _is_sym(a):
        b = float(b)
        if kind == "add":
            return _unary("affine", a, 1.0, b)
        if kind == "subtract":
            return _unary("affine", a, 1.0, -b)
        if kind == "multiply":
            return _unary("affine", a, b, 0.0)
        if kind == "divide" and b != 0:
            return _unary("affine", a, 1.0 / b, 0.0)
        if kind == "power":
            return _unary("square", a) if b == 2 else _unary("pow", a, b)
    if isinstance(a, numbers.Real) and _is_sym(b):
        a = float(a)
        if kind in ("add", "multiply"):
            return _binary(kind, b, a)
        if kind == "subtract":
            return _unary("affine", b, -1.0, a)
        if kind == "divide":
            return _unary("rdiv", b, a)
    if _is_sym(a) and _is_sym(b) and _weights_only(a) != _weights_only(b):
        if _weights_only(a):
            a = _DerivedWeight(a)
        else:
            b = _DerivedWeight(b)
    if _is_sym(a) and _is_sym(b):
        if len(a.shape) != len(b.shape):
            raise ValueError(f"ops.{kind}: tensors of shapes {a.shape} and {b.shape} have "
                             f"different ranks; inside a model both keep the batch axis "
                             f"first, so expand one (ops.expand_dims) to the other's rank")
        out = _broadcast(kind, _sample(a), _sample(b))
        ma, mb = _index_map(_sample(a), out), _index_map(_sample(b), out)
        whole = getattr(a, "_batch_reduce", None)
        if whole != getattr(b, "_batch_reduce", None) or kind not in ("add", "subtract"):
            whole = None  # _symbolic refuses a value of the whole batch here
        return _symbolic(kind, [a, b], out,
                         lambda g, v: g.add_binary(kind, v[0], ma, v[1], mb, list(out)), whole)
    # One symbolic side, the other a weight or a constant (no batch axis, or a batch
    # axis of 1 as NumPy would broadcast it).
    sym, other, sym_first = (a, b, True) if _is_sym(a) else (b, a, False)
    oshape = other.shape if isinstance(other, _DerivedWeight) else \
        np.shape(other.value if isinstance(other, Variable) else other)
    if len(oshape) == len(sym.shape) and oshape and oshape[0] == 1:
        oshape = oshape[1:]
    elif len(oshape) > len(_sample(sym)):
        raise ValueError(f"ops.{kind}: an array of shape {oshape} does not broadcast "
                         f"against a tensor of shape {sym.shape}")
    out = _broadcast(kind, _sample(sym), oshape)
    ms, mo = _index_map(_sample(sym), out), _index_map(oshape, out)

    def lower(g, v):
        ref, _ = _operand_ref(g, other)  # a dropped leading 1 leaves the same storage
        if sym_first:
            return g.add_binary(kind, v[0], ms, ref, mo, list(out))
        return g.add_binary(kind, ref, mo, v[0], ms, list(out))
    return _symbolic(kind, [sym], out, lower)


def add(x1, x2):
    return _binary("add", x1, x2)


def subtract(x1, x2):
    return _binary("subtract", x1, x2)


def multiply(x1, x2):
    return _binary("multiply", x1, x2)


def divide(x1, x2):
    return _binary("divide", x1, x2)


true_divide = divide


def power(x1, x2):
    return _binary("power", x1, x2)


def maximum(x1, x2):
    return _binary("maximum", x1, x2)


def minimum(x1, x2):
    return _binary("minimum", x1, x2)


def greater(x1, x2):
    return _binary("greater", x1, x2)


def greater_equal(x1, x2):
    return _binary("greater_equal", x1, x2)


def less(x1, x2):
    return _binary("less", x1, x2)


def less_equal(x1, x2):
    return _binary("less_equal", x1, x2)


def equal(x1, x2):
    return _binary("equal", x1, x2)


def not_equal(x1, x2):
    return _binary("not_equal", x1, x2)


def negative(x):
    return _unary("affine", x, -1.0, 0.0)


# -- element-wise math ----------------------------------------------------------------------

_NUMPY_UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "square": np.square, "abs": np.abs,
    "sign": np.sign, "floor": np.floor, "round": np.round, "trunc": np.trunc,
    "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos,
}


def _unary(kind, x, a=0.0, b=0.0):
    if not _is_sym(x):
        v = _array(x)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if kind == "affine":
                return (np.float32(a) * v + np.float32(b)).astype(np.float32)
            if kind == "clip":
                return np.clip(v, a, b).astype(np.float32)
            if kind == "pow":
                return np.power(v, np.float32(a)).astype(np.float32)
            if kind == "rdiv":
                return (np.float32(a) / v).astype(np.float32)
            return _NUMPY_UNARY[kind](v).astype(np.float32)
    whole = getattr(x, "_batch_reduce", None)
    if whole is not None and not (kind == "affine" and (whole == "mean" or b == 0.0)):
        whole = None  # _symbolic refuses it
    return _symbolic(kind, [x], _sample(x),
                     lambda g, v: g.add_unary(v[0], kind, float(a), float(b)), whole)


def exp(x):
    return _unary("exp", x)


def log(x):
    return _unary("log", x)


def sqrt(x):
    return _unary("sqrt", x)


def square(x):
    return _unary("square", x)


def abs(x):  # noqa: A001 (NumPy's name)
    return _unary("abs", x)


absolute = abs


def sign(x):
    return _unary("sign", x)


def floor(x):
    return _unary("floor", x)


def round(x, decimals=0):  # noqa: A001
    if decimals:
        raise ValueError(f"ops.round: only decimals=0 is supported. Received: {decimals!r}")
    return _unary("round", x)


def log1p(x):
    return _unary("log1p", x)


def expm1(x):
    return _unary("expm1", x)


def sin(x):
    return _unary("sin", x)


def cos(x):
    return _unary("cos", x)


def clip(x, x_min, x_max):
    if not (isinstance(x_min, numbers.Real) and isinstance(x_max, numbers.Real)):
        return minimum(maximum(x, x_min), x_max)
    if x_min > x_max:
        raise ValueError(f"ops.clip: x_min must not exceed x_max. Received: {x_min}, {x_max}")
    return _unary("clip", x, float(x_min), float(x_max))


def where(condition, x1, x2):
    """x1 where condition is true (non-zero), else x2. Inside a model both sides are
    computed and mixed, so each must be finite."""
    if not _any_sym(condition, x1, x2):
        return np.where(_array(condition) != 0, _array(x1), _array(x2)).astype(np.float32)
    c = not_equal(condition, 0.0) if _is_sym(condition) else \
        (_array(condition) != 0).astype(np.float32)
    return add(multiply(c, x1), multiply(subtract(1.0, c), x2))


def stop_gradient(variable):
    """The same values, through which no gradient flows (a target that training must
    not move)."""
    if not _is_sym(variable):
        return _array(variable)
    return _symbolic("stop_gradient", [variable], _sample(variable),
                     lambda g, v: g.add_stop_gradient(v[0]))


def cast(x, dtype):
    """float dtypes keep the values; integer dtypes truncate toward zero (the values
    stay float32 inside a model)."""
    name = np.dtype(dtype).name
    if not _is_sym(x):
        return np.asarray(_array(x) if not isinstance(x, np.ndarray) else x).astype(name)
    if name.startswith("float"):
        return x
    if name.startswith(("int", "uint", "bool")):
        return _unary("trunc", x) if name != "bool" else not_equal(x, 0.0)
    raise ValueError(f"ops.cast: cannot cast to {dtype!r}")


# -- activations ------------------------------------------------------------------------------

def _activation(name, x, alpha=float("nan")):
    if not _is_sym(x):
        return _activations._apply(name, x, alpha)
    return _symbolic(name, [x], _sample(x), lambda g, v: g.add_activation(v[0], name, alpha))


def relu(x):
    return _activation("relu", x)


def relu6(x):
    return _activation("relu6", x)


def sigmoid(x):
    return _activation("sigmoid", x)


def tanh(x):
    return _activation("tanh", x)


def elu(x, alpha=1.0):
    return _activation("elu", x, float(alpha))


def selu(x):
    return _activation("selu", x)


def gelu(x, approximate=True):
    return _activation("gelu_approximate" if approximate else "gelu", x)


def silu(x):
    return _activation("silu", x)


swish = silu


def softplus(x):
    return _activation("softplus", x)


def softsign(x):
    return _activation("softsign", x)


def hard_sigmoid(x):
    return _activation("hard_sigmoid", x)


def leaky_relu(x, negative_slope=0.2):
    return _activation("leaky_relu", x, float(negative_slope))


def softmax(x, axis=-1):
    if axis in (-1, None) or (not _is_sym(x) and axis == np.ndim(x) - 1):
        return _activation("softmax", x)
    e = exp(subtract(x, max(x, axis=axis, keepdims=True)))
    return divide(e, sum(e, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    if axis == -1:
        return _activation("log_softmax", x)
    return subtract(x, logsumexp(x, axis=axis, keepdims=True))


# -- reductions -------------------------------------------------------------------------------

def _reduce(kind, x, axis, keepdims):
    if not _is_sym(x):
        v = _array(x)
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}.get(kind)
        if fn is not None:
            return np.asarray(fn(v, axis=axis, keepdims=keepdims), dtype=np.float32)
        return np.asarray((np.argmax if kind == "argmax" else np.argmin)(v, axis=axis,
                                                                         keepdims=keepdims))
    rank, sample = len(x.shape), _sample(x)
    whole = None
    if axis is None:
        if not (_tracing[0] and kind in ("mean", "sum") and not keepdims):
            raise ValueError(f"ops.{kind}: axis=None would reduce over the batch too; inside "
                             f"a model, name the per-sample axes to reduce (e.g. axis=-1); a "
                             f"mean over the batch can be passed to self.add_loss in a call")
        whole, axis = kind, tuple(range(1, rank))  # each sample's, then the batch's
    axes = sorted({_axis(a, rank, kind) for a in (axis if isinstance(axis, (list, tuple))
                                                 else [axis])})
    kept = tuple(1 if i in axes else d for i, d in enumerate(sample))
    out = kept if keepdims else tuple(d for i, d in enumerate(sample) if i not in axes)
    index = np.indices(sample, dtype=np.int64)
    target = np.zeros(sample, np.int64)
    for i, d in enumerate(kept):
        target = target * d + (0 if i in axes else index[i])
    pos = np.zeros(sample, np.int64)
    for i in axes:
        pos = pos * sample[i] + index[i]
    m = target.ravel().astype(np.int32)
    p = pos.ravel().astype(np.int32)
    shape = out or (1,)  # every per-sample axis reduced: one value per sample, kept (1,)

    def lower(g, v):
        y = g.add_reduce(v[0], kind, m, p, list(kept))
        return y if list(shape) == list(kept) else g.add_reshape(y, list(shape))
    return _symbolic(kind, [x], shape, lower, whole)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce("sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _reduce("mean", x, axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return _reduce("min", x, axis, keepdims)


def argmax(x, axis=None, keepdims=False):
    return _reduce("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    return _reduce("argmin", x, axis, keepdims)


def logsumexp(x, axis=None, keepdims=False):
    if not _is_sym(x):
        v = _array(x)
        m = np.max(v, axis=axis, keepdims=True)
        r = np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True)) + m
        return (r if keepdims else np.squeeze(r, axis=axis)).astype(np.float32)
    m = max(x, axis=axis, keepdims=True)
    r = add(log(sum(exp(subtract(x, m)), axis=axis, keepdims=True)), m)
    return r if keepdims else squeeze(r, axis=axis)


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    if ord not in (None, 2, "fro", "euclidean"):
        raise ValueError(f"ops.norm: only the 2-norm is supported. Received: ord={ord!r}")
    if not _is_sym(x):
        return np.sqrt(np.sum(np.square(_array(x)), axis=axis, keepdims=keepdims))
    return sqrt(sum(square(x), axis=axis, keepdims=keepdims))


# -- products ---------------------------------------------------------------------------------

def matmul(x1, x2):
    """NumPy's matmul. Inside a model: a tensor times a 2-D weight or constant (the GEMM
    of a Dense layer, on the last axis), or two tensors of the same rank (per sample,
    (..., m, k) by (..., k, n))."""
    if not _any_sym(x1, x2):
        return np.matmul(_array(x1), _array(x2)).astype(np.float32)
    if _is_sym(x1) and _is_sym(x2) and _weights_only(x2) and not _weights_only(x1):
        x2 = _DerivedWeight(x2)  # a weight computed from weights: the Dense GEMM
    if _is_sym(x1) and _is_sym(x2):
        sa, sb = _sample(x1), _sample(x2)
        if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise ValueError(f"ops.matmul: cannot multiply tensors of shapes {x1.shape} and "
                             f"{x2.shape} (inside a model: the same rank, the same leading "
                             f"axes, (..., m, k) by (..., k, n))")
        out = sa[:-1] + sb[-1:]
        return _symbolic("matmul", [x1, x2], out, lambda g, v: g.add_matmul(v[0], v[1]))
    if not _is_sym(x1):
        raise ValueError(f"ops.matmul: a weight or array times a tensor is not supported "
                         f"inside a model; write ops.matmul(x, ops.transpose(w)) style "
                         f"products with the tensor first. Received shapes "
                         f"{np.shape(_array(x1))} and {x2.shape}")
    wshape = x2.shape if isinstance(x2, _DerivedWeight) else \
        np.shape(x2.value if isinstance(x2, Variable) else x2)
    if len(wshape) != 2 or wshape[0] != x1.shape[-1]:
        raise ValueError(f"ops.matmul: cannot multiply a tensor of shape {x1.shape} by an "
                         f"array of shape {wshape} (inside a model the array must be 2-D, "
                         f"({x1.shape[-1]}, units))")
    out = _sample(x1)[:-1] + (wshape[1],)

    def lower(g, v):
        ref, _ = _operand_ref(g, x2)
        return g.add_dense(v[0], ref, None, "linear")
    return _symbolic("matmul", [x1], out, lower)


def dot(x1, x2):
    return matmul(x1, x2)


def einsum(subscripts, *operands):
    """NumPy's einsum with an explicit output ('...->...'). Inside a model the tensors
    keep the batch axis first (the same letter in each, first in the output) and are
    contracted pairwise, left to right, as transposes, reshapes and batched matmuls: any
    contraction, outer product or sum of their other axes. A weight or constant operand
    takes the matmul form: a tensor's last axis against a 2-D weight's first."""
    if not _any_sym(*operands):
        return np.einsum(subscripts, *[_array(o) for o in operands]).astype(np.float32)
    spec = subscripts.replace(" ", "")
    if "->" not in spec or "." in spec:
        raise ValueError(f"ops.einsum: inside a model ember takes an explicit output "
                         f"('...->...') without ellipses. Received: {subscripts!r}")
    ins, out = spec.split("->")
    terms = ins.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"ops.einsum: {subscripts!r} names {len(terms)} operands. Received "
                         f"{len(operands)}")
    for t, x in zip(terms, operands):
        rank = len(x.shape) if _is_sym(x) else np.ndim(_array(x) if not isinstance(x, Variable)
                                                         else x.value)
        if len(t) != rank or len(set(t)) != len(t):
            raise ValueError(f"ops.einsum: the term {t!r} of {subscripts!r} must name each "
                             f"axis of its operand (rank {rank}) once")
    if len(terms) == 2 and not all(_is_sym(x) for x in operands):
        return _einsum_weight(subscripts, terms, out, *operands)
    if not all(_is_sym(x) for x in operands):
        raise ValueError(f"ops.einsum: inside a model every operand of {subscripts!r} but the "
                         f"second of two must be a tensor")
    batch = terms[0][0]
    if any(t[0] != batch for t in terms) or not out or out[0] != batch:
        raise ValueError(f"ops.einsum: inside a model the batch axis comes first in every "
                         f"tensor and in the output ({subscripts!r})")
    x, letters = operands[0], terms[0]
    for k in range(1, len(terms)):
        later = set(out).union(*terms[k + 1:])
        x, letters = _einsum_pair(x, letters, operands[k], terms[k], later)
    x, letters = _einsum_sum(x, letters, set(out))
    return _einsum_order(x, letters, out)


def _einsum_sum(x, letters, keep):
    """x with the axes whose letters are not kept summed out. ('1' names the axis of 1 a
    per-sample scalar keeps.)"""
    gone = [i for i, c in enumerate(letters) if c not in keep and c != "1"]
    if not gone:
        return x, letters
    return sum(x, axis=tuple(gone)), "".join(c for c in letters if c in keep)


def _einsum_order(x, letters, want):
    if "1" in letters and letters.replace("1", "") == want[:1] == want:
        return x  # a per-sample scalar
    if "1" in letters:
        dims = [d for c, d in zip(letters, x.shape) if c != "1"]
        x, letters = reshape(x, [-1] + dims[1:]), letters.replace("1", "")
    if letters == want:
        return x
    return transpose(x, tuple(letters.index(c) for c in want))


def _einsum_pair(a, la, b, lb, later):
    """a (letters la) times b (lb), summing the letters that only they share and that
    nothing later reads, as one batched matmul: (shared, a's own, summed) by (shared,
    summed, b's own)."""
    a, la = _einsum_sum(a, la, set(lb) | later)
    b, lb = _einsum_sum(b, lb, set(la) | later)
    shared = [c for c in la if c in lb and c in later]
    summed = [c for c in la if c in lb and c not in later]
    own_a = [c for c in la if c not in lb]
    own_b = [c for c in lb if c not in la]
    size = dict(zip(la, a.shape))
    size.update(zip(lb, b.shape))

    def prod(cs):
        return int(np.prod([size[c] for c in cs])) if cs else 1
    lead = [size[c] for c in shared[1:]]
    a = _einsum_order(a, la, "".join(shared + own_a + summed))
    b = _einsum_order(b, lb, "".join(shared + summed + own_b))
    a = reshape(a, [-1] + lead + [prod(own_a), prod(summed)])
    b = reshape(b, [-1] + lead + [prod(summed), prod(own_b)])
    dims, letters = lead + [size[c] for c in own_a + own_b], "".join(shared + own_a + own_b)
    if not dims:
        dims, letters = [1], letters + "1"
    return reshape(matmul(a, b), [-1] + dims), letters


def _einsum_weight(subscripts, terms, out, x1, x2):
    """A tensor's last axis against the first of a 2-D weight or constant."""
    a, b = terms
    if _is_sym(x1) and len(b) == 2 and a[-1] == b[0] and out == a[:-1] + b[1]:
        return matmul(x1, x2)
    raise ValueError(f"ops.einsum: inside a model a weight or constant operand takes the "
                     f"form 'ab...j,jk->ab...k' (the tensor first). Received: {subscripts!r}")


# -- shapes -----------------------------------------------------------------------------------

def shape(x):
    """The shape; inside a model the batch axis is None."""
    if _is_sym(x):
        return tuple(x.shape)
    return tuple(np.shape(_array(x)))


def _sample_shape_of(x, new_shape, op):
    """The per-sample shape of a reshape target given with its batch axis."""
    new_shape = list(new_shape)
    if not new_shape or new_shape[0] not in (-1, None):
        raise ValueError(f"ops.{op}: inside a model the first axis is the batch; give it as -1 "
                         f"or None. Received: {tuple(new_shape)}")
    rest = [int(d) for d in new_shape[1:]]
    size = int(np.prod(_sample(x)))
    if rest.count(-1) > 1:
        raise ValueError(f"ops.{op}: at most one -1 besides the batch. Received: {new_shape}")
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1]))
        if known <= 0 or size % known:
            raise ValueError(f"ops.{op}: cannot reshape {x.shape} to {tuple(new_shape)}")
        rest[rest.index(-1)] = size // known
    if int(np.prod(rest)) != size:
        raise ValueError(f"ops.{op}: cannot reshape {x.shape} to {tuple(new_shape)}")
    return tuple(rest)


def reshape(x, newshape):
    if not _is_sym(x):
        return np.reshape(_array(x), newshape)
    out = _sample_shape_of(x, newshape, "reshape")
    return _symbolic("reshape", [x], out, lambda g, v: g.add_reshape(v[0], list(out)))


def _reshaped(x, out, kind):
    return _symbolic(kind, [x], out, lambda g, v: g.add_reshape(v[0], list(out)))


def expand_dims(x, axis):
    if not _is_sym(x):
        return np.expand_dims(_array(x), axis)
    rank = len(x.shape) + 1
    a = int(axis) + rank if axis < 0 else int(axis)
    if not 1 <= a < rank:
        raise ValueError(f"ops.expand_dims: axis {axis} is out of range, or the batch axis, "
                         f"for a tensor of shape {x.shape}")
    s = list(_sample(x))
    s.insert(a - 1, 1)
    return _reshaped(x, tuple(s), "expand_dims")


def squeeze(x, axis=None):
    if not _is_sym(x):
        return np.squeeze(_array(x), axis=axis)
    s = _sample(x)
    axes = [i for i, d in enumerate(s) if d == 1] if axis is None else \
        [_axis(a, len(x.shape), "squeeze") for a in (axis if isinstance(axis, (list, tuple))
                                                    else [axis])]
    for a in axes:
        if s[a] != 1:
            raise ValueError(f"ops.squeeze: axis {a + 1} of a tensor of shape {x.shape} is not 1")
    out = tuple(d for i, d in enumerate(s) if i not in axes) or (1,)
    return _reshaped(x, out, "squeeze")


def transpose(x, axes=None):
    if not _is_sym(x):
        return np.transpose(_array(x), axes)
    rank = len(x.shape)
    if axes is None:
        raise ValueError("ops.transpose: inside a model give the axes, keeping the batch axis "
                         "first (e.g. (0, 2, 1)); reversing all axes would move it")
    axes = [int(a) + rank if a < 0 else int(a) for a in axes]
    if sorted(axes) != list(range(rank)) or axes[0] != 0:
        raise ValueError(f"ops.transpose: axes must permute {rank} axes and keep the batch "
                         f"axis first. Received: {tuple(axes)}")
    perm = [a - 1 for a in axes[1:]]
    return _gather("transpose", x, lambda idx: np.transpose(idx, perm))


def swapaxes(x, axis1, axis2):
    if not _is_sym(x):
        return np.swapaxes(_array(x), axis1, axis2)
    rank = len(x.shape)
    axes = list(range(rank))
    a, b = _axis(axis1, rank, "swapaxes") + 1, _axis(axis2, rank, "swapaxes") + 1
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, axes)


def concatenate(xs, axis=0):
    xs = list(xs)
    if not _any_sym(*xs):
        return np.concatenate([_array(x) for x in xs], axis=axis)
    if not all(_is_sym(x) for x in xs):
        raise ValueError("ops.concatenate: inside a model every piece must be a tensor")
    rank = len(xs[0].shape)
    a = _axis(axis, rank, "concatenate")
    for x in xs:
        s, s0 = _sample(x), _sample(xs[0])
        if len(s) != len(s0) or any(d != e for i, (d, e) in enumerate(zip(s, s0)) if i != a):
            raise ValueError(f"ops.concatenate: shapes {[t.shape for t in xs]} differ off "
                             f"axis {axis}")
    out = list(_sample(xs[0]))
    out[a] = int(np.sum([_sample(x)[a] for x in xs]))
    return _symbolic("concatenate", xs, tuple(out),
                     lambda g, v: g.add_concatenate(list(v), a))


def stack(xs, axis=0):
    xs = list(xs)
    if not _any_sym(*xs):
        return np.stack([_array(x) for x in xs], axis=axis)
    rank = len(xs[0].shape) + 1
    a = int(axis) + rank if axis < 0 else int(axis)
    return concatenate([expand_dims(x, a) for x in xs], axis=a)


def split(x, indices_or_sections, axis=0):
    if not _is_sym(x):
        return np.split(_array(x), indices_or_sections, axis=axis)
    a = _axis(axis, len(x.shape), "split")
    idx = np.arange(int(np.prod(_sample(x)))).reshape(_sample(x))
    try:
        pieces = np.split(idx, indices_or_sections, axis=a)
    except ValueError as e:
        raise ValueError(f"ops.split: {e} (tensor of shape {x.shape})") from None
    return [_gather("split", x, lambda _, p=p: p) for p in pieces]


def tile(x, repeats):
    if not _is_sym(x):
        return np.tile(_array(x), repeats)
    reps = list(repeats) if isinstance(repeats, (list, tuple)) else [repeats]
    if len(reps) == len(x.shape):
        if reps[0] != 1:
            raise ValueError(f"ops.tile: the batch axis cannot be repeated inside a model. "
                             f"Received: repeats={repeats!r}")
        reps = reps[1:]
    if len(reps) > len(_sample(x)):
        raise ValueError(f"ops.tile: repeats {repeats!r} has more axes than {x.shape}")
    return _gather("tile", x, lambda idx: np.tile(idx, reps))


def take(x, indices, axis=None):
    """Elements at constant indices along a per-sample axis."""
    if not _is_sym(x):
        return np.take(_array(x), np.asarray(indices), axis=axis)
    if _is_sym(indices):
        raise ValueError("ops.take: indices computed inside a model are not supported yet; "
                         "use an Embedding layer to look rows up by id")
    if axis is None:
        raise ValueError("ops.take: inside a model give the axis (axis=None would flatten "
                         "the batch)")
    a = _axis(axis, len(x.shape), "take")
    ind = np.asarray(indices, dtype=np.int64)
    size = _sample(x)[a]
    if ind.size and (ind.min() < -size or ind.max() >= size):
        raise ValueError(f"ops.take: indices {ind.min()}..{ind.max()} out of range for axis "
                         f"{axis} of size {size}")
    return _gather("take", x, lambda idx: np.take(idx, ind % size, axis=a))


def _getitem(x, key):
    """Indexing a symbolic tensor: the batch axis stays whole (`x[:, 1:3]`, `x[..., 0]`)."""
    key = key if isinstance(key, tuple) else (key,)
    if key and key[0] is Ellipsis:
        per = key
    elif key and isinstance(key[0], slice) and key[0] == slice(None):
        per = key[1:]
    else:
        raise ValueError(f"Indexing a tensor inside a model must keep the batch axis whole "
                         f"(x[:, ...] or x[..., i]). Received: {key!r}")
    if any(k is None for k in per) or any(_is_sym(k) for k in per):
        raise ValueError(f"Indexing a tensor inside a model takes integers, slices and "
                         f"Ellipsis. Received: {key!r}")
    try:
        probe = np.arange(int(np.prod(_sample(x)))).reshape(_sample(x))[per]
    except IndexError as e:
        raise ValueError(f"Index {key!r} out of range for a tensor of shape {x.shape}: {e}") \
            from None
    if probe.ndim == 0:
        probe = probe.reshape(1)
        return _gather("getitem", x, lambda idx: idx[per].reshape(1))
    return _gather("getitem", x, lambda idx: idx[per])


# -- constructors -------------------------------------------------------------------------------

def zeros(shape, dtype="float32"):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype="float32"):
    return np.ones(shape, dtype=dtype)


def zeros_like(x, dtype=None):
    if _is_sym(x):
        return _unary("affine", x, 0.0, 0.0)
    return np.zeros_like(_array(x), dtype=dtype)


def ones_like(x, dtype=None):
    if _is_sym(x):
        return _unary("affine", x, 0.0, 1.0)
    return np.ones_like(_array(x), dtype=dtype)


def one_hot(x, num_classes, axis=-1, dtype="float32"):
    if axis != -1:
        raise ValueError(f"ops.one_hot: only axis=-1 is supported. Received: axis={axis!r}")
    if not _is_sym(x):
        v = np.asarray(x).astype(np.int64)
        return (v[..., None] == np.arange(num_classes)).astype(dtype)
    return equal(expand_dims(x, -1), np.arange(num_classes, dtype=np.float32))


def convert_to_tensor(x, dtype=None):
    """x as a tensor: symbolic tensors as they are; arrays as NumPy arrays, or as an
    ember Tensor (that a tape can watch) while a GradientTape records."""
    if _is_sym(x):
        return x
    value = np.asarray(x.value if isinstance(x, (Variable, _tape.Tensor)) else x,
                       dtype=dtype or np.float32)
    return _tape.Tensor(value) if _tape.recording() else value


def convert_to_numpy(x):
    if _is_sym(x):
        raise ValueError("convert_to_numpy: a symbolic tensor has no value until the model "
                         "runs")
    return np.array(x.value if isinstance(x, Variable) else x)


# -- gradients of eager ops (ember.GradientTape) ----------------------------------------------
# Each takes (g, out, *args, **kwargs) with the args as arrays and returns one gradient
# (or None) per argument, a list argument's items counted one by one.

def _sum_like(g, axis, keepdims, shape):
    if axis is None:
        return np.broadcast_to(g, shape)
    axes = [a % len(shape) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
    if not keepdims:
        for a in sorted(axes):
            g = np.expand_dims(g, a)
    return np.broadcast_to(g, shape)


def _extreme_vjp(g, out, x, axis=None, keepdims=False):
    full = _sum_like(out, axis, keepdims, x.shape)
    hit = (x == full).astype(np.float32)
    ties = _sum_like(np.sum(hit, axis=axis, keepdims=keepdims), axis, keepdims, x.shape)
    return [_sum_like(g, axis, keepdims, x.shape) * hit / ties]


def _softmax_np(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _matmul_vjp(g, out, a, b):
    a2 = a if a.ndim > 1 else a[None, :]
    b2 = b if b.ndim > 1 else b[:, None]
    g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    return [ga.reshape(a.shape) if ga.size == a.size else ga,
            gb.reshape(b.shape) if gb.size == b.size else gb]


def _getitem_vjp(g, out, x, key):
    gx = np.zeros(x.shape, np.float32)
    np.add.at(gx, key, g)
    return [gx]


_VJPS = {
    "add": lambda g, out, a, b: [g, g],
    "subtract": lambda g, out, a, b: [g, -g],
    "multiply": lambda g, out, a, b: [g * b, g * a],
    "divide": lambda g, out, a, b: [g / b, -g * a / (b * b)],
    "power": lambda g, out, a, b: [g * b * np.power(a, b - 1),
                                   g * out * np.log(np.where(a > 0, a, 1.0))],
    "maximum": lambda g, out, a, b: [g * np.where(a == b, 0.5, a > b),
                                     g * np.where(a == b, 0.5, b > a)],
    "minimum": lambda g, out, a, b: [g * np.where(a == b, 0.5, a < b),
                                     g * np.where(a == b, 0.5, b < a)],
    "negative": lambda g, out, x: [-g],
    "exp": lambda g, out, x: [g * out],
    "log": lambda g, out, x: [g / x],
    "sqrt": lambda g, out, x: [g * 0.5 / out],
    "square": lambda g, out, x: [2.0 * x * g],
    "abs": lambda g, out, x: [g * np.sign(x)],
    "log1p": lambda g, out, x: [g / (1.0 + x)],
    "expm1": lambda g, out, x: [g * (out + 1.0)],
    "sin": lambda g, out, x: [g * np.cos(x)],
    "cos": lambda g, out, x: [-g * np.sin(x)],
    "clip": lambda g, out, x, lo, hi: [g * ((x >= lo) & (x <= hi))],
    "relu": lambda g, out, x: [g * (x > 0)],
    "relu6": lambda g, out, x: [g * ((x > 0) & (x < 6))],
    "sigmoid": lambda g, out, x: [g * out * (1.0 - out)],
    "tanh": lambda g, out, x: [g * (1.0 - out * out)],
    "softplus": lambda g, out, x: [g / (1.0 + np.exp(-x))],
    "softsign": lambda g, out, x: [g / np.square(1.0 + np.abs(x))],
    "silu": lambda g, out, x: [g * (1 / (1 + np.exp(-x))) * (1 + x * (1 - 1 / (1 + np.exp(-x))))],
    "elu": lambda g, out, x, alpha=1.0: [g * np.where(x > 0, 1.0, out + alpha)],
    "leaky_relu": lambda g, out, x, negative_slope=0.2: [g * np.where(x > 0, 1.0,
                                                                      negative_slope)],
    "softmax": lambda g, out, x, axis=-1: [out * (g - np.sum(g * out, axis=axis,
                                                             keepdims=True))],
    "log_softmax": lambda g, out, x, axis=-1: [
        g - _softmax_np(x, axis) * np.sum(g, axis=axis, keepdims=True)],
    "logsumexp": lambda g, out, x, axis=None, keepdims=False: [
        _sum_like(g, axis, keepdims, x.shape) * np.exp(x - _sum_like(out, axis, keepdims,
                                                                     x.shape))],
    "sum": lambda g, out, x, axis=None, keepdims=False: [_sum_like(g, axis, keepdims,
                                                                   x.shape)],
    "mean": lambda g, out, x, axis=None, keepdims=False: [
        _sum_like(g, axis, keepdims, x.shape) * (out.size / _builtins.max(x.size, 1))],
    "max": _extreme_vjp,
    "min": _extreme_vjp,
    "norm": lambda g, out, x, ord=None, axis=None, keepdims=False: [
        _sum_like(g / np.where(out == 0, 1, out), axis, keepdims, x.shape) * x],
    "matmul": _matmul_vjp,
    "dot": _matmul_vjp,
    "reshape": lambda g, out, x, newshape: [g.reshape(x.shape)],
    "expand_dims": lambda g, out, x, axis: [g.reshape(x.shape)],
    "squeeze": lambda g, out, x, axis=None: [g.reshape(x.shape)],
    "transpose": lambda g, out, x, axes=None: [np.transpose(
        g, None if axes is None else np.argsort(axes))],
    "swapaxes": lambda g, out, x, a1, a2: [np.swapaxes(g, a1, a2)],
    "concatenate": lambda g, out, xs, axis=0: np.split(
        g, np.cumsum([np.shape(x)[axis] for x in xs])[:-1], axis=axis),
    "stack": lambda g, out, xs, axis=0: [np.take(g, i, axis=axis) for i in range(len(xs))],
    "where": lambda g, out, c, a, b: [None, g * (np.asarray(c) != 0),
                                      g * (np.asarray(c) == 0)],
    "cast": lambda g, out, x, dtype: [g if np.issubdtype(out.dtype, np.floating) else None],
    "convert_to_tensor": lambda g, out, x, dtype=None: [g],
    "getitem": _getitem_vjp,
}
# Ops whose value has no gradient (comparisons, rounding, indices, constants).
_NO_GRADIENT = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
                "sign", "floor", "round", "argmax", "argmin", "one_hot", "zeros_like",
                "ones_like", "shape", "stop_gradient"}


def _flat(args):
    out = []
    for a in args:
        out.extend(a if isinstance(a, (list, tuple)) else [a])
    return out


def _taping(name, fn):
    """fn on ember Tensors (and, while a tape records, trainable Variables): computed on
    their values, the result a Tensor that the tape can send a gradient back through."""
    from . import tape

    def op(*args, **kwargs):
        items = _flat(args)
        # Whole values (step_trace.StepTensor): a traced train_step's batch tensors, or,
        # inside a traced call, values computed from weights alone (once per step).
        if any(isinstance(a, _step_trace.StepTensor) for a in items + list(kwargs.values())) \
                or ((_step_trace.active() is not None or _tracing[0]) and not _any_sym(*items)
                    and any(isinstance(a, Variable) for a in items)):
            return _step_trace.apply_op(name, fn, args, kwargs)
        has_tensor = any(isinstance(a, tape.Tensor) for a in items)
        if not has_tensor and not (tape.recording() and
                                   any(isinstance(a, Variable) and a.trainable for a in items)):
            out = fn(*args, **kwargs)
            if isinstance(out, KerasTensor):  # what saving a functional model writes
                from .saving import keras_ops
                keras_ops.record(fn.__name__, fn, out, args, kwargs)
            return out
        if any(_is_sym(a) for a in items):
            raise ValueError(f"ops.{name}: cannot mix symbolic tensors and eager Tensors")
        vals = [[tape.value_of(v) for v in a] if isinstance(a, (list, tuple))
                else tape.value_of(a) for a in args]
        out = np.asarray(fn(*vals, **kwargs))
        if name in _NO_GRADIENT:
            return tape.Tensor(out)
        vjp = _VJPS.get(name)
        if vjp is None:
            if tape.recording() and any(tape._tracked(a) for a in items):
                raise ValueError(f"ops.{name} has no gradient on a GradientTape yet")
            return tape.Tensor(out)
        arrays = [[np.asarray(v, np.float32) for v in a] if isinstance(a, list) else
                  np.asarray(a, np.float32) if isinstance(a, (np.ndarray, numbers.Number))
                  else a for a in vals]
        return tape.record(out.astype(np.float32) if out.dtype == np.float64 else out, items,
                           lambda g: vjp(g, out, *arrays, **kwargs))
    op.__name__, op.__doc__, op.__wrapped__ = fn.__name__, fn.__doc__, fn
    return op


def _recorded_getitem(x, key):
    out = _getitem(x, key)
    from .saving import keras_ops
    keras_ops.record("getitem", _getitem, out, (x, key), {})
    return out


def _tensor_getitem(t, key):
    from . import tape
    out = np.asarray(t.value[key])
    return tape.record(out, [t], lambda g: _getitem_vjp(g, out, t.value, key))


for _name in list(__all__) + ["swapaxes"]:
    _fn = globals().get(_name)
    if callable(_fn) and _name not in ("zeros", "ones", "convert_to_numpy"):
        globals()[_name] = _taping(_fn.__name__ if _fn.__name__ in _VJPS or
                                   _fn.__name__ in _NO_GRADIENT else _name, _fn)
del _name, _fn


# Python's operators on symbolic tensors and Variables.
def _install_operators():
    def binary(fn):
        return (lambda self, other: fn(self, other), lambda self, other: fn(other, self))
    for name, fn in (("add", add), ("sub", subtract), ("mul", multiply),
                     ("truediv", divide), ("pow", power), ("matmul", matmul)):
        fwd, rev = binary(fn)
        for cls in (KerasTensor, Variable, _tape.Tensor, _step_trace.StepTensor):
            setattr(cls, f"__{name}__", fwd)
            setattr(cls, f"__r{name}__", rev)
    for name, fn in (("gt", greater), ("ge", greater_equal), ("lt", less), ("le", less_equal)):
        for cls in (KerasTensor, _tape.Tensor, _step_trace.StepTensor):
            setattr(cls, f"__{name}__", lambda self, other, fn=fn: fn(self, other))
    for cls in (KerasTensor, Variable, _tape.Tensor, _step_trace.StepTensor):
        cls.__neg__ = lambda self: negative(self)
        cls.__abs__ = lambda self: abs(self)
    KerasTensor.__getitem__ = _recorded_getitem
    _tape.Tensor.__getitem__ = _tensor_getitem
    KerasTensor.ndim = property(lambda self: len(self.shape))
    KerasTensor.__array_priority__ = 1000  # NumPy defers to the tensor's operators
    Variable.__array_priority__ = 1000


_install_operators()
del InputLayer
