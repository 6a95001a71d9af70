"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot,
and their function forms (ember.layers.add([a, b]), ...)."""
from .base import Layer


class _Merge(Layer):
    """Element-wise merge of tensors of one shape."""

    _takes_list = True
    _op = None

    def _check_shapes(self, shapes):
        if len(shapes) < 2:
            raise ValueError(f"A merge layer should be called on a list of at least 2 "
                             f"inputs. Got {len(shapes)} inputs.")
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) needs inputs of "
                             f"one shape. Received: {[(None,) + s for s in shapes]}")

    def _symbolic_output_shape(self, shapes):
        self._check_shapes([tuple(s) for s in shapes])
        self.built = True
        self.input_shape = [(None,) + tuple(s) for s in shapes]
        out = self.compute_output_shape(shapes)
        self.output_shape = (None,) + tuple(out)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def _lower(self, graph, xs):
        return graph.add_merge(self._op, list(xs))


class Add(_Merge):
    """Sums a list of tensors of one shape: Add()([a, b])."""
    _op = "add"


class Subtract(_Merge):
    """a - b for exactly two tensors: Subtract()([a, b])."""
    _op = "subtract"

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. "
                             f"Received: {len(shapes)} inputs")
        super()._check_shapes(shapes)


class Multiply(_Merge):
    """Element-wise product of a list of tensors."""
    _op = "multiply"


class Average(_Merge):
    """Element-wise mean of a list of tensors."""
    _op = "average"


class Maximum(_Merge):
    """Element-wise maximum of a list of tensors."""
    _op = "maximum"


class Minimum(_Merge):
    """Element-wise minimum of a list of tensors."""
    _op = "minimum"


class Concatenate(_Merge):
    """Joins tensors along `axis` (default -1, the last): shapes agree elsewhere.

    Args:
        axis: the axis to join along, counted with the batch axis (0) as Keras does.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an integer. Received: axis={axis!r}")
        self.axis = axis

    def _sample_axis(self, rank):
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"Layer '{self.name}': axis {self.axis} is out of range for "
                             f"inputs of rank {rank + 1} (with the batch axis)")
        return axis - 1

    def _check_shapes(self, shapes):
        if len(shapes) < 2:
            raise ValueError(f"A `Concatenate` layer should be called on a list of at least "
                             f"2 inputs. Received: {len(shapes)}")
        rank = len(shapes[0])
        axis = self._sample_axis(rank)
        for s in shapes:
            if len(s) != rank or any(a != b for d, (a, b) in enumerate(zip(s, shapes[0]))
                                     if d != axis):
                raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes "
                                 f"except for the concatenation axis. Received: input_shape="
                                 f"{[(None,) + tuple(x) for x in shapes]}")

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        axis = self._sample_axis(len(shapes[0]))
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def _lower(self, graph, xs):
        return graph.add_concatenate(list(xs), self._sample_axis(len(graph.value_shape(xs[0]))))

    def get_config(self):
        c = super().get_config()
        c["axis"] = self.axis
        return c


class Dot(_Merge):
    """Dot product of two (batch, d) tensors along their last axis: (batch, 1); with
    normalize=True, the cosine similarity.

    Args:
        axes: 1 or -1 (ember takes samples of one axis).
        normalize: L2-normalise both inputs first.
    """

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if axes not in (1, -1, (1, 1), (-1, -1), [1, 1], [-1, -1]):
            raise ValueError(f"ember's Dot takes 2-D inputs (batch, d) with axes=1 or -1. "
                             f"Received: axes={axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. "
                             f"Received: {len(shapes)} inputs")
        if len(shapes[0]) != 1 or shapes[0] != shapes[1]:
            raise ValueError(f"ember's Dot takes two inputs of shape (batch, d) with the same "
                             f"d. Received: {[(None,) + tuple(s) for s in shapes]}")

    def compute_output_shape(self, input_shape):
        return (1,)

    def _lower(self, graph, xs):
        return graph.add_dot(xs[0], xs[1], self.normalize)

    def get_config(self):
        c = super().get_config()
        c.update(axes=self.axes, normalize=self.normalize)
        return c


def add(inputs, **kwargs):
    """Functional form of Add: add([a, b])."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of Concatenate: concatenate([a, b], axis=-1)."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
