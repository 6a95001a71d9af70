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
                   Lambda, LeakyReLU, Masking, PReLU, ReLU, Reshape, Softmax)
from .embedding import Embedding
from .image_preprocessing import (CenterCrop, RandomContrast, RandomCrop, RandomFlip,
                                  RandomRotation, RandomTranslation, RandomZoom, Resizing)
from .lookup import (CategoryEncoding, Discretization, Hashing, IntegerLookup,
                     StringLookup, TextVectorization)
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from .preprocessing import Normalization, Rescaling
from .regularization import (ActivityRegularization, GaussianDropout, GaussianNoise,
                             SpatialDropout1D, SpatialDropout2D)
from .reshaping import (Cropping1D, Cropping2D, Permute, RepeatVector, UpSampling1D, UpSampling2D,
                        ZeroPadding1D, ZeroPadding2D)

__all__ = sorted(name for name in dir() if not name.startswith("_") and name not in (
    "base", "convolutional", "core", "embedding", "image_preprocessing", "lookup", "merging",
    "normalization", "preprocessing", "recurrent", "regularization", "reshaping"))


def serialize(layer):
    """Keras 3's dict for a layer: module, class_name, config, registered_name and
    (once built) build_config."""
    from ..saving.serialization import serialize_layer
    return serialize_layer(layer)


def deserialize(config, custom_objects=None):
    """A layer (or a nested model) from serialize()'s output, Keras 3's or Keras 2's."""
    from ..saving.serialization import custom_object_scope, deserialize_layer
    with custom_object_scope(custom_objects):
        return deserialize_layer(config)
