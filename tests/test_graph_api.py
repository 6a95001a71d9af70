"""The functional API on the DAG executor: several inputs and outputs, merge layers,
shared layers, nested models, the GAN recipe, gradients through fan-out, and parity
with Keras 3."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(0)


def data(n=64, d=6):
    return R.normal(size=(n, d)).astype(np.float32)


def test_seed_functional_example():
    input_layer = ember.Input(shape=(20,))
    hidden = layers.Dense(16, activation="relu")(input_layer)
    output = layers.Dense(3, activation="softmax")(hidden)
    model = ember.Model(inputs=input_layer, outputs=output)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = data(120, 20)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    h = model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] > 0.8
    assert model.predict(x[:5], verbose=0).shape == (5, 3)


def test_two_inputs_text_ids_and_features_with_concatenate():
    ids_in = ember.Input(shape=(10,), dtype="int32", name="ids")
    num_in = ember.Input(shape=(3,), name="numeric")
    e = layers.GlobalAveragePooling1D()(layers.Embedding(50, 8, mask_zero=True)(ids_in))
    x = layers.concatenate([e, layers.Dense(4, activation="relu")(num_in)])
    out = layers.Dense(1, activation="sigmoid")(x)
    model = ember.Model([ids_in, num_in], out)
    topic = R.integers(0, 2, 200)  # the words of a sample come from one half of the vocab
    ids = R.integers(1, 25, (200, 10)) + 25 * topic[:, None]
    num = data(200, 3)
    y = (topic | (num[:, 0] > 1)).astype(np.float32)
    model.compile(ember.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    model.fit([ids, num], y, epochs=40, batch_size=32, verbose=0)
    assert model.evaluate([ids, num], y, verbose=0)[1] > 0.8
    by_name = model.predict({"ids": ids[:4], "numeric": num[:4]}, verbose=0)
    np.testing.assert_array_equal(by_name, model.predict([ids[:4], num[:4]], verbose=0))
    with pytest.raises(ValueError, match="exactly the keys.*Missing: \\['numeric'\\]"):
        model.predict({"ids": ids[:4]}, verbose=0)
    with pytest.raises(ValueError, match="unexpected: \\['extra'\\]"):
        model.predict({"ids": ids[:4], "numeric": num[:4], "extra": num[:4]}, verbose=0)


def two_output_model():
    inp = ember.Input((6,), name="inp")
    h = layers.Dense(8, activation="tanh")(inp)
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return ember.Model(inp, [cls, reg])


def test_two_outputs_with_loss_weights_log_like_keras():
    m = two_output_model()
    m.compile("adam", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
              metrics=[["accuracy"], ["mae"]])
    x = data(48)
    y_cls, y_reg = (x[:, 0] > 0).astype(int), x[:, 1:2]
    h = m.fit(x, [y_cls, y_reg], epochs=2, verbose=0)
    assert list(h.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "reg_mae"]
    logs = m.evaluate(x, {"cls": y_cls, "reg": y_reg}, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.5 * logs["reg_loss"], rel=1e-5)
    p_cls, p_reg = m.predict(x, verbose=0)
    assert p_cls.shape == (48, 3) and p_reg.shape == (48, 1)
    with pytest.raises(ValueError, match="unknown output 'nope'"):
        m.compile("adam", loss={"nope": "mse"})


def test_residual_cnn_block_with_add():
    inp = ember.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(8, 3, padding="same")(y)
    x = layers.Activation("relu")(layers.Add()([x, y]))
    out = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    m = ember.Model(inp, out)
    imgs = R.normal(size=(64, 8, 8, 3)).astype(np.float32)
    labels = (imgs[:, :4].mean(axis=(1, 2, 3)) > imgs[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    m.compile(ember.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    h = m.fit(imgs, labels, epochs=30, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.7 * h.history["loss"][0]


def test_siamese_shares_one_encoder():
    encoder = ember.Sequential([ember.Input((6,)), layers.Dense(8, activation="relu"),
                                layers.Dense(4)], name="encoder")
    a, b = ember.Input((6,)), ember.Input((6,))
    dist = layers.Dot(axes=1, normalize=True)([encoder(a), encoder(b)])
    m = ember.Model([a, b], layers.Dense(1, activation="sigmoid")(dist))
    assert len(m.weights) == 4 + 2  # the encoder's weights once
    m.compile("adam", "binary_crossentropy")
    xa, xb = data(32), data(32)
    before = encoder.get_weights()
    m.fit([xa, xb], (xa[:, 0] > xb[:, 0]).astype(np.float32), epochs=2, verbose=0)
    after = encoder.get_weights()  # the model trained the encoder's own variables
    assert all(not np.array_equal(p, q) for p, q in zip(before, after))
    np.testing.assert_array_equal(encoder.predict(xa, verbose=0), m.get_layer("encoder")
                                  .predict(xa, verbose=0))


def test_nested_sequential_and_probability_model():
    inner = ember.Sequential([layers.Dense(8, activation="relu", input_shape=(6,)),
                              layers.Dense(3)])
    outer = ember.Sequential([inner, layers.Dense(2)])
    outer.compile("adam", "mse")
    x = data(16)
    outer.fit(x, data(16, 2), epochs=1, verbose=0)
    assert outer.predict(x, verbose=0).shape == (16, 2)
    # The TensorFlow quickstart: a trained logits model, then a probability model.
    model = ember.Sequential([layers.Flatten(input_shape=(2, 3)), layers.Dense(4)])
    model.compile("adam", ember.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.reshape(16, 2, 3), (x[:, 0] > 0).astype(int), epochs=1, verbose=0)
    probability_model = ember.Sequential([model, layers.Softmax()])
    logits = model.predict(x[:5].reshape(5, 2, 3), verbose=0)
    probs = probability_model(x[:5].reshape(5, 2, 3))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-5)


def test_gan_recipe_trains_each_part_in_its_own_step():
    G = ember.Sequential([ember.Input((4,)), layers.Dense(8, activation="relu"),
                          layers.Dense(6)], name="generator")
    D = ember.Sequential([ember.Input((6,)), layers.Dense(8, activation="relu"),
                          layers.Dense(1, activation="sigmoid")], name="discriminator")
    D.compile("adam", "binary_crossentropy")
    D.trainable = False  # read when gan is compiled: frozen inside gan, not in D
    gan = ember.Sequential([G, D])
    gan.compile("adam", "binary_crossentropy")
    assert gan.summary is not None and len(gan.trainable_weights) == 4
    real, z = data(16), data(16, 4)
    fake = G.predict(z, verbose=0)
    g0, d0 = G.get_weights(), [v.numpy() for v in D.weights]
    D.train_on_batch(np.concatenate([real, fake]), np.r_[np.ones(16), np.zeros(16)])
    d1 = [v.numpy() for v in D.weights]
    assert all(not np.array_equal(p, q) for p, q in zip(d0, d1))  # D learns in its step
    assert all(np.array_equal(p, q) for p, q in zip(g0, G.get_weights()))
    gan.train_on_batch(z, np.ones(16))
    assert all(np.array_equal(p, q) for p, q in zip(d1, [v.numpy() for v in D.weights]))
    assert all(not np.array_equal(p, q) for p, q in zip(g0, G.get_weights()))  # G learns


def merge_model():
    a, b = ember.Input((5,), name="a"), ember.Input((5,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    parts = [layers.Add()([ha, hb]), layers.Multiply()([ha, hb]),
             layers.Subtract()([ha, hb]), layers.Average()([ha, hb, ha]),
             layers.Maximum()([ha, hb]), layers.Minimum()([ha, hb]),
             layers.Dot(axes=1, normalize=True)([ha, hb]), layers.Dot(axes=-1)([ha, hb])]
    out = layers.Dense(3, name="head")(layers.Concatenate()(parts))
    return ember.Model([a, b], out)


def reference_loss(w, xa, xb, y):
    """The merge model's MSE in float64 (w: shared kernel, bias, head kernel, bias)."""
    ha, hb = np.tanh(xa @ w[0] + w[1]), np.tanh(xb @ w[0] + w[1])
    na = np.sqrt(np.maximum((ha ** 2).sum(1, keepdims=True), 1e-12))
    nb = np.sqrt(np.maximum((hb ** 2).sum(1, keepdims=True), 1e-12))
    parts = [ha + hb, ha * hb, ha - hb, (2 * ha + hb) / 3, np.maximum(ha, hb),
             np.minimum(ha, hb), ((ha / na) * (hb / nb)).sum(1, keepdims=True),
             (ha * hb).sum(1, keepdims=True)]
    out = np.concatenate(parts, axis=1) @ w[2] + w[3]
    return ((out - y) ** 2).mean()


def test_gradients_through_fan_out_merges_and_a_shared_layer():
    from gradcheck import assert_close, numeric_grad
    m = merge_model()
    m.compile(ember.optimizers.SGD(1.0), "mse")
    xa, xb, y = data(8, 5), data(8, 5), data(8, 3)
    w = [v.astype(np.float64) for v in m.get_weights()]
    m.train_on_batch([xa, xb], y)
    grads = [p - q for p, q in zip(w, m.get_weights())]  # SGD at lr 1: w -= g
    x64 = [xa.astype(np.float64), xb.astype(np.float64), y.astype(np.float64)]
    for k in range(4):
        num = numeric_grad(lambda: reference_loss(w, *x64), w[k])
        assert_close(grads[k], num, tol=2e-5, what=f"weight {k}")


def test_merge_model_bits_do_not_depend_on_threads():
    xa, xb, y = data(256, 5), data(256, 5), data(256, 3)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.set_random_seed(3)
        m = merge_model()
        m.compile("adam", "mse")
        m.fit([xa, xb], y, epochs=2, batch_size=64, verbose=0)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_merge_model_matches_keras_outputs_and_an_adam_step():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    a, b = keras.Input((5,)), keras.Input((5,))
    shared = keras.layers.Dense(4, activation="tanh")
    ha, hb = shared(a), shared(b)
    x = keras.layers.Concatenate()([keras.layers.Add()([ha, hb]), ha])
    k = keras.Model([a, b], keras.layers.Dense(3)(x))
    ea, eb = ember.Input((5,)), ember.Input((5,))
    eshared = layers.Dense(4, activation="tanh")
    eha, ehb = eshared(ea), eshared(eb)
    ex = layers.Concatenate()([layers.Add()([eha, ehb]), eha])
    e = ember.Model([ea, eb], layers.Dense(3)(ex))
    e.set_weights(k.get_weights())
    xa, xb, y = data(16, 5), data(16, 5), data(16, 3)
    np.testing.assert_allclose(e.predict([xa, xb], verbose=0),
                               np.asarray(k.predict([xa, xb], verbose=0)), atol=1e-5)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    lk = float(k.train_on_batch([xa, xb], y))
    le = e.train_on_batch([xa, xb], y)
    assert le == pytest.approx(lk, rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)


def test_bad_graphs_raise_and_leave_nothing_half_built():
    a = ember.Input((4,))
    other = ember.Input((4,))
    x = layers.Dense(3)(a)
    with pytest.raises(ValueError, match="Graph disconnected"):
        ember.Model(other, x)  # an Input of another graph
    with pytest.raises(ValueError, match="must come from ember.Input"):
        ember.Model(x, layers.Dense(2)(x))
    with pytest.raises(ValueError, match="Concatenate.*matching shapes"):
        layers.Concatenate(axis=-1)([ember.Input((2, 3)), ember.Input((3, 3))])
    d = layers.Dense(2)
    d(ember.Input((4,)))
    with pytest.raises(ValueError, match="built for inputs of shape"):
        d(ember.Input((5,)))
    m = ember.Model(a, x)
    with pytest.raises(ValueError, match="takes 1 inputs|incompatible"):
        m.predict(data(2, 5), verbose=0)


def test_layer_called_on_arrays_runs_inference():
    d = layers.Dense(3, activation="relu")
    x = data(4, 5)
    out = d(x)
    np.testing.assert_allclose(out, np.maximum(x @ d.kernel.numpy() + d.bias.numpy(), 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.Add()([x, x]), 2 * x)


def test_functional_config_round_trip_with_shared_layers_and_merges():
    m = merge_model()
    clone = ember.models.model_from_json(m.to_json())
    clone.set_weights(m.get_weights())
    xa, xb = data(4, 5), data(4, 5)
    np.testing.assert_array_equal(clone.predict([xa, xb], verbose=0),
                                  m.predict([xa, xb], verbose=0))
    shared = [entry for entry in m.get_config()["layers"] if entry["name"] == "shared"][0]
    assert len(shared["inbound_nodes"]) == 2


@pytest.mark.parametrize("kind", ["merge", "two_outputs", "nested", "gan"])
def test_save_and_load_keep_graphs_and_weights(tmp_path, kind):
    if kind == "merge":
        m = merge_model()
        m.compile("adam", "mse")
        x = [data(4, 5), data(4, 5)]
    elif kind == "two_outputs":
        m = two_output_model()
        m.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.25}, metrics={"cls": ["accuracy"]})
        x = data(4)
    elif kind == "nested":
        inner = ember.Sequential([layers.Dense(3, input_shape=(6,))])
        m = ember.Sequential([inner, layers.Dense(2)])
        m.compile("adam", "mse")
        x = data(4)
    else:
        G = ember.Sequential([ember.Input((4,)), layers.Dense(6)])
        D = ember.Sequential([ember.Input((6,)), layers.Dense(1, activation="sigmoid")])
        z = ember.Input((4,))
        m = ember.Model(z, D(G(z)))
        m.compile("adam", "binary_crossentropy")
        x = data(4, 4)
    m.save(tmp_path / "m.keras")
    back = ember.models.load_model(tmp_path / "m.keras")
    want, got = m.predict(x, verbose=0), back.predict(x, verbose=0)
    for p, q in zip(want if isinstance(want, list) else [want],
                    got if isinstance(got, list) else [got]):
        np.testing.assert_array_equal(p, q)
    if kind == "two_outputs":
        assert back.evaluate(x, [np.zeros(4), np.zeros((4, 1))], verbose=0,
                             return_dict=True).keys() == {"loss", "cls_loss", "reg_loss",
                                                          "cls_accuracy"}


def branching(K, L):
    """Two inputs, two outputs, a branch read twice: the same graph in Keras or ember."""
    ids, num = K.Input((10,), name="ids"), K.Input((3,), name="num")
    e = L.GlobalAveragePooling1D(name="gap")(L.Embedding(50, 8, name="emb")(ids))
    n = L.Dense(4, name="numd2", activation="relu")(L.Dense(4, name="numd")(num))
    o1 = L.Dense(1, name="o1")(L.Concatenate(name="cat")([e, n]))
    return K.Model([ids, num], [o1, L.Dense(2, name="side")(e)])


def test_layer_order_and_weights_match_keras_on_a_branching_graph():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k, e = branching(keras, keras.layers), branching(ember, layers)
    assert [l.name for l in e.layers] == [l.name for l in k.layers]
    e.set_weights(k.get_weights())
    x = [R.integers(0, 50, (6, 10)), data(6, 3)]
    for p, q in zip(e.predict(x, verbose=0), k.predict(x, verbose=0)):
        np.testing.assert_allclose(p, np.asarray(q), rtol=1e-5, atol=1e-6)


def test_a_layer_in_two_models_is_one_set_of_weights():
    dense = layers.Dense(3)
    a = ember.Sequential([ember.Input((4,)), dense])
    b = ember.Sequential([ember.Input((4,)), dense, layers.Dense(1)])
    a.compile(ember.optimizers.SGD(0.1), "mse")
    x = data(8, 4)
    before = b.predict(x, verbose=0)
    a.train_on_batch(x, data(8, 3))  # moves dense, which b reads too
    assert not np.array_equal(before, b.predict(x, verbose=0))
    np.testing.assert_array_equal(a.predict(x, verbose=0),
                                  x @ dense.kernel.numpy() + dense.bias.numpy())


def test_a_config_in_any_order_loads_and_a_missing_tensor_is_refused():
    """As Keras reads a config: a call waits for the tensors it reads."""
    m = merge_model()
    config = m.get_config()
    config["layers"] = config["layers"][:2] + config["layers"][3:] + config["layers"][2:3]
    clone = ember.Model.from_config(config)
    assert [l.name for l in clone.layers] == [l.name for l in m.layers]
    del config["layers"][-1]
    with pytest.raises(ValueError, match="which no layer of this config makes"):
        ember.Model.from_config(config)


def test_mask_passes_through_dense_and_merges_to_the_pooling():
    ids_in = ember.Input((6,), dtype="int32")
    e = layers.Embedding(20, 4, mask_zero=True)(ids_in)
    h = layers.Dense(3, activation="tanh")(e)
    h = layers.Add()([h, layers.Dense(3)(e)])
    m = ember.Model(ids_in, layers.GlobalAveragePooling1D()(h))
    ids = np.array([[3, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    table = m.layers[1].embeddings.numpy()
    d1, d2 = m.layers[2], m.layers[3]
    x = table[ids]
    steps = np.tanh(x @ d1.kernel.numpy() + d1.bias.numpy()) + x @ d2.kernel.numpy() + \
        d2.bias.numpy()
    keep = (ids != 0)[:, :, None]
    want = (steps * keep).sum(1) / keep.sum(1)
    np.testing.assert_allclose(m.predict(ids, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_masked_output_loss_averages_the_unmasked_steps():
    ids_in = ember.Input((6,), dtype="int32")
    out = layers.Dense(1)(layers.Embedding(20, 4, mask_zero=True)(ids_in))
    m = ember.Model(ids_in, out)
    m.compile("adam", "mse")
    ids = np.array([[1, 2, 0, 0, 0, 0], [3, 4, 5, 6, 7, 0]])
    y = np.arange(12, dtype=np.float32).reshape(2, 6, 1)
    mask = ids != 0
    err = (m.predict(ids, verbose=0)[..., 0] - y[..., 0]) ** 2
    np.testing.assert_allclose(m.evaluate(ids, y, verbose=0), (err * mask).sum() / mask.sum(),
                               rtol=1e-6)


def siamese_text(K, L):
    a, b = K.Input((7,), dtype="int32"), K.Input((7,), dtype="int32")
    emb = L.Embedding(30, 5, mask_zero=True)
    pool = L.GlobalAveragePooling1D()
    diff = L.Subtract()([pool(emb(a)), pool(emb(b))])
    return K.Model([a, b], L.Dense(1, activation="sigmoid")(diff))


def test_shared_embedding_matches_keras_through_an_adam_step():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k, e = siamese_text(keras, keras.layers), siamese_text(ember, layers)
    e.set_weights(k.get_weights())
    ia, ib = R.integers(0, 30, (12, 7)), R.integers(0, 30, (12, 7))
    ia[:, 5:] = 0  # padding, masked
    y = R.integers(0, 2, 12).astype(np.float32)
    k.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    e.compile(ember.optimizers.Adam(0.05), "binary_crossentropy")
    for _ in range(2):
        lk = float(k.train_on_batch([ia, ib], y))
        le = e.train_on_batch([ia, ib], y)
        assert le == pytest.approx(lk, rel=1e-5)
    for p, q in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(p, np.asarray(q), atol=1e-5)


def train_from_the_same_weights(first, second):
    """second takes first's weights, both train the same two epochs on the same
    (6, 6, 2) images, and end on the same bits; returns the images."""
    x = R.normal(size=(32, 6, 6, 2)).astype(np.float32)
    y = R.integers(0, 3, 32)
    second.set_weights(first.get_weights())
    for m in (first, second):
        m.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for p, q in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(p, q)
    return x


def test_activation_layers_fuse_into_their_producer_with_the_same_bits():
    def build(split):
        ember.set_random_seed(5)
        if split:  # Dense/Conv2D without activation, then an Activation layer
            body = [layers.Conv2D(4, 3), layers.Activation("relu"), layers.MaxPooling2D(),
                    layers.Flatten(), layers.Dense(8), layers.Activation("relu"),
                    layers.Dense(3), layers.Activation("softmax")]
        else:
            body = [layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                    layers.Flatten(), layers.Dense(8, activation="relu"),
                    layers.Dense(3, activation="softmax")]
        m = ember.Sequential([ember.Input((6, 6, 2))] + body)
        m.compile("adam", "sparse_categorical_crossentropy")
        return m
    fused, plain = build(True), build(False)
    train_from_the_same_weights(fused, plain)
    assert sum("activation into" in f for f in fused._graph.fusions) == 3
    assert any("relu backward into pooling" in f for f in fused._graph.fusions)


def test_a_relu_after_add_fuses_into_it_with_the_same_bits():
    # Residual joins: Add then relu in one pass; once before max pooling (which takes the
    # relu's backward), once over three inputs before a Dense. Dropout(0.0) keeps the
    # relu apart in the reference model.
    def build(apart):
        ember.set_random_seed(6)

        def join(parts):
            x = layers.Add()(parts)
            if apart:
                x = layers.Dropout(0.0)(x)
            return layers.Activation("relu")(x)
        inp = ember.Input((6, 6, 2))
        a = layers.Conv2D(4, 3, padding="same")(inp)
        b = layers.Conv2D(4, 3, padding="same")(inp)
        x = layers.Flatten()(layers.MaxPooling2D()(join([a, b])))
        c, d = layers.Dense(8)(x), layers.Dense(8)(x)
        x = join([c, d, layers.Dense(8)(x)])
        m = ember.Model(inp, layers.Dense(3, activation="softmax")(x))
        m.compile("adam", "sparse_categorical_crossentropy")
        return m
    fused, apart = build(False), build(True)
    x = train_from_the_same_weights(fused, apart)
    assert sum("activation into" in f for f in fused._graph.fusions) == 2
    assert not any("activation into" in f for f in apart._graph.fusions)
    np.testing.assert_array_equal(fused.predict(x, verbose=0), apart.predict(x, verbose=0))


def test_token_ids_are_checked_through_nested_models():
    ids = ember.Input((5,), dtype="int32")
    inner = ember.Model(ids, layers.GlobalAveragePooling1D()(layers.Embedding(10, 3)(ids)))
    outer = ember.Sequential([inner, layers.Dense(1)])
    bad = np.array([[1, 2, 3, 12, 0]])
    for m in (inner, outer):
        with pytest.raises(ValueError, match="12"):
            m.predict(bad, verbose=0)


def nested_models(lib):
    """A model of two outputs and one of two inputs, each used as a layer."""
    L = lib.layers
    i = lib.Input((6,))
    h = L.Dense(8, activation="relu")(i)
    encoder = lib.Model(i, [L.Dense(2)(h), L.Dense(3)(h)], name="encoder")
    k1, k2 = lib.Input((2,)), lib.Input((3,))
    join = lib.Model([k1, k2], L.Concatenate()([L.Dense(4)(k1), k2]), name="join")
    j = lib.Input((6,))
    a, b = encoder(j)
    return lib.Model(j, L.Dense(1)(join([a, b])))


def test_models_of_several_inputs_and_outputs_as_layers(tmp_path):
    rng = np.random.default_rng(30)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.standard_normal((8, 1)).astype(np.float32)
    m = nested_models(ember)
    encoder, join = m.layers[1], m.layers[2]
    a, b = encoder.predict(x, verbose=0)
    head = m.layers[-1]
    np.testing.assert_allclose(
        m.predict(x, verbose=0),
        join.predict([a, b], verbose=0) @ head.kernel.numpy() + head.bias.numpy(), rtol=1e-5,
        atol=1e-6)
    m.save(tmp_path / "nested.keras")
    np.testing.assert_array_equal(ember.saving.load_model(tmp_path / "nested.keras").predict(
        x, verbose=0), m.predict(x, verbose=0))
    with pytest.raises(ValueError, match="takes a list of tensors"):
        join(ember.Input((2,)))
    with pytest.raises(ValueError, match=r"takes inputs of shapes \[\(2,\), \(3,\)\]"):
        join([ember.Input((2,)), ember.Input((4,))])
    from oracles import keras_or_skip, same_as_keras_through_a_file
    keras = keras_or_skip()
    same_as_keras_through_a_file(keras, nested_models(keras), nested_models(ember), x, y,
                                 tmp_path / "both.keras")
