"""BatchNormalization, LayerNormalization and GroupNormalization."""
import numbers

import numpy as np

from .. import initializers
from .base import Layer
from .core import _unsupported


class _Normalization(Layer):
    """What the normalization layers share: a learned per-channel scale (gamma, when
    `scale`) and shift (beta, when `center`)."""

    def _add_gamma_beta(self, channels):
        c = (channels,)
        self.gamma = self.add_weight(c, self.gamma_initializer, "gamma") if self.scale else None
        self.beta = self.add_weight(c, self.beta_initializer, "beta") if self.center else None

    def _gamma_beta_storage(self):
        """The core storage of gamma and beta (None where the layer has none)."""
        return tuple(None if w is None else w._storage for w in (self.gamma, self.beta))


class BatchNormalization(_Normalization):
    """Normalizes each channel (the last axis) with the batch's statistics in training
    and with moving statistics at inference: y = (x - mean) / sqrt(var + epsilon) *
    gamma + beta.

    Args:
        axis: the channel axis: -1 (channels_last, the default) or another (1 for
            channels_first data: moved last and back around the normalization).
        momentum: of the moving statistics: moving = moving * momentum + batch * (1 -
            momentum).
        epsilon: added to the variance.
        center, scale: whether to learn beta and gamma.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Keras initializer names or objects.

    A layer with `trainable = False` (read when the model is compiled) runs in inference
    mode, with its moving statistics, even inside `fit`, as in Keras 3.

    Input shape: any, channels last. Output shape: the same.
    Weights: gamma, beta (trainable), moving_mean, moving_variance (non-trainable), each
    (channels,), in Keras's order.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"BatchNormalization: axis must be an integer. Received: "
                             f"axis={axis!r}")
        for name, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"BatchNormalization: {name} must be a number. Received: "
                                 f"{name}={value!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1]. Received: "
                             f"momentum={momentum}")
        if not epsilon > 0:
            raise ValueError(f"BatchNormalization: epsilon must be positive. Received: "
                             f"epsilon={epsilon}")
        _unsupported(self, beta_regularizer=beta_regularizer,
                     gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                     gamma_constraint=gamma_constraint)
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.synchronized = bool(synchronized)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        rank = len(input_shape) + 1  # with the batch axis
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"BatchNormalization '{self.name}': axis {self.axis} is the batch "
                             f"axis or out of range for inputs of rank {rank}")
        self._channel = self.axis % rank - 1  # the per-sample axis normalized
        c = (input_shape[self._channel],)
        self._add_gamma_beta(c[0])
        self.moving_mean = self.add_weight(c, self.moving_mean_initializer, "moving_mean",
                                           trainable=False)
        self.moving_variance = self.add_weight(c, self.moving_variance_initializer,
                                               "moving_variance", trainable=False)
        self.built = True

    def _lower(self, graph, x):
        rank = len(graph.value_shape(x))
        last = self._channel == rank - 1
        if not last:  # channels_first and the like: the channel axis moved last and back
            perm = [a for a in range(rank) if a != self._channel] + [self._channel]
            x = graph.add_permute(x, perm)
        y = graph.add_batch_norm(x, *self._gamma_beta_storage(), self.moving_mean._storage,
                                 self.moving_variance._storage, self.epsilon, self.momentum)
        graph.note_mode(self, y)  # frozen: inference mode inside training steps
        if not last:
            y = graph.add_permute(y, [int(i) for i in np.argsort(perm)])
        return y

    def get_config(self):
        c = super().get_config()
        c.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
                 center=self.center, scale=self.scale,
                 beta_initializer=initializers.serialize(self.beta_initializer),
                 gamma_initializer=initializers.serialize(self.gamma_initializer),
                 moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
                 moving_variance_initializer=initializers.serialize(
                     self.moving_variance_initializer),
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=self.synchronized, renorm=False,
                 renorm_clipping=None, renorm_momentum=0.99)
        return c


class LayerNormalization(_Normalization):
    """Normalizes each sample over its last axis: y = (x - mean) / sqrt(var + epsilon) *
    gamma + beta, with the mean and variance of that sample's last axis (the same in
    training and at inference).

    Args:
        axis: -1 (or [-1]): ember normalizes the last axis.
        epsilon: added to the variance.
        center, scale: whether to learn beta and gamma.
        beta_initializer, gamma_initializer: Keras initializer names or objects.

    Input shape: any. Output shape: the same. Weights: gamma, beta (features,).
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if len(axes) != 1 or isinstance(axes[0], bool) or not isinstance(axes[0], int):
            raise ValueError(f"LayerNormalization: ember normalizes one axis, the last. "
                             f"Received: axis={axis!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or \
                not epsilon > 0:
            raise ValueError(f"LayerNormalization: epsilon must be a positive number. "
                             f"Received: epsilon={epsilon!r}")
        if rms_scaling:
            raise ValueError("LayerNormalization: rms_scaling=True is not supported by "
                             "ember yet")
        _unsupported(self, beta_regularizer=beta_regularizer,
                     gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                     gamma_constraint=gamma_constraint)
        self.axis = axes
        self._axis_as_given = list(axis) if isinstance(axis, (list, tuple)) else axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def build(self, input_shape):
        rank = len(input_shape) + 1
        if self.axis[0] not in (-1, rank - 1):
            raise ValueError(f"LayerNormalization '{self.name}': ember normalizes the last "
                             f"axis only. Received: axis={self.axis} for inputs of rank {rank}")
        self._add_gamma_beta(input_shape[-1])
        self.built = True

    def _lower(self, graph, x):
        return graph.add_layer_norm(x, *self._gamma_beta_storage(), self.epsilon)

    def get_config(self):
        c = super().get_config()
        # Keras turns an int axis into a list when the layer is built
        c.update(axis=list(self.axis) if self.built else self._axis_as_given,
                 epsilon=self.epsilon, center=self.center,
                 scale=self.scale, rms_scaling=False,
                 beta_initializer=initializers.serialize(self.beta_initializer),
                 gamma_initializer=initializers.serialize(self.gamma_initializer),
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None)
        return c


class GroupNormalization(_Normalization):
    """Normalizes each sample's channels in `groups` groups: every group over all its
    positions and channels, then gamma and beta per channel.

    Args:
        groups: divides the number of channels (groups=channels is instance
            normalization, groups=1 layer normalization over the whole sample).
        axis: -1 (channels last).
        epsilon, center, scale, beta_initializer, gamma_initializer: as LayerNormalization.

    Input shape: any, channels last. Output shape: the same.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"GroupNormalization: groups must be a positive integer. "
                             f"Received: groups={groups!r}")
        if axis != -1:
            raise ValueError(f"GroupNormalization: ember groups the last axis only. Received: "
                             f"axis={axis!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or \
                not epsilon > 0:
            raise ValueError(f"GroupNormalization: epsilon must be a positive number. "
                             f"Received: epsilon={epsilon!r}")
        _unsupported(self, beta_regularizer=beta_regularizer,
                     gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                     gamma_constraint=gamma_constraint)
        self.groups = groups
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def build(self, input_shape):
        c = input_shape[-1]
        if c % self.groups:
            raise ValueError(f"Number of groups ({self.groups}) must be a multiple of the "
                             f"number of channels ({c}).")
        self._add_gamma_beta(c)
        self.built = True

    def _lower(self, graph, x):
        return graph.add_group_norm(x, self.groups, *self._gamma_beta_storage(), self.epsilon)

    def get_config(self):
        c = super().get_config()
        c.update(groups=self.groups, axis=self.axis, epsilon=self.epsilon, center=self.center,
                 scale=self.scale,
                 beta_initializer=initializers.serialize(self.beta_initializer),
                 gamma_initializer=initializers.serialize(self.gamma_initializer),
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None)
        return c
