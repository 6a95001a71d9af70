"""A custom train_step traced once into C++ graphs; each batch then runs in one C++ call.

fit() calls a subclass's train_step once per batch shape on stand-ins of the batch
(StepTensors: symbolic tensors the size of the whole batch, its first axis included).
What the step does with them is recorded, not computed: ember.ops become nodes, a model
or layer called on them becomes its own nodes (its layers run on every row of the
batch), ember.random draws become random nodes, a loss object becomes its formula in
ops. `tape.gradient(loss, variables)` followed by `optimizer.apply_gradients` marks a
phase: one graph whose output is that loss, trained with that optimizer on those
variables. Metric calls (update_state, result, reset_state) are kept and replayed on
the phase's values after the C++ call.

A graph holds the batch as one sample (per-sample shapes are the batch's shapes), so
ops may reduce, index and concatenate along the batch axis. A model called on the batch
is lowered inside TimeDistributed-like frames marked as batch rows, so that its
BatchNormalization takes statistics over the batch.

What the trace cannot follow (a value read in Python, a gradient used otherwise than
applied, a watched input, a loss without an ops formula, a tensor of one phase reused
in a later one) raises TraceUnsupported, and fit runs that step eagerly instead, as
before. A Python `if` on a traced tensor is an error, as under tf.function.
"""
import inspect

import numpy as np

from . import _core
from .layers.base import Layer, lower_layer


class TraceUnsupported(Exception):
    """The step does something the trace cannot follow; fit runs it eagerly."""


class ControlFlowError(ValueError):
    """A Python branch on a traced tensor's value."""


_active = [None]  # the StepTrace recording now


def active():
    return _active[0]


_BOOL_MESSAGE = (
    "A tensor of a traced train_step (or a custom layer's call) has no value while it is "
    "traced: fit runs train_step once per batch shape to build its C++ graphs, so a "
    "Python `if` (or `and`, `or`, `not`, a `while`) on a tensor cannot choose per batch. "
    "Compute both sides and choose with ops.where(condition, a, b), branch on a Python "
    "value (such as a `training` flag), or compile(run_eagerly=True) to run the step in "
    "Python")


class StepTensor:
    """A symbolic tensor that is one whole value, its axes its own: a traced
    train_step's batch tensor (shaped like the batch), or a value a traced call computes
    from weights alone."""

    __array_priority__ = 3000

    def __init__(self, kt, scalar=False):
        from .tape import _tapes
        self._kt = kt
        self._scalar = scalar
        tr = _active[0]
        self._seg = tr.segment if tr is not None else 0
        if tr is not None:
            tr.created_since_update = True
        kt._step_seg = self._seg
        kt._step_tapes = {id(t) for t in _tapes if t._recording}  # the tapes that saw it

    @property
    def shape(self):
        return () if self._scalar else tuple(self._kt.shape[1:])

    @property
    def ndim(self):
        return len(self.shape)

    dtype = "float32"

    def __len__(self):
        if self._scalar:
            raise TypeError("len() of a scalar tensor")
        return self.shape[0]

    def __bool__(self):
        raise ControlFlowError(_BOOL_MESSAGE)

    def _no_value(self, *args, **kwargs):
        raise TraceUnsupported("a tensor's value was read in Python while the step was traced")

    __float__ = __int__ = __index__ = __array__ = numpy = __iter__ = _no_value

    def __getitem__(self, key):
        if self._scalar:
            raise TraceUnsupported("indexing a scalar")
        key = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (StepTensor, np.ndarray, list)) for k in key):
            raise TraceUnsupported("indexing with an array")
        from .ops import _getitem
        return StepTensor(_getitem(self._kt, (slice(None),) + key))

    def __repr__(self):
        return f"<ember StepTensor shape={self.shape} (traced train_step)>"


def _is_step(x):
    return isinstance(x, StepTensor)


def _symbolic_constant(value):
    """An array as a tensor of the step (a constant node)."""
    from .ops import _symbolic
    a = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    shape = a.shape or (1,)
    return StepTensor(_symbolic("constant", [], shape,
                                lambda g, v: g.add_variable(g.constant(a.reshape(shape)))),
                      scalar=not a.shape)


def _variable_tensor(var):
    """A weight read as a whole tensor (its gradient flows back to it): in a traced step,
    a value of the step's graph; inside a traced call, a value computed once per step
    from weights alone, which the input meets as a weight operand."""
    from .ops import _symbolic
    tr = _active[0]
    shape = tuple(var.shape) or (1,)
    kt = _symbolic("variable", [], shape, lambda g, v: g.add_variable(var._storage))
    if tr is not None:
        tr.read_variables[id(var._storage)] = var
    else:
        kt._weights_only = True
    return StepTensor(kt, scalar=not var.shape)


# -- ops on StepTensors -------------------------------------------------------------------------

_ELEMENTWISE = {
    "add", "subtract", "multiply", "divide", "true_divide", "power", "maximum", "minimum",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal", "negative",
    "exp", "log", "sqrt", "square", "abs", "absolute", "sign", "floor", "round", "log1p",
    "expm1", "sin", "cos", "clip", "where", "cast", "relu", "relu6", "sigmoid", "tanh",
    "elu", "selu", "gelu", "silu", "swish", "softplus", "softsign", "hard_sigmoid",
    "leaky_relu", "zeros_like", "ones_like", "convert_to_tensor", "stop_gradient",
}
_REDUCTIONS = {"sum", "mean", "max", "min", "argmax", "argmin", "logsumexp", "norm"}
_signatures = {}


def _signature(fn):
    if fn not in _signatures:
        _signatures[fn] = inspect.signature(fn)
    return _signatures[fn]


def _shift(axis, name):
    """A user's axis (the batch's first axis is 0) as the graph's (the batch is the one
    sample, its axes from 1)."""
    if isinstance(axis, (list, tuple)):
        return type(axis)(_shift(a, name) for a in axis)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"ops.{name}: axis must be an integer. Received: axis={axis!r}")
    return int(axis) + 1 if axis >= 0 else int(axis)


def _map_arguments(name, a, first):
    """The op's bound arguments rewritten for the graph's axes; `first` is the first
    tensor operand. Returns whether the result is a scalar."""
    rank = first.ndim
    if name in _REDUCTIONS:
        axis = a.get("axis")
        axes = set(range(rank)) if axis is None else {
            int(x) % max(rank, 1) for x in (axis if isinstance(axis, (list, tuple)) else [axis])}
        a["axis"] = tuple(range(1, rank + 1)) if axis is None else _shift(axis, name)
        return not a.get("keepdims", False) and axes == set(range(rank))
    if name in ("softmax", "log_softmax", "expand_dims", "concatenate", "stack", "split",
                "one_hot"):
        a["axis"] = _shift(a["axis"], name)
    elif name == "squeeze":
        if a["axis"] is not None:
            a["axis"] = _shift(a["axis"], name)
    elif name == "take":
        if a["axis"] is None:
            raise TraceUnsupported("ops.take without an axis")
        a["axis"] = _shift(a["axis"], name)
    elif name == "transpose":
        axes = a["axes"]
        axes = range(rank - 1, -1, -1) if axes is None else [int(x) % rank for x in axes]
        a["axes"] = (0,) + tuple(x + 1 for x in axes)
    elif name == "swapaxes":
        a["axis1"], a["axis2"] = _shift(a["axis1"], name), _shift(a["axis2"], name)
    elif name == "reshape":
        try:
            full = np.empty(first.shape, np.int8).reshape(a["newshape"]).shape
        except ValueError as e:
            raise ValueError(f"ops.reshape: {e}") from None
        a["newshape"] = (-1,) + tuple(full)
    elif name == "tile":
        reps = list(a["repeats"]) if isinstance(a["repeats"], (list, tuple)) else [a["repeats"]]
        a["repeats"] = [1] + [1] * (rank - len(reps)) + reps
    elif name == "einsum":
        spec = a["subscripts"].replace(" ", "")
        if "->" not in spec or "." in spec:
            raise TraceUnsupported("einsum without an explicit output")
        ins, out = spec.split("->")
        terms = ins.split(",")
        free = next(c for c in "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA"
                    if c not in spec)
        terms = [free + t if _is_step(x) else t for t, x in zip(terms, a["operands"])]
        a["subscripts"] = ",".join(terms) + "->" + free + out
    return False


def _aligned(items):
    """Elementwise operands brought to one rank (NumPy's broadcasting pads leading axes;
    the graph's ops need StepTensors of the same rank)."""
    from .ops import reshape
    reshape = reshape.__wrapped__
    ranks = [x.ndim for x in items if _is_step(x)] + \
        [np.ndim(x) for x in items if isinstance(x, np.ndarray)]
    r = max(ranks) if ranks else 0
    out = []
    for x in items:
        if _is_step(x) and x.ndim < r:
            full = (1,) * (r - x.ndim) + x.shape
            x = StepTensor(reshape(x._kt, (-1,) + (full or (1,))), scalar=not full)
        out.append(x)
    return out


def _unwrap(x):
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x._kt if _is_step(x) else x


def apply_op(name, fn, args, kwargs):
    """ember.ops `name` (fn: its function on symbolic tensors) on StepTensors or, inside
    a trace, on weights alone. A per-sample tensor among the operands (a traced call's
    input meeting a value of weights alone) keeps the result per sample."""
    from .layers.base import Variable
    from .layers.core import KerasTensor
    from .ops import _flat
    if any(isinstance(x, KerasTensor) for x in _flat(list(args) + list(kwargs.values()))):
        return fn(*_unwrap(tuple(args)), **{k: _unwrap(v) for k, v in kwargs.items()})
    if name == "shape":
        return args[0].shape if _is_step(args[0]) else np.shape(args[0])
    bound = _signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    values = _flat(a.values())
    if not any(_is_step(x) for x in values):  # weights (and constants) alone
        a = {k: (_variable_tensor(v) if isinstance(v, Variable) else
                 [_variable_tensor(t) if isinstance(t, Variable) else t for t in v]
                 if isinstance(v, list) else v) for k, v in a.items()}
        values = _flat(a.values())
    steps = [x for x in values if _is_step(x)]
    if name in _ELEMENTWISE:
        keys = [k for k, v in a.items() if _is_step(v) or isinstance(v, np.ndarray)]
        for k, v in zip(keys, _aligned([a[k] for k in keys])):
            a[k] = v
        out = fn(**{k: _unwrap(v) for k, v in a.items()})
        return StepTensor(out, scalar=all(x._scalar for x in steps) and
                          tuple(out.shape[1:]) == (1,))
    if any(x._scalar for x in steps):
        raise TraceUnsupported(f"ops.{name} on a scalar")
    if name in ("concatenate", "stack") and not all(_is_step(x) for x in a["xs"]):
        a["xs"] = [x if _is_step(x) else _symbolic_constant(x) for x in a["xs"]]
    scalar = _map_arguments(name, a, steps[0])
    params = _signature(fn).parameters
    pos = [_unwrap(a[k]) for k, p in params.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    var = [k for k, p in params.items() if p.kind == p.VAR_POSITIONAL]
    if var:
        pos += list(_unwrap(a[var[0]]))
    out = fn(*pos)
    if isinstance(out, (list, tuple)):
        return [StepTensor(o) for o in out]
    return StepTensor(out, scalar=scalar)


# -- layers and models called on StepTensors ----------------------------------------------------

def _output_shapes(layer, shapes, as_list):
    """The per-sample output shapes of layer for per-sample input shapes, from a helper
    symbolic call that is not kept as one of the layer's uses."""
    from .layers.core import Input
    ins = [Input(shape=s) for s in shapes]
    keep = {k: layer.__dict__[k] for k in ("_calls", "_input_tensor", "_output_tensor")
            if k in layer.__dict__}
    tr, _active[0] = _active[0], None
    try:
        out = layer(ins if as_list else ins[0])
    finally:
        _active[0] = tr
        for k in ("_calls", "_input_tensor", "_output_tensor"):
            layer.__dict__.pop(k, None)
        layer.__dict__.update(keep)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [tuple(o.shape[1:]) for o in outs], isinstance(out, (list, tuple))


def call_layer(layer, inputs, training):
    """layer(inputs) inside a trace, or NotImplemented when nothing in it is traced."""
    from .layers.core import KerasTensor
    if isinstance(inputs, dict):
        raise TraceUnsupported("a layer called on a dict")
    as_list = isinstance(inputs, (list, tuple))
    flat = list(inputs) if as_list else [inputs]
    if any(isinstance(x, KerasTensor) for x in flat):
        return NotImplemented
    flat = [x if _is_step(x) else _symbolic_constant(x) for x in flat]
    if any(x._scalar or x.ndim < 1 for x in flat) or len({x.shape[0] for x in flat}) != 1:
        raise TraceUnsupported("a layer called on tensors without one batch axis")
    batch = flat[0].shape[0]
    shapes, several = _output_shapes(layer, [x.shape[1:] for x in flat], as_list)
    call = _Call(layer, bool(training), as_list)
    kts = [x._kt for x in flat]
    outs = [StepTensor(KerasTensor._from_call(call, kts, (None, batch) + s, 0, k))
            for k, s in enumerate(shapes)]
    _active[0].calls.append(call)
    return outs if several else outs[0]


class _Call(Layer):
    """A layer or model called on a traced batch: its nodes run on every row (the batch's
    frames), in training mode only when called with training=True (Keras)."""

    _takes_list = True

    def __init__(self, layer, training, as_list):
        super().__init__(name=f"{layer.name}_call")
        self.layer, self.training, self.as_list = layer, training, as_list
        self.built = True

    def _sublayers(self):
        return [self.layer]

    def _lower(self, graph, xs):
        start = graph.num_values
        framed = [graph.add_frames(v, True) for v in xs]
        outer, graph.frames_like = graph.frames_like, framed[0]
        try:
            y = lower_layer(self.layer, graph, framed if self.as_list else framed[0])
        finally:
            graph.frames_like = outer
        ys = [graph.add_unframes(v, xs[0]) for v in (y if isinstance(y, list) else [y])]
        if not self.training:
            for v in range(start, graph.num_values):
                graph.set_inference_only(v, True)
        return ys if len(ys) > 1 else ys[0]


# -- gradients and updates ----------------------------------------------------------------------

class StepGradient:
    """tape.gradient's result for one variable inside a trace: only an optimizer can
    take it."""

    def __init__(self, phase, variable):
        self.phase, self.variable = phase, variable

    def _refuse(self, *args, **kwargs):
        raise TraceUnsupported("a gradient used otherwise than applied by an optimizer")

    __array__ = __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __truediv__ = _refuse
    numpy = __float__ = __neg__ = _refuse
    shape = property(_refuse)


class _Phase:
    def __init__(self, loss, segment):
        self.loss, self.segment = loss, segment
        self.stops = set()  # id(tensor) of values computed outside the tape
        self.optimizer = None
        self.variables = []


def gradient(tape, target, sources, single):
    """tape.gradient inside a trace: a StepGradient per source the target reaches (None
    for the others, as Keras)."""
    from .layers.base import Variable
    from .models.functional import _topological
    tr = _active[0]
    if not _is_step(target):
        out = [None] * len(sources)
        return out[0] if single else out
    if any(not isinstance(s, Variable) for s in sources):
        raise TraceUnsupported("a gradient with respect to a tensor")
    if not tape._watch_variables:
        raise TraceUnsupported("a tape that follows only watched variables")
    phase = _Phase(target, tr.segment)
    reached = tr.variables_reached([target._kt])
    # The tape saw only what was computed while it recorded: a value computed outside it
    # is a constant to it. The graph would differentiate through it, so such a value
    # must not depend on the variables differentiated.
    wanted = {id(s._storage) for s in sources} & reached
    order, _ = _topological([target._kt], tr.inputs)
    def unseen(t):
        return id(tape) not in getattr(t, "_step_tapes", {id(tape)}) and not t._is_input
    frontier = {id(p): p for t in order if not unseen(t) for p in t._inputs if unseen(p)}
    phase.stops = {key for key, p in frontier.items()
                   if tr.variables_reached([p]) & wanted}
    out = [StepGradient(phase, s) if id(s._storage) in reached else None for s in sources]
    tr.gradients.append(phase)
    return out[0] if single else out


def apply_gradients(optimizer, grads, variables):
    """optimizer.apply inside a trace: the update of the phase its gradients belong to.
    The first update after gradients were taken ends their segment: every gradient of
    that segment (several tapes over one forward) comes from the weights before it."""
    tr = _active[0]
    taken = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if any(not isinstance(g, StepGradient) for g, _ in taken):
        raise TraceUnsupported("an optimizer given arrays inside a traced step")
    phases = {id(g.phase): g.phase for g, _ in taken}
    if len(phases) != 1 or any(g.variable is not v for g, v in taken):
        raise TraceUnsupported("gradients of several tape.gradient calls in one update")
    phase = next(iter(phases.values()))
    if phase.optimizer is not None:
        raise TraceUnsupported("gradients applied twice")
    if phase.segment == tr.segment:  # the segment's first update
        tr.segment += 1
        tr.open_group = phase.segment
    elif phase.segment != tr.open_group or tr.created_since_update:
        raise TraceUnsupported("gradients applied after tensors of a later update")
    phase.optimizer = optimizer
    phase.variables = [v for _, v in taken]
    tr.phases.append(phase)
    tr.created_since_update = False


def note_labels(y_true, classes):
    """Integer labels of a sparse loss inside a trace: when they are a batch array, each
    run checks them against the classes, as the eager loss does."""
    tr = _active[0]
    if tr is not None and _is_step(y_true):
        for i, t in enumerate(tr.inputs):
            if y_true._kt is t:
                tr.label_checks.append((i, int(classes)))


def _check_batch(leaves, label_checks):
    """Clear errors for what the graphs would compute silently: a value that is not
    finite, a label outside its classes."""
    for k, a in enumerate(leaves):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"train_step's data: array {k} of shape {a.shape} holds "
                             f"{a[tuple(bad)]} at {tuple(int(i) for i in bad)}; the data must "
                             f"be finite")
    for k, classes in label_checks:
        labels = leaves[k].reshape(-1)
        bad = np.flatnonzero((labels < 0) | (labels >= classes) | (labels != np.floor(labels)))
        if bad.size:
            raise ValueError(f"Received a label value of {labels[bad[0]]} (sample {bad[0]}) "
                             f"which is outside the valid range of [0, {classes}) for the "
                             f"{classes}-class output")


# -- metric calls -------------------------------------------------------------------------------

class Deferred:
    """A metric's result asked for inside a trace: computed when the step's record is
    replayed after its C++ call."""

    def __init__(self, index):
        self.index = index


def deferring(fn, kind):
    """Wraps a metric method: inside a trace the call is recorded for replay (result()
    returns a Deferred), elsewhere it runs."""
    def method(self, *args, **kwargs):
        tr = _active[0]
        if tr is None:
            return fn(self, *args, **kwargs)
        tr.effects.append((fn, self, args, kwargs))
        return Deferred(len(tr.effects) - 1) if kind == "result" else None
    method.__name__, method.__doc__, method.__wrapped__ = fn.__name__, fn.__doc__, fn
    method._deferring = True
    return method


def defer_metric_methods(cls):
    for name in ("update_state", "result", "reset_state"):
        fn = cls.__dict__.get(name)
        if fn is not None and not getattr(fn, "_deferring", False):
            setattr(cls, name, deferring(fn, name))


# -- the trace and its runs ---------------------------------------------------------------------

class StepTrace:
    """The record of one train_step call on a batch of given shapes."""

    def __init__(self):
        self.segment = 0  # updates' segments: tensors made before the first, then ...
        self.open_group = -1  # the segment whose gradients are being applied
        self.created_since_update = False
        self.label_checks = []  # (batch array, classes) of sparse losses' labels
        self.calls = []
        self.gradients = []
        self.phases = []
        self.effects = []
        self.read_variables = {}

    def variables_reached(self, kts):
        """id(core variable) of every weight the symbolic tensors depend on (from a
        graph of them, lowered and dropped)."""
        graph, _ = _lowered(self, list(kts))
        return {id(v) for v in graph.variables}


def _lowered(trace, outs, stops=()):
    """(graph, builder) of the trace's tensors `outs` (KerasTensors), every batch array an
    input, the outputs set in order (a tensor read twice gets a view of its own); no
    gradient flows back through the tensors whose ids are in `stops`."""
    from .layers.base import lower_nodes
    from .models.functional import _topological
    from .models.model import _Builder
    order, _ = _topological(outs, trace.inputs)
    graph = _core.Graph()
    builder = _Builder(graph)
    builder.with_losses = False  # the step's loss is the user's
    values = {id(t): graph.add_input(list(t.shape[1:])) for t in trace.inputs}
    values = lower_nodes(builder, [t for t in order if id(t) not in values], values,
                         lambda t, v: builder.add_stop_gradient(v) if id(t) in stops else v)
    out_values = []
    for t in outs:
        v = values[id(t)]
        out_values.append(v if v not in out_values and not t._is_input else
                          builder.add_reshape(v, list(graph.value_shape(v))))
    graph.set_outputs(out_values)
    return graph, builder


class TracedStep:
    """A model's train_step (test_step, predict_step) traced for one batch structure:
    one graph per segment of the step (the tensors made before an update and its
    gradients), run in order; a test or predict step is one graph run forward."""

    def __init__(self, model, data, kind="train"):
        from .layers.core import Input
        leaves, self.structure = _leaves(data)
        tr = StepTrace()
        tr.inputs = [Input(shape=a.shape if a.ndim else (1,)) for a in leaves]
        _active[0] = tr
        try:
            stand_ins = [StepTensor(k, scalar=not a.ndim) for k, a in zip(tr.inputs, leaves)]
            logs = getattr(model, f"{kind}_step")(_rebuild(self.structure, stand_ins))
        finally:
            _active[0] = None
        if kind == "train" and not tr.phases:
            raise TraceUnsupported("no optimizer update")
        if kind != "train" and tr.gradients:
            raise TraceUnsupported(f"a {kind} step that takes gradients")
        if len(tr.gradients) != len(tr.phases):
            raise TraceUnsupported("a gradient taken and never applied")
        self.trace = tr
        self.logs = logs
        groups = {} if tr.phases else {0: []}
        for p in tr.phases:  # in the order of their updates
            groups.setdefault(p.segment, []).append(p)
        # Every tensor read after the run, from the graph of its segment.
        wanted = []
        for fn, obj, args, kwargs in tr.effects:
            wanted.extend(_tensors_in((args, kwargs)))
        wanted.extend(_tensors_in(logs))
        read = {}
        for t in wanted:
            if t._seg not in groups and not t._kt._is_input:
                raise TraceUnsupported("a tensor computed after the last update")
            read.setdefault(id(t._kt), t)
        self.groups = [_Group(tr, seg, phases, [t for t in read.values() if t._seg == seg])
                       for seg, phases in sorted(groups.items())]
        self.steps = 0

    def run(self, data):
        """One step on a batch: the graphs in order (consecutive single updates in one C++
        call), then the metric calls replayed on their values; returns the logs."""
        leaves, _ = _leaves(data)
        _check_batch(leaves, self.trace.label_checks)
        xs = [np.ascontiguousarray(a, dtype=np.float32).reshape((1,) + (a.shape or (1,)))
              for a in leaves]
        self.steps += 1
        values = {id(i): x for i, x in zip(self.trace.inputs, leaves)}
        pending = []

        def flush():
            if pending:
                outs = _core.train_steps([g.call(xs) for g in pending])
                for g, o in zip(pending, outs):
                    g.store(o, values)
                pending.clear()
        for g in self.groups:
            if len(g.phases) == 1:
                pending.append(g)
            else:
                flush()
                g.run_tape(xs, self.steps, values)  # several gradients, or none
        flush()
        results = []
        for fn, obj, args, kwargs in self.trace.effects:
            results.append(fn(obj, *_substitute(args, values, results),
                              **_substitute(kwargs, values, results)))
        return _substitute(self.logs, values, results)


class _Group:
    """The graph of one segment: its losses (one per gradient taken there) and the
    tensors of the segment read after the run. One loss trains as a C++ training step;
    several (tapes over one forward) run one forward, a backward per loss, then the
    updates in their order."""

    def __init__(self, tr, seg, phases, reads):
        from .models.functional import _topological
        self.phases = phases
        losses = [p.loss for p in phases]
        extra = [t for t in reads if not t._kt._is_input and
                 not any(t._kt is x._kt for x in losses)]
        outs = [t._kt for t in losses + extra]
        order, _ = _topological(outs, tr.inputs)
        for t in order:
            if getattr(t, "_step_seg", seg) != seg and not t._is_input:
                raise TraceUnsupported("a tensor of one update's phase used in a later one")
        stops = phases[0].stops if phases else set()
        if any(p.stops != stops for p in phases):
            raise TraceUnsupported("tapes that saw different parts of the forward")
        graph, builder = _lowered(tr, outs, stops)
        owners = dict(builder.constants)
        for call in tr.calls:
            for part in call.layer._all_layers():
                for v in part._weights:
                    owners[id(v._storage)] = (part, v)
        for key, v in tr.read_variables.items():
            owners.setdefault(key, (None, v))
        variables = []
        for core in graph.variables:
            if id(core) not in owners:
                raise TraceUnsupported("a weight of no called layer")
            variables.append(owners[id(core)][1])
        for layer, value in builder.modes:  # Keras 3: a frozen layer runs as at inference
            if not layer.trainable:
                graph.set_inference_only(value, True)
        updated = {id(v) for p in phases for v in p.variables}
        graph.set_variable_flags([id(v) in updated for v in variables],
                                 [id(v) in updated and phases[0].optimizer._use_weight_decay(v)
                                  for v in variables])
        self.training = bool(phases)  # a test step's graph runs as at inference
        self.graph = graph
        self.reads = losses + extra
        self.dys = []
        for o in range(len(outs)):
            if len(phases) == 1 and o > 0:
                continue
            graph.set_output(o, "external", False, 1.0, 1.0, [])
        shapes = [(1,) + tuple(s) for s in graph.output_shapes]
        if len(phases) == 1:
            graph.set_variable_constraints([
                v.constraint._core_spec(v.shape) if getattr(v, "constraint", None) is not None
                else ("", 1, 0.0, 0.0, 1.0) for v in variables])
            phases[0].optimizer._attach(graph)
            self.ys = [np.ones(shapes[0], np.float32)] + [None] * (len(outs) - 1)
        else:
            graph.set_input_gradients([False] * len(tr.inputs))
            index = {id(v): k for k, v in enumerate(variables)}
            for j, p in enumerate(phases):
                dys = [np.zeros(s, np.float32) for s in shapes]
                dys[j][...] = 1.0
                self.dys.append((dys, [index[id(v)] for v in p.variables]))

    def call(self, xs):
        p = self.phases[0]
        return (self.graph, xs, self.ys, p.optimizer._current_learning_rate())

    def store(self, outs, values):
        for t, a in zip(self.reads, outs):
            values[id(t._kt)] = a.reshape(t.shape)

    def run_tape(self, xs, step, values):
        token, outs = self.graph.tape_forward(xs, self.training, step)
        grads = []
        for dys, indices in self.dys:
            self.graph.tape_backward(xs, dys, True, step, token, [])
            grads.append([self.graph.variable_gradient(k) for k in indices])
        for p, g in zip(self.phases, grads):
            p.optimizer.apply(g, p.variables)
        self.store(outs, values)


def _leaves(data):
    """(arrays, structure) of a batch: x, (x, y), (x, y, sample_weight), lists and dicts
    of arrays."""
    leaves = []

    def walk(d):
        if isinstance(d, (list, tuple)):
            return (type(d), [walk(v) for v in d])
        if isinstance(d, dict):
            return (dict, {k: walk(v) for k, v in d.items()})
        if d is None:
            return None
        a = np.asarray(d)
        if a.dtype.kind not in "biuf":
            raise TraceUnsupported(f"data of dtype {a.dtype}")
        leaves.append(a)
        return len(leaves) - 1
    return leaves, walk(data)


def _rebuild(structure, items):
    if structure is None:
        return None
    if isinstance(structure, int):
        return items[structure]
    kind, inner = structure
    if kind is dict:
        return {k: _rebuild(v, items) for k, v in inner.items()}
    return kind(_rebuild(v, items) for v in inner)


def _tensors_in(obj):
    if _is_step(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    return []


def _substitute(obj, values, results):
    if _is_step(obj):
        return values[id(obj._kt)]
    if isinstance(obj, Deferred):
        return results[obj.index]
    if isinstance(obj, tuple):
        return tuple(_substitute(v, values, results) for v in obj)
    if isinstance(obj, list):
        return [_substitute(v, values, results) for v in obj]
    if isinstance(obj, dict):
        return {k: _substitute(v, values, results) for k, v in obj.items()}
    return obj


