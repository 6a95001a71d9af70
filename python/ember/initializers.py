"""Weight initializers with Keras's names and defaults. Values come from the core's
counter-based generator, so they depend only on the seed."""
import math

import numpy as np

from . import _core, _random


def _fans(shape):
    # Keras: dense (in, out); conv (kh, kw, ..., in, out) -> fan = receptive * channels.
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: `init(shape)` returns a float32 array; `fill(out)` writes in place."""

    def __call__(self, shape, dtype=None):
        out = np.empty(tuple(shape), dtype=np.float32)
        self.fill(out)
        return out

    def fill(self, out):
        raise TypeError(f"{type(self).__name__} must define fill(out)")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("input_axes", "output_axes"):  # Keras 3.12+: custom fan axes
            if config.get(key) is not None:
                raise ValueError(f"{cls.__name__}: ember cannot honour {key}="
                                 f"{config[key]!r} (it computes fans from the last two axes)")
            config.pop(key, None)
        return cls(**config)


class Zeros(Initializer):
    def fill(self, out):
        out[...] = 0.0


class Ones(Initializer):
    def fill(self, out):
        out[...] = 1.0


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def fill(self, out):
        out[...] = self.value

    def get_config(self):
        return {"value": self.value}


class Identity(Initializer):
    """gain * I for a 2-D weight (Keras's Identity; rectangular shapes get the leading
    diagonal)."""

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def fill(self, out):
        if out.ndim != 2:
            raise ValueError(f"Identity initializer can only be used for 2D matrices. "
                             f"Received: shape={out.shape} of rank {out.ndim}.")
        out[...] = self.gain * np.eye(*out.shape, dtype=np.float32)

    def get_config(self):
        return {"gain": self.gain}


class _Seeded(Initializer):
    def __init__(self, seed=None):
        self.seed = seed if seed is None else _random.resolve(seed)

    def _seed(self):
        # A fixed seed gives the same values each call, as Keras's seeded initializers.
        return self.seed if self.seed is not None else _random.next_seed()

    def get_config(self):
        return {"seed": self.seed}


class RandomUniform(_Seeded):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def fill(self, out):
        _core.fill_uniform(out, self.minval, self.maxval, self._seed())

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(_Seeded):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def fill(self, out):
        _core.fill_normal(out, self.mean, self.stddev, self._seed())

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def fill(self, out):
        _core.fill_normal(out, self.mean, self.stddev, self._seed(), truncated=True)


class VarianceScaling(_Seeded):
    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0:
            raise ValueError(f"scale must be positive. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid mode: {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"Invalid distribution: {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def fill(self, out):
        fan_in, fan_out = _fans(out.shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            lim = math.sqrt(3.0 * var)
            _core.fill_uniform(out, -lim, lim, self._seed())
        elif self.distribution == "truncated_normal":
            # stddev of a unit normal truncated at +-2
            _core.fill_normal(out, 0.0, math.sqrt(var) / 0.87962566103423978, self._seed(),
                              truncated=True)
        else:
            _core.fill_normal(out, 0.0, math.sqrt(var), self._seed())

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class GlorotUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)

    def get_config(self):
        return {"seed": self.seed}


class HeUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)

    def get_config(self):
        return {"seed": self.seed}


class HeNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)

    def get_config(self):
        return {"seed": self.seed}


class Orthogonal(_Seeded):
    """A random orthogonal matrix (Saxe et al. 2014), Keras's recipe: the Q of a QR
    decomposition of a normal matrix over the last axis against the others, signs
    fixed by R's diagonal, times `gain`."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def fill(self, out):
        if out.ndim < 2:
            raise ValueError(f"The Orthogonal initializer needs a shape of rank >= 2. "
                             f"Received: shape={out.shape}")
        rows, cols = int(np.prod(out.shape[:-1])), out.shape[-1]
        a = np.empty((max(rows, cols), min(rows, cols)), dtype=np.float32)
        _core.fill_normal(a, 0.0, 1.0, self._seed())
        q, r = np.linalg.qr(a.astype(np.float64))
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        out[...] = (self.gain * q).reshape(out.shape)

    def get_config(self):
        return {"seed": self.seed, "gain": self.gain}


_ALIASES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "identity": Identity,
    "random_uniform": RandomUniform, "uniform": RandomUniform,
    "random_normal": RandomNormal, "normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal, "orthogonal": Orthogonal,
}


def get(identifier):
    """An Initializer from a name, a class, an instance or a Keras config dict."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str):
        key = identifier if identifier in _ALIASES else _snake(identifier)
        if key in _ALIASES:
            return _ALIASES[key]()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _ALIASES.get(_snake(identifier["class_name"]))
        if cls:
            return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"Unknown initializer: {identifier!r}. Expected one of {', '.join(_ALIASES)}")


def serialize(init):
    return {"module": "keras.initializers", "class_name": type(init).__name__,
            "config": init.get_config(), "registered_name": None}


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
