"""Preprocessing layers that live inside the model (so a saved model carries them):
Normalization (with adapt) and Rescaling."""
import numbers

import numpy as np

from ..utils.dataset import adapt_data
from .base import Layer


class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7) per feature, Keras's Normalization.

    Args:
        axis: the axis (or axes) that keep their own statistics; -1 (default): one mean
            and variance per feature of the last axis; None: one for everything. They
            must be the trailing axes of a sample.
        mean, variance: the statistics, given; else `adapt(data)` computes them.
        invert: compute mean + x * sqrt(variance) instead (undoes the normalization).
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, (int, np.integer)):
            axis = (int(axis),)
        else:
            axis = tuple(int(a) for a in axis)
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(f"When setting values directly, both `mean` and `variance` must "
                             f"be set. Received: mean={mean} and variance={variance}")
        if mean is not None and np.shape(mean) != np.shape(variance):
            raise ValueError(f"When setting values directly, `mean` and `variance` must have "
                             f"the same shape. Received: mean shape {np.shape(mean)} and "
                             f"variance shape {np.shape(variance)}")
        if mean is not None and len(np.shape(mean)) > len(axis):
            raise ValueError(f"The rank of `mean` must be less than or equal to the number of "
                             f"axes ({len(axis)}). Received: mean shape {np.shape(mean)}")
        self.input_mean = mean
        self.input_variance = variance
        self.invert = bool(invert)

    def build(self, input_shape):
        shape = tuple(input_shape)
        ndim = len(shape) + 1  # with the batch axis
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). "
                                 f"Received inputs with ndim={ndim}, while axis={self.axis}")
        keep = tuple(sorted(a % ndim for a in self.axis))
        if 0 in keep:
            raise ValueError(f"Normalization: the batch axis cannot keep its own statistics. "
                             f"Received: axis={self.axis}")
        if keep != tuple(range(ndim - len(keep), ndim)):
            raise ValueError(f"ember's Normalization keeps statistics for the trailing axes "
                             f"of a sample only. Received: axis={self.axis} for inputs of "
                             f"rank {ndim}")
        self._stats_shape = tuple(shape[d - 1] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(shape=self._stats_shape, initializer="zeros",
                                              name="mean", trainable=False)
            self.adapt_variance = self.add_weight(shape=self._stats_shape,
                                                  initializer="ones", name="variance",
                                                  trainable=False)
            self.count = self.add_weight(shape=(), initializer="zeros", name="count",
                                         trainable=False)
            self.count._file_dtype = np.int32  # Keras keeps the count as an integer
        else:
            mean = np.asarray(self.input_mean, np.float32)
            variance = np.asarray(self.input_variance, np.float32)
            try:
                self._fixed = (np.broadcast_to(mean, self._stats_shape).copy(),
                               np.broadcast_to(variance, self._stats_shape).copy())
            except ValueError:
                raise ValueError(f"Normalization: mean of shape {mean.shape} does not fit "
                                 f"the axes {self.axis} of inputs {(None,) + shape}") from None
        self.built = True

    def adapt(self, data, batch_size=None, steps=None):
        """Computes the mean and variance of `data` (an array of samples) along the
        axes that do not keep statistics."""
        data = adapt_data(data, steps)
        if self.input_mean is not None:
            raise ValueError("Normalization: mean and variance were given; adapt() would "
                             "replace them. Create the layer without them to adapt it")
        x = np.asarray(data, dtype=np.float64)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"adapt() needs a non-empty array of samples. Received shape "
                             f"{x.shape}")
        if x.ndim == 1:
            x = x[:, None]
        if not np.isfinite(x).all():
            raise ValueError("adapt() received data that is not finite (NaN or inf)")
        if not self.built:
            self._maybe_build(x.shape[1:])
        elif tuple(x.shape[1:][len(x.shape) - 1 - len(self._stats_shape):]) != \
                self._stats_shape:
            raise ValueError(f"adapt(): data of shape {x.shape} does not fit the layer's "
                             f"statistics of shape {self._stats_shape}")
        reduce = tuple(range(x.ndim - len(self._stats_shape)))
        mean = x.mean(axis=reduce)
        variance = ((x - mean) ** 2).mean(axis=reduce)
        self.adapt_mean.assign(mean.astype(np.float32))
        self.adapt_variance.assign(variance.astype(np.float32))
        self.count.assign(float(np.prod([x.shape[a] for a in reduce])))

    @property
    def mean(self):
        return self._fixed[0] if self.input_mean is not None else self.adapt_mean.numpy()

    @property
    def variance(self):
        return self._fixed[1] if self.input_mean is not None else self.adapt_variance.numpy()

    def _lower(self, graph, x):
        if self.input_mean is not None:
            mean, variance = (graph.constant(a.reshape(-1)) for a in self._fixed)
        else:
            mean, variance = self.adapt_mean._storage, self.adapt_variance._storage
        return graph.add_normalize(x, mean, variance, self.invert)

    def get_config(self):
        def plain(v):
            return None if v is None else np.asarray(v).tolist()
        return {**super().get_config(), "axis": list(self.axis) if len(self.axis) != 1
                else list(self.axis), "invert": self.invert,
                "mean": plain(self.input_mean), "variance": plain(self.input_variance)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        axis = config.get("axis")
        if isinstance(axis, list):
            config["axis"] = tuple(axis)
        return super().from_config(config)


class Rescaling(Layer):
    """x * scale + offset (scale and offset numbers, or arrays per feature of the last
    axis): `Rescaling(1.0 / 255)` turns pixel values into [0, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("scale", scale), ("offset", offset)):
            a = np.asarray(v, dtype=np.float64)
            if a.size == 0 or not np.isfinite(a).all():
                raise ValueError(f"Rescaling: {name} must be finite numbers. Received: "
                                 f"{name}={v!r}")
        self.scale = scale
        self.offset = offset

    def _lower(self, graph, x):
        from ..ops import _index_map
        shape = tuple(graph.value_shape(x))
        scale, offset = np.asarray(self.scale, np.float32), np.asarray(self.offset, np.float32)
        if scale.size == 1 and offset.size == 1:
            return graph.add_unary(x, "affine", float(scale.ravel()[0]),
                                   float(offset.ravel()[0]))
        for name, a in (("scale", scale), ("offset", offset)):
            try:
                np.broadcast_shapes(a.shape, shape)
            except ValueError:
                raise ValueError(f"Rescaling: {name} of shape {a.shape} does not broadcast "
                                 f"against inputs of shape {(None,) + shape}") from None
        y = graph.add_binary("multiply", x, np.zeros(0, np.int32), graph.constant(scale),
                             _index_map(scale.shape, shape), list(shape))
        return graph.add_binary("add", y, np.zeros(0, np.int32), graph.constant(offset),
                                _index_map(offset.shape, shape), list(shape))

    def get_config(self):
        def plain(v):
            return v if isinstance(v, numbers.Real) else np.asarray(v).tolist()
        return {**super().get_config(), "scale": plain(self.scale), "offset": plain(self.offset)}
