"""Layer and Variable: a layer is a description (config, shapes, weights); its
arithmetic runs in the core once a model lowers it into a graph."""
import re

import numpy as np

from .. import _core, constraints, initializers, regularizers

_name_counts = {}


def _snake_case(name):
    """Keras's rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu."""
    s = re.sub(r"\W+", "", name)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base):
    """Keras-style auto names: dense, dense_1, dense_2, ..."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _check_shape(shape, what="shape"):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of integers. Received: {what}={shape!r}") from None
    if any(d is not None and d <= 0 for d in shape):
        raise ValueError(f"{what} dimensions must be positive. Received: {what}={shape}")
    return shape


class Variable:
    """A weight. Its value lives in the core's aligned storage (`_storage`), which every
    model that uses the layer refers to: a layer shared by two models is one set of
    weights, and reading or assigning costs no copy. `core_shape` is the storage's shape
    where the core sees the weight differently (a Conv1D kernel as a 1 x k Conv2D)."""

    def __init__(self, value, name, trainable=True, layer_name="", core_shape=None,
                 regularizer=None, constraint=None):
        value = np.asarray(value, dtype=np.float32)
        self._storage = _core.Variable(list(core_shape or value.shape))
        self._value = self._storage.array().reshape(value.shape)
        self._value[...] = value
        self.name = name
        self.regularizer = regularizer
        self.constraint = constraint
        self.path = f"{layer_name}/{name}" if layer_name else name
        self.trainable = trainable

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return "float32"

    @property
    def value(self):
        return self._value

    def numpy(self):
        return self._value.copy()

    def assign(self, value):
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self._value.shape:
            raise ValueError(f"Cannot assign a value of shape {value.shape} to variable "
                             f"'{self.path}' of shape {self._value.shape}")
        self._value[...] = value

    def __array__(self, dtype=None, copy=None):
        return self._value.astype(dtype) if dtype else self._value.copy()

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"


def assign_weights(variables, weights, owner):
    """Checks every array against its variable's shape, then assigns them all (so a
    bad list changes nothing)."""
    if len(weights) != len(variables):
        raise ValueError(f"{owner} expects {len(variables)} weight arrays. "
                         f"Received: {len(weights)}")
    arrays = [np.asarray(w, dtype=np.float32) for w in weights]
    for v, a in zip(variables, arrays):
        if a.shape != v.shape:
            raise ValueError(f"{owner}: weight '{v.path}' has shape {v.shape}. Received an "
                             f"array of shape {a.shape}")
    for v, a in zip(variables, arrays):
        v.assign(a)


class Layer:
    """Base class of ember layers (Keras lifecycle: __init__ validates the config,
    build(input_shape) creates weights, compute_output_shape and get_config are
    pure Python)."""

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 batch_input_shape=None, input_dim=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{kwargs}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"ember computes in float32. Received: dtype={dtype!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string. Received: name={name!r}")
        self.name = name or unique_name(_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self._weights = []
        # Keras accepts these on the first layer of a Sequential model.
        if input_dim is not None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self._input_shape_arg = None if input_shape is None else _check_shape(input_shape,
                                                                              "input_shape")
        self.input_shape = None
        self.output_shape = None

    # -- weights ---------------------------------------------------------------
    def add_weight(self, shape, initializer="glorot_uniform", name=None, trainable=True,
                   core_shape=None, regularizer=None, constraint=None):
        init = initializers.get(initializer)
        constraint = constraints.get(constraint)
        if constraint is not None:
            constraint._rows(tuple(shape))  # an axis the core cannot take fails here
        v = Variable(init(tuple(shape)), name or f"variable_{len(self._weights)}",
                     trainable, self.name, core_shape, regularizers.get(regularizer),
                     constraint)
        self._weights.append(v)
        return v

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    @property
    def weights(self):
        """Trainable weights first, then non-trainable ones (Keras's order)."""
        return self.trainable_weights + self.non_trainable_weights

    @property
    def trainable_weights(self):
        return [w for w in self._weights if w.trainable and self._trainable]

    @property
    def non_trainable_weights(self):
        return [w for w in self._weights if not (w.trainable and self._trainable)]

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        assign_weights(self.weights, weights, f"Layer '{self.name}'")

    def count_params(self):
        return int(sum(int(np.prod(w.shape)) for w in self._weights))

    @property
    def losses(self):
        """The regularization penalties of the trainable weights, as floats (Keras's
        `layer.losses`; the same terms join the loss that fit reports)."""
        return [w.regularizer(w.value) for w in self.trainable_weights
                if getattr(w, "regularizer", None) is not None]

    # -- shapes and lowering -----------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape):
        """input_shape excludes the batch axis."""
        if not self.built:
            self.build(input_shape)
            self.built = True
        self.input_shape = (None,) + tuple(input_shape)
        self.output_shape = (None,) + tuple(self.compute_output_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _lower(self, graph):
        """Adds this layer's node(s) to a _core.Graph; returns the node index that
        owns this layer's weights (or None)."""
        raise TypeError(f"{type(self).__name__} cannot be lowered")

    # -- the functional API ----------------------------------------------------------
    # Merge layers take a list of tensors; every other layer takes one.
    _takes_list = False

    def __call__(self, inputs, *args, **kwargs):
        """On symbolic tensors (from `ember.Input`), records this call in the graph and
        returns the symbolic output: `x = Dense(64)(inputs)`. On arrays, runs the layer
        for inference and returns a NumPy array."""
        from .core import KerasTensor
        flat = (list(inputs.values()) if isinstance(inputs, dict) else
                list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
        if any(isinstance(t, KerasTensor) for t in flat):
            if args or kwargs:
                raise ValueError(f"Layer '{self.name}' was called with extra arguments "
                                 f"ember does not take: {args or kwargs}")
            bad = [t for t in flat if not isinstance(t, KerasTensor)]
            if bad:
                raise ValueError(f"Layer '{self.name}' was called on a mix of symbolic "
                                 f"tensors and {type(bad[0]).__name__}")
            if self._takes_list != isinstance(inputs, (list, tuple, dict)):
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) takes "
                    f"{'a list of tensors' if self._takes_list else 'a single tensor'}. "
                    f"Received: {inputs!r}")
            return self._call_symbolic(flat)
        if kwargs.get("training"):
            raise ValueError(f"ember: calling layer '{self.name}' with training=True is not "
                             f"supported; train it inside a model")
        return self._call_eager(inputs)

    def _symbolic_output_shape(self, shapes):
        """The per-sample output shape for per-sample input shapes (builds the layer on
        first use; a built layer refuses other shapes)."""
        shape = shapes[0]
        if self.built and self.input_shape is not None and tuple(self.input_shape[1:]) != shape:
            raise ValueError(f"Layer '{self.name}' was built for inputs of shape "
                             f"{self.input_shape}; it cannot be called on a tensor of shape "
                             f"{(None,) + tuple(shape)}")
        self._maybe_build(shape)
        return tuple(self.compute_output_shape(shape))

    def _call_symbolic(self, tensors):
        from .core import KerasTensor
        shapes = [tuple(t.shape[1:]) for t in tensors]
        for t in tensors:
            if any(d is None for d in t.shape[1:]):
                raise ValueError(f"Layer '{self.name}': ember needs every per-sample "
                                 f"dimension. Received a tensor of shape {t.shape}")
        out = self._symbolic_output_shape(shapes if self._takes_list else shapes[:1])
        calls = self.__dict__.setdefault("_calls", [])
        tensor = KerasTensor._from_call(self, tensors, (tensors[0].shape[0],) + tuple(out),
                                        len(calls))
        calls.append(tensor)
        if len(calls) == 1:
            self._input_tensor = tensors if self._takes_list else tensors[0]
            self._output_tensor = tensor
        return tensor

    def _call_eager(self, inputs):
        """The layer on arrays, as a one-layer model run for inference."""
        from .core import Input
        from ..models.functional import Functional
        arrays = inputs if self._takes_list else [inputs]
        if not isinstance(arrays, (list, tuple)):
            raise ValueError(f"Layer '{self.name}' takes a list of arrays. Received: "
                             f"{type(inputs).__name__}")
        arrays = [np.asarray(a) for a in arrays]
        if any(a.ndim < 2 for a in arrays):
            raise ValueError(f"Layer '{self.name}' expects a batch (an array of rank >= 2). "
                             f"Received shapes {[a.shape for a in arrays]}")
        key = tuple(a.shape[1:] for a in arrays)
        cache = self.__dict__.setdefault("_eager_models", {})
        model = cache.get(key)
        if model is None:
            ins = [Input(shape=k) for k in key]
            saved = self.__dict__.get("_calls"), self.__dict__.get("_input_tensor"), \
                self.__dict__.get("_output_tensor")
            out = self(ins if self._takes_list else ins[0])
            # A helper call: not one of the layer's recorded uses.
            self._calls, self._input_tensor, self._output_tensor = saved
            if self._calls is None:
                del self._calls
            model = cache[key] = Functional(ins if self._takes_list else ins[0], out)
        return model.predict(arrays if self._takes_list else arrays[0], verbose=0)

    @property
    def input(self):
        """The symbolic tensor this layer was called on (functional models)."""
        if getattr(self, "_input_tensor", None) is None:
            raise ValueError(f"Layer '{self.name}' has never been called and thus has no "
                             f"defined input.")
        return self._input_tensor

    @property
    def output(self):
        """The symbolic tensor this layer returned (functional models)."""
        if getattr(self, "_output_tensor", None) is None:
            raise ValueError(f"Layer '{self.name}' has never been called and thus has no "
                             f"defined output.")
        return self._output_tensor

    # -- config --------------------------------------------------------------------
    def get_config(self):
        from ..saving.serialization import dtype_policy
        return {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy()}

    @classmethod
    def from_config(cls, config):
        """The layer a config describes (Keras 3's or Keras 2's). Keys Keras writes that
        ember has no argument for load when they hold the value ember honours; any
        other value raises ValueError naming the key."""
        from ..saving.serialization import layer_arguments
        return cls(**layer_arguments(cls, config))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
