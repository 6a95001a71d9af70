"""fit, evaluate and predict on data that is not one array: Keras's PyDataset and Python
generators. Each gives the same bits as the arrays its batches come from."""
import threading
import time
import warnings

import numpy as np
import pytest

import ember
from ember import layers
from ember.utils import PyDataset

rng = np.random.default_rng(0)
X = rng.normal(size=(80, 6)).astype(np.float32)
Y = rng.integers(0, 3, 80)
SW = rng.uniform(0.5, 2, 80).astype(np.float32)


class Batches(PyDataset):
    """Consecutive batches of 16 of (X, Y[, SW]), optionally slow."""

    def __init__(self, x=X, y=Y, sw=None, size=16, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.sw, self.size, self.delay = x, y, sw, size, delay
        self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        s = slice(i * self.size, (i + 1) * self.size)
        if self.y is None:
            return (self.x[s],)
        return (self.x[s], self.y[s]) if self.sw is None else (self.x[s], self.y[s], self.sw[s])

    def on_epoch_end(self):
        self.epochs_ended += 1


def model(seed=3):
    ember.set_random_seed(seed)
    m = ember.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                          layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def reference(epochs=2, **kwargs):
    m = model()
    h = m.fit(X, Y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, **kwargs)
    return m, h


def same(m, h, ref, href):
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h.history == href.history


def forever():
    while True:
        for i in range(0, 80, 16):
            yield X[i:i + 16], Y[i:i + 16]


def test_pydataset_trains_like_the_arrays():
    ref, href = reference()
    for workers in (1, 3):
        ds = Batches(workers=workers, max_queue_size=2)
        m = model()
        h = m.fit(ds, epochs=2, verbose=0)
        same(m, h, ref, href)
        assert ds.epochs_ended == 2
    ref, href = reference(sample_weight=SW)
    m = model()
    same(m, m.fit(Batches(sw=SW), epochs=2, verbose=0), ref, href)
    ref, href = reference(class_weight={0: 1.0, 1: 3.0, 2: 0.5})
    m = model()
    same(m, m.fit(Batches(), epochs=2, verbose=0, class_weight={0: 1.0, 1: 3.0, 2: 0.5}),
         ref, href)


def test_generator_with_steps_per_epoch_trains_like_the_arrays():
    ref, href = reference(epochs=3)
    m = model()
    same(m, m.fit(forever(), steps_per_epoch=5, epochs=3, verbose=0), ref, href)


def test_finite_generator_runs_until_it_is_exhausted():
    def once():
        for i in range(0, 80, 16):
            yield X[i:i + 16], Y[i:i + 16]
    ref, href = reference(epochs=1)
    m = model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(once(), epochs=3, verbose=0)
    same(m, h, ref, href)


def test_validation_evaluate_and_predict_on_streams():
    ref, href = reference(validation_data=(X[:32], Y[:32]))
    m = model()
    h = m.fit(Batches(), epochs=2, verbose=0, validation_data=Batches(X[:32], Y[:32]))
    same(m, h, ref, href)
    m = model()
    def first_32():
        while True:
            for i in (0, 16):
                yield X[i:i + 16], Y[i:i + 16]
    h = m.fit(forever(), steps_per_epoch=5, epochs=2, verbose=0,
              validation_data=first_32(), validation_steps=2)
    same(m, h, ref, href)
    m = model()
    h = m.fit(Batches(), epochs=2, verbose=0, validation_data=(X[:32], Y[:32]))
    same(m, h, ref, href)
    m = model()  # arrays to train on, a data set to validate on
    h = m.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              validation_data=first_32(), validation_steps=2)
    same(m, h, ref, href)
    assert m.evaluate(Batches(), verbose=0) == pytest.approx(
        m.evaluate(X, Y, batch_size=16, verbose=0), rel=1e-12)
    assert m.evaluate(forever(), steps=5, return_dict=True, verbose=0) == \
        m.evaluate(Batches(), return_dict=True, verbose=0)
    expected = m.predict(X, verbose=0)
    np.testing.assert_array_equal(m.predict(Batches(y=None), verbose=0), expected)
    np.testing.assert_array_equal(m.predict(Batches(workers=2), verbose=0), expected)
    np.testing.assert_array_equal(m.predict((b[0] for b in Batches()), verbose=0), expected)
    np.testing.assert_array_equal(m.predict(forever(), steps=2, verbose=0), expected[:32])


def test_the_progress_bar_handles_an_unknown_length(capsys):
    def once():
        for i in range(0, 80, 16):
            yield X[i:i + 16], Y[i:i + 16]
    model().fit(once(), epochs=1, verbose=2)
    assert "5/Unknown" in capsys.readouterr().out
    model().fit(Batches(), epochs=1, verbose=2)
    assert "5/5" in capsys.readouterr().out


def test_next_batch_is_fetched_while_this_one_trains():
    """The step releases the GIL: __getitem__ of batch i + 1 starts before step i ends."""
    started, order = {}, []

    class Watched(Batches):
        def __getitem__(self, i):
            started[i] = time.perf_counter()
            return super().__getitem__(i)

    class Mark(ember.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            order.append((batch, time.perf_counter(), set(started)))
    model().fit(Watched(), epochs=1, verbose=0, callbacks=[Mark()])
    assert all(batch + 1 in seen for batch, _, seen in order[:-1])


def test_stream_errors_are_clear():
    m = model()
    with pytest.raises(ValueError, match="`y` must not be given"):
        m.fit(Batches(), Y, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(Batches(), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer"):
        m.fit(forever(), steps_per_epoch=0, verbose=0)

    def lists():
        yield [X[:4], Y[:4]]
    with pytest.raises(ValueError, match="not a list"):
        m.fit(lists(), verbose=0)

    class Broken(Batches):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("batch 2 is missing")
            return super().__getitem__(i)
    with pytest.raises(KeyError, match="batch 2 is missing"):
        m.fit(Broken(workers=2), verbose=0)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        Batches(workers=0)
    with pytest.raises(ValueError, match="label value of 7"):
        m.fit(iter([(X[:4], np.full(4, 7))]), verbose=0)
    # The model still trains after every failure above.
    m.fit(Batches(), verbose=0)
    assert threading.active_count() < 20
