"""BatchNormalization folded into the convolution before it, at inference: the
benchmark ResNet (run.py's `resnet`) predicting with the fold and without it, in one
process, alternating call by call, so that both see the same machine.

    python benchmarks/bn_fold.py [--repeats 21]

Without it: the same model with a Dropout(0.0) between each Conv2D and its
BatchNormalization (an identity at inference that keeps the two nodes apart); both get
the same weights and random moving statistics, and must predict the same bits.
Prints the median time of each at batch 256 and 1, and the median of the pairwise
ratios (unfolded / folded; > 1: the fold is faster).
"""
import argparse
import time

import numpy as np

import ember
from common import cpu_name
from run import build_resnet


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args()
    folded, apart = build_resnet("ember"), build_resnet("ember", keep_bn_apart=True)
    rng = np.random.default_rng(1)
    weights = [w if w.ndim > 1 else rng.random(w.shape).astype(np.float32) + 0.5
               for w in folded.get_weights()]
    folded.set_weights(weights)
    apart.set_weights(weights)
    x = rng.random((256, 32, 32, 3), dtype=np.float32)
    if not np.array_equal(folded.predict(x, verbose=0), apart.predict(x, verbose=0)):
        raise SystemExit("the folded model does not predict the same bits")
    print(f"{cpu_name()}, {ember.config.get_num_threads()} threads, "
          f"GEMM kernel {ember.config.gemm_kernel()}")
    for batch in (256, 1):
        times = {id(folded): [], id(apart): []}
        for _ in range(args.repeats):
            for m in (folded, apart):
                t = time.perf_counter()
                m.predict(x[:batch], batch_size=batch, verbose=0)
                times[id(m)].append(time.perf_counter() - t)
        f, a = np.array(times[id(folded)]), np.array(times[id(apart)])
        print(f"batch {batch}: folded {np.median(f) * 1e3:.2f} ms, apart "
              f"{np.median(a) * 1e3:.2f} ms, apart / folded (median of pairs) "
              f"{np.median(a / f):.3f}")


if __name__ == "__main__":
    main()
