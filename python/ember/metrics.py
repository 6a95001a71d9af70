"""Metric names and their resolution from shapes, as Keras resolves them."""

_CORE = ("binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy")
_ACCURACY = ("accuracy", "acc")


def resolve(name, output_shape, sparse_targets):
    """The core metric computing `name` for a model with this per-sample output shape.

    Keras's rule for 'accuracy': a last output dimension of 1 means binary accuracy;
    targets of lower rank than the output (integer labels) mean sparse categorical;
    otherwise categorical.
    """
    if name in _ACCURACY:
        if output_shape[-1] == 1:
            return "binary_accuracy"
        return "sparse_categorical_accuracy" if sparse_targets else "categorical_accuracy"
    if name in _CORE:
        if (name == "sparse_categorical_accuracy") != sparse_targets:
            kind = "integer labels" if sparse_targets else "one-hot targets"
            raise ValueError(f"Metric '{name}' does not fit this loss, whose targets are {kind}")
        return name
    raise ValueError(f"Unknown metric: {name!r}. Expected one of: "
                     f"{', '.join(_ACCURACY + _CORE)}")
