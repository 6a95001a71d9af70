"""Data that is not one array in memory: Keras 3's PyDataset, Python generators, and the
prefetching that overlaps loading the next batch with training on this one.

ember's training step runs in C++ with the GIL released, so a Python thread can read
and prepare the next batch meanwhile: `Prefetcher` keeps up to `max_queue_size`
batches ready, fetched by `workers` threads (a PyDataset's batches are fetched by index,
in any order, and delivered in order; a generator is read by one thread).
"""
import threading

import numpy as np


class PyDataset:
    """Keras's base class for data sets that produce batches by index.

    Subclass it with `__len__` (batches per epoch) and `__getitem__(index)` returning
    `(x, y)` or `(x, y, sample_weight)` (or `x` alone for predict); `on_epoch_end()` is
    called after every epoch. `workers` threads fetch batches ahead of the training
    step; `use_multiprocessing` is accepted for Keras compatibility and runs threads.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PyDataset: {name} must be a positive integer. Received: "
                                 f"{name}={value!r}")
        self._workers = int(workers)
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = int(max_queue_size)

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    @property
    def num_batches(self):
        return len(self)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def on_epoch_end(self):
        pass


def is_stream(x):
    """True for a PyDataset or a Python iterator/generator (not an array-like)."""
    if isinstance(x, PyDataset):
        return True
    return hasattr(x, "__next__") and not isinstance(x, (np.ndarray, list, tuple, dict))


def adapt_data(data, steps=None):
    """What a preprocessing layer's adapt() reads: an array as it is, or the inputs of
    the batches of a PyDataset or generator (at most `steps` batches) joined."""
    if not is_stream(data):
        return data
    if steps is not None and (isinstance(steps, bool) or
                              not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"adapt(): `steps` must be a positive integer. Received: {steps!r}")
    batches = iter(data) if isinstance(data, PyDataset) else data
    parts = []
    for batch in batches:
        if steps is not None and len(parts) >= steps:
            break
        x = batch[0] if isinstance(batch, tuple) else batch
        parts.append(np.asarray(x, dtype=object if np.asarray(x).dtype.kind in "OUS"
                                else None))
    if not parts:
        raise ValueError("adapt() received a data set with no batches")
    return np.concatenate(parts)


def split_batch(batch, what):
    """(x, y, sample_weight) of one batch as a data set yields it."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"{what} must yield x, (x,), (x, y) or (x, y, sample_weight). "
                             f"Received a tuple of {len(batch)}")
        batch = batch + (None,) * (3 - len(batch))
        return batch
    if isinstance(batch, list):
        raise ValueError(f"{what} must yield tuples (x, y) or (x, y, sample_weight), not a "
                         f"list (a list would be one input)")
    return batch, None, None


class _Stop:
    """Sentinel: the source is exhausted."""


class Prefetcher:
    """Iterates over the batches of one epoch of `source` (a PyDataset or an iterator),
    at most `steps` of them, fetching up to a window ahead on background threads (a
    PyDataset's `workers`, one for an iterator, which is never read past `steps`).
    Batches come out in order; an error raised while fetching one is raised when that
    batch is due. `close()` stops the threads."""

    def __init__(self, source, steps=None):
        self._source = source
        self._indexed = isinstance(source, PyDataset)
        if self._indexed:
            self._count = len(source) if steps is None else min(len(source), steps)
            workers, self._window = source.workers, max(source.max_queue_size, source.workers)
        else:
            self._count, workers, self._window = steps, 1, 4
        self._cond = threading.Condition()
        self._results = {}  # index -> batch, _Stop or the exception fetching it raised
        self._claimed = self._delivered = self._finished = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(workers)]
        for t in self._threads:
            t.start()

    def _work(self):
        while True:
            with self._cond:
                while not self._closed and self._claimed - self._delivered >= self._window:
                    self._cond.wait()
                if self._closed or (self._count is not None and self._claimed >= self._count):
                    self._finished += 1
                    self._cond.notify_all()
                    return
                i = self._claimed
                self._claimed += 1
            try:
                item = self._source[i] if self._indexed else next(self._source)
            except StopIteration:
                item = _Stop
            except BaseException as e:  # handed to the consumer when batch i is due
                item = e
            with self._cond:
                self._results[i] = item
                self._cond.notify_all()
            if item is _Stop or isinstance(item, BaseException):
                with self._cond:
                    self._finished += 1
                    self._cond.notify_all()
                return

    def __iter__(self):
        return self

    def __next__(self):
        with self._cond:
            while self._delivered not in self._results:
                if self._finished == len(self._threads):
                    raise StopIteration
                self._cond.wait()
            item = self._results.pop(self._delivered)
            self._delivered += 1
            self._cond.notify_all()
        if item is _Stop:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
