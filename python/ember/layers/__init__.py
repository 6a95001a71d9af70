"""ember.layers: Keras layers whose arithmetic runs in ember's core."""
from .base import Layer, Variable
from .convolutional import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, Conv1D,
                            Conv2D, Conv2DTranspose, Convolution1D, Convolution2D,
                            DepthwiseConv2D, SeparableConv2D,
                            GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAvgPool1D,
                            GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
                            GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPool2D,
                            MaxPooling1D, MaxPooling2D)
from .core import (ELU, Activation, Dense, Dropout, Flatten, Input, InputLayer, KerasTensor,
                   LeakyReLU, PReLU, ReLU, Reshape, Softmax)
from .embedding import Embedding
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization
from .regularization import (GaussianDropout, GaussianNoise, SpatialDropout1D,
                             SpatialDropout2D)
from .reshaping import (Cropping1D, Cropping2D, Permute, UpSampling1D, UpSampling2D,
                        ZeroPadding1D, ZeroPadding2D)

__all__ = sorted(name for name in dir() if not name.startswith("_") and name not in (
    "base", "convolutional", "core", "embedding", "merging", "normalization", "regularization", "reshaping"))


def serialize(layer):
    """{'class_name', 'config'} of a layer, Keras's layout."""
    return {"module": "keras.layers", "class_name": type(layer).__name__,
            "config": layer.get_config(), "registered_name": None}


def deserialize(config):
    """A layer from serialize()'s output (InputLayer configs give the InputLayer)."""
    name = config.get("class_name")
    if name in ("Sequential", "Functional", "Model"):  # a model used as a layer
        from .. import models
        from ..models.functional import Functional
        cls = Functional if name in ("Functional", "Model") else models.Sequential
        return cls.from_config(config.get("config", {}))
    cls = globals().get(name)
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls is Layer:
        raise ValueError(f"Unknown layer: {name!r}")
    return cls.from_config(config.get("config", {}))
