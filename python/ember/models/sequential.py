"""Sequential: a plain stack of layers."""
from ..layers.base import Layer
from ..layers.core import InputLayer, KerasTensor
from .model import Model


class Sequential(Model):
    """A linear stack of layers: Sequential([Input((784,)), Dense(10)]) or built
    with add()."""

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
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise ValueError(f"Only ember layers can be added to a Sequential model. "
                             f"Received: {layer!r}")
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"Layer '{layer.name}' is already in this model")
        self._layers.append(layer)
        self._rebuild()

    def _rebuild(self):
        # Keras builds a Sequential model as soon as its input shape is known; the
        # layers keep their weights across rebuilds.
        self._graph = None
        self._ready_shape = None
        self.built = False
        if self._sample_input_shape() is not None:
            self._build_graph(self._sample_input_shape())

    def pop(self):
        if not self._layers:
            raise ValueError("There are no layers in the model")
        layer = self._layers.pop()
        self._rebuild()
        return layer

    @property
    def layers(self):
        return list(self._layers)

    def _sample_input_shape(self):
        if self._input is not None:
            return self._input.shape
        if self._layers and self._layers[0]._input_shape_arg is not None:
            return self._layers[0]._input_shape_arg
        return None

    def get_config(self):
        layers = []
        if self._input is not None:
            layers.append({"class_name": "InputLayer", "config": self._input.get_config()})
        for layer in self._layers:
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config):
        from ..layers import deserialize
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize(entry))
        return model
