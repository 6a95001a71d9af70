"""GradientTape: gradients of eager computations, for custom training steps.

    with ember.GradientTape() as tape:
        predictions = discriminator(images)          # one C++ forward
        loss = loss_fn(labels, predictions)          # the loss and its gradient in C++
    grads = tape.gradient(loss, discriminator.trainable_weights)   # one C++ backward
    optimizer.apply_gradients(zip(grads, discriminator.trainable_weights))

While a tape records, a model or layer called on arrays runs as one C++ forward and
returns a `Tensor`; ember.ops on Tensors (and on trainable Variables) compute in NumPy
and record how to take their gradient; a loss object called on a Tensor computes its
value and gradient in the core. `tape.gradient` walks the record backwards: a model's
backward is one C++ call that gives its inputs' and its weights' gradients. A source
the target does not depend on gets None, as in Keras.
"""
import numpy as np

_tapes = []  # the tapes recording now, innermost last
_counter = [0]


def recording():
    return any(t._recording for t in _tapes)


class Tensor:
    """An eager value that a GradientTape follows (NumPy-like: `.shape`, `.numpy()`,
    operators, np.asarray)."""

    __array_priority__ = 2000

    def __init__(self, value, node=None):
        self.value = np.asarray(value)
        self._node = node  # (vjp, inputs) or None
        _counter[0] += 1
        self._seq = _counter[0]  # made after every Tensor it was computed from

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self):
        return self.value.ndim

    def numpy(self):
        return self.value.copy()

    def __array__(self, dtype=None, copy=None):
        return self.value.astype(dtype) if dtype else self.value

    def __len__(self):
        return len(self.value)

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    def __repr__(self):
        return f"<ember.Tensor shape={self.shape}, dtype={self.dtype}, value={self.value!r}>"

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import ops
        fn = _UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if fn is not None:
            return getattr(ops, fn)(*inputs)
        if recording():
            raise ValueError(f"NumPy's {ufunc.__name__} on an ember.Tensor while a "
                             f"GradientTape records would lose its gradient: use ember.ops")
        values = [x.value if isinstance(x, Tensor) else x for x in inputs]
        return getattr(ufunc, method)(*values, **kwargs)


_UFUNCS = {"add": "add", "subtract": "subtract", "multiply": "multiply",
           "true_divide": "divide", "divide": "divide", "power": "power",
           "negative": "negative", "exp": "exp", "log": "log", "sqrt": "sqrt",
           "square": "square", "absolute": "abs", "maximum": "maximum", "minimum": "minimum",
           "tanh": "tanh", "matmul": "matmul", "greater": "greater", "less": "less",
           "greater_equal": "greater_equal", "less_equal": "less_equal", "equal": "equal",
           "not_equal": "not_equal", "sin": "sin", "cos": "cos", "log1p": "log1p",
           "expm1": "expm1", "sign": "sign", "floor": "floor"}


def value_of(x):
    from .layers.base import Variable
    if isinstance(x, Tensor):
        return x.value
    if isinstance(x, Variable):
        return x.value
    return x


def _tracked(x):
    from .layers.base import Variable
    if isinstance(x, Tensor):
        return x._node is not None or any(id(x) in t._watched for t in _tapes)
    if isinstance(x, Variable):
        return any((t._watch_variables and x.trainable) or id(x) in t._watched
                   for t in _tapes)
    if isinstance(x, (list, tuple)):
        return any(_tracked(v) for v in x)
    return False


def record(value, inputs, vjp):
    """The result of an op: a Tensor that remembers, while a tape records and some input
    is followed, how to send its gradient to its inputs. vjp(g) -> one gradient (or
    None) per input."""
    if not recording() or not any(_tracked(x) for x in inputs):
        return Tensor(value)
    return Tensor(value, (vjp, list(inputs)))


class GradientTape:
    """Records eager computations for `gradient()`. `persistent=True` allows several
    gradient calls; `watch(tensor)` follows a Tensor that no op made (or a Variable when
    `watch_accessed_variables=False`, which otherwise follows every trainable one)."""

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self._persistent = bool(persistent)
        self._watch_variables = bool(watch_accessed_variables)  # else only watch()ed ones
        self._watched = set()
        self._recording = False
        self._used = False

    def __enter__(self):
        self._recording = True
        _tapes.append(self)
        return self

    def __exit__(self, *exc):
        self._recording = False
        if self in _tapes:
            _tapes.remove(self)
        return False

    def watch(self, tensor):
        for t in tensor if isinstance(tensor, (list, tuple)) else [tensor]:
            from .layers.base import Variable
            from .step_trace import StepTensor, TraceUnsupported
            if isinstance(t, StepTensor):
                raise TraceUnsupported("GradientTape.watch of a tensor")
            if not isinstance(t, (Tensor, Variable)):
                raise ValueError(f"GradientTape.watch takes ember Tensors or Variables. "
                                 f"Received: {type(t).__name__} (convert an array with "
                                 f"ember.ops.convert_to_tensor inside the tape)")
            self._watched.add(id(t))

    def stop_recording(self):
        import contextlib

        @contextlib.contextmanager
        def paused():
            self._recording = False
            try:
                yield
            finally:
                self._recording = True
        return paused()

    def gradient(self, target, sources):
        """d(sum of target) / d(source) for each source (Tensor or Variable), shaped
        like the source; None for a source the target does not depend on."""
        from .layers.base import Variable
        if self._used and not self._persistent:
            raise RuntimeError("A non-persistent GradientTape can only be used to compute "
                               "one set of gradients; pass persistent=True for more")
        self._used = True
        single = not isinstance(sources, (list, tuple))
        srcs = [sources] if single else list(sources)
        from . import step_trace
        if step_trace.active() is not None:
            return step_trace.gradient(self, target, srcs, single)
        for s in srcs:
            if not isinstance(s, (Tensor, Variable)):
                raise ValueError(f"GradientTape.gradient: sources must be Variables or "
                                 f"Tensors. Received: {type(s).__name__}")
        if not isinstance(target, Tensor):
            out = [None] * len(srcs)
            return out[0] if single else out
        # The nodes the target depends on, each after its inputs (creation order).
        order, seen, stack = [], set(), [target]
        while stack:
            t = stack.pop()
            if id(t) in seen or not isinstance(t, Tensor) or t._node is None:
                continue
            seen.add(id(t))
            order.append(t)
            for x in t._node[1]:
                for item in (x if isinstance(x, (list, tuple)) else [x]):
                    stack.append(item)
        grads = {id(target): np.ones(target.shape, np.float32)}
        keep = {id(target): target}  # every id in grads stays alive while it is used
        for t in sorted(order, key=lambda t: t._seq, reverse=True):
            g = grads.get(id(t))
            if g is None:
                continue
            vjp, inputs = t._node
            parts = vjp(g)
            flat_inputs = []
            for x in inputs:
                flat_inputs.extend(x if isinstance(x, (list, tuple)) else [x])
            for x, gx in zip(flat_inputs, parts):
                if gx is None or not isinstance(x, (Tensor, Variable)):
                    continue
                gx = np.asarray(gx, np.float32)
                if gx.shape != tuple(x.shape):
                    gx = _unbroadcast(gx, tuple(x.shape))
                if id(x) in grads:
                    grads[id(x)] = grads[id(x)] + gx
                else:
                    grads[id(x)] = gx
                    keep[id(x)] = x
        out = []
        for s in srcs:
            g = grads.get(id(s))
            out.append(None if g is None else np.ascontiguousarray(g, dtype=np.float32))
        return out[0] if single else out


def _unbroadcast(g, shape):
    """Sums a broadcast gradient back to `shape`."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g.reshape(shape)
