"""Models called eagerly under a GradientTape, and fit() over a user's train_step.

A model called on arrays while a tape records runs one C++ forward in a graph of its
own (the model's layers and weights, every output's gradient given from outside), and
its backward is one C++ call giving the inputs' and the weights' gradients.
"""
import math

import numpy as np

from .. import _random, step_trace, tape as tape_mod


def tape_graph(model, shapes):
    """(graph, [(owner, Variable)] per graph variable, which inputs take gradients) of
    the model for these per-sample input shapes, built once."""
    key = tuple(tuple(s) for s in shapes)
    cache = model.__dict__.setdefault("_tape_graphs", {})
    if key in cache:
        return cache[key]
    graph, builder, outs = model._lowered(list(key), with_losses=False)
    graph_vars = model._owners(graph, builder)
    # Every weight made trainable takes a gradient (the tape decides which it returns);
    # moving statistics and the constants ops read take none.
    graph.set_variable_flags([bool(v.trainable) for _, v in graph_vars],
                             [False] * len(graph_vars))
    for o in range(len(outs)):
        graph.set_output(o, "external", False, 1.0, 1.0, [])
    wanted = [model._id_checker(i) is None for i in range(len(key))]
    graph.set_input_gradients(wanted)
    for layer, value in builder.modes:
        graph.set_inference_only(value, not layer.trainable)
    cache[key] = (graph, graph_vars, wanted)
    return cache[key]


def call(model, inputs, training):
    """model(inputs) on arrays or Tensors: a Tensor per output that a recording tape can
    take the gradient through (plain arrays when no tape records and none came in)."""
    many = isinstance(inputs, (list, tuple))
    items = list(inputs) if many else [inputs]
    if model._prefixes() and not any(isinstance(x, tape_mod.Tensor) for x in items):
        inputs = model._preprocess(inputs, "inputs")  # strings through the first layers
        many = isinstance(inputs, (list, tuple))
        items = list(inputs) if many else [inputs]
    arrays = [np.ascontiguousarray(tape_mod.value_of(x), dtype=np.float32) for x in items]
    for a in arrays:
        if a.ndim < 1 or not np.isfinite(a).all():
            raise ValueError(f"Model '{model.name}': inputs must be finite arrays with a batch "
                             f"axis. Received shape {a.shape}")
    model._ensure_graph(arrays[0].shape[1:] if len(arrays) == 1 else
                        [a.shape[1:] for a in arrays])
    expected = [tuple(s[1:]) for s in model._input_shapes]
    got = [tuple(a.shape[1:]) for a in arrays]
    if got != expected:
        raise ValueError(f"Model '{model.name}': inputs of per-sample shape {got}; expected "
                         f"shape {expected}")
    graph, graph_vars, wanted = tape_graph(model, [a.shape[1:] for a in arrays])
    step = model.__dict__.get("_tape_steps", 0) + 1
    model._tape_steps = step
    training = bool(training)
    token, outs = graph.tape_forward(arrays, training, step)
    taped = tape_mod.recording() or any(isinstance(x, tape_mod.Tensor) for x in items)
    if not taped:
        return outs[0] if len(outs) == 1 else outs
    variables = [v for _, v in graph_vars]
    results = []
    for o, out in enumerate(outs):
        def vjp(g, o=o):
            dys = [np.zeros_like(y) for y in outs]
            dys[o] = np.ascontiguousarray(g, dtype=np.float32).reshape(outs[o].shape)
            dxs = graph.tape_backward(arrays, dys, training, step, token, wanted)
            return list(dxs) + [graph.variable_gradient(k) for k in range(len(variables))]
        results.append(tape_mod.record(out, items + variables, vjp))
    return results[0] if len(results) == 1 else results


def unpack(data):
    """(x, y, sample_weight) of what fit hands train_step."""
    if isinstance(data, tuple):
        if len(data) == 1:
            return data[0], None, None
        if len(data) == 2:
            return data[0], data[1], None
        if len(data) == 3:
            return data
        raise ValueError(f"A batch must be x, (x,), (x, y) or (x, y, sample_weight). "
                         f"Received a tuple of {len(data)}")
    return data, None, None


def _log_value(v):
    v = tape_mod.value_of(v)
    if hasattr(v, "result") and callable(v.result):
        v = v.result()
    return float(np.asarray(v))


def flat_logs(logs):
    """train_step's returned dict as floats; nested dicts (a CompileMetrics result)
    are merged in."""
    if not isinstance(logs, dict):
        raise ValueError(f"train_step must return a dict of values for the logs. Received: "
                         f"{type(logs).__name__}")
    out = {}
    for k, v in logs.items():
        if isinstance(v, dict):
            out.update(flat_logs(v))
        else:
            out[k] = _log_value(v)
    return out


def _rows(x, idx):
    if isinstance(x, (list, tuple)):
        return [np.asarray(a)[idx] for a in x]
    if isinstance(x, dict):
        return {k: np.asarray(a)[idx] for k, a in x.items()}
    return np.asarray(x)[idx]


def _count(x):
    if isinstance(x, (list, tuple)):
        return len(x[0])
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x)


def _data_key(data):
    if isinstance(data, (list, tuple)):
        return (type(data).__name__,) + tuple(_data_key(d) for d in data)
    if isinstance(data, dict):
        return ("dict",) + tuple((k, _data_key(v)) for k, v in data.items())
    if data is None:
        return None
    a = np.asarray(data)
    return (a.shape, a.dtype.str)


_TRACE_CACHES = {"train": "_traced_steps", "test": "_traced_tests",
                  "predict": "_traced_predicts"}


def run_step(model, data, kind="train"):
    """model.train_step(data) (test_step, predict_step), traced once per batch structure
    and shapes into C++ graphs that then run each batch in one call (step_trace); in
    Python when compiled with run_eagerly=True, or when the trace cannot follow the step
    (the reason is kept in model._traced_steps, _traced_tests or _traced_predicts)."""
    eager = getattr(model, f"{kind}_step")
    if getattr(model, "run_eagerly", False):
        return eager(data)
    key = _data_key(data)
    cache = model.__dict__.setdefault(_TRACE_CACHES[kind], {})
    step = cache.get(key)
    if step is None:
        try:
            step = step_trace.TracedStep(model, data, kind)
        except step_trace.ControlFlowError:
            raise
        except Exception as e:  # noqa: BLE001 (the eager step raises a real error again)
            step = e
        cache[key] = step
    if isinstance(step, Exception):
        return eager(data)
    return step.run(data)


def fit(model, x, y, batch_size, epochs, verbose, callbacks, shuffle, sample_weight,
        initial_epoch, val=None, val_batch_size=None, val_freq=1):
    """Keras's fit loop over a user's train_step(data), one batch at a time; data is x,
    (x, y) or (x, y, sample_weight) as given. The metrics reset at each epoch's start.
    With val = (x, y, sample_weight) the model's test_step runs over it after every
    val_freq-th epoch, its logs joining the epoch's as val_*."""
    n = _count(x)
    if n == 0:
        raise ValueError("fit received no samples")
    steps = math.ceil(n / batch_size)
    history, cbs = model._fit_callbacks(callbacks, verbose, epochs, steps)
    rng = _random.numpy_generator()
    model.stop_training = False
    epoch_logs = {}
    cbs.on_train_begin()
    for epoch in range(int(initial_epoch), epochs):
        for m in model.metrics:
            m.reset_state()
        cbs.on_epoch_begin(epoch)
        order = rng.permutation(n) if shuffle else None
        logs = {}
        for step, data in _batches(x, y, sample_weight, batch_size, order):
            cbs.on_train_batch_begin(step)
            logs = flat_logs(run_step(model, data))
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if val is not None and (epoch + 1) % val_freq == 0:
            from ..callbacks import CallbackList
            val_logs = evaluate(model, *val, val_batch_size, CallbackList([], model, {}))
            epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if epochs > 0 and model.optimizer is not None:
        model.optimizer._finalize(model.trainable_weights)
    cbs.on_train_end(epoch_logs)
    model.history = history
    return history


def _batches(x, y, sample_weight, batch_size, order=None):
    """(step, data) for the batches of the samples in `order` (default: as they come),
    data as fit hands a custom step."""
    n = _count(x)
    if n == 0:
        raise ValueError("Received no samples")
    order = np.arange(n) if order is None else order
    for step in range(math.ceil(n / batch_size)):
        idx = order[step * batch_size:(step + 1) * batch_size]
        parts = [_rows(x, idx)]
        if y is not None:
            parts.append(_rows(y, idx))
        if sample_weight is not None:
            parts.append(np.asarray(sample_weight)[idx])
        yield step, parts[0] if len(parts) == 1 else tuple(parts)


def evaluate(model, x, y, sample_weight, batch_size, cbs):
    """Keras's evaluate over a user's test_step: the metrics reset, then the step on
    each batch in order; returns the last batch's logs."""
    for m in model.metrics:
        m.reset_state()
    logs = {}
    cbs.on_test_begin()
    for step, data in _batches(x, y, sample_weight, batch_size):
        cbs.on_test_batch_begin(step)
        logs = flat_logs(run_step(model, data, "test"))
        cbs.on_test_batch_end(step, logs)
    cbs.on_test_end(logs)
    return logs


def predict(model, x, batch_size, cbs):
    """Keras's predict over a user's predict_step: its outputs (an array, or a list or
    dict of them) concatenated over the batches."""
    outs = []
    cbs.on_predict_begin()
    for step, data in _batches(x, None, None, batch_size):
        cbs.on_predict_batch_begin(step)
        outs.append(tape_mod.value_of(run_step(model, data, "predict")))
        cbs.on_predict_batch_end(step, {"outputs": outs[-1]})
    cbs.on_predict_end()

    def join(parts):
        first = parts[0]
        if isinstance(first, dict):
            return {k: join([p[k] for p in parts]) for k in first}
        if isinstance(first, (list, tuple)):
            return [join([p[i] for p in parts]) for i in range(len(first))]
        return np.concatenate([np.asarray(tape_mod.value_of(p)) for p in parts])
    return join(outs)


class CompileMetrics:
    """The metrics given to compile(), as one object (Keras 3's `compile_metrics`):
    update_state(y, y_pred) updates each; result() is a dict of their values."""

    name = "compile_metrics"

    def __init__(self, metrics):
        self.metrics = list(metrics)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tape_mod.value_of(y_true)
        y_pred = tape_mod.value_of(y_pred)
        for m in self.metrics:
            m.update_state(y_true, y_pred, sample_weight)

    def result(self):
        return {m.name: m.result() for m in self.metrics}

    def reset_state(self):
        for m in self.metrics:
            m.reset_state()


step_trace.defer_metric_methods(CompileMetrics)
