"""model.summary(): Keras 3's table (box drawing, column widths and footer) as plain
text, so the output reads the same as Keras's on a terminal or in a log."""
import re
import shutil


def _reduce(excess, widths):
    """Shrinks the columns by `excess` characters the way Keras's table renderer does:
    equal shares, rounded half to even, taken from left to right."""
    out, remaining, parts = [], excess, len(widths)
    for w in widths:
        cut = min(w, round(remaining / parts))
        out.append(w - cut)
        remaining -= cut
        parts -= 1
    return out


def _memory(count_bytes):
    size = float(count_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _fit(text, width, align):
    if len(text) > width:
        text = text[:width - 1] + "\u2026"
    if align == "right":
        return text.rjust(width)
    if align == "center":
        return text.center(width)
    return text.ljust(width)


def _shape(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):  # several outputs
        return "[" + ", ".join(_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _connections(model):
    """{id(layer): "name[node][tensor], ..."} for a functional model whose graph is not a plain
    chain (several inputs, a merge, a fan-out or a shared layer: Keras's test), else None."""
    nodes = getattr(model, "_nodes", None)
    if nodes is None:
        return None
    # One entry per call (a call with several outputs has a tensor for each).
    nodes = list({(id(t._layer), t._node_index): t for t in nodes}.values())
    reads, calls = {}, {}
    for t in nodes:
        calls[id(t._layer)] = calls.get(id(t._layer), 0) + 1
        for p in t._inputs:
            reads[id(p)] = reads.get(id(p), 0) + 1
    chain = (len(model.inputs) == 1 and all(len(t._inputs) == 1 for t in nodes) and
             all(v == 1 for v in reads.values()) and all(v == 1 for v in calls.values()))
    if chain:
        return None
    out = {}
    for t in nodes:
        text = ", ".join(f"{p._layer.name}[{p._node_index}][{p._tensor_index}]" for p in t._inputs)
        key = id(t._layer)
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _wrap(text, width):
    """Lines of at most `width` characters, broken after the commas (as Keras's table)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return lines + [line]


def _in_range(layers, layer_range):
    """The layers from the first whose name matches layer_range[0] (a name or a regular
    expression) to the last whose name matches layer_range[1], as Keras picks them."""
    if layer_range is None:
        return layers
    if not isinstance(layer_range, (list, tuple)) or len(layer_range) != 2 or \
            not all(isinstance(p, str) for p in layer_range):
        raise ValueError(f"layer_range must be a list or tuple of 2 strings (layer names or "
                         f"patterns). Received: layer_range={layer_range!r}")
    first = [i for i, layer in enumerate(layers) if re.match(layer_range[0], layer.name)]
    last = [i for i, layer in enumerate(layers) if re.match(layer_range[1], layer.name)]
    if not first or not last or first[0] > last[-1]:
        raise ValueError(f"Passed layer_range {list(layer_range)} does not match any layer "
                         f"range of the model's layers {[layer.name for layer in layers]}")
    return layers[first[0]:last[-1] + 1]


def summary_lines(model, line_length=None, positions=None, show_trainable=False,
                  layer_range=None):
    header = ["Layer (type)", "Output Shape", "Param #"]
    align = ["left", "left", "right"]
    default = 88
    connections = _connections(model)
    if connections is not None:
        default = 108
        header.append("Connected to")
        align.append("left")
    positions = list(positions or ([0.3, 0.56, 0.74, 1.0] if connections is not None
                                   else [0.45, 0.80, 1.0]))
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        align.append("center")
    default = min(default, shutil.get_terminal_size().columns - 4)
    line_length = line_length or default
    if positions[-1] <= 1:
        positions = [int(p * line_length) for p in positions]
    widths, current = [], 0
    for pos in positions:
        width = pos - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    widths = _reduce(len(widths) + 1, widths)

    def row(cells, left, mid, right):
        return left + mid.join(" " + _fit(c, w - 2, a) + " "
                               for c, w, a in zip(cells, widths, align)) + right

    def rule(left, mid, right, fill):
        return left + mid.join(fill * w for w in widths) + right

    lines = [f'Model: "{model.name}"', rule("\u250f", "\u2533", "\u2513", "\u2501"),
             row(header, "\u2503", "\u2503", "\u2503"),
             rule("\u2521", "\u2547", "\u2529", "\u2501")]
    layers = _in_range(model.layers, layer_range)
    for i, layer in enumerate(layers):
        built = model.built and layer.built
        params = f"{layer.count_params():,}" if built else "0 (unbuilt)"
        cells = [f"{layer.name} ({type(layer).__name__})",
                 _shape(layer.output_shape if built else None), params]
        extra = []
        if connections is not None:
            wrapped = _wrap(connections.get(id(layer), "-"), widths[3] - 2)
            cells.append(wrapped[0])
            extra = [[""] * 3 + [w] for w in wrapped[1:]]
        if show_trainable:
            cells.append(("Y" if layer.trainable else "N") if layer._weights else "-")
            extra = [e + [""] for e in extra]
        lines.append(row(cells, "\u2502", "\u2502", "\u2502"))
        lines.extend(row(e, "\u2502", "\u2502", "\u2502") for e in extra)
        if i + 1 < len(layers):
            lines.append(rule("\u251c", "\u253c", "\u2524", "\u2500"))
    lines.append(rule("\u2514", "\u2534", "\u2518", "\u2500"))

    trainable = sum(int(w.value.size) for w in model.trainable_weights) if model.built else 0
    frozen = sum(int(w.value.size) for w in model.non_trainable_weights) if model.built else 0
    opt = model._optimizer_param_count()
    total = trainable + frozen + (opt[0] if opt else 0)
    total_bytes = 4 * (trainable + frozen) + (opt[1] if opt else 0)
    lines.append(f" Total params: {total:,} ({_memory(total_bytes)})")
    lines.append(f" Trainable params: {trainable:,} ({_memory(4 * trainable)})")
    lines.append(f" Non-trainable params: {frozen:,} ({_memory(4 * frozen)})")
    if opt:
        lines.append(f" Optimizer params: {opt[0]:,} ({_memory(opt[1])})")
    return lines
