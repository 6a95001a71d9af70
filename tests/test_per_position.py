"""A class per position (sequence labelling, seq2seq decoders): losses and metrics over
outputs of more than one axis per sample take one term per position, and a mask
weighs each position, as Keras does. Checked against float64 NumPy, Keras 3 (losses,
metrics, weights after training) and on bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(17)


def tagged_ids(n=8, T=6, vocab=10, classes=3):
    ids = R.integers(1, vocab, (n, T))
    ids[0, 3:] = 0
    ids[1, :2] = 0
    return ids, R.integers(0, classes, (n, T))


def tagger(lib, mask=True, loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    L = lib.layers
    i = lib.Input((6,), dtype="int32")
    x = L.Embedding(10, 4, mask_zero=mask)(i)
    x = L.LSTM(5, return_sequences=True)(x)
    m = lib.Model(i, L.Dense(3, activation="softmax")(x))
    m.compile(lib.optimizers.Adam(0.01), loss, metrics=list(metrics))
    return m


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_masked_loss_accuracy_and_gradient_match_float64():
    """Masking(0) > Dense(softmax) per step: the loss is the mean over unmasked steps
    (sample weights scale them), accuracy counts unmasked steps, and the gradient is
    that loss's."""
    from gradcheck import assert_close, numeric_grad
    x = R.normal(size=(6, 5, 3)).astype(np.float32)
    x[0, 3:] = 0
    x[2, :1] = 0
    y = R.integers(0, 4, (6, 5))
    sw = R.uniform(0.5, 2.0, 6).astype(np.float32)
    m = ember.Sequential([ember.Input((5, 3)), layers.Masking(0.0),
                          layers.Dense(4, activation="softmax")])
    m.compile(ember.optimizers.SGD(1.0), "sparse_categorical_crossentropy",
              metrics=["accuracy"], weighted_metrics=["accuracy"])
    W, b = (w.astype(np.float64) for w in m.get_weights())
    mask = (x != 0).any(-1)

    def loss(W=W, b=b, weights=sw):
        p = softmax(x @ W + b)
        nll = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])
        return (nll * mask * weights[:, None]).sum() / mask.sum()
    p = softmax(x @ W + b)
    right = p.argmax(-1) == y
    got = m.evaluate(x, y, sample_weight=sw, batch_size=6, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["loss"], loss(), rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], (right * mask).sum() / mask.sum(), rtol=1e-6)
    wm = mask * sw[:, None]
    np.testing.assert_allclose(got["weighted_accuracy"], (right * wm).sum() / wm.sum(),
                               rtol=1e-6)
    m.train_on_batch(x, y, sample_weight=sw)
    after = m.get_weights()
    assert_close(W - after[0], numeric_grad(lambda: loss(), W), tol=2e-5, what="kernel")
    assert_close(b - after[1], numeric_grad(lambda: loss(), b), tol=2e-5, what="bias")


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  "mse"])
def test_sequence_labelling_matches_keras(mask, loss):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    ids, y = tagged_ids()
    targets = y if loss.startswith("sparse") else np.eye(3, dtype=np.float32)[y]
    metrics = ("accuracy",) if loss.startswith("sparse") else ("accuracy", "mae")
    k, e = tagger(keras, mask, loss, metrics), tagger(ember, mask, loss, metrics)
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    np.testing.assert_allclose(e.evaluate(ids, targets, verbose=0),
                               k.evaluate(ids, targets, verbose=0), rtol=2e-5, atol=1e-6)
    hk = k.fit(ids, targets, batch_size=4, epochs=2, verbose=0, shuffle=False).history
    he = e.fit(ids, targets, batch_size=4, epochs=2, verbose=0, shuffle=False).history
    np.testing.assert_allclose(he["loss"], hk["loss"], rtol=2e-5)
    if not mask:  # Keras on JAX leaves the mask out of fit's metrics (not evaluate's)
        np.testing.assert_allclose(he["accuracy"], hk["accuracy"], rtol=1e-6)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


def seq2seq(lib, vocab=6, T=5, units=16):
    """Keras's character-level seq2seq: the encoder's states start the decoder, whose
    softmax per step is trained with categorical crossentropy."""
    L = lib.layers
    enc_in, dec_in = lib.Input((T, vocab)), lib.Input((T, vocab))
    _, h, c = L.LSTM(units, return_state=True)(enc_in)
    seq = L.LSTM(units, return_sequences=True)(dec_in, initial_state=[h, c])
    m = lib.Model([enc_in, dec_in], L.Dense(vocab, activation="softmax")(seq))
    m.compile(lib.optimizers.Adam(0.02), "categorical_crossentropy", metrics=["accuracy"])
    return m


def reversal_data(n, vocab=6, T=5):
    """Reverse a sequence: the decoder reads a start token then the answer shifted."""
    seq = R.integers(1, vocab, (n, T))
    target = seq[:, ::-1]
    dec = np.concatenate([np.zeros((n, 1), int), target[:, :-1]], 1)
    eye = np.eye(vocab, dtype=np.float32)
    return [eye[seq], eye[dec]], eye[target]


def test_seq2seq_learns_and_matches_keras():
    x, y = reversal_data(512)
    ember.utils.set_random_seed(1)
    m = seq2seq(ember)
    hist = m.fit(x, y, batch_size=32, epochs=20, verbose=0).history
    assert hist["accuracy"][-1] > 0.9 > hist["accuracy"][0]
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k, e = seq2seq(keras), seq2seq(ember)
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    xs, ys = [a[:16] for a in x], y[:16]
    np.testing.assert_allclose(e.evaluate(xs, ys, verbose=0), k.evaluate(xs, ys, verbose=0),
                               rtol=2e-5)
    k.train_on_batch(xs, ys)
    e.train_on_batch(xs, ys)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


def test_bad_targets_name_the_shape_and_the_value():
    ids, y = tagged_ids()
    m = tagger(ember)
    with pytest.raises(ValueError, match=r"class ids of shape \(n, 6\) or \(n, 6, 1\).*\(8,\)"):
        m.fit(ids, y[:, 0], verbose=0)
    bad = y.copy()
    bad[5, 2] = 3
    with pytest.raises(ValueError, match=r"label value of 3 \(sample 5\).*\[0, 3\)"):
        m.fit(ids, bad, verbose=0)
    with pytest.raises(ValueError, match="class_weight is not supported .* per position"):
        m.fit(ids, y, class_weight={0: 1.0, 1: 2.0, 2: 1.0}, verbose=0)
    np.testing.assert_allclose(m.evaluate(ids, y[..., None], verbose=0),
                               m.evaluate(ids, y, verbose=0))


def test_ignore_class_leaves_positions_out_of_loss_and_metrics():
    """Keras's ignore_class: the loss is the mean over the labels that are not it;
    ember's metrics leave those positions out too (Keras 3 counts them as misses)."""
    x = R.normal(size=(6, 5, 4)).astype(np.float32)
    y = R.integers(0, 3, (6, 5))
    y[1, 3:] = -1
    y[4, 0] = -1
    m = ember.Sequential([ember.Input((5, 4)), layers.Dense(3, activation="softmax")])
    loss = ember.losses.SparseCategoricalCrossentropy(ignore_class=-1)
    m.compile("adam", loss, metrics=["accuracy"])
    p = m.predict(x, verbose=0).astype(np.float64)
    keep = y != -1
    nll = -np.log(np.take_along_axis(p, np.where(keep, y, 0)[..., None], -1)[..., 0])
    right = p.argmax(-1) == y
    np.testing.assert_allclose(m.evaluate(x, y, verbose=0),
                               [(nll * keep).sum() / keep.sum(), right[keep].mean()],
                               rtol=1e-5)
    np.testing.assert_allclose(loss(y, p), (nll * keep).sum() / keep.sum(), rtol=1e-5)
    np.testing.assert_allclose(loss.call(y, p), nll * keep, rtol=1e-5)
    assert loss.get_config()["ignore_class"] == -1
    bad = y.copy()
    bad[2, 2] = -2
    with pytest.raises(ValueError, match=r"label value of -2 \(sample 2\)"):
        m.evaluate(x, bad, verbose=0)
    with pytest.raises(ValueError, match="ignore_class must be an integer"):
        ember.losses.SparseCategoricalCrossentropy(ignore_class=0.5)


def test_ignore_class_trains_as_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    x = R.normal(size=(6, 5, 4)).astype(np.float32)
    y = R.integers(0, 3, (6, 5))
    y[1, 3:] = 2
    y[4, 0] = 2

    def make(lib):
        m = lib.Sequential([lib.Input((5, 4)), lib.layers.Dense(3, activation="softmax")])
        m.compile(lib.optimizers.Adam(0.05),
                  lib.losses.SparseCategoricalCrossentropy(ignore_class=2))
        return m
    k, e = make(keras), make(ember)
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    np.testing.assert_allclose(e.evaluate(x, y, verbose=0), k.evaluate(x, y, verbose=0),
                               rtol=1e-5)
    hk = k.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False).history
    he = e.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False).history
    np.testing.assert_allclose(he["loss"], hk["loss"], rtol=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
