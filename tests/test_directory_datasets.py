"""text_dataset_from_directory and image_dataset_from_directory: the files Keras would
list, in its order and split, as PyDatasets that train models; load_img/img_to_array."""
import os

import numpy as np
import pytest

import ember
from ember import layers
from ember.utils import (image_dataset_from_directory, img_to_array, load_img,
                         text_dataset_from_directory)
from oracles import keras_or_skip

PIL = pytest.importorskip("PIL.Image", reason="Pillow (the test extra) reads the images")

GOOD = ["good great fine", "great good", "fine good nice", "nice great"]
BAD = ["bad awful poor", "awful bad", "poor bad sad", "sad awful"]


@pytest.fixture
def text_dir(tmp_path):
    """Two classes of 12 files each, one nested a level down, plus files the reader
    must skip: another extension and a hidden folder."""
    for name, words in (("neg", BAD), ("pos", GOOD)):
        d = tmp_path / name
        (d / "more").mkdir(parents=True)
        for i in range(12):
            where = d / "more" if i == 11 else d
            (where / f"{i:02d}.txt").write_text(f"{words[i % 4]} {words[(i + 1) % 4]}")
        (d / "notes.md").write_text("not a sample")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden")
    return tmp_path


def test_lists_shuffles_and_splits_as_keras(text_dir):
    keras_or_skip()
    from keras.src.utils import dataset_utils
    for seed in (1, 1337):
        paths, labels, names = dataset_utils.index_directory(
            str(text_dir), "inferred", formats=(".txt",), shuffle=True, seed=seed,
            verbose=False)
        train = text_dataset_from_directory(text_dir, validation_split=0.25,
                                            subset="training", seed=seed, verbose=False)
        val = text_dataset_from_directory(text_dir, validation_split=0.25,
                                          subset="validation", seed=seed, verbose=False)
        assert train.class_names == names == ["neg", "pos"]
        n_val = int(0.25 * len(paths))
        assert train.file_paths == paths[:-n_val]
        assert val.file_paths == paths[-n_val:]
        both = text_dataset_from_directory(text_dir, validation_split=0.25, subset="both",
                                           seed=seed, verbose=False)
        assert [d.file_paths for d in both] == [train.file_paths, val.file_paths]
        got = np.concatenate([y for _, y in train])
        np.testing.assert_array_equal(np.sort(got), np.sort(np.asarray(labels[:-n_val])))


def test_batches_and_label_modes(text_dir):
    ds = text_dataset_from_directory(text_dir, batch_size=5, shuffle=False, verbose=False)
    assert len(ds) == 5  # 24 files
    x, y = ds[0]
    assert x.shape == (5,) and x.dtype.kind == "U" and y.dtype == np.int32
    assert x[0] == f"{BAD[0]} {BAD[1]}" and list(y) == [0] * 5
    assert len(ds[4][0]) == 4
    _, yc = text_dataset_from_directory(text_dir, label_mode="categorical", shuffle=False,
                                        verbose=False)[0]
    assert yc.shape == (24, 2) and yc.dtype == np.float32 and yc[:, 0].sum() == 12
    _, yb = text_dataset_from_directory(text_dir, label_mode="binary", shuffle=False,
                                        verbose=False)[0]
    assert yb.shape == (24, 1) and yb.dtype == np.float32
    only = text_dataset_from_directory(text_dir, labels=None, shuffle=False, verbose=False)
    assert isinstance(only[0], np.ndarray) and only.class_names is None
    short = text_dataset_from_directory(text_dir, max_length=4, batch_size=None,
                                        shuffle=False, verbose=False)
    assert len(short) == 24 and short[0][0] == "bad " and short[0][1] == 0
    flipped = text_dataset_from_directory(text_dir, class_names=["pos", "neg"],
                                          shuffle=False, verbose=False)
    assert flipped[0][0][0].startswith("good") and flipped[0][1][0] == 0
    # given labels: every .txt under the folder, hidden ones too (as Keras walks it)
    given = text_dataset_from_directory(text_dir, labels=[3] * 12 + [7] * 13, shuffle=False,
                                        verbose=False)
    assert given.class_names == ["3", "7"] and list(given[0][1][:2]) == [3, 3]


def test_epochs_reshuffle_the_training_files(text_dir):
    ds = text_dataset_from_directory(text_dir, batch_size=24, seed=3, verbose=False)
    first = list(ds[0][0])
    ds.on_epoch_end()
    second = list(ds[0][0])
    assert sorted(first) == sorted(second) and first != second


def test_the_text_tutorial_trains(text_dir, capsys):
    train, val = text_dataset_from_directory(text_dir, batch_size=4, validation_split=0.25,
                                             subset="both", seed=42)
    printed = capsys.readouterr().out
    assert "Found 24 files belonging to 2 classes." in printed
    assert "Using 18 files for training." in printed and "Using 6 files for validation." in printed
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=6)
    vectorize.adapt(train.map(lambda x, y: x))
    assert set(vectorize.get_vocabulary()) >= {"good", "bad"}
    train_ds = train.map(lambda x, y: (vectorize(x), y))
    val_ds = val.map(lambda x, y: (vectorize(x), y))
    ember.set_random_seed(0)
    model = ember.Sequential([ember.Input((6,), dtype="int64"), layers.Embedding(20, 8),
                              layers.GlobalAveragePooling1D(),
                              layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    h = model.fit(train_ds, validation_data=val_ds, epochs=60, verbose=0)
    assert h.history["val_accuracy"][-1] == 1.0


def test_bad_arguments_are_refused(text_dir, tmp_path):
    with pytest.raises(ValueError, match="seed"):
        text_dataset_from_directory(text_dir, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="subset"):
        text_dataset_from_directory(text_dir, validation_split=0.2, seed=1)
    with pytest.raises(ValueError, match="label_mode"):
        text_dataset_from_directory(text_dir, label_mode="sparse")
    with pytest.raises(ValueError, match="class_names"):
        text_dataset_from_directory(text_dir, class_names=["pos", "other"])
    with pytest.raises(ValueError, match="not a directory"):
        text_dataset_from_directory(tmp_path / "missing")
    with pytest.raises(ValueError, match="lengths of `labels`"):
        text_dataset_from_directory(text_dir, labels=[0, 1])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No text files found"):
        text_dataset_from_directory(tmp_path / "empty", verbose=False)
    with pytest.raises(ValueError, match="exactly 2"):
        (tmp_path / "three" / "a").mkdir(parents=True)
        for c in "abc":
            (tmp_path / "three" / c).mkdir(exist_ok=True)
            (tmp_path / "three" / c / "x.txt").write_text("x")
        text_dataset_from_directory(tmp_path / "three", label_mode="binary", verbose=False)


@pytest.fixture
def image_dir(tmp_path):
    """Reddish and bluish images of several sizes and modes (RGB, RGBA, L, palette)."""
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (33, 17), (24, 24), (9, 41)]
    for k, (name, channel) in enumerate((("blue", 2), ("red", 0))):
        d = tmp_path / name
        d.mkdir()
        for i in range(8):
            h, w = sizes[i % 4]
            a = rng.integers(0, 80, size=(h, w, 3)).astype(np.uint8)
            a[..., channel] = rng.integers(170, 256, size=(h, w))
            image = PIL.fromarray(a)
            if i % 4 == 1:
                image = image.convert("RGBA")
            elif i % 4 == 2:
                image = image.convert("P")
            image.save(d / f"{i}.{'png' if i % 2 else 'bmp'}")
    return tmp_path


@pytest.mark.parametrize("color_mode,interpolation,crop", [
    ("rgb", "bilinear", False), ("grayscale", "bilinear", True), ("rgba", "nearest", False),
    ("rgb", "nearest", True)])
def test_pixels_match_keras(image_dir, color_mode, interpolation, crop):
    keras_or_skip()
    from keras.src.utils import image_dataset_utils
    ds = image_dataset_from_directory(image_dir, batch_size=None, image_size=(16, 12),
                                      color_mode=color_mode, interpolation=interpolation,
                                      crop_to_aspect_ratio=crop, shuffle=False,
                                      verbose=False)
    channels = {"rgb": 3, "grayscale": 1, "rgba": 4}[color_mode]
    for i, path in enumerate(ds.file_paths):
        want = np.asarray(image_dataset_utils._load_image_grain(
            path, (16, 12), channels, interpolation, "channels_last",
            crop_to_aspect_ratio=crop))
        got, _ = ds[i]
        assert got.shape == (16, 12, channels) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=path)


def test_an_image_classifier_trains(image_dir):
    train = image_dataset_from_directory(image_dir, image_size=(12, 12), batch_size=4,
                                         validation_split=0.25, subset="training", seed=7,
                                         verbose=False)
    x, y = train[0]
    assert x.shape == (4, 12, 12, 3) and train.class_names == ["blue", "red"]
    ember.set_random_seed(1)
    model = ember.Sequential([ember.Input((12, 12, 3)), layers.Rescaling(1 / 255),
                              layers.Conv2D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(2)])
    model.compile("adam", ember.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train, epochs=40, verbose=0)
    val = image_dataset_from_directory(image_dir, image_size=(12, 12), batch_size=4,
                                       validation_split=0.25, subset="validation", seed=7,
                                       verbose=False)
    assert model.evaluate(val, verbose=0)[1] == 1.0
    assert model.predict(val.map(lambda x, y: x), verbose=0).shape == (4, 2)


def test_image_arguments_are_checked(image_dir):
    with pytest.raises(ValueError, match="color_mode"):
        image_dataset_from_directory(image_dir, color_mode="cmyk")
    with pytest.raises(ValueError, match="image_size"):
        image_dataset_from_directory(image_dir, image_size=(0, 5))
    with pytest.raises(ValueError, match="interpolation"):
        image_dataset_from_directory(image_dir, interpolation="lanczos9")
    corrupt = image_dir / "red" / "zz.png"
    corrupt.write_bytes(b"not a png")
    ds = image_dataset_from_directory(image_dir, shuffle=False, batch_size=None,
                                      verbose=False)
    with pytest.raises(Exception, match="zz.png|identify"):
        ds[len(ds) - 1]


def test_load_img_and_img_to_array_as_keras(image_dir):
    keras = keras_or_skip()
    path = os.path.join(image_dir, "red", "1.png")
    for kwargs in ({}, {"color_mode": "grayscale"}, {"target_size": (10, 7)},
                   {"target_size": (10, 7), "interpolation": "bilinear",
                    "keep_aspect_ratio": True}, {"color_mode": "rgba"}):
        mine = img_to_array(load_img(path, **kwargs))
        theirs = keras.utils.img_to_array(keras.utils.load_img(path, **kwargs))
        np.testing.assert_array_equal(mine, theirs)
        assert mine.dtype == np.float32
