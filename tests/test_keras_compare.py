"""ember against Keras 3 (JAX backend) on the same weights: outputs, one Adam
train_on_batch, every optimizer over 3 steps, every loss, and a whole training script
run on both with only the imports changed. Skips cleanly without keras and jax
(`pip install .[compare]`)."""
import os

import numpy as np
import pytest

from oracles import keras_or_skip

keras = keras_or_skip()

import ember  # noqa: E402

# Keras/JAX's own arrays trip a NumPy 2 deprecation inside Keras; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

rng = np.random.default_rng(0)
X = rng.normal(size=(32, 12)).astype(np.float32)
Y = rng.integers(0, 4, size=32)


def pair(K, activation="softmax"):
    return K.Sequential([K.Input((12,)), K.layers.Dense(16, activation="relu"),
                         K.layers.Dense(8, activation="tanh"),
                         K.layers.Dense(4, activation=activation)])


def twins(activation="softmax"):
    e, k = pair(ember, activation), pair(keras, activation)
    e.set_weights(k.get_weights())
    return e, k


def test_same_weights_same_outputs():
    e, k = twins()
    np.testing.assert_allclose(e.predict(X, verbose=0), k.predict(X, verbose=0), atol=1e-6)
    np.testing.assert_allclose(e.predict_on_batch(X[:1]), np.asarray(k(X[:1])), atol=1e-6)


def test_one_adam_train_on_batch_matches_keras():
    e, k = twins()
    for m, K in ((e, ember), (k, keras)):
        m.compile(K.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    le = e.train_on_batch(X, Y)
    lk = k.train_on_batch(X, Y)
    np.testing.assert_allclose(le, lk, rtol=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def cnn(K):
    L = K.layers
    return K.Sequential([K.Input((9, 10, 2)), L.Conv2D(4, 3, padding="same", activation="relu"),
                         L.MaxPooling2D(), L.Conv2D(5, (2, 3), strides=2, padding="same",
                                                    activation="tanh"),
                         L.AveragePooling2D(2, padding="same"), L.Conv2D(3, 1, dilation_rate=1),
                         L.GlobalMaxPooling2D(keepdims=True), L.Flatten(),
                         L.Dense(4, activation="softmax")])


def test_cnn_outputs_and_adam_step_match_keras():
    e, k = cnn(ember), cnn(keras)
    e.set_weights(k.get_weights())
    assert e.output_shape == k.output_shape
    x = rng.normal(size=(16, 9, 10, 2)).astype(np.float32)
    y = rng.integers(0, 4, size=16)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-6)
    for m, K in ((e, ember), (k, keras)):
        m.compile(K.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    np.testing.assert_allclose(e.train_on_batch(x, y), k.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


OPTIMIZERS = [
    ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(learning_rate=0.01, amsgrad=True, clipnorm=0.5)),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.05)),
    ("RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True, global_clipnorm=1.0)),
    ("Adagrad", dict(learning_rate=0.05, clipvalue=0.01)),
    ("Adamax", dict(learning_rate=0.01, clipnorm=0.5)),
    ("Nadam", dict(learning_rate=0.01)),
    ("Nadam", dict(learning_rate=0.01, weight_decay=0.05, beta_1=0.8)),
    ("Lion", dict(learning_rate=0.003)),
    ("Adadelta", dict(learning_rate=1.0, rho=0.9)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_every_optimizer_three_steps_match_keras(name, kwargs):
    e, k = twins()
    e.compile(getattr(ember.optimizers, name)(**kwargs), "sparse_categorical_crossentropy")
    k.compile(getattr(keras.optimizers, name)(**kwargs), "sparse_categorical_crossentropy")
    for s in range(3):
        rows = slice(8 * s, 8 * s + 8)
        e.train_on_batch(X[rows], Y[rows])
        k.train_on_batch(X[rows], Y[rows])
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.parametrize("name", ["mean_squared_error", "mean_absolute_error", "huber",
                                  "hinge", "kl_divergence", "binary_crossentropy",
                                  "categorical_crossentropy", "mean_squared_logarithmic_error",
                                  "mean_absolute_percentage_error", "log_cosh", "poisson",
                                  "squared_hinge", "categorical_hinge", "cosine_similarity"])
def test_every_loss_matches_keras(name):
    p = rng.uniform(0.02, 0.98, size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=(16, 4)).astype(np.float32)
    if name in ("kl_divergence", "categorical_crossentropy"):
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=16)]
    ours = getattr(ember.losses, name)(y, p)
    theirs = np.asarray(getattr(keras.losses, name)(y, p))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


SCRIPT = '''
def run(K, x, y, xv, yv, tmp, init):
    K.utils.set_random_seed(0)
    model = K.Sequential([K.Input((12,)), K.layers.Dense(16, activation="relu"),
                          K.layers.Dropout(0.1), K.layers.Dense(4, activation="softmax")])
    model.layers[0].trainable = True
    schedule = K.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=K.optimizers.Adam(schedule, clipnorm=1.0),
                  loss=K.losses.CategoricalCrossentropy(),
                  metrics=["accuracy", "top_k_categorical_accuracy", "mae", "mse",
                           K.metrics.CategoricalAccuracy()])
    cbs = [K.callbacks.EarlyStopping(monitor="val_loss", patience=3,
                                     restore_best_weights=True),
           K.callbacks.ModelCheckpoint(tmp + "/best.keras", save_best_only=True),
           K.callbacks.CSVLogger(tmp + "/log.csv"),
           K.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: None),
           K.callbacks.TerminateOnNaN()]
    history = model.fit(x, K.utils.to_categorical(y, 4), batch_size=8, epochs=3,
                        validation_split=0.25, class_weight={0: 1.0, 1: 2.0},
                        callbacks=cbs, verbose=0)
    plain = K.Sequential([K.Input((12,)), K.layers.Dense(4, activation="softmax")])
    plain.set_weights(init)
    plain.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    h2 = plain.fit(x, y, epochs=2, validation_data=(xv, yv), verbose=0, shuffle=False,
                   callbacks=[
        K.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1),
        K.callbacks.LearningRateScheduler(lambda epoch, lr: lr)])
    result = plain.evaluate(xv, yv, return_dict=True, verbose=0)
    return (list(history.history), list(h2.history), list(result),
            model.count_params()), (h2.history, result)
'''


def test_a_keras_script_runs_on_ember_with_only_imports_changed(tmp_path):
    env = {}
    exec(SCRIPT, env)
    xv, yv = X[:8], Y[:8]
    (tmp_path / "e").mkdir()
    (tmp_path / "k").mkdir()
    r = np.random.default_rng(3)
    init = [r.normal(size=(12, 4)).astype(np.float32) * 0.3, np.zeros(4, np.float32)]
    ours, our_values = env["run"](ember, X, Y, xv, yv, str(tmp_path / "e"), init)
    theirs, their_values = env["run"](keras, X, Y, xv, yv, str(tmp_path / "k"), init)
    assert ours == theirs
    # The model without dropout, from the same weights, in the same order: the same
    # losses and metrics, epoch by epoch, within float32 rounding.
    for a, b in zip(our_values, their_values):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert (tmp_path / "e" / "best.keras").exists()
    assert open(tmp_path / "e" / "log.csv").readline() == \
        open(tmp_path / "k" / "log.csv").readline()
