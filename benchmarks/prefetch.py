"""Loading overlapped with training: fit on a PyDataset whose batches take as long to
load as a training step takes to run.

    python benchmarks/prefetch.py [--batches 200] [--repeats 3]

The MLP of run.py (784-512-256-10, Adam, batch 128). First the training step alone is
timed (fit on arrays, per batch); then fit runs on a PyDataset whose __getitem__ takes
that long, either sleeping (I/O: the GIL is free) or decoding in NumPy (GIL held except
inside NumPy's kernels). Prints epoch time / max(loading, training): 1.0 is perfect
overlap, 2.0 none. Medians of --repeats.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import ember
    from ember import layers
    bs, n = 128, args.batches
    r = np.random.default_rng(0)
    x = r.random((bs * n, 784), dtype=np.float32)
    y = r.integers(0, 10, bs * n)

    def model():
        ember.set_random_seed(0)
        m = ember.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(256, activation="relu"),
                              layers.Dense(10, activation="softmax")])
        m.compile(ember.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        m.fit(x[:bs * 10], y[:bs * 10], batch_size=bs, verbose=0)  # warm-up
        return m

    m = model()
    t = time.perf_counter()
    m.fit(x, y, batch_size=bs, shuffle=False, verbose=0)
    step = (time.perf_counter() - t) / n

    class Slow(ember.utils.PyDataset):
        def __init__(self, how):
            super().__init__()
            self.how = how
            self.buf = r.random((bs, 784), dtype=np.float32)

        def __len__(self):
            return n

        def __getitem__(self, i):
            s = slice(i * bs, (i + 1) * bs)
            if self.how == "sleep":
                time.sleep(step)
            else:  # NumPy work of about one step
                end = time.perf_counter() + step
                while time.perf_counter() < end:
                    np.multiply(self.buf, 1.0001, out=self.buf)
            return x[s], y[s]

    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {ember.config.get_num_threads()} "
          f"threads; training step alone {step * 1e3:.2f} ms, loading set to the same")
    for how in ("sleep", "numpy"):
        ratios = []
        for _ in range(args.repeats):
            m = model()
            t = time.perf_counter()
            m.fit(Slow(how), verbose=0)
            ratios.append((time.perf_counter() - t) / (n * step))
        print(f"  loading by {how}: epoch / max(loading, training) = "
              f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
