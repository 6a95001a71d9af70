"""ember.utils and ember.config."""
import numpy as np
import pytest

import ember
from ember.utils import to_categorical


def test_to_categorical():
    out = to_categorical([0, 2, 1], 3)
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1]])
    assert out.dtype == np.float32
    assert to_categorical(np.array([[1], [0]])).shape == (2, 2)
    assert to_categorical(np.array([[0, 1], [2, 3]])).shape == (2, 2, 4)
    with pytest.raises(ValueError, match="out of range"):
        to_categorical([0, 5], 3)
    with pytest.raises(ValueError, match="non-negative"):
        to_categorical([-1, 0])


def test_set_random_seed_controls_initializers():
    ember.set_random_seed(3)
    a = ember.layers.Dense(4)
    m1 = ember.Sequential([ember.layers.Input((5,)), a])
    ember.set_random_seed(3)
    m2 = ember.Sequential([ember.layers.Input((5,)), ember.layers.Dense(4)])
    np.testing.assert_array_equal(m1.get_weights()[0], m2.get_weights()[0])
    ember.set_random_seed(4)
    m3 = ember.Sequential([ember.layers.Input((5,)), ember.layers.Dense(4)])
    assert not np.array_equal(m1.get_weights()[0], m3.get_weights()[0])
    with pytest.raises(ValueError, match="seed=-1"):
        ember.set_random_seed(-1)


def test_glorot_uniform_limits():
    w = ember.initializers.GlorotUniform(seed=1)((300, 200))
    lim = np.sqrt(6 / 500)
    assert w.min() >= -lim and w.max() <= lim and abs(w.mean()) < 0.01
    assert np.std(w) == pytest.approx(lim / np.sqrt(3), rel=0.05)


def test_threads_config():
    n = ember.config.get_num_threads()
    ember.config.set_num_threads(1)
    assert ember.config.get_num_threads() == 1
    ember.config.set_num_threads(n)
    with pytest.raises(ValueError, match="n=0"):
        ember.config.set_num_threads(0)
    assert ember.config.gemm_kernel() in ("avx2_fma_6x16", "generic")


def test_backend_helpers_match_keras_names():
    from ember import backend, layers
    assert backend.backend() == "ember" and backend.floatx() == "float32"
    assert backend.epsilon() == 1e-7 and backend.image_data_format() == "channels_last"
    layers.Dense(2)
    backend.clear_session()
    assert layers.Dense(2).name == "dense" and layers.Dense(2).name == "dense_1"
