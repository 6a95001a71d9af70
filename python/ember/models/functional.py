"""Functional models: Model(inputs, outputs) over the layers between them.

    inputs = ember.Input(shape=(784,))
    x = layers.Dense(64, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = ember.Model(inputs=inputs, outputs=outputs)

The graph between the input and the output must be a chain for now (one input, one
output, each layer called once): branches, merges and shared layers need the DAG
executor and raise a ValueError that says so. get_config writes Keras's functional
layout (layers with their inbound nodes, input_layers, output_layers).
"""
from ..layers.base import Layer
from ..layers.core import InputLayer, KerasTensor
from .model import Model


def _single(tensors, what):
    """The one KerasTensor of `tensors` (a tensor, or a list/tuple/dict of one)."""
    if isinstance(tensors, dict):
        tensors = list(tensors.values())
    if isinstance(tensors, (list, tuple)):
        if len(tensors) != 1:
            raise ValueError(f"ember's functional Model takes one {what} tensor so far. "
                             f"Received {len(tensors)}")
        tensors = tensors[0]
    if not isinstance(tensors, KerasTensor):
        raise ValueError(f"Model {what}s must be symbolic tensors (from ember.Input and "
                         f"layer calls). Received: {tensors!r}")
    return tensors


class Functional(Model):
    """A model defined by its input and output tensors (`ember.Model(inputs, outputs)`)."""

    def __init__(self, inputs, outputs, name=None, trainable=True):
        inp = _single(inputs, "input")
        out = _single(outputs, "output")
        if inp._parent is not None or not isinstance(inp._layer, InputLayer):
            raise ValueError(f"Model inputs must come from ember.Input(). Received the "
                             f"output of layer '{inp._layer.name}'")
        chain, t = [], out
        while t._parent is not None:
            chain.append(t._layer)
            t = t._parent
        if t is not inp:
            raise ValueError(f"The output {out!r} is not computed from the input {inp!r} "
                             f"(it comes from Input '{t._layer.name}')")
        chain.reverse()
        seen = set()
        for layer in chain:
            if id(layer) in seen:
                raise ValueError(f"Layer '{layer.name}' is used twice in this model: shared "
                                 f"layers are not supported yet")
            seen.add(id(layer))
            if isinstance(layer, Model):
                raise ValueError(f"Model '{layer.name}' is used as a layer: nested models "
                                 f"are not supported yet")
        super().__init__(name=name, trainable=trainable)
        self._input = inp._layer
        self._input_tensor, self._output_tensor = inp, out
        self._chain = chain
        with self._changing("build()"):
            self._build_graph(inp._layer.shape)

    @property
    def layers(self):
        """The InputLayer, then every layer in order (Keras's functional layers)."""
        return [self._input] + list(self._chain)

    @property
    def _lowered_layers(self):
        return list(self._chain)

    def _sample_input_shape(self):
        return self._input.shape

    @property
    def inputs(self):
        return [self._input_tensor]

    @property
    def outputs(self):
        return [self._output_tensor]

    def get_config(self):
        """Keras's functional layout: each layer with the node it was called on."""
        layers, previous = [], None
        for layer in self.layers:
            entry = {"module": "keras.layers", "class_name": type(layer).__name__,
                     "config": layer.get_config(), "registered_name": None,
                     "name": layer.name, "inbound_nodes": []}
            if previous is not None:
                if type(layer).build is not Layer.build:  # as Keras: layers that build
                    entry["build_config"] = {"input_shape": tuple(previous.output_shape)}
                entry["inbound_nodes"] = [{"args": [{
                    "class_name": "__keras_tensor__",
                    "config": {"shape": tuple(previous.output_shape),
                               "dtype": getattr(previous, "input_dtype", "float32"),
                               "keras_history": [previous.name, 0, 0]}}], "kwargs": {}}]
            layers.append(entry)
            previous = layer
        last = self.layers[-1].name
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": [self._input.name, 0, 0], "output_layers": [last, 0, 0]}

    @classmethod
    def from_config(cls, config):
        from ..layers import deserialize
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("A functional model config needs a list of 'layers'")
        tensors, first, last = {}, None, None
        for entry in config["layers"]:
            if not isinstance(entry, dict):
                raise ValueError(f"Each layer of a functional config must be a dict. "
                                 f"Received: {entry!r:.80}")
            layer = deserialize(entry)
            name = entry.get("name", layer.name)
            nodes = entry.get("inbound_nodes") or []
            if isinstance(layer, InputLayer):
                tensors[name] = first = KerasTensor(layer)
                continue
            if len(nodes) != 1:
                raise ValueError(f"Layer '{name}' has {len(nodes)} inbound nodes; ember's "
                                 f"functional models call each layer once")
            args = nodes[0].get("args", []) if isinstance(nodes[0], dict) else []
            if len(args) != 1 or not isinstance(args[0], dict):
                raise ValueError(f"Layer '{name}' must be called on one tensor")
            source = args[0].get("config", {}).get("keras_history", [None])[0]
            if source not in tensors:
                raise ValueError(f"Layer '{name}' is called on '{source}', which comes "
                                 f"before it in no layer of this config")
            tensors[name] = last = layer(tensors[source])
        if first is None:
            raise ValueError("A functional model config needs an InputLayer")
        return cls(first, last if last is not None else first, name=config.get("name"),
                   trainable=config.get("trainable", True))

