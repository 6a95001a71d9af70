"""Losses with Keras's names and semantics. The arithmetic (and the gradient, fused
with a final softmax or sigmoid) runs in the core.

Each loss is a class (`MeanSquaredError()`), a string alias (`'mse'`) and a function
returning per-sample values (`mean_squared_error(y_true, y_pred)`)."""
import numbers

import numpy as np

from . import _core


def _targets(y_true, out, sparse):
    if sparse:
        t = np.asarray(y_true)
        if t.size != out.shape[0]:
            raise ValueError(f"Expected one integer label per sample ({out.shape[0]}). "
                             f"Received y_true of shape {t.shape}")
        if not np.issubdtype(t.dtype, np.integer) and not np.all(t == np.floor(t)):
            raise ValueError("Sparse losses expect integer class ids in y_true")
        return np.ascontiguousarray(t.reshape(-1), dtype=np.int32)
    t = np.asarray(y_true, dtype=np.float32)
    if t.size != out.size:
        raise ValueError(f"y_true and y_pred must have the same shape. Received: "
                         f"y_true.shape={t.shape}, y_pred.shape={out.shape}")
    return np.ascontiguousarray(t.reshape(out.shape))


def _rows(y_pred):
    p = np.asarray(y_pred, dtype=np.float32)
    if p.ndim == 0:
        p = p.reshape(1, 1)
    if p.ndim == 1:
        p = p.reshape(-1, 1)
    return p, np.ascontiguousarray(p.reshape(-1, p.shape[-1]))


class Loss:
    """Base class. Calling a loss returns sum_i(sample_weight_i * L_i) / n, Keras's
    'sum_over_batch_size' reduction; L_i reduces over the last axis."""

    _core_name = None
    _sparse = False
    _default_name = None

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in ("sum_over_batch_size", "sum", "none", None):
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"'sum_over_batch_size', 'sum', 'none' or None. Received: "
                             f"reduction={reduction!r}")
        self.name = name or self._default_name or self._core_name
        self.reduction = reduction
        self.from_logits = False

    _param2 = 0.0

    @property
    def _param(self):
        return 1.0

    def _whole_batch(self, rank):
        """True when the loss is one value for the whole batch (ranks: y_pred's)."""
        return False

    def _loss_rows(self, pred):
        """pred as the 2-D rows the core takes a loss of, one value per row."""
        return _rows(pred)[1]

    def call(self, y_true, y_pred):
        """Per-sample losses, shape y_pred.shape[:-1]."""
        shape, out = _rows(y_pred)
        target = _targets(y_true, out, self._sparse)
        per = _core.loss_per_sample(self._core_name, out, target, self.from_logits, self._param)
        return per.reshape(shape.shape[:-1])

    def __call__(self, y_true, y_pred, sample_weight=None):
        from . import step_trace, tape
        if step_trace.active() is not None:
            return self._traced(y_true, y_pred, sample_weight)
        if isinstance(y_pred, tape.Tensor) or isinstance(y_true, tape.Tensor):
            return self._taped(y_true, y_pred, sample_weight)
        per = self.call(y_true, y_pred)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float32)
            try:
                if per.ndim:
                    sw = np.broadcast_to(sw.reshape(sw.shape + (1,) * (per.ndim - sw.ndim)),
                                         per.shape)
            except ValueError:
                raise ValueError(f"sample_weight of shape {sw.shape} does not match the "
                                 f"per-sample losses of shape {per.shape}") from None
            if per.ndim == 0:  # a loss of the whole batch, weighted by each sample's
                per = per * sw.reshape(-1)
            else:
                per = per * sw
        if self.reduction in ("none", None):
            return per
        total = np.float32(per.astype(np.float64).sum())
        if self.reduction == "sum":
            return total
        return np.float32(total / max(per.size, 1))

    def _traced(self, y_true, y_pred, sample_weight):
        """The loss inside a traced train_step, written with ember.ops: the per-sample
        formula (_ops_per_sample), weighted and reduced as __call__ does."""
        from . import ops
        per = _ops_per_sample(self, y_true, y_pred)
        if sample_weight is not None:
            sw = sample_weight
            rank = len(ops.shape(per))
            if len(ops.shape(sw)) < rank:
                sw = ops.reshape(sw, tuple(ops.shape(sw)) + (1,) * (rank - len(ops.shape(sw))))
            per = per * sw
        if self.reduction in ("none", None):
            return per
        total = ops.sum(per)
        if self.reduction == "sum":
            return total
        return total / float(max(int(np.prod(ops.shape(per))), 1))

    def _taped(self, y_true, y_pred, sample_weight, count=None):
        """The loss of a Tensor, with its gradient computed by the core in the same
        pass, for a GradientTape; 'sum_over_batch_size' divides by count (default: the
        rows)."""
        from . import tape
        if self.reduction in ("none", None):
            raise ValueError("A loss with reduction='none' on a GradientTape is not "
                             "supported yet: use 'sum_over_batch_size' or 'sum'")
        pred = np.asarray(tape.value_of(y_pred), dtype=np.float32)
        out = self._loss_rows(pred)
        target = _targets(tape.value_of(y_true), out, self._sparse)
        whole = self._whole_batch(max(pred.ndim, 2))
        rows = (pred.shape[0] if pred.ndim else 1) if whole else out.shape[0]
        sw = None
        if sample_weight is not None:
            sw = np.ascontiguousarray(np.asarray(tape.value_of(sample_weight),
                                                 dtype=np.float32).reshape(-1))
            if sw.size != rows:
                raise ValueError(f"sample_weight must have one value per sample ({rows}). "
                                 f"Received shape {np.shape(sample_weight)}")
        if whole:  # one value, weighted by the batch's total weight
            sw = None if sw is None else np.array([sw.astype(np.float64).sum()], np.float32)
            count = (1 if sw is None else rows) if count is None else count
        count = rows if count is None else count
        scale = 1.0 / max(count, 1) if self.reduction == "sum_over_batch_size" else 1.0
        total, grad = _core.loss(self._core_name, out, target, self.from_logits, "linear",
                                 scale, sw, self._param, self._param2)
        grad = grad.reshape(pred.shape)
        return tape.record(np.float32(total * scale), [y_pred],
                           lambda g: [grad * np.float32(g)])

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None)
        return cls(**config)


class _ProbabilisticLoss(Loss):
    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
                or not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1]. Received: "
                             f"label_smoothing={label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        if axis != -1:
            raise ValueError(f"ember reduces losses over the last axis only. Received: "
                             f"axis={axis!r}")
        self.from_logits = bool(from_logits)

    @property
    def _param(self):
        return 1.0 - self.label_smoothing  # the share of each target the core keeps

    def get_config(self):
        c = super().get_config()
        c.update(from_logits=self.from_logits, label_smoothing=self.label_smoothing, axis=-1)
        return c


class SparseCategoricalCrossentropy(_ProbabilisticLoss):
    """Crossentropy between integer labels and predicted class probabilities (or logits)."""
    _core_name = "sparse_categorical_crossentropy"
    _sparse = True

    def __init__(self, from_logits=False, ignore_class=None, axis=-1, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        if ignore_class is not None and (isinstance(ignore_class, bool) or
                                         not isinstance(ignore_class, (int, np.integer))):
            raise ValueError(f"ignore_class must be an integer class id or None. Received: "
                             f"ignore_class={ignore_class!r}")
        super().__init__(from_logits, 0.0, axis, name, reduction, dtype)
        # Keras's ignore_class: positions labelled with it take no part in the loss,
        # which averages over the others.
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _valid(self, y_true):
        """(labels with the ignored ones as 0, 1.0 where a label counts), or (labels,
        None) without ignore_class."""
        t = np.asarray(y_true)
        if self.ignore_class is None:
            return t, None
        valid = t != self.ignore_class
        return np.where(valid, t, 0), valid.astype(np.float32)

    def call(self, y_true, y_pred):
        t, valid = self._valid(y_true)
        per = super().call(t, y_pred)
        return per if valid is None else per * valid.reshape(per.shape)

    def __call__(self, y_true, y_pred, sample_weight=None):
        from . import tape
        if self.ignore_class is None or isinstance(y_pred, tape.Tensor) or \
                isinstance(y_true, tape.Tensor):
            return super().__call__(y_true, y_pred, sample_weight)
        total = Loss.__call__(self, y_true, y_pred, sample_weight)
        if self.reduction != "sum_over_batch_size":
            return total
        valid = self._valid(y_true)[1]
        return np.float32(total * valid.size / max(valid.sum(), 1.0))

    def _taped(self, y_true, y_pred, sample_weight, count=None):
        from . import tape
        if self.ignore_class is None:
            return super()._taped(y_true, y_pred, sample_weight, count)
        t, valid = self._valid(tape.value_of(y_true))
        sw = valid.reshape(-1)
        if sample_weight is not None:
            sw = sw * np.asarray(tape.value_of(sample_weight), np.float32).reshape(-1)
        return super()._taped(t, y_pred, sw, float(valid.sum()))

    def get_config(self):
        c = Loss.get_config(self)
        c.update(from_logits=self.from_logits, ignore_class=self.ignore_class, axis=-1)
        return c


class CategoricalCrossentropy(_ProbabilisticLoss):
    """Crossentropy between one-hot targets and predicted class probabilities (or logits)."""
    _core_name = "categorical_crossentropy"


class BinaryCrossentropy(_ProbabilisticLoss):
    """Crossentropy for 0/1 targets, averaged over the last axis."""
    _core_name = "binary_crossentropy"


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over the last axis."""
    _core_name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over the last axis."""
    _core_name = "mean_absolute_error"


class Huber(Loss):
    """0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2 (e = y_pred - y_true),
    averaged over the last axis."""
    _core_name = "huber"
    _default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss",
                 dtype=None):
        super().__init__(name, reduction, dtype)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"`delta` must be a positive number. Received: delta={delta!r}")
        self.delta = float(delta)

    @property
    def _param(self):
        return self.delta

    def get_config(self):
        c = super().get_config()
        c["delta"] = self.delta
        return c


class Hinge(Loss):
    """mean(max(1 - y_true * y_pred, 0)) over the last axis; 0/1 targets are taken as
    -1/1 (when every target of the batch is 0 or 1, as in Keras)."""
    _core_name = "hinge"


class KLDivergence(Loss):
    """sum(y_true * log(y_true / y_pred)) over the last axis, both clipped to [1e-7, 1]."""
    _core_name = "kl_divergence"


class MeanSquaredLogarithmicError(Loss):
    """mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))^2) over the last axis."""
    _core_name = "mean_squared_logarithmic_error"


class MeanAbsolutePercentageError(Loss):
    """100 * mean(|y_true - y_pred| / max(|y_true|, eps)) over the last axis."""
    _core_name = "mean_absolute_percentage_error"


class LogCosh(Loss):
    """mean(log(cosh(y_pred - y_true))) over the last axis."""
    _core_name = "log_cosh"


class Poisson(Loss):
    """mean(y_pred - y_true * log(y_pred + eps)) over the last axis."""
    _core_name = "poisson"


class SquaredHinge(Loss):
    """mean(max(1 - y_true * y_pred, 0)^2) over the last axis, 0/1 targets taken as -1/1
    as for Hinge."""
    _core_name = "squared_hinge"


class CategoricalHinge(Loss):
    """max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0) over the last axis."""
    _core_name = "categorical_hinge"


class CosineSimilarity(Loss):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over the last axis (-1 when they
    point the same way)."""
    _core_name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity",
                 dtype=None):
        super().__init__(name, reduction, dtype)
        if axis != -1:
            raise ValueError(f"ember reduces losses over the last axis only. Received: "
                             f"axis={axis!r}")

    def get_config(self):
        c = super().get_config()
        c["axis"] = -1
        return c


class Dice(Loss):
    """1 - 2 sum(y_true y_pred) / (sum(y_true) + sum(y_pred) + eps), over the whole batch
    (axis=None, Keras's default: one value per batch) or over each sample (axis naming
    every axis but the batch's, e.g. (1, 2, 3) for images)."""
    _core_name = "dice"

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis=None, dtype=None):
        super().__init__(name, reduction, dtype)
        if axis is not None:
            axes = axis if isinstance(axis, (list, tuple)) else [axis]
            if not axes or not all(isinstance(a, numbers.Integral) and
                                   not isinstance(a, bool) for a in axes):
                raise ValueError(f"`axis` must be None, an integer or a tuple of integers. "
                                 f"Received: axis={axis!r}")
            axis = tuple(int(a) for a in axes) if isinstance(axis, (list, tuple)) else int(axis)
        self.axis = axis

    def _whole_batch(self, rank):
        if self.axis is None:
            return True
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if rank < 2 or sorted(a % rank for a in axes) != list(range(1, rank)) \
                or len(set(a % rank for a in axes)) != len(axes):
            raise ValueError(f"{type(self).__name__} takes axis=None (the whole batch) or "
                             f"every axis but the batch's ({tuple(range(1, rank))} for "
                             f"y_pred of rank {rank}). Received: axis={self.axis!r}")
        return False

    def _loss_rows(self, pred):
        pred = np.asarray(pred, dtype=np.float32)
        rows = 1 if self._whole_batch(max(pred.ndim, 2)) else pred.shape[0]
        return np.ascontiguousarray(pred.reshape(rows, -1))

    def call(self, y_true, y_pred):
        """The loss of the batch (axis=None) or of each sample."""
        out = self._loss_rows(y_pred)
        target = _targets(y_true, out, False)
        per = _core.loss_per_sample(self._core_name, out, target, False, self._param,
                                    self._param2)
        return per.reshape(()) if self.axis is None else per

    def get_config(self):
        c = super().get_config()
        c["axis"] = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return c


class Tversky(Dice):
    """1 - tp / (tp + alpha fp + beta fn + eps) with Keras's terms tp = sum(y_true y_pred),
    fp = sum((1 - y_pred) y_true), fn = sum(y_pred (1 - y_true)); alpha = beta = 0.5 is
    Dice. Over the whole batch (axis=None) or each sample, as Dice."""
    _core_name = "tversky"

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky",
                 axis=None, dtype=None):
        super().__init__(reduction, name, axis, dtype)
        for key, v in (("alpha", alpha), ("beta", beta)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"`{key}` must be a finite number. Received: {key}={v!r}")
        self.alpha, self.beta = float(alpha), float(beta)

    @property
    def _param(self):
        return self.alpha

    @property
    def _param2(self):
        return self.beta

    def get_config(self):
        c = super().get_config()
        c.update(alpha=self.alpha, beta=self.beta)
        return c


def _taped_per_sample(name, y_true, y_pred, kwargs):
    """A function-form loss on a GradientTape's Tensors: each sample's loss over the last
    axis written with ember.ops (Keras's formulas, probabilities clipped to [1e-7,
    1 - 1e-7]), so that the tape follows it."""
    from . import ops, step_trace
    if kwargs or name not in ("mean_squared_error", "mean_absolute_error",
                              "binary_crossentropy", "categorical_crossentropy"):
        if step_trace.active() is not None:
            raise step_trace.TraceUnsupported(f"ember.losses.{name} has no ops formula yet")
        raise ValueError(f"ember.losses.{name}{' with ' + str(kwargs) if kwargs else ''} on a "
                         f"GradientTape's tensors is not supported yet: use its class "
                         f"(a reduced loss the tape follows) or write it with ember.ops")
    if name == "mean_squared_error":
        return ops.mean(ops.square(y_pred - y_true), axis=-1)
    if name == "mean_absolute_error":
        return ops.mean(ops.abs(y_pred - y_true), axis=-1)
    if name == "binary_crossentropy":
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        return -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p), axis=-1)
    p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return -ops.sum(y_true * ops.log(ops.clip(p, 1e-7, 1.0 - 1e-7)), axis=-1)


def _ops_per_sample(loss, y_true, y_pred):
    """A loss object's per-sample values written with ember.ops (Keras 3's formulas),
    for a traced train_step; a loss without one here makes the step run eagerly."""
    from . import ops
    from .step_trace import TraceUnsupported
    kind = type(loss)
    if kind in (MeanSquaredError, MeanAbsoluteError):
        return _taped_per_sample(kind._core_name, y_true, y_pred, {})
    if kind not in (BinaryCrossentropy, CategoricalCrossentropy,
                    SparseCategoricalCrossentropy) or getattr(loss, "ignore_class", None) \
            is not None:
        raise TraceUnsupported(f"the loss {kind.__name__} has no ops formula yet")
    classes = ops.shape(y_pred)[-1]
    if kind is SparseCategoricalCrossentropy:
        from .step_trace import note_labels
        note_labels(y_true, classes)
        if len(ops.shape(y_true)) == len(ops.shape(y_pred)):
            y_true = ops.reshape(y_true, tuple(ops.shape(y_pred))[:-1])
        y_true = ops.one_hot(y_true, classes)
    ls = loss.label_smoothing
    if ls:
        share = 0.5 if kind is BinaryCrossentropy else 1.0 / classes
        y_true = y_true * (1.0 - ls) + share * ls
    if kind is BinaryCrossentropy:
        if loss.from_logits:  # relu(x) - x t + log(1 + exp(-|x|))
            return ops.mean(ops.relu(y_pred) - y_pred * y_true +
                            ops.log1p(ops.exp(-ops.abs(y_pred))), axis=-1)
        return _taped_per_sample("binary_crossentropy", y_true, y_pred, {})
    if loss.from_logits:
        return -ops.sum(y_true * ops.log_softmax(y_pred, axis=-1), axis=-1)
    return _taped_per_sample("categorical_crossentropy", y_true, y_pred, {})


def _function(cls, doc, **fixed):
    def fn(y_true, y_pred, **kwargs):
        from . import step_trace, tape
        if step_trace.active() is not None:
            return _taped_per_sample(cls._core_name, y_true, y_pred, {**fixed, **kwargs})
        if isinstance(y_pred, tape.Tensor) or isinstance(y_true, tape.Tensor):
            return _taped_per_sample(cls._core_name, y_true, y_pred, {**fixed, **kwargs})
        return cls(**fixed, **kwargs).call(y_true, y_pred)
    fn.__name__ = fn.__qualname__ = cls._core_name
    fn.__doc__ = doc
    fn._loss_class = cls
    return fn


mean_squared_error = _function(MeanSquaredError, "Per-sample mean squared error.")
mean_absolute_error = _function(MeanAbsoluteError, "Per-sample mean absolute error.")
huber = _function(Huber, "Per-sample Huber loss (delta=1.0).")
hinge = _function(Hinge, "Per-sample hinge loss.")
kl_divergence = _function(KLDivergence, "Per-sample KL divergence.")
binary_crossentropy = _function(BinaryCrossentropy, "Per-sample binary crossentropy.")
categorical_crossentropy = _function(CategoricalCrossentropy,
                                     "Per-sample categorical crossentropy.")
sparse_categorical_crossentropy = _function(SparseCategoricalCrossentropy,
                                            "Per-sample sparse categorical crossentropy.")
mean_squared_logarithmic_error = _function(MeanSquaredLogarithmicError,
                                           "Per-sample mean squared logarithmic error.")
mean_absolute_percentage_error = _function(MeanAbsolutePercentageError,
                                           "Per-sample mean absolute percentage error.")
log_cosh = _function(LogCosh, "Per-sample log-cosh error.")
poisson = _function(Poisson, "Per-sample Poisson loss.")
squared_hinge = _function(SquaredHinge, "Per-sample squared hinge loss.")
categorical_hinge = _function(CategoricalHinge, "Per-sample categorical hinge loss.")
cosine_similarity = _function(CosineSimilarity, "Per-sample negative cosine similarity.")
dice = _function(Dice, "Dice loss of the batch (axis=None) or of each sample.")
tversky = _function(Tversky, "Tversky loss of the batch (axis=None) or of each sample.")
msle = MSLE = mean_squared_logarithmic_error
mape = MAPE = mean_absolute_percentage_error
logcosh = log_cosh
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
kld = KLD = kl_divergence

_ALIASES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "hinge": Hinge,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "KLD": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "poisson": Poisson,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "cosine_similarity": CosineSimilarity,
    "dice": Dice,
    "tversky": Tversky,
}
_CLASSES = {c.__name__: c for c in (SparseCategoricalCrossentropy, CategoricalCrossentropy,
                                    BinaryCrossentropy, MeanSquaredError, MeanAbsoluteError,
                                    Huber, Hinge, KLDivergence, MeanSquaredLogarithmicError,
                                    MeanAbsolutePercentageError, LogCosh, Poisson,
                                    SquaredHinge, CategoricalHinge, CosineSimilarity, Dice,
                                    Tversky)}


def serialize(loss):
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}


def deserialize(config):
    name = config.get("class_name") if isinstance(config, dict) else config
    if name in _CLASSES:
        return _CLASSES[name].from_config(config.get("config", {}))
    return get(name)


def get(identifier):
    """A Loss from a name ('sparse_categorical_crossentropy', 'mse', 'Huber', ...), a
    loss function of this module, a config dict, or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in _ALIASES:
            return _ALIASES[identifier]()
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    if callable(identifier) and hasattr(identifier, "_loss_class"):
        return identifier._loss_class()
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(_ALIASES)}, or a Loss instance")
