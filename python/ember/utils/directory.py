"""Data sets read from a folder per class, as Keras's text_dataset_from_directory and
image_dataset_from_directory read them, returned as PyDatasets that fit, evaluate and
predict take. The files are listed, shuffled and split exactly as Keras does (the same
seed puts the same files in the same subset); each epoch then reshuffles the training
subset with its own generator. Images are decoded with Pillow (an optional dependency)
and resized by the core's Resizing kernel."""
import os

import numpy as np

from .dataset import PyDataset

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_LABEL_MODES = ("int", "categorical", "binary", None)


def _index(directory, labels, formats, class_names, shuffle, seed, follow_links, verbose):
    """(paths, integer labels or None, class names), in Keras's order: class folders
    sorted (or as class_names lists them), each walked in sorted order; then, when
    shuffling, paths and labels permuted by NumPy's RandomState(seed)."""
    if not os.path.isdir(directory):
        raise ValueError(f"Expected a directory of files. Received: directory={directory!r}, "
                         f"which is not a directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(subdirs):
                raise ValueError(f"The `class_names` passed did not match the names of the "
                                 f"subdirectories of the target directory. Expected: "
                                 f"{subdirs} (or a subset of it), but received: "
                                 f"class_names={class_names}")
            subdirs = list(class_names)
    else:
        subdirs = [""]
        if class_names is not None:
            raise ValueError(f"You can only pass `class_names` if `labels=\"inferred\"`. "
                             f"Received: labels={labels!r}, and class_names={class_names}")
    names, found = subdirs, []
    for index, sub in enumerate(subdirs):
        root_dir = os.path.join(directory, sub)
        walk = sorted(os.walk(root_dir, followlinks=follow_links), key=lambda w: w[0])
        for root, _, files in walk:
            for f in sorted(files):
                if f.lower().endswith(formats):
                    found.append((os.path.join(root, f), index))
    paths = [p for p, _ in found]
    if labels == "inferred":
        labels = np.array([k for _, k in found], dtype=np.int32)
    elif labels is None:
        names = None
    else:
        if len(labels) != len(paths):
            raise ValueError(f"Expected the lengths of `labels` to match the number of files "
                             f"in the target directory. len(labels) is {len(labels)} while "
                             f"we found {len(paths)} files in directory {directory}.")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"`labels` must be integer class ids, one per file. Received "
                             f"an array of shape {labels.shape} and dtype {labels.dtype}")
        names = [str(v) for v in sorted(set(labels.tolist()))]
        labels = labels.astype(np.int32)
    if verbose:
        if labels is None:
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {len(names)} classes.")
    if shuffle:
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, names


def _check_split(validation_split, subset, shuffle, seed):
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: "
                         f"{validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", '
                         f"received: {subset}")
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must "
                         "provide a `seed` argument, to make sure that there is no overlap "
                         "between the training and validation subset.")


def _split(paths, labels, validation_split, subset, verbose):
    """Keras's split: the last int(validation_split * n) files are the validation set."""
    if not validation_split:
        return paths, labels
    val = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - val} files for training.")
        keep = slice(0, len(paths) - val)
    else:
        if verbose:
            print(f"Using {val} files for validation.")
        keep = slice(len(paths) - val, len(paths))
    return paths[keep], None if labels is None else labels[keep]


def _check_common(labels, label_mode, class_names, batch_size):
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"`labels` argument should be a list/tuple of integer labels, of the "
                         f"same size as the number of files in the target directory, "
                         f"\"inferred\" or None. Received: labels={labels!r}")
    if label_mode not in _LABEL_MODES:
        raise ValueError(f"`label_mode` argument must be one of \"int\", \"categorical\", "
                         f"\"binary\", or None. Received: label_mode={label_mode!r}")
    _positive_or_none("batch_size", batch_size)


def _positive_or_none(name, value):
    if value is not None and (isinstance(value, bool) or
                              not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer or None. Received: "
                         f"{name}={value!r}")


class DirectoryDataset(PyDataset):
    """The batches of files read from a directory: (inputs, labels), or inputs alone
    when there are no labels. `class_names` and `file_paths` name what it holds; with
    batch_size=None each item is one sample. `map(fn)` gives a data set of fn applied to
    each batch (as tf.data's map: fn(x, y) for labelled batches, fn(x) otherwise)."""

    def __init__(self, paths, labels, class_names, label_mode, batch_size, shuffle, seed,
                 load):
        super().__init__()
        self.file_paths = list(paths)
        self._labels = labels
        self.class_names = class_names
        self._label_mode = label_mode
        self._batch = batch_size
        self._shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._load = load
        self._order = np.arange(len(self.file_paths))

    def __len__(self):
        return len(self.file_paths) if self._batch is None else \
            -(-len(self.file_paths) // self._batch)

    def _encode(self, ids):
        if self._label_mode == "categorical":
            return np.eye(len(self.class_names), dtype=np.float32)[ids]
        if self._label_mode == "binary":
            return ids.astype(np.float32)[..., None]
        return ids

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self._batch is None:
            k = self._order[index]
            x = self._load(self.file_paths[k])
            return x if self._labels is None else (x, self._encode(self._labels[k]))
        picks = self._order[index * self._batch:(index + 1) * self._batch]
        x = np.stack([self._load(self.file_paths[k]) for k in picks])
        return x if self._labels is None else (x, self._encode(self._labels[picks]))

    def on_epoch_end(self):
        if self._shuffle:
            self._order = self._rng.permutation(len(self.file_paths))

    def map(self, fn):
        """A data set of fn over each batch (fn(x, y) for (x, y) batches)."""
        return _Mapped(self, fn)


class _Mapped(PyDataset):
    def __init__(self, source, fn):
        super().__init__()
        self._source, self._fn = source, fn
        self.class_names = getattr(source, "class_names", None)

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        item = self._source[index]
        return self._fn(*item) if isinstance(item, tuple) else self._fn(item)

    def on_epoch_end(self):
        self._source.on_epoch_end()

    def map(self, fn):
        return _Mapped(self, fn)


def _datasets(directory, labels, label_mode, class_names, formats, batch_size, shuffle,
              seed, validation_split, subset, follow_links, verbose, load, what):
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    if isinstance(labels, (list, tuple, np.ndarray)) and class_names:
        raise ValueError(f"You can only pass `class_names` if `labels=\"inferred\"`. "
                         f"Received: labels={labels!r}, and class_names={class_names}")
    _check_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    paths, ids, names = _index(directory, labels, formats, class_names, shuffle, seed,
                               follow_links, verbose)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(f"When passing `label_mode=\"binary\"`, there must be exactly 2 "
                         f"class_names. Received: class_names={names}")
    allowed = ", ".join(formats)

    def make(sub, shuffled):
        p, i = _split(paths, ids, validation_split, sub, verbose)
        if not p:
            kind = {"training": "training ", "validation": "validation "}.get(sub, "")
            raise ValueError(f"No {kind}{what} files found in directory {directory}. "
                             f"Allowed format{'s' if len(formats) > 1 else ''}: {allowed}")
        return DirectoryDataset(p, i, names, label_mode, batch_size, shuffled, seed, load)
    if subset == "both":
        return [make("training", shuffle), make("validation", False)]
    return make(subset, shuffle)


def text_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                class_names=None, batch_size=32, max_length=None,
                                shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, format="tf", verbose=True):
    """The .txt files under directory (one folder per class) as batches of
    (texts, labels): texts a NumPy array of str, labels int32 ids ('int'), one-hot
    float32 ('categorical') or float32 (n, 1) ('binary'). max_length keeps the first
    max_length characters of each text. subset='both' returns [training, validation]."""
    _check_common(labels, label_mode, class_names, batch_size)
    _positive_or_none("max_length", max_length)

    def load(path):
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        return np.str_(text if max_length is None else text[:max_length])
    return _datasets(directory, labels, label_mode, class_names, (".txt",), batch_size,
                     shuffle, seed, validation_split, subset, follow_links, verbose, load,
                     "text")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Reading images needs Pillow: `pip install pillow`") from None
    return Image


def _open(path, channels):
    """The image file as a Pillow image of 1 (grayscale: 8, 16 or 32-bit), 3 or 4
    channels, as Keras converts it."""
    image = _pillow().open(path)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    if image.mode != mode and not (channels == 1 and image.mode in ("I;16", "I")):
        image = image.convert(mode)
    return image


def _decode(path, channels):
    array = np.asarray(_open(path, channels), dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


def _resized(array, size, interpolation, crop_to_aspect_ratio):
    from .. import _core
    return _core.resize_image(np.ascontiguousarray(array), int(size[0]), int(size[1]),
                              interpolation == "nearest", bool(crop_to_aspect_ratio))


def _color_channels(color_mode):
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}.get(color_mode)
    if channels is None:
        raise ValueError(f"`color_mode` must be one of {{\"rgb\", \"rgba\", \"grayscale\"}}. "
                         f"Received: color_mode={color_mode!r}")
    return channels


def _image_size(image_size, name="image_size"):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                    for v in image_size):
        raise ValueError(f"Invalid `{name}` value. Expected a tuple of 2 positive integers. "
                         f"Received: {name}={image_size!r}")
    return tuple(int(v) for v in image_size)


def _interpolation(interpolation):
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"ember resizes images with 'bilinear' or 'nearest' interpolation. "
                         f"Received: interpolation={interpolation!r}")
    return interpolation


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, format="tf",
                                 verbose=True):
    """The images (.bmp, .gif, .jpeg, .jpg, .png) under directory (one folder per class)
    as batches of (images, labels): float32 (n, height, width, channels) with pixel
    values in [0, 255], resized to image_size ('bilinear' or 'nearest'; with
    crop_to_aspect_ratio the largest centred window of that aspect ratio), and labels as
    for text_dataset_from_directory. Needs Pillow."""
    _check_common(labels, label_mode, class_names, batch_size)
    channels = _color_channels(color_mode)
    size = _image_size(image_size)
    interpolation = _interpolation(interpolation)
    if pad_to_aspect_ratio:
        raise ValueError("pad_to_aspect_ratio=True is not supported by ember yet; use "
                         "crop_to_aspect_ratio=True or plain resizing")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"ember's images are channels_last. Received: "
                         f"data_format={data_format!r}")
    _pillow()

    def load(path):
        return _resized(_decode(path, channels), size, interpolation, crop_to_aspect_ratio)
    return _datasets(directory, labels, label_mode, class_names, IMAGE_FORMATS, batch_size,
                     shuffle, seed, validation_split, subset, follow_links, verbose, load,
                     "image")


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """An image file as a Pillow image (Keras's load_img): converted to color_mode and,
    given target_size (height, width), resized by Pillow."""
    Image = _pillow()
    image = _open(path, _color_channels(color_mode))
    if target_size is not None:
        height, width = _image_size(target_size, "target_size")
        methods = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR,
                   "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS,
                   "box": Image.BOX, "hamming": Image.HAMMING}
        if interpolation not in methods:
            raise ValueError(f"Invalid interpolation method {interpolation!r}. Supported "
                             f"methods are {', '.join(methods)}")
        if image.size != (width, height):
            if keep_aspect_ratio:  # the largest centred window of the target's ratio
                w, h = image.size
                cw, ch = min(w, h * width // height), min(h, w * height // width)
                left, top = (w - cw) // 2, (h - ch) // 2
                image = image.resize((width, height), methods[interpolation],
                                     box=(left, top, left + cw, top + ch))
            else:
                image = image.resize((width, height), methods[interpolation])
    return image


def img_to_array(img, data_format=None, dtype="float32"):
    """A Pillow image as a NumPy array (height, width, channels)."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"ember's images are channels_last. Received: "
                         f"data_format={data_format!r}")
    array = np.asarray(img, dtype=dtype)
    return array[..., None] if array.ndim == 2 else array
