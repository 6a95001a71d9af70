"""ember: Keras-style deep learning on the CPU, computed by a compiled C++ core.

Write the Keras script you know; every number is computed by ember's kernels::

    import ember
    from ember import layers
    model = ember.Sequential([layers.Input((64,)), layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5)
"""
from . import (activations, callbacks, config, datasets, initializers, layers, losses, metrics,
               models, optimizers, preprocessing, saving, utils)
from .layers import Input
from .models import Model, Sequential
from .utils import set_random_seed

__version__ = "0.1.0"

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "config", "datasets",
           "initializers", "layers", "losses", "metrics", "models", "optimizers",
           "preprocessing", "saving", "set_random_seed", "utils"]
