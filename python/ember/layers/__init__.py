"""ember.layers: Keras layers whose arithmetic runs in ember's core."""
from .base import Layer, Variable
from .convolutional import (AveragePooling2D, AvgPool2D, Conv2D, Convolution2D,
                            GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D,
                            GlobalMaxPooling2D, MaxPool2D, MaxPooling2D)
from .core import (Activation, Dense, Dropout, Flatten, Input, InputLayer, KerasTensor,
                   Reshape)

__all__ = ["Activation", "AveragePooling2D", "AvgPool2D", "Conv2D", "Convolution2D", "Dense",
           "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
           "GlobalMaxPooling2D", "Input", "InputLayer", "KerasTensor", "Layer", "MaxPool2D",
           "MaxPooling2D", "Reshape", "Variable"]


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
