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
    assert ember.config.gemm_kernel() in ("avx512_6x32", "avx2_fma_6x16", "generic")


def test_backend_helpers_match_keras_names():
    from ember import backend, layers
    assert backend.backend() == "ember" and backend.floatx() == "float32"
    assert backend.epsilon() == 1e-7 and backend.image_data_format() == "channels_last"
    layers.Dense(2)
    backend.clear_session()
    assert layers.Dense(2).name == "dense" and layers.Dense(2).name == "dense_1"


def test_timeseries_dataset_from_array_windows():
    data = np.arange(100, dtype=np.float32).reshape(50, 2)
    targets = np.arange(50) * 10
    for kw in (dict(sequence_length=5), dict(sequence_length=4, sequence_stride=3,
                                             sampling_rate=2, start_index=3, end_index=40,
                                             batch_size=7)):
        ds = ember.utils.timeseries_dataset_from_array(data, targets, **kw)
        xs = np.concatenate([ds[i][0] for i in range(len(ds))])
        ys = np.concatenate([ds[i][1] for i in range(len(ds))])
        start, end = kw.get("start_index", 0), kw.get("end_index", 50)
        rate, length = kw.get("sampling_rate", 1), kw["sequence_length"]
        firsts = range(0, end - start - (length - 1) * rate, kw.get("sequence_stride", 1))
        want = np.stack([data[start + p:start + p + length * rate:rate] for p in firsts])
        np.testing.assert_array_equal(xs, want)
        np.testing.assert_array_equal(ys, [targets[start + p] for p in firsts])
        assert all(len(ds[i][0]) <= kw.get("batch_size", 128) for i in range(len(ds)))
    shuffled = ember.utils.timeseries_dataset_from_array(data, None, 5, shuffle=True, seed=1,
                                                         batch_size=None)
    firsts = sorted(int(shuffled[i][0, 0, 0]) // 2 for i in range(len(shuffled)))
    assert firsts == list(range(46))
    # A forecasting model trains on it directly.
    series = np.sin(np.arange(400) / 10).astype(np.float32)[:, None]
    ds = ember.utils.timeseries_dataset_from_array(series[:-8], series[8:, 0], 8, batch_size=32)
    model = ember.Sequential([ember.Input((8, 1)), ember.layers.Flatten(),
                              ember.layers.Dense(1)])
    model.compile("adam", "mse")
    hist = model.fit(ds, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    with pytest.raises(ValueError, match="sequence_length"):
        ember.utils.timeseries_dataset_from_array(data, None, 0)
    with pytest.raises(ValueError, match="same number of time steps"):
        ember.utils.timeseries_dataset_from_array(data, targets[:10], 5)
    with pytest.raises(ValueError, match="shorter than one sequence"):
        ember.utils.timeseries_dataset_from_array(data, None, 60)


def test_normalize_and_split_dataset():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(ember.utils.normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(ember.utils.normalize(x, order=1), [[3 / 7, 4 / 7], [0, 0]])
    a, b = np.arange(10), np.arange(10) * 2
    (la, lb), (ra, rb) = ember.utils.split_dataset((a, b), left_size=0.8)
    assert len(la) == 8 and len(ra) == 2 and np.array_equal(lb, la * 2)
    left, right = ember.utils.split_dataset(a, right_size=3, shuffle=True, seed=0)
    assert len(left) == 7 and sorted(np.r_[left, right]) == list(range(10))
    with pytest.raises(ValueError, match="left_size"):
        ember.utils.split_dataset(a, left_size=1.5)
