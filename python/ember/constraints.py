"""Weight constraints (Keras's names and defaults), applied to a weight after each update
inside the C++ step. Norms run over `axis` (leading axes of the weight: 0 for a Dense
kernel's input axis, [0, 1, 2] for a Conv2D kernel's window and input channels)."""
import numbers

import numpy as np


def _axes(axis):
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
        raise ValueError(f"axis must be an int or a list of ints. Received: axis={axis!r}")
    return [int(a) for a in axes]


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}")
    return float(value)


class Constraint:
    """Base class. `_core_spec(shape)` says how the core applies it to a weight."""
    _kind = ""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _rows(self, shape):
        """Rows of the (rows, cols) view whose columns the norms run over."""
        axes = sorted(a % len(shape) for a in self.axis)
        if axes != list(range(len(axes))):
            raise ValueError(f"{type(self).__name__}: ember takes norms over leading axes "
                             f"(e.g. 0, or [0, 1, 2] for a Conv2D kernel). Received: "
                             f"axis={self.axis} for a weight of shape {shape}")
        return int(np.prod([shape[a] for a in axes]))

    def _core_spec(self, shape):
        return (self._kind, self._rows(shape), 0.0, 0.0, 1.0)

    def __call__(self, w):
        """The constrained value of w, in NumPy (the core applies the same rule)."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(w)")

    def _norms(self, w):
        rows = self._rows(w.shape)
        flat = np.asarray(w, dtype=np.float64).reshape(rows, -1)
        return flat, np.sqrt((flat ** 2).sum(0, keepdims=True))


class MaxNorm(Constraint):
    """Scales each column whose norm exceeds max_value down to it."""
    _kind = "max_norm"

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number(max_value, "max_value")
        self.axis = _axes(axis)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis if len(self.axis) > 1
                else self.axis[0]}

    def _core_spec(self, shape):
        return (self._kind, self._rows(shape), 0.0, self.max_value, 1.0)

    def __call__(self, w):
        flat, n = self._norms(w)
        return (flat * np.minimum(n, self.max_value) / (1e-7 + n)).reshape(np.shape(w))


class NonNeg(Constraint):
    """Sets negative weights to 0."""
    _kind = "non_neg"
    axis = [0]

    def _rows(self, shape):
        return 1

    def __call__(self, w):
        w = np.asarray(w)
        return w * (w >= 0)


class UnitNorm(Constraint):
    """Scales each column to norm 1."""
    _kind = "unit_norm"

    def __init__(self, axis=0):
        self.axis = _axes(axis)

    def get_config(self):
        return {"axis": self.axis if len(self.axis) > 1 else self.axis[0]}

    def __call__(self, w):
        flat, n = self._norms(w)
        return (flat / (1e-7 + n)).reshape(np.shape(w))


class MinMaxNorm(Constraint):
    """Moves each column's norm into [min_value, max_value] at `rate`."""
    _kind = "min_max_norm"

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number(min_value, "min_value")
        self.max_value = _number(max_value, "max_value")
        self.rate = _number(rate, "rate")
        if self.min_value > self.max_value:
            raise ValueError(f"MinMaxNorm: min_value must not exceed max_value. Received: "
                             f"min_value={min_value}, max_value={max_value}")
        self.axis = _axes(axis)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis if len(self.axis) > 1 else self.axis[0]}

    def _core_spec(self, shape):
        return (self._kind, self._rows(shape), self.min_value, self.max_value, self.rate)

    def __call__(self, w):
        flat, n = self._norms(w)
        want = self.rate * np.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return (flat * want / (1e-7 + n)).reshape(np.shape(w))


max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm
_CLASSES = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
            "MinMaxNorm": MinMaxNorm}
_NAMES = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
          "min_max_norm": MinMaxNorm}


def get(identifier):
    """A Constraint from None, a name, a Keras config dict or an object."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str) and identifier in _NAMES:
        return _NAMES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret constraint identifier: {identifier!r} (ember takes "
                     f"{', '.join(_NAMES)}, ember.constraints objects or their configs)")


def serialize(constraint):
    if constraint is None:
        return None
    return {"module": "keras.constraints", "class_name": type(constraint).__name__,
            "config": constraint.get_config(), "registered_name": None}
