"""Recurrent layers: SimpleRNN, LSTM, GRU and Bidirectional, with Keras 3's arguments,
defaults and weight layouts (gates LSTM i, f, c, o; GRU z, r, h), so weights move to and
from Keras unchanged. Each layer is one node of the core: x W for all steps in one
GEMM, then per step h W_rec and the gate arithmetic in one pass; backward through time
runs in the same C++ call, with no Python between steps.

A mask from `Embedding(mask_zero=True)` makes masked steps carry the state through, as
in Keras: a layer returning sequences outputs the carried state there (zeros inside
Bidirectional, which Keras sets so).
"""
import numbers
import weakref

import numpy as np

from .. import _random, activations, constraints, initializers, regularizers
from .base import Layer, _sample_shapes
from .core import _unsupported

_CELL_ACTIVATIONS = ("tanh", "sigmoid", "relu", "hard_sigmoid", "linear")


def _activation(value, what, layer):
    name = activations.get(value)
    if name not in _CELL_ACTIVATIONS:
        raise ValueError(f"{type(layer).__name__}: ember's recurrent cells take the "
                         f"{what}s {', '.join(_CELL_ACTIVATIONS)}. Received: {what}={value!r}")
    return name


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share (Keras's RNN arguments). A call takes
    `initial_state=[h]` (LSTM: `[h, c]`), tensors of shape (batch, units), in place of
    the zero state; with `return_state=True` it returns `[output, h]` (LSTM:
    `[output, h, c]`), the states after the last step."""

    _cell = None
    _gates = 1
    _states = 1
    _takes_initial_state = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"{type(self).__name__} '{self.name}': units must be a positive "
                             f"integer. Received: units={units!r}")
        self.activity_regularizer = regularizers.get(activity_regularizer)
        for what, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not 0 <= value < 1:
                raise ValueError(f"{type(self).__name__} '{self.name}': {what} must be in "
                                 f"[0, 1). Received: {what}={value!r}")
        self.units = int(units)
        self.activation = _activation(activation, "activation", self)
        self.recurrent_activation = _activation(recurrent_activation, "recurrent_activation",
                                                self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        # Keras's input dropout: one mask per sample and feature, shared by every step
        # (ember's spatial dropout over the sequence, drawn from the layer's seed).
        # recurrent_dropout: one mask per sample and unit on the state entering the
        # recurrent product, for the whole sequence (Keras's rule), in the core.
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.seed = seed
        self._seed = _random.resolve(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = self._several_outputs = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self._state_graphs = []  # weak references to the graphs whose nodes keep states
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)

    # -- weights -------------------------------------------------------------------------
    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initial(self, shape):
        return self.bias_initializer(shape)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} '{self.name}' expects an input of rank 3 "
                             f"(batch, steps, features). Received: input_shape="
                             f"{(None,) + tuple(input_shape)}")
        gu = self._gates * self.units
        self.kernel = self.add_weight((input_shape[-1], gu), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            (self.units, gu), self.recurrent_initializer, "recurrent_kernel",
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            shape = self._bias_shape()
            self.bias = self.add_weight(shape, "zeros", "bias",
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
            self.bias.assign(self._bias_initial(shape))
        self.built = True

    def _keras_state(self):
        """Keras keeps a recurrent layer's weights in its cell: <layer>/cell/vars."""
        return [("", self.name, []), ("cell", f"{self._cell}_cell", list(self._weights))]

    # -- graph ---------------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        if self.return_state:
            return [out] + [(self.units,)] * self._states
        return out

    def _check_states(self, input_shapes, state_shapes):
        """Refuses an initial_state of the wrong number or shape of tensors."""
        if len(state_shapes) != self._states or \
                any(tuple(sh) != (self.units,) for sh in state_shapes):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': initial_state must be "
                f"{self._states} tensor(s) of shape (batch, {self.units}). Received shapes "
                f"{[(None,) + tuple(sh) for sh in state_shapes]}")

    def _lower(self, graph, x, initial_state=None, reverse_output=False,
               zero_output_for_mask=None):
        zero = self.zero_output_for_mask if zero_output_for_mask is None else zero_output_for_mask
        if self.dropout:
            x = graph.add_dropout(x, self.dropout, self._seed, "spatial")
        out = graph.add_rnn(x, self._cell, self.units, self.activation,
                            self.recurrent_activation, self.return_sequences,
                            self.go_backwards, reverse_output, zero,
                            self.kernel._storage, self.recurrent_kernel._storage,
                            self.bias._storage if self.bias is not None else None,
                            self.recurrent_dropout, self._seed ^ 0x5DEECE66D,
                            list(initial_state or []), self.return_state,
                            getattr(self, "reset_after", True), self.stateful,
                            self._state_key)
        if self.stateful:
            core = getattr(graph, "_graph", graph)
            self._state_graphs = [r for r in self._state_graphs if r() is not None]
            if not any(r() is core for r in self._state_graphs):
                self._state_graphs.append(weakref.ref(core))
        return out if self.return_state else out[0]

    @property
    def _state_key(self):
        return id(self) & 0xFFFFFFFFFFFFFFFF

    def reset_states(self):
        """stateful=True: the next batch starts from zero states (Keras's reset_state)."""
        for ref in self._state_graphs:
            core = ref()
            if core is not None:
                core.reset_rnn_states(self._state_key)

    reset_state = reset_states

    def get_config(self):
        c = super().get_config()
        c.update(return_sequences=self.return_sequences, return_state=self.return_state,
                 go_backwards=self.go_backwards, stateful=self.stateful, unroll=self.unroll,
                 zero_output_for_mask=self.zero_output_for_mask, units=self.units,
                 activation=self.activation, recurrent_activation=self.recurrent_activation,
                 use_bias=self.use_bias,
                 kernel_initializer=initializers.serialize(self.kernel_initializer),
                 recurrent_initializer=initializers.serialize(self.recurrent_initializer),
                 bias_initializer=initializers.serialize(self.bias_initializer),
                 kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                 recurrent_regularizer=regularizers.serialize(self.recurrent_regularizer),
                 bias_regularizer=regularizers.serialize(self.bias_regularizer),
                 activity_regularizer=regularizers.serialize(self.activity_regularizer),
                 kernel_constraint=constraints.serialize(self.kernel_constraint),
                 recurrent_constraint=constraints.serialize(self.recurrent_constraint),
                 bias_constraint=constraints.serialize(self.bias_constraint),
                 dropout=self.dropout, recurrent_dropout=self.recurrent_dropout,
                 seed=self.seed)
        return c


class SimpleRNN(_RNN):
    """A fully connected recurrent layer: h_t = activation(x_t W + h_{t-1} W_rec + b).

    Args (Keras's): units, activation='tanh', use_bias, kernel_initializer
    ('glorot_uniform'), recurrent_initializer ('orthogonal'), bias_initializer
    ('zeros'), the regularizers and constraints of the three weights,
    return_sequences, go_backwards, unroll (accepted; ember never unrolls).
    """

    _cell = "simple_rnn"

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)

    def get_config(self):
        c = super().get_config()
        del c["recurrent_activation"], c["seed"]  # as Keras writes it
        return c


class LSTM(_RNN):
    """Long short-term memory (Hochreiter 1997), Keras's formulation:
    i, f, o = recurrent_activation(x W + h W_rec + b) per gate, c~ = activation(...),
    c_t = f c_{t-1} + i c~, h_t = o activation(c_t). Gates in the order i, f, c, o.

    Args (beyond SimpleRNN's): recurrent_activation='sigmoid', unit_forget_bias=True
    (the forget gate's bias starts at 1).
    """

    _cell = "lstm"
    _gates = 4
    _states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initial(self, shape):
        b = np.asarray(self.bias_initializer(shape), dtype=np.float32)
        if self.unit_forget_bias:
            b[self.units:2 * self.units] = 1.0
        return b

    def get_config(self):
        c = super().get_config()
        keys = list(c)
        c["unit_forget_bias"] = self.unit_forget_bias
        # Keras's key order: unit_forget_bias after bias_initializer
        at = keys.index("bias_initializer") + 1
        return {k: c[k] for k in keys[:at] + ["unit_forget_bias"] + keys[at:]}


class GRU(_RNN):
    """Gated recurrent unit, Keras's default formulation (reset_after=True):
    z, r = recurrent_activation(x W + b + h W_rec + b_rec) per gate,
    h~ = activation(x W_h + b_h + r (h W_rec_h + b_rec_h)), h_t = z h_{t-1} + (1 - z) h~.
    Gates in the order z, r, h; the bias is (2, 3 units): input bias, recurrent bias.
    With reset_after=False (the original GRU): h~ = activation(x W_h + b_h + (r h) W_rec_h)
    and one bias of (3 units).
    """

    _cell = "gru"
    _gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        if not self.reset_after:
            return (self._gates * self.units,)
        return (2, self._gates * self.units)

    def get_config(self):
        c = super().get_config()
        seed = c.pop("seed")
        c.update(reset_after=self.reset_after, seed=seed)
        return c


_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence forwards and a copy of it backwards and
    merges their outputs (merge_mode 'concat', 'sum', 'mul' or 'ave'; None returns the
    two outputs). With return_sequences the backward outputs are put back in input
    order, and masked steps output zeros, as in Keras. A layer with return_state
    returns the forward layer's final states, then the backward layer's, after the
    output(s); initial_state takes the forward layer's states, then the backward's.

    Args:
        layer: a SimpleRNN, LSTM or GRU (its configuration is copied; the forward and
            backward layers are new layers named forward_<name> and backward_<name>).
        merge_mode: how to combine the two outputs.
        backward_layer: optionally, the backward layer itself (its go_backwards must be
            the opposite of layer's).
    """

    _takes_initial_state = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 _forward_layer=None, **kwargs):
        if not isinstance(layer, _RNN):
            raise ValueError(f"Bidirectional takes a SimpleRNN, LSTM or GRU layer. Received: "
                             f"layer={layer!r}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: merge_mode={merge_mode!r}. "
                             f"Merge mode should be one of {{'sum', 'mul', 'ave', 'concat', "
                             f"None}}")
        _unsupported(self, weights=weights)
        super().__init__(**kwargs)
        self.forward_layer = _forward_layer if _forward_layer is not None else \
            type(layer).from_config(dict(layer.get_config(), name="forward_" + layer.name))
        if backward_layer is None:
            config = dict(layer.get_config(), name="backward_" + layer.name,
                          go_backwards=not layer.go_backwards)
            backward_layer = type(layer).from_config(config)
        elif not isinstance(backward_layer, _RNN) or \
                backward_layer.go_backwards == layer.go_backwards or \
                backward_layer.return_sequences != layer.return_sequences or \
                backward_layer.return_state != layer.return_state:
            raise ValueError("Bidirectional: backward_layer must be a recurrent layer with the "
                             "opposite go_backwards and the same return_sequences and "
                             "return_state as layer")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._several_outputs = self.return_state or merge_mode is None

    def _check_states(self, input_shapes, state_shapes):
        half = len(state_shapes) // 2
        if len(state_shapes) % 2:
            raise ValueError(f"Bidirectional '{self.name}': initial_state must hold the forward "
                             f"layer's states, then the backward layer's. Received "
                             f"{len(state_shapes)} tensors")
        self.forward_layer._check_states(input_shapes, state_shapes[:half])
        self.backward_layer._check_states(input_shapes, state_shapes[half:])

    @property
    def _weights(self):
        return self.forward_layer._weights + self.backward_layer._weights

    @_weights.setter
    def _weights(self, value):
        pass  # the weights live in the two wrapped layers

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        self.built = True

    def _keras_state(self):
        out = [("", self.name, [])]
        for attr, layer in (("backward_layer", self.backward_layer),
                            ("forward_layer", self.forward_layer)):
            out += [(f"{attr}/{p}" if p else attr, n, v) for p, n, v in layer._keras_state()]
        return out

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            shape, states = shape[0], shape[1:]
        if self.merge_mode == "concat":
            shape = shape[:-1] + (2 * shape[-1],)
        out = [shape, shape] if self.merge_mode is None else [shape]
        out += states + states
        return out if len(out) > 1 else out[0]

    def reset_states(self):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    reset_state = reset_states

    def _lower(self, graph, x, initial_state=None):
        zero = self.return_sequences  # Keras forces zero outputs at masked steps
        half = len(initial_state or []) // 2
        f = self.forward_layer._lower(graph, x, initial_state and initial_state[:half],
                                      zero_output_for_mask=zero)
        b = self.backward_layer._lower(graph, x, initial_state and initial_state[half:],
                                       reverse_output=self.return_sequences,
                                       zero_output_for_mask=zero)
        states = []
        if self.return_state:
            (f, *fs), (b, *bs) = f, b
            states = fs + bs
        if self.merge_mode is None:
            return [f, b] + states
        if self.merge_mode == "concat":
            out = graph.add_concatenate([f, b], len(graph.value_shape(f)) - 1)
        else:
            op = {"sum": "add", "mul": "multiply", "ave": "average"}[self.merge_mode]
            out = graph.add_merge(op, [f, b])
        return [out] + states if states else out

    def get_config(self):
        from ..saving.serialization import serialize_layer
        c = super().get_config()
        c.update(merge_mode=self.merge_mode,
                 layer=serialize_layer(self.forward_layer, build_config=False),
                 backward_layer=serialize_layer(self.backward_layer, build_config=False))
        return c

    @classmethod
    def from_config(cls, config):
        from ..saving.serialization import deserialize_layer, layer_arguments
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        if backward is not None:
            backward = deserialize_layer(backward)
        # The file's layer is the forward layer itself (named forward_<name>).
        return cls(layer, backward_layer=backward, _forward_layer=layer,
                   **layer_arguments(cls, config))


class TimeDistributed(Layer):
    """Applies a layer to every step of (steps, ...) samples (Keras's TimeDistributed):
    any single-input layer or model, its weights shared by every step. ember runs every
    step of every sample in one call of each of the layer's nodes (Keras 3 calls the
    layer once per step: the same values, BatchNormalization's batch statistics taken
    per step as there)."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"TimeDistributed takes a Layer instance. Received: "
                             f"layer={layer!r}")
        stateful = [inner.name for inner in layer._all_layers()
                    if getattr(inner, "stateful", False)]
        if stateful:
            raise ValueError(f"TimeDistributed cannot wrap the stateful recurrent layer "
                             f"'{stateful[0]}': its states are kept per sample, and here "
                             f"every step is a sample of its own. Received: layer={layer!r}")
        super().__init__(**kwargs)
        self.layer = layer

    def _sublayers(self):
        return [self.layer]

    @property
    def weights(self):
        return self.layer.weights  # Keras: in the wrapped layer's own order

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"TimeDistributed '{self.name}' expects an input of rank >= 3 "
                             f"(batch, steps, ...). Received: input_shape="
                             f"{(None,) + tuple(input_shape)}")
        self.layer._maybe_build(tuple(input_shape[1:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = tuple(input_shape[1:])
        if self.layer._traced:  # a custom layer: the shape its call makes
            out = _sample_shapes(self.layer._trace((inner,), False)[2])
            if isinstance(out, list):
                self._several_outputs_refused(len(out))
        else:
            out = tuple(self.layer.compute_output_shape(inner))
        return (input_shape[0],) + out

    def _lower(self, graph, x):
        framed = graph.add_frames(x)
        outer, graph.frames_like = graph.frames_like, framed
        try:
            y = self.layer._lower(graph, framed)
        finally:
            graph.frames_like = outer
        if isinstance(y, list):
            self._several_outputs_refused(len(y))
        return graph.add_unframes(y, x)

    def _several_outputs_refused(self, count):
        raise ValueError(f"TimeDistributed '{self.name}': the layer '{self.layer.name}' "
                         f"returns {count} tensors; TimeDistributed takes a layer with one "
                         f"output")

    @property
    def _keras_wrapped(self):
        """The layer Keras's files keep under this one's path, at `layer`."""
        return self.layer

    def get_config(self):
        from ..saving.serialization import serialize_layer
        c = super().get_config()
        c["layer"] = serialize_layer(self.layer, build_config=False)
        return c

    @classmethod
    def from_config(cls, config):
        from ..saving.serialization import deserialize_layer, layer_arguments
        config = dict(config)
        layer = deserialize_layer(config.pop("layer"))
        return cls(layer, **layer_arguments(cls, config))


__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]
