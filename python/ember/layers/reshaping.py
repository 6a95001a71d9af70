"""Resampling layers: UpSampling1D/2D (nearest; bilinear for 2-D), ZeroPadding1D/2D, Cropping1D/2D. The
1-D layers run as the 2-D ones on samples of height 1."""
import numpy as np

from .base import Layer
from .convolutional import _check_image, _data_format, _int_tuple


def _pairs(value, name, rank):
    """Keras's normalisation of padding/cropping: an int, one int per axis, or a
    (before, after) pair per axis."""
    received = value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = ((int(value), int(value)),) * rank
    elif rank == 1 and isinstance(value, (tuple, list)) and len(value) == 2 and \
            all(isinstance(v, (int, np.integer)) for v in value):
        value = (tuple(int(v) for v in value),)
    elif isinstance(value, (tuple, list)) and len(value) == rank:
        value = tuple((int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(v)
                      for v in value)
    try:
        ok = len(value) == rank and all(len(p) == 2 and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0 for x in p)
            for p in value)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be an int, a tuple of {rank} ints or a tuple of {rank} "
                         f"(before, after) pairs of non-negative ints. Received: "
                         f"{name}={received!r}")
    return tuple(tuple(int(x) for x in p) for p in value)


class _Resample(Layer):
    rank = 2

    def _image_shape(self, input_shape):
        _check_image(self, input_shape, self.rank)
        return tuple(input_shape) if self.rank == 2 else (1,) + tuple(input_shape)

    def _lower(self, graph, x):
        in_shape = tuple(graph.value_shape(x))
        if self.rank == 1:
            x = graph.add_reshape(x, [1] + list(in_shape))
        x = self._lower_2d(graph, x)
        if self.rank == 1:
            x = graph.add_reshape(x, list(self.compute_output_shape(in_shape)))
        return x


class UpSampling2D(_Resample):
    """Repeats each row sy times and each column sx times ('nearest'), or interpolates
    linearly between the nearest input pixels ('bilinear': half-pixel centres, the edge
    pixels extended, as Keras's image.resize computes it).

    Args:
        size: int or (sy, sx), default (2, 2).
        interpolation: 'nearest' or 'bilinear'.
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _int_tuple(size, 2, "size")
        self.data_format = _data_format(data_format)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"UpSampling2D: interpolation must be 'nearest' or 'bilinear'. "
                             f"Received: interpolation={interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        h, w, c = self._image_shape(input_shape)
        return (h * self.size[0], w * self.size[1], c)

    def _lower_2d(self, graph, x):
        if self.interpolation == "nearest":
            return graph.add_upsample(x, self.size[0], self.size[1])
        return _bilinear(graph, x, self.size)

    def get_config(self):
        c = super().get_config()
        c.update(size=self.size, data_format=self.data_format, interpolation=self.interpolation)
        return c


class UpSampling1D(_Resample):
    """Repeats each step `size` times."""
    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = _int_tuple(size, 1, "size")[0]

    def compute_output_shape(self, input_shape):
        _, s, c = self._image_shape(input_shape)
        return (s * self.size, c)

    def _lower_2d(self, graph, x):
        return graph.add_upsample(x, 1, self.size)

    def get_config(self):
        c = super().get_config()
        c["size"] = self.size
        return c


class _PadCrop(_Resample):
    _arg = "padding"
    _sign = 1
    _has_data_format = True  # in Keras's config (Cropping1D has none)

    def __init__(self, value, data_format=None, **kwargs):
        super().__init__(**kwargs)
        pairs = _pairs(value, self._arg, self.rank)
        setattr(self, self._arg, pairs if self.rank == 2 else pairs[0])
        self._pairs_2d = pairs if self.rank == 2 else ((0, 0),) + pairs
        self.data_format = _data_format(data_format)

    def compute_output_shape(self, input_shape):
        h, w, c = self._image_shape(input_shape)
        (t, b), (l, r) = self._pairs_2d
        oh, ow = h + self._sign * (t + b), w + self._sign * (l + r)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"Layer '{self.name}': {self._arg}={getattr(self, self._arg)} "
                             f"leaves nothing of inputs of shape {(None,) + tuple(input_shape)}")
        return (oh, ow, c) if self.rank == 2 else (ow, c)

    def _lower_2d(self, graph, x):
        (t, b), (l, r) = self._pairs_2d
        s = self._sign
        return graph.add_pad_crop(x, s * t, s * b, s * l, s * r)

    def get_config(self):
        c = super().get_config()
        c[self._arg] = getattr(self, self._arg)
        if self._has_data_format:
            c["data_format"] = self.data_format
        return c


class ZeroPadding2D(_PadCrop):
    """Adds rows and columns of zeros: padding=1, (rows, cols) or ((top, bottom),
    (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class ZeroPadding1D(_PadCrop):
    """Adds zero steps: padding=1 or (before, after)."""
    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping2D(_PadCrop):
    """Removes rows and columns: cropping=((top, bottom), (left, right)) (or an int, or
    (rows, cols))."""
    _arg, _sign = "cropping", -1

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, **kwargs)


class Cropping1D(_PadCrop):
    """Removes steps: cropping=(before, after)."""
    _arg, _sign = "cropping", -1
    rank = 1
    _has_data_format = False

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping, **kwargs)


class Permute(Layer):
    """Reorders the axes of each sample: dims are 1-indexed (the batch axis is 0 and
    stays), e.g. Permute((2, 1)) swaps the two axes of (steps, features) samples."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise ValueError(f"Permute: dims must be a tuple of ints. Received: dims={dims!r}") \
                from None
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set "
                             f"of indices in `dims` must be `set(range(1, len(dims) + 1))`. "
                             f"Received: dims={dims}")
        self.dims = dims

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"Permute '{self.name}': dims={self.dims} for inputs of shape "
                             f"{(None,) + tuple(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def _lower(self, graph, x):
        return graph.add_permute(x, [d - 1 for d in self.dims])

    def get_config(self):
        c = super().get_config()
        c["dims"] = self.dims
        return c


class RepeatVector(Layer):
    """Repeats each (features) sample n times: (batch, features) -> (batch, n, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"RepeatVector: n must be a positive integer. Received: n={n!r}")
        self.n = int(n)

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"RepeatVector '{self.name}' expects an input of rank 2 (batch, "
                             f"features). Received: input_shape={(None,) + tuple(input_shape)}")
        self.built = True

    def compute_output_shape(self, input_shape):
        return (self.n, input_shape[0])

    def _lower(self, graph, x):
        return graph.add_repeat(x, self.n)

    def get_config(self):
        c = super().get_config()
        c["n"] = self.n
        return c


def _taps(n, scale):
    """For each of n * scale output positions: the two input positions it lies between
    (half-pixel centres, clamped to the edges) and the weight of the second."""
    src = (np.arange(n * scale) + 0.5) / scale - 0.5
    lo = np.floor(src)
    frac = src - lo
    return (np.clip(lo, 0, n - 1).astype(np.int64), np.clip(lo + 1, 0, n - 1).astype(np.int64),
            frac)


def _bilinear(graph, x, size):
    """Bilinear upsampling of (h, w, c) samples from the core's gather and element-wise
    nodes: the four neighbours of each output pixel, weighted and summed."""
    h, w, c = graph.value_shape(x)
    out = (h * size[0], w * size[1], c)
    y0, y1, fy = _taps(h, size[0])
    x0, x1, fx = _taps(w, size[1])
    index = np.arange(h * w * c, dtype=np.int64).reshape(h, w, c)
    total = None
    for rows, wy in ((y0, 1 - fy), (y1, fy)):
        for cols, wx in ((x0, 1 - fx), (x1, fx)):
            weight = np.outer(wy, wx).astype(np.float32)
            if not weight.any():
                continue
            picked = index[rows][:, cols].astype(np.int32).ravel()
            term = graph.add_gather(x, picked, list(out))
            term = graph.add_binary("multiply", term, np.zeros(0, np.int32),
                                    graph.constant(weight), np.repeat(
                                        np.arange(weight.size, dtype=np.int32), c), list(out))
            total = term if total is None else graph.add_binary(
                "add", total, np.zeros(0, np.int32), term, np.zeros(0, np.int32), list(out))
    return total
