"""Random tensors from ember's counter-based generator (Philox): the same seed gives
the same values on any machine and thread count.

    seed = ember.random.SeedGenerator(1337)
    noise = ember.random.normal((batch, 128), seed=seed)   # a new draw each call

An integer seed gives the same values at every call, as in Keras; a SeedGenerator
advances with each draw; no seed draws from ember's global seed
(ember.utils.set_random_seed). Inside a custom layer's call a shape whose batch axis is
None (`(ops.shape(x)[0], dim)`) makes the model's graph draw new values for every
sample at each call (Keras's VAE sampling layer).
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


def _symbolic_shape(shape):
    """The per-sample shape of a draw inside a model (a shape whose first entry is the
    batch, None: `(ops.shape(x)[0], 16)`), or None for an eager draw."""
    if not isinstance(shape, (tuple, list)) or not shape or shape[0] is not None:
        return None
    sample = tuple(int(d) for d in shape[1:])
    if not sample or any(d <= 0 for d in sample):
        raise ValueError(f"A random tensor inside a model needs positive axes after the batch "
                         f"axis. Received: shape={tuple(shape)}")
    return sample


def _draw_in_model(kind, sample, a, b, seed):
    """A tensor of fresh values each call (a SeedGenerator or none) or the same ones (an
    integer seed), drawn by the model's C++ graph for every sample."""
    from .ops import _symbolic
    s, stream = _key(seed)
    advance = seed is None or isinstance(seed, SeedGenerator)
    stream = stream << 32  # a forward's calls count in the low bits
    return _symbolic(kind, [], sample,
                     lambda g, v: g.add_random(list(sample), kind == "normal", float(a),
                                               float(b), s, stream, advance))


def _traced_draw(kind, shape, a, b, seed):
    """A draw inside a traced train_step: the whole array is one sample of the step's
    graph, drawn anew at each step (the same values each step with an integer seed)."""
    from .step_trace import StepTensor
    shape = _shape(shape)
    return StepTensor(_draw_in_model(kind, shape or (1,), a, b, seed), scalar=not shape)


def _tracing():
    from .step_trace import active
    return active() is not None


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal values; inside a model (a shape with the batch first, as None) the graph
    draws them at each call."""
    sample = _symbolic_shape(shape)
    if sample is not None:
        return _draw_in_model("normal", sample, mean, stddev, seed)
    if _tracing():
        return _traced_draw("normal", shape, mean, stddev, seed)
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_normal(out, float(mean), float(stddev), s, stream, False)
    return out


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    if _tracing():
        from .step_trace import TraceUnsupported
        raise TraceUnsupported("truncated_normal draws")
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_normal(out, float(mean), float(stddev), s, stream, True)
    return out


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Uniform values in [minval, maxval); inside a model as `normal`."""
    if not maxval > minval:
        raise ValueError(f"uniform: maxval must exceed minval. Received: {minval}, {maxval}")
    sample = _symbolic_shape(shape)
    if sample is not None:
        return _draw_in_model("uniform", sample, minval, maxval, seed)
    if _tracing():
        return _traced_draw("uniform", shape, minval, maxval, seed)
    out = np.empty(_shape(shape), np.float32)
    s, stream = _key(seed)
    _core.fill_uniform(out, float(minval), float(maxval), s, stream)
    return out
