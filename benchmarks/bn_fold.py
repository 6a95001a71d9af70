"""BatchNormalization folded into the convolution or Dense layer before it, at
inference: a model predicting with the fold and without it, in one process, alternating
call by call, so that both see the same machine.

    python benchmarks/bn_fold.py [--model resnet|mlp] [--repeats 21]

resnet: the benchmark ResNet (run.py's `resnet`), at batch 256 and 1. mlp: run.py's MLP
(784-512-256-10) with a BatchNormalization before each ReLU, at batch 1024 and 1 (at
batch 1 the folded model runs its Dense layers as one chain).

Without the fold: the same model with a Dropout(0.0) between each layer and its
BatchNormalization (an identity at inference that keeps the two nodes apart); both get
the same weights and random moving statistics, and must predict the same bits.
Prints the median time of each and the median of the pairwise ratios (unfolded /
folded; > 1: the fold is faster).
"""
import argparse
import time

import numpy as np

import ember
from common import cpu_name
from run import build_resnet


def build_mlp(keep_bn_apart=False):
    L = ember.layers
    layers = [ember.Input((784,))]
    for units in (512, 256):
        layers += [L.Dense(units, use_bias=False)] + ([L.Dropout(0.0)] if keep_bn_apart else [])
        layers += [L.BatchNormalization(), L.ReLU()]
    m = ember.Sequential(layers + [L.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    return m


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=("resnet", "mlp"), default="resnet")
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args()
    if args.model == "resnet":
        folded, apart = build_resnet("ember"), build_resnet("ember", keep_bn_apart=True)
        shape, batches = (32, 32, 3), (256, 1)
    else:
        folded, apart = build_mlp(), build_mlp(keep_bn_apart=True)
        shape, batches = (784,), (1024, 1)
    rng = np.random.default_rng(1)
    weights = [w if w.ndim > 1 else rng.random(w.shape).astype(np.float32) + 0.5
               for w in folded.get_weights()]
    folded.set_weights(weights)
    apart.set_weights(weights)
    x = rng.random((batches[0],) + shape, dtype=np.float32)
    if not np.array_equal(folded.predict(x, verbose=0), apart.predict(x, verbose=0)):
        raise SystemExit("the folded model does not predict the same bits")
    print(f"{cpu_name()}, {ember.config.get_num_threads()} threads, "
          f"GEMM kernel {ember.config.gemm_kernel()}")
    for batch in batches:
        times = {id(folded): [], id(apart): []}
        for _ in range(args.repeats * (20 if batch == 1 and args.model == "mlp" else 1)):
            for m in (folded, apart):
                t = time.perf_counter()
                m.predict(x[:batch], batch_size=batch, verbose=0)
                times[id(m)].append(time.perf_counter() - t)
        f, a = np.array(times[id(folded)]), np.array(times[id(apart)])
        print(f"batch {batch}: folded {np.median(f) * 1e6:.0f} us, apart "
              f"{np.median(a) * 1e6:.0f} us, apart / folded (median of pairs) "
              f"{np.median(a / f):.3f}")


if __name__ == "__main__":
    main()
