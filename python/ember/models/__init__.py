"""ember.models: Sequential (and the Model base holding the training API)."""
from .model import Model
from .sequential import Sequential
from ..saving import load_model

__all__ = ["Model", "Sequential", "load_model"]
