"""ember: Keras-style deep learning on the CPU, computed by a compiled C++ core.

Write the Keras script you know; every number is computed by ember's kernels::

    import ember
    from ember import layers
    model = ember.Sequential([layers.Input((64,)), layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5)
"""
import os as _os

from . import _threads

_threads.set_wait_policy()  # before the core loads libgomp

from . import (activations, backend, callbacks, config, constraints, datasets,  # noqa: E402
               initializers, layers, losses, metrics, models, ops, optimizers,
               preprocessing, random, regularizers, saving, utils)
from .tape import GradientTape, Tensor  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Model, Sequential  # noqa: E402
from .utils import set_random_seed  # noqa: E402

if "OMP_NUM_THREADS" not in _os.environ:
    config.set_num_threads(_threads.default_threads())

__version__ = "0.1.0"

__all__ = ["GradientTape", "Input", "Model", "Sequential", "Tensor", "activations", "backend", "callbacks", "config",
           "datasets", "initializers", "layers", "losses", "metrics", "models", "ops", "optimizers",
           "preprocessing", "random", "saving", "set_random_seed", "utils"]
