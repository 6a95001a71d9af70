"""Model: compile, fit, evaluate, predict. Each batch is one call into the C++
executor (forward, loss, backward and update together, GIL released)."""
import contextlib
import functools
import math
import numbers
import threading
import warnings

import numpy as np

from .. import _core, _random, losses as losses_mod, metrics as metrics_mod
from .. import optimizers as optimizers_mod
from .. import saving
from ..callbacks import Callback, CallbackList, History, ProgbarLogger
from ..layers.base import Layer, Variable, assign_weights, lower_layer
from ..utils.dataset import Prefetcher, PyDataset, is_stream, split_batch
from . import stepping


_F32 = np.dtype(np.float32)
# Larger batch sizes mean "all at once": the engine takes int64 sizes.
_MAX_BATCH = 1 << 62


def _split_at(n, validation_split):
    """Where validation_split cuts n samples (Keras: the last fraction, before any
    shuffling)."""
    split = int(math.floor(n * (1.0 - validation_split)))
    if split in (0, n):
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to "
                         f"split it into a validation and training set as specified by "
                         f"validation_split={validation_split}")
    return split


def _verbose(v):
    if v == "auto":
        return 1
    if v not in (0, 1, 2, False, True):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2. Received: verbose={v!r}")
    return int(v)


def _batch_size(bs, name="batch_size"):
    if bs is None:
        return 32
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={bs!r}")
    return min(int(bs), _MAX_BATCH)


def _uses_model(method):
    """Runs a model call under Model._in_use (see Model._changing)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._in_use():
            return method(self, *args, **kwargs)
    return wrapper


def _check_epochs(epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer. Received: epochs={epochs!r}")
    return int(epochs)


def _steps(steps, name="steps_per_epoch"):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a positive integer or None. Received: "
                         f"{name}={steps!r}")
    return int(steps)


def _callback_list(callbacks):
    """A list of callbacks from None, one Callback (Keras accepts it) or a list."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if isinstance(callbacks, (list, tuple)):
        bad = [c for c in callbacks if not isinstance(c, Callback)]
        if bad:
            raise ValueError(f"callbacks must be Callback instances. Received: {bad[0]!r}")
        return list(callbacks)
    raise ValueError(f"callbacks must be a Callback or a list of them. Received: {callbacks!r}")


def _unsupported(**kwargs):
    for k, v in kwargs.items():
        if v is not None:
            raise ValueError(f"ember's fit/evaluate/predict on arrays do not support `{k}` yet. "
                             f"Received: {k}={v!r}")


def _cut(arrays, start, stop):
    """Rows [start, stop) of each array of a list (None entries stay None)."""
    return [None if a is None else a[start:stop] for a in arrays]


def _ids_check_of(layer):
    """A layer's token-id check, looking into a nested model's first reader."""
    if isinstance(layer, Model):
        return layer._id_checker(0)
    return getattr(layer, "_check_ids", None)


class _Constants:
    """The owner of the arrays traced ops read: never trained."""
    trainable = False


_CONSTANTS = _Constants()


class _Derived:
    """The owner of the weights computed from other weights in a traced call: their
    gradient flows back to those weights; the optimizer never updates them."""
    trainable = True


_DERIVED = _Derived()


class _Builder:
    """The core graph as layers see it while a model is lowered: every builder of
    `_core.Graph`, plus `note_mode(layer, value)` for layers whose node runs in inference
    mode while the layer is frozen (BatchNormalization)."""

    def __init__(self, graph):
        self._graph = graph
        self.modes = []
        self.constants = {}  # id(core variable) -> (owner, Variable): arrays ops read

    def constant(self, array):
        """A frozen core variable holding an array that a traced op reads."""
        v = Variable(array, "constant", trainable=False)
        self.constants[id(v._storage)] = (_CONSTANTS, v)
        return v._storage

    def note_mode(self, layer, value):
        self.modes.append((layer, value))

    def derived(self, tensor):
        """The core variable holding `tensor`, a value a traced call computed from
        weights alone: a program of its ops fills it before every forward."""
        cache = self.__dict__.setdefault("_derived", {})
        if id(tensor) in cache:
            return cache[id(tensor)]
        from ..layers.base import lower_nodes
        from .functional import _topological
        program = _core.Graph()
        builder = _Builder(program)
        program.add_input([1])
        order, _ = _topological([tensor], [])
        values = lower_nodes(builder, order, {})
        program.set_outputs([values[id(tensor)]])
        self.constants.update(builder.constants)
        v = Variable(np.zeros(tensor.shape[1:], np.float32), "derived")
        self.constants[id(v._storage)] = (_DERIVED, v)
        self._graph.add_derived(program, v._storage)
        cache[id(tensor)] = v._storage
        return v._storage

    # The value whose frames the layers being lowered run in (TimeDistributed, a traced
    # step's model call): random values drawn there are drawn for every frame.
    frames_like = -1

    def add_random(self, *args, **kwargs):
        return self._graph.add_random(*args, like=self.frames_like, **kwargs)

    # Whether layers' add_loss terms join the graph's loss (not for a GradientTape's
    # graph or a traced train_step's, whose loss is the user's).
    with_losses = True

    def add_loss_term(self, value, sum):  # noqa: A002 (the core's name)
        if self.with_losses:
            self._graph.add_loss_term(value, sum)

    def __getattr__(self, name):
        return getattr(self._graph, name)


class _Totals:
    """Running sums of one pass (an epoch, an evaluation): the loss sum(w * L), each
    metric's sum, the samples and the sample weights seen."""

    def __init__(self, metrics, outputs=0):
        self.loss, self.count, self.weight = 0.0, 0, 0.0
        self.metrics = [0.0] * metrics
        self.outputs = [0.0] * outputs

    def add(self, res, n, weight):
        """Adds one step's (loss_sum, metric_sums, output_loss_sums) over n samples of
        total weight."""
        self.loss += res[0]
        self.count += n
        self.weight += weight
        # A model of inputs of any length builds its graph (and learns its metrics'
        # widths and its outputs) at its first batch, after the sums were made.
        self.metrics += [0.0] * (len(res[1]) - len(self.metrics))
        self.outputs += [0.0] * (len(res[2]) - len(self.outputs))
        for i, v in enumerate(res[1]):
            self.metrics[i] += v
        for i in range(len(self.outputs)):
            self.outputs[i] += res[2][i]


class Model(Layer):
    """Base of ember models: the Keras training API over a C++ executor.

    Subclasses provide `layers` (a chain) and `_sample_input_shape()`.
    """

    def __new__(cls, *args, **kwargs):
        # Keras's entry point: Model(inputs, outputs) makes a functional model.
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional
            return Functional.__new__(Functional)
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            # Model(inputs, outputs) itself became a Functional in __new__; this is a
            # Model subclass handing inputs and outputs to its base.
            raise ValueError("A Model subclass passing inputs and outputs to Model.__init__ "
                             "is not supported yet; define call() instead, or use "
                             "ember.Model(inputs, outputs)")
        super().__init__(**kwargs)
        # Building, compiling and adding layers happen under _lock, once, whichever
        # thread calls first; _users counts the calls running in each thread, so that a
        # change of structure while another thread trains or predicts is refused.
        self._lock = threading.RLock()
        self._users = {}
        self._graph = None
        self._ready_shape = None
        self.optimizer = None
        self.loss = None
        self._metric_names = []
        self._metric_weighted = []
        self._metric_objs = []
        self._metric_widths = []
        self._metric_at = []
        self._metric_dens = []
        self._metric_total = 0
        self._metric_ids = []
        self._weighted_ids = []
        self.compiled = False
        self._loss_weights_arg = None
        self._output_losses = []
        self._output_loss_names = []
        self.stop_training = False
        self.history = None
        self._in_fit = False

    # -- building -----------------------------------------------------------------
    def _build_graph(self, sample_shape):
        """Lowers the model into a C++ graph for per-sample input shape(s) (one shape, or
        a list for several inputs). The graph refers to the layers' variables."""
        shapes = sample_shape if isinstance(sample_shape, list) else [sample_shape]
        shapes = [tuple(s) for s in shapes]
        graph, builder, outs = self._lowered(shapes)
        self._graph_vars = self._owners(graph, builder)
        self._graph = graph
        self._mode_nodes = builder.modes
        self.built = True
        out_shapes = [tuple(s) for s in graph.output_shapes]
        self._input_shapes = [(None,) + s for s in shapes]
        self._output_shapes = [(None,) + s for s in out_shapes]
        self.input_shape = self._input_shapes[0] if len(shapes) == 1 else self._input_shapes
        raw = self._raw_input_shapes()
        if raw is not None:  # strings before the preprocessing layers
            self.input_shape = raw[0] if len(raw) == 1 else raw
        self.output_shape = self._output_shapes[0] if len(outs) == 1 else self._output_shapes
        # Input shape that _prepare_x may accept after checking only the type, the
        # dtype, contiguity and finiteness (token ids need their range checked too).
        self._ready_shape = (shapes[0] if len(shapes) == 1 and len(outs) == 1 and
                             self._id_checker(0) is None and not any(self._prefixes())
                             else None)
        if self.compiled and self.loss is not None:
            self._attach_training()
        declared = self._declared_shapes()
        if declared is not None:  # inputs of any length: one graph per length seen
            self.input_shape = ((None,) + declared[0] if len(declared) == 1 else
                                [(None,) + d for d in declared])
            self._remember_graph(tuple(shapes))

    # -- inputs of unknown length (Input(shape=(None, ...))) ------------------------------
    _MAX_GRAPHS = 8  # graphs kept, one per input shape, the least recently used dropped

    def _declared_shapes(self):
        """The per-sample input shapes the model declares when some dimension is None
        (sequences of any length), else None."""
        known = self._sample_input_shape()
        if known is None:
            return None
        shapes = known if isinstance(known, list) else [known]
        shapes = [tuple(s) for s in shapes]
        return shapes if any(d is None for s in shapes for d in s) else None

    def _remember_graph(self, key):
        cache = self.__dict__.setdefault("_graphs", {})
        cache.pop(key, None)
        cache[key] = {k: getattr(self, k) for k in (
            "_graph", "_graph_vars", "_mode_nodes", "_input_shapes", "_output_shapes",
            "_ready_shape", "output_shape")}
        cache[key]["compile_count"] = self.__dict__.get("_compile_count", 0)
        while len(cache) > self._MAX_GRAPHS:
            del cache[next(iter(cache))]

    def _use_graph_for(self, shapes, name="x"):
        """Makes the graph for these concrete per-sample input shapes the current one
        (built on first use) when the model takes inputs of any length."""
        declared = self._declared_shapes()
        if declared is None:
            return
        shapes = [tuple(s) for s in shapes]
        if len(shapes) != len(declared) or any(
                len(s) != len(d) or any(a is not None and a != b for a, b in zip(d, s))
                for s, d in zip(shapes, declared)):
            want = [(None,) + d for d in declared]
            raise ValueError(f"Input of model '{self.name}' is incompatible: expected shape="
                             f"{want[0] if len(want) == 1 else want}, found per-sample "
                             f"shape {shapes[0] if len(shapes) == 1 else shapes}")
        key = tuple(shapes)
        if self._graph is not None and tuple(s[1:] for s in self._input_shapes) == key:
            return
        with self._changing(f"running on inputs of another shape ({name})"):
            cache = self.__dict__.setdefault("_graphs", {})
            if key in cache:
                entry = cache.pop(key)
                cache[key] = entry
                for k, v in entry.items():
                    if k != "compile_count":
                        setattr(self, k, v)
                if entry["compile_count"] != self.__dict__.get("_compile_count", 0) and \
                        self.compiled and self.loss is not None:
                    self._attach_training()
                    entry["compile_count"] = self._compile_count
            else:
                self._build_graph(list(shapes) if len(shapes) > 1 else shapes[0])

    def _lowered(self, shapes, with_losses=True):
        """(graph, builder, output values) of the model lowered for these per-sample
        input shapes, its outputs set."""
        graph = _core.Graph()
        builder = _Builder(graph)
        builder.with_losses = with_losses
        ins = [graph.add_input(list(s)) for s in shapes]
        outs = self._lower(builder, ins if len(ins) > 1 else ins[0])
        outs = outs if isinstance(outs, list) else [outs]
        graph.set_outputs(outs)
        return graph, builder, outs

    def _owners(self, graph, builder):
        """(owning layer, Variable) for each variable of a graph lowered from this
        model, in the graph's order."""
        owners = dict(builder.constants)
        for layer in self._flat_layers():
            for v in layer._weights:
                owners[id(v._storage)] = (layer, v)
        out = []
        for core in graph.variables:
            if id(core) not in owners:
                raise ValueError(f"Model '{self.name}': the graph uses a variable no layer "
                                 f"of the model owns")
            out.append(owners[id(core)])
        return out

    def _flat_layers(self):
        """Every layer, nested models' layers included, each once."""
        seen, out = set(), []
        for layer in ([self] if self._traced else []) + self.layers:
            if layer is self:
                seen.add(id(self))
                out.append(self)
                continue
            for inner in (layer._flat_layers() if isinstance(layer, Model)
                          else layer._all_layers()):
                if id(inner) not in seen:
                    seen.add(id(inner))
                    out.append(inner)
        return out

    def _all_layers(self):
        return [self] + [layer for layer in self._flat_layers() if layer is not self]

    _keeps_parts = True  # a subclassed model's attributes hold its layers

    @property
    def layers(self):
        """A subclassed model's layers: those its attributes hold, in assignment order."""
        return self._sublayers()

    def _lower(self, graph, x):
        """Adds the model's nodes to `graph` (inlined when the model is used as a layer);
        returns the output value(s)."""
        if self._traced:  # a subclassed model: what its call() records
            return Layer._lower(self, graph, x)
        shape = tuple(graph.value_shape(x))
        for layer in self._graph_layers():
            layer._maybe_build(shape)
            x = lower_layer(layer, graph, x)
            if layer._traced:  # its output shape is what its trace made
                shape = tuple(graph.value_shape(x))
            else:
                shape = tuple(layer.compute_output_shape(shape))
            if tuple(graph.value_shape(x)) != shape:
                raise ValueError(f"Layer '{layer.name}' lowered to output shape "
                                 f"{tuple(graph.value_shape(x))}, expected {shape}")
        return x

    def _id_checker(self, i):
        """The token-id check of the Embedding that reads input i first, or None (the
        core still refuses a bad id, with a plainer message)."""
        layers = self._graph_layers()
        return _ids_check_of(layers[0]) if i == 0 and layers else None

    # -- preprocessing before the graph (string layers first in the model) ----------------
    def _graph_layers(self):
        """The layers the compiled graph runs (a chain)."""
        return self.layers

    def _prefixes(self):
        """Per input, the preprocessing layers applied to it before the graph (empty
        lists when there are none; an empty list for a model without any)."""
        return []

    def _raw_input_shapes(self):
        """The model's input shapes before its preprocessing layers, or None."""
        return None

    def _preprocess(self, x, name):
        """x with each input's preprocessing layers applied (the raw shape and dtype of
        input 0 remembered, for the model's config)."""
        prefixes = self._prefixes()
        if not any(prefixes) or x is None:
            return x
        xs = self._as_inputs(x, name) if len(prefixes) > 1 or isinstance(x, dict) else [x]
        out = []
        for i, (chain, xi) in enumerate(zip(prefixes, xs)):
            if chain:
                a = np.asarray(xi)
                if i == 0:
                    kind = ("string" if a.dtype.kind in "OUS" else
                            "int64" if a.dtype.kind in "iub" else "float32")
                    self._raw_input = (a.shape[1:] or (1,), kind)
                for layer in chain:
                    xi = layer._apply(xi)
            out.append(xi)
        return out if len(out) > 1 else out[0]

    # A model used as a layer (nested in a Sequential, or called on a tensor).
    def _maybe_build(self, input_shape):
        if not self.built:
            with self._changing("build()"):
                self._build_graph(tuple(input_shape))

    def compute_output_shape(self, input_shape):
        if not self.built:
            self._maybe_build(input_shape)
        return tuple(self.output_shape[1:])

    def _symbolic_output_shape(self, shapes):
        if len(getattr(self, "_input_shapes", [None])) > 1 or \
                len(getattr(self, "_output_shapes", [None])) > 1:
            raise ValueError(f"Model '{self.name}' has several inputs or outputs: ember uses "
                             f"models of one input and one output as layers")
        return super()._symbolic_output_shape(shapes)

    def build(self, input_shape=None):
        """Builds the model for inputs of shape (batch, ...)."""
        if input_shape is None:
            input_shape = (None,) + tuple(self._sample_input_shape() or ())
        with self._changing("build()"):
            self._build_graph(tuple(input_shape)[1:])

    def _ensure_graph(self, sample_shape):
        if self._graph is None:
            with self._lock:  # the first caller builds; the others find it built
                if self._graph is None:
                    if self._declared_shapes() is not None:
                        self._use_graph_for(sample_shape if isinstance(sample_shape, list)
                                            else [sample_shape])
                        return
                    known = self._sample_input_shape()
                    self._build_graph(known if known is not None else sample_shape)

    @contextlib.contextmanager
    def _in_use(self):
        """Marks a fit/evaluate/predict/..._on_batch call running in this thread."""
        me = threading.get_ident()
        with self._lock:
            self._users[me] = self._users.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                if self._users[me] == 1:
                    del self._users[me]
                else:
                    self._users[me] -= 1

    @contextlib.contextmanager
    def _changing(self, what):
        """Holds the lock for a change of structure (build, compile, add, pop), which
        must not happen under a step that another thread is running."""
        with self._lock:
            me = threading.get_ident()
            if any(t != me for t in self._users):
                raise RuntimeError(
                    f"Model '{self.name}' is being trained or run in another thread: "
                    f"{what} must wait until that call returns")
            yield

    def _sample_input_shape(self):
        # A subclassed model knows its input shape once built (from data or build()).
        if self._traced and self._graph is not None:
            shapes = [s[1:] for s in self._input_shapes]
            return shapes[0] if len(shapes) == 1 else shapes
        return None

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configures training: optimizer, loss and metrics (names or objects)."""
        with self._changing("compile()"):
            self._compile(optimizer, loss, metrics, loss_weights, weighted_metrics)
        self.run_eagerly = bool(run_eagerly)
        for cache in stepping._TRACE_CACHES.values():  # custom steps are traced anew
            self.__dict__.pop(cache, None)

    def _compile(self, optimizer, loss, metrics, loss_weights, weighted_metrics):
        if loss is None and not self._custom_step:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers_mod.get(optimizer)
        self._loss_arg = loss
        self._loss_weights_arg = loss_weights
        ids = {}
        for arg, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is None:
                value = []
            if isinstance(value, str) or not isinstance(value, (list, tuple, dict)):
                raise ValueError(f"{arg} must be a list (or a dict per output). Received: "
                                 f"{arg}={value!r}")
            ids[arg] = value if isinstance(value, dict) else list(value)
        self._metric_ids = ids["metrics"]
        self._weighted_ids = ids["weighted_metrics"]
        # Losses are resolved now (a bad name fails here); per output at build time.
        for value in (loss.values() if isinstance(loss, dict) else
                      loss if isinstance(loss, (list, tuple)) else [loss]):
            if value is not None:
                losses_mod.get(value)
        single = losses_mod.get(loss) if loss is not None and \
            not isinstance(loss, (list, tuple, dict)) else None
        self.loss = single if single is not None else loss
        if single is not None and single.reduction != "sum_over_batch_size":
            raise ValueError(f"compile() needs a loss with reduction='sum_over_batch_size'. "
                             f"Received: reduction={single.reduction!r}")
        self._metric_names = []
        self._compiled_metric_objects = None
        self.compiled = True
        self._compile_count = self.__dict__.get("_compile_count", 0) + 1
        if self._graph is not None and loss is not None:
            self._attach_training()
            if self._declared_shapes() is not None:
                self._remember_graph(tuple(s[1:] for s in self._input_shapes))
        elif single is not None:
            # Check the names now (shapes decide 'accuracy' later).
            for m in list(self._flat_metric_ids()):
                if isinstance(m, str) and m not in metrics_mod._ACCURACY and \
                        m not in metrics_mod._NAMES:
                    metrics_mod.get(m, (2,), single._sparse)

    def _flat_metric_ids(self):
        for ids in (self._metric_ids, self._weighted_ids):
            for v in (ids.values() if isinstance(ids, dict) else ids):
                yield from (v if isinstance(v, (list, tuple)) else [v])

    @property
    def output_names(self):
        graph = self.__dict__.get("_graph")
        if self._traced and graph is not None and len(graph.output_shapes) > 1:
            return [f"output_{k + 1}" for k in range(len(graph.output_shapes))]
        return [self.layers[-1].name] if self.layers else [self.name]

    def _per_output(self, value, what, default=None):
        """value spread over the outputs: a dict keyed by output name, a list with one
        entry per output, or one value for every output."""
        names = self.output_names
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"{what} names an unknown output {unknown[0]!r}; the model's "
                                 f"outputs are {names}")
            return [value.get(k, default) for k in names]
        if isinstance(value, (list, tuple)) and len(names) > 1:
            if len(value) != len(names):
                raise ValueError(f"{what} has {len(value)} entries for a model with "
                                 f"{len(names)} outputs {names}")
            return list(value)
        return [value] * len(names)

    # Losses and metrics that classify along the last axis: on an output of rank > 1 per
    # sample (a Dense on sequences) they take one term per position, as Keras does.
    _PER_POSITION = ("sparse_categorical_crossentropy", "categorical_crossentropy",
                     "kl_divergence", "categorical_accuracy", "sparse_categorical_accuracy",
                     "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy")

    def _attach_training(self):
        g = self._graph
        names = self.output_names
        multi = len(names) > 1
        losses = [None if v is None else losses_mod.get(v)
                  for v in self._per_output(self.loss, "loss")]
        if all(v is None for v in losses):
            raise ValueError("compile() needs a loss for at least one output")
        weights = self._per_output(self._loss_weights_arg, "loss_weights", 1.0) \
            if self._loss_weights_arg is not None else [1.0] * len(names)
        for w in weights:
            if not isinstance(w, numbers.Real) or not w >= 0:
                raise ValueError(f"loss_weights must be non-negative numbers. Received: {w!r}")
        def per_output(ids, what):
            if isinstance(ids, dict):
                return self._per_output(ids, what, [])
            if multi and ids and all(isinstance(m, (list, tuple)) for m in ids):
                return self._per_output(list(ids), what)  # one list per output
            return [ids] * len(names)  # the same metrics for every output
        metric_lists = per_output(self._metric_ids, "metrics")
        weighted_lists = per_output(self._weighted_ids, "weighted_metrics")
        all_names, cores, flags, self._output_losses = [], [], [], []
        objs, widths, dens, offsets, total, self._per_position = [], [], [], [], 0, []
        for o, (name, loss) in enumerate(zip(names, losses)):
            out_shape = tuple(g.output_shapes[o])
            if loss is not None and loss.reduction != "sum_over_batch_size":
                raise ValueError(f"compile() needs losses with reduction="
                                 f"'sum_over_batch_size'. Received: {loss.reduction!r}")
            sparse = loss._sparse if loss is not None else False
            specs = []
            for weighted, ids in ((False, metric_lists[o]), (True, weighted_lists[o])):
                ids = ids if isinstance(ids, (list, tuple)) else [ids]
                for m in ids:
                    mname, spec, obj = metrics_mod.get(m, out_shape, sparse, weighted)
                    if multi:
                        mname = f"{name}_{mname}"
                    if mname in all_names or mname == "loss":  # Keras prefixes the clash
                        mname = ("weighted_" if weighted else "") + mname
                    all_names.append(mname)
                    cores.append(spec[0])
                    flags.append(spec[2])
                    specs.append(spec)
                    objs.append(obj)
            # A term per position of the last axis (a class per time step; or a mask
            # weighing each step), else one per sample.
            per_position = len(out_shape) > 1 and (
                g.output_has_mask(o) or
                (loss is not None and loss._core_name in self._PER_POSITION) or
                any(spec[0] in self._PER_POSITION for spec in specs))
            whole_batch = loss is not None and loss._whole_batch(len(out_shape) + 1)
            if loss is not None and loss._core_name in ("dice", "tversky") and \
                    not whole_batch and per_position:
                raise ValueError(f"{type(loss).__name__} over each sample cannot take an "
                                 f"output with a mask or per-position metrics; use "
                                 f"axis=None (the whole batch)")
            columns = out_shape[-1] if per_position else int(np.prod(out_shape))
            for spec in specs:
                widths.append(_core.metric_width(spec[0], spec[1], columns))
                offsets.append(total)
                total += widths[-1]
            # Per position, the core follows the output's metric sums with the rows counted
            # (masked and ignored rows out) and their total weight: the denominators.
            ignore = getattr(loss, "ignore_class", None)
            den = total if (per_position or ignore is not None) and specs else None
            dens += [den] * len(specs)
            total += 2 if den is not None else 0
            g.set_output(o, None if loss is None else loss._core_name,
                         loss.from_logits if loss is not None else False,
                         loss._param if loss is not None else 1.0, float(weights[o]), specs,
                         per_position, ignore, loss._param2 if loss is not None else 0.0,
                         whole_batch)
            self._per_position.append(per_position)
            self._output_losses.append(loss)
        self._output_loss_names = [f"{n}_loss" for n in names] if multi else []
        self._metric_names = all_names
        self._metric_weighted = flags
        self._metric_core = cores
        self._metric_objs = objs
        self._metric_widths = widths
        self._metric_at = offsets
        self._metric_dens = dens
        self._metric_total = total
        self.optimizer._attach(g)
        self._synced_trainable = None
        self._sync_trainable()

    def _sync_trainable(self):
        """Tells the engine which variables the optimizer updates and decays. Called when
        the model is compiled (Keras 2's rule: `trainable` is read at compile time)."""
        if self._graph is None or self.optimizer is None:
            return
        trainable = [layer.trainable and v.trainable for layer, v in self._graph_vars]
        decay = [self.optimizer._use_weight_decay(v) for _, v in self._graph_vars]
        self._graph.set_variable_flags(trainable, decay)
        regs = [getattr(v, "regularizer", None) for _, v in self._graph_vars]
        self._graph.set_variable_penalties([r.l1 if r else 0.0 for r in regs],
                                           [r.l2 if r else 0.0 for r in regs])
        self._graph.set_variable_constraints([
            v.constraint._core_spec(v.shape) if getattr(v, "constraint", None) is not None
            else ("", 1, 0.0, 0.0, 1.0) for _, v in self._graph_vars])
        for layer, value in self._mode_nodes:  # Keras 3: a frozen layer runs as at inference
            self._graph.set_inference_only(value, not layer.trainable)

    def _require_compiled(self, what):
        if not self.compiled:
            raise ValueError(f"You must call `compile()` before `{what}()`")

    # -- data ---------------------------------------------------------------------------
    def _as_inputs(self, x, name):
        """x as a list in input order: one array, a list/tuple, or a dict by input name."""
        names = getattr(self, "input_names", None) or ["input"]
        count = len(getattr(self, "_input_shapes", None) or [None])
        if isinstance(x, dict):
            missing = [k for k in names if k not in x]
            extra = [k for k in x if k not in names]
            if missing or extra or count != len(names):
                raise ValueError(f"{name} as a dict must have exactly the keys {names}. "
                                 f"Missing: {missing}, unexpected: {extra}")
            return [x[k] for k in names]
        if count > 1:
            if not isinstance(x, (list, tuple)) or len(x) != count:
                raise ValueError(f"Model '{self.name}' takes {count} inputs {names}: pass a "
                                 f"list of {count} arrays or a dict. Received: "
                                 f"{type(x).__name__}")
            return list(x)
        if isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
            return [x[0]]
        return [x]

    def _prepare_x(self, x, name="x"):
        """The inputs as a list of float32 C-contiguous arrays, checked."""
        x = self._preprocess(x, name)
        if type(x) is np.ndarray and x.dtype == _F32 and x.shape[1:] == self._ready_shape \
                and x.shape[0] and x.flags.c_contiguous and _core.first_nonfinite(x) < 0:
            return [x]  # already what the engine takes (predict's fast path)
        if x is None:
            raise ValueError(f"{name} is required")
        declared = self._declared_shapes()
        if self._graph is None and declared is None and not isinstance(x, (list, tuple, dict)):
            arr = np.asarray(x)
            self._ensure_graph(arr.shape[1:] if arr.ndim > 1 else (1,))
        xs = self._as_inputs(x, name)
        if declared is not None:  # inputs of any length: the graph for these
            self._use_graph_for([np.shape(a)[1:] if np.ndim(a) > 1 else (1,) for a in xs],
                                name)
        out, n = [], None
        for i, xi in enumerate(xs):
            label = name if len(xs) == 1 else f"{name}[{self.input_names[i]!r}]"
            a = self._prepare_one_x(xi, i, label)
            if n is not None and a.shape[0] != n:
                raise ValueError(f"All inputs must have the same number of samples. "
                                 f"Received: {[np.shape(v)[0] for v in xs]}")
            n = a.shape[0]
            out.append(a)
        return out

    def _prepare_one_x(self, x, i, name):
        x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"{name} must be numeric. Received dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers. Received dtype {x.dtype}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"{name} is empty. Received an array of shape {x.shape}")
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        self._ensure_graph(x.shape[1:])
        expected = tuple(self._graph.input_shapes[i])
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"Input of model '{self.name}' is incompatible: expected shape="
                             f"{(None,) + expected}, found shape={x.shape}")
        check_ids = self._id_checker(i)
        if check_ids is not None:  # token ids: whole numbers in range, before the cast
            check_ids(x, name)
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = _core.first_nonfinite(x)  # no temporary the size of x
        if bad >= 0:
            at = np.unravel_index(bad, x.shape)
            raise ValueError(f"{name} contains NaN or infinite values (first at index "
                             f"{tuple(int(i) for i in at)}: {x[at]})")
        return x

    def _prepare_y(self, y, n, name="y"):
        """The targets as a list with one entry per output (None where it has no loss)."""
        names = self.output_names
        if y is None:
            raise ValueError(f"{name} is required for training and evaluation")
        if len(names) > 1:
            if isinstance(y, dict):
                unknown = [k for k in y if k not in names]
                if unknown:
                    raise ValueError(f"{name} names an unknown output {unknown[0]!r}; the "
                                     f"model's outputs are {names}")
                ys = [y.get(k) for k in names]
            elif isinstance(y, (list, tuple)) and len(y) == len(names):
                ys = list(y)
            else:
                raise ValueError(f"Model '{self.name}' has {len(names)} outputs {names}: pass "
                                 f"{name} as a list of {len(names)} arrays or a dict")
        else:
            ys = [y[names[0]] if isinstance(y, dict) and names[0] in y else y]
        out = []
        for o, yo in enumerate(ys):
            loss = self._output_losses[o]
            label = name if len(ys) == 1 else f"{name}[{names[o]!r}]"
            if loss is None:
                out.append(None)
                continue
            if yo is None:
                raise ValueError(f"{label} is required: output '{names[o]}' has a loss")
            out.append(self._prepare_one_y(yo, n, label, o, loss))
        return out

    def _prepare_one_y(self, y, n, name, o, loss):
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"x and {name} must have the same number of samples. Received: "
                             f"x has {n}, {name} has {y.shape[0] if y.ndim else 'a scalar'}")
        out_shape = tuple(self._graph.output_shapes[o])
        if loss._sparse:
            # One class id per sample, or per position when the output has more axes.
            ids_shape = out_shape[:-1] if self._per_position[o] else ()
            if y.shape[1:] == ids_shape + (1,):
                y = y[..., 0]
            if y.shape[1:] != ids_shape:
                expected = ", ".join(["n"] + [str(d) for d in ids_shape])
                raise ValueError(f"{loss.name} expects integer class ids of shape "
                                 f"({expected}) or ({expected}, 1). Received {name} of shape "
                                 f"{y.shape} (use categorical_crossentropy for one-hot "
                                 f"targets)")
            y = y.reshape(len(y), -1) if ids_shape else y
            if not np.issubdtype(y.dtype, np.integer):
                if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or \
                        not np.all(y == np.floor(y)):
                    raise ValueError(f"{name} must hold integer class ids. Received dtype "
                                     f"{y.dtype} with non-integer values")
            classes = out_shape[-1]
            bad = (y < 0) | (y >= classes)
            if getattr(loss, "ignore_class", None) is not None:
                bad &= y != loss.ignore_class
            if bad.any():
                k = int(np.argmax(bad.ravel()))
                i, value = k // max(1, y[0].size), y.ravel()[k]
                raise ValueError(f"Received a label value of {value} (sample {i}) which is "
                                 f"outside the valid range of [0, {classes}) for a model "
                                 f"with {classes} outputs")
            return np.ascontiguousarray(y, dtype=np.int32)
        if y.shape[1:] != out_shape:
            if y.ndim == 1 and out_shape == (1,):
                y = y.reshape(-1, 1)
            else:
                raise ValueError(f"{name} has shape {y.shape} but the model outputs "
                                 f"{(None,) + out_shape}" + (
                                     " (to one-hot encode integer labels use "
                                     "ember.utils.to_categorical, or use "
                                     "sparse_categorical_crossentropy)"
                                     if y.ndim == 1 else ""))
        y = np.ascontiguousarray(y, dtype=np.float32)
        if _core.first_nonfinite(y) >= 0:
            raise ValueError(f"{name} contains NaN or infinite values")
        return y

    def _prepare_weights(self, sample_weight, class_weight, ys, n):
        y = next((v for v in ys if v is not None), None) if isinstance(ys, list) else ys
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
            if sw.shape[0] != n:
                raise ValueError(f"sample_weight must have one entry per sample: expected {n}, "
                                 f"received {sw.shape[0]}")
            if not np.isfinite(sw).all() or (sw < 0).any():
                raise ValueError("sample_weight must be finite and non-negative")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise ValueError(f"class_weight must be a dict. Received: {class_weight!r}")
            if len(self.output_names) > 1:
                raise ValueError("class_weight is only supported for models with one output")
            if self._per_position[0]:
                raise ValueError("class_weight is not supported for outputs with a class per "
                                 "position (targets of more than one axis per sample); pass "
                                 "sample_weight instead")
            classes = self._graph.output_shapes[0][-1]
            table = np.ones(max(classes, 2), dtype=np.float32)
            for k, v in class_weight.items():
                if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or \
                        not 0 <= k < len(table):
                    raise ValueError(f"class_weight has an invalid class id {k!r}; expected "
                                     f"integers in [0, {len(table)})")
                if not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"class_weight[{k}] must be a non-negative number. "
                                     f"Received: {v!r}")
                table[int(k)] = float(v)
            ids = y if y.ndim == 1 else (np.argmax(y, axis=-1) if y.shape[-1] > 1
                                         else np.round(y[:, 0]).astype(np.int64))
            ids = ids.astype(np.int64)
            bad = (ids < 0) | (ids >= len(table))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"class_weight needs targets that are class ids in [0, "
                                 f"{len(table)}). Received a target of {ids[i]} (sample {i})")
            cw = table[ids]
            sw = cw if sw is None else sw * cw
        return None if sw is None else np.ascontiguousarray(sw, dtype=np.float32)

    def _totals(self):
        return _Totals(getattr(self, "_metric_total", 0), len(self._output_loss_names))

    # -- logs -----------------------------------------------------------------------------
    def _logs(self, t):
        """Running means of the _Totals t: the loss is sum(w * L) over the samples seen
        (Keras's sum_over_batch_size); weighted metrics divide by the weights seen, plain
        metrics by the samples. Keys in Keras 3's order: sorted by name (History and
        evaluate(return_dict=True) show them so)."""
        logs = {"loss": float(t.loss / t.count)}
        for name, s in zip(self._output_loss_names, t.outputs):
            logs[name] = float(s / t.count)
        for name, weighted, obj, w, at, den in zip(
                self._metric_names, self._metric_weighted, self._metric_objs,
                self._metric_widths, self._metric_at, self._metric_dens):
            count, weight = (t.count, t.weight) if den is None else t.metrics[den:den + 2]
            v = obj._result_from(t.metrics[at:at + w], count, weight, weighted)
            logs[name] = float(v) if np.ndim(v) == 0 else np.asarray(v, np.float32)
        return dict(sorted(logs.items()))

    # -- training -------------------------------------------------------------------------
    @_uses_model
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Trains for `epochs` epochs; returns a History. x (and y) are arrays, or x is a
        PyDataset or a generator yielding (x, y) or (x, y, sample_weight) batches."""
        self._require_compiled("fit")
        stream = is_stream(x)
        if self._custom_step:
            if stream or is_stream(validation_data) or class_weight:
                raise ValueError("fit over a custom train_step takes arrays (x, and y and "
                                 "sample_weight if the step reads them); class_weight and "
                                 "data sets are not supported with it yet")
            val = None
            if validation_data is not None:
                if not isinstance(validation_data, (tuple, list)) or \
                        len(validation_data) not in (1, 2, 3):
                    raise ValueError("validation_data must be a tuple (x_val,), (x_val, "
                                     "y_val) or (x_val, y_val, val_sample_weight)")
                val = tuple(validation_data) + (None,) * (3 - len(validation_data))
            elif validation_split:
                if not isinstance(validation_split, numbers.Real) or \
                        not 0 < validation_split < 1:
                    raise ValueError(f"validation_split must be in [0, 1). Received: "
                                     f"{validation_split!r}")
                split = _split_at(stepping._count(x), validation_split)
                cut = (lambda a, s: None if a is None else stepping._rows(a, s))
                val = (cut(x, slice(split, None)), cut(y, slice(split, None)),
                       cut(sample_weight, slice(split, None)))
                x, y = cut(x, slice(0, split)), cut(y, slice(0, split))
                sample_weight = cut(sample_weight, slice(0, split))
            if not isinstance(validation_freq, int) or validation_freq < 1:
                raise ValueError(f"validation_freq must be a positive integer. Received: "
                                 f"{validation_freq!r}")
            return stepping.fit(self, x, y, _batch_size(batch_size), _check_epochs(epochs),
                                _verbose(verbose), callbacks, shuffle, sample_weight,
                                initial_epoch, val, _batch_size(validation_batch_size or
                                                                batch_size), validation_freq)
        if not stream:
            _unsupported(steps_per_epoch=steps_per_epoch)
            if not is_stream(validation_data):
                _unsupported(validation_steps=validation_steps)
        verbose = _verbose(verbose)
        bs = _batch_size(batch_size)
        vbs = _batch_size(validation_batch_size or bs, "validation_batch_size")
        _check_epochs(epochs)
        if not isinstance(initial_epoch, (int, np.integer)) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be a non-negative integer. Received: "
                             f"{initial_epoch!r}")
        if not isinstance(validation_freq, (int, np.integer)) or validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer. Received: "
                             f"{validation_freq!r}")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1). Received: {validation_split!r}")
        if stream:
            for name, value in (("y", y), ("sample_weight", sample_weight)):
                if value is not None:
                    raise ValueError(f"`{name}` must not be given when x is a data set or a "
                                     f"generator: it yields (x, y, sample_weight) itself")
            if validation_split:
                raise ValueError("validation_split is only supported for arrays, not for a "
                                 "data set or a generator; pass validation_data")
            return self._fit_stream(x, epochs, verbose, callbacks, validation_data, vbs,
                                    class_weight, initial_epoch, _steps(steps_per_epoch),
                                    _steps(validation_steps, "validation_steps"),
                                    validation_freq)

        x = self._prepare_x(x)
        n = x[0].shape[0]
        y = self._prepare_y(y, n)
        sw = self._prepare_weights(sample_weight, class_weight, y, n)

        val = None
        if validation_data is not None and is_stream(validation_data):
            val = validation_data
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            vx = self._prepare_x(validation_data[0], "validation x")
            vy = self._prepare_y(validation_data[1], vx[0].shape[0], "validation y")
            vsw = self._prepare_weights(validation_data[2] if len(validation_data) == 3 else None,
                                        None, vy, vx[0].shape[0])
            val = (vx, vy, vsw)
        elif validation_split:
            split = _split_at(n, validation_split)
            val = (_cut(x, split, None), _cut(y, split, None), None if sw is None else sw[split:])
            x, y, sw = _cut(x, 0, split), _cut(y, 0, split), (None if sw is None else sw[:split])
            n = split

        steps = math.ceil(n / bs)
        history, cbs = self._fit_callbacks(callbacks, verbose, epochs, steps)
        self._optimizer_built = True
        g = self._graph
        rng = _random.numpy_generator()
        self.stop_training = False
        epoch_logs = {}
        cbs.on_train_begin()
        for epoch in range(int(initial_epoch), epochs):
            cbs.on_epoch_begin(epoch)
            order = rng.permutation(n).astype(np.int64) if shuffle else None
            totals = self._totals()
            logs = {}
            for step in range(steps):
                cbs.on_train_batch_begin(step)
                s, e = step * bs, min(n, (step + 1) * bs)
                lr = self.optimizer._current_learning_rate()
                if order is not None:
                    res = g.train_step(x, y, sw, order[s:e], 0, 0, lr)
                else:
                    res = g.train_step(x, y, sw, None, s, e - s, lr)
                totals.add(res, e - s, (e - s) if sw is None else float(
                    sw[order[s:e]].sum() if order is not None else sw[s:e].sum()))
                logs = self._logs(totals)
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                epoch_logs.update(self._validation_logs(
                    val, vbs, _steps(validation_steps, "validation_steps"), cbs))
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        if epochs > 0:  # Keras: with use_ema the weights take their moving averages
            self.optimizer._finalize(self.trainable_weights)
        cbs.on_train_end(epoch_logs)
        self.history = history
        return history

    def _step_callbacks(self, callbacks, verbose, x, batch_size):
        """The CallbackList of an evaluate or predict over a custom step on arrays x."""
        steps = math.ceil(stepping._count(x) / _batch_size(batch_size))
        return CallbackList(_callback_list(callbacks) + ([ProgbarLogger(verbose)] if verbose
                                                         else []), self,
                            {"steps": steps, "verbose": verbose, "epochs": 1})

    def _fit_callbacks(self, callbacks, verbose, epochs, steps):
        """(History, CallbackList) of a fit, in Keras's order: the user's callbacks, then
        History, then the progress bar (so History records what callbacks add to the
        logs, e.g. learning_rate)."""
        history = History()
        cb_list = _callback_list(callbacks) + [history]
        if verbose:
            cb_list.append(ProgbarLogger(verbose))
        return history, CallbackList(cb_list, self, {"epochs": epochs, "steps": steps,
                                                     "verbose": verbose})

    def _evaluate_arrays(self, x, y, sw, bs, cbs):
        g = self._graph
        n = x[0].shape[0]
        steps = math.ceil(n / bs)
        totals = self._totals()
        cbs.on_test_begin()
        logs = {}
        for step in range(steps):
            cbs.on_test_batch_begin(step)
            s, e = step * bs, min(n, (step + 1) * bs)
            res = g.test_step(x, y, sw, None, s, e - s)
            totals.add(res, e - s, (e - s) if sw is None else float(sw[s:e].sum()))
            logs = self._logs(totals)
            cbs.on_test_batch_end(step, logs)
        cbs.on_test_end(logs)
        return logs

    def _stream_batch(self, batch, what, class_weight=None, need_y=True):
        """One batch a data set or generator yielded, as the engine takes it."""
        bx, by, bsw = split_batch(batch, what)
        bx = self._prepare_x(bx)
        if not need_y:
            return bx, None, None
        by = self._prepare_y(by, bx[0].shape[0])
        return bx, by, self._prepare_weights(bsw, class_weight, by, bx[0].shape[0])

    def _fit_stream(self, data, epochs, verbose, callbacks, validation_data, vbs, class_weight,
                    initial_epoch, steps, validation_steps, validation_freq):
        """fit over a PyDataset or a generator: the next batch is fetched on another
        thread while this one trains (the step runs with the GIL released)."""
        known = min(len(data), steps) if isinstance(data, PyDataset) and steps else (
            len(data) if isinstance(data, PyDataset) else steps)
        history, cbs = self._fit_callbacks(callbacks, verbose, epochs, known)
        val = validation_data
        if val is not None and not is_stream(val):  # arrays: prepared once
            val = self._stream_batch(tuple(val), "validation_data")
        self._optimizer_built = True
        self.stop_training = False
        epoch_logs = {}
        cbs.on_train_begin()
        for epoch in range(int(initial_epoch), epochs):
            cbs.on_epoch_begin(epoch)
            totals = self._totals()
            logs, step = {}, -1
            batches = Prefetcher(data, steps)
            try:
                for step, batch in enumerate(batches):
                    cbs.on_train_batch_begin(step)
                    bx, by, sw = self._stream_batch(batch, "the training data", class_weight)
                    n = bx[0].shape[0]
                    res = self._graph.train_step(bx, by, sw, None, 0, n,
                                                 self.optimizer._current_learning_rate())
                    totals.add(res, n, n if sw is None else float(sw.sum()))
                    logs = self._logs(totals)
                    cbs.on_train_batch_end(step, logs)
                    if self.stop_training:
                        break
            finally:
                batches.close()
            if step < 0:
                warnings.warn("Your input ran out of data; interrupting training. Make sure "
                              "that your dataset or generator can generate at least "
                              "`steps_per_epoch * epochs` batches.", stacklevel=3)
                break
            if isinstance(data, PyDataset):
                data.on_epoch_end()
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                epoch_logs.update(self._validation_logs(val, vbs, validation_steps, cbs))
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        if epochs > 0:  # Keras: with use_ema the weights take their moving averages
            self.optimizer._finalize(self.trainable_weights)
        cbs.on_train_end(epoch_logs)
        self.history = history
        return history

    def _validation_logs(self, val, vbs, steps, cbs):
        """The val_ logs of one pass over validation arrays (x, y, sw) or a data set."""
        self._in_fit = True
        try:
            logs = (self._evaluate_stream(val, steps, cbs) if is_stream(val)
                    else self._evaluate_arrays(*val, vbs, cbs))
        finally:
            self._in_fit = False
        return {"val_" + k: v for k, v in logs.items()}

    def _evaluate_stream(self, data, steps, cbs):
        totals = self._totals()
        cbs.on_test_begin()
        logs = {}
        batches = Prefetcher(data, steps)
        try:
            for step, batch in enumerate(batches):
                cbs.on_test_batch_begin(step)
                bx, by, sw = self._stream_batch(batch, "the evaluation data")
                n = bx[0].shape[0]
                res = self._graph.test_step(bx, by, sw, None, 0, n)
                totals.add(res, n, n if sw is None else float(sw.sum()))
                logs = self._logs(totals)
                cbs.on_test_batch_end(step, logs)
        finally:
            batches.close()
        if totals.count == 0:
            raise ValueError("The evaluation data yielded no batch")
        cbs.on_test_end(logs)
        return logs

    def _predict_stream(self, data, steps, verbose, callbacks):
        cb_list = _callback_list(callbacks)
        if verbose:
            cb_list.append(ProgbarLogger(verbose))
        known = len(data) if isinstance(data, PyDataset) else None
        cbs = CallbackList(cb_list, self, {"steps": steps or known, "verbose": verbose,
                                           "epochs": 1})
        outs = []
        cbs.on_predict_begin()
        batches = Prefetcher(data, steps)
        try:
            for step, batch in enumerate(batches):
                cbs.on_predict_batch_begin(step)
                bx, _, _ = self._stream_batch(batch, "the prediction data", need_y=False)
                out = self._new_outputs(bx[0].shape[0])
                self._graph.predict(bx, out, 0, bx[0].shape[0])
                outs.append(out)
                cbs.on_predict_batch_end(step, {"outputs": self._unwrap(out)})
        finally:
            batches.close()
        cbs.on_predict_end()
        if not outs:
            raise ValueError("The prediction data yielded no batch")
        return self._unwrap([np.concatenate(parts) for parts in zip(*outs)])

    @_uses_model
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Returns the loss (and metrics) on (x, y): a scalar with no metrics, else
        [loss, metric, ...] in compile order, or a dict with return_dict=True."""
        self._require_compiled("evaluate")
        verbose = _verbose(verbose)
        if type(self).test_step is not Model.test_step:
            if is_stream(x) or steps is not None:
                raise ValueError("evaluate over a custom test_step takes arrays (x, and y "
                                 "and sample_weight if the step reads them)")
            cbs = self._step_callbacks(callbacks, verbose, x, batch_size)
            logs = stepping.evaluate(self, x, y, sample_weight, _batch_size(batch_size), cbs)
            if return_dict:
                return logs
            values = list(logs.values())
            return values[0] if len(values) == 1 else values
        if is_stream(x):
            if y is not None or sample_weight is not None:
                raise ValueError("`y` and `sample_weight` must not be given when x is a data "
                                 "set or a generator: it yields them itself")
            steps = _steps(steps, "steps")
            cb_list = _callback_list(callbacks)
            if verbose:
                cb_list.append(ProgbarLogger(verbose))
            known = len(x) if isinstance(x, PyDataset) else None
            cbs = CallbackList(cb_list, self, {"steps": steps or known, "verbose": verbose,
                                               "epochs": 1})
            return self._returned(self._evaluate_stream(x, steps, cbs), return_dict)
        _unsupported(steps=steps)
        bs = _batch_size(batch_size)
        x = self._prepare_x(x)
        y = self._prepare_y(y, x[0].shape[0])
        sw = self._prepare_weights(sample_weight, None, y, x[0].shape[0])
        cb_list = _callback_list(callbacks)
        if verbose:
            cb_list.append(ProgbarLogger(verbose))
        cbs = CallbackList(cb_list, self, {"steps": math.ceil(x[0].shape[0] / bs),
                                           "verbose": verbose, "epochs": 1})
        return self._returned(self._evaluate_arrays(x, y, sw, bs, cbs), return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Returns the model's outputs for x as a float32 numpy array."""
        if (callbacks is None and steps is None and type(verbose) is int and not verbose
                and (batch_size is None or type(batch_size) is int and batch_size > 0)
                and type(self).predict_step is Model.predict_step):
            # Fast path (quiet, no hooks; batch 1 is mostly this): one C++ call per batch.
            g = self._graph
            if self._ready_shape is not None and g is not None:  # built; float inputs
                out = g.predict_fast(x, min(batch_size or 32, _MAX_BATCH))
                if out is not None:  # x was ready as it is and fits one batch
                    return out
            with self._in_use():
                if is_stream(x):
                    return self._predict_stream(x, None, 0, None)
                x = self._prepare_x(x)
                n, bs = x[0].shape[0], min(batch_size or 32, _MAX_BATCH)
                out = self._new_outputs(n)
                predict = self._graph.predict
                for s in range(0, n, bs):
                    predict(x, out, s, min(bs, n - s))
                return self._unwrap(out)
        with self._in_use():
            return self._predict(x, batch_size, verbose, steps, callbacks)

    def _predict(self, x, batch_size, verbose, steps, callbacks):
        verbose = _verbose(verbose)
        if type(self).predict_step is not Model.predict_step:
            if is_stream(x) or steps is not None:
                raise ValueError("predict over a custom predict_step takes arrays")
            cbs = self._step_callbacks(callbacks, verbose, x, batch_size)
            return stepping.predict(self, x, _batch_size(batch_size), cbs)
        if is_stream(x):
            return self._predict_stream(x, _steps(steps, "steps"), verbose, callbacks)
        _unsupported(steps=steps)
        bs = _batch_size(batch_size)
        x = self._prepare_x(x)
        n = x[0].shape[0]
        out = self._new_outputs(n)
        steps = math.ceil(n / bs)
        cb_list = _callback_list(callbacks)
        if verbose:
            cb_list.append(ProgbarLogger(verbose))
        cbs = CallbackList(cb_list, self, {"steps": steps, "verbose": verbose, "epochs": 1})
        cbs.on_predict_begin()
        for step in range(steps):
            cbs.on_predict_batch_begin(step)
            s, e = step * bs, min(n, (step + 1) * bs)
            self._graph.predict(x, out, s, e - s)
            cbs.on_predict_batch_end(step, {"outputs": self._unwrap([o[s:e] for o in out])})
        cbs.on_predict_end()
        return self._unwrap(out)

    @_uses_model
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One training step on one batch; returns the batch's loss (and metrics)."""
        self._require_compiled("train_on_batch")
        x = self._prepare_x(x)
        n = x[0].shape[0]
        y = self._prepare_y(y, n)
        sw = self._prepare_weights(sample_weight, class_weight, y, n)
        self._optimizer_built = True
        res = self._graph.train_step(x, y, sw, None, 0, n,
                                     self.optimizer._current_learning_rate())
        return self._batch_result(res, n, sw, return_dict)

    @_uses_model
    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metrics) on one batch, without updating the weights."""
        self._require_compiled("test_on_batch")
        x = self._prepare_x(x)
        n = x[0].shape[0]
        y = self._prepare_y(y, n)
        sw = self._prepare_weights(sample_weight, None, y, n)
        res = self._graph.test_step(x, y, sw, None, 0, n)
        return self._batch_result(res, n, sw, return_dict)

    def predict_on_batch(self, x):
        """The model's outputs for one batch."""
        g = self._graph
        if self._ready_shape is not None and g is not None:
            out = g.predict_fast(x, _MAX_BATCH)
            if out is not None:
                return out
        with self._in_use():
            x = self._prepare_x(x)
            out = self._new_outputs(x[0].shape[0])
            self._graph.predict(x, out, 0, x[0].shape[0])
            return self._unwrap(out)

    def __call__(self, inputs, training=None, mask=None):
        """Keras's ``model(x)``. On symbolic tensors, uses the model as a layer (its
        layers and weights are shared). On arrays, the outputs for ``x`` as one batch,
        like ``predict_on_batch``: a NumPy array (Keras returns its backend's tensor;
        ``np.asarray`` of either gives the same numbers)."""
        from ..layers.core import KerasTensor
        from .. import step_trace
        if step_trace.active() is not None and mask is None:
            out = step_trace.call_layer(self, inputs, training)
            if out is not NotImplemented:
                return out
        flat = (list(inputs.values()) if isinstance(inputs, dict) else
                list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
        if any(isinstance(t, KerasTensor) for t in flat):
            if mask is not None:
                raise ValueError(f"Model '{self.name}' called on a tensor takes no mask= "
                                 f"argument in ember")
            return super().__call__(inputs, training=training)
        if mask is not None:
            raise ValueError(f"ember: model(x, mask=...) is not supported. Received: mask of "
                             f"type {type(mask).__name__}")
        from .. import tape
        if training or tape.recording() or any(isinstance(t, tape.Tensor) for t in flat):
            return stepping.call(self, inputs, training)
        return self.predict_on_batch(inputs)

    def _new_outputs(self, n):
        return [np.empty((n,) + tuple(s), dtype=np.float32) for s in self._graph.output_shapes]

    def _unwrap(self, outs):
        """Keras's return value: one array for a single output, else the list."""
        return outs[0] if len(outs) == 1 and getattr(self, "_single_output", True) else outs

    def _batch_result(self, res, n, sw, return_dict):
        totals = self._totals()
        totals.add(res, n, n if sw is None else float(sw.sum()))
        logs = self._logs(totals)
        return self._returned(logs, return_dict)

    def _returned(self, logs, return_dict):
        """Keras's return value: the dict, the scalar loss, or [loss, metrics...]."""
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m] for m in self._output_loss_names] + \
            [logs[m] for m in self._metric_names]
        return values[0] if len(values) == 1 else values

    # -- layers -------------------------------------------------------------------------------
    def reset_states(self):
        """Zeroes the states of the model's stateful recurrent layers (Keras 2's
        model.reset_states; Keras 3 resets each layer with layer.reset_state())."""
        for layer in self._flat_layers():
            if getattr(layer, "stateful", False) or hasattr(layer, "forward_layer"):
                layer.reset_states()  # (a Bidirectional resets its two layers)

    def get_layer(self, name=None, index=None):
        """A layer by name or by position in `model.layers` (Keras's rules)."""
        if name is not None and index is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                    not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"only has {len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A model from get_config()'s output; `Model.from_config` of a functional
        config gives the functional model, as in Keras."""
        from .functional import Functional
        if cls is Model:
            return Functional.from_config(config, custom_objects)
        return super().from_config(config)

    def to_json(self, **kwargs):
        """The model's architecture (no weights) as Keras's JSON: {"module", "class_name",
        "config", "build_config", "compile_config"}; `ember.models.model_from_json`
        reads it back."""
        import json
        from ..saving.keras_format import model_json
        return json.dumps(model_json(self), **kwargs)

    # -- custom training steps (Keras's train_step API) ------------------------------------
    @property
    def _custom_step(self):
        """Whether a subclass overrides train_step: fit then runs it batch by batch."""
        return type(self).train_step is not Model.train_step

    def train_step(self, data):
        """Keras's default step, for subclasses that extend it (super().train_step):
        the forward under a GradientTape, compute_loss, the gradients, the optimizer's
        update, then the metrics. fit runs the same step in one C++ call when no
        subclass overrides this method."""
        from ..tape import GradientTape
        x, y, sw = stepping.unpack(data)
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw)
        variables = self.trainable_weights
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return self.compute_metrics(x, y, y_pred, sw, loss=loss)

    def test_step(self, data):
        """Keras's default evaluation step, for subclasses that extend it
        (super().test_step): the forward in inference mode, compute_loss, the metrics.
        evaluate runs the same in C++ when no subclass overrides this method; an override
        runs batch by batch, in Python around C++ calls."""
        x, y, sw = stepping.unpack(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=False)
        return self.compute_metrics(x, y, y_pred, sw, loss=loss)

    def predict_step(self, data):
        """Keras's default prediction step: the model's outputs for the batch's x.
        predict concatenates what an override returns (an array, or a list or dict of
        them) over the batches."""
        x, _, _ = stepping.unpack(data)
        return self(x, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of (y, y_pred) plus the weights' regularization penalties,
        as a Tensor a GradientTape differentiates."""
        from .. import ops
        if isinstance(self.loss, (list, tuple, dict)):
            raise ValueError("compute_loss needs compile(loss=...) with one loss")
        # Keras 3: no compiled loss counts as 0 (the weights' penalties still join).
        total = 0.0 if self.loss is None else self.loss(y, y_pred, sample_weight=sample_weight)
        for w in self.trainable_weights:
            r = getattr(w, "regularizer", None)
            if r is not None:
                if r.l1:
                    total = total + ops.sum(ops.abs(w)) * r.l1
                if r.l2:
                    total = total + ops.sum(ops.square(w)) * r.l2
        return total

    @property
    def metrics(self):
        """Keras 3's list: the loss tracker (a Mean named 'loss'), then the compiled
        metrics as one CompileMetrics object."""
        if not self.compiled:
            return []
        if self.__dict__.get("_compiled_metric_objects") is None:
            from .. import metrics as metrics_mod
            objs = []
            loss = self.loss if isinstance(self.loss, losses_mod.Loss) else None
            sparse = bool(loss is not None and loss._sparse)
            for m in (self._metric_ids if isinstance(self._metric_ids, list) else []):
                objs.append(metrics_mod.instance(m, loss, sparse))
            tracker = metrics_mod.Mean(name="loss")
            self._compiled_metric_objects = [tracker] + (
                [stepping.CompileMetrics(objs)] if objs else [])
        return list(self._compiled_metric_objects)

    def compute_metrics(self, x, y, y_pred, sample_weight=None, loss=None):
        """Updates self.metrics (the loss tracker with `loss`, the others with y and
        y_pred) and returns their results as a dict."""
        first = x
        while isinstance(first, (list, tuple, dict)):
            first = list(first.values())[0] if isinstance(first, dict) else first[0]
        for m in self.metrics:
            if m.name == "loss":
                if loss is not None:  # Keras 3: weighted by the batch's size
                    m.update_state(loss, sample_weight=float(len(first)))
            else:
                m.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def get_metrics_result(self):
        out = {}
        for m in self.metrics:
            r = m.result()
            if isinstance(r, dict):
                out.update(r)
            else:
                out[m.name] = r
        return out

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    @property
    def variables(self):
        return self.weights

    # -- weights ----------------------------------------------------------------------------
    def _unique(self, attr):
        seen, out = set(), []
        for layer in self.layers:
            for w in getattr(layer, attr):
                if id(w) not in seen:  # a layer used twice has its weights once
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def weights(self):
        if self._traced:
            return Layer.weights.fget(self)
        return self._unique("weights")

    @property
    def losses(self):
        """The regularization penalties of every layer's trainable weights (floats)."""
        return [loss for layer in self.layers for loss in layer.losses]

    @property
    def trainable_weights(self):
        if self._traced:
            return Layer.trainable_weights.fget(self)
        return self._unique("trainable_weights")

    @property
    def non_trainable_weights(self):
        if self._traced:
            return Layer.non_trainable_weights.fget(self)
        return self._unique("non_trainable_weights")

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        assign_weights(self.weights, weights, f"Model '{self.name}'")

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on model '{self.name}', but "
                             f"the model has not been built. Call `build()` or pass data "
                             f"through the model first.")
        return int(sum(np.prod(w.shape) for w in self.weights))

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freezes or unfreezes every layer (Keras: it applies recursively)."""
        self._trainable = bool(value)
        for layer in getattr(self, "layers", []):
            layer.trainable = value

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Prints Keras's table of layers, output shapes and parameter counts, with the
        Total / Trainable / Non-trainable (and, once training ran, Optimizer) footer."""
        from .summary import summary_lines
        print_fn = print_fn or print
        for line in summary_lines(self, line_length, positions, show_trainable, layer_range):
            print_fn(line)

    def _optimizer_param_count(self):
        """(count, bytes) of the optimizer's variables as Keras counts them (iterations,
        learning rate, one slot per trainable weight per slot kind), or None before the
        first training step."""
        if not getattr(self, "_optimizer_built", False) or self._graph is None:
            return None
        slots = self.optimizer._core.num_slots
        n = slots * sum(int(w.value.size) for w in self.trainable_weights)
        return n + 2, 4 * n + 8 + 4

    def _metric_direction(self, name):
        """'up' for accuracies, 'down' for errors, None for unknown names (used by
        callbacks in mode='auto')."""
        from ..metrics import FalseNegatives, FalsePositives
        for n, spec_name, obj in zip(self._metric_names, getattr(self, "_metric_core", []),
                                     getattr(self, "_metric_objs", [])):
            if n == name:
                down = spec_name in ("mean_absolute_error", "mean_squared_error",
                                     "mean_absolute_percentage_error", "log_cosh_error") or \
                    isinstance(obj, (FalseNegatives, FalsePositives))
                return "down" if down else "up"
        return None

    # -- saving ------------------------------------------------------------------------
    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves config, weights, compile arguments and the optimizer's state, atomically:
        Keras 3's archive for a `.keras` path, the legacy HDF5 format for `.h5`."""
        saving.save_model(self, filepath, overwrite, zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        """Saves the weights (and the optimizer's state) to a `.weights.h5` path in
        Keras 3's layout, atomically."""
        saving.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads weights from a `.weights.h5`, `.keras` or legacy `.h5` file; with
        skip_mismatch, layers whose weights do not fit are skipped with a warning."""
        if kwargs:
            raise ValueError(f"Invalid keyword arguments: {kwargs}")
        saving.load_weights(self, filepath, skip_mismatch)

    def _compile_config(self):
        """compile()'s arguments in Keras 3's compile_config (lists and dicts per output
        kept; names stay names)."""
        def tree(v, leaf):
            if isinstance(v, dict):
                return {k: tree(x, leaf) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [tree(x, leaf) for x in v]
            return v if v is None or isinstance(v, str) else leaf(v)

        def loss(v):
            return losses_mod.serialize(losses_mod.get(v))

        def metric(m):
            if not hasattr(m, "get_config"):
                return getattr(m, "__name__", str(m))
            return {"module": "keras.metrics", "class_name": type(m).__name__,
                    "config": m.get_config(), "registered_name": None}
        return {"optimizer": optimizers_mod.serialize(self.optimizer),
                "loss": tree(self._loss_arg, loss),
                "loss_weights": self._loss_weights_arg,
                "metrics": tree(self._metric_ids, metric) or None,
                "weighted_metrics": tree(self._weighted_ids, metric) or None,
                "run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}

    @staticmethod
    def _compile_from_config(config):
        def tree(v, leaf):
            if isinstance(v, dict) and "class_name" not in v:
                return {k: tree(x, leaf) for k, x in v.items()}
            if isinstance(v, list):
                return [tree(x, leaf) for x in v]
            return v if v is None or isinstance(v, str) else leaf(v)

        def metric(m):
            return getattr(metrics_mod, m["class_name"]).from_config(m["config"])
        return {"optimizer": optimizers_mod.deserialize(config["optimizer"]),
                "loss": tree(config["loss"], losses_mod.deserialize),
                "loss_weights": config.get("loss_weights"),
                "metrics": tree(config.get("metrics", []), metric),
                "weighted_metrics": tree(config.get("weighted_metrics", []), metric)}
