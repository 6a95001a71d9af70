"""ember against PyTorch and Keras (JAX backend), side by side, in one command.

    python benchmarks/run.py [--frameworks ember torch keras-jax] [--threads 2]
                             [--repeats 3]
                             [--workloads mlp infer cnn resnet text lstm custom autoencoder
                                          import]
                             [--baseline DIR] [--json out.json]

Every measurement runs in a fresh process pinned to --threads cores, frameworks
alternate (A B A B ...), and the table reports medians with [min, max] and ratios.
A framework that is not installed is reported as skipped. --baseline DIR adds another
build of ember (installed with `pip install --no-deps --target DIR <checkout>`) as the
column ember@baseline, alternating with the others, and an "ember vs baseline" ratio.

Workloads (data is float32, synthetic, seeded):
  mlp     784 -> Dense(512, relu) -> Dropout(0.2) -> Dense(256, relu) -> Dense(10, softmax),
          Adam(1e-3), sparse categorical crossentropy, 60,000 samples, batch 128:
          training samples/s over one epoch after a warm-up, the final loss, peak RSS.
  infer   the same MLP: latency at batch 1 (median of 200 calls after 0.5 s of warm-up
          calls; model.predict and predict_on_batch for ember and Keras, eval +
          inference_mode for PyTorch) and throughput at batch 1024.
  cnn     the Keras CIFAR-10 tutorial CNN on (32, 32, 3) images: Conv2D(32, 3, relu),
          MaxPooling2D, Conv2D(64, 3, relu), MaxPooling2D, Conv2D(64, 3, relu), Flatten,
          Dense(64, relu), Dense(10); Adam(1e-3), batch 64, 5,120 samples: training
          samples/s, then latency at batch 1 and throughput at batch 1024, peak RSS.
          (PyTorch takes the NHWC arrays permuted, a channels_last tensor; with the input
          made NCHW-contiguous it trained at the same speed, within 4%, pair by pair.)
  resnet  a small ResNet on (32, 32, 3) images: Conv2D(32, 3, no bias) + BatchNormalization
          + relu, two residual blocks of two such convs with Add at 32 channels, a strided
          conv to 64 and one block there, GlobalAveragePooling2D, Dense(10); Adam(1e-3),
          batch 64, 2,560 samples: training samples/s, then latency at batch 1 and
          throughput at batch 256, peak RSS (PyTorch channels_last).
  text    Embedding(20000, 128) over 200-token sequences, GlobalMaxPooling1D,
          Dense(64, relu), Dense(4, softmax); Adam(1e-3), batch 128, 25,000 samples:
          training samples/s (dense-Adam semantics everywhere: PyTorch's default dense
          embedding gradient, Keras's and ember's dense update), peak RSS.
  lstm    Embedding(20000, 128) over 200-token sequences, LSTM(128), Dense(1, sigmoid);
          Adam(1e-3), binary crossentropy, batch 128, 2,560 samples: training samples/s,
          latency at batch 1, peak RSS (PyTorch: nn.LSTM, batch_first, its last state
          into the Dense; BCEWithLogitsLoss on the logit, the same arithmetic).
  autoencoder  the Keras blog's autoencoder: 784 -> Dense(32, relu) -> Dense(784, sigmoid),
          Adam(1e-3), binary crossentropy against the input, batch 256, 30,000 samples:
          training samples/s (PyTorch: BCEWithLogitsLoss on the last Linear).
  custom  the mlp workload with each Dense written as a custom layer (the Keras guide's
          Linear: matmul, bias add, activation, in ember.ops / keras.ops / torch): training
          samples/s, to set beside mlp's (ember traces it into the same fused GEMMs).
  import  time to import the framework in a fresh interpreter.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from common import cpu_flags, cpu_name, ember_kernel, torch_isa

FRAMEWORKS = ("ember", "torch", "keras-jax")
MODULES = {"ember": "ember", "torch": "torch", "keras-jax": "keras"}


def available(fw):
    if fw == "keras-jax":
        return bool(importlib.util.find_spec("keras") and importlib.util.find_spec("jax"))
    return importlib.util.find_spec(MODULES[fw]) is not None


# ---------------------------------------------------------------- worker side
def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def data(n, seed=0):
    import numpy as np
    r = np.random.default_rng(seed)
    return r.random((n, 784), dtype=np.float32), r.integers(0, 10, n).astype(np.int64)


def keras_api(fw):
    """ember or Keras (JAX backend), seeded: the two share the model-building code."""
    if fw == "ember":
        import ember as k
        k.set_random_seed(0)
    else:
        import keras as k
        k.utils.set_random_seed(0)
    return k


def build_cnn(fw):
    """The Keras CIFAR-10 tutorial CNN, logits out."""
    if fw in ("ember", "keras-jax"):
        k = keras_api(fw)
        L = k.layers
        m = k.Sequential([k.Input((32, 32, 3)), L.Conv2D(32, 3, activation="relu"),
                          L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
                          L.Conv2D(64, 3, activation="relu"), L.Flatten(),
                          L.Dense(64, activation="relu"), L.Dense(10)])
        m.compile(k.optimizers.Adam(1e-3),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m
    import torch
    from torch import nn

    class NHWC(nn.Module):  # takes the same (n, 32, 32, 3) arrays as the others
        def forward(self, x):
            return x.permute(0, 3, 1, 2)

    torch.manual_seed(0)
    return nn.Sequential(NHWC(), nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 64, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(1024, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def build_resnet(fw, keep_bn_apart=False):
    """A small ResNet: conv-BN-relu stem, two residual blocks at 32 channels, a strided
    conv to 64 and one block there, global average pooling, Dense(10) logits.
    keep_bn_apart (bn_fold.py): a Dropout(0.0) between each conv and its BN."""
    if fw in ("ember", "keras-jax"):
        k = keras_api(fw)
        L = k.layers

        def conv_bn(x, filters, strides=1, relu=True):
            x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
            if keep_bn_apart:
                x = L.Dropout(0.0)(x)
            x = L.BatchNormalization()(x)
            return L.Activation("relu")(x) if relu else x

        def block(x, filters):
            y = conv_bn(conv_bn(x, filters), filters, relu=False)
            return L.Activation("relu")(L.Add()([x, y]))

        inp = k.Input((32, 32, 3))
        x = block(block(conv_bn(inp, 32), 32), 32)
        x = block(conv_bn(x, 64, strides=2), 64)
        m = k.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
        m.compile(k.optimizers.Adam(1e-3),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m
    import torch
    from torch import nn

    def conv_bn(cin, cout, stride=1, relu=True):
        mods = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]  # Keras's defaults
        return nn.Sequential(*mods, *([nn.ReLU()] if relu else []))

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c, relu=False))

        def forward(self, x):
            return torch.relu(x + self.body(x))

    class NHWC(nn.Module):  # (n, 32, 32, 3) arrays in, channels_last memory inside
        def forward(self, x):
            return x.permute(0, 3, 1, 2)

    torch.manual_seed(0)
    m = nn.Sequential(NHWC(), conv_bn(3, 32), Block(32), Block(32), conv_bn(32, 64, 2),
                      Block(64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    return m.to(memory_format=torch.channels_last)


def build(fw):
    if fw == "ember":
        import ember
        from ember import layers
        ember.set_random_seed(0)
        m = ember.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(256, activation="relu"),
                              layers.Dense(10, activation="softmax")])
        m.compile(ember.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        return m
    if fw == "keras-jax":
        import keras
        from keras import layers
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((784,)), layers.Dense(512, activation="relu"),
                              layers.Dropout(0.2), layers.Dense(256, activation="relu"),
                              layers.Dense(10, activation="softmax")])
        m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        return m
    import torch
    from torch import nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 256),
                         nn.ReLU(), nn.Linear(256, 10))


def build_custom(fw):
    """The MLP workload with its Dense layers written as a custom layer (the Keras guide's
    Linear: matmul, bias add, activation, in the framework's ops)."""
    if fw == "torch":
        import torch
        from torch import nn

        class Linear(nn.Module):
            def __init__(self, i, o, relu):
                super().__init__()
                self.w = nn.Parameter(torch.empty(i, o))
                self.b = nn.Parameter(torch.zeros(o))
                nn.init.xavier_uniform_(self.w)
                self.relu = relu

            def forward(self, x):
                y = torch.matmul(x, self.w) + self.b
                return torch.relu(y) if self.relu else y
        torch.manual_seed(0)
        return nn.Sequential(Linear(784, 512, True), nn.Dropout(0.2), Linear(512, 256, True),
                             Linear(256, 10, False))
    if fw == "ember":
        import ember as K
        from ember import layers, ops
    else:
        import keras as K
        from keras import layers, ops

    class Linear(layers.Layer):
        def __init__(self, units, relu, **kw):
            super().__init__(**kw)
            self.units, self.relu = units, relu

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                     initializer="glorot_uniform")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, x):
            y = ops.matmul(x, self.w) + self.b
            return ops.relu(y) if self.relu else ops.softmax(y)
    (K.utils.set_random_seed if fw != "ember" else K.set_random_seed)(0)
    m = K.Sequential([K.Input((784,)), Linear(512, True), layers.Dropout(0.2),
                      Linear(256, True), Linear(10, False)])
    m.compile(K.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return m


def torch_epoch(model, opt, x, y, bs):
    import torch
    model.train()
    lossf = getattr(model, "lossf", None) or torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(x))
    total = 0.0
    for s in range(0, len(x), bs):
        idx = perm[s:s + bs]
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(x)


def train_rate(fw, m, x, y, bs, warm):
    """(samples/s over one epoch after a warm-up of `warm` batches, final loss)."""
    if fw == "torch":
        import torch
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        torch_epoch(m, opt, xt[:bs * warm], yt[:bs * warm], bs)  # warm-up
        t = time.perf_counter()
        loss = torch_epoch(m, opt, xt, yt, bs)
        sec = time.perf_counter() - t
    else:
        m.fit(x[:bs * warm], y[:bs * warm], batch_size=bs, epochs=1, verbose=0)  # warm-up
        t = time.perf_counter()
        h = m.fit(x, y, batch_size=bs, epochs=1, verbose=0)
        sec = time.perf_counter() - t
        loss = h.history["loss"][-1]
    return len(x) / sec, loss


def work_mlp(fw):
    x, y = data(60000)
    rate, loss = train_rate(fw, build(fw), x, y, 128, 20)
    return {"mlp train samples/s": rate, "mlp final loss": loss,
            "mlp peak RSS MB": peak_rss_mb()}


def work_custom(fw):
    x, y = data(60000)
    rate, loss = train_rate(fw, build_custom(fw), x, y, 128, 20)
    return {"custom-layer mlp train samples/s": rate, "custom-layer mlp final loss": loss}


def work_resnet(fw):
    return image_workload(fw, "resnet", build_resnet(fw), 2560, warm=5, predict_batch=256)


def predict_rates(fw, m, x1, xb, prefix):
    """Batch-1 latency (µs) and batch-len(xb) throughput of inference."""
    out = {}
    if fw == "torch":
        import torch
        m.eval()
        t1, tb = torch.from_numpy(x1), torch.from_numpy(xb)
        with torch.inference_mode():
            out[f"{prefix} batch-1 latency us (predict)"] = median_time(lambda: m(t1), 200) * 1e6
            out[f"{prefix} batch-{len(xb)} samples/s (predict)"] = len(xb) / median_time(
                lambda: m(tb), 10)
    else:
        out[f"{prefix} batch-1 latency us (predict)"] = median_time(
            lambda: m.predict(x1, verbose=0), 200) * 1e6
        out[f"{prefix} batch-1 latency us (predict_on_batch)"] = median_time(
            lambda: m.predict_on_batch(x1), 200) * 1e6
        out[f"{prefix} batch-{len(xb)} samples/s (predict)"] = len(xb) / median_time(
            lambda: m.predict(xb, batch_size=len(xb), verbose=0), 10)
    return out


def image_workload(fw, name, m, samples, warm, predict_batch):
    """Training on CIFAR-shaped images at batch 64, then inference at batch 1 and
    predict_batch, and the peak RSS."""
    import numpy as np
    r = np.random.default_rng(0)
    x = r.random((samples, 32, 32, 3), dtype=np.float32)
    y = r.integers(0, 10, len(x)).astype(np.int64)
    rate, loss = train_rate(fw, m, x, y, 64, warm)
    out = {f"{name} train samples/s": rate, f"{name} final loss": loss}
    out.update(predict_rates(fw, m, x[:1].copy(), x[:predict_batch], name))
    out[f"{name} peak RSS MB"] = peak_rss_mb()
    return out


def work_cnn(fw):
    return image_workload(fw, "cnn", build_cnn(fw), 5120, warm=10, predict_batch=1024)


def build_text(fw):
    """The text-classification workload: embedding, global max pooling, two Dense."""
    if fw in ("ember", "keras-jax"):
        k = keras_api(fw)
        L = k.layers
        m = k.Sequential([k.Input((200,)), L.Embedding(20000, 128), L.GlobalMaxPooling1D(),
                          L.Dense(64, activation="relu"), L.Dense(4, activation="softmax")])
        m.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        return m
    import torch
    from torch import nn

    class MaxOverSteps(nn.Module):
        def forward(self, x):
            return x.max(dim=1).values

    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(20000, 128), MaxOverSteps(), nn.Linear(128, 64),
                         nn.ReLU(), nn.Linear(64, 4))


def work_text(fw):
    import numpy as np
    r = np.random.default_rng(0)
    x = r.integers(1, 20000, (25000, 200)).astype(np.int64)
    y = r.integers(0, 4, len(x)).astype(np.int64)
    rate, loss = train_rate(fw, build_text(fw), x, y, 128, 10)
    return {"text train samples/s": rate, "text final loss": loss,
            "text peak RSS MB": peak_rss_mb()}


def build_lstm(fw):
    """The sentiment workload: embedding, LSTM(128), one sigmoid unit."""
    if fw in ("ember", "keras-jax"):
        k = keras_api(fw)
        L = k.layers
        m = k.Sequential([k.Input((200,)), L.Embedding(20000, 128), L.LSTM(128),
                          L.Dense(1, activation="sigmoid")])
        m.compile(k.optimizers.Adam(1e-3), "binary_crossentropy")
        return m
    import torch
    from torch import nn

    class Sentiment(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20000, 128)
            self.lstm = nn.LSTM(128, 128, batch_first=True)
            self.out = nn.Linear(128, 1)
            self.lossf = nn.BCEWithLogitsLoss()

        def forward(self, x):
            return self.out(self.lstm(self.emb(x))[1][0][0])

    torch.manual_seed(0)
    return Sentiment()


def work_lstm(fw):
    import numpy as np
    r = np.random.default_rng(0)
    x = r.integers(1, 20000, (2560, 200)).astype(np.int64)
    y = r.integers(0, 2, (len(x), 1)).astype(np.float32)
    m = build_lstm(fw)
    rate, loss = train_rate(fw, m, x, y, 128, 2)
    out = {"lstm train samples/s": rate, "lstm final loss": loss}
    out.update({k: v for k, v in predict_rates(fw, m, x[:1].copy(), x[:32], "lstm").items()
                if "batch-1 " in k})
    out["lstm peak RSS MB"] = peak_rss_mb()
    return out


def build_autoencoder(fw):
    """The Keras blog's simple autoencoder: 784 -> 32 (relu) -> 784 (sigmoid)."""
    if fw in ("ember", "keras-jax"):
        k = keras_api(fw)
        L = k.layers
        m = k.Sequential([k.Input((784,)), L.Dense(32, activation="relu"),
                          L.Dense(784, activation="sigmoid")])
        m.compile(k.optimizers.Adam(1e-3), "binary_crossentropy")
        return m
    import torch
    from torch import nn

    class Autoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 784))
            self.lossf = nn.BCEWithLogitsLoss()  # the sigmoid and the crossentropy in one

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    return Autoencoder()


def work_autoencoder(fw):
    x, _ = data(30000)
    rate, loss = train_rate(fw, build_autoencoder(fw), x, x, 256, 10)
    return {"autoencoder train samples/s": rate, "autoencoder final loss": loss}


def median_time(f, n, warm_s=0.5):
    """Median seconds of n calls of f, after calling it for warm_s seconds: steady-state
    latency (on this machine a core takes a few hundred calls to reach full speed)."""
    end = time.perf_counter() + warm_s
    while time.perf_counter() < end:
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def work_infer(fw):
    x, _ = data(1024, seed=1)
    out = predict_rates(fw, build(fw), x[:1].copy(), x, "mlp")
    out["infer peak RSS MB"] = peak_rss_mb()
    return out


def work_import(fw):
    t = time.perf_counter()
    __import__(MODULES[fw])
    return {"import s": time.perf_counter() - t}


def worker(fw, workload, threads):
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
    if fw == "torch" and workload != "import":
        import torch
        torch.set_num_threads(threads)
    result = {"import": work_import, "mlp": work_mlp, "infer": work_infer,
              "cnn": work_cnn, "resnet": work_resnet, "text": work_text,
              "lstm": work_lstm, "custom": work_custom,
              "autoencoder": work_autoencoder}[workload](fw)
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- driver side
BASELINE = "ember@baseline"


def run_one(fw, workload, threads, baseline=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    if fw == BASELINE:  # the other build first on the path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (baseline, env.get("PYTHONPATH")) if p)
        fw = "ember"
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", fw, workload,
                           "--threads", str(threads)], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{fw} {workload} failed:\n{proc.stderr[-2000:]}")


def versions(fws):
    out = {"python": platform.python_version()}
    for fw in fws:
        if fw == BASELINE:
            continue
        code = (f"import {MODULES[fw]} as m; print(m.__version__)" if fw != "keras-jax" else
                "import keras, jax; print(keras.__version__ + ' / jax ' + jax.__version__)")
        out[fw] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=dict(os.environ, KERAS_BACKEND="jax")).stdout.strip()
    return out


LOWER_IS_BETTER = ("latency", "import", "RSS", "loss")


def table(results, fws):
    metrics = []
    for fw in fws:
        for k in results[fw]:
            if k not in metrics:
                metrics.append(k)
    base = BASELINE in fws
    head = "| metric | " + " | ".join(fws) + " | ember vs torch | ember vs best other |" + (
        " ember vs baseline |" if base else "")
    lines = [head, "|" + "---|" * (len(fws) + 3 + base)]
    for k in metrics:
        cells, med = [], {}
        for fw in fws:
            vals = results[fw].get(k)
            if not vals:
                cells.append("-")
                continue
            med[fw] = statistics.median(vals)
            fmt = (lambda v: f"{v:,.0f}") if med[fw] >= 100 else (lambda v: f"{v:.3g}")
            cells.append(f"{fmt(med[fw])} [{fmt(min(vals))}, {fmt(max(vals))}]")
        lower = any(w in k for w in LOWER_IS_BETTER)

        def ratio(other):
            # > 1 means ember is better (faster, or smaller for memory and import time).
            if "ember" not in med or other not in med or "loss" in k:
                return "-"
            r = med[other] / med["ember"] if lower else med["ember"] / med[other]
            return f"{r:.2f}x" + ("" if r >= 1 else " (behind)")

        others = [fw for fw in med if fw not in ("ember", BASELINE)]
        best = (min if lower else max)(others, key=lambda f: med[f]) if others else None
        cells += [ratio("torch"), f"{ratio(best)} ({best})" if best else "-"]
        if base:
            cells.append(ratio(BASELINE))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    p.add_argument("--workloads", nargs="+",
                   default=["mlp", "infer", "cnn", "resnet", "text", "lstm", "import"],
                   choices=["mlp", "infer", "cnn", "resnet", "text", "lstm", "custom",
                            "autoencoder", "import"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", metavar="DIR",
                   help="another ember build (pip install --target DIR) to compare with")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.threads)

    fws = [fw for fw in args.frameworks if available(fw)]
    for fw in args.frameworks:
        if fw not in fws:
            print(f"skipped: {fw} (not installed; see benchmarks/README.md)")
    if args.baseline:
        if not os.path.isdir(os.path.join(args.baseline, "ember")):
            sys.exit(f"--baseline {args.baseline}: no ember package there")
        fws.insert(fws.index("ember") + 1 if "ember" in fws else 0, BASELINE)
    results = {fw: {} for fw in fws}
    for workload in args.workloads:
        reps = max(args.repeats, 5) if workload == "import" else args.repeats
        for _ in range(reps):
            for fw in fws:  # alternate frameworks within each repeat
                for k, v in run_one(fw, workload, args.threads, args.baseline).items():
                    results[fw].setdefault(k, []).append(v)
    info = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "threads": args.threads,
            "versions": versions(fws), "date": time.strftime("%Y-%m-%d")}
    if "ember" in fws:
        info["ember_kernel"] = ember_kernel()
    if "torch" in fws:
        info["torch_isa"] = torch_isa()
    print(f"\n{info['date']} | CPU: {info['cpu']} ({info['cpu_flags']}) | threads: "
          f"{args.threads} | " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("kernels: " + "; ".join(
        f"{k} {info[key]}" for k, key in (("ember GEMM", "ember_kernel"), ("PyTorch", "torch_isa"))
        if key in info))
    print(f"medians of {args.repeats} fresh processes (import: {max(args.repeats, 5)}), [min, max]\n")
    print(table(results, fws))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
