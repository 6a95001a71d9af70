"""Seed bookkeeping. Every random draw (initializers, dropout masks, shuffling) takes
its seed from here, so ember.utils.set_random_seed makes a run reproducible."""
import os
import random as _pyrandom

import numpy as np

_state = {"seed": int.from_bytes(os.urandom(8), "little"), "counter": 0}


def set_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The seed must be a non-negative integer. Received: seed={seed!r}")
    seed = int(seed)
    _state["seed"] = seed
    _state["counter"] = 0
    # As Keras does, seed Python's and NumPy's global generators too.
    _pyrandom.seed(seed)
    np.random.seed(seed % (2**32))


def next_seed():
    """A fresh 64-bit seed, a pure function of the global seed and a draw counter."""
    _state["counter"] += 1
    ss = np.random.SeedSequence([_state["seed"] % (2**64), _state["counter"]])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def resolve(seed):
    """The seed a layer or initializer uses: its own, or the next global one."""
    if seed is None:
        return next_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None. Received: seed={seed!r}")
    return int(seed)


def numpy_generator():
    return np.random.default_rng(next_seed())
