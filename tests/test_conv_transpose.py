"""Conv2DTranspose: output shapes and values against Keras, an Adam step against Keras,
gradients against float64 finite differences, config and bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(6)
CASES = [("same", 3, 2), ("same", 4, 2), ("same", 5, 1), ("same", 2, 3), ("valid", 3, 2),
         ("valid", 4, 2), ("valid", 2, 3), ("valid", 1, 1)]


def matches_keras(keras, build, sample_shape):
    """The model build(K, L) makes from Keras and from ember: the same output shape,
    predictions from the same weights, and an Adam step (loss and weights)."""
    from oracles import adam_step_like_keras
    k, e = build(keras, keras.layers), build(ember, layers)
    assert e.output_shape == k.output_shape
    e.set_weights(k.get_weights())
    # Data of its own (not the module's stream): the same whichever tests run before.
    r = np.random.default_rng(6)
    x = r.normal(size=(6,) + sample_shape).astype(np.float32)
    y = r.normal(size=(6, 2)).astype(np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), atol=2e-5,
                               rtol=1e-5)
    ember_loss, keras_loss = adam_step_like_keras(keras, k, e, x, y)
    assert ember_loss == pytest.approx(keras_loss, rel=1e-5)


@pytest.mark.parametrize("padding,kernel,stride", CASES)
def test_matches_keras_forward_and_an_adam_step(padding, kernel, stride):
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((5, 4, 2)),
                             L.Conv2DTranspose(3, kernel, strides=stride, padding=padding,
                                               activation="relu"),
                             L.Conv2DTranspose(2, 3, padding="same"), L.Flatten(), L.Dense(2)])
    matches_keras(keras, build, (5, 4, 2))


PADDED = [("same", 3, 2, 1), ("same", 4, 2, 1), ("same", 3, 2, 0), ("valid", 3, 2, 1),
          ("valid", 2, 3, 2), ("same", 5, 3, 2), ("valid", 1, 2, 1)]


@pytest.mark.parametrize("padding,kernel,stride,extra", PADDED)
def test_output_padding_matches_keras(padding, kernel, stride, extra):
    """Both layers padded, so the first one's input gradient is checked too (through
    the second's)."""
    from oracles import keras_or_skip
    keras = keras_or_skip()

    def build(K, L):
        return K.Sequential([K.Input((4, 3, 2)),
                             L.Conv2DTranspose(3, kernel, strides=stride, padding=padding,
                                               output_padding=extra),
                             L.Conv2DTranspose(2, 3, strides=2, padding="same",
                                               output_padding=(1, 0)),
                             L.Flatten(), L.Dense(2)])
    matches_keras(keras, build, (4, 3, 2))


def padded_ref(x, w, b, stride, padding, extra):
    """Keras's Conv2DTranspose with output_padding, float64: the full scatter of each
    input pixel, then the window Keras's sizes and its JAX padding give."""
    n, h, wd, _ = x.shape
    k = w.shape[0]
    full = np.zeros((n, (h - 1) * stride + k + stride, (wd - 1) * stride + k + stride,
                     w.shape[2]))
    for i in range(h):
        for j in range(wd):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,abfc->nabf", x[:, i, j], w)

    def window(size):
        pad = k // 2 if padding == "same" else 0
        length = (size - 1) * stride + k - 2 * pad + extra
        left = k - 1
        if padding == "same":
            pad_len = k + k % 2 - 2 + extra
            left = min(pad_len // 2 + pad_len % 2, k - 1)
        return k - 1 - left, length
    (top, oh), (lft, ow) = window(h), window(wd)
    return full[:, top:top + oh, lft:lft + ow] + b


@pytest.mark.parametrize("padding,kernel,stride,extra", PADDED)
def test_output_padding_matches_the_float64_reference(padding, kernel, stride, extra):
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((3, 4, 2)),
                          layers.Conv2DTranspose(2, kernel, strides=stride, padding=padding,
                                                 output_padding=extra)])
    x = R.normal(size=(2, 3, 4, 2))
    w = [v.astype(np.float64) for v in m.get_weights()]
    ref = padded_ref(x, w[0], w[1], stride, padding, extra)
    assert m.output_shape[1:] == ref.shape[1:]
    np.testing.assert_allclose(m.predict(x.astype(np.float32), verbose=0), ref, atol=1e-5)
    y = R.normal(size=ref.shape)
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    num = numeric_grad(lambda: ((padded_ref(x, w[0], w[1], stride, padding, extra) - y) ** 2)
                       .mean(), w[0])
    assert_close(w[0] - m.get_weights()[0], num, tol=1e-5, what="kernel")


def transpose_ref(x, w, b, stride):
    """'valid' transposed convolution by scattering each input pixel, float64."""
    n, h, wd, c = x.shape
    kh, kw, f, _ = w.shape
    out = np.zeros((n, h * stride + max(kh - stride, 0), wd * stride + max(kw - stride, 0), f))
    for i in range(h):
        for j in range(wd):
            out[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :] += np.einsum(
                "nc,abfc->nabf", x[:, i, j, :], w)
    return out + b


def test_gradients_match_finite_differences():
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((3, 3, 2)), layers.Conv2DTranspose(2, 3, strides=2)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    x = R.normal(size=(2, 3, 3, 2))
    y = R.normal(size=(2,) + m.output_shape[1:])
    w = [v.astype(np.float64) for v in m.get_weights()]
    np.testing.assert_allclose(m.predict(x.astype(np.float32), verbose=0),
                               transpose_ref(x, w[0], w[1], 2), atol=1e-5)
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        num = numeric_grad(lambda: ((transpose_ref(x, w[0], w[1], 2) - y) ** 2).mean(), w[k])
        assert_close(w[k] - after, num, tol=1e-5, what=f"weight {k}")
    # The input gradient: through a Dense before the transpose.
    m2 = ember.Sequential([ember.Input((4,)), layers.Dense(18), layers.Reshape((3, 3, 2)),
                           layers.Conv2DTranspose(2, 3, strides=2)])
    m2.compile(ember.optimizers.SGD(1.0), "mse")
    xs = R.normal(size=(2, 4))
    w2 = [v.astype(np.float64) for v in m2.get_weights()]
    m2.train_on_batch(xs.astype(np.float32), y.astype(np.float32))

    def loss2():
        h = (xs @ w2[0] + w2[1]).reshape(2, 3, 3, 2)
        return ((transpose_ref(h, w2[2], w2[3], 2) - y) ** 2).mean()
    num = numeric_grad(loss2, w2[0])
    assert_close(w2[0] - m2.get_weights()[0], num, tol=1e-5, what="dense kernel")


def test_config_and_bad_input():
    layer = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")
    again = layers.Conv2DTranspose.from_config(layer.get_config())
    assert again.get_config() == {**layer.get_config(), "name": again.name}
    assert "groups" not in layer.get_config() and layer.get_config()["output_padding"] is None
    padded = layers.Conv2DTranspose(4, 3, strides=2, output_padding=1)
    assert padded.get_config()["output_padding"] == (1, 1)
    assert padded.compute_output_shape((5, 6, 2)) == (12, 14, 4)  # (in - 1) 2 + 3 + 1
    for bad in (2, (1, 3), -1, "1"):
        with pytest.raises(ValueError, match=r"'ct'.*output_padding must be non-negative "
                                             r"and smaller than the strides \(2, 2\)"):
            layers.Conv2DTranspose(4, 3, strides=2, output_padding=bad, name="ct")
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2DTranspose(4, 3, padding="full")
    with pytest.raises(ValueError, match="expected ndim=4"):
        ember.Sequential([ember.Input((5, 2)), layers.Conv2DTranspose(4, 3)])
