"""Random tensors from ember's counter-based generator (Philox): the same seed gives
the same values on any machine and thread count.

    seed = ember.random.SeedGenerator(1337)
    noise = ember.random.normal((batch, 128), seed=seed)   # a new draw each call

An integer seed gives the same values at every call, as in Keras; a SeedGenerator
advances with each draw; no seed draws from ember's global seed
(ember.utils.set_random_seed).
"""
import numpy as np

from . import _core, _random

__all__ = ["SeedGenerator", "normal", "truncated_normal", "uniform"]


class SeedGenerator:
    """A seed that advances with each draw."""

    def __init__(self, seed=None, name=None, **kwargs):
        self._seed = _random.resolve(seed)
        self._draws = 0
        self.name = name or "seed_generator"

    def next(self):
        self._draws += 1
        return self._seed, self._draws


def _key(seed):
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if seed is None:
        return _random.next_seed(), 0
    return _random.resolve(seed), 0


def _shape(shape):
    from .tape import value_of
    shape = tuple(int(d) for d in np.asarray(value_of(shape)).reshape(-1)) \
        if not isinstance(shape, (int, np.integer)) else (int(shape),)
    if any(d < 0 for d in shape):
        raise ValueError(f"A random tensor's shape must be non-negative. Received: {shape}")
    return shape


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_normal(out, float(mean), float(stddev), s, stream, False)
    return out


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_normal(out, float(mean), float(stddev), s, stream, True)
    return out


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    if not maxval > minval:
        raise ValueError(f"uniform: maxval must exceed minval. Received: {minval}, {maxval}")
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_uniform(out, float(minval), float(maxval), s, stream)
    return out
