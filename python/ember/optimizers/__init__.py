"""Optimizers with Keras's names, defaults and update rules (clipping, weight decay and
learning-rate schedules included). The update is one fused C++ pass over all
parameters; these classes hold the hyperparameters."""
import math
import numbers
import re
import warnings

import numpy as np

from .. import _core
from . import schedules
from .schedules import LearningRateSchedule


def _number(value, name, low=None, high=None, low_open=False, high_open=False):
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real) or \
        not math.isfinite(value)
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value >= high if high_open else value > high
    if bad:
        rng = ""
        if low is not None or high is not None:
            rng = (f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                   if high is not None else f" {'>' if low_open else '>='} {low}")
        raise ValueError(f"`{name}` must be a number{rng}. Received: {name}={value!r}")
    return float(value)


def _check_lr(lr):
    if isinstance(lr, LearningRateSchedule) or (callable(lr) and not isinstance(lr, numbers.Real)):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr >= 0 or \
            not math.isfinite(lr):
        raise ValueError(f"learning_rate must be a non-negative number or a "
                         f"LearningRateSchedule. Received: learning_rate={lr!r}")
    return float(lr)


def _scalar_variable(value, owner, attr, kind=float):
    """An optimizer scalar that is a number (float or int) and, like Keras's variables,
    has `.numpy()`, `.value` and `.assign()` (which sets the optimizer's attribute)."""
    obj = (_FloatVar if kind is float else _IntVar)(value)
    obj._owner, obj._attr = owner, attr
    return obj


class _VarMixin:
    def numpy(self):
        return np.float32(self) if isinstance(self, float) else np.int64(self)

    @property
    def value(self):
        return self.numpy()

    def assign(self, value):
        setattr(self._owner, self._attr, value)
        return getattr(self._owner, self._attr)

    def __repr__(self):
        return f"<Variable path={self._attr}, value={self.numpy()!r}>"


class _FloatVar(_VarMixin, float):
    pass


class _IntVar(_VarMixin, int):
    pass


class Optimizer:
    """Base class with Keras's shared options.

    Args:
        learning_rate: a float, a `LearningRateSchedule` (called with `iterations`), or
            a callable taking no arguments.
        weight_decay: decoupled decay applied before each update: w -= w * wd * lr.
        clipnorm: clip each variable's gradient to this L2 norm.
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: clip all gradients together to this global L2 norm.
            At most one of the three clipping options can be set.
    """

    _kind = None

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if loss_scale_factor is not None:
            raise ValueError(f"ember trains in float32 and takes no `loss_scale_factor`. "
                             f"Received: loss_scale_factor={loss_scale_factor!r}")
        steps = gradient_accumulation_steps
        if steps is not None and (isinstance(steps, bool) or
                                  not isinstance(steps, numbers.Integral) or steps < 2):
            raise ValueError(f"`gradient_accumulation_steps` must be an integer >= 2. "
                             f"Received: gradient_accumulation_steps={steps!r}")
        every = ema_overwrite_frequency
        if every is not None and (isinstance(every, bool) or
                                  not isinstance(every, numbers.Integral) or every < 1):
            raise ValueError(f"`ema_overwrite_frequency` must be an integer >= 1 or None. "
                             f"Received: ema_overwrite_frequency={every!r}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                             f"be set. Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        for k, v in (("weight_decay", weight_decay), ("clipnorm", clipnorm),
                     ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None:
                _number(v, k, 0)
        self._learning_rate = _check_lr(learning_rate)
        self.name = name or type(self).__name__.lower()
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.use_ema = bool(use_ema)
        self.ema_momentum = _number(ema_momentum, "ema_momentum", 0, 1)
        self.ema_overwrite_frequency = None if every is None else int(every)
        self.gradient_accumulation_steps = None if steps is None else int(steps)
        self._core = None
        self._iterations = 0
        self._exclude_names = None
        self._exclude_vars = set()

    # -- learning rate ---------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate for the next update (a schedule is evaluated at
        `iterations`): a float that also reads and writes like Keras's variable
        (`.numpy()`, `.assign(value)`)."""
        return _scalar_variable(self._current_learning_rate(), self, "learning_rate")

    def _current_learning_rate(self):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):  # Keras: at the calls made, not updates
            lr = lr(self._calls())
        elif callable(lr):
            lr = lr()
        lr = float(lr)
        if not lr >= 0 or not math.isfinite(lr):
            raise ValueError(f"The learning rate must be a non-negative number. Received: "
                             f"learning_rate={lr!r}")
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(self._learning_rate, LearningRateSchedule) and \
                not isinstance(value, LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object "
                            "as its `learning_rate` constructor argument, hence its learning "
                            "rate is not settable. If you need the learning rate to be "
                            "settable, you should instantiate the optimizer with a float "
                            "`learning_rate` argument.")
        self._learning_rate = _check_lr(value)

    lr = learning_rate

    @property
    def iterations(self):
        """Number of updates applied so far (an int with Keras's `.numpy()`); with
        gradient accumulation, the calls over the accumulation steps."""
        return _scalar_variable(self._calls() // (self.gradient_accumulation_steps or 1),
                                self, "iterations", int)

    @iterations.setter
    def iterations(self, value):
        self._set_calls(int(value) * (self.gradient_accumulation_steps or 1))

    def _calls(self):
        """The calls made (Keras's `_iterations`, the count its files hold)."""
        return self._core.iterations if self._core is not None else self._iterations

    def _set_calls(self, n):
        if self._core is not None:
            self._core.iterations = n
        self._iterations = n

    # -- weight decay ---------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Leaves variables out of weight decay: those in var_list, and those whose
        name contains any string of var_names (e.g. ['bias'])."""
        if self._core is not None:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before "
                             "the optimizer is built.")
        self._exclude_vars = set(id(v) for v in (var_list or []))
        self._exclude_names = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if id(variable) in self._exclude_vars:
            return False
        return not (self._exclude_names is not None and self._exclude_names.search(variable.name))

    # -- engine -------------------------------------------------------------------------
    def _ensure_core(self):
        if self._core is None:
            self._core = _core.Optimizer(
                self._kind, weight_decay=self.weight_decay or 0.0,
                clipnorm=self.clipnorm or 0.0, clipvalue=self.clipvalue or 0.0,
                global_clipnorm=self.global_clipnorm or 0.0,
                accumulation_steps=self.gradient_accumulation_steps or 0,
                use_ema=self.use_ema, ema_momentum=self.ema_momentum,
                ema_overwrite_frequency=self.ema_overwrite_frequency or 0,
                **self._core_args())
            self._core.iterations = self._iterations
        return self._core

    def _attach(self, graph):
        """Hands the graph this optimizer's core (its slots are keyed by variable, so
        every model compiled with this optimizer shares them, as in Keras)."""
        graph.set_optimizer(self._ensure_core())

    # -- custom training steps ------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """One update from (gradient, variable) pairs, as tf.GradientTape code writes it:
        `optimizer.apply_gradients(zip(grads, model.trainable_weights))`."""
        pairs = list(grads_and_vars)
        for p in pairs:
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ValueError(f"apply_gradients takes (gradient, variable) pairs. "
                                 f"Received: {p!r:.80}")
        return self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads, trainable_variables=None):
        """One update of trainable_variables by grads (Keras 3's `apply`). A None
        gradient (a variable the loss does not reach) leaves its variable unchanged."""
        from ..layers.base import Variable
        from ..tape import value_of
        from .. import step_trace
        grads = list(grads)
        if step_trace.active() is not None and trainable_variables is not None:
            return step_trace.apply_gradients(self, grads, list(trainable_variables))
        if trainable_variables is None:
            raise ValueError("apply() needs the variables the gradients belong to: "
                             "optimizer.apply(grads, model.trainable_weights)")
        variables = list(trainable_variables)
        if len(grads) != len(variables):
            raise ValueError(f"apply() received {len(grads)} gradients for {len(variables)} "
                             f"variables")
        keep_v, keep_g = [], []
        for g, v in zip(grads, variables):
            if not isinstance(v, Variable):
                raise ValueError(f"apply() updates ember Variables. Received: "
                                 f"{type(v).__name__}")
            if g is None:
                continue
            a = np.ascontiguousarray(value_of(g), dtype=np.float32)
            if a.shape != v.shape:
                raise ValueError(f"The gradient for '{v.path}' has shape {a.shape}; the "
                                 f"variable has shape {v.shape}")
            keep_v.append(v)
            keep_g.append(a)
        if not keep_v:
            return
        lr = self._current_learning_rate()
        self._ensure_core().apply_dense([v._storage for v in keep_v], keep_g,
                                        [self._use_weight_decay(v) for v in keep_v], lr)
        for v in keep_v:  # Keras: constraints after the update
            if getattr(v, "constraint", None) is not None:
                v.assign(v.constraint(v.value))

    # -- state, in Keras's layout ---------------------------------------------------------
    # Keras's optimizer variables: the iteration count, the learning rate (unless it is a
    # schedule or a callable), then per trainable variable the slots. Slots Keras creates
    # in one call are interleaved per variable (Adam: m0, v0, m1, v1, ...); separate
    # calls follow one another (Adam's velocity_hat block after them). The moving
    # averages (use_ema) and the gradient accumulators come first, each a block of their
    # own. _slot_blocks gives ember's slot indices in that layout.
    def _slot_blocks(self):
        core = self._ensure_core()
        extra = [(k,) for k in (core.ema_slot, core.accumulator_slot) if k >= 0]
        return extra + self._rule_slot_blocks()

    def _rule_slot_blocks(self):
        return [(0,)] if self._ensure_core().rule_slots else []

    def _finalize(self, variables):
        """Keras's finalize_variable_values, at the end of fit: with use_ema the
        variables take their moving averages."""
        if not self.use_ema or self._core is None:
            return
        for v in variables:
            slots = self._core.slots(v._storage)
            if slots:
                v.assign(np.array(slots[self._core.ema_slot]))

    def _has_lr_variable(self):
        return not callable(self._learning_rate)

    _extra_count = 0  # scalars Keras keeps after the slots

    def _extra_state(self):
        """Those scalars' values (Nadam's momentum product)."""
        return []

    def _state_built(self):
        """Whether Keras would have built its slot variables (after the first update)."""
        return self._core is not None and self._core.iterations > 0

    def _base_state(self):
        out = [np.array(self._calls(), dtype=np.int32)]
        if self._has_lr_variable():
            out.append(np.array(self._current_learning_rate(), dtype=np.float32))
        return out

    def _keras_state(self, variables):
        """The optimizer's variables in Keras's order for the trainable `variables`."""
        out = self._base_state()
        if not self._state_built():
            return out
        core = self._ensure_core()
        slots = [core.slots(v._storage, True) for v in variables]
        for block in self._slot_blocks():
            for s, v in zip(slots, variables):
                out.extend(np.array(s[k]).reshape(v.shape) for k in block)
        return out + self._extra_state()

    def _load_keras_state(self, arrays, variables, where):
        """Sets the iteration count, the learning rate and (when the file holds them)
        the slots from Keras's layout. Every array is checked before anything changes;
        a count that matches neither layout is skipped with a warning, as Keras does.
        Returns the assignments to make (a callable), so a caller can check everything
        first."""
        base = self._base_state()
        full = len(base) + sum(len(b) for b in self._slot_blocks()) * len(variables) + \
            self._extra_count
        if len(arrays) not in (len(base), full):
            warnings.warn(f"{where}: skipping the optimizer's state: optimizer "
                          f"'{self.name}' has {full} variables for this model, the file "
                          f"holds {len(arrays)}", stacklevel=4)
            return lambda: None
        expected = [()] * len(base)
        if len(arrays) == full:
            expected += [tuple(v.shape) for b in self._slot_blocks() for v in variables
                         for _ in b] + [()] * self._extra_count
        arrays = [np.asarray(a) for a in arrays]
        for i, (a, shape) in enumerate(zip(arrays, expected)):
            if a.shape != shape or a.dtype.kind not in "fiu" or \
                    (a.dtype.kind == "f" and not np.all(np.isfinite(a))):
                raise ValueError(f"{where}: optimizer variable {i} has shape {a.shape} and "
                                 f"dtype {a.dtype}; expected shape {shape} of finite numbers")
        if arrays[0].dtype.kind not in "iu" or int(arrays[0]) < 0:
            raise ValueError(f"{where}: the optimizer's iteration count must be a "
                             f"non-negative integer. Received: {arrays[0]!r}")

        def assign():
            self._set_calls(int(arrays[0]))
            if self._has_lr_variable():
                self._learning_rate = _check_lr(float(arrays[1]))
            if len(arrays) == len(base):
                return
            core = self._ensure_core()
            it = iter(arrays[len(base):])
            slots = [core.slots(v._storage, True) for v in variables]
            for block in self._slot_blocks():
                for s in slots:
                    for k in block:
                        np.copyto(s[k], next(it).reshape(s[k].shape), casting="unsafe")
        return assign

    def _core_args(self):
        return {}

    # -- config -------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "use_ema": self.use_ema,
                "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": None,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Keras 2 (TensorFlow) wrote these; they mean nothing to an ember optimizer.
        config.pop("is_legacy_optimizer", None)
        config.pop("jit_compile", None)
        if not config.get("decay"):
            config.pop("decay", None)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = schedules.deserialize(lr)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, learning_rate={self._learning_rate}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's rule:
    m = momentum * m - lr * g; w += m (or w += momentum * m - lr * g with nesterov)."""

    _kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.momentum = _number(momentum, "momentum", 0, 1)
        self.nesterov = bool(nesterov)

    def _core_args(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def get_config(self):
        c = super().get_config()
        c.update(momentum=self.momentum, nesterov=self.nesterov)
        return c


class Adam(Optimizer):
    """Adam with Keras's rule (epsilon added to sqrt(v), bias correction folded into
    the step size); amsgrad keeps the running maximum of v."""

    _kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.beta_1 = _number(beta_1, "beta_1", 0, 1, high_open=True)
        self.beta_2 = _number(beta_2, "beta_2", 0, 1, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", 0, low_open=True)
        self.amsgrad = bool(amsgrad)

    def _core_args(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}

    def _rule_slot_blocks(self):
        return [(0, 1), (2,)] if self.amsgrad else [(0, 1)]

    def get_config(self):
        c = super().get_config()
        c.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                 amsgrad=self.amsgrad)
        return c


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras: weight_decay defaults to 0.004 and is
    applied as w -= w * weight_decay * lr before the Adam step)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name="adamw", **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: "
                             "weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name=name,
                         weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """RMSprop with Keras's rule (epsilon inside the square root):
    v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + epsilon) (through momentum if set;
    centered subtracts the squared running mean of g from v)."""

    _kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, name="rmsprop", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.rho = _number(rho, "rho", 0, 1, high_open=True)
        self.momentum = _number(momentum, "momentum", 0, 1)
        self.epsilon = _number(epsilon, "epsilon", 0, low_open=True)
        self.centered = bool(centered)

    def _core_args(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

    def _rule_slot_blocks(self):
        return [(k,) for k in range(self._ensure_core().num_slots)]

    def get_config(self):
        c = super().get_config()
        c.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                 centered=self.centered)
        return c


class Adagrad(Optimizer):
    """Adagrad with Keras's rule: acc += g^2; w -= lr g / sqrt(acc + epsilon), the
    accumulator starting at initial_accumulator_value."""

    _kind = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name="adagrad", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = _number(initial_accumulator_value,
                                                 "initial_accumulator_value", 0)
        self.epsilon = _number(epsilon, "epsilon", 0, low_open=True)

    def _core_args(self):
        return {"initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def get_config(self):
        c = super().get_config()
        c.update(initial_accumulator_value=self.initial_accumulator_value,
                 epsilon=self.epsilon)
        return c


class _Betas(Optimizer):
    """The arguments Adamax and Nadam share with Adam."""

    def __init__(self, learning_rate, beta_1, beta_2, epsilon, name, **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.beta_1 = _number(beta_1, "beta_1", 0, 1, high_open=True)
        self.beta_2 = _number(beta_2, "beta_2", 0, 1, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", 0, low_open=True)

    def _core_args(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def _rule_slot_blocks(self):
        return [(0, 1)]

    def get_config(self):
        c = super().get_config()
        c.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return c


class Adamax(_Betas):
    """Adamax (Adam with the infinity norm), Keras's rule: m += (g - m)(1 - beta_1);
    u = max(beta_2 u, |g|); w -= lr m / ((1 - beta_1^t)(u + epsilon))."""

    _kind = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name="adamax", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name=name, **kwargs)


class Nadam(_Betas):
    """Nadam (Adam with Nesterov momentum), Keras's rule, with its momentum schedule
    mu_t = beta_1 (1 - 0.5 * 0.96^t) (Keras 3; Keras 2 scaled t by 0.004)."""

    _kind = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name="nadam", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, name=name, **kwargs)

    _extra_count = 1

    def _extra_state(self):
        # Keras's u_product (ember recomputes it from the iteration count on loading).
        t = np.arange(1, int(self.iterations) + 1, dtype=np.float32)
        mu = np.float32(self.beta_1) * (1 - np.float32(0.5) * np.float32(0.96) ** t)
        return [np.prod(mu, dtype=np.float32).reshape(())]


class Lion(Optimizer):
    """Lion, Keras's rule: w -= lr sign(beta_1 m + (1 - beta_1) g); then
    m = beta_2 m + (1 - beta_2) g."""

    _kind = "lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, name="lion", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.beta_1 = _number(beta_1, "beta_1", 0, 1, low_open=True)
        self.beta_2 = _number(beta_2, "beta_2", 0, 1, high_open=True)

    def _core_args(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2}

    def get_config(self):
        c = super().get_config()
        c.update(beta_1=self.beta_1, beta_2=self.beta_2)
        return c


class Adadelta(Optimizer):
    """Adadelta, Keras's rule: A = rho A + (1 - rho) g^2;
    d = -sqrt(D + epsilon) g / sqrt(A + epsilon); D = rho D + (1 - rho) d^2; w += lr d."""

    _kind = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, name="adadelta",
                 **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        self.rho = _number(rho, "rho", 0, 1, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", 0, low_open=True)

    def _core_args(self):
        return {"rho": self.rho, "epsilon": self.epsilon}

    def _rule_slot_blocks(self):
        return [(0, 1)]

    def get_config(self):
        c = super().get_config()
        c.update(rho=self.rho, epsilon=self.epsilon)
        return c


class Ftrl(Optimizer):
    """FTRL-Proximal, Keras's rule: n' = n + g^2;
    z += g + 2 l2_shrinkage w - (n'^-p - n^-p) / lr * w;
    w = (clip(z, -l1, l1) - z) / (n'^-p / lr + 2 (l2 + beta / (2 lr))), p = learning_rate_power."""

    _kind = "ftrl"

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, name="ftrl", **kwargs):
        super().__init__(learning_rate, name=name, **kwargs)
        if not isinstance(learning_rate_power, numbers.Real) or learning_rate_power > 0:
            raise ValueError(f"`learning_rate_power` needs to be negative or zero. Received: "
                             f"learning_rate_power={learning_rate_power!r}")
        self.learning_rate_power = float(learning_rate_power)
        self.initial_accumulator_value = _number(initial_accumulator_value,
                                                 "initial_accumulator_value", 0)
        self.l1_regularization_strength = _number(l1_regularization_strength,
                                                  "l1_regularization_strength", 0)
        self.l2_regularization_strength = _number(l2_regularization_strength,
                                                  "l2_regularization_strength", 0)
        self.l2_shrinkage_regularization_strength = _number(
            l2_shrinkage_regularization_strength, "l2_shrinkage_regularization_strength", 0)
        self.beta = _number(beta, "beta", 0)

    def _core_args(self):
        return {"lr_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1": self.l1_regularization_strength, "l2": self.l2_regularization_strength,
                "l2_shrinkage": self.l2_shrinkage_regularization_strength,
                "ftrl_beta": self.beta}

    def _rule_slot_blocks(self):
        return [(0, 1)]

    def get_config(self):
        c = super().get_config()
        c.update(learning_rate_power=self.learning_rate_power,
                 initial_accumulator_value=self.initial_accumulator_value,
                 l1_regularization_strength=self.l1_regularization_strength,
                 l2_regularization_strength=self.l2_regularization_strength,
                 l2_shrinkage_regularization_strength=self.l2_shrinkage_regularization_strength,
                 beta=self.beta)
        return c


_ALIASES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "adamax": Adamax, "nadam": Nadam, "lion": Lion, "adadelta": Adadelta, "ftrl": Ftrl}


def serialize(optimizer):
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config):
    name = config.get("class_name", "")
    if name.lower() not in _ALIASES:
        raise ValueError(f"Could not interpret optimizer identifier: {name!r}")
    return _ALIASES[name.lower()].from_config(config.get("config", {}))


def get(identifier):
    """An optimizer from a name ('adam', 'sgd'), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in _ALIASES:
        return _ALIASES[identifier.lower()]()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(_ALIASES)}, or an Optimizer instance")
