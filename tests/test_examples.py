"""End to end: the shipped examples reach their stated accuracy with a fixed seed."""
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_digits_mlp_reaches_095():
    out = run_example("quickstart.py", "--dataset", "digits", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.95, out


def test_digits_cnn_reaches_097():
    out = run_example("digits_cnn.py", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.97, out


def test_text_classification_reaches_090():
    out = run_example("text_classification.py", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.9, out
    assert "samples/s" in out


def test_sentiment_lstm_reaches_095():
    out = run_example("sentiment_lstm.py", "--data", "generated", "--verbose", "0")
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.95, out
    assert "samples/s" in out


def test_quickstart_trains_on_mnist_when_the_file_is_cached(tmp_path, monkeypatch, capsys):
    """With mnist.npz in the Keras cache the quickstart takes it (a small file in the
    real format here; only the expected checksum is patched to the file's own)."""
    import hashlib
    import importlib.util

    import numpy as np

    import ember
    cache = tmp_path / "datasets"
    cache.mkdir()
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 256, (10, 28, 28))
    y = np.arange(700, dtype=np.uint8) % 10
    x = np.clip(centers[y] + rng.integers(-40, 40, (700, 28, 28)), 0, 255).astype(np.uint8)
    np.savez(cache / "mnist.npz", x_train=x[:600], y_train=y[:600], x_test=x[600:],
             y_test=y[600:])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(ember.datasets.mnist, "SHA256",
                        hashlib.sha256((cache / "mnist.npz").read_bytes()).hexdigest())
    spec = importlib.util.spec_from_file_location(
        "quickstart", os.path.join(ROOT, "examples", "quickstart.py"))
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    monkeypatch.setattr(sys, "argv", ["quickstart.py", "--epochs", "3", "--verbose", "0"])
    quickstart.main()
    out = capsys.readouterr().out
    assert "mnist: 600 training and 100 test samples" in out
    line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
    assert float(line.split()[2]) >= 0.9, out


def test_dcgan_samples_move_toward_the_data():
    out = run_example("dcgan.py", "--dataset", "digits", "--steps", "300")
    line = [l for l in out.splitlines() if "distance to the data" in l][0]
    before, after = (float(v) for v in line.split("data ")[1].split(" -> "))
    assert after < 0.5 * before, out


def test_seq2seq_reverses_new_strings():
    """Keras's seq2seq recipe: return_state, initial_state, a softmax per step, and the
    layers reused in step-by-step inference models on inputs of any length."""
    out = run_example("seq2seq_reverse.py", "--verbose", "0")
    line = [l for l in out.splitlines() if "reversed correctly" in l][0]
    assert float(line.split("correctly: ")[1].split()[0]) >= 0.85, out


def test_dcgan_train_step_samples_move_toward_the_data():
    out = run_example("dcgan_train_step.py", "--dataset", "digits", "--epochs", "15",
                      "--verbose", "0")
    line = [l for l in out.splitlines() if "distance to the data" in l][0]
    before, after = (float(v) for v in line.split("data ")[1].split(" -> "))
    assert after < 0.5 * before, out


def test_vae_train_step_reconstructs_held_out_digits():
    out = run_example("vae_train_step.py", "--dataset", "digits", "--epochs", "40")
    line = [l for l in out.splitlines() if "held-out reconstruction error" in l][0]
    error, baseline = float(line.split()[3]), float(line.split("image's ")[1].rstrip(")"))
    assert error < 0.7 * baseline, out


def test_dcgan_builds_the_28x28_mnist_models():
    import importlib.util

    import numpy as np

    import ember
    spec = importlib.util.spec_from_file_location("dcgan", os.path.join(ROOT, "examples",
                                                                         "dcgan.py"))
    dcgan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dcgan)
    generator, discriminator = dcgan.build(28, 16)
    assert generator.output_shape == (None, 28, 28, 1)
    discriminator.compile("adam", "binary_crossentropy")
    discriminator.trainable = False
    gan = ember.Sequential([generator, discriminator])
    gan.compile("adam", "binary_crossentropy")
    z = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    before = [w.copy() for w in generator.get_weights()]
    frozen = [w.copy() for w in discriminator.get_weights()]
    gan.train_on_batch(z, np.ones(8))
    assert any(not np.array_equal(p, q) for p, q in zip(before, generator.get_weights()))
    assert all(np.array_equal(p, q) for p, q in zip(frozen, discriminator.get_weights()))


def test_tabular_csv_reaches_080_with_pandas_and_numpy():
    for reader in ("pandas", "numpy"):
        out = run_example("tabular_csv.py", "--reader", reader, "--verbose", "0")
        line = [l for l in out.splitlines() if l.startswith("test accuracy")][0]
        assert float(line.split()[2]) >= 0.8, out
