"""ember.layers: Keras layers whose arithmetic runs in ember's core."""
from .base import Layer, Variable
from .core import (Activation, Dense, Dropout, Flatten, Input, InputLayer, KerasTensor,
                   Reshape)

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "KerasTensor",
           "Layer", "Reshape", "Variable"]


def serialize(layer):
    """{'class_name', 'config'} of a layer, Keras's layout."""
    return {"module": "keras.layers", "class_name": type(layer).__name__,
            "config": layer.get_config(), "registered_name": None}


def deserialize(config):
    """A layer from serialize()'s output (InputLayer configs give the InputLayer)."""
    name = config.get("class_name")
    cls = globals().get(name)
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise ValueError(f"Unknown layer: {name!r}")
    return cls.from_config(config.get("config", {}))
