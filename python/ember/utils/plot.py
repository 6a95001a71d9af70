"""plot_model and model_to_dot: a model's layers and connections drawn with pydot (and
the graphviz program for image formats), both optional dependencies."""
import os
import shutil

from .file_utils import atomic_write


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError("plot_model needs the pydot package (`pip install pydot`) and, "
                          "for image files, the graphviz program (e.g. `apt-get install "
                          "graphviz`); model.summary() prints the same structure as "
                          "text") from None
    return pydot


def _shape_text(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(_shape_text(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _edges(model):
    """(layers in order, [(from layer, to layer)]) of a Sequential or functional model."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None:  # Sequential: a chain
        layers = list(model.layers)
        return layers, list(zip(layers, layers[1:]))
    edges = []
    for t in {(id(t._layer), t._node_index): t for t in nodes}.values():
        edges.extend((p._layer, t._layer) for p in t._inputs)
    return list(model.layers), edges


def _label(layer, show_shapes, show_dtype, show_layer_names, show_layer_activations,
           show_trainable):
    kind = type(layer).__name__
    lines = [f"{layer.name} ({kind})" if show_layer_names else kind]
    if show_shapes:
        built = getattr(layer, "built", False)
        inp = getattr(layer, "input_shape", None) if built else None
        out = getattr(layer, "output_shape", None) if built else None
        lines.append(f"Input shape: {_shape_text(inp)}")
        lines.append(f"Output shape: {_shape_text(out)}")
    if show_dtype:
        lines.append(f"dtype: {getattr(layer, 'dtype', 'float32') or 'float32'}")
    activation = getattr(layer, "activation", None)
    if show_layer_activations and activation is not None:
        name = getattr(activation, "__name__", None) or str(activation)
        lines.append(f"Activation: {name}")
    if show_trainable and getattr(layer, "_weights", None):
        lines.append(f"Trainable: {bool(layer.trainable)}")
    return "\n".join(lines)


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True,
                 rankdir="TB", expand_nested=False, dpi=200, subgraph=False,
                 show_layer_activations=False, show_trainable=False, **kwargs):
    """The model as a pydot.Dot graph: a box per layer, an arrow per connection."""
    pydot = _pydot()
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be 'TB' or 'LR'. Received: rankdir={rankdir!r}")
    if not getattr(model, "built", False):
        raise ValueError("This model has not yet been built. Build the model first by "
                         "calling `build()` or by calling the model on a batch of data.")
    dot = pydot.Dot(graph_type="digraph", rankdir=rankdir, dpi=str(dpi), concentrate="true")
    dot.set_node_defaults(shape="box", fontname="Helvetica")
    layers, edges = _edges(model)
    for layer in layers:
        dot.add_node(pydot.Node(str(id(layer)), label=_label(
            layer, show_shapes, show_dtype, show_layer_names, show_layer_activations,
            show_trainable)))
    for src, dst in edges:
        dot.add_edge(pydot.Edge(str(id(src)), str(id(dst))))
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """Draws the model into to_file: '.dot' writes graphviz's source (pydot alone);
    '.png', '.svg', '.pdf', ... are rendered by the graphviz program. Returns an
    IPython image in a notebook (except for PDF), else None."""
    dot = model_to_dot(model, show_shapes, show_dtype, show_layer_names, rankdir,
                       expand_nested, dpi, show_layer_activations=show_layer_activations,
                       show_trainable=show_trainable)
    to_file = os.fspath(to_file)
    ext = os.path.splitext(to_file)[1][1:].lower() or "png"
    if ext in ("dot", "gv"):
        data = dot.to_string().encode()
    elif shutil.which("dot") is None:
        raise ImportError(f"plot_model needs the graphviz program to write a .{ext} file "
                          f"(e.g. `apt-get install graphviz`); without it, write "
                          f"graphviz's source with to_file='model.dot'")
    else:
        data = dot.create(format=ext)
    atomic_write(to_file, lambda f: f.write(data))
    if ext in ("dot", "gv"):
        return None
    if ext != "pdf":
        try:
            from IPython import display, get_ipython
        except ImportError:
            return None
        if get_ipython() is not None:
            return display.Image(filename=to_file)
    return None
