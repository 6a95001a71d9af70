"""The inputs users pass and the ways they run ember: DataFrames, lists, int and float64
arrays, non-contiguous views, and two models trained from two Python threads at once.
Each gives the same result as the float32 array it stands for."""
import threading

import numpy as np
import pytest

import ember
from ember import layers


def data(n=64, d=6, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def trained(x, y, seed=3, epochs=2):
    ember.set_random_seed(seed)
    m = ember.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                          layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return m, h


def same_as_float32(x, y, reference_x, reference_y):
    m, h = trained(x, y)
    ref, href = trained(reference_x, reference_y)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h.history == href.history
    np.testing.assert_array_equal(m.predict(x, verbose=0),
                                  ref.predict(reference_x, verbose=0))
    assert m.evaluate(x, y, verbose=0) == ref.evaluate(reference_x, reference_y, verbose=0)


X, Y = data()
X32 = X.astype(np.float32)


def test_float64_and_int_arrays_train_as_float32():
    same_as_float32(X, Y, X32, Y)  # float64 x, int64 y
    xi = np.round(X * 3).astype(np.int64)
    same_as_float32(xi, Y.astype(np.int32), xi.astype(np.float32), Y)
    same_as_float32(xi.astype(np.int8), Y.astype(np.uint8), xi.astype(np.float32), Y)


def test_python_lists():
    same_as_float32(X32.tolist(), Y.tolist(), X32, Y)


def test_non_contiguous_views():
    wide = np.zeros((64, 12), dtype=np.float32)
    wide[:, ::2] = X32
    assert not wide[:, ::2].flags.c_contiguous
    same_as_float32(wide[:, ::2], Y, X32, Y)
    fortran = np.asfortranarray(X32)
    same_as_float32(fortran, Y, X32, Y)


def test_pandas_dataframe_and_series():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X32, columns=[f"f{i}" for i in range(6)])
    same_as_float32(df, pd.Series(Y, name="label"), X32, Y)
    # A frame of mixed int and float columns, as read from a CSV.
    mixed = df.assign(f0=np.round(df["f0"] * 4).astype(np.int64))
    same_as_float32(mixed, Y, mixed.to_numpy(np.float32), Y)


def test_two_threads_train_two_models_at_once():
    """Each thread fits its own model (the GIL is released inside every step): both
    end exactly where the same fit run alone ends."""
    alone = [trained(X, Y, seed=s, epochs=5)[0].get_weights() for s in (1, 2)]
    errors = []

    # Initializers draw from the global seed: build the models one after the other.
    models = []
    for s in (1, 2):
        ember.set_random_seed(s)
        m = ember.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dense(2, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        models.append(m)

    def fit(m):
        try:
            m.fit(X, Y, batch_size=16, epochs=5, shuffle=False, verbose=0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=fit, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for m, ref in zip(models, alone):
        for a, b in zip(m.get_weights(), ref):
            np.testing.assert_array_equal(a, b)


def test_unpickled_and_big_endian_arrays():
    """Arrays that crossed a process boundary (multiprocessing, joblib) carry their own
    dtype objects; files from other machines may be big-endian."""
    import pickle
    same_as_float32(pickle.loads(pickle.dumps(X32)), Y, X32, Y)
    same_as_float32(X32.astype(">f4"), Y.astype(">i8"), X32, Y)
