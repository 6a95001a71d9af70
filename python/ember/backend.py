"""Keras's `keras.backend` helpers that scripts call: the backend's name, the float
type, the fuzz factor, and clear_session."""
from .layers import base as _base


def backend():
    """The name of the backend computing every number: "ember"."""
    return "ember"


def floatx():
    """The float type models compute in: "float32"."""
    return "float32"


def epsilon():
    """The fuzz factor of losses and metrics (Keras's default, 1e-7)."""
    return 1e-7


def image_data_format():
    """Images are (height, width, channels): "channels_last"."""
    return "channels_last"


def clear_session(free_memory=True):
    """Resets the automatic layer and model names (the next Dense is `dense` again), as
    Keras's does. Models that exist keep working; ember holds no other global state."""
    _base._name_counts.clear()
