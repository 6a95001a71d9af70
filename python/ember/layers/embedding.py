"""Embedding: token ids -> learned vectors, with a sparse gradient in the core."""
import warnings

import numpy as np

from .. import initializers
from .base import Layer


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r} "
                         f"(of type {type(value).__name__}).")
    return int(value)


class Embedding(Layer):
    """Turns token ids (integers in [0, input_dim)) into dense vectors of output_dim.

    Args:
        input_dim: the vocabulary size (largest id + 1).
        output_dim: the size of each vector.
        embeddings_initializer: default 'uniform' (Keras: uniform in [-0.05, 0.05]).
        mask_zero: id 0 is padding: the global 1-D pooling layers after this one leave
            those steps out.
        weights: optional initial table, [array of shape (input_dim, output_dim)].

    Input shape: (batch, steps) of ids, any integer dtype, or floats that hold whole
    numbers (as Keras accepts). Ids outside [0, input_dim) raise ValueError.
    Output shape: (batch, steps, output_dim). Weights: embeddings (input_dim, output_dim).

    Training touches only the rows a batch used to form the gradient; the optimizer
    then applies Keras's dense update to the whole table (rows the batch did not use
    see a zero gradient, exactly as in Keras), without a dense gradient being written.
    Its input must be token ids: a model input (int or float), usually right after Input.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 **kwargs):
        input_length = kwargs.pop("input_length", None)
        if input_length is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.",
                          stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.output_dim = _positive_int(output_dim, "output_dim")
        if self.input_dim > 1 << 24:
            raise ValueError(f"ember's Embedding supports input_dim up to 2**24. Received: "
                             f"input_dim={input_dim}")
        for arg, value in (("embeddings_regularizer", embeddings_regularizer),
                           ("embeddings_constraint", embeddings_constraint),
                           ("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                           ("quantization_config", quantization_config)):
            if value is not None:
                raise ValueError(f"Embedding: {arg} is not supported by ember yet. "
                                 f"Received: {arg}={value!r}")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)
        self._initial_weights = weights

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Embedding '{self.name}' expects samples of token ids of shape "
                             f"(steps,). Received per-sample shape {tuple(input_shape)}")
        self.embeddings = self.add_weight((self.input_dim, self.output_dim),
                                          self.embeddings_initializer, "embeddings")
        self.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _lower(self, graph, x):
        return graph.add_embedding(x, self.embeddings._storage, self.mask_zero)

    def _check_ids(self, x, name="x"):
        """ValueError naming the first id that is not a whole number in [0, input_dim)."""
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
            bad = (x < 0) | (x >= self.input_dim)
        else:
            with np.errstate(invalid="ignore"):
                bad = ~((x >= 0) & (x < self.input_dim) & (x == np.floor(x)))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            value = x[where]
            kind = ("outside [0, input_dim)" if np.isfinite(value) and value == np.floor(value)
                    else "not a whole number")
            raise ValueError(f"Embedding '{self.name}': {name}{list(where)} = {value} is "
                             f"{kind} (input_dim={self.input_dim})")

    def get_config(self):
        c = super().get_config()
        c.update(input_dim=self.input_dim, output_dim=self.output_dim,
                 embeddings_initializer=initializers.serialize(self.embeddings_initializer),
                 embeddings_regularizer=None, activity_regularizer=None,
                 embeddings_constraint=None, mask_zero=self.mask_zero,
                 quantization_config=None)
        return c


__all__ = ["Embedding"]
