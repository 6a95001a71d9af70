"""ember.layers: Keras layers whose arithmetic runs in ember's core."""
from .base import Layer, Variable
from .core import (Activation, Dense, Dropout, Flatten, Input, InputLayer, KerasTensor,
                   Reshape)

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "KerasTensor",
           "Layer", "Reshape", "Variable"]
