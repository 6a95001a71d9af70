"""Resizing, CenterCrop and the random image layers: against Keras 3 (the random ones on
ranges of one value, which make them deterministic), NumPy references, their
backward passes as adjoints, training-only activity, seeds and thread counts, files
and bad input."""
import numpy as np
import pytest

import ember
from ember import layers, ops

R = np.random.default_rng(8)
X = R.random((3, 9, 11, 2)).astype(np.float32)

FIXED = [("RandomRotation", {"factor": (0.1, 0.1)}),
         ("RandomZoom", {"height_factor": (-0.3, -0.3), "width_factor": (0.4, 0.4)}),
         ("RandomZoom", {"height_factor": (0.2, 0.2)}),
         ("RandomTranslation", {"height_factor": (0.23, 0.23), "width_factor": (-0.31, -0.31)})]


def resize_ref(x, oh, ow):
    """Bilinear, half-pixel centres, edges extended, in float64."""
    def taps(n, out):
        src = (np.arange(out) + 0.5) * n / out - 0.5
        lo = np.floor(src)
        return (np.clip(lo, 0, n - 1).astype(int), np.clip(lo + 1, 0, n - 1).astype(int),
                src - lo)
    y0, y1, fy = taps(x.shape[1], oh)
    x0, x1, fx = taps(x.shape[2], ow)
    x = x.astype(np.float64)
    top = x[:, y0][:, :, x0] * (1 - fx)[:, None] + x[:, y0][:, :, x1] * fx[:, None]
    bot = x[:, y1][:, :, x0] * (1 - fx)[:, None] + x[:, y1][:, :, x1] * fx[:, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


@pytest.mark.parametrize("size", [(5, 7), (13, 17), (9, 4)])
def test_resizing_and_center_crop_match_the_reference(size):
    np.testing.assert_allclose(layers.Resizing(*size)(X), resize_ref(X, *size), atol=1e-6)
    nearest = layers.Resizing(*size, interpolation="nearest")(X)
    rows = np.minimum(np.floor((np.arange(size[0]) + 0.5) * 9 / size[0]), 8).astype(int)
    cols = np.minimum(np.floor((np.arange(size[1]) + 0.5) * 11 / size[1]), 10).astype(int)
    np.testing.assert_array_equal(nearest, X[:, rows][:, :, cols])
    if size[0] <= 9 and size[1] <= 11:
        top, left = (9 - size[0]) // 2, (11 - size[1]) // 2
        np.testing.assert_array_equal(layers.CenterCrop(*size)(X),
                                      X[:, top:top + size[0], left:left + size[1]])


@pytest.mark.parametrize("size", [(5, 7), (13, 17), (9, 4), (12, 5)])
def test_resizing_cropping_match_keras(size):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    for interpolation in ("bilinear", "nearest"):
        for crop in (False, True):
            e = layers.Resizing(*size, interpolation=interpolation, crop_to_aspect_ratio=crop)
            k = keras.layers.Resizing(*size, interpolation=interpolation,
                                      crop_to_aspect_ratio=crop)
            np.testing.assert_allclose(e(X), np.asarray(k(X)), atol=1e-6)
    np.testing.assert_allclose(layers.CenterCrop(*size)(X),
                               np.asarray(keras.layers.CenterCrop(*size)(X)), atol=1e-6)
    # RandomCrop at inference, and in training where the image is not larger both ways:
    # Keras's smart_resize.
    smart = np.asarray(keras.preprocessing.image.smart_resize(X, size))
    crop = layers.RandomCrop(*size)
    np.testing.assert_allclose(crop(X), smart, atol=1e-6)
    if not (size[0] < 9 and size[1] < 11):
        np.testing.assert_allclose(crop(X, training=True), smart, atol=1e-6)


@pytest.mark.parametrize("cls,kwargs", FIXED)
def test_affine_layers_match_keras_in_every_fill_mode(cls, kwargs):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    for fill in ("reflect", "wrap", "constant", "nearest"):
        for interpolation in ("bilinear", "nearest"):
            args = dict(kwargs, fill_mode=fill, interpolation=interpolation, fill_value=0.5)
            e, k = getattr(layers, cls)(**args), getattr(keras.layers, cls)(**args)
            np.testing.assert_allclose(e(X, training=True), np.asarray(k(X, training=True)),
                                       atol=1e-6, err_msg=f"{fill} {interpolation}")


def test_contrast_matches_keras():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    for value_range in ((0, 0.8), (0, 255)):
        e = layers.RandomContrast((-0.3, 0.3), value_range=value_range)
        k = keras.layers.RandomContrast((-0.3, 0.3), value_range=value_range)
        np.testing.assert_allclose(e(X, training=True), np.asarray(k(X, training=True)),
                                   atol=1e-6)


def test_affine_layers_without_keras():
    """A half turn reverses both axes; a whole-pixel translation with wrap rolls the
    image; a zoom of 1 changes nothing."""
    half = layers.RandomRotation((0.5, 0.5))(X, training=True)
    np.testing.assert_allclose(half, X[:, ::-1, ::-1], atol=1e-5)
    shift = layers.RandomTranslation((2 / 9, 2 / 9), (-3 / 11, -3 / 11), fill_mode="wrap")
    np.testing.assert_allclose(shift(X, training=True), np.roll(X, (2, -3), (1, 2)), atol=1e-5)
    np.testing.assert_allclose(layers.RandomZoom((0.0, 0.0))(X, training=True), X, atol=1e-6)
    constant = layers.RandomTranslation((0.5, 0.5), (0, 0), fill_mode="constant",
                                        fill_value=7.0)(X, training=True)
    assert np.all(constant[:, :4] == 7.0)  # the rows shifted in from outside


LINEAR = [("Resizing", {"height": 6, "width": 14}),
          ("Resizing", {"height": 4, "width": 5, "crop_to_aspect_ratio": True}),
          ("CenterCrop", {"height": 12, "width": 6}),
          ("RandomCrop", {"height": 5, "width": 6, "seed": 1}),
          ("RandomFlip", {"seed": 3}),
          ("RandomContrast", {"factor": 0.5, "value_range": (-100, 100), "seed": 2}),
          ("RandomRotation", {"factor": 0.3, "fill_mode": "reflect", "seed": 4}),
          ("RandomRotation", {"factor": 0.3, "fill_mode": "constant", "seed": 4}),
          ("RandomZoom", {"height_factor": 0.3, "width_factor": 0.5, "fill_mode": "wrap",
                          "seed": 5}),
          ("RandomTranslation", {"height_factor": 0.3, "width_factor": 0.2,
                                 "interpolation": "nearest", "seed": 6})]


@pytest.mark.parametrize("cls,kwargs", LINEAR, ids=[c for c, _ in LINEAR])
def test_backward_is_the_adjoint_of_the_forward(cls, kwargs):
    """Each layer is linear in its input (fill value 0, no clipping), so the gradient
    of <y, g> is the adjoint applied to g: <A x, g> = <x, A^T g>, in training."""
    layer = getattr(layers, cls)(**kwargs)
    with ember.GradientTape() as tape:
        x = ops.convert_to_tensor(X)
        tape.watch(x)
        y = layer(x, training=True)
        g = R.normal(size=np.shape(y)).astype(np.float32)
        s = ops.sum(y * g)
    dx = tape.gradient(s, x)
    left = float(np.sum(np.asarray(y, np.float64) * g))
    right = float(np.sum(X.astype(np.float64) * np.asarray(dx)))
    assert abs(left - right) <= 1e-4 * max(1.0, abs(left))


def augmenting_model(seed=0):
    return ember.Sequential([
        ember.Input((16, 16, 3)),
        layers.RandomFlip("horizontal", seed=seed), layers.RandomRotation(0.1, seed=seed + 1),
        layers.RandomZoom(0.2, seed=seed + 2), layers.RandomTranslation(0.1, 0.1, seed=seed + 3),
        layers.RandomContrast(0.3, value_range=(0, 1), seed=seed + 4),
        layers.RandomCrop(12, 12, seed=seed + 5),
        layers.Conv2D(4, 3, activation="relu"), layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax")])


def test_random_layers_act_in_training_only_and_draw_per_image():
    x = R.random((64, 16, 16, 3)).astype(np.float32)
    flip = layers.RandomFlip("horizontal", seed=1)
    np.testing.assert_array_equal(flip(x), x)  # inference: the identity
    out = flip(x, training=True)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48
    again = flip(x, training=True)  # the next step draws again
    assert not np.array_equal(out, again)
    crops = layers.RandomCrop(12, 12, seed=2)(x, training=True)
    corners = set()
    for o, i in zip(crops, x):
        found = [(t, l) for t in range(5) for l in range(5)
                 if np.array_equal(o, i[t:t + 12, l:l + 12])]
        assert len(found) == 1
        corners.add(found[0])
    assert len(corners) > 5  # a corner per image
    model = augmenting_model()
    # predict and evaluate see the images unchanged (only the crop resizes them).
    crop = layers.Resizing(12, 12, crop_to_aspect_ratio=True)(x)
    inner = ember.Sequential([ember.Input((12, 12, 3))] + model.layers[-3:])
    np.testing.assert_allclose(model.predict(x, verbose=0), inner.predict(crop, verbose=0),
                               atol=1e-6)


def test_seeded_training_is_reproducible_and_thread_independent(tmp_path):
    x = R.random((128, 16, 16, 3)).astype(np.float32)
    y = R.integers(0, 3, 128)
    from threads import assert_same_weights_at_thread_counts
    models = []

    def train():
        ember.utils.set_random_seed(11)
        m = augmenting_model(seed=20)
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False)
        models.append(m)
        return m.get_weights()
    assert_same_weights_at_thread_counts(train, (1, 2, 2))
    m = models[-1]
    m.save(tmp_path / "aug.keras")
    loaded = ember.saving.load_model(tmp_path / "aug.keras")
    assert [type(a).__name__ for a in loaded.layers] == [type(a).__name__ for a in m.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))


def test_files_cross_with_keras(tmp_path):
    from oracles import keras_or_skip
    keras = keras_or_skip()
    m = augmenting_model()
    m.save(tmp_path / "e.keras")
    k = keras.saving.load_model(tmp_path / "e.keras")
    assert [type(a).__name__ for a in k.layers] == [type(a).__name__ for a in m.layers]
    for a, b in zip(m.layers, k.layers):
        for key in ("factor", "height_factor", "width_factor", "value_range", "mode", "height"):
            if key in a.get_config():
                assert tuple(np.ravel(a.get_config()[key])) == \
                    tuple(np.ravel(b.get_config()[key])), (a.name, key)
    k.save(tmp_path / "k.keras")
    back = ember.saving.load_model(tmp_path / "k.keras")
    x = R.random((4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(back.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)


def test_bad_input_names_the_layer_and_the_value():
    with pytest.raises(ValueError, match=r"RandomRotation 'r'.*factor.*2\.0"):
        layers.RandomRotation(2.0, name="r")
    with pytest.raises(ValueError, match=r"RandomZoom .*fill_mode 'mirror'"):
        layers.RandomZoom(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match=r"RandomFlip .*mode 'diagonal'"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match=r"RandomTranslation .*interpolation 'cubic'"):
        layers.RandomTranslation(0.1, 0.1, interpolation="cubic")
    with pytest.raises(ValueError, match=r"Resizing .*height must be a positive.*0"):
        layers.Resizing(0, 4)
    with pytest.raises(ValueError, match=r"RandomContrast .*value_range.*\(5, 1\)"):
        layers.RandomContrast(0.2, value_range=(5, 1))
    with pytest.raises(ValueError, match="RandomCrop .*width must be a positive.*'4'"):
        layers.RandomCrop(4, "4")
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        ember.Sequential([ember.Input((8, 3)), layers.RandomFlip()])
