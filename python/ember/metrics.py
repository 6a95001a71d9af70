"""Metrics with Keras's names, resolved from shapes as Keras resolves them. The values
are computed in the core, per batch, inside the training step; these classes name and
configure them (and work on their own through update_state / result)."""
import math
import numbers

import numpy as np

from . import _core

_ACCURACY = ("accuracy", "acc")


class Metric:
    """A mean of per-sample values. In compile(metrics=...) it is unweighted, in
    weighted_metrics it takes the sample weights (Keras 3's rule)."""

    _core_name = None
    _sparse = False

    def __init__(self, name=None, dtype=None):
        self.name = name or self._core_name
        self.reset_state()

    @property
    def _k(self):
        return 5

    @property
    def _threshold(self):
        return 0.5

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def _targets(self, y_true, p):
        """(targets, predictions) as the core takes them: rows of classes."""
        p = p.reshape(-1, p.shape[-1]) if p.ndim > 1 else p.reshape(-1, 1)
        if self._sparse:
            t = np.ascontiguousarray(np.asarray(y_true).reshape(-1), dtype=np.int32)
        else:
            t = np.ascontiguousarray(np.asarray(y_true, dtype=np.float32).reshape(p.shape))
        return t, p

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = self._targets(y_true, np.ascontiguousarray(y_pred, dtype=np.float32))
        sw = None
        if sample_weight is not None:
            sw = np.ascontiguousarray(np.asarray(sample_weight, dtype=np.float32).reshape(-1))
        total = _core.metric_sum(self._core_name, self._k, p, t, sw, False, self._threshold)
        self._total += total
        self._count += p.shape[0] if sw is None else float(sw.sum())

    def result(self):
        return np.float32(self._total / self._count if self._count else 0.0)

    def get_config(self):
        return {"name": self.name, "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(**config)


class BinaryAccuracy(Metric):
    """How often (y_pred > threshold) equals the 0/1 target."""
    _core_name = "binary_accuracy"

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or \
                not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number. Received: "
                             f"threshold={threshold!r}")
        self.threshold = float(threshold)
        super().__init__(name, dtype)

    @property
    def _threshold(self):
        return self.threshold

    def get_config(self):
        c = super().get_config()
        c["threshold"] = self.threshold
        return c


class CategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals argmax of the one-hot target."""
    _core_name = "categorical_accuracy"


class SparseCategoricalAccuracy(Metric):
    """How often argmax(y_pred) equals the integer label."""
    _core_name = "sparse_categorical_accuracy"
    _sparse = True


class _TopK(Metric):
    def __init__(self, k=5, name=None, dtype=None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`k` must be a positive integer. Received: k={k!r}")
        self.k = int(k)
        super().__init__(name, dtype)

    @property
    def _k(self):
        return self.k

    def get_config(self):
        c = super().get_config()
        c["k"] = self.k
        return c


class TopKCategoricalAccuracy(_TopK):
    """How often the one-hot target's class is among the k highest predictions."""
    _core_name = "top_k_categorical_accuracy"


class SparseTopKCategoricalAccuracy(_TopK):
    """How often the integer label is among the k highest predictions."""
    _core_name = "sparse_top_k_categorical_accuracy"
    _sparse = True


class MeanAbsoluteError(Metric):
    """Mean of |y_pred - y_true|."""
    _core_name = "mean_absolute_error"


class MeanSquaredError(Metric):
    """Mean of (y_pred - y_true)^2."""
    _core_name = "mean_squared_error"


class Mean:
    """The (weighted) mean of the values it is given: Keras's `Mean`, e.g. a loss
    tracker in a custom train_step (`update_state(loss)`, `result()`)."""

    def __init__(self, name="mean", dtype=None):
        self.name = name
        self.reset_state()

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        from .tape import value_of
        v = np.asarray(value_of(values), dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError(f"Metric '{self.name}' received a value that is not finite: "
                             f"{v.ravel()[~np.isfinite(v.ravel())][0]}")
        if sample_weight is None:
            self._total += float(v.sum())
            self._count += v.size
        else:
            w = np.broadcast_to(np.asarray(value_of(sample_weight), np.float64), v.shape)
            self._total += float((v * w).sum())
            self._count += float(w.sum())

    def result(self):
        return np.float32(self._total / self._count if self._count else 0.0)

    def get_config(self):
        return {"name": self.name, "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Sum(Mean):
    """The (weighted) sum of the values it is given."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name, dtype)

    def result(self):
        return np.float32(self._total)


def instance(identifier, loss, sparse):
    """A metric object for a compile() entry, resolved as get() resolves it (for
    'accuracy', from the loss: binary crossentropy means binary accuracy)."""
    if isinstance(identifier, (Metric, Mean)):
        return identifier
    if isinstance(identifier, str) and identifier in _ACCURACY:
        core = getattr(loss, "_core_name", None)
        cls = (BinaryAccuracy if core == "binary_crossentropy" else
               SparseCategoricalAccuracy if sparse else CategoricalAccuracy)
        m = cls()
        m.name = identifier
        return m
    if isinstance(identifier, str) and identifier in _NAMES:
        m = _NAMES[identifier]()
        m.name = identifier
        return m
    if callable(identifier) and hasattr(identifier, "_metric_class"):
        return identifier._metric_class()
    raise ValueError(f"Unknown metric: {identifier!r}")


_NAMES = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}


def _function(cls):
    """Keras's metric function: the value for each sample (the last axis reduced)."""
    def values(m, y_true, y_pred):
        p = np.ascontiguousarray(y_pred, dtype=np.float32)
        lead = p.shape[:-1] if p.ndim > 1 else p.shape
        t, p = m._targets(y_true, p)
        return _core.metric_sum(m._core_name, m._k, p, t, None, True,
                                m._threshold).reshape(lead)
    if issubclass(cls, _TopK):
        def fn(y_true, y_pred, k=5):
            return values(cls(k=k), y_true, y_pred)
    elif cls is BinaryAccuracy:
        def fn(y_true, y_pred, threshold=0.5):
            # Keras 3 returns one value per element here (the class averages them all).
            p = np.asarray(y_pred, dtype=np.float32)
            return values(cls(threshold=threshold), np.asarray(y_true).reshape(-1, 1),
                          p.reshape(-1, 1)).reshape(p.shape)
    else:
        def fn(y_true, y_pred):
            return values(cls(), y_true, y_pred)
    fn.__name__ = fn.__qualname__ = cls._core_name
    fn._metric_class = cls
    return fn


binary_accuracy = _function(BinaryAccuracy)
categorical_accuracy = _function(CategoricalAccuracy)
sparse_categorical_accuracy = _function(SparseCategoricalAccuracy)
top_k_categorical_accuracy = _function(TopKCategoricalAccuracy)
sparse_top_k_categorical_accuracy = _function(SparseTopKCategoricalAccuracy)
mean_absolute_error = mae = _function(MeanAbsoluteError)
mean_squared_error = mse = _function(MeanSquaredError)


def get(identifier, output_shape, sparse_targets, weighted=False):
    """(log name, core spec) for a compile() metric: a name, a Metric or a metric
    function. Keras's rule for 'accuracy': a last output dimension of 1 means binary
    accuracy; integer labels (targets of lower rank) mean sparse categorical;
    otherwise categorical."""
    if isinstance(identifier, str):
        name = identifier
        if identifier in _ACCURACY:
            if output_shape[-1] == 1:
                cls = BinaryAccuracy
            else:
                cls = SparseCategoricalAccuracy if sparse_targets else CategoricalAccuracy
            metric = cls()
        elif identifier in _NAMES:
            metric = _NAMES[identifier]()
        else:
            raise ValueError(f"Unknown metric: {identifier!r}. Expected one of: "
                             f"{', '.join(_ACCURACY + tuple(_NAMES))}, or a Metric instance")
    elif isinstance(identifier, Metric):
        metric, name = identifier, identifier.name
    elif callable(identifier) and hasattr(identifier, "_metric_class"):
        metric, name = identifier._metric_class(), identifier.__name__
    else:
        raise ValueError(f"Could not interpret metric identifier: {identifier!r}")
    if metric._sparse != sparse_targets:
        kind = "integer labels" if sparse_targets else "one-hot or float targets"
        raise ValueError(f"Metric '{name}' does not fit this loss, whose targets are {kind}")
    return name, (metric._core_name, metric._k, bool(weighted), metric._threshold)
