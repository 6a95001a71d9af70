"""SpatialDropout1D/2D, GaussianDropout, GaussianNoise: the noise's law in training, the
identity at inference, the same noise in the backward pass, thread-count bits."""
import numpy as np
import pytest

import ember
from ember import layers

R = np.random.default_rng(11)


def noise_model(layer, shape):
    m = ember.Sequential([ember.Input(shape), layer])
    m.compile(ember.optimizers.SGD(0.0), "mse")
    return m


@pytest.mark.parametrize("name,arg,shape", [("SpatialDropout1D", 0.4, (20, 8)),
                                            ("SpatialDropout2D", 0.4, (6, 5, 8)),
                                            ("GaussianDropout", 0.4, (500,)),
                                            ("GaussianNoise", 0.7, (500,))])
def test_identity_at_inference_and_noise_in_training(name, arg, shape):
    layer = getattr(layers, name)(arg, seed=3)
    m = noise_model(layer, shape)
    x = np.ones((64,) + shape, np.float32)
    np.testing.assert_array_equal(m.predict(x, verbose=0), x)
    # The training forward's output, seen through the mse against zeros: mean(out^2).
    loss = m.train_on_batch(x, np.zeros_like(x))
    if name.startswith("Spatial"):  # kept channels are 1/(1-rate), dropped ones 0
        expect = (1 - arg) / (1 - arg) ** 2
    elif name == "GaussianDropout":  # E[m^2] = 1 + rate / (1 - rate)
        expect = 1 + arg / (1 - arg)
    else:  # E[(1 + e)^2] = 1 + stddev^2
        expect = 1 + arg ** 2
    assert loss == pytest.approx(expect, rel=0.12)


def test_spatial_dropout_drops_whole_channels_with_one_mask_for_backward():
    # Input -> Dense (identity, trainable) -> SpatialDropout2D: the kernel's gradient of
    # sum(out) is sum over kept positions, so a dropped channel's column gets none.
    shape = (4, 4, 6)
    m = ember.Sequential([ember.Input(shape),
                          layers.Dense(6, use_bias=False, kernel_initializer="identity"),
                          layers.SpatialDropout2D(0.5, seed=1)])
    m.compile(ember.optimizers.SGD(1.0), "mse")
    x = np.ones((1,) + shape, np.float32)
    m.train_on_batch(x, np.zeros_like(x))
    moved = np.abs(m.get_weights()[0] - np.eye(6)).sum(0) > 0
    assert 0 < moved.sum() < 6  # some channels dropped, some kept (seeded)


def test_bits_do_not_depend_on_the_thread_count():
    x = R.normal(size=(64, 10, 8)).astype(np.float32)
    y = R.normal(size=(64, 3)).astype(np.float32)
    from threads import assert_same_weights_at_thread_counts

    def train():
        ember.set_random_seed(2)
        m = ember.Sequential([ember.Input((10, 8)), layers.GaussianNoise(0.1),
                              layers.SpatialDropout1D(0.2), layers.Dense(4),
                              layers.GaussianDropout(0.2), layers.Flatten(),
                              layers.Dense(3)])
        m.compile("adam", "mse")
        m.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate"):
        layers.SpatialDropout2D(1.0)
    with pytest.raises(ValueError, match="stddev"):
        layers.GaussianNoise(-0.1)
    with pytest.raises(ValueError, match="expects inputs of rank 4"):
        ember.Sequential([ember.Input((5, 3)), layers.SpatialDropout2D(0.2)])
