"""UpSampling, ZeroPadding and Cropping (1-D and 2-D): values and configs against Keras,
gradients as the adjoint, a U-Net-style model training, bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(7)
CASES = [("UpSampling2D", {}), ("UpSampling2D", {"size": (3, 1)}), ("ZeroPadding2D", {}),
         ("ZeroPadding2D", {"padding": ((1, 2), (0, 3))}),
         ("Cropping2D", {"cropping": ((1, 2), (0, 1))}), ("Cropping2D", {"cropping": 1}),
         ("UpSampling1D", {"size": 3}), ("ZeroPadding1D", {"padding": (2, 1)}),
         ("Cropping1D", {"cropping": (1, 2)})]


@pytest.mark.parametrize("name,args", CASES)
def test_matches_keras_and_backward_is_the_adjoint(name, args):
    x = R.random((2, 5, 4, 3) if "2D" in name else (2, 6, 3), dtype=np.float32)
    layer = getattr(layers, name)(**args)
    y = layer(x)
    # <layer(x), g> = <x, layer^T(g)>: the input gradient of sum(g * layer(x)).
    m = ember.Sequential([ember.Input(x.shape[1:]), layers.Dense(x.shape[-1], use_bias=False,
                                                                 kernel_initializer="identity"),
                          getattr(layers, name)(**args)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    g = R.normal(size=y.shape).astype(np.float32)
    # mse gradient at the output is 2 (out - t) / size; with t = out - g size / 2 it is g.
    t = (m.predict(x, verbose=0) - g * g[0].size / 2).astype(np.float32)
    k0 = m.get_weights()[0]
    m.train_on_batch(x, t)
    dk = k0 - m.get_weights()[0]  # = x^T dx_layer summed over the batch
    flat_x = x.reshape(-1, x.shape[-1]).astype(np.float64)
    # The layer's adjoint applied to g, through NumPy: the gradient of sum(g * f(x)).
    eps = 1e-3
    num = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        num[i] = ((layer(hi) - layer(lo)) * g).sum() / (2 * eps)
    np.testing.assert_allclose(dk, flat_x.T @ num.reshape(-1, x.shape[-1]) / 2, rtol=2e-3,
                               atol=1e-4)
    from oracles import keras_or_skip
    keras = keras_or_skip()
    k = getattr(keras.layers, name)(**args)
    np.testing.assert_array_equal(y, np.asarray(k(x)))
    strip = lambda c: {a: b for a, b in c.items() if a not in ("name", "dtype")}  # noqa: E731
    assert strip(layer.get_config()) == strip(k.get_config())


def test_unet_style_model_trains():
    inp = ember.Input((8, 8, 1))
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    p1 = layers.MaxPooling2D()(c1)
    c2 = layers.Conv2D(16, 3, padding="same", activation="relu")(p1)
    u1 = layers.Conv2DTranspose(8, 2, strides=2, padding="same")(c2)
    m1 = layers.Concatenate()([u1, c1])
    c3 = layers.Conv2D(8, 3, padding="same", activation="relu")(m1)
    u2 = layers.UpSampling2D()(layers.MaxPooling2D()(c3))
    out = layers.Conv2D(1, 1, activation="sigmoid")(layers.Add()([u2, c3]))
    m = ember.Model(inp, out)
    x = (R.random((32, 8, 8, 1)) > 0.5).astype(np.float32)
    m.compile(ember.optimizers.Adam(0.01), "binary_crossentropy")
    h = m.fit(x, x, epochs=15, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < 0.7 * h.history["loss"][0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="'nearest' or 'bilinear'. Received: "
                                         "interpolation='area'"):
        layers.UpSampling2D(interpolation="area")
    with pytest.raises(ValueError, match="`padding` must be"):
        layers.ZeroPadding2D(padding=((1, 2, 3), (0, 0)))
    with pytest.raises(ValueError, match="`cropping` must be"):
        layers.Cropping2D(cropping=-1)
    with pytest.raises(ValueError, match="leaves nothing"):
        ember.Sequential([ember.Input((4, 4, 1)), layers.Cropping2D(2)])
    with pytest.raises(ValueError, match="size"):
        layers.UpSampling2D(size=0)


def _bilinear_reference(x, sy, sx):
    """Half-pixel centres, edges extended, in float64."""
    n, h, w, c = x.shape

    def taps(size, s):
        src = (np.arange(size * s) + 0.5) / s - 0.5
        lo = np.floor(src)
        return (np.clip(lo, 0, size - 1).astype(int), np.clip(lo + 1, 0, size - 1).astype(int),
                src - lo)
    y0, y1, fy = taps(h, sy)
    x0, x1, fx = taps(w, sx)
    x = x.astype(np.float64)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]


def test_bilinear_upsampling():
    r = np.random.default_rng(5)
    x = r.standard_normal((2, 3, 4, 2)).astype(np.float32)
    for size in ((2, 2), (3, 1), (1, 4)):
        got = layers.UpSampling2D(size, interpolation="bilinear")(x)
        np.testing.assert_allclose(got, _bilinear_reference(x, *size), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'nearest' or 'bilinear'"):
        layers.UpSampling2D(interpolation="bicubic")


def test_bilinear_upsampling_trains_like_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    r = np.random.default_rng(6)
    x = r.standard_normal((4, 5, 5, 2)).astype(np.float32)
    y = r.standard_normal((4, 10, 10, 3)).astype(np.float32)

    def build(K):
        return K.Sequential([K.Input((5, 5, 2)), K.layers.Conv2D(3, 3, padding="same"),
                             K.layers.UpSampling2D(interpolation="bilinear")])
    k, e = build(keras), build(ember)
    e.set_weights(k.get_weights())
    np.testing.assert_allclose(e.predict(x, verbose=0), k.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    assert float(e.train_on_batch(x, y)) == pytest.approx(float(k.train_on_batch(x, y)),
                                                          rel=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
