"""Activations, by name or as functions (computed by the core on numpy arrays), with
Keras 3's definitions."""
import numpy as np

from . import _core

_NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus",
          "softsign", "leaky_relu", "relu6", "hard_sigmoid", "exponential", "log_softmax",
          "gelu", "silu", "mish", "hard_silu")
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def _apply(name, x, alpha=float("nan")):
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    flat = np.ascontiguousarray(x.reshape(-1, shape[-1] if x.ndim else 1))
    return _core.activation_forward(flat, name, alpha).reshape(shape)


def linear(x):
    return np.asarray(x, dtype=np.float32)


def relu(x):
    return _apply("relu", x)


def sigmoid(x):
    return _apply("sigmoid", x)


def tanh(x):
    return _apply("tanh", x)


def softmax(x):
    """Softmax over the last axis."""
    return _apply("softmax", x)


def log_softmax(x):
    """log(softmax(x)) over the last axis, computed stably."""
    return _apply("log_softmax", x)


def elu(x, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) otherwise."""
    return _apply("elu", x, alpha)


def selu(x):
    """scale * elu(x, alpha) with Keras's constants (1.0507..., 1.6732...)."""
    return _apply("selu", x)


def softplus(x):
    return _apply("softplus", x)


def softsign(x):
    return _apply("softsign", x)


def leaky_relu(x, negative_slope=0.2):
    return _apply("leaky_relu", x, negative_slope)


def relu6(x):
    return _apply("relu6", x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6 (Keras 3's definition)."""
    return _apply("hard_sigmoid", x)


def exponential(x):
    return _apply("exponential", x)


def gelu(x, approximate=False):
    """x Phi(x); with approximate=True, the tanh approximation."""
    return _apply("gelu_approximate" if approximate else "gelu", x)


def silu(x):
    """x sigmoid(x) (also called swish)."""
    return _apply("silu", x)


def mish(x):
    """x tanh(softplus(x))."""
    return _apply("mish", x)


def hard_silu(x):
    """x relu6(x + 3) / 6 (also called hard_swish)."""
    return _apply("hard_silu", x)


swish = silu
hard_swish = hard_silu


def get(identifier):
    """The canonical name of an activation given as None, a name or one of these functions."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__name__", None) in _NAMES:
        return identifier.__name__
    if isinstance(identifier, str):
        if identifier in _NAMES:
            return identifier
        if identifier in _ALIASES:
            return _ALIASES[identifier]
    raise ValueError(f"Unknown activation: {identifier!r}. Expected one of "
                     f"{', '.join(_NAMES + tuple(_ALIASES))}")


def serialize(name):
    return name
