"""Keras's lookup and text preprocessing layers on NumPy arrays: StringLookup,
IntegerLookup, TextVectorization (strings in, token ids or token vectors out), Hashing,
and CategoryEncoding and Discretization, which also run inside a model.

Strings cannot enter ember's compiled graph, so StringLookup, IntegerLookup and
TextVectorization work as Keras 3 lets them work outside TensorFlow: on arrays, before
the model (`ids = vectorizer(texts)`, then `model.fit(ids, y)`). Vocabularies follow
Keras: the mask token (int output) first, then the OOV token, then the tokens by
falling count (ties by falling token) as `adapt` finds them.
"""
import numbers
import re

import numpy as np

from .. import _core
from ..utils.dataset import adapt_data
from .base import Layer

_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']')
_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


def _salt(layer, salt):
    """Keras's salt: None, an integer (used twice) or two integers, each in [0, 2^64)."""
    if salt is None:
        return None
    pair = [salt, salt] if isinstance(salt, (int, np.integer)) and not isinstance(salt, bool) \
        else list(salt) if isinstance(salt, (list, tuple)) and len(salt) == 2 else None
    if pair is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               and 0 <= v < 2 ** 64 for v in pair):
        raise ValueError(f"The `salt` argument for `{type(layer).__name__}` can only be a "
                         f"tuple of 2 integers, or a single integer. Received: salt={salt!r}.")
    return [int(v) for v in pair]


def _hash(values, bins, salt=None):
    """TensorFlow's to_hash_bucket_fast (Fingerprint64) or, salted, to_hash_bucket_strong
    (SipHash-2-4) of each value's string: numbers as their decimal digits."""
    strings = [v if isinstance(v, (str, bytes)) else str(v) for v in values]
    return _core.hash_buckets(strings, int(bins), None if salt is None else tuple(salt))


def _check_mode(layer, output_mode, modes=_OUTPUT_MODES):
    if output_mode not in modes:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': unknown output_mode "
                         f"{output_mode!r}. Expected one of {modes}")
    return output_mode


class _OnArrays(Layer):
    """A layer that computes on arrays in NumPy (`_apply`); called on a symbolic tensor
    it joins the model."""

    def __call__(self, inputs, *args, **kwargs):
        from .core import KerasTensor
        if isinstance(inputs, KerasTensor):
            return self._call_in_model(inputs, *args, **kwargs)
        return self._apply(inputs)

    def _call_in_model(self, inputs, *args, **kwargs):
        return super().__call__(inputs, *args, **kwargs)


class _Preprocessing(_OnArrays):
    """A layer that computes on arrays before the compiled graph: on the data (`x =
    layer(data)`), or in a model as the first layer on an Input (a Sequential's leading
    layers; in a functional model called on an Input directly), where the model applies
    it to each batch before its graph runs and saves it with the model."""

    _before_graph = True

    def _lower(self, graph, x):
        raise ValueError(f"{type(self).__name__} '{self.name}' runs on NumPy arrays before "
                         f"the model's compiled graph (strings cannot enter it): apply it "
                         f"to the data (`x = layer(data)`), or put it first in the model, "
                         f"on an Input")

    def _call_in_model(self, inputs, *args, **kwargs):
        if args or kwargs or not getattr(inputs, "_is_input", False):
            self._lower(None, None)
        out = Layer.__call__(self, inputs)
        out._preprocessed = True
        if self.output_mode == "int":
            out.dtype = "int64"
        return out

    def build(self, input_shape):
        self.built = True


class _IndexLookup(_Preprocessing):
    """What StringLookup and IntegerLookup share: Keras's IndexLookup."""

    _default_oov = None
    _default_mask = None

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=None,
                 vocabulary=None, idf_weights=None, invert=False, output_mode="int",
                 pad_to_max_tokens=False, sparse=False, name=None, oov_method="floormod",
                 salt=None, **kwargs):
        kwargs.pop("vocabulary_dtype", None)
        kwargs.pop("encoding", None)
        super().__init__(name=name, **kwargs)
        if oov_method not in ("floormod", "farmhash"):
            raise ValueError(f"{type(self).__name__} '{self.name}': oov_method must be "
                             f"'floormod' or 'farmhash'. Received: oov_method={oov_method!r}")
        if salt is not None and self._integers and oov_method != "farmhash":
            raise ValueError(f"`salt` can only be used when `oov_method='farmhash'`. "
                             f"Received: oov_method={oov_method}")
        self.oov_method = oov_method
        self.salt = _salt(self, salt)
        if max_tokens is not None and (isinstance(max_tokens, bool) or
                                       not isinstance(max_tokens, (int, np.integer)) or
                                       max_tokens <= 1):
            raise ValueError(f"{type(self).__name__} '{self.name}': max_tokens must be None or "
                             f"an integer greater than 1. Received: max_tokens={max_tokens!r}")
        if isinstance(num_oov_indices, bool) or \
                not isinstance(num_oov_indices, (int, np.integer)) or num_oov_indices < 0:
            raise ValueError(f"`num_oov_indices` must be greater than or equal to 0. "
                             f"Received: num_oov_indices={num_oov_indices!r}")
        if sparse:
            raise ValueError(f"{type(self).__name__} '{self.name}': sparse=True needs "
                             f"TensorFlow; ember returns dense arrays")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.num_oov_indices = int(num_oov_indices)
        self.output_mode = _check_mode(self, output_mode)
        if invert and output_mode != "int":
            raise ValueError(f"{type(self).__name__} '{self.name}': invert=True needs "
                             f"output_mode='int'. Received: output_mode={output_mode!r}")
        self.invert = bool(invert)
        self.mask_token = mask_token
        self.oov_token = self._default_oov if oov_token is None else oov_token
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.sparse = False
        self._tokens = None  # the learned or given tokens, without the special ones
        self._idf = None     # tf_idf: a weight per index
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError(f"{type(self).__name__} '{self.name}': idf_weights needs a "
                             f"vocabulary")

    # -- vocabulary ---------------------------------------------------------------------
    def _mask_in_vocab(self):
        return self.mask_token is not None and self.output_mode == "int"

    def _special(self):
        return ([self.mask_token] if self._mask_in_vocab() else []) + \
            [self.oov_token] * self.num_oov_indices

    def _convert(self, values):
        return [self._token(v) for v in values]

    def set_vocabulary(self, vocabulary, idf_weights=None):
        """Sets the vocabulary (a list, an array or a path to a file of one token per
        line); it may start with the special tokens, as get_vocabulary() returns them."""
        if isinstance(vocabulary, str):
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = [line.rstrip("\n") for line in f]
        tokens = self._convert(np.asarray(vocabulary, dtype=object).reshape(-1))
        special = self._special()
        oov_idf = None  # the OOV weights, when the given vocabulary starts with them
        if special and tokens[:len(special)] == special:
            tokens = tokens[len(special):]
            if idf_weights is not None:
                weights = list(idf_weights)
                oov_idf, idf_weights = weights[:len(special)], weights[len(special):]
        if len(set(tokens)) != len(tokens):
            dup = next(t for t in tokens if tokens.count(t) > 1)
            raise ValueError(f"{type(self).__name__} '{self.name}': the vocabulary has a "
                             f"repeated token {dup!r}")
        for t in (self.mask_token, self.oov_token):
            if t is not None and t in tokens:
                raise ValueError(f"{type(self).__name__} '{self.name}': the vocabulary holds "
                                 f"the special token {t!r} away from its place")
        if self.max_tokens is not None and len(tokens) + len(special) > self.max_tokens:
            raise ValueError(f"{type(self).__name__} '{self.name}': a vocabulary of "
                             f"{len(tokens) + len(special)} entries exceeds "
                             f"max_tokens={self.max_tokens}")
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError(f"{type(self).__name__} '{self.name}': output_mode='tf_idf' "
                                 f"needs idf_weights with the vocabulary")
            idf = np.asarray(idf_weights, dtype=np.float32).reshape(-1)
            if idf.size != len(tokens):
                raise ValueError(f"{type(self).__name__} '{self.name}': {idf.size} idf_weights "
                                 f"for {len(tokens)} tokens")
            # The OOV index gets the mean weight unless given (Keras).
            oov = (np.full(self.num_oov_indices, idf.mean()) if oov_idf is None else
                   np.asarray(oov_idf, np.float32)[len(oov_idf) - self.num_oov_indices:])
            self._idf = np.concatenate([oov, idf]).astype(np.float32)
        elif idf_weights is not None:
            raise ValueError(f"{type(self).__name__} '{self.name}': idf_weights needs "
                             f"output_mode='tf_idf'")
        self._set_tokens(tokens)

    def _set_tokens(self, tokens):
        self._tokens = list(tokens)
        start = len(self._special())
        self._index = {t: start + i for i, t in enumerate(self._tokens)}

    def get_vocabulary(self, include_special_tokens=True):
        tokens = list(self._tokens or [])
        return self._special() + tokens if include_special_tokens else tokens

    def vocabulary_size(self):
        return len(self.get_vocabulary())

    def _encoded_size(self):
        if self.pad_to_max_tokens and self.max_tokens:
            return self.max_tokens
        self._require_vocabulary()
        return self.vocabulary_size()

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        return (self._encoded_size(),)

    def adapt(self, data, batch_size=None, steps=None):
        """Learns the vocabulary: the tokens by falling count, ties by falling token, up
        to max_tokens entries with the special ones (and their idf for tf_idf)."""
        data = adapt_data(data, steps)
        if np.size(np.asarray(data, dtype=object)) == 0:
            raise ValueError(f"{type(self).__name__} '{self.name}': adapt needs data. "
                             f"Received an empty array")
        counts, documents, n_docs = {}, {}, 0
        for row in self._rows(data):
            n_docs += 1
            for t in row:
                counts[t] = counts.get(t, 0) + 1
            for t in set(row):
                documents[t] = documents.get(t, 0) + 1
        for t in (self.mask_token, self.oov_token):
            counts.pop(t, None)
        tokens = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens is not None:
            tokens = tokens[:max(self.max_tokens - len(self._special()), 0)]
        if self.output_mode == "tf_idf":
            idf = np.log(1 + n_docs / (1 + np.array([documents[t] for t in tokens], float)))
            mean = idf.mean() if idf.size else 0.0
            self._idf = np.concatenate([np.full(self.num_oov_indices, mean), idf]) \
                .astype(np.float32)
        self._set_tokens(tokens)

    def _rows(self, data):
        """The token rows of data (each sample's tokens, as Python values)."""
        a = np.asarray(data, dtype=object)
        if a.ndim == 0:
            a = a.reshape(1)
        rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        return [self._convert(r) for r in rows]

    # -- lookup -------------------------------------------------------------------------
    _integers = False

    def _lookup(self, token):
        return int(self._lookup_all([token])[0])

    def _lookup_all(self, tokens):
        """The indices of tokens (a list): the mask token's, a vocabulary entry's, or an
        OOV index (with several, Keras's bucket of the token: token % n for integers
        under oov_method='floormod', else its FarmHash, or SipHash under a salt)."""
        out = np.empty(len(tokens), np.int64)
        oov = []
        for k, token in enumerate(tokens):
            if self.mask_token is not None and token == self.mask_token:
                out[k] = 0 if self._mask_in_vocab() else -1
                continue
            i = self._index.get(token)
            if i is None:
                if self.num_oov_indices == 0:
                    raise ValueError(f"{type(self).__name__} '{self.name}': the token "
                                     f"{token!r} is not in the vocabulary and "
                                     f"num_oov_indices=0")
                oov.append(k)
            else:
                out[k] = i
        if oov:
            start, n = (1 if self._mask_in_vocab() else 0), self.num_oov_indices
            missing = [tokens[k] for k in oov]
            if n == 1:
                buckets = np.zeros(len(oov), np.int64)
            elif self._integers and self.oov_method == "floormod":
                buckets = np.array([t % n for t in missing], np.int64)
            else:
                buckets = _hash(missing, n, self.salt)
            out[oov] = start + buckets
        return out

    def _require_vocabulary(self):
        if self._tokens is None:
            raise ValueError(f"{type(self).__name__} '{self.name}' has no vocabulary: call "
                             f"adapt(data) or pass vocabulary=")

    def _apply(self, inputs):
        self._require_vocabulary()
        if self.invert:
            return self._invert(inputs)
        a = np.asarray(inputs, dtype=object)
        ids = self._lookup_all([self._token(v) for v in a.reshape(-1)]).reshape(a.shape)
        if self.output_mode == "int":
            return ids
        return self._encode(ids.reshape(ids.shape[0], -1) if ids.ndim > 1 else ids[:, None],
                            one_hot=self.output_mode == "one_hot" and ids.ndim <= 1)

    def _encode(self, ids, one_hot=False):
        """(rows, positions) ids -> (rows, size) multi_hot / count / tf_idf vectors;
        one_hot: one id per row."""
        size = self.max_tokens if self.pad_to_max_tokens and self.max_tokens else \
            self.vocabulary_size()
        out = np.zeros((ids.shape[0], size), np.float32)
        rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
        flat = ids.reshape(-1)
        keep = flat >= 0  # a mask token outside int output counts nowhere
        if self.output_mode in ("multi_hot", "one_hot"):
            out[rows[keep], flat[keep]] = 1.0
        else:
            np.add.at(out, (rows[keep], flat[keep]), 1.0)
            if self.output_mode == "tf_idf":
                out[:, :len(self._idf)] *= self._idf
        return out

    def _invert(self, inputs):
        vocab = self.get_vocabulary()
        a = np.asarray(inputs)
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{type(self).__name__} '{self.name}' (invert=True) takes integer "
                             f"indices. Received dtype {a.dtype}")
        bad = (a < 0) | (a >= len(vocab))
        if bad.any():
            raise ValueError(f"{type(self).__name__} '{self.name}': index {int(a[bad][0])} is "
                             f"outside the vocabulary of {len(vocab)} entries")
        return np.array([vocab[i] for i in a.reshape(-1)], dtype=object).reshape(a.shape)

    def get_config(self):
        c = super().get_config()
        c.update(max_tokens=self.max_tokens, num_oov_indices=self.num_oov_indices,
                 mask_token=self.mask_token, oov_token=self.oov_token,
                 output_mode=self.output_mode, sparse=False,
                 pad_to_max_tokens=self.pad_to_max_tokens, invert=self.invert,
                 vocabulary=self.get_vocabulary(include_special_tokens=False)
                 if self._tokens is not None else None,
                 idf_weights=None if self._idf is None else
                 [float(v) for v in self._idf[self.num_oov_indices:]],
                 oov_method=self.oov_method, salt=self.salt)
        return c


class StringLookup(_IndexLookup):
    """Maps strings to indices of a vocabulary (or back, with invert=True); output_mode
    'int' (default), 'one_hot', 'multi_hot', 'count' or 'tf_idf'."""

    _default_oov = "[UNK]"

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]",
                 vocabulary=None, idf_weights=None, invert=False, output_mode="int",
                 pad_to_max_tokens=False, sparse=False, encoding="utf-8", name=None,
                 salt=None, **kwargs):
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, pad_to_max_tokens, sparse, name,
                         salt=salt, **kwargs)
        self.encoding = encoding

    def _token(self, v):
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class IntegerLookup(_IndexLookup):
    """Maps integers to indices of a vocabulary (or back, with invert=True); the OOV
    token is -1 and there is no mask token unless one is given."""

    _default_oov = -1
    _integers = True

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1,
                 output_mode="int", sparse=False, vocabulary=None, vocabulary_dtype="int64",
                 idf_weights=None, invert=False, name=None, oov_method="floormod", salt=None,
                 **kwargs):
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, kwargs.pop("pad_to_max_tokens", False),
                         sparse, name, oov_method, salt, **kwargs)

    def _token(self, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                return int(v)
            raise ValueError(f"IntegerLookup '{self.name}' takes integers. Received: {v!r}")
        return int(v)


class TextVectorization(_Preprocessing):
    """Turns strings into token ids (or multi_hot, count, tf_idf vectors): standardize
    ('lower_and_strip_punctuation', 'lower', 'strip_punctuation', None or a callable on
    a string), split ('whitespace', 'character', None or a callable), ngrams (an int n
    for 1..n, or a tuple of widths; joined with spaces), then a StringLookup whose
    vocabulary starts with '' (padding) and '[UNK]'. output_sequence_length pads with 0
    or truncates (int output); without it a batch pads to its longest text."""

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode="int",
                 output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", name=None,
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if standardize not in ("lower_and_strip_punctuation", "lower", "strip_punctuation",
                               None) and not callable(standardize):
            raise ValueError(f"TextVectorization '{self.name}': unknown standardize "
                             f"{standardize!r}")
        if split not in ("whitespace", "character", None) and not callable(split):
            raise ValueError(f"TextVectorization '{self.name}': unknown split {split!r}")
        if not (ngrams is None or (isinstance(ngrams, int) and ngrams > 0) or
                (isinstance(ngrams, tuple) and all(isinstance(n, int) and n > 0
                                                   for n in ngrams))):
            raise ValueError(f"`ngrams` must be None, an integer, or a tuple of integers. "
                             f"Received: ngrams={ngrams!r}")
        _check_mode(self, output_mode, ("int", "multi_hot", "count", "tf_idf"))
        if output_sequence_length is not None and (
                output_mode != "int" or isinstance(output_sequence_length, bool) or
                not isinstance(output_sequence_length, int) or output_sequence_length <= 0):
            raise ValueError(f"TextVectorization '{self.name}': output_sequence_length must be "
                             f"a positive integer, with output_mode='int'. Received: "
                             f"output_sequence_length={output_sequence_length!r}, "
                             f"output_mode={output_mode!r}")
        if ragged:
            raise ValueError(f"TextVectorization '{self.name}': ragged=True needs TensorFlow")
        self.standardize, self.split, self.ngrams = standardize, split, ngrams
        self._widths = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else ngrams
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.encoding = encoding
        self._lookup = StringLookup(
            max_tokens=max_tokens, mask_token="", oov_token="[UNK]", vocabulary=vocabulary,
            idf_weights=idf_weights, output_mode=output_mode,
            pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, name=f"{self.name}_lookup")

    @property
    def max_tokens(self):
        return self._lookup.max_tokens

    def _tokens(self, text):
        if isinstance(text, bytes):
            text = text.decode(self.encoding)
        text = str(text)
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.lower()
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = _PUNCTUATION.sub("", text)
        if callable(self.standardize):
            text = self.standardize(text)
        if self.split == "whitespace":
            tokens = text.split()
        elif self.split == "character":
            tokens = list(text)
        elif callable(self.split):
            tokens = list(self.split(text))
        else:
            tokens = [text]
        if self._widths:
            tokens = [" ".join(tokens[i:i + n]) for n in self._widths
                      for i in range(len(tokens) - n + 1)]
        return tokens

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return (self.output_sequence_length,)
        return (self._lookup._encoded_size(),)

    def _texts(self, data):
        a = np.asarray(data, dtype=object)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1:
            raise ValueError(f"TextVectorization '{self.name}' takes one string per sample "
                             f"(shape (n,) or (n, 1)). Received shape {a.shape}")
        return [self._tokens(t) for t in a]

    def adapt(self, data, batch_size=None, steps=None):
        """Learns the vocabulary (and idf weights for tf_idf) from strings."""
        data = adapt_data(data, steps)
        rows = self._texts(data)
        if not rows:
            raise ValueError(f"TextVectorization '{self.name}': adapt needs texts. Received "
                             f"an empty array")
        width = max(max(len(r) for r in rows), 1)
        padded = np.array([r + [""] * (width - len(r)) for r in rows], dtype=object)
        self._lookup.adapt(padded.reshape(len(rows), width))

    def _apply(self, inputs):
        rows = self._texts(inputs)
        look = self._lookup
        look._require_vocabulary()
        if self.output_mode == "int":
            width = self.output_sequence_length or max((len(r) for r in rows), default=0)
            out = np.zeros((len(rows), width), np.int64)
            for i, r in enumerate(rows):
                ids = [look._lookup(t) for t in r[:width]]
                out[i, :len(ids)] = ids
            return out
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), max(width, 1)), -1, np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = [look._lookup(t) for t in r]
        return look._encode(ids)

    def get_vocabulary(self, include_special_tokens=True):
        return self._lookup.get_vocabulary(include_special_tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None):
        self._lookup.set_vocabulary(vocabulary, idf_weights)

    def vocabulary_size(self):
        return self._lookup.vocabulary_size()

    def get_config(self):
        c = super().get_config()
        inner = self._lookup.get_config()
        c.update(max_tokens=inner["max_tokens"],
                 standardize=self.standardize if isinstance(self.standardize, str) or
                 self.standardize is None else None,
                 split=self.split if isinstance(self.split, str) or self.split is None
                 else None,
                 ngrams=self.ngrams, output_mode=self.output_mode,
                 output_sequence_length=self.output_sequence_length,
                 pad_to_max_tokens=inner["pad_to_max_tokens"], sparse=False, ragged=False,
                 vocabulary=inner["vocabulary"], idf_weights=inner["idf_weights"],
                 encoding=self.encoding)
        return c


class Hashing(_Preprocessing):
    """Hashes values into num_bins bins as Keras does: each value's string (integers
    and floats, cast to integers, by their decimal digits) by FarmHash's Fingerprint64,
    or by SipHash-2-4 under a salt; with mask_value, bin 0 holds it and the others hash
    into 1 .. num_bins - 1. output_mode 'int' (default), 'one_hot', 'multi_hot' or
    'count'. It runs on arrays before the model."""

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or \
                num_bins <= 0:
            raise ValueError(f"The `num_bins` for `Hashing` cannot be `None` or non-positive "
                             f"values. Received: num_bins={num_bins!r}.")
        self.num_bins = int(num_bins)
        self.mask_value = mask_value
        self.salt = _salt(self, salt)
        self.output_mode = _check_mode(self, output_mode, ("int", "one_hot", "multi_hot",
                                                            "count"))
        if sparse:
            raise ValueError(f"Hashing '{self.name}': sparse=True needs TensorFlow; ember "
                             f"returns dense arrays")
        self.sparse = False

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) if self.output_mode == "int" else (self.num_bins,)

    def _apply(self, inputs):
        a = np.asarray(inputs)
        if a.dtype.kind == "f":  # Keras casts floats to int64 before hashing
            if not np.all(np.isfinite(a)):
                raise ValueError(f"Hashing '{self.name}': cannot hash NaN or infinite values")
            a = a.astype(np.int64)
        flat = a.reshape(-1).tolist()
        bins = self.num_bins
        masked = None
        if self.mask_value is not None and bins > 1:
            masked = np.array([v == self.mask_value for v in flat], bool)
            bins -= 1
        ids = _hash(flat, bins, self.salt)
        if masked is not None:
            ids = np.where(masked, 0, ids + 1)
        ids = ids.reshape(a.shape)
        if self.output_mode == "int":
            return ids
        return CategoryEncoding(self.num_bins, self.output_mode)._apply(ids)

    def get_config(self):
        c = super().get_config()
        c.update(num_bins=self.num_bins, salt=self.salt, mask_value=self.mask_value,
                 output_mode=self.output_mode, sparse=False)
        return c


class CategoryEncoding(_OnArrays):
    """Integer ids in [0, num_tokens) to vectors of num_tokens: 'one_hot' (one id per
    sample), 'multi_hot' (default) or 'count' (ids along the last axis); inside a model
    it runs in the core."""

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, (int, np.integer)) or \
                num_tokens <= 0:
            raise ValueError(f"CategoryEncoding '{self.name}': num_tokens must be a positive "
                             f"integer. Received: num_tokens={num_tokens!r}")
        self.num_tokens = int(num_tokens)
        self.output_mode = _check_mode(self, output_mode, ("one_hot", "multi_hot", "count"))
        if sparse:
            raise ValueError(f"CategoryEncoding '{self.name}': sparse=True needs TensorFlow")
        self.sparse = False

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.output_mode == "one_hot" and shape and shape[-1] != 1:
            return shape + (self.num_tokens,)
        return shape[:-1] + (self.num_tokens,) if shape else (self.num_tokens,)

    def _lower(self, graph, x):
        from .. import ops
        shape = tuple(graph.value_shape(x))

        def encode(t):
            hot = ops.one_hot(ops.cast(t, "int32"), self.num_tokens)
            if self.output_mode == "one_hot" and shape[-1] != 1:
                return hot
            if self.output_mode == "count":
                return ops.sum(hot, axis=-2)
            return ops.max(hot, axis=-2)
        return self._lower_ops(graph, x, encode)

    def _apply(self, inputs):
        a = np.asarray(inputs)
        if a.size and (not np.all(a == np.floor(a)) or a.min() < 0 or a.max() >= self.num_tokens):
            raise ValueError(f"CategoryEncoding '{self.name}': ids must be integers in "
                             f"[0, {self.num_tokens}). Received values from {a.min()} to "
                             f"{a.max()}")
        a = a.astype(np.int64)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim == 1:
            a = a[:, None] if self.output_mode != "one_hot" else a
        if self.output_mode == "one_hot" and (a.ndim == 1 or a.shape[-1] != 1):
            return np.eye(self.num_tokens, dtype=np.float32)[a]
        hot = np.eye(self.num_tokens, dtype=np.float32)[a]
        return hot.sum(-2) if self.output_mode == "count" else hot.max(-2)

    def get_config(self):
        c = super().get_config()
        c.update(num_tokens=self.num_tokens, output_mode=self.output_mode, sparse=False)
        return c


class Discretization(_OnArrays):
    """Buckets numbers by bin_boundaries: bucket i holds boundaries[i-1] <= x <
    boundaries[i] (ids 0 .. len(boundaries)); `adapt(data)` with num_bins sets the
    boundaries at the data's quantiles (exact ones; Keras approximates them within
    epsilon). Inside a model it runs in the core (output_mode 'int' gives float ids)."""

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int",
                 sparse=False, dtype=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if (bin_boundaries is None) == (num_bins is None):
            raise ValueError(f"Discretization '{self.name}': pass exactly one of "
                             f"bin_boundaries and num_bins. Received: "
                             f"bin_boundaries={bin_boundaries!r}, num_bins={num_bins!r}")
        if num_bins is not None and (isinstance(num_bins, bool) or
                                     not isinstance(num_bins, (int, np.integer)) or num_bins < 1):
            raise ValueError(f"Discretization '{self.name}': num_bins must be a positive "
                             f"integer. Received: num_bins={num_bins!r}")
        self.output_mode = _check_mode(self, output_mode, ("int", "one_hot", "multi_hot",
                                                           "count"))
        if self.output_mode != "int":
            raise ValueError(f"Discretization '{self.name}': ember supports output_mode='int' "
                             f"(follow it with CategoryEncoding for the others)")
        self.num_bins = None if num_bins is None else int(num_bins)
        self.epsilon = float(epsilon)
        self.sparse = False
        self.bin_boundaries = None
        if bin_boundaries is not None:
            b = [float(v) for v in bin_boundaries]
            if any(x >= y for x, y in zip(b, b[1:])):
                raise ValueError(f"Discretization '{self.name}': bin_boundaries must increase. "
                                 f"Received: {bin_boundaries!r}")
            self.bin_boundaries = b

    def adapt(self, data, batch_size=None, steps=None):
        data = adapt_data(data, steps)
        a = np.asarray(data, dtype=np.float64).reshape(-1)
        a = a[np.isfinite(a)]
        if not a.size:
            raise ValueError(f"Discretization '{self.name}': adapt needs finite numbers")
        q = np.quantile(a, np.linspace(0, 1, self.num_bins + 1)[1:-1])
        self.bin_boundaries = [float(v) for v in np.unique(q)]

    def _require(self):
        if self.bin_boundaries is None:
            raise ValueError(f"Discretization '{self.name}' has no bin_boundaries: call "
                             f"adapt(data) first")

    def _lower(self, graph, x):
        from .. import ops
        self._require()

        def bucket(t):
            total = None
            for b in self.bin_boundaries:
                step = ops.cast(ops.greater_equal(t, b), "float32")
                total = step if total is None else total + step
            return total if total is not None else t * 0.0
        return self._lower_ops(graph, x, bucket)

    def _apply(self, inputs):
        self._require()
        return np.searchsorted(np.asarray(self.bin_boundaries), np.asarray(inputs),
                               side="right").astype(np.int64)

    def get_config(self):
        c = super().get_config()
        c.update(bin_boundaries=self.bin_boundaries, num_bins=self.num_bins,
                 epsilon=self.epsilon, output_mode=self.output_mode, sparse=False)
        return c


__all__ = ["StringLookup", "IntegerLookup", "TextVectorization", "CategoryEncoding",
           "Discretization"]
