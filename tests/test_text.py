"""Embedding, Conv1D and the 1-D pooling layers: gradients, masks, the sparse optimizer
update against a dense NumPy reference, and the oracles (PyTorch, Keras)."""
import numpy as np
import pytest

import ember
from ember import layers

from gradcheck import assert_close
from oracles import keras_or_skip, torch_or_skip


def seq_model(*body, steps=6, loss="mse", optimizer=None):
    m = ember.Sequential([layers.Input((steps,))] + list(body))
    m.compile(optimizer or ember.optimizers.SGD(1.0), loss)
    return m


def sgd_gradients(model, x, y):
    """The loss gradient of every weight: one SGD(1.0) step moves w by -grad."""
    before = model.get_weights()
    model.train_on_batch(x, y)
    after = model.get_weights()
    model.set_weights(before)
    return [b.astype(np.float64) - a for b, a in zip(before, after)]


def numeric_gradients(model, x, y, picks=12, eps=1e-3, seed=0):
    """Central differences of the float32 loss at `picks` entries of every weight."""
    rng = np.random.default_rng(seed)
    weights = model.get_weights()
    out = []
    for i, w in enumerate(weights):
        idx = rng.choice(w.size, size=min(picks, w.size), replace=False)
        g = {}
        for k in idx:
            vals = []
            for sign in (1, -1):
                ws = [v.copy() for v in weights]
                ws[i].flat[k] += sign * eps
                model.set_weights(ws)
                vals.append(model.evaluate(x, y, verbose=0, batch_size=len(x)))
            g[k] = (vals[0] - vals[1]) / (2 * eps)
        out.append(g)
    model.set_weights(weights)
    return out


def check_gradients(model, x, y, tol=1e-3, eps=1e-3):
    """Central differences of the float32 loss: clean runs stay below 1.5e-4 (float32
    rounding over eps=1e-3); a scatter-add that drops a repeated row gives 1.6e-2."""
    analytic = sgd_gradients(model, x, y)
    numeric = numeric_gradients(model, x, y, eps=eps)
    for i, (a, num) in enumerate(zip(analytic, numeric)):
        keys = sorted(num)
        assert_close(a.flat[keys], np.array([num[k] for k in keys]), tol, what=f"weight {i}")


# Embedding values far apart (relative to the finite-difference step), so that no
# perturbation changes which step wins a max.
SPREAD = ember.initializers.RandomNormal(stddev=1.0)


def ids(n, steps, vocab, seed=0, pad_from=None):
    x = np.random.default_rng(seed).integers(1, vocab, (n, steps))
    if pad_from is not None:
        x[:, pad_from:] = 0
    return x


# ---------------------------------------------------------------- Embedding

def test_embedding_forward_is_a_gather():
    ember.set_random_seed(0)
    m = seq_model(layers.Embedding(10, 3))
    table = m.layers[0].get_weights()[0]
    assert table.shape == (10, 3) and np.abs(table).max() <= 0.05  # Keras: uniform(+-0.05)
    x = ids(4, 6, 10)
    np.testing.assert_array_equal(m.predict(x, verbose=0), table[x])


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.int64, np.float32,
                                   np.float64])
def test_embedding_accepts_any_int_dtype_and_whole_floats(dtype):
    ember.set_random_seed(0)
    m = seq_model(layers.Embedding(100, 2))
    x = ids(3, 6, 100).astype(dtype)
    np.testing.assert_array_equal(m.predict(x, verbose=0),
                                  m.layers[0].get_weights()[0][x.astype(int)])


@pytest.mark.parametrize("bad,what", [(100, "outside"), (-1, "outside"), (2.5, "whole"),
                                      (np.nan, "whole")])
def test_embedding_rejects_bad_ids_naming_them(bad, what):
    m = seq_model(layers.Embedding(100, 2), layers.GlobalAveragePooling1D(), layers.Dense(1))
    x = ids(3, 6, 100).astype(np.float64)
    x[1, 4] = bad
    with pytest.raises(ValueError, match=rf"x\[1, 4\] = {bad}.*{what}"):
        m.predict(x, verbose=0)
    with pytest.raises(ValueError, match="input_dim=100"):
        m.fit(x, np.zeros((3, 1)), verbose=0)


def test_embedding_bad_config():
    with pytest.raises(ValueError, match="input_dim"):
        layers.Embedding(0, 4)
    with pytest.raises(ValueError, match="output_dim"):
        layers.Embedding(10, 2.5)
    with pytest.raises(ValueError, match="embeddings_regularizer"):
        layers.Embedding(10, 2, embeddings_regularizer="l2")
    with pytest.raises(ValueError, match="outside"):  # ids must reach it unchanged
        seq_model(layers.Dense(6), layers.Embedding(10, 2)).predict(ids(2, 6, 10), verbose=0)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_embedding_and_1d_pooling_gradients(pool):
    ember.set_random_seed(1)
    pooling = layers.GlobalMaxPooling1D() if pool == "max" else layers.GlobalAveragePooling1D()
    m = seq_model(layers.Embedding(9, 4, embeddings_initializer=SPREAD), pooling,
                  layers.Dense(3, activation="tanh"), layers.Dense(1))
    x = ids(5, 6, 9, seed=2)
    y = np.random.default_rng(3).normal(size=(5, 1))
    check_gradients(m, x, y)


def test_conv1d_and_windowed_pooling_gradients():
    ember.set_random_seed(2)
    m = seq_model(layers.Embedding(9, 3, embeddings_initializer=SPREAD),
                  layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),
                  layers.MaxPooling1D(2), layers.Conv1D(3, 2, padding="same", strides=2),
                  layers.AveragePooling1D(1), layers.Flatten(), layers.Dense(1), steps=8)
    x = ids(4, 8, 9, seed=4)
    y = np.random.default_rng(5).normal(size=(4, 1))
    check_gradients(m, x, y)


def test_rows_not_in_the_batch_get_no_gradient():
    ember.set_random_seed(3)
    m = seq_model(layers.Embedding(20, 4), layers.GlobalAveragePooling1D(), layers.Dense(1))
    x = np.array([[1, 2, 3, 1, 2, 3]])
    g = sgd_gradients(m, x, np.ones((1, 1)))[0]
    used = np.zeros(20, bool)
    used[[1, 2, 3]] = True
    assert np.all(g[~used] == 0) and np.all(np.abs(g[used]).sum(1) > 0)


# ---------------------------------------------------------------- masks

def masked_model(pool, between=()):
    m = seq_model(layers.Embedding(5, 2, mask_zero=True), *between, pool, steps=4)
    table = np.array([[100.0, -100.0], [1, 2], [3, -1], [-2, 5], [0.5, 0.5]], np.float32)
    m.layers[0].set_weights([table])
    return m


@pytest.mark.parametrize("between", [(), (layers.Activation("linear"),), (layers.Dropout(0.5),)])
def test_masked_global_pooling_by_hand(between):
    x = np.array([[1, 2, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0], [2, 2, 2, 2]])
    avg = masked_model(layers.GlobalAveragePooling1D(), between).predict(x, verbose=0)
    np.testing.assert_allclose(avg, [[2, 0.5], [-0.75, 2.75], [0, 0], [3, -1]])
    mx = masked_model(layers.GlobalMaxPooling1D(), between).predict(x, verbose=0)
    # Row 0 of the table (100, -100) never wins: its steps are masked. All masked -> 0.
    np.testing.assert_allclose(mx, [[3, 2], [0.5, 5], [0, 0], [3, -1]])


def test_without_mask_zero_the_padding_row_counts():
    m = seq_model(layers.Embedding(5, 2), layers.GlobalAveragePooling1D(), steps=4)
    m.layers[0].set_weights([np.arange(10, dtype=np.float32).reshape(5, 2)])
    np.testing.assert_allclose(m.predict(np.array([[1, 0, 0, 0]]), verbose=0), [[0.5, 1.5]])


def test_masked_gradients_skip_masked_steps():
    for pool in (layers.GlobalAveragePooling1D(), layers.GlobalMaxPooling1D()):
        m = masked_model(pool)
        m.compile(ember.optimizers.SGD(1.0), "mse")
        x = np.array([[1, 2, 0, 0]])
        g = sgd_gradients(m, x, np.zeros((1, 2)))[0]
        assert np.all(g[[0, 3, 4]] == 0) and np.any(g[[1, 2]] != 0)


def test_fused_max_pool_equals_unfused():
    ember.set_random_seed(4)
    x = ids(64, 10, 30, seed=6)
    y = np.random.default_rng(7).integers(0, 3, 64)
    weights = None
    results = []
    for between in ((), (layers.Activation("linear"),)):  # an activation blocks the fusion
        m = seq_model(layers.Embedding(30, 8), *between, layers.GlobalMaxPooling1D(),
                      layers.Dense(3, activation="softmax"), steps=10,
                      loss="sparse_categorical_crossentropy", optimizer="adam")
        if weights is None:
            weights = m.get_weights()
        m.set_weights(weights)
        m.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        results.append(m.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- optimizer semantics

def numpy_step(kind, w, g, state, t, lr):
    """Keras's dense update rules in float64 (DESIGN.md section 4)."""
    if kind == "adam":
        m, v = state
        m += (g - m) * (1 - 0.9)
        v += (g * g - v) * (1 - 0.999)
        alpha = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w -= alpha * m / (np.sqrt(v) + 1e-7)
    elif kind == "rmsprop":
        (v,) = state
        v[...] = 0.9 * v + 0.1 * g * g
        w -= lr * g / np.sqrt(v + 1e-7)
    else:  # sgd with momentum 0.9
        (m,) = state
        m[...] = 0.9 * m - lr * g
        w += m


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_embedding_update_equals_the_dense_gradient_update(kind):
    """Three steps on batches that use different rows: every row of the table, used
    or not, follows Keras's dense update (unused rows keep moving on their momentum)."""
    ember.set_random_seed(5)
    opt = {"adam": ember.optimizers.Adam(0.01), "rmsprop": ember.optimizers.RMSprop(0.01),
           "sgd": ember.optimizers.SGD(0.01, momentum=0.9)}[kind]
    m = seq_model(layers.Embedding(12, 3), layers.GlobalAveragePooling1D(), steps=4,
                  optimizer=opt)
    w = m.get_weights()[0].astype(np.float64)
    state = [np.zeros_like(w) for _ in range(2 if kind == "adam" else 1)]
    batches = [np.array([[1, 2, 2, 3]]), np.array([[4, 5, 6, 4]]), np.array([[7, 7, 7, 7]])]
    y = np.array([[0.5, -0.5, 1.0]])
    for t, x in enumerate(batches, start=1):
        # dL/dw for mse of the mean embedding: 2 (mean - y) / (3 outputs), spread by 1/4.
        mean = w[x[0]].mean(0)
        g = np.zeros_like(w)
        np.add.at(g, x[0], np.broadcast_to(2 * (mean - y[0]) / 3 / 4, (4, 3)))
        numpy_step(kind, w, g, state, t, 0.01)
        m.train_on_batch(x, y)
        np.testing.assert_allclose(m.get_weights()[0], w, rtol=2e-5, atol=2e-6)
    assert np.any(state[0][1] != 0)  # rows 1..3 kept a momentum after step 1


# ---------------------------------------------------------------- shapes, oracles, contract

def test_1d_output_shapes_and_bad_arguments():
    m = seq_model(layers.Embedding(10, 4), layers.Conv1D(5, 3), layers.MaxPooling1D(),
                  layers.Conv1D(2, 2, padding="causal", dilation_rate=2),
                  layers.AveragePooling1D(2, strides=1, padding="same"),
                  layers.GlobalMaxPooling1D(keepdims=True), steps=12)
    assert m.predict(ids(2, 12, 10), verbose=0).shape == (2, 1, 2)
    assert [l.output_shape for l in m.layers] == [
        (None, 12, 4), (None, 10, 5), (None, 5, 5), (None, 5, 2), (None, 5, 2), (None, 1, 2)]
    with pytest.raises(ValueError, match="padding"):
        layers.Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="padding"):
        layers.MaxPooling1D(padding="causal")
    with pytest.raises(ValueError, match="negative"):
        seq_model(layers.Embedding(10, 4), layers.Conv1D(2, 7), steps=4).predict(
            ids(1, 4, 10), verbose=0)


def test_conv1d_matches_torch():
    torch = torch_or_skip()
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 11, 4)).astype(np.float32)
    for padding, strides, dilation in [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2),
                                       ("same", 1, 3), ("causal", 2, 1)]:
        conv = layers.Conv1D(5, 3, strides=strides, padding=padding, dilation_rate=dilation)
        m = ember.Sequential([layers.Input((11, 4)), conv])
        m.compile(ember.optimizers.SGD(1.0), "mse")
        k, b = conv.get_weights()
        xt = torch.tensor(x).permute(0, 2, 1).requires_grad_()
        wt = torch.tensor(k).permute(2, 1, 0).requires_grad_()  # (out, in, k)
        bt = torch.tensor(b).requires_grad_()
        if padding == "causal":
            inp, pad = F.pad(xt, (2 * dilation, 0)), 0
        elif padding == "same":
            total = max((-(-11 // strides) - 1) * strides + 2 * dilation + 1 - 11, 0)
            inp, pad = F.pad(xt, (total // 2, total - total // 2)), 0
        else:
            inp, pad = xt, 0
        out = F.conv1d(inp, wt, bt, stride=strides, dilation=dilation, padding=pad)
        ours = m.predict(x, verbose=0)
        np.testing.assert_allclose(ours, out.permute(0, 2, 1).detach().numpy(), atol=1e-5)
        target = rng.normal(size=ours.shape).astype(np.float32)
        loss = ((out.permute(0, 2, 1) - torch.tensor(target)) ** 2).mean()
        loss.backward()
        gk, gb = sgd_gradients(m, x, target)
        np.testing.assert_allclose(gk, wt.grad.permute(2, 1, 0).numpy(), atol=1e-5)
        np.testing.assert_allclose(gb, bt.grad.numpy(), atol=1e-5)


def test_text_model_matches_keras():
    keras = keras_or_skip()
    x = ids(6, 12, 40, seed=9, pad_from=9)
    y = np.random.default_rng(10).integers(0, 4, 6)

    def build(lib):
        L = lib.layers
        return lib.Sequential([L.Input((12,)), L.Embedding(40, 8, mask_zero=True),
                               L.Conv1D(6, 3, padding="causal", activation="relu"),
                               L.MaxPooling1D(2), L.GlobalAveragePooling1D(),
                               L.Dense(4, activation="softmax")])
    km, em = build(keras), build(ember)
    em.set_weights(km.get_weights())
    np.testing.assert_allclose(em.predict(x, verbose=0), km.predict(x, verbose=0), atol=1e-5)
    for model in (km, em):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
    for a, b in zip(em.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


def test_masked_average_matches_keras():
    keras = keras_or_skip()
    x = ids(5, 10, 30, seed=11)
    x[:, 6:] = 0
    x[2, 2:] = 0

    def build(lib):
        L = lib.layers
        return lib.Sequential([L.Input((10,)), L.Embedding(30, 4, mask_zero=True),
                               L.Dropout(0.3), L.GlobalAveragePooling1D(), L.Dense(2)])
    km, em = build(keras), build(ember)
    em.set_weights(km.get_weights())
    np.testing.assert_allclose(em.predict(x, verbose=0), km.predict(x, verbose=0), atol=1e-6)


def test_layer_configs_match_keras_and_round_trip(tmp_path):
    keras = keras_or_skip()
    pairs = [(layers.Embedding(10, 3, mask_zero=True), keras.layers.Embedding(10, 3)),
             (layers.Conv1D(4, 3, padding="causal"), keras.layers.Conv1D(4, 3)),
             (layers.MaxPooling1D(), keras.layers.MaxPooling1D()),
             (layers.AveragePooling1D(2), keras.layers.AveragePooling1D(2)),
             (layers.GlobalMaxPooling1D(), keras.layers.GlobalMaxPooling1D()),
             (layers.GlobalAveragePooling1D(), keras.layers.GlobalAveragePooling1D())]
    for ours, theirs in pairs:
        assert set(ours.get_config()) == set(theirs.get_config()), type(ours).__name__
        clone = type(ours).from_config(ours.get_config())
        assert clone.get_config() == ours.get_config()
    m = seq_model(layers.Embedding(10, 3), layers.Conv1D(2, 2), layers.GlobalMaxPooling1D(),
                  optimizer="adam")
    x = ids(3, 6, 10)
    m.save(tmp_path / "m.keras")
    again = ember.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_growing_batch_keeps_the_sparse_gradient_right(pool):
    """A larger batch re-plans the embedding's scratch between steps; the result must
    equal a run planned for the large batch from the start."""
    x = ids(40, 5, 25, seed=12)
    y = np.random.default_rng(13).integers(0, 2, 40)
    results = []
    for plan_first in (False, True):
        ember.set_random_seed(6)
        pooling = layers.GlobalMaxPooling1D() if pool == "max" else layers.GlobalAveragePooling1D()
        m = seq_model(layers.Embedding(25, 4), pooling, layers.Dense(2, activation="softmax"),
                      steps=5, loss="sparse_categorical_crossentropy", optimizer="adam")
        if plan_first:
            m.predict(x, verbose=0)  # plans for 40 samples
        for lo, hi in ((0, 3), (3, 40), (0, 40)):
            m.train_on_batch(x[lo:hi], y[lo:hi])
        results.append(m.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
