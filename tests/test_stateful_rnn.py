"""stateful=True recurrent layers: each batch starts from the final states of the batch
before (row i from row i), in predict and in training, until reset_states()."""
import numpy as np
import pytest

import ember
from ember import layers
from oracles import keras_or_skip

rng = np.random.default_rng(5)
X = [rng.standard_normal((4, 5, 3)).astype(np.float32) for _ in range(3)]
Y = rng.standard_normal((4, 6)).astype(np.float32)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_states_carry_over_as_in_keras(cell):
    """Keras on JAX carries the states in eager calls (its compiled predict does not
    write them back): ember's predict_on_batch matches Keras's model(x) batch after
    batch, and after a reset."""
    keras = keras_or_skip()
    k = keras.Sequential([keras.Input((5, 3), batch_size=4),
                          getattr(keras.layers, cell)(6, stateful=True)])
    e = ember.Sequential([ember.Input((5, 3), batch_size=4),
                          getattr(layers, cell)(6, stateful=True)])
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    for x in X + [None] + X[:1]:
        if x is None:
            k.layers[0].reset_state()
            e.layers[0].reset_states()
            continue
        np.testing.assert_allclose(e.predict_on_batch(x), np.asarray(k(x)), atol=1e-5)


def test_carried_state_is_an_initial_state():
    """A stateful LSTM after one batch trains exactly as the same LSTM given that batch's
    final states as initial_state: outputs and weights after an Adam step."""
    ember.set_random_seed(1)
    stateful = ember.Sequential([ember.Input((5, 3), batch_size=4),
                                 layers.LSTM(6, stateful=True)])
    seq = ember.Input((5, 3))
    h0, c0 = ember.Input((6,)), ember.Input((6,))
    given = ember.Model([seq, h0, c0], layers.LSTM(6)(seq, initial_state=[h0, c0]))
    given.set_weights(stateful.get_weights())
    probe = ember.Model(seq, layers.LSTM(6, return_state=True)(seq))
    probe.set_weights(stateful.get_weights())
    _, h, c = probe.predict_on_batch(X[0])
    stateful.predict_on_batch(X[0])
    np.testing.assert_allclose(stateful.predict_on_batch(X[1]),
                               given.predict_on_batch([X[1], h, c]), atol=1e-6)
    stateful.reset_states()
    stateful.predict_on_batch(X[0])
    for m in (stateful, given):
        m.compile(ember.optimizers.Adam(0.05), "mse")
    stateful.train_on_batch(X[1], Y)
    given.train_on_batch([X[1], h, c], Y)
    for a, b in zip(stateful.get_weights(), given.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fit_carries_states_across_batches_and_refuses_another_batch_size():
    ember.set_random_seed(2)
    m = ember.Sequential([ember.Input((5, 3), batch_size=4), layers.GRU(6, stateful=True),
                          layers.Dense(1)])
    m.compile("adam", "mse")
    x = np.concatenate(X)
    y = rng.standard_normal((12, 1)).astype(np.float32)
    m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="every batch must have 4 samples.*Received a batch of 3"):
        m.predict(x[:3], verbose=0)
    m.reset_states()
    before = m.predict(x[:4], verbose=0)
    m.reset_states()
    np.testing.assert_array_equal(m.predict(x[:4], verbose=0), before)
    assert not np.array_equal(m.predict(x[:4], verbose=0), before)  # carried this time


def test_config_files_and_bidirectional(tmp_path):
    inner = layers.LSTM(4, stateful=True, return_sequences=True)
    m = ember.Sequential([ember.Input((5, 3), batch_size=4), layers.Bidirectional(inner)])
    first = m.predict_on_batch(X[0])
    assert not np.array_equal(m.predict_on_batch(X[0]), first)
    m.reset_states()
    np.testing.assert_array_equal(m.predict_on_batch(X[0]), first)
    m.layers[0].reset_states()
    m.save(tmp_path / "s.keras")
    back = ember.models.load_model(tmp_path / "s.keras")
    assert back.layers[0].forward_layer.stateful
    np.testing.assert_array_equal(back.predict_on_batch(X[0]), first)
    assert layers.GRU(3, stateful=True).get_config()["stateful"] is True
