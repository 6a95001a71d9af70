"""Core layers: Input, Dense, Activation, Dropout, Flatten, Reshape."""
import math
import numbers

import numpy as np

from .. import _random, activations, constraints, initializers, regularizers
from .base import Layer, _check_shape


# Input dtypes: floats are computed in float32; integer inputs (token ids for an
# Embedding, as every Keras 3 text model declares them) are taken as they are.
_INPUT_DTYPES = ("float32", "int32", "int64", "string")


def _unsupported(layer, **arguments):
    for name, value in arguments.items():
        if value is not None:
            raise ValueError(f"{type(layer).__name__}: {name} is not supported by ember yet. "
                             f"Received: {name}={value!r}")


class InputLayer(Layer):
    """The model's entry point: a per-sample shape (the batch axis is left out).

    Args:
        shape: the per-sample shape, e.g. (784,) or (200,) for 200 token ids.
        batch_size: optional fixed batch size (recorded; any batch size runs).
        dtype: 'float32' (default), 'int32', 'int64', or 'string' (strings go through a
            preprocessing layer applied to this Input before the compiled graph).
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, **kwargs):
        if shape is None:
            shape = kwargs.pop("input_shape", None)
        if shape is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(784,))")
        try:
            name_of = ("float32" if dtype is None else "string" if dtype in ("string", str)
                       else np.dtype(dtype).name)
        except TypeError:
            name_of = None
        if name_of not in _INPUT_DTYPES:
            raise ValueError(f"Input dtype must be one of {_INPUT_DTYPES}. Received: "
                             f"dtype={dtype!r}")
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, (int, np.integer)) or
                                       batch_size <= 0):
            raise ValueError(f"Input batch_size must be a positive integer or None. "
                             f"Received: batch_size={batch_size!r}")
        super().__init__(name=name, **kwargs)
        self.input_dtype = name_of
        self.shape = _check_shape(shape)  # None: any size (sequences of any length)
        self.batch_size = batch_size
        self.input_shape = self.output_shape = (batch_size,) + self.shape
        self.built = True

    def get_config(self):
        return {"batch_shape": [self.batch_size, *self.shape], "dtype": self.input_dtype,
                "sparse": False, "ragged": False, "name": self.name, "optional": False}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        batch_shape = config.pop("batch_shape", config.pop("batch_input_shape", None))
        if batch_shape is not None:
            config["shape"] = tuple(batch_shape)[1:]
            config["batch_size"] = batch_shape[0]
        dtype = config.pop("dtype", None)
        if isinstance(dtype, dict):  # Keras 3's DTypePolicy form
            dtype = dtype.get("config", {}).get("name")
        for key in ("sparse", "ragged", "optional"):
            if config.get(key, False) is not False:
                raise ValueError(f"InputLayer '{config.get('name')}': ember cannot honour "
                                 f"{key}={config[key]!r}")
            config.pop(key, None)
        return cls(dtype=dtype, **config)


class KerasTensor:
    """A symbolic tensor of shape (batch, *shape): what Input() returns, and what a
    layer called on symbolic tensors returns. It remembers the layer that made it and
    the tensors that layer was called on (`_inputs`), which is how a functional Model
    finds its graph; `_node_index` counts the layer's calls and `_tensor_index` says
    which of the call's outputs this is (Keras's keras_history). The last
    `_state_inputs` of `_inputs` were passed as the call's initial_state."""

    _tensor_index = 0
    _state_inputs = 0

    def __init__(self, layer):
        self._layer = layer
        self._inputs = []  # none for an Input
        self._node_index = 0
        self.shape = (layer.batch_size,) + layer.shape
        self.dtype = layer.input_dtype
        self.name = layer.name

    @classmethod
    def _from_call(cls, layer, inputs, shape, node_index, tensor_index=0, state_inputs=0):
        t = cls.__new__(cls)
        t._layer, t._inputs, t._node_index = layer, list(inputs), node_index
        t._tensor_index, t._state_inputs = tensor_index, state_inputs
        t.shape, t.dtype, t.name = tuple(shape), "float32", layer.name
        return t

    @property
    def _is_input(self):
        return not self._inputs and isinstance(self._layer, InputLayer)

    def __bool__(self):
        raise ValueError(
            "A symbolic tensor has no value while call() is traced: ember runs call() once "
            "per input shape to build the model's graph, so a Python `if` (or `and`, `or`, "
            "`not`) on a tensor cannot pick a branch per batch. Compute both sides and "
            "choose with ops.where(condition, a, b), or branch on a Python value such as "
            "the `training` argument")

    def __float__(self):
        raise ValueError("A symbolic tensor has no value while call() is traced; use ember.ops "
                         "on it instead of float()")

    __int__ = __index__ = __float__

    def __iter__(self):
        raise ValueError("A symbolic tensor cannot be iterated while call() is traced (the "
                         "batch size is unknown); index per-sample axes, e.g. x[:, i]")

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def Input(shape=None, batch_size=None, dtype=None, name=None, **kwargs):
    """Declares the model input: Input(shape=(784,)) for 784 features per sample."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, **kwargs)
    layer._output_tensor = KerasTensor(layer)
    return layer._output_tensor


class Dense(Layer):
    """A densely connected layer: output = activation(dot(input, kernel) + bias).

    Args:
        units: positive integer, the output size.
        activation: name or function (None means linear).
        use_bias: whether to add a bias vector.
        kernel_initializer, bias_initializer: Keras initializer names or objects.

    Input shape: (batch, ..., input_dim): Dense acts on the last axis, as in Keras.
    Output shape: (batch, ..., units).
    Weights: kernel (input_dim, units), bias (units,).
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.units,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _lower(self, graph, x):
        return graph.add_dense(x, self.kernel._storage,
                               self.bias._storage if self.bias is not None else None,
                               self.activation)

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                 kernel_initializer=initializers.serialize(self.kernel_initializer),
                 bias_initializer=initializers.serialize(self.bias_initializer),
                 kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                 bias_regularizer=regularizers.serialize(self.bias_regularizer),
                 kernel_constraint=constraints.serialize(self.kernel_constraint),
                 bias_constraint=constraints.serialize(self.bias_constraint),
                 quantization_config=None)
        return c


class Activation(Layer):
    """Applies an activation function: Activation('relu').

    Input shape: any. Output shape: same as input.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def _lower(self, graph, x):
        return graph.add_activation(x, self.activation)

    def get_config(self):
        c = super().get_config()
        c["activation"] = self.activation
        return c


class Softmax(Layer):
    """Softmax over the last axis: Softmax() (as in the TensorFlow quickstart's
    probability model).

    Args:
        axis: the axis normalised (-1, the last, by default; not the batch axis).
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Softmax: axis must be an integer. Received: axis={axis!r}")
        self.axis = int(axis)

    def build(self, input_shape):
        rank = len(input_shape) + 1
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Softmax '{self.name}': axis {self.axis} is the batch axis or out "
                             f"of range for inputs of rank {rank}")
        self.built = True

    def _lower(self, graph, x):
        rank = len(graph.value_shape(x)) + 1
        if self.axis % rank == rank - 1:
            return graph.add_activation(x, "softmax")
        from .. import ops
        return self._lower_ops(graph, x, lambda t: ops.softmax(t, axis=self.axis))

    def get_config(self):
        c = super().get_config()
        c["axis"] = self.axis
        return c


class ReLU(Layer):
    """Keras's ReLU: x above `threshold` (else 0), clipped to `max_value`, minus
    negative_slope * max(threshold - x, 0); with the defaults max(x, 0).

    Args:
        max_value: None or a non-negative number (6: relu6).
        negative_slope: the slope below the threshold (>= 0).
        threshold: the value below which the output leaves x.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("max_value", max_value), ("negative_slope", negative_slope),
                        ("threshold", threshold)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or not math.isfinite(v)):
                raise ValueError(f"ReLU: {name} must be a finite number. Received: "
                                 f"{name}={v!r}")
        if max_value is not None and max_value < 0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. "
                             f"Received: max_value={max_value}")
        if not negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0. Received: "
                             f"negative_slope={negative_slope}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def _lower(self, graph, x):
        ns, top, thr = self.negative_slope, self.max_value, self.threshold
        if not thr and top == 6 and not ns:
            return graph.add_activation(x, "relu6")
        if not thr and top is None:
            return graph.add_activation(x, "leaky_relu", ns) if ns else \
                graph.add_activation(x, "relu")
        from .. import ops

        def relu(t):  # Keras's activations.relu, term by term
            y = t * ops.greater(t, thr) if thr else ops.relu(t)
            if top is not None:
                y = ops.clip(y, 0.0, top)
            if ns:
                y = y - ops.relu(thr - t) * ns
            return y
        return self._lower_ops(graph, x, relu)

    def get_config(self):
        c = super().get_config()
        c.update(max_value=self.max_value, negative_slope=self.negative_slope,
                 threshold=self.threshold)
        return c


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise (Keras's default slope here is 0.3).

    Args:
        negative_slope: the slope below zero, >= 0.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2's name
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) \
                or not negative_slope >= 0:
            raise ValueError(f"The negative_slope value of a Leaky ReLU layer cannot be None "
                             f"or negative. Received: negative_slope={negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _lower(self, graph, x):
        return graph.add_activation(x, "leaky_relu", self.negative_slope)

    def get_config(self):
        c = super().get_config()
        c["negative_slope"] = self.negative_slope
        return c


class PReLU(Layer):
    """x for x > 0, alpha * x otherwise, with alpha learned per element (or shared over
    `shared_axes`, 1-indexed, e.g. [1, 2] for one alpha per channel of images).

    Weights: alpha (the sample's shape, 1 along shared axes), zeros by default.
    """

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
            if any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in axes):
                raise ValueError(f"PReLU: shared_axes must be positive axis indices (1 is the "
                                 f"first axis after the batch). Received: {shared_axes!r}")
            self.shared_axes = axes

    def build(self, input_shape):
        shape = list(input_shape)
        for a in self.shared_axes or []:
            if a > len(shape):
                raise ValueError(f"PReLU '{self.name}': shared axis {a} is out of range for "
                                 f"inputs of shape {(None,) + tuple(input_shape)}")
            shape[a - 1] = 1
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, "alpha",
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        self.built = True

    def _lower(self, graph, x):
        return graph.add_prelu(x, self.alpha._storage)

    def get_config(self):
        c = super().get_config()
        c.update(alpha_initializer=initializers.serialize(self.alpha_initializer),
                 alpha_regularizer=regularizers.serialize(self.alpha_regularizer),
                 alpha_constraint=constraints.serialize(self.alpha_constraint),
                 shared_axes=self.shared_axes)
        return c


class ELU(Layer):
    """x for x > 0, alpha (e^x - 1) otherwise.

    Args:
        alpha: the scale of the negative part.
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"ELU: alpha must be a number. Received: alpha={alpha!r}")
        self.alpha = float(alpha)

    def _lower(self, graph, x):
        return graph.add_activation(x, "elu", self.alpha)

    def get_config(self):
        c = super().get_config()
        c["alpha"] = self.alpha
        return c


class Dropout(Layer):
    """Sets inputs to 0 with probability `rate` during training, scaling the rest by
    1 / (1 - rate); the identity at inference.

    Args:
        rate: float in [0, 1).
        seed: optional integer; masks are drawn from (seed, step, element).
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float "
                             f"value between 0 and 1. Received: rate={rate!r}")
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported by ember yet. "
                             f"Received: noise_shape={noise_shape!r}")
        self.rate = float(rate)
        self.seed = seed
        self._seed = _random.resolve(seed)

    def _lower(self, graph, x):
        return graph.add_dropout(x, self.rate, self._seed)

    def get_config(self):
        c = super().get_config()
        c.update(rate=self.rate, seed=self.seed, noise_shape=None)
        return c


class Flatten(Layer):
    """Flattens each sample to one dimension (a view: no copy, no work)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _lower(self, graph, x):
        return graph.add_reshape(x, [int(np.prod(graph.value_shape(x)))])

    def get_config(self):
        c = super().get_config()
        c["data_format"] = self.data_format or "channels_last"
        return c


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one entry may be -1); a view."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(
                d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"Invalid target_shape. Received: target_shape={target_shape!r}")

    def compute_output_shape(self, input_shape):
        total = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        shape = tuple(total // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(shape)) != total:
            raise ValueError(f"Cannot reshape a sample of shape {tuple(input_shape)} to "
                             f"{self.target_shape}")
        return shape

    def _lower(self, graph, x):
        return graph.add_reshape(x, list(self.compute_output_shape(tuple(graph.value_shape(x)))))

    def get_config(self):
        c = super().get_config()
        c["target_shape"] = self.target_shape
        return c


class Masking(Layer):
    """Masks the steps of (steps, features) samples whose features all equal
    `mask_value` (Keras's Masking): those steps are zeroed and the layers after it that
    take masks (recurrent layers, global average pooling, ...) skip them.
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise ValueError(f"Masking: mask_value must be a number. Received: "
                             f"mask_value={mask_value!r}")
        self.mask_value = float(mask_value)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Masking '{self.name}' expects an input of rank 3 (batch, steps, "
                             f"features). Received: input_shape={(None,) + tuple(input_shape)}")
        self.built = True

    def _lower(self, graph, x):
        return graph.add_masking(x, self.mask_value)

    def get_config(self):
        c = super().get_config()
        c["mask_value"] = self.mask_value
        return c


class Lambda(Layer):
    """Wraps a function of tensors written with ember.ops as a layer:
    `Lambda(lambda x: ops.square(x))`, traced once per input shape like any custom layer.

    A Python lambda is saved as Keras saves it (its marshalled bytecode), and loading it
    runs that code, so a file holding one loads only with `safe_mode=False`, and only
    under the Python version that wrote it. A named function is saved by name and found
    through `custom_objects` or `register_keras_serializable` when loading.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ValueError(f"Lambda needs a callable. Received: function={function!r}")
        if mask is not None:
            raise ValueError("Lambda: mask= is not supported by ember yet. Received: "
                             f"mask={mask!r}")
        self.function = function
        self._output_shape = output_shape
        self.arguments = dict(arguments or {})

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def get_config(self):
        config = {**super().get_config(), "function": _function_config(self.function)}
        if self._output_shape is not None:
            config["output_shape"] = (_function_config(self._output_shape)
                                      if callable(self._output_shape)
                                      else list(self._output_shape))
        config["arguments"] = self.arguments
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["function"] = _function_from_config(config.get("function"),
                                                   config.get("name", "lambda"))
        shape = config.get("output_shape")
        if isinstance(shape, dict):
            config["output_shape"] = _function_from_config(shape, config.get("name"))
        return super().from_config(config)


def _function_config(fn):
    """Keras's form: a Python lambda as its bytecode, a named function by name."""
    import codecs
    import marshal
    if getattr(fn, "__name__", None) == "<lambda>":
        code = codecs.encode(marshal.dumps(fn.__code__), "base64").decode("ascii")
        closure = tuple(c.cell_contents for c in fn.__closure__) if fn.__closure__ else None
        return {"class_name": "__lambda__",
                "config": {"code": code, "defaults": fn.__defaults__, "closure": closure}}
    name = getattr(fn, "__name__", None)
    if name is None:
        raise ValueError(f"Lambda: cannot save the function {fn!r}")
    return {"module": getattr(fn, "__module__", None), "class_name": "function",
            "config": name, "registered_name": name}


def _function_from_config(entry, layer_name):
    import codecs
    import marshal
    import types
    from ..saving import serialization
    if not isinstance(entry, dict):
        raise ValueError(f"Lambda '{layer_name}': its function entry must be a dict. "
                         f"Received: {entry!r:.80}")
    if entry.get("class_name") == "__lambda__":
        if serialization.safe_mode():
            raise ValueError(
                f"Lambda '{layer_name}' holds a Python lambda, whose bytecode ember would "
                f"have to run: refused in safe mode. Pass safe_mode=False only for a file "
                f"you trust")
        cfg = entry.get("config") or {}
        try:
            code = marshal.loads(codecs.decode(cfg["code"].encode("ascii"), "base64"))
        except (KeyError, ValueError, TypeError, EOFError) as e:
            raise ValueError(f"Lambda '{layer_name}': its function's bytecode cannot be read "
                             f"by this Python ({type(e).__name__}: {e})") from None
        from .. import ops
        import ember
        defaults = cfg.get("defaults")
        closure = cfg.get("closure")
        cells = None
        if closure is not None:
            cells = tuple(types.CellType(v) for v in closure)
        # The names a Keras lambda's code reads: keras.ops runs as ember.ops.
        names = {"ops": ops, "ember": ember, "np": np,
                 "keras": types.SimpleNamespace(ops=ops, layers=ember.layers)}
        return types.FunctionType(code, names, None, tuple(defaults) if defaults else None,
                                  cells)
    name = entry.get("registered_name") or entry.get("config")
    fn = serialization.custom_object(name)
    if fn is None:
        raise ValueError(f"Lambda '{layer_name}' calls the function {name!r}: pass it in "
                         f"custom_objects or register it with "
                         f"@ember.saving.register_keras_serializable()")
    return fn
