"""ember on a real machine: checkpoints that load whatever way the model was built,
allocation failures that leave the model working, fork, threads, thread counts, kills
during a save, hostile files, and the exceptions bad input gets."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pytest

import ember
from ember import callbacks, layers

rng = np.random.default_rng(0)
X = rng.normal(size=(48, 20)).astype(np.float32)
Y = rng.integers(0, 3, 48)


def run_python(code, timeout=120):
    """Runs code in a fresh interpreter; returns (returncode, output)."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


# -- 1. every construction style saves and loads ---------------------------------------

def head():
    return [layers.Dense(3, activation="softmax")]


def build_styles():
    yield "Input first", lambda: ember.Sequential([layers.Input((20,)),
                                                   layers.Dense(8, activation="relu")] + head())
    yield "input_shape=", lambda: ember.Sequential([layers.Dense(8, activation="relu",
                                                                 input_shape=(20,))] + head())
    yield "input_dim=", lambda: ember.Sequential([layers.Dense(8, activation="relu",
                                                               input_dim=20)] + head())

    def built():
        m = ember.Sequential([layers.Dense(8, activation="relu")] + head())
        m.build((None, 20))
        return m
    yield "build()", built

    def added():
        m = ember.Sequential()
        m.add(layers.Dense(8, activation="relu", input_shape=(20,)))
        for layer in head():
            m.add(layer)
        return m
    yield ".add()", added
    for first in ("fit", "predict", "train_on_batch"):
        yield f"lazy ({first})", (lambda first=first: ("lazy", first, ember.Sequential(
            [layers.Dense(8, activation="relu")] + head())))


@pytest.mark.parametrize("style,make", list(build_styles()), ids=[s for s, _ in build_styles()])
def test_save_and_load_for_every_construction_style(style, make, tmp_path):
    made = make()
    first = None
    if isinstance(made, tuple):
        _, first, made = made
    m = made
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    if first == "predict":
        m.predict(X, verbose=0)
    elif first == "train_on_batch":
        m.train_on_batch(X, Y)
    m.fit(X, Y, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    m.save(path)
    back = ember.models.load_model(path)
    np.testing.assert_array_equal(back.predict(X, verbose=0), m.predict(X, verbose=0))
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert back.optimizer.get_config()["name"] == "adam"
    # The loaded model trains on.
    back.fit(X, Y, epochs=1, verbose=0)
    # And its weights file loads into a twin built the same way.
    m.save_weights(tmp_path / "w.weights.h5")
    twin = made if first else make()
    if isinstance(twin, tuple):
        twin = twin[2]
        twin.build((None, 20))
    twin.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(twin.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_best_only_then_load_model(tmp_path):
    """The seeds' scenario: a tutorial-style model, the best epoch kept, loaded back."""
    ember.set_random_seed(2)
    m = ember.Sequential([layers.Dense(16, activation="relu", input_shape=(20,)),
                          layers.Dropout(0.2), layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "best.keras"

    class Keep(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.at = {}

        def on_epoch_end(self, epoch, logs=None):
            self.at[epoch] = self.model.get_weights()
    keep = Keep()
    ck = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    h = m.fit(X, Y, epochs=6, validation_split=0.25, callbacks=[ck, keep], verbose=0)
    best = int(np.argmin(h.history["val_loss"]))
    back = ember.models.load_model(path)
    for a, b in zip(back.get_weights(), keep.at[best]):
        np.testing.assert_array_equal(a, b)


def test_cnn_and_text_models_built_with_input_shape_load(tmp_path):
    cnn = ember.Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                            layers.MaxPooling2D(), layers.Flatten(), layers.Dense(2)])
    text = ember.Sequential([layers.Embedding(50, 8), layers.GlobalMaxPooling1D(),
                             layers.Dense(2)])
    xs = [rng.random((5, 8, 8, 1)).astype(np.float32), rng.integers(0, 50, (5, 7))]
    for m, x in zip((cnn, text), xs):
        m.compile("adam", "mse")
        m.fit(x, rng.random((5, 2)), verbose=0)
        m.save(tmp_path / "m.keras")
        back = ember.models.load_model(tmp_path / "m.keras")
        np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


# -- 2. a failed allocation leaves the model as it was ----------------------------------

MEMORY_SCRIPT = """
import resource, sys
import numpy as np
import ember
from ember import layers

def models():
    ember.set_random_seed(0)
    yield "mlp", ember.Sequential([layers.Input((32,)), layers.Dense(1024, activation="relu"),
        layers.Dropout(0.2), layers.Dense(1024, activation="relu"),
        layers.Dense(3, activation="softmax")]), np.random.default_rng(1).normal(size=(20000, 32))
    ember.set_random_seed(0)
    yield "cnn", ember.Sequential([layers.Input((16, 16, 1)),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(3, activation="softmax")]), \\
        np.random.default_rng(1).random((20000, 16, 16, 1))
    ember.set_random_seed(0)
    yield "text", ember.Sequential([layers.Input((200,)), layers.Embedding(1000, 128),
        layers.Dropout(0.1), layers.GlobalAveragePooling1D(),
        layers.Dense(3, activation="softmax")]), \\
        np.random.default_rng(1).integers(0, 1000, (20000, 200))

def run(fail):
    out = {}
    for name, m, x in models():
        x = x.astype(np.float32) if x.dtype != np.int64 else x
        y = np.random.default_rng(2).integers(0, 3, len(x))
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x[:64], y[:64], batch_size=32, shuffle=False, verbose=0)
        if fail:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/status") as f:
                vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize")][0]
            resource.setrlimit(resource.RLIMIT_AS, (vm + (400 << 20), hard))
            for i, call in enumerate((lambda: m.fit(x, y, batch_size=len(x), verbose=0),
                                      lambda: m.train_on_batch(x, y))):
                try:
                    call()
                    print(name, "no MemoryError from call", i)
                    sys.exit(2)
                except MemoryError:
                    pass
            # Inference runs large batches in chunks: it fits under the cap.
            m.predict(x[:4096], batch_size=4096, verbose=0)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        m.fit(x[64:192], y[64:192], batch_size=32, shuffle=False, verbose=0)
        if not fail:
            m.predict(x[:4096], batch_size=4096, verbose=0)
        out[name] = [w for w in m.get_weights()] + [m.predict(x[:50], verbose=0)]
    return out

a, b = run(True), run(False)
for name in a:
    for u, v in zip(a[name], b[name]):
        if not np.array_equal(u, v):
            print(name, "differs after the MemoryError")
            sys.exit(3)
print("ok")
"""


def test_memory_error_leaves_every_workload_working():
    """Under an address-space cap, a training batch too large raises MemoryError (fit,
    train_on_batch); the model then trains and predicts exactly as if it never had."""
    rc, out = run_python(MEMORY_SCRIPT, timeout=300)
    assert rc == 0 and out.strip().endswith("ok"), out[-3000:]


# -- 3. fork ---------------------------------------------------------------------------

FORK_SCRIPT = """
import multiprocessing as mp, os, sys
import numpy as np
import ember
from ember import layers

ember.set_random_seed(0)
MODEL = ember.Sequential([layers.Input((64,)), layers.Dense(256, activation="relu"),
                          layers.Dense(10, activation="softmax")])
MODEL.compile("adam", "sparse_categorical_crossentropy")
X = np.random.default_rng(0).random((2048, 64)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 10, 2048)
MODEL.fit(X, Y, batch_size=256, verbose=0)  # the parent's OpenMP threads exist now

def predict(chunk):
    return MODEL.predict(chunk, verbose=0)

def train(seed):
    ember.set_random_seed(seed)
    m = ember.Sequential([layers.Input((64,)), layers.Dense(32, activation="relu"),
                          layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    h = m.fit(X, Y, batch_size=256, epochs=3, verbose=0)
    return h.history["loss"], [w for w in m.get_weights()]

if __name__ == "__main__":
    ref = MODEL.predict(X, verbose=0)
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        parts = pool.map(predict, np.array_split(X, 4))
        trained = pool.map(train, [5, 6])
    assert np.array_equal(np.concatenate(parts), ref), "pool predictions differ"
    for seed, (loss, weights) in zip([5, 6], trained):
        here_loss, here_weights = train(seed)
        assert loss == here_loss, (loss, here_loss)
        assert all(np.array_equal(a, b) for a, b in zip(weights, here_weights))
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(MODEL.predict(X, verbose=0), ref)
        MODEL.fit(X, Y, batch_size=256, verbose=0)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    print("ok")
"""


def test_forked_children_predict_and_train(tmp_path):
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# -- 4. threads --------------------------------------------------------------------------

def test_first_calls_racing_on_a_lazy_model_build_it_once():
    x = rng.random((64, 10)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    for trial in range(30):
        m = ember.Sequential([layers.Dense(8, activation="relu"),
                              layers.Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        barrier = threading.Barrier(3)
        errors = []

        def call(kind):
            barrier.wait()
            try:
                if kind == "fit":
                    m.fit(x, y, verbose=0)
                else:
                    m.predict(x, verbose=0)
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=call, args=(k,)) for k in ("fit", "predict", "fit")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert [w.shape for w in m.get_weights()] == [(10, 8), (8,), (8, 3), (3,)]
        m.fit(x, y, verbose=0)


def test_compile_or_add_during_fit_in_another_thread_is_refused():
    x = rng.random((4096, 32)).astype(np.float32)
    y = rng.integers(0, 3, 4096)
    m = ember.Sequential([layers.Input((32,)), layers.Dense(64, activation="relu"),
                          layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    started = threading.Event()

    class Signal(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            started.set()
            time.sleep(0.002)
    errors = []

    def fit():
        try:
            m.fit(x, y, batch_size=64, epochs=2, callbacks=[Signal()], verbose=0)
        except Exception as e:  # reported below
            errors.append(e)
    t = threading.Thread(target=fit)
    t.start()
    assert started.wait(30)
    with pytest.raises(RuntimeError, match="another thread"):
        m.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(RuntimeError, match="another thread"):
        m.add(layers.Dense(2))
    with pytest.raises(RuntimeError, match="another thread"):
        m.pop()
    t.join()
    assert not errors, errors
    assert len(m.layers) == 2 and m.optimizer.get_config()["name"] == "adam"
    m.compile("sgd", "sparse_categorical_crossentropy")  # fine once fit returned
    m.fit(x[:64], y[:64], verbose=0)


# -- 5. thread counts ------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, 10**5, 10**6, 3000, 2**31, 1.5, True, "2", None])
def test_set_num_threads_rejects_what_openmp_cannot_take(n):
    before = ember.config.get_num_threads()
    with pytest.raises(ValueError, match=r"integer in \[1, 1024\]"):
        ember.config.set_num_threads(n)
    assert ember.config.get_num_threads() == before


def test_set_num_threads_accepts_numpy_integers():
    before = ember.config.get_num_threads()
    ember.config.set_num_threads(np.int64(1))
    assert ember.config.get_num_threads() == 1
    ember.config.set_num_threads(before)


# -- 6. a killed save leaves nothing behind ----------------------------------------------

KILL_SCRIPT = """
import sys, numpy as np, ember
from ember import layers
m = ember.Sequential([layers.Input((512,)), layers.Dense(2048), layers.Dense(2048)])
m.save(sys.argv[1])
print("ready", flush=True)
while True:
    m.save(sys.argv[1])
    m.save_weights(sys.argv[2])
"""


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(KILL_SCRIPT)
    target, weights = tmp_path / "m.keras", tmp_path / "w.weights.h5"
    debris = []
    for attempt in range(20):
        p = subprocess.Popen([sys.executable, str(script), str(target), str(weights)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.05 * attempt)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        debris = [f for f in os.listdir(tmp_path) if f.endswith(".ember-tmp")]
        if debris:
            break
    assert debris, "no kill landed inside a save"
    assert all(f.startswith((".m.keras.", ".w.weights.h5.")) for f in debris)
    # The survivor is a good file, and the next save removes the dead writer's debris.
    good = ember.models.load_model(target)
    good.save(tmp_path / "other.keras")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".ember-tmp")]


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    live = tmp_path / f".m.keras.{os.getppid()}.abc123.ember-tmp"
    live.write_bytes(b"being written")
    ember.Sequential([layers.Input((2,)), layers.Dense(1)]).save(tmp_path / "x.keras")
    assert live.exists()


# -- 7. hostile files ----------------------------------------------------------------------

def archive_with(tmp_path, entries):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def small_model_entries(tmp_path):
    m = ember.Sequential([layers.Input((4,)), layers.Dense(3)])
    m.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as z:
        return {n: z.read(n) for n in z.namelist()}


def test_zip_bomb_is_refused_before_it_expands(tmp_path):
    import resource
    entries = small_model_entries(tmp_path)
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("metadata.json", "config.json"):
            z.writestr(name, entries[name])
        with z.open("model.weights.h5", "w", force_zip64=True) as f:  # 200 MB, streamed
            chunk = bytes(1 << 20)
            for _ in range(200):
                f.write(chunk)
    assert path.stat().st_size < 1 << 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="model.weights.h5.*expands to"):
        ember.models.load_model(path)
    with pytest.raises(ValueError, match="expands to"):
        ember.Sequential([layers.Input((4,)), layers.Dense(3)]).load_weights(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50 << 10  # KB
    path = archive_with(tmp_path, dict(entries, **{"config.json": b" " * (70 << 20)}))
    with pytest.raises(ValueError, match="config.json.*expands to"):
        ember.models.load_model(path)


def test_interim_npz_that_claims_too_much_is_refused(tmp_path):
    entries = small_model_entries(tmp_path)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("arr_0000.npy", b"\0" * (50 << 20))
    path = archive_with(tmp_path, {"metadata.json": b'{"format": "ember-0"}',
                                   "config.json": entries["config.json"],
                                   "weights.npz": inner.getvalue()})
    with pytest.warns(UserWarning, match="interim format"), \
            pytest.raises(ValueError, match="claim"):
        ember.models.load_model(path)


@pytest.mark.parametrize("config", [
    b"[]", b'"text"', b'{"class_name": "Sequential", "config": []}',
    b'{"class_name": "Sequential", "config": {"layers": [1]}}',
    b'{"class_name": "Sequential", "config": {"layers": {"a": 1}}}',
    b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", '
    b'"config": []}]}}',
    b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", '
    b'"config": {"units": {"a": 1}}}]}}',
    b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Nope", '
    b'"config": {}}]}}',
    b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", '
    b'"config": {"units": 3, "activation": [1]}}]}}',
    b"[" * 100000 + b"]" * 100000,
], ids=lambda c: c[:40].decode())
def test_malformed_config_raises_value_error(tmp_path, config):
    entries = small_model_entries(tmp_path)
    path = archive_with(tmp_path, dict(entries, **{"config.json": config}))
    with pytest.raises(ValueError, match="bad.keras"):
        ember.models.load_model(path)


# -- 8. the exceptions bad input gets ----------------------------------------------------------

def binary_model():
    m = ember.Sequential([layers.Input((4,)), layers.Dense(1, activation="sigmoid")])
    m.compile("adam", "binary_crossentropy")
    return m


def test_class_weight_with_targets_outside_its_classes():
    x = rng.random((6, 4)).astype(np.float32)
    for y in ([0, 1, 5, 1, 0, 1], [0, 1, -1, 1, 0, 1]):
        with pytest.raises(ValueError, match=r"class_weight needs targets.*Received a target "
                                             r"of -?\d"):
            binary_model().fit(x, np.array(y, np.float32), class_weight={0: 1.0, 1: 2.0},
                               verbose=0)


def test_huge_batch_size_is_all_at_once():
    m = binary_model()
    x = rng.random((6, 4)).astype(np.float32)
    ref = m.predict(x, verbose=0)
    for verbose in (0, 1):
        np.testing.assert_array_equal(m.predict(x, batch_size=2**63, verbose=verbose), ref)
    m.fit(x, np.ones(6), batch_size=2**70, verbose=0)
    m.evaluate(x, np.ones(6), batch_size=2**64, verbose=0)


def test_complex_inputs_raise_value_error():
    e = ember.Sequential([layers.Input((3,)), layers.Embedding(10, 2),
                          layers.GlobalMaxPooling1D()])
    with pytest.raises(ValueError, match="real numbers.*complex"):
        e.predict(np.array([[1 + 1j, 2, 3]]), verbose=0)
    with pytest.raises(ValueError, match="real numbers"):
        binary_model().predict(np.ones((2, 4), np.complex64), verbose=0)


def test_input_too_large_per_sample_raises():
    with pytest.raises(ValueError, match="2\\^40"):
        ember.Sequential([layers.Input((2**32, 2**32)), layers.Flatten(), layers.Dense(3)])


def test_fit_accepts_one_callback_as_keras_does():
    seen = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))
    binary_model().fit(rng.random((6, 4)), np.ones(6), epochs=2, callbacks=cb, verbose=0)
    assert seen == [0, 1]
    with pytest.raises(ValueError, match="Callback"):
        binary_model().fit(rng.random((6, 4)), np.ones(6), callbacks=[print], verbose=0)


# -- a busy or constrained machine ------------------------------------------------------

def test_cgroup_cpu_quota_is_read(tmp_path):
    from ember import _threads
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _threads.cgroup_cpu_limit(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _threads.cgroup_cpu_limit(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _threads.cgroup_cpu_limit(str(tmp_path)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _threads.cgroup_cpu_limit(str(tmp_path)) is None
    assert _threads.cgroup_cpu_limit(str(tmp_path / "nothing")) is None


def test_default_threads_follow_affinity_and_the_environment():
    code = """
        import os
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import ember
        print(ember.config.get_num_threads(), os.environ.get("GOMP_SPINCOUNT"))
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.stdout.split() == ["1", "2000"], r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=dict(env, OMP_NUM_THREADS="3", OMP_WAIT_POLICY="active"),
                       timeout=60)
    assert r.stdout.split() == ["3", "None"], r.stdout + r.stderr
