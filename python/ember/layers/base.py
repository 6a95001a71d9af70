"""Layer and Variable: a layer is a description (config, shapes, weights); its
arithmetic runs in the core once a model lowers it into a graph."""
import inspect
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


def lower_layer(layer, graph, x, **kwargs):
    """layer._lower, then the layer's activity penalty on each output when it has one."""
    y = layer._lower(graph, x, **kwargs)
    r = layer.activity_regularizer
    if r is not None and (r.l1 or r.l2):
        if isinstance(y, list):
            return [graph.add_activity_penalty(v, float(r.l1), float(r.l2)) for v in y]
        y = graph.add_activity_penalty(y, float(r.l1), float(r.l2))
    return y


def _recorded_nodes(out, placeholders):
    """The tensors recorded between placeholders and out (a tensor or a list), each after
    those it reads."""
    from ..models.functional import _topological
    order, _ = _topological(out if isinstance(out, list) else [out], placeholders)
    return [t for t in order if not any(t is p for p in placeholders)]


class _AlwaysInfers:
    """The owner noted for the nodes of a call made with training=False: frozen."""
    trainable = False


_ALWAYS_INFERS = _AlwaysInfers()

# The add_loss values of the calls being traced, innermost last.
_added_losses = []


class _TrainingFlag:
    """The `training` a traced call() receives: True or False as the trace's mode, and
    whether the call read it (a Python `if training:`)."""

    def __init__(self, value):
        self.value, self.read = value, False

    def __bool__(self):
        self.read = True
        return self.value

    def __eq__(self, other):
        self.read = True
        return self.value == other

    __hash__ = None

    def __repr__(self):
        return repr(self.value)


def _sample_shapes(out):
    """The per-sample shape of a traced output, or the list of them."""
    if isinstance(out, list):
        return [tuple(o.shape[1:]) for o in out]
    return tuple(out.shape[1:])


def _described(out):
    if isinstance(out, list):
        return f"a list of {', '.join(type(o).__name__ for o in out)}"
    return type(out).__name__


def lower_nodes(graph, nodes, values, after=None):
    """Adds the nodes of recorded tensors (in topological order) to a graph; values maps
    id(tensor) -> value id for the tensors given, and gains every node's value. The
    outputs of one call (a recurrent layer's states) are lowered once. after(tensor,
    value), when given, may stand a value of its own in for each tensor's."""
    calls = {}
    for t in nodes:
        if id(t) in values:  # given: a graph input (a preprocessing layer's output)
            continue
        layer = t._layer
        key = (id(layer), t._node_index)
        if key not in calls:
            args = [values[id(p)] for p in t._inputs]
            kwargs = {}
            if t._state_inputs:
                kwargs["initial_state"] = args[len(args) - t._state_inputs:]
                args = args[:len(args) - t._state_inputs]
            start = graph.num_values
            calls[key] = lower_layer(layer, graph, args if layer._takes_list else args[0],
                                     **kwargs)
            if getattr(t, "_inference_call", False):  # called with training=False
                for v in range(start, graph.num_values):
                    graph.note_mode(_ALWAYS_INFERS, v)
        out = calls[key]
        values[id(t)] = out[t._tensor_index] if isinstance(out, list) else out
        if after is not None:
            values[id(t)] = after(t, values[id(t)])
    return values


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
        try:
            shape = _check_shape(shape, "shape")
        except ValueError as e:
            raise ValueError(f"Layer '{self.name}': add_weight({name or ''!r}): {e}") from None
        if None in shape:
            raise ValueError(f"Layer '{self.name}': add_weight({name or ''!r}) needs every "
                             f"dimension. Received: shape={shape}")
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
        for layer in self._sublayers():  # Keras 3: freezing a layer freezes its parts
            layer.trainable = value

    _keeps_parts = False  # see _sublayers

    # Attributes of the base classes that hold layers or models but are not parts.
    _NOT_PARTS = frozenset(("_eager_models", "_calls", "_input_tensor", "_output_tensor",
                            "_traces", "_init_arguments", "_graph_vars", "_mode_nodes"))

    def _sublayers(self):
        """The layers a custom layer keeps in its attributes (directly, or in lists,
        tuples and dicts), in the order they were assigned. Built-in layers that hold
        layers manage their weights themselves; a subclassed model without a call() (one
        that overrides train_step alone, as Keras's VAE does) has its attributes' layers
        too."""
        if not self._traced and not self._keeps_parts:
            return []
        out, seen = [], set()

        def visit(v):
            if isinstance(v, Layer):
                if id(v) not in seen and v is not self:
                    seen.add(id(v))
                    out.append(v)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    visit(item)
            elif isinstance(v, dict):
                for item in v.values():
                    visit(item)
        for k, v in self.__dict__.items():
            if k not in self._NOT_PARTS:
                visit(v)
        return out

    def _all_layers(self):
        """This layer and, for a custom layer, its parts, recursively."""
        out = [self]
        for layer in self._sublayers():
            out.extend(layer._all_layers())
        return out

    @property
    def weights(self):
        """Trainable weights first, then non-trainable ones (Keras's order)."""
        return self.trainable_weights + self.non_trainable_weights

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        out = [w for w in self._weights if w.trainable]
        for layer in self._sublayers():
            out += [w for w in layer.trainable_weights if not any(w is o for o in out)]
        return out

    @property
    def non_trainable_weights(self):
        out = [w for w in self._weights if not (w.trainable and self._trainable)]
        for layer in self._sublayers():
            ws = layer.weights if not self._trainable else layer.non_trainable_weights
            out += [w for w in ws if not any(w is o for o in out)]
        return out

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        assign_weights(self.weights, weights, f"Layer '{self.name}'")

    def count_params(self):
        ws = self.weights if self._traced else self._weights
        return int(sum(int(np.prod(w.shape)) for w in ws))

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
        if self._traced:
            self._trace((tuple(input_shape),), False)
            return
        if not self.built:
            self.build(input_shape)
            self.built = True
        self.input_shape = (None,) + tuple(input_shape)
        out = self.compute_output_shape(input_shape)
        self.output_shape = ([(None,) + tuple(o) for o in out] if isinstance(out, list) else
                             (None,) + tuple(out))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _lower(self, graph, x):
        """Adds this layer's node(s) to a _core.Graph for the value(s) x; returns the
        value it makes. A custom layer adds the nodes its traced call recorded."""
        if not self._traced:
            raise TypeError(f"{type(self).__name__} cannot be lowered")
        xs = x if isinstance(x, list) else [x]
        shapes = tuple(tuple(graph.value_shape(v)) for v in xs)
        as_list = isinstance(x, list)
        trace = self._trace(shapes, as_list)
        y, values = self._lower_trace(graph, xs, trace, True)
        for t in self.__dict__.get("_trace_losses", {}).get((shapes, as_list, True), ()):
            graph.add_loss_term(values[id(t)], t._batch_reduce == "sum")
        if (shapes, as_list) not in self.__dict__.get("_mode_dependent", ()):
            return y
        # The call reads `training`: both traces, each output picked by the graph's mode.
        y_infer = self._lower_trace(graph, xs, self._trace(shapes, as_list, training=False))
        ys, zs = ([v] if not isinstance(v, list) else v for v in (y, y_infer))
        pairs = list(zip(ys, zs))
        if len(ys) != len(zs) or \
                any(graph.value_shape(a) != graph.value_shape(b) for a, b in pairs):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): call() returns "
                             f"tensors of other shapes in training and at inference")
        out = [graph.add_mode_select(a, b) for a, b in pairs]
        return out if isinstance(y, list) else out[0]

    @staticmethod
    def _lower_trace(graph, xs, trace, with_values=False):
        placeholders, nodes, out = trace
        values = lower_nodes(graph, nodes, {id(p): v for p, v in zip(placeholders, xs)})
        y = [values[id(o)] for o in out] if isinstance(out, list) else values[id(out)]
        return (y, values) if with_values else y

    def add_loss(self, loss):
        """Keras's add_loss inside call(): a value of the whole batch (the mean over it
        of per-sample values, `ops.mean(x)` without an axis, scaled or summed with other
        such means; or an `ops.sum` without an axis) joins the loss that fit and evaluate
        minimize and report, in training and evaluation."""
        from .core import KerasTensor
        if not _added_losses or not isinstance(loss, KerasTensor) or \
                getattr(loss, "_batch_reduce", None) is None:
            raise ValueError(f"Layer '{self.name}': add_loss takes, inside call(), a value "
                             f"of the whole batch such as `rate * ops.mean(x)` (a mean over "
                             f"the batch without an axis). Received: {_described(loss)}")
        _added_losses[-1].append(loss)

    def _lower_ops(self, graph, x, fn):
        """Adds the nodes of fn(tensor) written with ember.ops, for a built-in layer whose
        arithmetic the ops express (Softmax over another axis, ReLU with a threshold)."""
        from .core import InputLayer, KerasTensor
        placeholder = KerasTensor(InputLayer(shape=tuple(graph.value_shape(x)),
                                             name=f"{self.name}_input"))
        out = fn(placeholder)
        nodes = _recorded_nodes(out, [placeholder])
        return lower_nodes(graph, nodes, {id(placeholder): x})[id(out)]

    # -- custom layers: call() traced once per input signature ----------------------------
    @property
    def _traced(self):
        """Whether this is a custom layer: one that defines call()."""
        return callable(getattr(type(self), "call", None))

    def _build_parts(self, input_shape):
        """Runs the user's build() (with the batch axis in input_shape), once."""
        from ..models.model import Model
        if type(self).build not in (Layer.build, Model.build):
            self.build(input_shape)
        self._parts_built = True
        if not isinstance(self, Model):
            self.built = True

    def _trace(self, shapes, as_list, training=True):
        """(placeholder tensors, the nodes call() recorded, the output tensor) for inputs
        of these per-sample shapes; builds the layer on the first trace. A call that reads
        its `training` argument (`if training:`) is traced again with it False, and the
        graph runs each trace in its mode (see _lower)."""
        from .core import InputLayer, KerasTensor
        key = (shapes, as_list, training)
        traces = self.__dict__.setdefault("_traces", {})
        if key in traces:
            return traces[key]
        full = [(None,) + tuple(sh) for sh in shapes]
        if not self.__dict__.get("_parts_built"):
            self._build_parts(full if as_list else full[0])
        before = [id(w) for w in self.weights]
        placeholders = []
        for sh in shapes:
            layer = InputLayer(shape=sh, name=f"{self.name}_input")
            placeholders.append(KerasTensor(layer))
        kwargs = {}
        try:
            params = inspect.signature(self.call).parameters
        except (TypeError, ValueError):
            params = {}
        flag = _TrainingFlag(training)
        if "training" in params:
            kwargs["training"] = flag
        if "mask" in params:
            kwargs["mask"] = None
        from .. import ops
        ops._tracing[0] += 1
        _added_losses.append([])
        try:
            out = self.call(placeholders if as_list else placeholders[0], **kwargs)
        except ValueError as e:
            if str(e).startswith(f"Layer '{self.name}'"):
                raise
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}), traced on inputs "
                             f"of shape {full if as_list else full[0]}: {e}") from None
        finally:
            ops._tracing[0] -= 1
            losses = _added_losses.pop()
        if isinstance(out, (list, tuple)):
            out = out[0] if len(out) == 1 else list(out)
        if any(getattr(o, "_batch_reduce", None) for o in
               (out if isinstance(out, list) else [out])):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): call() returned a "
                             f"value of the whole batch (ops.mean or ops.sum without an "
                             f"axis); a layer returns one value per sample")
        if not all(isinstance(o, KerasTensor) for o in (out if isinstance(out, list) else [out])):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): call() must return "
                             f"a tensor (or a list or tuple of tensors) computed from its "
                             f"inputs with ember.ops and layers. Received: {_described(out)}")
        if traces and [id(w) for w in self.weights] != before:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) created weights in "
                             f"call() on a new input shape {full}: create them in build() (or "
                             f"__init__) so that every traced call uses the same weights")
        try:
            nodes = _recorded_nodes((out if isinstance(out, list) else [out]) + losses,
                                    placeholders)
        except ValueError as e:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): call() returned a "
                             f"tensor that does not come from its inputs ({e})") from None
        traces[key] = (placeholders, nodes, out)
        self.__dict__.setdefault("_trace_losses", {})[key] = losses
        if flag.read:
            self.__dict__.setdefault("_mode_dependent", set()).add((shapes, as_list))
        self.input_shape = full if as_list else full[0]
        self.output_shape = ([tuple(o.shape) for o in out] if isinstance(out, list) else
                             tuple(out.shape))
        return traces[key]

    # -- the functional API ----------------------------------------------------------
    # Merge layers take a list of tensors; every other layer takes one.
    _takes_list = False

    # Recurrent layers take initial_state=[tensors] in a call, and may return several
    # tensors (their states).
    _takes_initial_state = False
    _several_outputs = False

    # Preprocessing layers on strings run on each batch before a model's compiled graph.
    _before_graph = False

    def __call__(self, inputs, *args, **kwargs):
        """On symbolic tensors (from `ember.Input`), records this call in the graph and
        returns the symbolic output: `x = Dense(64)(inputs)`. On arrays, runs the layer
        for inference and returns a NumPy array."""
        from .core import KerasTensor
        from .. import step_trace
        if step_trace.active() is not None and not args and \
                set(kwargs) <= {"training", "mask"} and kwargs.get("mask") is None:
            out = step_trace.call_layer(self, inputs, kwargs.get("training"))
            if out is not NotImplemented:
                return out
        flat = (list(inputs.values()) if isinstance(inputs, dict) else
                list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
        states = kwargs.pop("initial_state", None) if self._takes_initial_state else None
        states = ([] if states is None else
                  list(states) if isinstance(states, (list, tuple)) else [states])
        if any(isinstance(t, KerasTensor) for t in flat + states):
            # The graph runs in training or inference mode as the model does; a call
            # with training=False (a frozen base model, Keras's transfer-learning idiom)
            # always infers.
            infer = kwargs.pop("training", None) is False
            if kwargs.get("mask", 0) is None:
                kwargs.pop("mask")
            if args or kwargs:
                raise ValueError(f"Layer '{self.name}' was called with extra arguments "
                                 f"ember does not take: {args or kwargs}")
            bad = [t for t in flat + states if not isinstance(t, KerasTensor)]
            if bad:
                raise ValueError(f"Layer '{self.name}' was called on a mix of symbolic "
                                 f"tensors and {type(bad[0]).__name__}")
            if infer:
                out = self.__call__(inputs, **({"initial_state": states} if states else {}))
                for t in (out if isinstance(out, (list, tuple)) else [out]):
                    t._inference_call = True
                return out
            if self._traced:
                return self._call_symbolic(flat, isinstance(inputs, (list, tuple, dict)))
            if self._takes_list != isinstance(inputs, (list, tuple, dict)):
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) takes "
                    f"{'a list of tensors' if self._takes_list else 'a single tensor'}. "
                    f"Received: {inputs!r}")
            return self._call_symbolic(flat + states, states=len(states))
        return self._call_eager(inputs, kwargs.get("training"), states)

    def _symbolic_output_shape(self, shapes):
        """The per-sample output shape for per-sample input shapes (builds the layer on
        first use; a built layer refuses other shapes)."""
        shape = shapes[0]
        if self.built and self.input_shape is not None and tuple(self.input_shape[1:]) != shape:
            raise ValueError(f"Layer '{self.name}' was built for inputs of shape "
                             f"{self.input_shape}; it cannot be called on a tensor of shape "
                             f"{(None,) + tuple(shape)}")
        self._maybe_build(shape)
        out = self.compute_output_shape(shape)
        return [tuple(o) for o in out] if isinstance(out, list) else tuple(out)

    def _call_symbolic(self, tensors, as_list=None, states=0):
        from .core import KerasTensor
        shapes = [tuple(t.shape[1:]) for t in tensors]
        unknown = any(d is None for sh in shapes for d in sh)
        try:
            if self._traced:
                if unknown:
                    raise TypeError("traced")
                self.__dict__["_takes_list"] = as_list
                out = _sample_shapes(self._trace(tuple(shapes), as_list)[2])
            else:
                if states:
                    self._check_states(shapes[:1], shapes[len(shapes) - states:])
                ins = shapes[:len(shapes) - states]
                out = self._symbolic_output_shape(ins if self._takes_list else ins[:1])
        except TypeError:
            if not unknown:
                raise
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) cannot take inputs "
                             f"with a dimension of unknown size yet. Received a tensor of "
                             f"shape {tensors[0].shape}") from None
        calls = self.__dict__.setdefault("_calls", [])
        batch = tensors[0].shape[0]
        if isinstance(out, list):  # several outputs (a recurrent layer's states)
            tensor = [KerasTensor._from_call(self, tensors, (batch,) + tuple(o), len(calls), k,
                                             states) for k, o in enumerate(out)]
        else:
            tensor = KerasTensor._from_call(self, tensors, (batch,) + tuple(out), len(calls),
                                            0, states)
        calls.append(tensor)
        if len(calls) == 1:
            ins = tensors[:len(tensors) - states]
            self._input_tensor = ins if self._takes_list else ins[0]
            self._output_tensor = tensor
        return tensor

    def _call_eager(self, inputs, training=None, states=()):
        """The layer on arrays, as a one-layer model run for inference (or, in training
        mode or under a GradientTape, as one forward the tape can differentiate)."""
        from .. import tape
        from .core import Input
        from ..models.functional import Functional
        if self._traced:
            self.__dict__["_takes_list"] = isinstance(inputs, (list, tuple))
        arrays = inputs if self._takes_list else [inputs]
        if not isinstance(arrays, (list, tuple)):
            raise ValueError(f"Layer '{self.name}' takes a list of arrays. Received: "
                             f"{type(inputs).__name__}")
        given = list(arrays) + list(states)
        arrays = [np.asarray(a) for a in given]
        if any(a.ndim < 2 for a in arrays):
            raise ValueError(f"Layer '{self.name}' expects a batch (an array of rank >= 2). "
                             f"Received shapes {[a.shape for a in arrays]}")
        key = (tuple(a.shape[1:] for a in arrays), len(states))
        cache = self.__dict__.setdefault("_eager_models", {})
        model = cache.get(key)
        if model is None:
            ins = [Input(shape=k) for k in key[0]]
            main = ins[:len(ins) - len(states)]
            saved = self.__dict__.get("_calls"), self.__dict__.get("_input_tensor"), \
                self.__dict__.get("_output_tensor")
            kwargs = {"initial_state": ins[len(main):]} if states else {}
            out = self(main if self._takes_list else main[0], **kwargs)
            # A helper call: not one of the layer's recorded uses.
            self._calls, self._input_tensor, self._output_tensor = saved
            if self._calls is None:
                del self._calls
            model = cache[key] = Functional(ins if self._takes_list or states else ins[0], out)
        one = not (self._takes_list or states)
        if training or tape.recording() or any(isinstance(a, tape.Tensor) for a in given):
            from ..models import stepping
            return stepping.call(model, given[0] if one else given, training)
        return model.predict(arrays[0] if one else arrays, verbose=0)

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

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        # A custom class's constructor arguments: its config when it defines no
        # get_config (Keras's automatic config).
        obj._init_arguments = (args, kwargs)
        return obj

    # -- config --------------------------------------------------------------------
    # Keras's activity_regularizer: a penalty on the layer's output (Dense, the
    # convolutions and the recurrent layers take it).
    activity_regularizer = None

    def get_config(self):
        from ..saving.serialization import dtype_policy
        config = {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy()}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if self._traced and type(self).get_config is Layer.get_config:
            config.update(self._auto_config())
        return config

    def _auto_config(self):
        """The constructor arguments of a custom layer or model, when all are plain
        values (numbers, strings, lists, dicts, None)."""
        import json
        args, kwargs = self.__dict__.get("_init_arguments", ((), {}))
        try:
            bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        except TypeError:
            bound = None
        values = {}
        if bound is not None:
            bound.apply_defaults()
            for name, value in list(bound.arguments.items())[1:]:
                param = inspect.signature(type(self).__init__).parameters[name]
                if param.kind == param.VAR_KEYWORD:
                    values.update(value)
                elif param.kind != param.VAR_POSITIONAL:
                    values[name] = value
        for key in ("name", "trainable", "dtype"):
            values.pop(key, None)
        try:
            json.dumps(values)
        except (TypeError, ValueError):
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}) takes constructor arguments "
                f"that are not plain values, so its config cannot be written automatically: "
                f"define get_config() (and from_config() if needed)") from None
        return values

    @classmethod
    def from_config(cls, config):
        """The layer a config describes (Keras 3's or Keras 2's). Keys Keras writes that
        ember has no argument for load when they hold the value ember honours; any
        other value raises ValueError naming the key."""
        from ..saving.serialization import layer_arguments
        return cls(**layer_arguments(cls, config))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
