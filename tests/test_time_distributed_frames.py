"""TimeDistributed over any layer or model (the CNN-LSTM idiom for clips of frames, a
hierarchical encoder of token ids): against a float64 per-frame reference and its
finite differences, and Keras 3 on shared weights, its per-step BatchNormalization
included."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(52)


def test_each_frame_as_its_own_image_with_gradients():
    from gradcheck import assert_close, numeric_grad
    from test_grouped_conv import conv_ref
    m = ember.Sequential([ember.Input((3, 5, 6, 2)),
                          layers.TimeDistributed(layers.Conv2D(3, 2)),
                          layers.TimeDistributed(layers.MaxPooling2D(2)),
                          layers.TimeDistributed(layers.Flatten())])
    assert m.output_shape == (None, 3, 2 * 2 * 3)
    x = R.normal(size=(2, 3, 5, 6, 2))
    w = [v.astype(np.float64) for v in m.get_weights()]

    def forward():
        frames = conv_ref(x.reshape(6, 5, 6, 2), w[0], w[1], 1)  # (6, 4, 5, 3)
        pooled = frames[:, :4, :4].reshape(6, 2, 2, 2, 2, 3).max(axis=(2, 4))
        return pooled.reshape(2, 3, -1)
    np.testing.assert_allclose(m.predict(x.astype(np.float32), verbose=0), forward(),
                               atol=1e-5)
    y = R.normal(size=(2, 3, 12))
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        num = numeric_grad(lambda: ((forward() - y) ** 2).mean(), w[k])
        assert_close(w[k] - after, num, tol=1e-5, what=f"weight {k}")


def clip_model(lib):
    L = lib.layers
    i = lib.Input((4, 10, 9, 3))
    x = L.TimeDistributed(L.Conv2D(5, 3, activation="relu"))(i)
    x = L.TimeDistributed(L.MaxPooling2D(2))(x)
    x = L.TimeDistributed(L.Conv2D(4, 3, padding="same", groups=1))(x)
    x = L.TimeDistributed(L.AveragePooling2D(2))(x)
    x = L.TimeDistributed(L.Flatten())(x)
    x = L.LSTM(6)(x)
    return lib.Model(i, L.Dense(2)(x))


def matches_keras(build, x, y, path):
    """The model build(lib) makes, on shared weights: the same predictions, files that
    cross, one Adam step alike."""
    from oracles import keras_or_skip, same_as_keras_through_a_file
    keras = keras_or_skip()
    ember_loss, keras_loss = same_as_keras_through_a_file(
        keras, build(keras), build(ember), x, y, path)
    assert ember_loss == pytest.approx(keras_loss, rel=1e-5)


def test_cnn_lstm_matches_keras(tmp_path):
    matches_keras(clip_model, R.normal(size=(3, 4, 10, 9, 3)).astype(np.float32),
                  R.normal(size=(3, 2)).astype(np.float32), tmp_path / "clip.keras")


def frame_encoder(lib):
    """A CNN of its own (BatchNormalization among its layers) for each frame. (Its first
    convolution has no bias: the normalization would leave it a gradient of rounding
    noise alone, which Adam's step magnifies.)"""
    L = lib.layers
    return lib.Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", use_bias=False),
                           L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
                           L.Conv2D(6, 3), L.GlobalAveragePooling2D(),
                           L.Dense(5, activation="tanh")], name="frames")


def video_model(lib):
    L = lib.layers
    i = lib.Input((4, 8, 8, 3))
    x = L.TimeDistributed(frame_encoder(lib))(i)
    x = L.LSTM(6)(x)
    return lib.Model(i, L.Dense(2)(x))


def test_a_whole_model_per_frame_matches_keras(tmp_path):
    """Keras 3 calls the wrapped model once per step: BatchNormalization takes each
    step's batch statistics and moves its moving ones once per step; the Adam step's
    weights (moving statistics among them) agree."""
    matches_keras(video_model, R.normal(size=(3, 4, 8, 8, 3)).astype(np.float32),
                  R.normal(size=(3, 2)).astype(np.float32), tmp_path / "video.keras")


def hierarchical(lib):
    """Token ids per sentence of a document: an embedding and an LSTM per sentence,
    then per-step layers of every kind over the sentence vectors."""
    L = lib.layers
    i = lib.Input((3, 5))
    x = L.TimeDistributed(L.Embedding(40, 4))(i)
    x = L.TimeDistributed(L.LSTM(6, return_sequences=True))(x)
    x = L.TimeDistributed(L.Conv1D(4, 2, activation="relu"))(x)
    x = L.TimeDistributed(L.GlobalMaxPooling1D())(x)
    x = L.TimeDistributed(L.BatchNormalization())(x)
    x = L.TimeDistributed(L.Reshape((2, 2)))(x)
    x = L.TimeDistributed(L.Flatten())(x)
    x = L.GRU(3)(x)
    return lib.Model(i, L.Dense(2)(x))


def test_per_step_layers_of_every_kind_match_keras(tmp_path):
    matches_keras(hierarchical, R.integers(0, 40, (4, 3, 5)).astype(np.float32),
                  R.normal(size=(4, 2)).astype(np.float32), tmp_path / "doc.keras")


def test_batch_normalization_moves_once_per_step():
    """Keras 3 runs the wrapped layer step by step: each step's statistics move the
    moving ones in turn."""
    bn = layers.BatchNormalization(momentum=0.5, center=False, scale=False)
    m = ember.Sequential([ember.Input((3, 4)), layers.TimeDistributed(bn), layers.Dense(1)])
    m.compile(ember.optimizers.SGD(0.0), "mse")
    x = R.normal(size=(5, 3, 4)) * np.array([1.0, 2.0, 3.0])[:, None] + np.arange(3)[:, None]
    m.train_on_batch(x.astype(np.float32), np.zeros((5, 3, 1), np.float32))
    mean, var = np.zeros(4), np.ones(4)
    for f in range(3):
        mean = 0.5 * mean + 0.5 * x[:, f].mean(0)
        var = 0.5 * var + 0.5 * x[:, f].var(0)
    moving_mean, moving_var = bn.get_weights()
    np.testing.assert_allclose(moving_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moving_var, var, rtol=1e-5)


def test_bits_do_not_depend_on_the_thread_count():
    from threads import assert_same_weights_at_thread_counts
    x = R.normal(size=(6, 4, 8, 8, 3)).astype(np.float32)
    y = R.normal(size=(6, 2)).astype(np.float32)

    def train():
        ember.set_random_seed(3)
        m = video_model(ember)
        m.compile("adam", "mse")
        m.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False)
        return m.get_weights() + [m.predict(x, verbose=0)]
    assert_same_weights_at_thread_counts(train)


class Scale(layers.Layer):
    """A custom layer written with ember.ops."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform")

    def call(self, x):
        return ember.ops.relu(ember.ops.matmul(x, self.w))


def test_a_custom_layer_per_step_equals_dense():
    custom = ember.Sequential([ember.Input((4, 5)), layers.TimeDistributed(Scale())])
    dense = ember.Sequential([ember.Input((4, 5)),
                              layers.TimeDistributed(layers.Dense(3, "relu", use_bias=False))])
    dense.set_weights(custom.get_weights())
    x = R.normal(size=(2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(custom.predict(x, verbose=0), dense.predict(x, verbose=0))


def test_unsupported_layers_and_shapes_say_so():
    with pytest.raises(ValueError, match="TimeDistributed takes a Layer instance"):
        layers.TimeDistributed(lambda x: x)
    with pytest.raises(ValueError, match="stateful recurrent layer 'rnn'"):
        layers.TimeDistributed(layers.LSTM(2, stateful=True, name="rnn"))
    with pytest.raises(ValueError, match="expected ndim=4"):
        ember.Sequential([ember.Input((3, 5, 2)), layers.TimeDistributed(layers.Conv2D(2, 2))])
    with pytest.raises(ValueError, match="TimeDistributed"):
        ember.Sequential([ember.Input((3,)), layers.TimeDistributed(layers.Dense(2))])
    i = ember.Input((3, 4, 2))
    with pytest.raises(ValueError, match="returns 3 tensors"):
        ember.Model(i, layers.TimeDistributed(layers.LSTM(2, return_state=True))(i))
