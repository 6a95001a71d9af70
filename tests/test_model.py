"""The Keras training API on Sequential models: contracts, errors, end to end."""
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ember
from ember import layers


def make_model(inputs=8, classes=3, loss="sparse_categorical_crossentropy", out_act="softmax",
               optimizer="adam", metrics=("accuracy",)):
    m = ember.Sequential([layers.Input((inputs,)), layers.Dense(16, activation="relu"),
                          layers.Dense(classes, activation=out_act)])
    m.compile(optimizer, loss, metrics=list(metrics))
    return m


def blobs(n=200, inputs=8, classes=3, seed=0):
    r = np.random.default_rng(seed)
    y = r.integers(0, classes, n)
    centers = r.normal(size=(classes, inputs)) * 3
    return (centers[y] + r.normal(size=(n, inputs))).astype(np.float32), y


def test_sequential_add_and_list_are_equivalent():
    ember.set_random_seed(1)
    a = ember.Sequential([layers.Input((4,)), layers.Dense(3)])
    ember.set_random_seed(1)
    b = ember.Sequential()
    b.add(layers.Input((4,)))
    b.add(layers.Dense(3))
    assert [w.shape for w in a.get_weights()] == [(4, 3), (3,)]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_fit_returns_history_with_keras_keys():
    ember.set_random_seed(0)
    x, y = blobs()
    m = make_model()
    h = m.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    assert list(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3's order
    assert all(len(v) == 3 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_evaluate_and_predict():
    ember.set_random_seed(0)
    x, y = blobs()
    m = make_model()
    m.fit(x, y, epochs=20, verbose=0)
    loss, acc = m.evaluate(x, y, verbose=0)
    assert acc > 0.9 and loss < 0.5
    d = m.evaluate(x, y, verbose=0, return_dict=True)
    assert d == {"loss": loss, "accuracy": acc}
    p = m.predict(x, verbose=0)
    assert p.shape == (200, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(p.argmax(1) == y) == pytest.approx(acc)
    np.testing.assert_array_equal(m.predict_on_batch(x[:5]), p[:5])


def test_calling_the_model_is_inference():
    ember.set_random_seed(0)
    x, _ = blobs()
    m = make_model()
    np.testing.assert_array_equal(m(x), m.predict(x, verbose=0))
    np.testing.assert_array_equal(m(x[:1], training=False), m.predict_on_batch(x[:1]))
    # training=True: a forward in training mode (dropout, batch statistics); no update.
    before = m.get_weights()
    out = m(x, training=True)
    assert out.shape == m.predict(x, verbose=0).shape and np.isfinite(out).all()
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expected shape"):
        m(x[:, :5], training=True)
    with pytest.raises(ValueError, match="mask"):
        m(x, mask=np.ones(len(x)))
    with pytest.raises(ValueError):
        m(x[:, :5])  # wrong width: the same error as predict


def test_predict_fast_path_matches_the_checked_path():
    # A ready float32 batch goes through one C++ call; anything else through the checked
    # path. Both give the same bits, and bad input still gets the checked path's errors.
    ember.set_random_seed(0)
    x, _ = blobs(n=40)
    m = make_model()
    m.predict(x, verbose=0)  # builds the graph

    def checked(rows):
        out = np.empty((len(rows), 3), np.float32)
        m._graph.predict(m._prepare_x(rows), out, 0, len(rows))
        return out

    ref = np.concatenate([checked(x[i:i + 1]) for i in range(3)])
    fast = np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(3)])
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(m.predict_on_batch(x[:3]), m.predict(x[:3].tolist(), verbose=0))
    np.testing.assert_array_equal(m.predict(x[:3].astype(np.float64), verbose=0),
                                  m.predict(x[:3], verbose=0))
    strided = np.asfortranarray(x[:3])  # not C-contiguous: checked path, same numbers
    np.testing.assert_array_equal(m.predict(strided, verbose=0), m.predict(x[:3], verbose=0))
    # More rows than one batch: batched by 32 as before, whatever the path.
    np.testing.assert_array_equal(m.predict(x, verbose=0)[32:],
                                  m.predict(x[32:], verbose=0))
    bad = x[:2].copy()
    bad[1, 4] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite.*\(1, 4\)"):
        m.predict(bad, verbose=0)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        m.predict_on_batch(bad)
    with pytest.raises(ValueError, match=r"found shape=\(1, 7\)"):
        m.predict(np.zeros((1, 7), np.float32), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        m.predict_on_batch(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        m.predict(x[:1], batch_size=0, verbose=0)


def test_evaluate_without_metrics_returns_scalar():
    x, y = blobs()
    m = make_model(metrics=())
    assert isinstance(m.evaluate(x, y, verbose=0), float)


def test_validation_data_and_no_shuffle():
    x, y = blobs()
    m = make_model()
    h = m.fit(x[:150], y[:150], validation_data=(x[150:], y[150:]), epochs=2, shuffle=False,
              verbose=0)
    assert "val_accuracy" in h.history


def test_no_shuffle_takes_the_batches_in_order():
    """shuffle=False: the same steps as train_on_batch over consecutive slices, bit for
    bit; the default shuffle takes another order."""
    x, y = blobs(100)
    results = []
    for how in ("fit", "by_hand", "shuffled"):
        ember.set_random_seed(4)
        m = make_model(optimizer=ember.optimizers.SGD(0.1))
        if how == "fit":
            m.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        elif how == "shuffled":
            m.fit(x, y, batch_size=32, epochs=2, verbose=0)
        else:
            for _ in range(2):
                for s in range(0, 100, 32):
                    m.train_on_batch(x[s:s + 32], y[s:s + 32])
        results.append(m.get_weights())
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][0], results[2][0])


@pytest.mark.parametrize("loss,out_act,ytype", [
    ("categorical_crossentropy", "softmax", "onehot"),
    ("binary_crossentropy", "sigmoid", "binary"),
    ("mse", "linear", "binary"),
])
def test_other_losses_train(loss, out_act, ytype):
    ember.set_random_seed(0)
    x, y = blobs(classes=2)
    if ytype == "onehot":
        target, classes = ember.utils.to_categorical(y, 2), 2
    else:
        target, classes = y.astype(np.float32), 1
    m = make_model(classes=classes, loss=loss, out_act=out_act)
    h = m.fit(x, target, epochs=40, verbose=0)
    assert h.history["accuracy"][-1] > 0.9


def test_sgd_and_rmsprop_train():
    for opt in [ember.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "rmsprop", "sgd"]:
        ember.set_random_seed(0)
        x, y = blobs()
        m = make_model(optimizer=opt)
        h = m.fit(x, y, epochs=10, verbose=0)
        assert h.history["loss"][-1] < h.history["loss"][0]


def test_progress_output_formats(capsys):
    x, y = blobs(64)
    m = make_model()
    m.fit(x, y, epochs=2, batch_size=32, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2"
    assert out[1].startswith("2/2 - ") and " - accuracy: " in out[1] and " - loss: " in out[1]
    m.fit(x, y, epochs=1, batch_size=32, verbose=1)
    out = capsys.readouterr().out.splitlines()
    # one epoch: no "Epoch" header; not a terminal: one clean line, no carriage returns
    assert len(out) == 1 and out[0].startswith("2/2 \u2501") and "\r" not in out[0]
    assert "/step - accuracy: " in out[0]


def test_seeded_runs_are_reproducible():
    x, y = blobs()
    weights = []
    for _ in range(2):
        ember.set_random_seed(42)
        m = ember.Sequential([layers.Input((8,)), layers.Dense(16, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=2, verbose=0)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_weights_are_views_and_set_weights_round_trips():
    m = make_model()
    w = m.get_weights()
    w[0][:] = 0.5
    m.set_weights(w)
    np.testing.assert_array_equal(m.layers[0].kernel.numpy(), 0.5)
    assert m.count_params() == 8 * 16 + 16 + 16 * 3 + 3
    with pytest.raises(ValueError, match="shape"):
        m.set_weights([np.zeros((2, 2))] + w[1:])


def test_train_and_test_on_batch():
    x, y = blobs(32)
    m = make_model()
    loss0, _ = m.test_on_batch(x, y)
    for _ in range(20):
        m.train_on_batch(x, y)
    loss1, acc = m.test_on_batch(x, y)
    assert loss1 < loss0
    assert set(m.train_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}


def test_build_from_first_fit_without_input():
    x, y = blobs()
    m = ember.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=1, verbose=0)
    assert m.input_shape == (None, 8) and m.output_shape == (None, 3)


def test_flatten_and_input_shape_kwarg():
    x = np.random.default_rng(0).normal(size=(10, 2, 3)).astype(np.float32)
    m = ember.Sequential([layers.Flatten(input_shape=(2, 3)), layers.Dense(2)])
    assert m.predict(x, verbose=0).shape == (10, 2)


# ---- bad input: a clear ValueError naming the value, never a crash -------------------
def test_wrong_input_shape():
    m = make_model()
    x, y = blobs()
    with pytest.raises(ValueError, match=r"expected shape=\(None, 8\), found shape=\(200, 9\)"):
        m.fit(np.zeros((200, 9)), y, verbose=0)
    with pytest.raises(ValueError, match=r"found shape=\(3, 7\)"):
        m.predict(np.zeros((3, 7)), verbose=0)


def test_label_out_of_range():
    m = make_model()
    x, y = blobs()
    y = y.copy()
    y[5] = 3
    with pytest.raises(ValueError, match=r"label value of 3 .*\[0, 3\)"):
        m.fit(x, y, verbose=0)
    y[5] = -1
    with pytest.raises(ValueError, match="label value of -1"):
        m.evaluate(x, y, verbose=0)


def test_length_mismatch():
    m = make_model()
    x, y = blobs()
    with pytest.raises(ValueError, match="x has 200, y has 199"):
        m.fit(x, y[:-1], verbose=0)


def test_nan_and_empty_input():
    m = make_model()
    x, y = blobs()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\(3, 2\)"):
        m.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="empty"):
        m.fit(np.zeros((0, 8)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError, match="empty"):
        m.predict(np.zeros((0, 8)), verbose=0)


def test_unknown_optimizer_and_loss():
    m = ember.Sequential([layers.Input((3,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="'adamm'"):
        m.compile("adamm", "mse")
    with pytest.raises(ValueError, match="'msee'"):
        m.compile("adam", "msee")
    with pytest.raises(ValueError, match="'accuracyy'"):
        m.compile("adam", "mse", metrics=["accuracyy"])


def test_bad_layer_config_and_kwargs():
    with pytest.raises(ValueError, match="units=-3"):
        layers.Dense(-3)
    with pytest.raises(ValueError, match="rate=1.5"):
        layers.Dropout(1.5)
    with pytest.raises(ValueError, match="'swish2'"):
        layers.Dense(3, activation="swish2")
    with pytest.raises(TypeError, match="unitz"):
        layers.Dense(3, unitz=4)
    with pytest.raises(ValueError, match="learning_rate=-0.1"):
        ember.optimizers.Adam(learning_rate=-0.1)


def test_fit_before_compile_and_wrong_targets():
    m = ember.Sequential([layers.Input((3,)), layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="compile"):
        m.fit(np.zeros((4, 3)), np.zeros(4), verbose=0)
    m.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="to_categorical"):
        m.fit(np.zeros((4, 3)), np.zeros(4), verbose=0)


def test_core_rejects_bad_arrays():
    g = ember._core.Graph()
    g.set_outputs([g.add_dense(g.add_input([3]), ember._core.Variable([3, 2]), None, "linear")])
    with pytest.raises(ValueError, match="float32"):
        g.predict(np.zeros((2, 3)), np.zeros((2, 2), np.float32), 0, 2)
    with pytest.raises(ValueError):
        g.predict(np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32), 1, 5)


# ---- thread count: bit-identical weights after one epoch ---------------------------
SCRIPT = textwrap.dedent("""
    import sys, numpy as np, ember
    from ember import layers
    ember.set_random_seed(7)
    r = np.random.default_rng(0)
    x = r.normal(size=(1000, 100)).astype(np.float32)
    y = r.integers(0, 10, 1000)
    if sys.argv[2] == "cnn":  # every conv/pool kernel, the split-K weight gradient too
        x = x.reshape(1000, 10, 10, 1)
        m = ember.Sequential([layers.Input((10, 10, 1)),
                              layers.Conv2D(8, 3, padding="same", activation="relu"),
                              layers.MaxPooling2D(), layers.Conv2D(16, 3, activation="relu"),
                              layers.AveragePooling2D(2, 1), layers.GlobalMaxPooling2D(),
                              layers.Dense(10, activation="softmax")])
    elif sys.argv[2] == "text":  # sparse embedding gradients, fused and masked pooling
        ids = r.integers(0, 50, (1000, 12))
        ids[:, 8:] = 0  # padding
        x = ids
        m = ember.Sequential([layers.Input((12,)), layers.Embedding(50, 16, mask_zero=True),
                              layers.Dropout(0.1), layers.GlobalAveragePooling1D(),
                              layers.Dense(10, activation="softmax")])
        m2 = ember.Sequential([layers.Input((12,)), layers.Embedding(50, 16),
                               layers.GlobalMaxPooling1D(), layers.Dense(10, activation="softmax")])
        m2.compile("rmsprop", "sparse_categorical_crossentropy")
        m2.fit(x, y, epochs=1, batch_size=64, verbose=0)
    else:
        m = ember.Sequential([layers.Input((100,)), layers.Dense(200, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(150, activation="tanh"),
                              layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=1, batch_size=64, verbose=0)
    extra = m2.get_weights() if sys.argv[2] == "text" else []
    np.save(sys.argv[1], np.concatenate([w.ravel() for w in m.get_weights() + extra]))
    print(ember.config.get_num_threads())
""")


@pytest.mark.parametrize("model", ["mlp", "cnn", "text"])
def test_weights_bit_identical_across_thread_counts(tmp_path, model):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = tmp_path / f"w{threads}.npy"
        proc = subprocess.run([sys.executable, str(script), str(out), model], env=env,
                              capture_output=True, text=True, check=True)
        assert proc.stdout.strip() == threads
        results.append(np.load(out))
    assert results[0].tobytes() == results[1].tobytes()


PREDICT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, ember
    from ember import layers
    ember.set_random_seed(5)
    # Big enough that batch-1 inference splits the Dense chain over the threads.
    m = ember.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                          layers.Dropout(0.2), layers.Dense(256, activation="relu"),
                          layers.Dense(10, activation="softmax")])
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    x[:, ::3] = 0  # zeros skipped in the batch-1 product
    outs = [m.predict(x[:n], verbose=0) for n in (1, 2, 4)] + [m.predict_on_batch(x[:1])]
    np.save(sys.argv[1], np.concatenate([o.ravel() for o in outs]))
    w = m.get_weights()
    h = x.astype(np.float64)
    for i in (0, 2):
        h = np.maximum(h @ w[i] + w[i + 1], 0)
    z = h @ w[4] + w[5]
    ref = np.exp(z - z.max(1, keepdims=True))
    np.save(sys.argv[1] + ".ref.npy", ref / ref.sum(1, keepdims=True))
    print(ember.config.get_num_threads())
""")


def test_small_batch_predict_bit_identical_across_thread_counts(tmp_path):
    # Batch 1 to 4 runs the Dense layers as one chain (a dropout between them passes
    # through); 1 and 2 threads give the same bits, and both match float64.
    script = tmp_path / "predict.py"
    script.write_text(PREDICT_SCRIPT)
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"p{threads}.npy"
        proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                              text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS=threads))
        assert proc.stdout.strip() == threads
        results.append(np.load(out))
    assert results[0].tobytes() == results[1].tobytes()
    ref = np.load(str(out) + ".ref.npy")
    got = results[0]
    np.testing.assert_allclose(got[:10], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[10:30], ref[:2].ravel(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[30:70], ref.ravel(), rtol=1e-4, atol=1e-6)
    assert got[70:].tobytes() == got[:10].tobytes()


FORK_SCRIPT = textwrap.dedent("""
    import os, numpy as np, ember
    from ember import layers
    m = ember.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                          layers.Dense(10)])
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    first = m.predict(x, verbose=0)  # starts ember's helper threads
    pid = os.fork()
    if pid == 0:  # the child has none: it starts its own
        os._exit(0 if m.predict(x, verbose=0).tobytes() == first.tobytes() else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_batch1_predict_after_fork(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.stdout.strip() == "0"


def test_steady_state_allocates_nothing():
    x, y = blobs(200)
    m = make_model()
    m.fit(x, y, epochs=1, batch_size=64, verbose=0)  # batches of 64 then a last one of 8
    g = m._graph
    before = g.allocations
    m.fit(x, y, epochs=3, batch_size=64, verbose=0)
    m.evaluate(x, y, batch_size=64, verbose=0)
    m.predict(x, batch_size=64, verbose=0)
    assert g.allocations == before == 1


def test_large_inference_batches_run_in_chunks_with_the_same_results():
    # ~0.77M activation floats per sample (at most 5 rows in 2^22 floats): a batch of 12
    # runs as three chunks of 4, so predict and evaluate never plan the whole batch.
    ember.set_random_seed(3)
    m = ember.Sequential([layers.Input((128, 128, 8)), layers.Conv2D(32, 3, activation="relu"),
                          layers.MaxPooling2D(), layers.Flatten(), layers.Dense(3)])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((12, 128, 128, 8), dtype=np.float32)
    y = np.arange(12) % 3
    whole = m.predict(x, batch_size=12, verbose=0)
    assert m._graph.planned_rows == 4
    parts = np.concatenate([m.predict(x[s:s + 4], verbose=0) for s in (0, 4, 8)])
    assert whole.tobytes() == parts.tobytes()
    res = m.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["loss"], m.evaluate(x, y, batch_size=4, verbose=0)[0],
                               rtol=1e-6)
    assert m._graph.planned_rows == 4
    m.fit(x, y, batch_size=12, epochs=1, verbose=0)  # training still plans the whole batch
    assert m._graph.planned_rows == 12


def nd_model(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((5, 6)), L.Dense(7, activation="tanh"),
                           L.Dense(4, activation="softmax"), L.Activation("softmax"),
                           L.Dense(3, activation="relu"), L.Flatten(),
                           L.Dense(2, activation="softmax")])


def test_dense_acts_on_the_last_axis_of_nd_samples():
    """Keras's rule: Dense on (batch, steps, features) maps each step; softmax (as an
    activation of Dense or as a layer) normalises the last axis."""
    ember.set_random_seed(3)
    m = nd_model(ember)
    assert [l.output_shape for l in m.layers] == [(None, 5, 7), (None, 5, 4), (None, 5, 4),
                                                  (None, 5, 3), (None, 15), (None, 2)]
    assert [w.shape for w in m.get_weights()][:2] == [(6, 7), (7,)]
    x = np.random.default_rng(1).normal(size=(9, 5, 6)).astype(np.float32)
    w = [a.astype(np.float64) for a in m.get_weights()]

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    h = np.tanh(x @ w[0] + w[1])
    h = softmax(softmax(h @ w[2] + w[3]))
    h = np.maximum(h @ w[4] + w[5], 0).reshape(9, 15)
    ref = softmax(h @ w[6] + w[7])
    np.testing.assert_allclose(m.predict(x, verbose=0), ref, rtol=1e-5, atol=1e-6)
    for row in range(3):  # batch 1 takes another path
        np.testing.assert_allclose(m.predict(x[row:row + 1], verbose=0), ref[row:row + 1],
                                   rtol=1e-5, atol=1e-6)


def test_dense_on_nd_samples_gradients_by_finite_differences():
    from test_text import check_gradients
    ember.set_random_seed(4)
    m = ember.Sequential([layers.Input((4, 3)), layers.Dense(5, activation="tanh"),
                          layers.Dense(3, activation="softmax"), layers.Dense(2)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    r = np.random.default_rng(2)
    check_gradients(m, r.normal(size=(6, 4, 3)), r.normal(size=(6, 4, 2)))


def test_dense_on_nd_samples_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    e, k = nd_model(ember), nd_model(keras)
    e.set_weights(k.get_weights())
    r = np.random.default_rng(5)
    x = r.normal(size=(8, 5, 6)).astype(np.float32)
    y = r.integers(0, 2, 8)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=1e-6)
    for m, K in ((e, ember), (k, keras)):
        m.compile(K.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    np.testing.assert_allclose(e.train_on_batch(x, y), k.train_on_batch(x, y), rtol=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


def test_classification_losses_on_nd_outputs_take_a_class_per_position():
    m = ember.Sequential([layers.Input((5, 3)), layers.Dense(4, activation="softmax")])
    x = np.random.default_rng(2).normal(size=(4, 5, 3)).astype(np.float32)
    ids = np.random.default_rng(3).integers(0, 4, (4, 5))
    p = m.predict(x, verbose=0).astype(np.float64)
    nll = -np.log(np.take_along_axis(p, ids[..., None], -1)).mean()
    acc = (p.argmax(-1) == ids).mean()
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    np.testing.assert_allclose(m.evaluate(x, np.eye(4)[ids], verbose=0), [nll, acc], rtol=1e-5)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    np.testing.assert_allclose(m.evaluate(x, ids, verbose=0), [nll, acc], rtol=1e-5)
    m.compile("adam", "mse", metrics=["mae"])
    m.fit(x, np.zeros((4, 5, 4)), verbose=0)


def test_input_takes_integer_dtypes_and_batch_size(tmp_path):
    """Keras 3 text models start with Input(shape=(steps,), dtype="int32")."""
    for dtype in ("int32", "int64", np.int32, "float32"):
        inp = layers.Input(shape=(12,), dtype=dtype, batch_size=4)
        assert inp.dtype == np.dtype(dtype).name and inp.shape == (4, 12)
    m = ember.Sequential([layers.Input(shape=(12,), dtype="int32"), layers.Embedding(50, 4),
                          layers.GlobalAveragePooling1D(), layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 50, (8, 12)).astype(np.int32)
    m.fit(x, np.arange(8) % 2, verbose=0)
    assert m.get_config()["layers"][0]["config"]["dtype"] == "int32"
    m.save(tmp_path / "m.keras")
    back = ember.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    for bad in ("float16", "bool", "int8", 3):
        with pytest.raises(ValueError, match="Input dtype must be one of"):
            layers.Input(shape=(3,), dtype=bad)
    with pytest.raises(ValueError, match="batch_size"):
        layers.Input(shape=(3,), batch_size=0)
