"""Image preprocessing layers inside the model: Resizing and CenterCrop, and Keras's
random augmentation layers (RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomCrop). The random layers act in training only (fit,
train_on_batch) and are the identity at inference, as in Keras; each image draws its
own parameters from the layer's seed, the step and its place in the batch, so a seeded
model trains to the same bits on any thread count. Images are (height, width,
channels) samples (channels_last)."""
import numbers

import numpy as np

from .. import _random
from .base import Layer
from .convolutional import _check_image, _data_format

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("bilinear", "nearest")


def _positive_int(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': {name} must be a positive "
                         f"integer. Received: {name}={value!r}")
    return int(value)


def _choice(layer, name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': unknown {name} {value!r}. "
                         f"Expected one of {allowed}")
    return value


def _factor(layer, name, value, bounds=(-1.0, 1.0), symmetric=True):
    """Keras's (lower, upper) of a factor: a number f within bounds gives (-f, f) (or
    (max(-f, lower bound), f)), a pair reaching into the bounds its sorted values."""
    def number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(number(v) for v in value):
        lower, upper = sorted(float(v) for v in value)
        # Keras's check of a pair: it must reach into the bounds.
        if lower > bounds[1] or upper < bounds[0]:
            raise ValueError(f"{type(layer).__name__} '{layer.name}': {name} must reach into "
                             f"[{bounds[0]}, {bounds[1]}]. Received: {name}={value!r}")
        return lower, upper
    if number(value):
        if not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{type(layer).__name__} '{layer.name}': {name} must lie in "
                             f"[{bounds[0]}, {bounds[1]}]. Received: {name}={value!r}")
        f = abs(float(value))
        return (-f if symmetric else max(-f, bounds[0])), f
    raise ValueError(f"{type(layer).__name__} '{layer.name}': {name} must be a number or a "
                     f"tuple of two numbers. Received: {name}={value!r}")


class _Image(Layer):
    """What the image layers share: channels_last images, data_format in the config."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)

    def build(self, input_shape):
        _check_image(self, input_shape, 2)
        self.built = True

    def get_config(self):
        c = super().get_config()
        c["data_format"] = self.data_format
        return c


class Resizing(_Image):
    """Resizes images to (height, width): 'bilinear' (half-pixel centres, the edges
    extended, no antialiasing: Keras's default) or 'nearest'. With crop_to_aspect_ratio
    the largest centred window of the target's aspect ratio is resized."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.height = _positive_int(self, "height", height)
        self.width = _positive_int(self, "width", width)
        self.interpolation = _choice(self, "interpolation", interpolation, _INTERPOLATIONS)
        for name, value in (("pad_to_aspect_ratio", pad_to_aspect_ratio),
                            ("antialias", antialias)):
            if value:
                raise ValueError(f"Resizing '{self.name}': {name}=True is not supported by "
                                 f"ember yet")
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = False
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.antialias = False

    def compute_output_shape(self, input_shape):
        return (self.height, self.width, input_shape[-1])

    def _lower(self, graph, x):
        return graph.add_resize(x, self.height, self.width, self.interpolation == "nearest",
                                self.crop_to_aspect_ratio)

    def get_config(self):
        c = super().get_config()
        c.update(height=self.height, width=self.width, interpolation=self.interpolation,
                 crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                 pad_to_aspect_ratio=self.pad_to_aspect_ratio, fill_mode=self.fill_mode,
                 fill_value=self.fill_value, antialias=self.antialias)
        return c


class CenterCrop(_Image):
    """The central (height, width) window of each image; an image smaller than that
    either way is resized from its largest centred window of that aspect ratio (Keras's
    smart_resize)."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.height = _positive_int(self, "height", height)
        self.width = _positive_int(self, "width", width)

    def compute_output_shape(self, input_shape):
        return (self.height, self.width, input_shape[-1])

    def _lower(self, graph, x):
        h, w, _ = graph.value_shape(x)
        if h >= self.height and w >= self.width:
            top, left = (h - self.height) // 2, (w - self.width) // 2
            return graph.add_pad_crop(x, -top, -(h - self.height - top), -left,
                                      -(w - self.width - left))
        return graph.add_resize(x, self.height, self.width, False, True)

    def get_config(self):
        c = super().get_config()
        c.update(height=self.height, width=self.width)
        return c


class _Random(_Image):
    """A random layer: its seed (Keras's seed argument; None draws one)."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.seed = seed
        self._seed = _random.resolve(seed)


class RandomCrop(_Random):
    """In training, a random (height, width) window of each image (one corner per
    image; Keras 3 draws one per batch); at inference, and for images not larger both
    ways, the largest centred window of that aspect ratio resized, as Keras documents
    it (Keras 3.15's code passes images through at inference, and cuts a window of
    another shape from smaller ones)."""

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.height = _positive_int(self, "height", height)
        self.width = _positive_int(self, "width", width)

    def compute_output_shape(self, input_shape):
        return (self.height, self.width, input_shape[-1])

    def _lower(self, graph, x):
        return graph.add_random_crop(x, self.height, self.width, self._seed)

    def get_config(self):
        c = super().get_config()
        c.update(height=self.height, width=self.width, seed=self.seed)
        return c


class RandomFlip(_Random):
    """Flips each image with probability 1/2: mode 'horizontal', 'vertical' or
    'horizontal_and_vertical' (both axes together, as Keras 3 does)."""

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.mode = _choice(self, "mode", mode, self._MODES)

    def _lower(self, graph, x):
        return graph.add_augment(x, "flip", horizontal="horizontal" in self.mode,
                                 vertical="vertical" in self.mode, seed=self._seed)

    def get_config(self):
        c = super().get_config()
        c.update(seed=self.seed, mode=self.mode)
        return c


class _Affine(_Random):
    """Rotation, zoom and translation: each output pixel reads the input at an affine
    map of its coordinates, bilinearly (or the nearest pixel); outside the image, the
    fill mode: 'reflect' (d c b a | a b c d | d c b a, the default), 'wrap',
    'nearest' or 'constant' (fill_value)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.fill_mode = _choice(self, "fill_mode", fill_mode, _FILL_MODES)
        self.interpolation = _choice(self, "interpolation", interpolation, _INTERPOLATIONS)
        self.fill_value = float(fill_value)

    def _augment(self, graph, x, kind, ranges, same=False):
        return graph.add_augment(x, kind, ranges=[float(r) for r in ranges], same=same,
                                 fill_mode=self.fill_mode, fill_value=self.fill_value,
                                 nearest=self.interpolation == "nearest", seed=self._seed)

    def get_config(self):
        c = super().get_config()
        c.update(fill_mode=self.fill_mode, fill_value=self.fill_value,
                 interpolation=self.interpolation, seed=self.seed)
        return c


class RandomRotation(_Affine):
    """Rotates each image about its centre by factor * 2 pi: factor a number f (a turn
    in [-f, f]) or a pair (lower, upper), within [-1, 1]."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _factor(self, "factor", factor)

    def _lower(self, graph, x):
        return self._augment(graph, x, "rotation", self.factor + (0.0, 0.0))

    def get_config(self):
        c = super().get_config()
        c["factor"] = self.factor
        return c


class RandomZoom(_Affine):
    """Zooms each image about its centre: the input region read is 1 + h times the
    height (h drawn from height_factor: a number f for [-f, f] or a pair), and as
    much of the width (or 1 + w, w from width_factor); a positive factor zooms out."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self._height = _factor(self, "height_factor", height_factor)
        self._width = (None if width_factor is None else
                       _factor(self, "width_factor", width_factor))

    def _lower(self, graph, x):
        return self._augment(graph, x, "zoom", self._height + (self._width or (0.0, 0.0)),
                             same=self._width is None)

    def get_config(self):
        c = super().get_config()
        c.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return c


class RandomTranslation(_Affine):
    """Shifts each image by a fraction of its height (height_factor: a number f for
    [-f, f] or a pair) and of its width (width_factor)."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self._height = _factor(self, "height_factor", height_factor)
        self._width = _factor(self, "width_factor", width_factor)

    def _lower(self, graph, x):
        return self._augment(graph, x, "translation", self._height + self._width)

    def get_config(self):
        c = super().get_config()
        c.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return c


class RandomContrast(_Random):
    """Scales each image's deviation from its per-channel mean by a factor drawn from
    [1 - lower, 1 + upper], then clips to value_range. As in Keras, a number f in [0, 1]
    gives (lower, upper) = (0, f); a pair gives its sorted values."""

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.factor = _factor(self, "factor", factor, bounds=(0.0, 1.0), symmetric=False)
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            lo = hi = None
        if lo is None or not lo < hi:
            raise ValueError(f"RandomContrast '{self.name}': value_range must be a pair "
                             f"(low, high) with low < high. Received: "
                             f"value_range={value_range!r}")
        self.value_range = tuple(value_range)
        self._range = (lo, hi)

    def _lower(self, graph, x):
        lower, upper = self.factor
        return graph.add_augment(x, "contrast", ranges=[1.0 - lower, 1.0 + upper, 0.0, 0.0],
                                 value_range=list(self._range), seed=self._seed)

    def get_config(self):
        c = super().get_config()
        c.update(factor=self.factor, value_range=self.value_range, seed=self.seed)
        return c


__all__ = ["Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation",
           "RandomZoom", "RandomTranslation", "RandomContrast"]
