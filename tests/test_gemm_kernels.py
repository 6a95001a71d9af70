"""The AVX-512 and AVX2 GEMM kernels give the same bits: for products of every shape
family, and for whole trainings, which end on identical weights whichever kernel ran
them (the portable kernel, without FMA, rounds differently). Each kernel runs in a
process of its own (EMBER_GEMM_KERNEL chooses it at the first product)."""
import os

import pytest
from fresh_process import json_from_fresh_process

SCRIPT = r"""
import json, sys
import numpy as np
import ember
from ember import _core, layers
out = {"kernel": ember.config.gemm_kernel()}
rng = np.random.default_rng(0)
shapes = [(6, 32, 40, 0, 0), (7, 33, 41, 0, 0), (128, 512, 784, 0, 0), (1, 600, 300, 0, 0),
          (3, 70, 900, 0, 0), (200, 10, 256, 0, 0), (256, 10, 128, 1, 0), (128, 784, 512, 0, 1),
          (57600, 32, 27, 0, 0), (288, 64, 10816, 1, 0), (13, 17, 5, 1, 1), (64, 40, 1000, 0, 0),
          # a few rows whose columns fit the registers: tiles, their halves, masked ends
          (1, 200, 300, 0, 0), (2, 100, 513, 0, 0), (4, 37, 70, 0, 0), (3, 10, 256, 0, 0),
          (1, 64, 128, 0, 0),
          # split-K: a C of up to 256 KB over a long K (an LSTM's input kernel gradient)
          (128, 512, 9000, 1, 0)]
for M, N, K, ta, tb in shapes:
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    for beta in (0.0, 1.0):
        d = c.copy()
        _core.sgemm(a, b, d, bool(ta), bool(tb), 1.0 if beta else 0.5, beta)
        out[f"{M}x{N}x{K}/{ta}{tb}/{beta}"] = d.tobytes().hex()
ember.set_random_seed(3)
x = rng.standard_normal((96, 12, 12, 3)).astype(np.float32)
y = rng.integers(0, 5, 96)
cnn = ember.Sequential([ember.Input((12, 12, 3)), layers.Conv2D(32, 3, activation="relu"),
                        layers.Conv2D(40, 3, padding="same"), layers.BatchNormalization(),
                        layers.Activation("relu"), layers.MaxPooling2D(),
                        layers.Flatten(), layers.Dense(70, activation="relu"), layers.Dense(5)])
cnn.compile("adam", ember.losses.SparseCategoricalCrossentropy(from_logits=True))
cnn.fit(x, y, batch_size=32, epochs=2, verbose=0)
out["cnn"] = [w.tobytes().hex() for w in cnn.get_weights()]
out["cnn_predict1"] = cnn.predict(x[:1], verbose=0).tobytes().hex()
json.dump(out, open(sys.argv[1], "w"))
"""


def run(kernel, path):
    return json_from_fresh_process(SCRIPT, path, EMBER_GEMM_KERNEL=kernel)


def test_avx512_and_avx2_kernels_give_the_same_bits(tmp_path):
    wide, narrow = run("avx512", tmp_path / "a.json"), run("avx2", tmp_path / "b.json")
    if wide["kernel"] != "avx512_6x32" or narrow["kernel"] != "avx2_fma_6x16":
        pytest.skip(f"this CPU lacks AVX-512 (kernels {wide['kernel']}, {narrow['kernel']})")
    for key in narrow:
        if key != "kernel":
            assert wide[key] == narrow[key], f"{key}: the AVX-512 kernel differs"


def test_the_chosen_kernel_is_the_widest_the_cpu_runs():
    import ember
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = ember.config.gemm_kernel()
    if os.environ.get("EMBER_GEMM_KERNEL"):
        pytest.skip("EMBER_GEMM_KERNEL forces a kernel")
    if all(f in flags for f in ("avx512f", "avx512bw", "avx512dq", "avx512vl")):
        assert name == "avx512_6x32"
    elif "avx2" in flags and " fma" in flags:
        assert name == "avx2_fma_6x16"
