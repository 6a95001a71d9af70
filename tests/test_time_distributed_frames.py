"""TimeDistributed over Conv2D, MaxPooling2D, AveragePooling2D and Flatten (the CNN-LSTM
idiom for clips of frames): against a float64 per-frame reference and its finite
differences, and Keras 3 on shared weights."""
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


def test_cnn_lstm_matches_keras(tmp_path):
    from oracles import keras_or_skip, same_as_keras_through_a_file
    keras = keras_or_skip()
    x = R.normal(size=(3, 4, 10, 9, 3)).astype(np.float32)
    y = R.normal(size=(3, 2)).astype(np.float32)
    ember_loss, keras_loss = same_as_keras_through_a_file(
        keras, clip_model(keras), clip_model(ember), x, y, tmp_path / "clip.keras")
    assert ember_loss == pytest.approx(keras_loss, rel=1e-5)


def test_unsupported_layers_and_shapes_say_so():
    with pytest.raises(ValueError, match="TimeDistributed: ember supports the layers .*Conv2D"):
        layers.TimeDistributed(layers.GlobalAveragePooling2D())
    with pytest.raises(ValueError, match="expected ndim=4"):
        ember.Sequential([ember.Input((3, 5, 2)), layers.TimeDistributed(layers.Conv2D(2, 2))])
