"""Noise layers, active in training and the identity at inference: SpatialDropout1D/2D,
GaussianDropout, GaussianNoise (draws come from (seed, step, index), as Dropout's); and
ActivityRegularization."""
import math
import numbers

from .. import _random
from .base import Layer
from .convolutional import _data_format


def _rate(value, name="rate", upper=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0 or \
            (upper and value >= 1):
        bound = "between 0 and 1" if upper else "non-negative"
        raise ValueError(f"Invalid value received for argument `{name}`. Expected a float "
                         f"value {bound}. Received: {name}={value!r}")
    return float(value)


class _Noise(Layer):
    _kind = ""
    _rank = None  # SpatialDropout: the rank of a sample

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self._seed = _random.resolve(seed)

    def build(self, input_shape):
        if self._rank is not None and len(input_shape) != self._rank:
            raise ValueError(f"{type(self).__name__} expects inputs of rank {self._rank + 1} "
                             f"(with the batch axis). Received: {(None,) + tuple(input_shape)}")
        self.built = True

    def _lower(self, graph, x):
        return graph.add_dropout(x, self._core_rate(), self._seed, self._kind)

    def _core_rate(self):
        return self.rate

    def get_config(self):
        c = super().get_config()
        c.update(rate=self.rate, seed=self.seed)
        return c


class SpatialDropout1D(_Noise):
    """Drops whole channels of (steps, channels) samples with probability `rate`,
    scaling the rest by 1 / (1 - rate)."""
    _kind, _rank = "spatial", 2

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(_rate(rate), seed, **kwargs)

    def get_config(self):
        c = super().get_config()
        del c["trainable"]  # as Keras writes it
        return c


class SpatialDropout2D(_Noise):
    """Drops whole channels of (height, width, channels) samples with probability
    `rate`, scaling the rest by 1 / (1 - rate)."""
    _kind, _rank = "spatial", 3

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(_rate(rate), seed, **kwargs)
        self.data_format = _data_format(data_format)

    def get_config(self):
        c = super().get_config()
        del c["trainable"]  # as Keras writes it
        c["data_format"] = self.data_format
        return c


class GaussianDropout(_Noise):
    """Multiplies each input by noise from N(1, rate / (1 - rate))."""
    _kind = "gaussian_dropout"

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(_rate(rate), seed, **kwargs)


class GaussianNoise(_Noise):
    """Adds noise from N(0, stddev^2) to each input."""
    _kind = "gaussian_noise"

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(_rate(stddev, "stddev", upper=False), seed, **kwargs)
        self.stddev = self.rate

    def get_config(self):
        c = super().get_config()
        del c["rate"]
        c["stddev"] = self.stddev
        return c


class ActivityRegularization(Layer):
    """The identity, adding (l1 sum |x| + l2 sum x^2) / batch size to the loss (Keras's
    ActivityRegularization)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("l1", l1), ("l2", l2)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0 or \
                    not math.isfinite(v):
                raise ValueError(f"ActivityRegularization: {name} must be a non-negative "
                                 f"number. Received: {name}={v!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def _lower(self, graph, x):
        return graph.add_activity_penalty(x, self.l1, self.l2) if (self.l1 or self.l2) else x

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
