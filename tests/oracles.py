"""The optional reference frameworks, imported the way every test wants them."""
import os

import pytest


def keras_or_skip():
    """Keras 3 on JAX, or a clean skip when either is missing (`pip install .[compare]`)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("these comparisons use Keras on JAX")
    return keras
