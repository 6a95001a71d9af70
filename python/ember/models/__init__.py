"""ember.models: Sequential, functional Model(inputs, outputs), and the Model base
holding the training API."""
from .model import Model
from .functional import Functional
from .sequential import Sequential
from ..saving import load_model, model_from_json

__all__ = ["Functional", "Model", "Sequential", "load_model", "model_from_json"]
