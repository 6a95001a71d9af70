"""Convolution and pooling layers, 1-D (samples (steps, channels)) and 2-D (NHWC),
Keras's channels_last. The 1-D layers run as 1 x k 2-D ones in the core."""
import numpy as np

from .. import activations, constraints, initializers, regularizers
from .base import Layer


def _int_tuple(value, n, name, allow_none=False):
    """Keras's argument normalisation: an int or a tuple of n positive ints."""
    if value is None and allow_none:
        return None
    received = value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        out = tuple(int(v) for v in value)
        ok = len(out) == n and all(not isinstance(v, bool) and int(v) == v
                                   for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"The `{name}` argument must be a tuple of {n} integers. "
                         f"Received {name}={received!r}")
    if any(v <= 0 for v in out):
        raise ValueError(f"The `{name}` argument must be a tuple of {n} positive integers. "
                         f"Received {name}={received!r}")
    return out


def _padding(value, causal=False):
    p = value.lower() if isinstance(value, str) else value
    allowed = ("valid", "same", "causal") if causal else ("valid", "same")
    if p not in allowed:
        raise ValueError(f"The `padding` argument must be one of "
                         f"{', '.join(repr(a) for a in allowed)}. Received: padding={value!r}")
    return p


def _data_format(value):
    if value not in (None, "channels_last"):
        raise ValueError("ember computes images as NHWC: data_format must be "
                         f"'channels_last'. Received: data_format={value!r}")
    return "channels_last"


def output_length(size, kernel, stride, dilation, padding):
    """Keras's output size along one axis (0 or less: the window does not fit)."""
    if padding in ("same", "causal"):
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _check_image(layer, input_shape, rank=2):
    if len(input_shape) != rank + 1:
        raise ValueError(f"Input 0 of layer '{layer.name}' is incompatible with the layer: "
                         f"expected ndim={rank + 2}, found ndim={len(input_shape) + 1}. Full "
                         f"shape received: {(None,) + tuple(input_shape)}")


def _as_2d(values, rank, one=1):
    """A rank-1 layer's (k,) as the (1, k) of the 2-D kernel that computes it."""
    return tuple(values) if rank == 2 else (one,) + tuple(values)


class _Conv(Layer):
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters!r}.")
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or \
                groups < 1 or filters % groups:
            raise ValueError(f"The number of filters must be evenly divisible by the number of "
                             f"groups, a positive integer. Received: groups={groups!r}, "
                             f"filters={filters}")
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        r = self.rank
        self.filters = int(filters)
        self.kernel_size = _int_tuple(kernel_size, r, "kernel_size")
        self.strides = _int_tuple(strides, r, "strides")
        self.padding = _padding(padding, causal=r == 1)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _int_tuple(dilation_rate, r, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"`strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.groups = int(groups)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        _check_image(self, input_shape, self.rank)
        if input_shape[-1] % self.groups:
            raise ValueError(f"The number of input channels must be evenly divisible by the "
                             f"number of groups. Received groups={self.groups}, but the input "
                             f"has {input_shape[-1]} channels (full input shape is "
                             f"{(None,) + tuple(input_shape)})")
        shape = self.kernel_size + (input_shape[-1] // self.groups, self.filters)
        self.kernel = self.add_weight(shape, self.kernel_initializer, "kernel",
                                      core_shape=(1,) * (2 - self.rank) + shape,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        r = self.rank
        _check_image(self, input_shape, r)
        if self.built and input_shape[-1] != self.kernel.shape[-2] * self.groups:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value "
                             f"{self.kernel.shape[-2] * self.groups}, but received input with "
                             f"shape {(None,) + tuple(input_shape)}")
        out = tuple(output_length(input_shape[i], self.kernel_size[i], self.strides[i],
                                  self.dilation_rate[i], self.padding) for i in range(r))
        if min(out) <= 0:
            raise ValueError(f"Computed output size would be zero or negative in layer "
                             f"'{self.name}': the input {tuple(input_shape[:r])} is smaller "
                             f"than the kernel {self.kernel_size} (dilation_rate="
                             f"{self.dilation_rate}) under padding='valid'. Received "
                             f"input_shape={(None,) + tuple(input_shape)}")
        return out + (self.filters,)

    def _lower(self, graph, x):
        in_shape = tuple(graph.value_shape(x))
        if self.rank == 1:
            x = graph.add_reshape(x, [1] + list(in_shape))
        x = graph.add_conv2d(x, self.kernel._storage,
                             self.bias._storage if self.bias is not None else None,
                             _as_2d(self.strides, self.rank),
                             _as_2d(self.dilation_rate, self.rank), self.padding,
                             self.activation, self.groups)
        if self.rank == 1:
            x = graph.add_reshape(x, list(self.compute_output_shape(in_shape)))
        return x

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                 padding=self.padding, data_format=self.data_format,
                 dilation_rate=self.dilation_rate, groups=self.groups,
                 activation=self.activation, use_bias=self.use_bias,
                 kernel_initializer=initializers.serialize(self.kernel_initializer),
                 bias_initializer=initializers.serialize(self.bias_initializer),
                 kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                 bias_regularizer=regularizers.serialize(self.bias_regularizer),
                 activity_regularizer=regularizers.serialize(self.activity_regularizer),
                 kernel_constraint=constraints.serialize(self.kernel_constraint),
                 bias_constraint=constraints.serialize(self.bias_constraint))
        return c


class Conv2D(_Conv):
    """2-D convolution over images: output = activation(conv2d(input, kernel) + bias).

    Args:
        filters: positive integer, the number of output channels.
        kernel_size: int or (height, width) of the window.
        strides: int or (sy, sx), default 1.
        padding: 'valid' (no padding) or 'same' (output = ceil(input / stride), zeros
            padded as Keras pads: the extra row/column goes after).
        data_format: only 'channels_last' (NHWC).
        dilation_rate: int or (dy, dx); cannot be combined with strides > 1.
        activation, use_bias, kernel_initializer, bias_initializer: as for Dense.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters).
    Weights: kernel (kh, kw, channels, filters), bias (filters,).
    """
    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, **kwargs)


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (the gradient of a convolution run forward), the
    upsampling layer of DCGAN generators and U-Net decoders.

    Args:
        filters, kernel_size, strides, padding, dilation_rate, activation, use_bias,
        kernel_initializer, bias_initializer: as for Conv2D.
        output_padding: None (Keras's default), or an int or pair below the strides:
            the output grows to (in - 1) * stride + kernel - 2 * pad + output_padding
            (pad = kernel // 2 with 'same', else 0), as Keras computes it.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, height * sy, width * sx, filters) with padding='same'; with
    'valid', each side grows by max(kernel - stride, 0) more (Keras's arithmetic).
    Weights: kernel (kh, kw, filters, channels), bias (filters,).
    """
    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         1, activation, use_bias, **kwargs)
        if output_padding is not None:
            pair = ((output_padding,) * 2 if isinstance(output_padding, (int, np.integer))
                    else output_padding)
            try:
                pair = tuple(int(p) for p in pair if int(p) == p and not isinstance(p, bool))
            except (TypeError, ValueError):
                pair = ()
            if len(pair) != 2 or any(p < 0 or p >= s for p, s in zip(pair, self.strides)):
                raise ValueError(f"Conv2DTranspose '{self.name}': output_padding must be "
                                 f"non-negative and smaller than the strides {self.strides}. "
                                 f"Received: output_padding={output_padding!r}")
            output_padding = pair
        self.output_padding = output_padding

    def build(self, input_shape):
        _check_image(self, input_shape, 2)
        shape = self.kernel_size + (self.filters, input_shape[-1])
        self.kernel = self.add_weight(shape, self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        _check_image(self, input_shape, 2)
        if self.built and input_shape[-1] != self.kernel.shape[-1]:
            raise ValueError(f"Input 0 of layer '{self.name}' is incompatible with the layer: "
                             f"expected axis -1 of input shape to have value "
                             f"{self.kernel.shape[-1]}, but received input with shape "
                             f"{(None,) + tuple(input_shape)}")
        out = []
        for i in range(2):
            k = self.kernel_size[i] + (self.kernel_size[i] - 1) * (self.dilation_rate[i] - 1)
            if self.output_padding is not None:
                pad = k // 2 if self.padding == "same" else 0
                out.append((input_shape[i] - 1) * self.strides[i] + k - 2 * pad +
                           self.output_padding[i])
                continue
            size = input_shape[i] * self.strides[i]
            out.append(size if self.padding == "same" else size + max(k - self.strides[i], 0))
        return tuple(out) + (self.filters,)

    def _lower(self, graph, x):
        return graph.add_conv2d_transpose(
            x, self.kernel._storage, self.bias._storage if self.bias is not None else None,
            self.strides, self.dilation_rate, self.padding, self.activation,
            self.output_padding if self.output_padding is not None else (-1, -1))

    def get_config(self):
        c = super().get_config()
        c.pop("groups", None)
        c["output_padding"] = self.output_padding
        return c


class _DepthwiseBase(Layer):
    """What DepthwiseConv2D and SeparableConv2D share: the depthwise step's arguments."""

    def __init__(self, kernel_size, strides, padding, depth_multiplier, data_format,
                 dilation_rate, activation, use_bias, depthwise_initializer, bias_initializer,
                 depthwise_regularizer, bias_regularizer, activity_regularizer,
                 depthwise_constraint, bias_constraint, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or \
                depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be a positive integer. Received: "
                             f"depth_multiplier={depth_multiplier!r}")
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_size = _int_tuple(kernel_size, 2, "kernel_size")
        self.strides = _int_tuple(strides, 2, "strides")
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)
        self.dilation_rate = _int_tuple(dilation_rate, 2, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"`strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.depth_multiplier = depth_multiplier
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def _depthwise_shape(self, input_shape):
        _check_image(self, input_shape, 2)
        out = tuple(output_length(input_shape[i], self.kernel_size[i], self.strides[i],
                                  self.dilation_rate[i], self.padding) for i in range(2))
        if min(out) <= 0:
            raise ValueError(f"Computed output size would be zero or negative in layer "
                             f"'{self.name}': the input {tuple(input_shape[:2])} is smaller "
                             f"than the kernel {self.kernel_size} under padding='valid'")
        return out + (input_shape[-1] * self.depth_multiplier,)

    def get_config(self):
        c = super().get_config()
        c.update(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                 depth_multiplier=self.depth_multiplier, data_format=self.data_format,
                 dilation_rate=self.dilation_rate, activation=self.activation,
                 use_bias=self.use_bias,
                 depthwise_initializer=initializers.serialize(self.depthwise_initializer),
                 bias_initializer=initializers.serialize(self.bias_initializer),
                 depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer),
                 bias_regularizer=regularizers.serialize(self.bias_regularizer),
                 activity_regularizer=regularizers.serialize(self.activity_regularizer),
                 depthwise_constraint=constraints.serialize(self.depthwise_constraint),
                 bias_constraint=constraints.serialize(self.bias_constraint))
        return c


class DepthwiseConv2D(_DepthwiseBase):
    """A 2-D convolution of each input channel with its own depth_multiplier filters
    (MobileNet's building block).

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, channels * depth_multiplier).
    Weights: kernel (kh, kw, channels, depth_multiplier), bias (channels * dm,).
    """

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)

    def build(self, input_shape):
        _check_image(self, input_shape, 2)
        c = input_shape[-1]
        self.kernel = self.add_weight(self.kernel_size + (c, self.depth_multiplier),
                                      self.depthwise_initializer, "kernel",
                                      regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = (self.add_weight((c * self.depth_multiplier,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self._depthwise_shape(input_shape)

    def _lower(self, graph, x):
        return graph.add_depthwise(x, self.kernel._storage,
                                   self.bias._storage if self.bias is not None else None,
                                   self.strides, self.dilation_rate, self.padding,
                                   self.activation)


class SeparableConv2D(_DepthwiseBase):
    """A depthwise convolution, then a 1x1 convolution to `filters` channels (with the
    bias and the activation).

    Weights: depthwise_kernel (kh, kw, channels, dm), pointwise_kernel (1, 1, channels *
    dm, filters), bias (filters,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, activation, use_bias, depthwise_initializer,
                         bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters!r}.")
        self.filters = filters
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.pointwise_constraint = constraints.get(pointwise_constraint)

    def build(self, input_shape):
        _check_image(self, input_shape, 2)
        c = input_shape[-1]
        dm = self.depth_multiplier
        self.depthwise_kernel = self.add_weight(self.kernel_size + (c, dm),
                                                self.depthwise_initializer, "depthwise_kernel",
                                                regularizer=self.depthwise_regularizer,
                                                constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight((1, 1, c * dm, self.filters),
                                                self.pointwise_initializer, "pointwise_kernel",
                                                regularizer=self.pointwise_regularizer,
                                                constraint=self.pointwise_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self._depthwise_shape(input_shape)[:2] + (self.filters,)

    def _lower(self, graph, x):
        x = graph.add_depthwise(x, self.depthwise_kernel._storage, None, self.strides,
                                self.dilation_rate, self.padding, "linear")
        return graph.add_conv2d(x, self.pointwise_kernel._storage,
                                self.bias._storage if self.bias is not None else None,
                                (1, 1), (1, 1), "valid", self.activation)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters,
                 pointwise_initializer=initializers.serialize(self.pointwise_initializer),
                 pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer),
                 pointwise_constraint=constraints.serialize(self.pointwise_constraint))
        return c


class Conv1D(_Conv):
    """1-D convolution over sequences: output = activation(conv1d(input, kernel) + bias).

    Args:
        filters: positive integer, the number of output channels.
        kernel_size: int (or a 1-tuple), the window length.
        strides: int, default 1.
        padding: 'valid', 'same' (Keras's arithmetic) or 'causal' ((kernel_size - 1) *
            dilation_rate zeros before the sequence, none after: output[t] depends on
            input[:t + 1] only).
        data_format: only 'channels_last' (samples (steps, channels)).
        dilation_rate: int; cannot be combined with strides > 1.
        activation, use_bias, kernel_initializer, bias_initializer: as for Dense.

    Input shape: (batch, steps, channels). Output shape: (batch, new_steps, filters).
    Weights: kernel (kernel_size, channels, filters), bias (filters,).
    """
    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, **kwargs)


class _Pooling(Layer):
    _max = True
    rank = 2

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        r = self.rank
        self.pool_size = _int_tuple(pool_size, r, "pool_size")
        self.strides = _int_tuple(strides, r, "strides", allow_none=True) or self.pool_size
        self.padding = _padding(padding)
        self.data_format = _data_format(data_format)

    def compute_output_shape(self, input_shape):
        r = self.rank
        _check_image(self, input_shape, r)
        out = tuple(output_length(input_shape[i], self.pool_size[i], self.strides[i], 1,
                                  self.padding) for i in range(r))
        if min(out) <= 0:
            raise ValueError(f"Computed output size would be zero or negative in layer "
                             f"'{self.name}': the pool {self.pool_size} is larger than its "
                             f"input {tuple(input_shape[:r])} under padding='valid'. Received "
                             f"input_shape={(None,) + tuple(input_shape)}")
        return out + (input_shape[-1],)

    def _lower(self, graph, x):
        in_shape = tuple(graph.value_shape(x))
        if self.rank == 1:
            x = graph.add_reshape(x, [1] + list(in_shape))
        x = graph.add_pool2d(x, self._max, _as_2d(self.pool_size, self.rank),
                             _as_2d(self.strides, self.rank), self.padding)
        if self.rank == 1:
            x = graph.add_reshape(x, list(self.compute_output_shape(in_shape)))
        return x

    def get_config(self):
        c = super().get_config()
        c.update(pool_size=self.pool_size, padding=self.padding, strides=self.strides,
                 data_format=self.data_format)
        return c


class MaxPooling2D(_Pooling):
    """Max over pool_size windows of each channel.

    Args:
        pool_size: int or (height, width), default (2, 2).
        strides: int, (sy, sx) or None (= pool_size).
        padding: 'valid' or 'same' (padded positions never win).
        data_format: only 'channels_last'.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, pooled_height, pooled_width, channels).
    The gradient flows to the first maximum of each window.
    """
    _max = True

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_Pooling):
    """Mean over pool_size windows of each channel; with padding='same' the mean is
    over the positions inside the image only, as in Keras.

    Args, input and output shapes: as MaxPooling2D, except that pool_size has no
    default (as in Keras).
    """
    _max = False

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling1D(_Pooling):
    """Max over pool_size steps of each channel.

    Args:
        pool_size: int, default 2.
        strides: int or None (= pool_size).
        padding: 'valid' or 'same'.
        data_format: only 'channels_last'.

    Input shape: (batch, steps, channels). Output shape: (batch, pooled_steps, channels).
    """
    _max = True
    rank = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_Pooling):
    """Mean over pool_size steps of each channel ('same': over the steps inside the
    sequence only). Args and shapes as MaxPooling1D, except that pool_size has no
    default (as in Keras)."""
    _max = False
    rank = 1

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _GlobalPooling(Layer):
    _max = True
    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        _check_image(self, input_shape, self.rank)
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def _lower(self, graph, x):
        return graph.add_global_pool(x, self._max, self.rank, self.keepdims)

    def get_config(self):
        c = super().get_config()
        c.update(data_format=self.data_format, keepdims=self.keepdims)
        return c


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over all positions of each channel.

    Args:
        data_format: only 'channels_last'.
        keepdims: keep the spatial axes as size 1.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, channels), or (batch, 1, 1, channels) with keepdims.
    """
    _max = True


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over all positions of each channel. Args and shapes as GlobalMaxPooling2D."""
    _max = False


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over all steps of each channel.

    Args:
        data_format: only 'channels_last'.
        keepdims: keep the steps axis as size 1.

    Input shape: (batch, steps, channels). Output shape: (batch, channels), or
    (batch, 1, channels) with keepdims.

    After an Embedding with mask_zero=True (directly or through Dropout/Activation),
    the masked steps (token id 0) are left out of the max; a sequence with every step
    masked gives 0. (Keras 3's GlobalMaxPooling1D ignores the mask.) Right after an
    Embedding the two run as one kernel, with no (batch, steps, dim) intermediate.
    """
    _max = True
    rank = 1


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over all steps of each channel. Args and shapes as GlobalMaxPooling1D.

    With the mask of an Embedding(mask_zero=True), the mean is over the unmasked steps,
    as in Keras; a sequence with every step masked gives 0 (Keras divides 0 by 0).
    """
    _max = False
    rank = 1


# Keras's aliases.
Convolution1D = Conv1D
Convolution2D = Conv2D
MaxPool1D = MaxPooling1D
MaxPool2D = MaxPooling2D
AvgPool1D = AveragePooling1D
AvgPool2D = AveragePooling2D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D

__all__ = ["AvgPool1D", "AvgPool2D", "AveragePooling1D", "AveragePooling2D", "Conv1D",
           "Conv2D", "Convolution1D", "Convolution2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPool1D",
           "GlobalMaxPool2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPool1D",
           "MaxPool2D", "MaxPooling1D", "MaxPooling2D"]
