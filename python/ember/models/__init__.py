"""ember.models: Sequential (and the Model base holding the training API)."""
from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential"]
