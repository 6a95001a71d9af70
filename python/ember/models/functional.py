"""Functional models: Model(inputs, outputs) over the graph of layer calls between them.

    inputs = ember.Input(shape=(784,))
    x = layers.Dense(64, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = ember.Model(inputs=inputs, outputs=outputs)

Inputs and outputs may be one tensor, a list, or a dict keyed by name. A layer may be
called several times (shared weights), merge layers join branches, and a model may be
called on a tensor like a layer. get_config writes Keras's functional layout (layers
with their inbound nodes, input_layers, output_layers).
"""

from ..layers.base import lower_nodes
from ..layers.core import InputLayer, KerasTensor
from ..saving.serialization import custom_object_scope, deserialize_layer, serialize_layer
from .model import Model


def _flatten(tensors, what):
    """(list of KerasTensors, dict keys or None) of one tensor, a list or a dict."""
    keys = None
    if isinstance(tensors, dict):
        keys = list(tensors)
        tensors = list(tensors.values())
    elif isinstance(tensors, (list, tuple)):
        tensors = list(tensors)
    else:
        tensors = [tensors]
    if not tensors:
        raise ValueError(f"A functional Model needs at least one {what}")
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise ValueError(f"Model {what}s must be symbolic tensors (from ember.Input and "
                             f"layer calls). Received: {t!r}")
    return tensors, keys


def _topological(outputs, inputs):
    """(the tensors from the inputs to the outputs, each after the tensors it reads;
    each layer's index in the order a depth-first walk from the outputs meets it)."""
    order, state, first_seen = [], {}, {}
    given = {id(t) for t in inputs}
    stack = [(t, False) for t in reversed(outputs)]
    while stack:
        t, done = stack.pop()
        if done:
            state[id(t)] = 2
            order.append(t)
            continue
        if state.get(id(t)) == 2:
            continue
        if state.get(id(t)) == 1:
            raise ValueError(f"The graph has a cycle through layer '{t._layer.name}'")
        state[id(t)] = 1
        first_seen.setdefault(id(t._layer), len(first_seen))
        stack.append((t, True))
        if not t._inputs:
            if id(t) not in given and not getattr(t._layer, "_source", False):
                raise ValueError(
                    f"Graph disconnected: the outputs depend on the tensor {t!r} of "
                    f"{'Input' if t._is_input else 'layer'} '{t._layer.name}', which is not "
                    f"one of the model's inputs {[i.name for i in inputs]}")
            continue
        for p in reversed(t._inputs):
            if state.get(id(p)) != 2:
                stack.append((p, False))
    return order, first_seen


def _layers_by_depth(order, first_seen, inputs):
    """The layers in Keras's order: by depth (longest path to an output) from the
    deepest, ties in the order a walk from the outputs first meets them."""
    depth, layer_depth = {}, {}
    for t in reversed(order):
        d = max(depth.setdefault(id(t), 0), layer_depth.get(id(t._layer), 0))
        layer_depth[id(t._layer)] = depth[id(t)] = d
        for p in t._inputs:
            depth[id(p)] = max(depth.get(id(p), 0), d + 1)
    layers = {id(t._layer): t._layer for t in list(inputs) + order}
    return sorted(layers.values(), key=lambda layer: (-layer_depth.get(id(layer), 0),
                                                      first_seen.get(id(layer), 1 << 30)))


class Functional(Model):
    """A model defined by its input and output tensors (`ember.Model(inputs, outputs)`)."""

    _keeps_parts = False  # its layers are its list, not its attributes

    def __init__(self, inputs, outputs, name=None, trainable=True):
        ins, in_keys = _flatten(inputs, "input")
        outs, out_keys = _flatten(outputs, "output")
        for t in ins:
            if not t._is_input:
                raise ValueError(f"Model inputs must come from ember.Input(). Received the "
                                 f"output of layer '{t._layer.name}'")
        if len({id(t) for t in ins}) != len(ins):
            raise ValueError("The same Input is listed twice among the model's inputs")
        nodes, first_seen = _topological(outs, ins)
        from ..ops import _Op
        layers = [layer for layer in _layers_by_depth(nodes, first_seen, ins)
                  if not isinstance(layer, _Op)]
        super().__init__(name=name, trainable=trainable)
        self._input_tensors, self._output_tensors = ins, outs
        self._input_keys = in_keys
        self._output_keys = out_keys
        self._nodes = [t for t in nodes if not t._is_input]
        self._layer_list = layers
        self._single_output = len(outs) == 1
        self._graph_inputs, self._chains = self._split_preprocessing(ins)
        shapes = [tuple(t.shape[1:]) for t in self._graph_inputs]
        self._input_shapes = [(None,) + s for s in shapes]
        if any(d is None for s in shapes for d in s):
            # Inputs of any length: a graph per length, built when data comes.
            self.built = True
            self.input_shape = self._input_shapes[0] if len(ins) == 1 else self._input_shapes
            self.output_shape = (tuple(outs[0].shape) if len(outs) == 1 else
                                 [tuple(t.shape) for t in outs])
        else:
            with self._changing("build()"):
                self._build_graph(shapes)

    def _split_preprocessing(self, ins):
        """(the graph's input tensors, per input the preprocessing layers before them):
        an Input read by a preprocessing layer (strings in) enters the graph as that
        layer's output, which the model computes on each batch before the graph."""
        readers = {}
        for t in self._nodes:
            for p in t._inputs:
                readers.setdefault(id(p), {})[(id(t._layer), t._node_index)] = t
        graph_inputs, chains = [], []
        for i in ins:
            calls = list(readers.get(id(i), {}).values())
            pre = [t for t in calls if getattr(t, "_preprocessed", False)]
            if not pre:
                graph_inputs.append(i)
                chains.append([])
                continue
            if len(calls) != 1:
                raise ValueError(f"Input '{i.name}' feeds the preprocessing layer "
                                 f"'{pre[0]._layer.name}', which must be its only reader "
                                 f"(it reads {len(calls)} layer calls)")
            graph_inputs.append(pre[0])
            chains.append([pre[0]._layer])
        return graph_inputs, chains

    def _prefixes(self):
        return self._chains if any(self._chains) else []

    def _raw_input_shapes(self):
        return [tuple(t.shape) for t in self._input_tensors] if any(self._chains) else None

    @property
    def layers(self):
        """Every layer once (the InputLayers included), in Keras's order: by depth from
        the inputs' side, ties in the order a walk from the outputs meets them."""
        return list(self._layer_list)

    def _sample_input_shape(self):
        shapes = [tuple(t.shape[1:]) for t in self._graph_inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self):
        return self._input_keys or [t._layer.name for t in self._input_tensors]

    @property
    def output_names(self):
        return self._output_keys or [t._layer.name for t in self._output_tensors]

    # Used as a layer: called on one tensor, or on a list of them for several inputs;
    # several outputs give a list of tensors.
    @property
    def _takes_list(self):
        return len(self._input_tensors) > 1

    def _symbolic_output_shape(self, shapes):
        if self._input_keys or self._output_keys:
            raise ValueError(f"Model '{self.name}' takes or returns a dict: ember uses models "
                             f"with lists of inputs and outputs as layers")
        want = [tuple(t.shape[1:]) for t in self._input_tensors]
        got = [tuple(s) for s in shapes]
        if len(got) != len(want) or any(
                len(g) != len(w) or any(b is not None and a != b for a, b in zip(g, w))
                for g, w in zip(got, want)):
            raise ValueError(f"Model '{self.name}' takes inputs of shapes {want}. Received: "
                             f"{got}")
        outs = [tuple(t.shape[1:]) for t in self._output_tensors]
        return outs if len(outs) > 1 else outs[0]

    @property
    def inputs(self):
        return list(self._input_tensors)

    @property
    def outputs(self):
        return list(self._output_tensors)

    @property
    def input(self):
        t = self._input_tensors
        return t[0] if len(t) == 1 else list(t)

    @property
    def output(self):
        t = self._output_tensors
        return t[0] if len(t) == 1 else list(t)

    def _id_checker(self, i):
        """The token-id check of the first layer that reads input i, or None."""
        from .model import _ids_check_of
        target = self._graph_inputs[i]
        for t in self._nodes:
            if any(p is target for p in t._inputs):
                return _ids_check_of(t._layer)
        return None

    def _lower(self, graph, xs):
        xs = xs if isinstance(xs, list) else [xs]
        if len(xs) != len(self._input_tensors):
            raise ValueError(f"Model '{self.name}' takes {len(self._input_tensors)} inputs. "
                             f"Received: {len(xs)}")
        values = lower_nodes(graph, self._nodes,
                             {id(t): v for t, v in zip(self._graph_inputs, xs)})
        out = [values[id(t)] for t in self._output_tensors]
        return out if len(out) > 1 else out[0]

    def get_config(self):
        """Keras's functional layout: each layer with the calls it was part of, then each
        op applied between layers (ember.ops) as Keras 3 writes it."""
        from ..ops import _Op
        from ..saving import keras_ops
        ops = [t for t in self._saved_order() if isinstance(t._layer, _Op)]
        taken = {layer.name for layer in self.layers}
        op_names = {}
        for t in ops:
            base = keras_ops.base_name(t)
            name, k = base, 0
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            op_names[id(t)] = name

        def ref(t):
            if id(t) in op_names:
                return [op_names[id(t)], 0, 0]
            return [t._layer.name, t._node_index, t._tensor_index]

        def history(t):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": tuple(t.shape), "dtype": t.dtype,
                               "keras_history": ref(t)}}
        node_ids = {}
        for t in self._nodes:
            node_ids.setdefault(id(t._layer), []).append(t)
        layers = []
        for layer in self.layers:
            entry = serialize_layer(layer)
            entry.update(name=layer.name, inbound_nodes=[])
            calls = {}  # one inbound node per call, whatever its number of outputs
            for t in node_ids.get(id(layer), []):
                calls.setdefault(t._node_index, t)
            for t in calls.values():
                args = [history(p) for p in t._inputs]
                kwargs = {}
                if t._state_inputs:
                    kwargs["initial_state"] = args[len(args) - t._state_inputs:]
                    args = args[:len(args) - t._state_inputs]
                entry["inbound_nodes"].append(
                    {"args": [args] if layer._takes_list else args, "kwargs": kwargs})
            layers.append(entry)
        layers += [keras_ops.entry(t, op_names[id(t)], history) for t in ops]

        def ends(tensors):
            refs = [ref(t) for t in tensors]
            return refs[0] if len(refs) == 1 else refs
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": ends(self._input_tensors),
                "output_layers": ends(self._output_tensors)}

    def _saved_order(self):
        """The tensors a saved config names, each after those it reads: a layer call
        reads its inputs, an op the tensors of the ember.ops call that made it (the ops
        inside that call are not saved: loading calls it again)."""
        from ..ops import _Op
        from ..saving import keras_ops
        order, seen = [], set()
        stack = [(t, False) for t in reversed(self._output_tensors)]
        while stack:
            t, done = stack.pop()
            if done:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            reads = keras_ops.inputs_of(t) if isinstance(t._layer, _Op) else t._inputs
            stack.extend((p, False) for p in reversed(reads) if id(p) not in seen)
        return order

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Keras 3's functional config, or Keras 2's (inbound nodes as
        [[layer_name, node_index, tensor_index, kwargs], ...]); custom_objects maps class
        names to the user's own layer classes."""
        with custom_object_scope(custom_objects):
            return cls._from_config(config)

    @classmethod
    def _from_config(cls, config):
        """Each layer is made in order; its calls (and the ops') run once the tensors
        they read exist, whatever the order of the entries, as Keras reads them."""
        from ..saving import keras_ops
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("A functional model config needs a list of 'layers'")
        tensors = {}
        unused_ops = _unused_ops(config)
        pending = []  # [entry, layer or None (an op), index of its next inbound node]
        for entry in config["layers"]:
            if not isinstance(entry, dict):
                raise ValueError(f"Each layer of a functional config must be a dict. "
                                 f"Received: {entry!r:.80}")
            if entry.get("name") in unused_ops:
                continue
            if keras_ops.is_op_entry(entry):
                pending.append([entry, None, 0])
                continue
            layer = deserialize_layer(entry)
            name = entry.get("name", layer.name)
            if isinstance(layer, InputLayer):
                tensors[(name, 0)] = KerasTensor(layer)
                layer._output_tensor = tensors[(name, 0)]
                continue
            pending.append([entry, layer, 0])

        def step(item):
            """Runs item's next call if what it reads exists; True if it ran."""
            entry, layer, k = item
            name = entry.get("name", getattr(layer, "name", None))
            node = (entry.get("inbound_nodes") or [])[k]
            if layer is None:
                if any((r[0], r[1]) not in tensors for r in _refs_in(node)):
                    return False
                tensors[(name, 0)] = keras_ops.call(
                    entry, lambda hist: _tensor_of(tensors, hist, name))
            else:
                refs, as_list, state_refs = _node_refs(node, name)
                if any((r[0], r[1]) not in tensors for r in refs + state_refs):
                    return False
                ins, states = ([_tensor_of(tensors, hist, name) for hist in group]
                               for group in (refs, state_refs))
                if as_list is None:
                    as_list = layer._takes_list
                kwargs = {"initial_state": states} if states else {}
                tensors[(name, k)] = layer(ins if as_list else ins[0], **kwargs)
            item[2] += 1
            return True
        while pending:
            ran = False
            for item in pending:
                while item[2] < len(item[0].get("inbound_nodes") or []) and step(item):
                    ran = True
            pending = [item for item in pending
                       if item[2] < len(item[0].get("inbound_nodes") or [])]
            if pending and not ran:
                entry, layer, k = pending[0]
                node = (entry.get("inbound_nodes") or [])[k]
                refs = _refs_in(node) if layer is None else sum(
                    (group for group in _node_refs(node, entry.get("name"))[::2]), [])
                missing = next(r for r in refs if (r[0], r[1]) not in tensors)
                raise ValueError(f"Layer '{entry.get('name')}' is called on '{missing[0]}' "
                                 f"(call {missing[1]}), which no layer of this config makes")

        def ends(refs):
            single = refs and not isinstance(refs[0], (list, tuple))
            refs = [refs] if single else refs
            out = []
            for r in refs:
                if not isinstance(r, (list, tuple)) or len(r) < 2 or \
                        (r[0], r[1]) not in tensors:
                    raise ValueError(f"The config's model ends name an unknown tensor {r!r}")
                out.append(_tensor_of(tensors, r, "the model's ends"))
            return out[0] if single else out
        return cls(ends(config.get("input_layers") or []), ends(config.get("output_layers") or []),
                   name=config.get("name"), trainable=config.get("trainable", True))


def _unused_ops(config):
    """Names of the Keras ops (module keras.src.ops...) in a functional config that
    neither a layer nor the model's outputs read, directly or through other ops: Keras 3
    records the ops of a mask computation (Masking's NotEqual and Any) beside the
    layers; they compute nothing the model uses."""
    from ..saving import keras_ops
    entries = [e for e in config["layers"] if isinstance(e, dict)]
    ops = {e.get("name"): e for e in entries if keras_ops.is_op_entry(e)}
    used = set()
    for e in entries:
        if e.get("name") in ops:
            continue
        for node in e.get("inbound_nodes") or []:
            try:
                refs, _, states = _node_refs(node, e.get("name"))
                used.update(r[0] for r in refs + states)
            except (ValueError, TypeError, IndexError, AttributeError):
                pass  # reported when the layer itself is read
    outs = config.get("output_layers") or []
    used.update(r[0] for r in ([outs] if outs and not isinstance(outs[0], list) else outs))
    frontier = [name for name in used if name in ops]
    while frontier:  # what the used ops read
        for r in _refs_in(ops[frontier.pop()].get("inbound_nodes") or []):
            if r[0] not in used:
                used.add(r[0])
                if r[0] in ops:
                    frontier.append(r[0])
    return set(ops) - used


def _refs_in(value):
    """The keras_history references anywhere in an op's inbound node."""
    if isinstance(value, list):
        return [r for v in value for r in _refs_in(v)]
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [(value.get("config") or {}).get("keras_history", [None, 0, 0])]
        return [r for v in value.values() for r in _refs_in(v)]
    return []


def _tensor_of(tensors, hist, name):
    """The tensor a keras_history [layer name, node index, tensor index] names."""
    key = (hist[0], hist[1])
    if key not in tensors:
        raise ValueError(f"Layer '{name}' is called on '{hist[0]}' (call {hist[1]}), which no "
                         f"earlier layer of this config makes")
    out = tensors[key]
    index = hist[2] if len(hist) > 2 else 0
    if isinstance(out, list):
        if not isinstance(index, int) or not 0 <= index < len(out):
            raise ValueError(f"Layer '{name}' reads output {index!r} of '{hist[0]}', which has "
                             f"{len(out)} outputs")
        return out[index]
    return out


def _node_refs(node, name):
    """([[layer name, node index, tensor index], ...], whether the call passed a list,
    None where Keras 2's form leaves it to the layer; the refs of its initial_state) of
    one inbound node, Keras 3's form ({"args": [...], "kwargs": {}}) or Keras 2's
    ([[name, node, tensor, kwargs], ...])."""
    def history(r):
        return (r.get("config", {}).get("keras_history", [None, 0, 0])
                if isinstance(r, dict) else [None, 0, 0])

    if isinstance(node, dict):
        args = node.get("args", [])
        if len(args) != 1:
            raise ValueError(f"Layer '{name}' must be called on one tensor or one list of "
                             f"tensors. Received {len(args)} arguments")
        as_list = isinstance(args[0], list)
        refs = args[0] if as_list else [args[0]]
        kwargs = node.get("kwargs") or {}
        states = kwargs.get("initial_state") if isinstance(kwargs, dict) else None
        states = [] if states is None else states if isinstance(states, list) else [states]
        return [history(r) for r in refs], as_list, [history(r) for r in states]
    if isinstance(node, list) and node and all(isinstance(r, list) and len(r) >= 3
                                               for r in node):
        for r in node:
            if len(r) > 3 and r[3]:
                raise ValueError(f"Layer '{name}' is called with keyword arguments {r[3]!r}, "
                                 f"which ember does not take")
        return [r[:3] for r in node], None, []
    raise ValueError(f"Layer '{name}' has an inbound node ember cannot read: {node!r:.80}")

