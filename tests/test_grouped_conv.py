"""Conv2D and Conv1D with groups: against a float64 NumPy reference and its finite
differences (the kernel's and, through a convolution before it, the input's), Keras 3
on shared weights, and bad input."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(41)


def conv_ref(x, w, b, groups):
    """'valid', stride 1: group g reads channels [g c, (g + 1) c) and writes filters
    [g f, (g + 1) f); float64."""
    n, h, wd, _ = x.shape
    kh, kw, c, F = w.shape
    f = F // groups
    oh, ow = h - kh + 1, wd - kw + 1
    out = np.zeros((n, oh, ow, F))
    for g in range(groups):
        xs = x[..., g * c:(g + 1) * c]
        for i in range(kh):
            for j in range(kw):
                out[..., g * f:(g + 1) * f] += np.einsum(
                    "nhwc,cf->nhwf", xs[:, i:i + oh, j:j + ow], w[i, j, :, g * f:(g + 1) * f])
    return out + b


@pytest.mark.parametrize("groups", [2, 3, 6])
def test_matches_the_float64_reference_and_its_gradients(groups):
    from gradcheck import assert_close, numeric_grad
    m = ember.Sequential([ember.Input((5, 6, 3)), layers.Conv2D(6, 2),
                          layers.Conv2D(6, (2, 3), groups=groups)])
    x = R.normal(size=(2, 5, 6, 3))
    w = [v.astype(np.float64) for v in m.get_weights()]
    assert w[2].shape == (2, 3, 6 // groups, 6)

    def forward():
        return conv_ref(conv_ref(x, w[0], w[1], 1), w[2], w[3], groups)
    np.testing.assert_allclose(m.predict(x.astype(np.float32), verbose=0), forward(),
                               atol=1e-5)
    y = R.normal(size=forward().shape)
    m.compile(ember.optimizers.SGD(1.0), "mse")
    m.train_on_batch(x.astype(np.float32), y.astype(np.float32))
    for k, after in enumerate(m.get_weights()):
        num = numeric_grad(lambda: ((forward() - y) ** 2).mean(), w[k])
        assert_close(w[k] - after, num, tol=1e-5, what=f"weight {k}")


CASES = [dict(filters=6, kernel_size=3, groups=2),
         dict(filters=4, kernel_size=3, groups=4, strides=2, padding="same", activation="relu"),
         dict(filters=6, kernel_size=(2, 3), groups=3, dilation_rate=2)]


@pytest.mark.parametrize("kwargs", CASES)
def test_matches_keras_forward_and_an_adam_step(kwargs, tmp_path):
    from oracles import keras_or_skip, same_as_keras_through_a_file
    keras = keras_or_skip()

    def make(lib):
        return lib.Sequential([lib.Input((7, 8, 12)), lib.layers.Conv2D(**kwargs),
                               lib.layers.Flatten(), lib.layers.Dense(2)])
    x = R.normal(size=(5, 7, 8, 12)).astype(np.float32)
    y = R.normal(size=(5, 2)).astype(np.float32)
    same_as_keras_through_a_file(keras, make(keras), make(ember), x, y, tmp_path / "g.keras",
                                 atol=2e-5)


def test_conv1d_groups_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    i, j = keras.Input((9, 6)), ember.Input((9, 6))
    k = keras.Model(i, keras.layers.Conv1D(4, 3, groups=2, padding="causal")(i))
    e = ember.Model(j, layers.Conv1D(4, 3, groups=2, padding="causal")(j))
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    x = R.normal(size=(3, 9, 6)).astype(np.float32)
    np.testing.assert_allclose(e.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)),
                               atol=1e-5)


def test_bad_groups_name_the_value():
    with pytest.raises(ValueError, match=r"filters must be evenly divisible .*groups=4, "
                                         r"filters=6"):
        layers.Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match=r"input channels must be evenly divisible .*groups=2.*"
                                         r"3 channels"):
        ember.Sequential([ember.Input((5, 5, 3)), layers.Conv2D(4, 3, groups=2)])
    assert layers.Conv2D(4, 3, groups=2).get_config()["groups"] == 2
