"""Dice and Tversky: Keras's segmentation losses, one value per batch (axis=None) or per
sample, standalone, in compile and on a tape."""
import numpy as np
import pytest

import ember
from ember import _core, layers, losses
from gradcheck import assert_close, numeric_grad
from oracles import keras_or_skip

rng = np.random.default_rng(7)
Y = (rng.uniform(size=(4, 5, 5, 2)) > 0.6).astype(np.float32)
P = rng.uniform(0.01, 0.99, size=(4, 5, 5, 2)).astype(np.float32)


def reference(y, p, alpha, beta, axis):
    """Keras's formulas in float64 (Dice is Tversky with a different epsilon)."""
    y, p = y.astype(np.float64), p.astype(np.float64)
    tp = np.sum(y * p, axis=axis)
    if alpha is None:
        return 1 - 2 * tp / (np.sum(y, axis=axis) + np.sum(p, axis=axis) + 1e-7)
    fp, fn = np.sum((1 - p) * y, axis=axis), np.sum(p * (1 - y), axis=axis)
    return 1 - tp / (tp + alpha * fp + beta * fn + 1e-7)


def test_keras_documented_values():
    y = [[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]]
    p = [[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]]
    np.testing.assert_allclose(losses.Dice(axis=(1, 2, 3), reduction=None)(y, p),
                               [0.5, 0.75757575], rtol=1e-6)
    np.testing.assert_allclose(losses.Dice()(y, p), 0.6164384, rtol=1e-6)
    assert np.shape(losses.dice(y, p)) == ()
    assert np.shape(losses.dice(y, p, axis=[1, 2, 3])) == (2,)


@pytest.mark.parametrize("alpha,beta", [(None, None), (0.5, 0.5), (0.3, 0.7), (0.9, 0.1)])
@pytest.mark.parametrize("axis", [None, (1, 2, 3), (-3, -2, -1)])
def test_against_the_formulas(alpha, beta, axis):
    loss = losses.Dice(axis=axis) if alpha is None else losses.Tversky(alpha, beta, axis=axis)
    ref = reference(Y, P, alpha, beta, None if axis is None else (1, 2, 3))
    np.testing.assert_allclose(loss(Y, P), np.mean(ref), rtol=1e-5)
    sw = np.array([1.0, 0.0, 2.0, 0.5])
    # a batch's one value is weighted by every sample's weight, as in Keras
    np.testing.assert_allclose(loss(Y, P, sample_weight=sw), np.mean(ref * sw), rtol=1e-5)


@pytest.mark.parametrize("name,alpha,beta", [("dice", 1.0, 0.0), ("tversky", 0.3, 0.7),
                                             ("tversky", 0.2, 0.5), ("tversky", 0.9, 0.6)])
def test_gradients_in_float64(name, alpha, beta):
    y = Y.reshape(1, -1).astype(np.float64)
    p = P.reshape(1, -1).astype(np.float64)
    f = lambda: _core.loss(name, p, y, False, "linear", 1.0, None, alpha, beta)[0]
    _, g = _core.loss(name, p, y, False, "linear", 1.0, None, alpha, beta)
    assert_close(g, numeric_grad(f, p), tol=1e-6, what=name)
    # per sample, weighted: each row's gradient scales with its weight
    rows = P.reshape(4, -1).astype(np.float64)
    yr = Y.reshape(4, -1).astype(np.float64)
    w = np.array([1.0, 0.5, 2.0, 0.0])
    f = lambda: _core.loss(name, rows, yr, False, "linear", 1.0, w, alpha, beta)[0]
    _, g = _core.loss(name, rows, yr, False, "linear", 1.0, w, alpha, beta)
    assert_close(g, numeric_grad(f, rows), tol=1e-6, what=name + " per sample")


def test_bad_axis_and_parameters_are_refused():
    with pytest.raises(ValueError, match=r"axis=\(1, 2\)"):
        losses.Dice(axis=(1, 2))(Y, P)
    with pytest.raises(ValueError, match="axis"):
        losses.Dice(axis="all")
    with pytest.raises(ValueError, match="alpha"):
        losses.Tversky(alpha=float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        losses.Dice()(Y[:2], P)


def segmenter():
    return ember.Sequential([ember.Input((5, 5, 3)),
                             layers.Conv2D(4, 3, padding="same", activation="relu"),
                             layers.Conv2D(2, 1, activation="sigmoid")])


@pytest.mark.parametrize("loss", [losses.Dice(), losses.Dice(axis=(1, 2, 3)),
                                  losses.Tversky(0.3, 0.7), "dice", "tversky"])
def test_compiled_loss_is_the_standalone_loss(loss):
    x = rng.normal(size=(4, 5, 5, 3)).astype(np.float32)
    m = segmenter()
    m.compile("adam", loss)
    fn = losses.get(loss)
    expect = fn(Y, m.predict(x, verbose=0))
    np.testing.assert_allclose(m.evaluate(x, Y, verbose=0), expect, rtol=1e-5)
    sw = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    np.testing.assert_allclose(m.evaluate(x, Y, sample_weight=sw, verbose=0),
                               fn(Y, m.predict(x, verbose=0), sample_weight=sw), rtol=1e-5)
    h = m.fit(x, Y, epochs=30, batch_size=4, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_the_tape_gives_the_compiled_gradient():
    x = rng.normal(size=(4, 5, 5, 3)).astype(np.float32)
    a, b = segmenter(), segmenter()
    b.set_weights(a.get_weights())
    a.compile(ember.optimizers.SGD(0.1), losses.Tversky(0.3, 0.7))
    a.train_on_batch(x, Y)
    opt = ember.optimizers.SGD(0.1)
    with ember.GradientTape() as tape:
        loss = losses.Tversky(0.3, 0.7)(Y, b(x))
    grads = tape.gradient(loss, b.trainable_variables)
    opt.apply_gradients(zip(grads, b.trainable_variables))
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, atol=1e-6)


def test_saved_with_the_model(tmp_path):
    m = segmenter()
    m.compile("adam", losses.Tversky(0.2, 0.8, axis=(1, 2, 3)))
    m.save(tmp_path / "m.keras")
    back = ember.models.load_model(tmp_path / "m.keras")
    assert isinstance(back.loss, losses.Tversky)
    assert (back.loss.alpha, back.loss.beta, back.loss.axis) == (0.2, 0.8, (1, 2, 3))


@pytest.mark.parametrize("make", [lambda k: k.losses.Dice(), lambda k: k.losses.Dice(axis=(1, 2, 3)),
                                  lambda k: k.losses.Tversky(0.3, 0.7),
                                  lambda k: k.losses.Tversky(0.2, 0.5, axis=(1, 2, 3))])
def test_training_matches_keras(make):
    keras = keras_or_skip()
    x = rng.normal(size=(4, 5, 5, 3)).astype(np.float32)
    k = keras.Sequential([keras.Input((5, 5, 3)),
                          keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                          keras.layers.Conv2D(2, 1, activation="sigmoid")])
    e = segmenter()
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    kl = make(keras)
    el = losses.get({"class_name": type(kl).__name__, "config": kl.get_config()})
    sw = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    np.testing.assert_allclose(el(Y, P, sample_weight=sw), float(kl(Y, P, sample_weight=sw)),
                               rtol=1e-5)
    k.compile(keras.optimizers.Adam(0.01), kl)
    e.compile(ember.optimizers.Adam(0.01), el)
    for _ in range(2):
        kv = float(k.train_on_batch(x, Y))
        ev = e.train_on_batch(x, Y)
        np.testing.assert_allclose(ev, kv, rtol=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
