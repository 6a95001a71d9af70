"""Losses with Keras's names and semantics. The arithmetic (and the gradient,
fused with a final softmax or sigmoid) runs in the core."""
import numpy as np

from . import _core


class Loss:
    """Base class. Calling a loss returns the mean over the batch (Keras's
    'sum_over_batch_size' reduction)."""

    _core_name = None
    _sparse = False

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size", **kwargs):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{kwargs}")
        if reduction != "sum_over_batch_size":
            raise ValueError("ember supports reduction='sum_over_batch_size' only. "
                             f"Received: reduction={reduction!r}")
        self.from_logits = bool(from_logits)
        self.name = name or self._core_name
        self.reduction = reduction

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("Calling a loss with sample_weight directly is not supported; "
                             "pass sample_weight to fit or evaluate")
        y_pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        out = y_pred.reshape(len(y_pred), -1)
        if self._sparse:
            target = np.ascontiguousarray(np.asarray(y_true).reshape(-1), dtype=np.int32)
        else:
            target = np.ascontiguousarray(np.asarray(y_true, dtype=np.float32).reshape(out.shape))
        total, _ = _core.loss(self._core_name, out, target, self.from_logits)
        return np.float32(total / len(out))

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy between integer labels and predicted class probabilities (or logits)."""
    _core_name = "sparse_categorical_crossentropy"
    _sparse = True


class CategoricalCrossentropy(Loss):
    """Crossentropy between one-hot targets and predicted class probabilities (or logits)."""
    _core_name = "categorical_crossentropy"


class BinaryCrossentropy(Loss):
    """Crossentropy for 0/1 targets, averaged over the last axis."""
    _core_name = "binary_crossentropy"


class MeanSquaredError(Loss):
    """Mean of squared errors over the last axis."""
    _core_name = "mean_squared_error"

    def __init__(self, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(False, name, reduction, **kwargs)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


_ALIASES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}


def get(identifier):
    """A Loss from a name ('sparse_categorical_crossentropy', 'mse', ...) or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _ALIASES:
        return _ALIASES[identifier]()
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(_ALIASES)}, or a Loss instance")
