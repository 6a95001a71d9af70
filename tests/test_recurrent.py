"""SimpleRNN, LSTM, GRU and Bidirectional: against a float64 NumPy reference (every
gate, masks, go_backwards), finite differences through time, Keras 3 on shared
weights, the Keras file layout, thread-count bits and bad input."""
import warnings

import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(21)
KINDS = ["SimpleRNN", "LSTM", "GRU"]


def sig(v):
    return 1 / (1 + np.exp(-v))


def rnn_ref(kind, x, W, Rk, b, mask, go_backwards, return_sequences, rmask=None):
    """Keras's recurrences in float64: masked steps carry the state (and output it);
    rmask (recurrent dropout) scales the state entering the recurrent product."""
    n, T, _ = x.shape
    U = Rk.shape[0]
    h, c, outs = np.zeros((n, U)), np.zeros((n, U)), []
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        m = mask[:, t][:, None] if mask is not None else np.ones((n, 1), bool)
        xw = x[:, t] @ W + (b[0] if kind == "GRU" else b)
        rec = (h if rmask is None else h * rmask) @ Rk + (b[1] if kind == "GRU" else 0)
        if kind == "SimpleRNN":
            hn = np.tanh(xw + rec)
        elif kind == "LSTM":
            i, f, g, o = np.split(xw + rec, 4, axis=1)
            cn = sig(f) * c + sig(i) * np.tanh(g)
            hn = sig(o) * np.tanh(cn)
            c = np.where(m, cn, c)
        else:
            xz, xr, xh = np.split(xw, 3, axis=1)
            rz, rr, rh = np.split(rec, 3, axis=1)
            z, r = sig(xz + rz), sig(xr + rr)
            hn = z * h + (1 - z) * np.tanh(xh + r * rh)
        h = np.where(m, hn, h)
        outs.append(h)
    return np.stack(outs, 1) if return_sequences else h


def ids_with_padding(n, T, vocab):
    ids = R.integers(1, vocab, (n, T)).astype(np.int32)
    ids[0, T // 2:] = 0      # trailing padding
    ids[1, :2] = 0           # leading padding
    ids[2, T // 2] = 0       # a hole
    return ids


def text_model(lib, kind, return_sequences, go_backwards, mask_zero, T=7, units=4):
    L = lib.layers
    i = lib.Input((T,), dtype="int32")
    x = L.Embedding(12, 5, mask_zero=mask_zero)(i)
    x = getattr(L, kind)(units, return_sequences=return_sequences, go_backwards=go_backwards)(x)
    if return_sequences:
        x = L.GlobalAveragePooling1D()(x)
    return lib.Model(i, L.Dense(1)(x))


def model_ref(kind, weights, ids, return_sequences, go_backwards, mask_zero):
    E, W, Rk, b, Wd, bd = weights
    mask = ids != 0 if mask_zero else None
    h = rnn_ref(kind, E[ids], W, Rk, b, mask, go_backwards, return_sequences)
    if return_sequences:
        m = (mask if mask is not None else np.ones(ids.shape, bool))[:, :, None]
        h = (h * m).sum(1) / np.maximum(m.sum(1), 1)
    return h @ Wd + bd


CASES = [(k, rs, gb, mz) for k in KINDS for rs in (False, True) for gb in (False, True)
         for mz in (False, True)]


# Batches of 128 rows or more run the input side step by step (x W, and the gradients of
# x, W and b): the same checks there, for each cell with masks and without.
CASES_N = [c + (6,) for c in CASES] + [(k, rs, rs, rs, 130) for k in KINDS for rs in (False, True)]


@pytest.mark.parametrize("kind,rs,gb,mz,n", CASES_N)
def test_matches_the_float64_reference_and_its_gradients(kind, rs, gb, mz, n):
    from gradcheck import assert_close, numeric_grad
    m = text_model(ember, kind, rs, gb, mz)
    ids = ids_with_padding(n, 7, 12)
    w = [v.astype(np.float64) for v in m.get_weights()]
    np.testing.assert_allclose(m.predict(ids, verbose=0), model_ref(kind, w, ids, rs, gb, mz),
                               atol=2e-6)
    y = R.normal(size=(n, 1))
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(ids, y.astype(np.float32))

    def loss():
        return ((model_ref(kind, w, ids, rs, gb, mz) - y) ** 2).mean()
    for k, after in enumerate(m.get_weights()):
        assert_close(w[k] - after, numeric_grad(loss, w[k]), tol=2e-5, what=f"weight {k}")


@pytest.mark.parametrize("kind,rs,gb,mz,n", CASES_N)
def test_matches_keras_outputs_and_one_adam_step(kind, rs, gb, mz, n):
    from oracles import keras_or_skip, same_as_keras
    keras = keras_or_skip()
    k = text_model(keras, kind, rs, gb, mz)
    e = text_model(ember, kind, rs, gb, mz)
    assert [tuple(w.shape) for w in e.weights] == [tuple(w.shape) for w in k.weights]
    same_as_keras(keras, k, e, ids_with_padding(n, 7, 12), R.random((n, 1)).astype(np.float32))


def bidirectional_model(lib, kind, mode, rs):
    L = lib.layers
    i = lib.Input((7,), dtype="int32")
    x = L.Embedding(12, 5, mask_zero=True)(i)
    x = L.Bidirectional(getattr(L, kind)(3, return_sequences=rs), merge_mode=mode)(x)
    if rs:
        x = L.GlobalAveragePooling1D()(x)
    return lib.Model(i, L.Dense(1)(x))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("rs", [False, True])
def test_bidirectional_matches_keras(kind, mode, rs):
    from oracles import keras_or_skip, same_as_keras
    keras = keras_or_skip()
    k, e = bidirectional_model(keras, kind, mode, rs), bidirectional_model(ember, kind, mode, rs)
    same_as_keras(keras, k, e, ids_with_padding(6, 7, 12), R.random((6, 1)).astype(np.float32))


def test_bidirectional_is_two_reference_layers():
    """Without Keras: the backward half reads the steps last to first, its sequence is
    put back in input order, and masked steps output zeros."""
    m = bidirectional_model(ember, "GRU", "concat", True)
    ids = ids_with_padding(5, 7, 12)
    E, Wf, Rf, bf, Wb, Rb, bb, Wd, bd = [w.astype(np.float64) for w in m.get_weights()]
    mask = ids != 0
    x = E[ids]
    f = rnn_ref("GRU", x, Wf, Rf, bf, mask, False, True)
    b = rnn_ref("GRU", x, Wb, Rb, bb, mask, True, True)[:, ::-1]
    h = np.concatenate([f, b], -1) * mask[:, :, None]
    h = h.sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(m.predict(ids, verbose=0), h @ Wd + bd, atol=2e-6)


def test_stacked_layers_and_the_keras_file_layout(tmp_path):
    def make(lib):
        L = lib.layers
        return lib.Sequential([lib.Input((6,), dtype="int32"), L.Embedding(20, 4, mask_zero=True),
                               L.Bidirectional(L.LSTM(3, return_sequences=True)),
                               L.GRU(5, return_sequences=True), L.SimpleRNN(2), L.Dense(1)])
    e = make(ember)
    e.save(tmp_path / "e.keras")
    import h5py
    import zipfile
    with zipfile.ZipFile(tmp_path / "e.keras") as z:
        z.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert "layers/bidirectional/forward_layer/cell/vars/1" in names
    assert "layers/bidirectional/backward_layer/cell/vars/2" in names
    assert "layers/gru/cell/vars/2" in names and "layers/simple_rnn/cell/vars/0" in names
    ids = ids_with_padding(4, 6, 20)
    again = ember.models.load_model(tmp_path / "e.keras")
    np.testing.assert_array_equal(again.predict(ids, verbose=0), e.predict(ids, verbose=0))
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k = keras.models.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(np.asarray(k.predict(ids, verbose=0)), e.predict(ids, verbose=0),
                               atol=1e-5)
    k2 = make(keras)
    k2.save(tmp_path / "k.keras")
    back = ember.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(back.predict(ids, verbose=0),
                               np.asarray(k2.predict(ids, verbose=0)), atol=1e-5)
    for a, b in zip(back.layers, k2.layers):
        assert set(a.get_config()) == set(b.get_config()), type(a).__name__


@pytest.mark.parametrize("n", [64, 128])
def test_bits_do_not_depend_on_the_thread_count(n):
    ids = R.integers(0, 50, (n, 12)).astype(np.int32)
    y = R.random((n, 1)).astype(np.float32)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.utils.set_random_seed(4)
        m = ember.Sequential([ember.Input((12,), dtype="int32"),
                              layers.Embedding(50, 16, mask_zero=True),
                              layers.Bidirectional(layers.LSTM(80, return_sequences=True)),
                              layers.GRU(70), layers.Dense(1)])
        m.compile("adam", "mse")
        m.fit(ids, y, batch_size=n, epochs=2, verbose=0, shuffle=False)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


# A few rows at a time (batch-1 inference) split the units of every step over the
# threads once a step's recurrent product is large enough; 200 units is not a multiple
# of the 16-unit shares.
FEW_ROWS = [("LSTM", 128, 1), ("LSTM", 64, 3), ("GRU", 200, 2), ("SimpleRNN", 200, 4)]


@pytest.mark.parametrize("kind,units,n", FEW_ROWS)
def test_a_few_rows_split_by_units_match_the_reference_at_any_thread_count(kind, units, n):
    saved = ember.config.get_num_threads()
    ids = ids_with_padding(4, 9, 12)[:n]
    outs = {}
    for rs in (False, True):
        m = text_model(ember, kind, rs, True, True, T=9, units=units)
        rng = np.random.default_rng(units + n)
        m.set_weights([rng.normal(scale=0.2, size=w.shape).astype(np.float32)
                       for w in m.get_weights()])
        try:
            for threads in (1, 2):
                ember.config.set_num_threads(threads)
                outs[rs, threads] = m.predict(ids, verbose=0)
        finally:
            ember.config.set_num_threads(saved)
        np.testing.assert_array_equal(outs[rs, 1], outs[rs, 2])
        w = [v.astype(np.float64) for v in m.get_weights()]
        np.testing.assert_allclose(outs[rs, 2], model_ref(kind, w, ids, rs, True, True),
                                   rtol=1e-4, atol=1e-5)


def test_training_a_few_rows_at_a_time_gives_the_same_bits_at_any_thread_count():
    from threads import assert_same_weights_at_thread_counts
    ids = ids_with_padding(4, 9, 30)
    y = R.random((4, 1)).astype(np.float32)

    def train():
        ember.utils.set_random_seed(5)
        m = ember.Sequential([ember.Input((9,), dtype="int32"),
                              layers.Embedding(30, 8, mask_zero=True),
                              layers.LSTM(96, return_sequences=True), layers.GRU(128),
                              layers.Dense(1)])
        m.compile("adam", "mse")
        m.fit(ids, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
        return m.get_weights() + [m.predict(ids[:1], verbose=0)]
    assert_same_weights_at_thread_counts(train)


def test_dense_inputs_and_training_reduce_the_loss():
    x = R.normal(size=(64, 10, 3)).astype(np.float32)
    y = (x[:, :, 0].sum(1, keepdims=True) > 0).astype(np.float32)
    m = ember.Sequential([ember.Input((10, 3)), layers.LSTM(16), layers.Dense(1, activation="sigmoid")])
    m.compile(ember.optimizers.Adam(0.02), "binary_crossentropy", metrics=["accuracy"])
    first = m.evaluate(x, y, verbose=0)[0]
    m.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert m.evaluate(x, y, verbose=0)[0] < 0.5 * first


def test_bad_input_names_the_layer_and_the_value():
    with pytest.raises(ValueError, match="lstm.*rank 3.*\\(None, 5\\)"):
        ember.Sequential([ember.Input((5,)), layers.LSTM(3, name="lstm")])
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=f"units must be a positive integer.*{bad}"):
            layers.GRU(bad)
    with pytest.raises(ValueError, match="Invalid merge mode.*'max'"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="Bidirectional takes a SimpleRNN, LSTM or GRU"):
        layers.Bidirectional(layers.Dense(2))
    with pytest.raises(ValueError, match="recurrent_dropout must be in \\[0, 1\\)"):
        layers.LSTM(2, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="activations tanh, sigmoid"):
        layers.SimpleRNN(2, activation="softmax")
    m = ember.Sequential([ember.Input((5,)), layers.Dense(3)])
    before = m.get_weights()
    with pytest.raises(ValueError):
        m.add(layers.LSTM(2))
    assert len(m.layers) == 1
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_orthogonal_initializer():
    q = ember.initializers.Orthogonal(gain=2.0, seed=3)((6, 4))
    np.testing.assert_allclose(q.T @ q, 4 * np.eye(4), atol=1e-5)
    q = ember.initializers.get("orthogonal")((3, 5))
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = layers.LSTM(4)
        w.build((3, 2))
    r = w.recurrent_kernel.numpy()
    np.testing.assert_allclose(r @ r.T, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(w.bias.numpy(), np.r_[np.zeros(4), np.ones(4), np.zeros(8)])


def seq2seq(lib, dropout=0.0):
    """Masking over padded float sequences, an encoder, RepeatVector, a decoder and a
    TimeDistributed Dense."""
    L = lib.layers
    i = lib.Input((6, 3))
    x = L.Masking(0.0)(i)
    x = L.LSTM(5, dropout=dropout)(x)
    x = L.RepeatVector(4)(x)
    x = L.GRU(3, return_sequences=True)(x)
    return lib.Model(i, L.TimeDistributed(L.Dense(2))(x))


def padded_sequences(n):
    x = R.normal(size=(n, 6, 3)).astype(np.float32)
    x[0, 4:] = 0.0
    x[1, :2] = 0.0
    return x


def test_masking_repeat_vector_time_distributed_match_keras(tmp_path):
    from oracles import keras_or_skip, same_as_keras
    keras = keras_or_skip()
    k, e = seq2seq(keras), seq2seq(ember)
    x, y = padded_sequences(5), R.normal(size=(5, 4, 2)).astype(np.float32)
    same_as_keras(keras, k, e, x, y)
    for a, b in zip(e.layers, k.layers):
        assert set(a.get_config()) == set(b.get_config()), type(a).__name__
    k.save(tmp_path / "k.keras")
    np.testing.assert_allclose(ember.models.load_model(tmp_path / "k.keras").predict(x, verbose=0),
                               np.asarray(k.predict(x, verbose=0)), atol=1e-5)
    e.save(tmp_path / "e.keras")
    np.testing.assert_allclose(np.asarray(keras.models.load_model(tmp_path / "e.keras").predict(
        x, verbose=0)), e.predict(x, verbose=0), atol=1e-5)


def test_masking_skips_all_mask_value_steps():
    m = ember.Sequential([ember.Input((4, 2)), layers.Masking(-1.0),
                          layers.SimpleRNN(3, return_sequences=True)])
    x = R.normal(size=(2, 4, 2)).astype(np.float32)
    x[0, 1] = -1.0          # masked: every feature is the mask value
    x[1, 2, 0] = -1.0       # not masked: one feature differs
    W, Rk, b = [w.astype(np.float64) for w in m.get_weights()]
    mask = np.any(x != -1.0, axis=-1)
    want = rnn_ref("SimpleRNN", np.where(mask[:, :, None], x, 0), W, Rk, b, mask, False, True)
    np.testing.assert_allclose(m.predict(x, verbose=0), want, atol=2e-6)


def test_input_dropout_is_one_mask_per_sample_and_feature():
    ember.utils.set_random_seed(1)
    m = seq2seq(ember, dropout=0.5)
    plain = seq2seq(ember)
    plain.set_weights(m.get_weights())
    x = padded_sequences(8)
    np.testing.assert_array_equal(m.predict(x, verbose=0), plain.predict(x, verbose=0))
    assert m.layers[2].get_config()["dropout"] == 0.5
    y = R.normal(size=(8, 4, 2)).astype(np.float32)
    for model in (m, plain):
        model.compile(ember.optimizers.SGD(0.1), "mse")
    assert m.train_on_batch(x, y) != pytest.approx(plain.train_on_batch(x, y), abs=1e-6)
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\)"):
        layers.LSTM(2, dropout=1.0)


@pytest.mark.parametrize("n", [6, 130])
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_dropout_gradients_with_the_drawn_mask(kind, n):
    """Training multiplies the state entering the recurrent product by one mask per
    (sample, unit) for the whole sequence, drawn from the layer's seed and the step;
    inference does not. Finite differences of the float64 model with that mask."""
    from gradcheck import assert_close, numeric_grad
    from ember import _core
    rate = 0.4
    m = ember.Sequential([ember.Input((5, 3)), getattr(layers, kind)(4, recurrent_dropout=rate),
                          layers.Dense(1)])
    plain = ember.Sequential([ember.Input((5, 3)), getattr(layers, kind)(4), layers.Dense(1)])
    plain.set_weights(m.get_weights())
    x = R.normal(size=(n, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x, verbose=0), plain.predict(x, verbose=0))
    u = np.empty((n, 4), dtype=np.float32)
    _core.fill_uniform(u, 0.0, 1.0, m.layers[0]._seed ^ 0x5DEECE66D, 1)  # the first step
    rmask = np.where(u >= np.float32(rate), np.float32(1 / (1 - rate)), np.float32(0))
    assert 0 < (rmask == 0).sum() < rmask.size
    w = [v.astype(np.float64) for v in m.get_weights()]
    y = R.normal(size=(n, 1))

    def loss():
        h = rnn_ref(kind, x.astype(np.float64), w[0], w[1], w[2], None, False, False, rmask)
        return ((h @ w[3] + w[4] - y) ** 2).mean()
    m.compile(ember.optimizers.SGD(1.0), "mse")
    assert m.train_on_batch(x, y.astype(np.float32)) == pytest.approx(loss(), rel=1e-5)
    for k, after in enumerate(m.get_weights()):
        assert_close(w[k] - after, numeric_grad(loss, w[k]), tol=2e-5, what=f"weight {k}")


@pytest.mark.parametrize("last", [20, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_a_smaller_batch_after_a_large_one(kind, last):
    """An epoch's last batch (20 or 2 rows after 128) and a small predict after a large
    one run in the buffers the large batch planned: the same results as on a model that
    only ever saw the small batch."""
    T = 70
    x = R.normal(size=(128 + last, T, 3)).astype(np.float32)
    y = R.normal(size=(128 + last, 1)).astype(np.float32)

    def model():
        m = ember.Sequential([ember.Input((T, 3)), getattr(layers, kind)(64), layers.Dense(1)])
        m.compile(ember.optimizers.SGD(0.1), "mse")
        return m
    big, small = model(), model()
    small.set_weights(big.get_weights())
    big.predict(x, verbose=0, batch_size=len(x))
    np.testing.assert_array_equal(big.predict(x[:last], verbose=0),
                                  small.predict(x[:last], verbose=0))
    big, small = model(), model()  # training planned apart from inference
    big.train_on_batch(x[:128], y[:128])
    small.set_weights(big.get_weights())
    big.train_on_batch(x[128:], y[128:])
    small.train_on_batch(x[128:], y[128:])
    for a, b in zip(big.get_weights(), small.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
