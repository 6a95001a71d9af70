"""Recurrent layers' initial_state and return_state (the encoder-decoder idiom), GRU with
reset_after=False, and Bidirectional with merge_mode=None or return_state: against a
float64 NumPy reference and its finite differences, Keras 3 on shared weights and
files, thread-count bits and bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(33)
# (layer class, extra arguments, the name the reference knows it by)
CELLS = [("SimpleRNN", {}, "SimpleRNN"), ("LSTM", {}, "LSTM"), ("GRU", {}, "GRU"),
         ("GRU", {"reset_after": False}, "GRU0")]
IDS = [c[2] for c in CELLS]


def sig(v):
    return 1 / (1 + np.exp(-v))


def rnn_ref(kind, x, W, Rk, b, mask=None, go_backwards=False, return_sequences=False,
            h0=None, c0=None):
    """Keras's recurrences in float64 from the state (h0, c0), zeros when not given:
    (output, final h, final c). GRU0 is GRU with reset_after=False."""
    n, T, _ = x.shape
    U = Rk.shape[0]
    h = np.zeros((n, U)) if h0 is None else h0
    c = np.zeros((n, U)) if c0 is None else c0
    outs = []
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        m = mask[:, t][:, None] if mask is not None else np.ones((n, 1), bool)
        xw = x[:, t] @ W + (b[0] if kind == "GRU" else b)
        if kind == "SimpleRNN":
            hn = np.tanh(xw + h @ Rk)
        elif kind == "LSTM":
            i, f, g, o = np.split(xw + h @ Rk, 4, axis=1)
            cn = sig(f) * c + sig(i) * np.tanh(g)
            hn = sig(o) * np.tanh(cn)
            c = np.where(m, cn, c)
        elif kind == "GRU":
            xz, xr, xh = np.split(xw, 3, axis=1)
            rz, rr, rh = np.split(h @ Rk + b[1], 3, axis=1)
            z, r = sig(xz + rz), sig(xr + rr)
            hn = z * h + (1 - z) * np.tanh(xh + r * rh)
        else:  # GRU0
            U2 = 2 * U
            xz, xr, xh = np.split(xw, 3, axis=1)
            rz, rr = np.split(h @ Rk[:, :U2], 2, axis=1)
            z, r = sig(xz + rz), sig(xr + rr)
            hn = z * h + (1 - z) * np.tanh(xh + (r * h) @ Rk[:, U2:])
        h = np.where(m, hn, h)
        outs.append(h)
    return (np.stack(outs, 1) if return_sequences else h), h, c


def seq2seq(lib, cls, extra, go_backwards=False, masked=False, T1=5, T2=4, F=3, U=4):
    """An encoder whose final states start a decoder (Keras's seq2seq idiom)."""
    L = lib.layers
    enc_in, dec_in = lib.Input((T1, F)), lib.Input((T2, F))
    enc = getattr(L, cls)(U, return_state=True, go_backwards=go_backwards, **extra)
    _, *states = enc(L.Masking(0.0)(enc_in) if masked else enc_in)
    dec = getattr(L, cls)(U, return_sequences=True, **extra)(dec_in, initial_state=states)
    return lib.Model([enc_in, dec_in], L.Dense(1)(dec))


def seq2seq_ref(kind, w, x1, x2, go_backwards, masked):
    We, Re, be, Wd, Rd, bd, Wo, bo = w
    mask = (x1 != 0).any(-1) if masked else None
    _, h, c = rnn_ref(kind, x1, We, Re, be, mask, go_backwards=go_backwards)
    seq, _, _ = rnn_ref(kind, x2, Wd, Rd, bd, return_sequences=True, h0=h,
                        c0=c if kind == "LSTM" else None)
    return seq @ Wo + bo


def seq2seq_data(n=6):
    x1 = R.normal(size=(n, 5, 3)).astype(np.float32)
    x2 = R.normal(size=(n, 4, 3)).astype(np.float32)
    x1[0, 3:] = 0  # masked steps at the end (the final state is carried over them)
    x1[1, 0] = 0   # and at the start
    return x1, x2


@pytest.mark.parametrize("cls,extra,kind", CELLS, ids=IDS)
@pytest.mark.parametrize("gb,masked,n", [(False, False, 6), (True, True, 6), (True, True, 130)])
def test_states_match_the_float64_reference_and_its_gradients(cls, extra, kind, gb, masked, n):
    """The decoder's initial state and its gradient: the encoder's weights train
    through it only. At 130 rows the input side runs step by step."""
    from gradcheck import assert_close, numeric_grad
    m = seq2seq(ember, cls, extra, gb, masked)
    x1, x2 = seq2seq_data(n)
    w = [v.astype(np.float64) for v in m.get_weights()]
    np.testing.assert_allclose(m.predict([x1, x2], verbose=0),
                               seq2seq_ref(kind, w, x1, x2, gb, masked), atol=2e-6)
    y = R.normal(size=(n, 4, 1))
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch([x1, x2], y.astype(np.float32))

    def loss():
        return ((seq2seq_ref(kind, w, x1, x2, gb, masked) - y) ** 2).mean()
    for k, after in enumerate(m.get_weights()):
        assert_close(w[k] - after, numeric_grad(loss, w[k]), tol=2e-5, what=f"weight {k}")


@pytest.mark.parametrize("cls,extra,kind", CELLS, ids=IDS)
def test_seq2seq_matches_keras_and_files_cross(cls, extra, kind, tmp_path):
    from oracles import adam_step_like_keras, keras_or_skip
    keras = keras_or_skip()
    k, e = seq2seq(keras, cls, extra, masked=True), seq2seq(ember, cls, extra, masked=True)
    assert [tuple(w.shape) for w in e.weights] == [tuple(w.shape) for w in k.weights]
    x, y = seq2seq_data(), R.random((6, 4, 1)).astype(np.float32)
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    e.save(tmp_path / "e.keras")
    k.save(tmp_path / "k.keras")
    np.testing.assert_allclose(e.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)),
                               atol=1e-5)
    from_keras = ember.saving.load_model(tmp_path / "k.keras")
    from_ember = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(from_keras.predict(x, verbose=0), e.predict(x, verbose=0),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(from_ember.predict(x, verbose=0)),
                               e.predict(x, verbose=0), atol=1e-5)
    adam_step_like_keras(keras, k, e, x, y)


@pytest.mark.parametrize("cls,extra,kind", CELLS, ids=IDS)
def test_states_as_model_outputs_and_eager_calls(cls, extra, kind):
    """return_state's tensors as outputs, a layer on arrays with and without
    initial_state, and the states of a masked sequence (carried over masked steps)."""
    x = R.normal(size=(5, 6, 3)).astype(np.float32)
    x[0, 3:] = 0
    i = ember.Input((6, 3))
    layer = getattr(layers, cls)(4, return_state=True, return_sequences=True, **extra)
    outs = layer(layers.Masking(0.0)(i))
    assert [tuple(t.shape) for t in outs] == [(None, 6, 4)] + [(None, 4)] * len(outs[1:])
    m = ember.Model(i, outs)
    got = m.predict(x, verbose=0)
    w = [v.astype(np.float64) for v in layer.get_weights()]
    seq, h, c = rnn_ref(kind, x, *w, mask=(x != 0).any(-1), return_sequences=True)
    for a, b in zip(got, [seq, h, c]):
        np.testing.assert_allclose(a, b, atol=2e-6)
    assert np.array_equal(got[1][0], got[0][0, 2])  # the state at the last unmasked step
    # Eagerly, from given states.
    states = [R.normal(size=(5, 4)).astype(np.float32) for _ in outs[1:]]
    eager = layer(x, initial_state=states)
    ref = rnn_ref(kind, x, *w, return_sequences=True, h0=states[0].astype(np.float64),
                  c0=states[1].astype(np.float64) if kind == "LSTM" else None)
    for a, b in zip(eager, ref):
        np.testing.assert_allclose(a, b, atol=2e-6)


def bidirectional(lib, kind, mode, rs, with_states):
    L = lib.layers
    i = lib.Input((7,), dtype="int32")
    x = L.Embedding(12, 5, mask_zero=True)(i)
    bi = L.Bidirectional(getattr(L, kind)(3, return_sequences=rs, return_state=with_states),
                         merge_mode=mode)
    outs = bi(x)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    if rs:
        outs = [L.GlobalAveragePooling1D()(o) if len(o.shape) == 3 else o for o in outs]
    joined = L.Concatenate()(outs) if len(outs) > 1 else outs[0]
    return lib.Model(i, L.Dense(1)(joined))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("mode,rs,with_states", [(None, True, False), (None, False, True),
                                                 ("concat", True, True), ("sum", False, True)])
def test_bidirectional_outputs_and_states_match_keras(kind, mode, rs, with_states):
    from oracles import keras_or_skip, same_as_keras
    from test_recurrent import ids_with_padding
    keras = keras_or_skip()
    k = bidirectional(keras, kind, mode, rs, with_states)
    e = bidirectional(ember, kind, mode, rs, with_states)
    same_as_keras(keras, k, e, ids_with_padding(6, 7, 12), R.random((6, 1)).astype(np.float32))


def test_bidirectional_initial_state_is_forward_then_backward():
    x = R.normal(size=(4, 5, 3)).astype(np.float32)
    states = [R.normal(size=(4, 2)).astype(np.float32) for _ in range(4)]
    bi = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)
    f, b = bi(x, initial_state=states)
    fw = [w.astype(np.float64) for w in bi.forward_layer.get_weights()]
    bw = [w.astype(np.float64) for w in bi.backward_layer.get_weights()]
    s = [v.astype(np.float64) for v in states]
    np.testing.assert_allclose(f, rnn_ref("LSTM", x, *fw, return_sequences=True, h0=s[0],
                                          c0=s[1])[0], atol=2e-6)
    np.testing.assert_allclose(b, rnn_ref("LSTM", x, *bw, go_backwards=True,
                                          return_sequences=True, h0=s[2], c0=s[3])[0][:, ::-1],
                               atol=2e-6)


def test_gru_without_reset_after_matches_keras_on_text():
    from oracles import keras_or_skip, same_as_keras
    from test_recurrent import ids_with_padding
    keras = keras_or_skip()

    def make(lib):
        L = lib.layers
        i = lib.Input((7,), dtype="int32")
        x = L.Embedding(12, 5, mask_zero=True)(i)
        x = L.GRU(4, reset_after=False, go_backwards=True, return_sequences=True)(x)
        return lib.Model(i, L.Dense(1)(L.GlobalAveragePooling1D()(x)))
    k, e = make(keras), make(ember)
    assert [tuple(w.shape) for w in e.weights] == [tuple(w.shape) for w in k.weights]
    same_as_keras(keras, k, e, ids_with_padding(6, 7, 12), R.random((6, 1)).astype(np.float32))


def test_bits_do_not_depend_on_the_thread_count():
    """Big enough for the steps' arithmetic and products to split over the threads."""
    x, y = seq2seq_data(64), R.random((64, 4, 1)).astype(np.float32)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.utils.set_random_seed(3)
        m = seq2seq(ember, "GRU", {"reset_after": False}, masked=True, U=96)
        m.compile("adam", "mse")
        m.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_bad_states_name_the_layer_and_the_value():
    i, h = ember.Input((5, 3)), ember.Input((4,))
    with pytest.raises(ValueError, match=r"LSTM 'enc'.*2 tensor\(s\) of shape \(batch, 4\)"):
        layers.LSTM(4, name="enc")(i, initial_state=[h])
    with pytest.raises(ValueError, match=r"GRU 'g'.*Received shapes \[\(None, 3\)\]"):
        layers.GRU(4, name="g")(i, initial_state=[ember.Input((3,))])
    with pytest.raises(ValueError, match="forward layer's states, then the backward"):
        layers.Bidirectional(layers.GRU(4))(i, initial_state=[h, h, h])
    with pytest.raises(ValueError, match="Invalid merge mode.*'max'"):
        layers.Bidirectional(layers.GRU(4), merge_mode="max")
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"SimpleRNN .*Received shapes \[\(None, 5\)\]"):
        layers.SimpleRNN(4)(x, initial_state=np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="single output"):
        ember.Sequential([ember.Input((5, 3)), layers.LSTM(4, return_state=True)])
