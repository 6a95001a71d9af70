"""GEMM throughput: ember's sgemm against numpy (OpenBLAS), alternating in one run.

    python benchmarks/bench_gemm.py                 # squares at 1 and 2 threads, MLP and CNN shapes
    python benchmarks/bench_gemm.py --json out.json
    python benchmarks/bench_gemm.py --training      # training with each GEMM kernel

Each library runs in processes of its own, alternating (ember, numpy, numpy, ember,
...), with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to the same thread count: in
one process the idle threads of the other library would keep spinning after its calls
(OpenBLAS's for about 0.1 s) and take a core from the one being timed. Each process
times every shape (the median of three call groups after a warm-up group).
Reported: median GFLOP/s over the repeats, and ember / numpy.

numpy's processes run without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some machines
set and which hide OpenBLAS's own best kernel (its AVX-512 one, for instance): OpenBLAS is
measured at its best, and the kernel it picked (threadpoolctl's `architecture`) is
printed beside ember's. Where g++ is at hand, fma_peak.cpp is built and run first: the
machine's measured FMA peak at the width of ember's kernel, and each figure's share of it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import tempfile

import numpy as np

from common import cpu_name

HIDE_OPENBLAS_KERNEL = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

SQUARES = [128, 256, 512, 1024, 2048]
# (label, M, N, K, trans_a, trans_b): C(M,N) = op(A) op(B)
MLP = []
for i, o in ((784, 512), (512, 256), (256, 10)):
    MLP += [(f"mlp fwd {i}->{o}", 128, o, i, False, False),
            (f"mlp dW {i}x{o}", i, o, 128, True, False),
            (f"mlp dX {o}->{i}", 128, i, o, False, True)]
# im2col shapes of the benchmark CNN (32x32x3, conv 32/64/64 3x3 valid, pool 2) at batch 64
CNN = [("cnn conv1 fwd", 64 * 30 * 30, 32, 27, False, False),
       ("cnn conv2 fwd", 64 * 13 * 13, 64, 288, False, False),
       ("cnn conv3 fwd", 64 * 4 * 4, 64, 576, False, False),
       ("cnn conv2 dW", 288, 64, 64 * 13 * 13, True, False),
       ("cnn conv2 dX", 64 * 13 * 13, 288, 64, False, True)]


def measure(lib, shapes, groups, min_time):
    """GFLOP/s of one library on each shape: the median of `groups` timed call groups."""
    rng = np.random.default_rng(0)
    if lib == "ember":
        from ember import _core
    rows = []
    for label, M, N, K, ta, tb in shapes:
        a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        c = np.empty((M, N), np.float32)
        A, B = (a.T if ta else a), (b.T if tb else b)
        if lib == "ember":
            def f():
                _core.sgemm(a, b, c, trans_a=ta, trans_b=tb)
        else:
            def f():
                np.matmul(A, B, out=c)
        flops = 2.0 * M * N * K
        inner = max(1, int(min_time * 50e9 / flops))
        times = []
        for g in range(groups + 1):  # the first group is the warm-up
            t = time.perf_counter()
            for _ in range(inner):
                f()
            if g:
                times.append((time.perf_counter() - t) / inner)
        rows.append({"shape": label, "M": M, "N": N, "K": K,
                     "gflops": flops / np.median(times) / 1e9})
    return rows


def worker(args):
    shapes = [(f"square {s}", s, s, s, False, False) for s in SQUARES] + MLP + CNN
    rows = measure(args.lib, shapes, 3, args.min_time)
    if args.lib == "ember":
        import ember
        kernel = ember.config.gemm_kernel()
    else:
        kernel = "OpenBLAS " + openblas_kernel()
    print(json.dumps({"kernel": kernel, "rows": rows}))


def openblas_kernel():
    """The kernel numpy's OpenBLAS picked for this CPU, as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "(kernel unknown: pip install threadpoolctl)"
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas":
            return f"{lib.get('version')} {lib.get('architecture')}"
    return "(not OpenBLAS)"


def fma_peak(threads):
    """The measured FMA peak in GFLOP/s by "width/threads" (fma_peak.cpp), or {} without g++."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.cpp")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "fma_peak")
        try:
            subprocess.run(["g++", "-O2", "-fopenmp", src, "-o", exe], check=True,
                           capture_output=True)
            out = subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"no FMA peak probe: {e}")
            return {}
    return json.loads(out.stdout)


def compare(t, args):
    """ember and numpy at t threads, each run in its own processes, alternating."""
    env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t),
               MKL_NUM_THREADS=str(t))
    numpy_env = {k: v for k, v in env.items() if k not in HIDE_OPENBLAS_KERNEL}
    runs = {"ember": [], "numpy": []}
    for r in range(args.repeats):
        for lib in ("ember", "numpy") if r % 2 == 0 else ("numpy", "ember"):
            cmd = [sys.executable, __file__, "--worker", lib, "--threads", str(t),
                   "--min-time", str(args.min_time)]
            out = subprocess.run(cmd, env=numpy_env if lib == "numpy" else env,
                                 capture_output=True, text=True, check=True)
            runs[lib].append(json.loads(out.stdout))
    rows = []
    for i, row in enumerate(runs["ember"][0]["rows"]):
        e = float(np.median([run["rows"][i]["gflops"] for run in runs["ember"]]))
        n = float(np.median([run["rows"][i]["gflops"] for run in runs["numpy"]]))
        rows.append({"shape": row["shape"], "M": row["M"], "N": row["N"], "K": row["K"],
                     "ember_gflops": e, "numpy_gflops": n, "ratio": e / n})
    return {"threads": t, "kernel": runs["ember"][0]["kernel"],
            "numpy_kernel": runs["numpy"][0]["kernel"], "rows": rows}


def training(args):
    """Samples/s training MLPs and a CNN with each GEMM kernel the CPU runs (portable,
    AVX2, AVX-512), the kernels alternating repeat by repeat."""
    code = r"""
import time, numpy as np, ember
from ember import layers
print("kernel", ember.config.gemm_kernel())
ember.set_random_seed(0)
def timed(name, m, x, y, epochs, bs):
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x[:bs * 4], y[:bs * 4], batch_size=bs, epochs=1, verbose=0)
    t = time.perf_counter(); m.fit(x, y, batch_size=bs, epochs=epochs, verbose=0)
    print(name, len(x) * epochs / (time.perf_counter() - t))
def mlp(n_in, hidden, drop):
    return ember.Sequential([layers.Input((n_in,))] + [layers.Dense(h, activation="relu") for h in hidden[:1]]
        + ([layers.Dropout(drop)] if drop else []) + [layers.Dense(h, activation="relu") for h in hidden[1:]]
        + [layers.Dense(10, activation="softmax")])
from sklearn.datasets import load_digits
d = load_digits()
timed("digits-mlp", mlp(64, [256, 128], 0.2), (d.data / 16).astype("float32"), d.target, 20, 32)
r = np.random.default_rng(0)
timed("bench-mlp", mlp(784, [512, 256], 0.2), r.random((20000, 784), dtype=np.float32), r.integers(0, 10, 20000), 1, 128)
cnn = ember.Sequential([layers.Input((32, 32, 3)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(), layers.Conv2D(64, 3, activation="relu"),
    layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
timed("bench-cnn", cnn, r.random((2560, 32, 32, 3), dtype=np.float32), r.integers(0, 10, 2560), 1, 64)
"""
    kernels = ("generic", "avx2", "avx512")
    results, names = {}, {}
    for _ in range(args.repeats):
        for kernel in kernels:
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), EMBER_GEMM_KERNEL=kernel)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True).stdout
            for line in out.splitlines():
                name, v = line.split()
                if name == "kernel":
                    names[kernel] = v
                else:
                    results.setdefault((name, kernel), []).append(float(v))
    ran = [k for k in kernels if names.get(k) == {"generic": "generic", "avx2": "avx2_fma_6x16",
                                                      "avx512": "avx512_6x32"}[k]]
    print(f"Training, samples/s (median of {args.repeats}), {args.threads} threads, {cpu_name()}")
    print("| model | " + " | ".join(f"{names[k]} kernel" for k in ran) + " | " +
          " | ".join(f"{names[k]} / {names[ran[0]]}" for k in ran[1:]) + " |")
    print("|---" * (2 * len(ran)) + "|")
    for name in ("digits-mlp", "bench-mlp", "bench-cnn"):
        med = [float(np.median(results[(name, k)])) for k in ran]
        print(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in med) + " | " +
              " | ".join(f"{v / med[0]:.2f}x" for v in med[1:]) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="largest thread count (default 2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per timed call group")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--training", action="store_true")
    p.add_argument("--worker", choices=["ember", "numpy"], help=argparse.SUPPRESS)
    args = p.parse_args()
    args.thread_list = sorted({1, args.threads})
    if args.training:
        return training(args)
    if args.worker:
        args.lib = args.worker
        return worker(args)
    peak = fma_peak(max(args.thread_list))
    results = [compare(t, args) for t in args.thread_list]
    width = "512" if results[0]["kernel"].startswith("avx512") else "256"
    print(f"CPU: {cpu_name()}; numpy {np.__version__} with {results[0]['numpy_kernel']}; "
          f"ember kernel {results[0]['kernel']}")
    if peak:
        print("measured FMA peak, GFLOP/s: " + ", ".join(
            f"{k.split('/')[0]}-bit {k.split('/')[1]} thread(s) {v:.0f}" for k, v in peak.items()))
    share = bool(peak)
    print("| shape | threads | ember GFLOP/s | numpy GFLOP/s | ember/numpy |"
          + (f" ember % of {width}-bit peak | numpy % of it |" if share else "")
          + "\n|---|---|---|---|---|" + ("---|---|" if share else ""))
    for res in results:
        p = peak.get(f"{width}/{res['threads']}")
        for r in res["rows"]:
            line = (f"| {r['shape']} ({r['M']}x{r['N']}x{r['K']}) | {res['threads']} | "
                    f"{r['ember_gflops']:.1f} | {r['numpy_gflops']:.1f} | {r['ratio']:.2f} |")
            if share:
                line += (f" {100 * r['ember_gflops'] / p:.0f}% | {100 * r['numpy_gflops'] / p:.0f}% |"
                         if p else " - | - |")
            print(line)
    if len(results) == 2:
        s1 = {r["shape"]: r["ember_gflops"] for r in results[0]["rows"]}
        s2 = {r["shape"]: r["ember_gflops"] for r in results[1]["rows"]}
        print(f"ember thread scaling 1 -> {args.threads} on 1024: "
              f"{s2['square 1024'] / s1['square 1024']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "fma_peak": peak, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
