"""The optimizers' use_ema and gradient_accumulation_steps, with Keras's rules: checked
against Keras 3 step by step, through fit (whose end gives the weights their averages),
on a tape, in files, and at 1 and 2 threads."""
import numpy as np
import pytest

import ember
from ember import layers, optimizers
from oracles import keras_or_skip
from threads import assert_same_weights_at_thread_counts

rng = np.random.default_rng(3)
X = rng.normal(size=(12, 6)).astype(np.float32)
Y = rng.normal(size=(12, 2)).astype(np.float32)
IDS = rng.integers(0, 20, size=(12, 5))

OPTIONS = [
    dict(use_ema=True),
    dict(use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2),
    dict(gradient_accumulation_steps=3),
    dict(gradient_accumulation_steps=2, use_ema=True, ema_momentum=0.8),
    dict(gradient_accumulation_steps=2, clipnorm=0.1, weight_decay=0.01),
]


def mlp(lib):
    return lib.Sequential([lib.Input((6,)), lib.layers.Dense(5, activation="tanh"),
                           lib.layers.Dense(2)])


def embedder(lib):
    return lib.Sequential([lib.Input((5,)), lib.layers.Embedding(20, 4),
                           lib.layers.GlobalAveragePooling1D(), lib.layers.Dense(2)])


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("kind", ["Adam", "SGD", "Nadam"])
def test_steps_match_keras(kind, options):
    keras = keras_or_skip()
    extra = {"momentum": 0.9} if kind == "SGD" else {}
    for build, x in ((mlp, X), (embedder, IDS)):
        k, e = build(keras), build(ember)
        e.set_weights([np.asarray(w) for w in k.get_weights()])
        k.compile(getattr(keras.optimizers, kind)(0.05, **extra, **options), "mse")
        e.compile(getattr(optimizers, kind)(0.05, **extra, **options), "mse")
        for step in range(7):
            rows = slice(2 * step % 12, 2 * step % 12 + 4)
            k.train_on_batch(x[rows], Y[rows])
            e.train_on_batch(x[rows], Y[rows])
            for a, b in zip(e.get_weights(), k.get_weights()):
                np.testing.assert_allclose(a, np.asarray(b), atol=2e-5,
                                           err_msg=f"{build.__name__} step {step}")
        assert int(e.optimizer.iterations) == int(k.optimizer.iterations)
        ke = [np.asarray(v) for v in k.optimizer.variables]
        ee = e.optimizer._keras_state(e.trainable_weights)
        assert len(ee) == len(ke)
        for a, b in zip(ee, ke):
            np.testing.assert_allclose(a, b, atol=2e-5)


def test_fit_ends_on_the_averages_as_keras():
    keras = keras_or_skip()
    k, e = mlp(keras), mlp(ember)
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    k.compile(keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9), "mse")
    e.compile(optimizers.Adam(0.05, use_ema=True, ema_momentum=0.9), "mse")
    k.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    e.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=2e-5)


def test_accumulation_is_the_mean_of_the_batches():
    """Accumulating 3 batches of 4 is one SGD step on their mean gradient: the step on
    the 12 rows at once (equal batch sizes, the mean loss)."""
    a, b = mlp(ember), mlp(ember)
    b.set_weights(a.get_weights())
    a.compile(optimizers.SGD(0.1, gradient_accumulation_steps=3), "mse")
    b.compile(optimizers.SGD(0.1), "mse")
    before = a.get_weights()
    a.train_on_batch(X[:4], Y[:4])
    a.train_on_batch(X[4:8], Y[4:8])
    for u, v in zip(a.get_weights(), before):
        np.testing.assert_array_equal(u, v)  # nothing moves until the third call
    assert int(a.optimizer.iterations) == 0
    a.train_on_batch(X[8:], Y[8:])
    b.train_on_batch(X, Y)
    assert int(a.optimizer.iterations) == 1
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_tape_steps_accumulate_and_average():
    m = mlp(ember)
    opt = optimizers.Adam(0.05, gradient_accumulation_steps=2, use_ema=True)
    ref = mlp(ember)
    ref.set_weights(m.get_weights())
    ref.compile(optimizers.Adam(0.05, gradient_accumulation_steps=2, use_ema=True), "mse")
    for step in range(4):
        rows = slice(4 * (step % 3), 4 * (step % 3) + 4)
        with ember.GradientTape() as tape:
            loss = ember.losses.MeanSquaredError()(Y[rows], m(X[rows]))
        grads = tape.gradient(loss, m.trainable_variables)
        opt.apply_gradients(zip(grads, m.trainable_variables))
        ref.train_on_batch(X[rows], Y[rows])
    for u, v in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_bad_options_are_refused():
    for kwargs, word in ((dict(gradient_accumulation_steps=1), "gradient_accumulation_steps"),
                         (dict(gradient_accumulation_steps=2.5), "gradient_accumulation_steps"),
                         (dict(use_ema=True, ema_momentum=1.5), "ema_momentum"),
                         (dict(use_ema=True, ema_overwrite_frequency=0),
                          "ema_overwrite_frequency"),
                         (dict(loss_scale_factor=128.0), "loss_scale_factor")):
        with pytest.raises(ValueError, match=word):
            optimizers.Adam(**kwargs)


def test_config_and_files_keep_the_state(tmp_path):
    m = mlp(ember)
    m.compile(optimizers.Adam(0.05, use_ema=True, ema_overwrite_frequency=3,
                              gradient_accumulation_steps=2), "mse")
    for step in range(3):
        m.train_on_batch(X[:4], Y[:4])
    cfg = m.optimizer.get_config()
    assert (cfg["use_ema"], cfg["ema_overwrite_frequency"],
            cfg["gradient_accumulation_steps"]) == (True, 3, 2)
    m.save(tmp_path / "m.keras")
    back = ember.models.load_model(tmp_path / "m.keras")
    state = m.optimizer._keras_state(m.trainable_weights)
    again = back.optimizer._keras_state(back.trainable_weights)
    assert len(state) == len(again)
    for a, b in zip(state, again):
        np.testing.assert_array_equal(a, b)
    m.train_on_batch(X[4:8], Y[4:8])
    back.train_on_batch(X[4:8], Y[4:8])
    for u, v in zip(m.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_keras_opens_the_file(tmp_path):
    keras = keras_or_skip()
    m = mlp(ember)
    m.compile(optimizers.Adam(0.05, use_ema=True, gradient_accumulation_steps=2), "mse")
    for _ in range(3):
        m.train_on_batch(X[:4], Y[:4])
    m.save(tmp_path / "m.keras")
    k = keras.models.load_model(tmp_path / "m.keras")
    assert k.optimizer.use_ema and k.optimizer.gradient_accumulation_steps == 2
    ke = [np.asarray(v) for v in k.optimizer.variables]
    for a, b in zip(m.optimizer._keras_state(m.trainable_weights), ke):
        np.testing.assert_allclose(a, b)


def test_same_bits_at_one_and_two_threads():
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.normal(size=(64, 2)).astype(np.float32)

    def train():
        ember.set_random_seed(5)
        m = ember.Sequential([ember.Input((6,)), layers.Dense(3000, activation="relu"),
                              layers.Dense(2)])
        m.compile(optimizers.Adam(0.01, use_ema=True, gradient_accumulation_steps=2), "mse")
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_moving_average_by_hand():
    """The average starts as the weights after the first update (momentum 0 then), then
    follows m * average + (1 - m) * weights; fit ends on it, train_on_batch does not."""
    m = mlp(ember)
    m.compile(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.75), "mse")
    opt = m.optimizer

    def averages():
        return [np.array(opt._core.slots(v._storage)[opt._core.ema_slot])
                for v in m.trainable_weights]
    m.train_on_batch(X[:4], Y[:4])
    first = m.get_weights()
    for a, w in zip(averages(), first):
        np.testing.assert_array_equal(a, w)
    m.train_on_batch(X[4:8], Y[4:8])
    second = m.get_weights()
    for a, w1, w2 in zip(averages(), first, second):
        np.testing.assert_allclose(a, np.float32(0.75) * w1 + np.float32(0.25) * w2, rtol=1e-6)
    want = averages()
    m.fit(X[:4], Y[:4], epochs=0, verbose=0)  # no epoch run: nothing to finalize
    for w, w2 in zip(m.get_weights(), second):
        np.testing.assert_array_equal(w, w2)
    m.fit(X[:4], Y[:4], batch_size=4, epochs=1, verbose=0)
    last = averages()
    for w, a in zip(m.get_weights(), last):
        np.testing.assert_array_equal(w, a)
    assert not all(np.array_equal(a, b) for a, b in zip(last, want))
