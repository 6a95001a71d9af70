"""The vector loops outside the GEMM (activations, pooling, normalization, merges,
recurrent gates, embedding rows, optimizer updates, Philox draws) give the same bits in
every instruction-set family: whole trainings end on identical weights whichever family
ran them. Each family runs in a process of its own (EMBER_VECTOR_ISA chooses it); the
GEMM kernel stays the same in all of them."""
import os
import subprocess
import sys

import pytest
from fresh_process import json_from_fresh_process

SCRIPT = r"""
import json, sys
import numpy as np
import ember
from ember import layers
out = {"isa": ember.config.vector_isa()}
rng = np.random.default_rng(0)
ember.set_random_seed(5)

# Convolutions, BatchNormalization, both poolings, merges, dropout, Adam.
x = rng.standard_normal((48, 10, 10, 3)).astype(np.float32)
y = rng.integers(0, 4, 48)
inp = ember.Input((10, 10, 3))
a = layers.Conv2D(12, 3, padding="same", activation="relu")(inp)
b = layers.BatchNormalization()(layers.Conv2D(12, 3, padding="same")(inp))
h = layers.Add()([a, layers.Activation("elu")(b)])
h = layers.Multiply()([h, layers.Activation("sigmoid")(h)])
h = layers.MaxPooling2D()(h)
h = layers.AveragePooling2D(3, strides=2, padding="same")(h)
h = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(h))
cnn = ember.Model(inp, layers.Dense(4, activation="softmax")(layers.Dense(9, activation="gelu")(h)))
cnn.compile("adam", "sparse_categorical_crossentropy")
cnn.fit(x, y, batch_size=16, epochs=2, verbose=0)
out["cnn"] = [w.tobytes().hex() for w in cnn.get_weights()]

# Masked sequences through LSTM, GRU and SimpleRNN, global max pooling, RMSprop.
ids = rng.integers(1, 30, (40, 9))
ids[::3, 6:] = 0
t = rng.integers(0, 2, 40)
seq = ember.Sequential([ember.Input((9,)), layers.Embedding(30, 13, mask_zero=True),
                        layers.LSTM(11, return_sequences=True),
                        layers.GRU(10, return_sequences=True),
                        layers.SimpleRNN(9, return_sequences=True),
                        layers.GlobalMaxPooling1D(), layers.Dense(1, activation="sigmoid")])
seq.compile(ember.optimizers.RMSprop(1e-2, momentum=0.5), "binary_crossentropy")
seq.fit(ids, t, batch_size=8, epochs=2, verbose=0)
out["rnn"] = [w.tobytes().hex() for w in seq.get_weights()]

# Embedding into global max pooling (the fused path), SGD with momentum, AdamW.
txt = ember.Sequential([ember.Input((12,)), layers.Embedding(50, 17),
                        layers.GlobalMaxPooling1D(), layers.Dense(3)])
txt.compile(ember.optimizers.AdamW(1e-2, weight_decay=0.01),
            ember.losses.SparseCategoricalCrossentropy(from_logits=True))
txt.fit(rng.integers(0, 50, (60, 12)), rng.integers(0, 3, 60), batch_size=20, epochs=2,
        verbose=0)
out["text"] = [w.tobytes().hex() for w in txt.get_weights()]
mlp = ember.Sequential([ember.Input((7,)), layers.Dense(33, activation="tanh"),
                        layers.Dense(1)])
mlp.compile(ember.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "mse")
mlp.fit(rng.standard_normal((50, 7)).astype(np.float32), rng.standard_normal(50), batch_size=10,
        epochs=2, verbose=0)
out["mlp"] = [w.tobytes().hex() for w in mlp.get_weights()]
json.dump(out, open(sys.argv[1], "w"))
"""


def run(isa, path):
    return json_from_fresh_process(SCRIPT, path, EMBER_VECTOR_ISA=isa,
                                   EMBER_GEMM_KERNEL="avx2")


def test_every_vector_family_trains_to_the_same_bits(tmp_path):
    base = run("generic", tmp_path / "generic.json")
    assert base["isa"] == "generic"
    ran = []
    for isa in ("avx2", "avx512"):
        got = run(isa, tmp_path / f"{isa}.json")
        if got["isa"] != isa:  # the CPU lacks it: the widest it has ran instead
            continue
        ran.append(isa)
        for key in base:
            if key != "isa":
                assert got[key] == base[key], f"{key}: the {isa} loops differ from the portable ones"
    if not ran:
        pytest.skip("this CPU has neither AVX2 nor AVX-512")


def test_the_chosen_family_is_the_widest_the_cpu_runs():
    import ember
    if os.environ.get("EMBER_VECTOR_ISA"):
        pytest.skip("EMBER_VECTOR_ISA forces a family")
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = ember.config.vector_isa()
    if all(f in flags for f in ("avx512f", "avx512bw", "avx512dq", "avx512vl")):
        assert name == "avx512"
    elif " avx2" in flags:
        assert name == "avx2"
    else:
        assert name == "generic"


def test_an_unknown_or_unavailable_family_leaves_the_widest():
    import ember
    if os.environ.get("EMBER_VECTOR_ISA"):
        pytest.skip("EMBER_VECTOR_ISA forces a family")
    code = "import ember; print(ember.config.vector_isa())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, EMBER_VECTOR_ISA="sse9"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ember.config.vector_isa()
