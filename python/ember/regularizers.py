"""Weight regularizers (Keras's names and factors): the penalty joins the loss that fit
and evaluate report, and its gradient the weights' gradients, inside the C++ step."""
import math
import numbers

import numpy as np


def _factor(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"Value for argument `{name}` must be a non-negative number. "
                         f"Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: l1 * sum(|w|) + l2 * sum(w^2)."""
    l1 = 0.0
    l2 = 0.0

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        return float(self.l1 * np.abs(x).sum() + self.l2 * np.square(x).sum())

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum(|w|)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1")

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(w^2)."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2")

    def get_config(self):
        return {"l2": self.l2}


l1 = L1
l2 = L2


def l1_l2(l1=0.01, l2=0.01):
    """Keras's l1_l2 (both factors 0.01 by default, unlike L1L2's 0)."""
    return L1L2(l1=l1, l2=l2)


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": l1_l2}


def get(identifier):
    """A Regularizer from None, a name ('l1', 'l2', 'l1_l2'), a Keras config dict or an
    object."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _NAMES:
        return _NAMES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r} (ember takes "
                     f"'l1', 'l2', 'l1_l2', ember.regularizers objects or their configs)")


def serialize(regularizer):
    if regularizer is None:
        return None
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}
