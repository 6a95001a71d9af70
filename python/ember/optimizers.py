"""Optimizers with Keras's names, defaults and update rules. The update itself is one
fused C++ pass over all parameters; these classes hold hyperparameters."""
import numbers


def _check_lr(lr):
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr >= 0:
        raise ValueError(f"learning_rate must be a non-negative number. Received: "
                         f"learning_rate={lr!r}")
    return float(lr)


class Optimizer:
    """Base class. `learning_rate` can be read and set at any time (callbacks do)."""

    _kind = None

    def __init__(self, learning_rate, name=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                            f"{kwargs}")
        self._lr = _check_lr(learning_rate)
        self.name = name or type(self).__name__.lower()
        self._graph = None
        self._iterations = 0

    @property
    def learning_rate(self):
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = _check_lr(value)

    @property
    def iterations(self):
        """Number of updates applied so far."""
        return self._graph.iterations if self._graph is not None else self._iterations

    def _attach(self, graph):
        graph.set_optimizer(self._kind, **self._core_args())
        self._graph = graph

    def _core_args(self):
        return {}

    def get_config(self):
        return {"name": self.name, "learning_rate": self._lr}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's rule:
    m = momentum * m - lr * g; w += m (or w += momentum * m - lr * g with nesterov)."""

    _kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: "
                             f"momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _core_args(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def get_config(self):
        c = super().get_config()
        c.update(momentum=self.momentum, nesterov=self.nesterov)
        return c


class Adam(Optimizer):
    """Adam with Keras's rule (epsilon added to sqrt(v), bias correction folded into
    the step size)."""

    _kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        for k, v in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= v < 1:
                raise ValueError(f"`{k}` must be in [0, 1). Received: {k}={v!r}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon!r}")
        if amsgrad:
            raise ValueError("ember's Adam does not implement amsgrad. Received: amsgrad=True")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _core_args(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def get_config(self):
        c = super().get_config()
        c.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, amsgrad=False)
        return c


class RMSprop(Optimizer):
    """RMSprop with Keras's rule (epsilon inside the square root):
    v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + epsilon) (through momentum if set)."""

    _kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, name="rmsprop", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        if not 0 <= rho < 1:
            raise ValueError(f"`rho` must be in [0, 1). Received: rho={rho!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum!r}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon!r}")
        if centered:
            raise ValueError("ember's RMSprop does not implement centered=True yet")
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)

    def _core_args(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon}

    def get_config(self):
        c = super().get_config()
        c.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=False)
        return c


_ALIASES = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get(identifier):
    """An optimizer from a name ('adam', 'sgd') or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALIASES:
        return _ALIASES[identifier.lower()]()
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(_ALIASES)}, or an Optimizer instance")
