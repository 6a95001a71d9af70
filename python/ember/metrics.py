"""Metrics with Keras's names, resolved from shapes as Keras resolves them. The values
are computed in the core, per batch, inside the training step; these classes name and
configure them (and work on their own through update_state / result)."""
import math
import numbers

import numpy as np

from . import _core, step_trace

_ACCURACY = ("accuracy", "acc")


class Metric:
    """A mean of per-sample values. In compile(metrics=...) it is unweighted, in
    weighted_metrics it takes the sample weights (Keras 3's rule)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step_trace.defer_metric_methods(cls)  # replayed after a traced step's C++ call

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
        self._total, self._count, self._rows = 0.0, 0.0, 0
        self._sums = None

    def _width(self, c):
        return _core.metric_width(self._core_name, self._k, c)

    def _result_from(self, sums, count, weight, weighted):
        """The value from the pass's sums (those of _core.metric_width), the samples
        seen and their total weight. A mean metric divides its one sum."""
        den = weight if weighted else count
        return float(sums[0] / den) if den > 0 else 0.0

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
        if np.ndim(total):
            self._sums = total if self._sums is None else self._sums + total
        else:
            self._total += total
        self._count += p.shape[0] if sw is None else float(sw.sum())
        self._rows += p.shape[0]

    def result(self):
        if self._sums is not None or self._width(1) > 1:
            sums = self._sums if self._sums is not None else np.zeros(self._width(1))
            return _as_result(self._result_from(sums, self._rows, self._count, True))
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


def _as_result(v):
    return np.float32(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.float32)


def _div(a, b):
    """a / b, 0 where b is 0 (Keras's divide_no_nan)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))


def _check_threshold(threshold, name="thresholds"):
    if isinstance(threshold, (list, tuple, np.ndarray)):
        raise ValueError(f"ember's confusion metrics take one threshold. Received: "
                         f"{name}={threshold!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or \
            not 0 <= threshold <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]. Received: {name}={threshold!r}")
    return float(threshold)


class _Confusion(Metric):
    """Counts at a threshold over every element: y_true != 0 is positive, y_pred >
    threshold predicts positive (Keras's confusion metrics, over the whole pass)."""
    _core_name = "confusion"
    _default = None

    def __init__(self, thresholds=None, name=None, dtype=None, top_k=None, class_id=None):
        if top_k is not None or class_id is not None:
            raise ValueError(f"{type(self).__name__}: top_k and class_id are not supported "
                             f"by ember yet. Received: top_k={top_k!r}, class_id={class_id!r}")
        self.thresholds = None if thresholds is None else _check_threshold(thresholds)
        super().__init__(name or self._default, dtype)

    @property
    def _threshold(self):
        return 0.5 if self.thresholds is None else self.thresholds

    def get_config(self):
        return {"name": self.name, "dtype": "float32", "thresholds": self.thresholds}

    def _result_from(self, sums, count, weight, weighted):
        tp, fp, tn, fn = (float(v) for v in sums[:4])
        return self._combine(tp, fp, tn, fn)


class _Count(_Confusion):
    """One of the four counts: sums[_which] (0 tp, 1 fp, 2 tn, 3 fn)."""
    _which = 0

    def _combine(self, tp, fp, tn, fn):
        return (tp, fp, tn, fn)[self._which]


class TruePositives(_Count):
    _default, _which = "true_positives", 0


class FalsePositives(_Count):
    _default, _which = "false_positives", 1


class TrueNegatives(_Count):
    _default, _which = "true_negatives", 2


class FalseNegatives(_Count):
    _default, _which = "false_negatives", 3


class Precision(_Confusion):
    """tp / (tp + fp) over the pass (0 when nothing is predicted positive)."""
    _default = "precision"

    def get_config(self):
        return {**super().get_config(), "top_k": None, "class_id": None}

    def _combine(self, tp, fp, tn, fn):
        return float(_div(tp, tp + fp))


class Recall(_Confusion):
    """tp / (tp + fn) over the pass (0 when there are no positives)."""
    _default = "recall"

    def get_config(self):
        return {**super().get_config(), "top_k": None, "class_id": None}

    def _combine(self, tp, fp, tn, fn):
        return float(_div(tp, tp + fn))


def _curve_counts(sums, T):
    """(tp, fp, tn, fn) at each of T thresholds from the bucket sums."""
    pos, neg = np.asarray(sums[:T], np.float64), np.asarray(sums[T:2 * T], np.float64)
    total_pos, total_neg = float(sums[2 * T]), float(sums[2 * T + 1])
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    return tp, fp, total_neg - fp, total_pos - tp


class AUC(Metric):
    """Area under the ROC or PR curve from num_thresholds evenly spaced thresholds
    (Keras's buckets and summation), over the pass."""
    _core_name = "buckets"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                or num_thresholds < 2:
            raise ValueError(f"num_thresholds must be an integer > 1. Received: "
                             f"num_thresholds={num_thresholds!r}")
        curve = str(curve).upper()
        if curve not in ("ROC", "PR"):
            raise ValueError(f"curve must be 'ROC' or 'PR'. Received: curve={curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring'. Received: {summation_method!r}")
        for key, value in (("thresholds", thresholds), ("multi_label", multi_label or None),
                           ("num_labels", num_labels), ("label_weights", label_weights),
                           ("from_logits", from_logits or None)):
            if value is not None:
                raise ValueError(f"AUC: {key} is not supported by ember yet. Received: "
                                 f"{key}={value!r}")
        self.num_thresholds = int(num_thresholds)
        self.curve = curve
        self.summation_method = summation_method
        super().__init__(name or "auc", dtype)

    @property
    def _k(self):
        return self.num_thresholds

    @property
    def _threshold(self):
        return 1.0  # Keras's AUC thresholds start below 0 and end above 1

    def get_config(self):
        return {"name": self.name, "dtype": "float32", "num_thresholds": self.num_thresholds,
                "curve": self.curve, "summation_method": self.summation_method,
                "multi_label": False, "num_labels": None, "label_weights": None,
                "from_logits": False}

    def _result_from(self, sums, count, weight, weighted):
        T = self.num_thresholds
        tp, fp, tn, fn = _curve_counts(sums, T)
        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[:-1] - tp[1:]
            p = tp + fp
            dp = p[:-1] - p[1:]
            slope = _div(dtp, np.maximum(dp, 0))
            intercept = tp[1:] - slope * p[1:]
            ratio = np.where((p[:-1] > 0) & (p[1:] > 0), _div(p[:-1], np.maximum(p[1:], 0)),
                             1.0)
            inc = _div(slope * (dtp + intercept * np.log(ratio)),
                       np.maximum(tp[1:] + fn[1:], 0))
            return float(np.sum(inc))
        recall = _div(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div(fp, fp + tn), recall
        else:
            x, y = recall, _div(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))


class _AtConstraint(Metric):
    """Keras's SensitivitySpecificityBase: the best of one statistic among the
    thresholds [0, 1/(k-1), ..., 1] where another reaches `value`."""
    _core_name = "buckets"

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{type(self).__name__}: the constraint must be in [0, 1]. "
                             f"Received: {value!r}")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) \
                or num_thresholds < 2:
            raise ValueError(f"num_thresholds must be an integer > 1. Received: "
                             f"num_thresholds={num_thresholds!r}")
        if class_id is not None:
            raise ValueError(f"{type(self).__name__}: class_id is not supported by ember yet")
        self.value = float(value)
        self.num_thresholds = int(num_thresholds)
        super().__init__(name or self._default, dtype)

    @property
    def _k(self):
        return self.num_thresholds

    @property
    def _threshold(self):
        return 0.0  # thresholds from 0: a prediction of exactly 0 is under all of them

    def _result_from(self, sums, count, weight, weighted):
        tp, fp, tn, fn = _curve_counts(sums, self.num_thresholds)
        constrained, dependent = self._curves(tp, fp, tn, fn)
        feasible = constrained >= self.value
        return float(max(np.max(np.where(feasible, dependent, 0.0)), 0.0))

    def get_config(self):
        return {"name": self.name, "dtype": "float32", "num_thresholds": self.num_thresholds,
                "class_id": None, self._value_key: self.value}


class PrecisionAtRecall(_AtConstraint):
    _default, _value_key = "precision_at_recall", "recall"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)

    def _curves(self, tp, fp, tn, fn):
        return _div(tp, tp + fn), _div(tp, tp + fp)


class RecallAtPrecision(_AtConstraint):
    _default, _value_key = "recall_at_precision", "precision"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)

    def _curves(self, tp, fp, tn, fn):
        return _div(tp, tp + fp), _div(tp, tp + fn)


class FBetaScore(Metric):
    """Keras's FBetaScore over the pass: per class tp, fp, fn from y_pred > threshold
    (or the row's maximum when threshold is None) against one-hot y_true; average None
    (per class), 'micro', 'macro' or 'weighted'."""
    _core_name = "class_confusion"

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score",
                 dtype=None):
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"average must be None, 'micro', 'macro' or 'weighted'. "
                             f"Received: average={average!r}")
        if not isinstance(beta, numbers.Real) or not beta > 0:
            raise ValueError(f"beta must be a positive number. Received: beta={beta!r}")
        self.average, self.beta = average, float(beta)
        self.threshold = None if threshold is None else _check_threshold(threshold,
                                                                          "threshold")
        super().__init__(name, dtype)

    @property
    def _threshold(self):
        return float("nan") if self.threshold is None else self.threshold

    def get_config(self):
        return {"name": self.name, "dtype": "float32", "average": self.average,
                "beta": self.beta, "threshold": self.threshold}

    def _result_from(self, sums, count, weight, weighted):
        s = np.asarray(sums, np.float64).reshape(-1, 4)
        tp, fp, fn, support = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        eps = 1e-7
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        b2 = self.beta ** 2
        f = _div(precision * recall, b2 * precision + recall) * (1 + b2)
        if self.average == "weighted":
            return float(np.sum(f * _div(support, support.sum())))
        if self.average == "macro":
            return float(np.mean(f))
        return f if self.average is None else float(f)


class F1Score(FBetaScore):
    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average, 1.0, threshold, name, dtype)

    def get_config(self):
        c = super().get_config()
        del c["beta"]
        return c


class MeanIoU(Metric):
    """Mean intersection over union of num_classes classes over the pass. Classes are
    the argmax of rows of several columns (probabilities, one-hot targets), else the
    values themselves (class ids), and integer labels."""
    _core_name = "confusion_matrix"

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
                num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: "
                             f"{num_classes!r}")
        if ignore_class is not None and (isinstance(ignore_class, bool) or
                                         not isinstance(ignore_class, (int, np.integer))):
            raise ValueError(f"ignore_class must be an integer class id or None. Received: "
                             f"ignore_class={ignore_class!r}")
        if axis != -1:
            raise ValueError(f"MeanIoU: ember takes the classes along the last axis. "
                             f"Received: axis={axis!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.num_classes = int(num_classes)
        self.sparse_y_true, self.sparse_y_pred = bool(sparse_y_true), bool(sparse_y_pred)
        super().__init__(name or "mean_io_u", dtype)

    @property
    def _k(self):
        return self.num_classes

    @property
    def _threshold(self):  # the core's slot for the class left out
        return float("nan") if self.ignore_class is None else float(self.ignore_class)

    def _targets(self, y_true, p):
        p = p.reshape(-1, p.shape[-1]) if p.ndim > 1 and not self.sparse_y_pred else \
            p.reshape(-1, 1)
        t = np.asarray(y_true)
        if self.sparse_y_true or t.ndim < 2:
            return np.ascontiguousarray(t.reshape(-1), dtype=np.int32), p
        return np.ascontiguousarray(t.reshape(-1, t.shape[-1]), dtype=np.float32), p

    def get_config(self):
        return {"name": self.name, "dtype": "float32", "num_classes": self.num_classes,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": -1}

    def _result_from(self, sums, count, weight, weighted):
        cm = np.asarray(sums, np.float64).reshape(self.num_classes, self.num_classes)
        rows, cols, diag = cm.sum(1), cm.sum(0), np.diag(cm)
        den = rows + cols - diag
        return float(_div(np.sum(_div(diag, den)), np.sum(den != 0)))


class R2Score(Metric):
    """The coefficient of determination over the pass, per output column, averaged
    ('uniform_average'), weighted by variance ('variance_weighted') or per column
    (None); num_regressors gives the adjusted score."""
    _core_name = "moments"

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score",
                 dtype=None):
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError(f"class_aggregation must be None, 'uniform_average' or "
                             f"'variance_weighted_average'. Received: {class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, (int, np.integer)) \
                or num_regressors < 0:
            raise ValueError(f"num_regressors must be a non-negative integer. Received: "
                             f"{num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        super().__init__(name, dtype)

    def get_config(self):
        return {"name": self.name, "dtype": "float32",
                "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}

    def _result_from(self, sums, count, weight, weighted):
        s = np.asarray(sums, np.float64).reshape(4, -1)
        total, squared, residual, n = s
        mean = _div(total, n)
        tot = squared - total * mean
        raw = 1.0 - _div(residual, tot)
        raw = np.where(tot == 0, 0.0, raw)  # Keras turns the infinite scores into 0
        if self.class_aggregation == "uniform_average":
            r2 = np.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            r2 = float(_div(np.sum(raw * tot), np.sum(tot)))
        else:
            r2 = raw
        if self.num_regressors:
            samples = float(count) * len(n)  # Keras counts the elements of y_true
            if samples - self.num_regressors - 1 > 0:
                r2 = 1 - (1 - r2) * (samples - 1) / (samples - self.num_regressors - 1)
        return r2 if np.ndim(r2) else float(r2)


class RootMeanSquaredError(Metric):
    """sqrt of the mean squared error over the pass."""
    _core_name = "mean_squared_error"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def _result_from(self, sums, count, weight, weighted):
        return math.sqrt(max(super()._result_from(sums, count, weight, weighted), 0.0))

    def result(self):
        return np.float32(math.sqrt(self._total / self._count) if self._count else 0.0)


class MeanAbsolutePercentageError(Metric):
    """Mean of 100 |y_true - y_pred| / max(|y_true|, 1e-7)."""
    _core_name = "mean_absolute_percentage_error"


class LogCoshError(Metric):
    """Mean of log(cosh(y_pred - y_true))."""
    _core_name = "log_cosh_error"

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(name, dtype)


class CosineSimilarity(Metric):
    """Mean cosine similarity of y_true and y_pred along the last axis."""
    _core_name = "cosine_similarity"

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        if axis != -1:
            raise ValueError(f"CosineSimilarity: only axis=-1. Received: axis={axis!r}")
        super().__init__(name, dtype)


class Mean:
    """The (weighted) mean of the values it is given: Keras's `Mean`, e.g. a loss
    tracker in a custom train_step (`update_state(loss)`, `result()`)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step_trace.defer_metric_methods(cls)

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


step_trace.defer_metric_methods(Metric)
step_trace.defer_metric_methods(Mean)


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
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "root_mean_squared_error": RootMeanSquaredError,
    "logcosh": LogCoshError, "log_cosh_error": LogCoshError,
    "cosine_similarity": CosineSimilarity,
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
    if metric._sparse != sparse_targets and not isinstance(metric, MeanIoU):
        kind = "integer labels" if sparse_targets else "one-hot or float targets"
        raise ValueError(f"Metric '{name}' does not fit this loss, whose targets are {kind}")
    return name, (metric._core_name, metric._k, bool(weighted), metric._threshold), metric
