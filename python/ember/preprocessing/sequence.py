"""pad_sequences: lists of ids of any lengths -> one padded 2-D array (Keras's rules)."""
import numpy as np


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pads (or truncates) every sequence to maxlen (default: the longest one).

    padding / truncating: 'pre' (default) puts the padding, or cuts, at the start;
    'post' at the end. value fills the padding. Elements may themselves be arrays
    (every one of the same shape). Returns an array (len(sequences), maxlen, ...).
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood')
    if maxlen is not None and (isinstance(maxlen, bool) or int(maxlen) != maxlen
                               or maxlen < 0):
        raise ValueError(f"maxlen must be a non-negative integer or None. Received: "
                         f"maxlen={maxlen!r}")
    lengths, sample_shape = [], ()
    for s in sequences:
        try:
            lengths.append(len(s))
        except TypeError:
            raise ValueError("`sequences` must be a list of iterables. Found non-iterable: "
                             f"{s}") from None
        if not sample_shape and len(s):
            sample_shape = np.asarray(s).shape[1:]
    if maxlen is None:
        maxlen = max(lengths) if lengths else 0
    maxlen = int(maxlen)
    is_str = np.issubdtype(np.dtype(dtype), np.str_)
    if isinstance(value, str) and np.dtype(dtype) != object and not is_str:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: "
                         f"{type(value)}\nYou should set `dtype=object` for variable length "
                         "strings.")
    x = np.full((len(lengths), maxlen) + tuple(sample_shape), value, dtype=dtype)
    if maxlen == 0:
        return x
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ValueError(f"Shape of sample {kept.shape[1:]} of sequence at position {i} "
                             f"is different from expected shape {tuple(sample_shape)}")
        if padding == "post":
            x[i, :len(kept)] = kept
        else:
            x[i, -len(kept):] = kept
    return x
