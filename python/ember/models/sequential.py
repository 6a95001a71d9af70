"""Sequential: a plain stack of layers."""
from ..layers.base import Layer
from ..layers.core import InputLayer, KerasTensor
from ..saving.serialization import (custom_object_scope, deserialize_layer, dtype_policy,
                                     float32_policy, serialize_layer)
from .model import Model


class Sequential(Model):
    """A linear stack of layers: Sequential([Input((784,)), Dense(10)]) or built
    with add()."""

    _keeps_parts = False  # its layers are its list, not its attributes

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(trainable=trainable, name=name)
        self._input = None
        self._layers = []
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Appends a layer (or an Input) to the stack."""
        if isinstance(layer, KerasTensor):
            layer = layer._layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input is not None:
                raise ValueError("An Input can only be the first entry of a Sequential model")
            with self._changing("add()"):
                self._input = layer
            return
        if not isinstance(layer, Layer):
            raise ValueError(f"Only ember layers can be added to a Sequential model. "
                             f"Received: {layer!r}")
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"Layer '{layer.name}' is already in this model")
        if layer._several_outputs:
            raise ValueError(f"All layers in a Sequential model should have a single output "
                             f"tensor; layer '{layer.name}' returns several (return_state or "
                             f"merge_mode=None). Use the functional API for it")
        with self._changing("add()"):
            self._layers.append(layer)
            try:
                self._rebuild()
            except Exception:
                self._layers.pop()  # leave the model as it was
                self._rebuild()
                raise

    def _rebuild(self):
        # Keras builds a Sequential model as soon as its input shape is known; the
        # layers keep their weights across rebuilds.
        self._graph = None
        self._ready_shape = None
        self.built = False
        self.__dict__.pop("_graphs", None)
        shape = self._sample_input_shape()
        if shape is None:
            return
        if any(d is None for d in shape):
            # Inputs of any length: the layers are built now, a graph per length later.
            self._input_shapes = [(None,) + tuple(shape)]
            for layer in self._graph_layers():
                try:
                    layer._maybe_build(tuple(shape))
                    shape = tuple(layer.compute_output_shape(tuple(shape)))
                except TypeError:
                    raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot "
                                     f"take inputs with a dimension of unknown size yet. "
                                     f"Received shape {(None,) + tuple(shape)}") from None
            self.built = True
            self.input_shape = self._input_shapes[0]
            self.output_shape = (None,) + tuple(shape)
            return
        self._build_graph(shape)

    def pop(self):
        if not self._layers:
            raise ValueError("There are no layers in the model")
        with self._changing("pop()"):
            layer = self._layers.pop()
            self._rebuild()
            return layer

    @property
    def layers(self):
        return list(self._layers)

    def _leading(self):
        """The leading preprocessing layers (strings in), which run before the graph."""
        n = 0
        while n < len(self._layers) and self._layers[n]._before_graph:
            n += 1
        return self._layers[:n]

    def _prefixes(self):
        chain = self._leading()
        return [chain] if chain else []

    def _graph_layers(self):
        return self._layers[len(self._leading()):]

    def _raw_input_shapes(self):
        raw = self._raw_input_shape() if self._leading() else None
        return None if raw is None else [(None,) + tuple(raw)]

    def _raw_input_shape(self):
        if self._input is not None:
            return self._input.shape
        first = self._layers[0] if self._layers else None
        if first is not None and first._input_shape_arg is not None:
            return first._input_shape_arg
        if isinstance(first, Model):  # a nested model knows its input
            return first._sample_input_shape()
        if self._leading() and getattr(self, "_raw_input", None) is not None:
            return self._raw_input[0]  # the strings seen first
        return None

    def _sample_input_shape(self):
        """The graph's per-sample input shape: the model's input after its leading
        preprocessing layers."""
        shape = self._raw_input_shape()
        if shape is None:
            return None
        for layer in self._leading():
            layer._maybe_build(tuple(shape))
            shape = tuple(layer.compute_output_shape(tuple(shape)))
        return shape

    def get_config(self):
        """Keras's layout: the layers, led by an InputLayer whenever the input shape is
        known, however it became known (Input first, input_shape=, input_dim=, build(),
        or the first fit/predict), so that from_config rebuilds the same weights."""
        layers = []
        inp = self._input
        if inp is None and self._leading() and self._raw_input_shape() is not None:
            raw = getattr(self, "_raw_input", None)
            inp = InputLayer(shape=tuple(self._raw_input_shape()), name=f"{self.name}_input",
                             dtype=raw[1] if raw else "string")
        elif inp is None and self.built and self.input_shape is not None:
            inp = InputLayer(shape=tuple(self.input_shape[1:]), name=f"{self.name}_input")
        if inp is not None:
            layers.append(serialize_layer(inp))
        layers += [serialize_layer(layer) for layer in self._layers]
        config = {"name": self.name, "trainable": self.trainable, "dtype": dtype_policy(),
                  "layers": layers}
        if inp is not None:
            config["build_input_shape"] = [None, *inp.shape]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Keras 3's and Keras 2's Sequential configs (the input shape from an InputLayer
        entry, a first layer's batch_input_shape, or build_input_shape); custom_objects
        maps class names to the user's own layer classes."""
        with custom_object_scope(custom_objects):
            return cls._from_config(config)

    @classmethod
    def _from_config(cls, config):
        if not isinstance(config, dict) or not isinstance(config.get("layers", []), list):
            raise ValueError(f"A Sequential config needs a list of 'layers'. Received: "
                             f"{config!r:.100}")
        float32_policy(config.get("dtype"), f"Sequential '{config.get('name')}'")
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry))
        shape = config.get("build_input_shape")
        if not model.built and shape is not None and model.layers:
            model.build(shape)
        return model
