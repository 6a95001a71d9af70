"""ember.datasets and ember.utils.get_file on files in the real formats, made here.

Every test runs in its own KERAS_HOME. Downloads come from a loopback HTTP server the
tests run (no outside network). Only the expected checksums are patched, to the
generated files' own; verification itself is never switched off.
"""
import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest

import ember
from oracles import keras_or_skip
from ember.datasets import (boston_housing, cifar10, cifar100, digits, fashion_mnist, imdb,
                            iris, mnist, reuters)
from ember.utils.file_utils import DownloadError, get_file


# ---------------------------------------------------------------- file makers

def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def mnist_arrays(n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    return dict(x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
                x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                y_test=rng.integers(0, 10, n_test, dtype=np.uint8))


def write_idx_gz(path, array):
    """IDX: 2 zero bytes, dtype code 0x08 (ubyte), rank, big-endian dims, then data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def cifar_pickle(data, labels, label_key):
    d = {b"batch_label": b"batch", label_key: labels, b"data": data,
         b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(d, protocol=2)


def write_cifar_tar(path, top, members):
    """A tar.gz holding top/<name> for each (name, bytes)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def cifar10_members(per_batch, seed=0):
    """Pixels encode (image index, channel) so the layout can be checked."""
    rng = np.random.default_rng(seed)
    out, images = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        out.append((name, cifar_pickle(data, labels, b"labels")))
        images.append((data, labels))
    return out, images


def write_word_npz(path, n, seed, keys=("x", "y"), vocab=50):
    rng = np.random.default_rng(seed)
    seqs = np.empty(n, dtype=object)
    for i in range(n):
        seqs[i] = rng.integers(1, vocab, rng.integers(1, 12)).tolist()
    labels = rng.integers(0, 2, n)
    np.savez(path, **{keys[0]: seqs, keys[1]: labels})
    return seqs, labels


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh KERAS_HOME; returns its datasets directory."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "datasets"


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}
    truncated = set()

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncated:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A loopback HTTP server: server.put(name, bytes) -> URL; server.truncate(name)
    makes it announce the full length and stop half way."""
    _Handler.files, _Handler.truncated = {}, set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"

    class Server:
        origin = base

        @staticmethod
        def put(name, body):
            _Handler.files["/" + name] = body
            return base + name

        @staticmethod
        def truncate(name):
            _Handler.truncated.add("/" + name)

    yield Server
    httpd.shutdown()
    httpd.server_close()


OFFLINE = "http://127.0.0.1:9/"  # the discard port: connection refused


def offline(monkeypatch, *modules):
    """Points the modules' download addresses at a port where nothing listens."""
    for module in modules:
        folder = module.ORIGIN.endswith("/")
        monkeypatch.setattr(module, "ORIGIN", OFFLINE if folder else OFFLINE + "archive.tar.gz")


# ---------------------------------------------------------------- get_file

def test_get_file_downloads_verifies_and_caches(home, server, capsys):
    body = os.urandom(100_000)
    url = server.put("blob.bin", body)
    digest = hashlib.sha256(body).hexdigest()
    path = get_file("blob.bin", origin=url, file_hash=digest)
    assert path == str(home / "blob.bin")
    assert open(path, "rb").read() == body
    assert "Downloading data from" in capsys.readouterr().out
    assert sorted(os.listdir(home)) == ["blob.bin"]
    # Second call: found in the cache, no download (the server no longer has it).
    _Handler.files.clear()
    assert get_file("blob.bin", origin=url, file_hash=digest) == path
    assert "Downloading" not in capsys.readouterr().out
    # md5 works too (32 digits -> md5 under 'auto'; md5_hash as in Keras).
    assert get_file("blob.bin", origin=url, file_hash=hashlib.md5(body).hexdigest()) == path
    assert get_file("blob.bin", origin=url, md5_hash=hashlib.md5(body).hexdigest()) == path


def test_get_file_name_from_origin_and_cache_dir(tmp_path, server):
    url = server.put("sub/data.txt", b"hello")
    path = get_file(origin=url, cache_dir=str(tmp_path / "c"), cache_subdir="here")
    assert path == str(tmp_path / "c" / "here" / "data.txt")


def test_cache_dir_that_cannot_be_created_falls_back_to_tmp(tmp_path):
    # As Keras: an unusable cache_dir (here a file stands where its parent should be)
    # sends the cache to /tmp/.keras instead of failing.
    from ember.utils.file_utils import cache_directory
    blocker = tmp_path / "not_a_dir"
    blocker.write_bytes(b"")
    sub = f"ember-test-{os.getpid()}"
    path = cache_directory(sub, str(blocker / "cache"))
    try:
        assert os.path.isdir(path) and path.endswith(os.path.join(".keras", sub))
        assert not str(path).startswith(str(blocker))
    finally:
        os.rmdir(path)


def test_get_file_rejects_bad_arguments(home):
    with pytest.raises(ValueError, match="origin"):
        get_file("x.bin")
    with pytest.raises(ValueError, match="Paths are not accepted"):
        get_file("a/b.bin", origin="http://127.0.0.1:9/b.bin")
    with pytest.raises(ValueError, match="hash_algorithm"):
        get_file("b.bin", origin="http://127.0.0.1:9/b.bin", hash_algorithm="sha1")


def test_wrong_checksum_of_a_download_leaves_no_file(home, server):
    url = server.put("blob.bin", b"x" * 5000)
    with pytest.raises(ValueError, match="sha256 .* expected 0{64}"):
        get_file("blob.bin", origin=url, file_hash="0" * 64)
    assert os.listdir(home) == []


def test_wrong_checksum_in_the_cache_is_deleted_and_fetched_again(home, server, capsys):
    body = b"the real file"
    url = server.put("blob.bin", body)
    home.mkdir(parents=True)
    (home / "blob.bin").write_bytes(b"a stale file")
    path = get_file("blob.bin", origin=url, file_hash=hashlib.sha256(body).hexdigest())
    assert open(path, "rb").read() == body
    assert "hash does not match" in capsys.readouterr().out


def test_wrong_checksum_in_the_cache_offline_raises_and_deletes(home, monkeypatch):
    offline(monkeypatch, mnist)
    home.mkdir(parents=True)
    (home / "mnist.npz").write_bytes(b"not the real mnist")
    with pytest.raises(DownloadError, match="put it at .*mnist.npz"):
        mnist.load_data()
    assert os.listdir(home) == []


def test_missing_file_offline_says_where_to_put_it(home, monkeypatch):
    offline(monkeypatch, mnist)
    with pytest.raises(OSError) as info:
        mnist.load_data()
    message = str(info.value)
    assert str(home / "mnist.npz") in message and mnist.SHA256 in message
    assert "Without network access" in message
    assert os.listdir(home) == []


def test_interrupted_download_leaves_nothing(home, server):
    body = os.urandom(300_000)
    url = server.put("big.bin", body)
    server.truncate("big.bin")
    with pytest.raises(DownloadError, match="big.bin"):
        get_file("big.bin", origin=url, file_hash=hashlib.sha256(body).hexdigest())
    assert os.listdir(home) == []


def test_http_error_is_reported(home, server):
    with pytest.raises(DownloadError, match="404"):
        get_file("nothing.bin", origin=server.origin + "nothing.bin")
    assert os.listdir(home) == []


def test_get_file_extracts_archives(home, server, tmp_path):
    tar_path = tmp_path / "a.tar.gz"
    write_cifar_tar(tar_path, "top", [("f.txt", b"inside")])
    url = server.put("a.tar.gz", tar_path.read_bytes())
    # fname without a dot names the extraction directory; the archive is fname_archive.
    out = get_file("thing", origin=url, extract=True)
    assert out == str(home / "thing")
    assert (home / "thing" / "top" / "f.txt").read_bytes() == b"inside"
    assert (home / "thing_archive").exists()
    # fname with a dot is the archive; the directory is <stem>_extracted.
    out = get_file("thing2.tar.gz", origin=url, untar=True)
    assert out == str(home / "thing2_extracted")
    assert (home / "thing2_extracted" / "top" / "f.txt").exists()
    # A zip archive.
    import zipfile
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("inner/g.txt", "zipped")
    url = server.put("z.zip", zpath.read_bytes())
    out = get_file("zz", origin=url, extract=True, archive_format="zip")
    assert (home / "zz" / "inner" / "g.txt").read_text() == "zipped"


def test_archive_escaping_its_directory_is_refused(home, server, tmp_path):
    tar_path = tmp_path / "evil.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    url = server.put("evil.tar.gz", tar_path.read_bytes())
    with pytest.raises(ValueError, match="outside"):
        get_file("evil", origin=url, extract=True)
    assert not (home / "escaped.txt").exists()
    assert not (home / "evil").exists()


# ---------------------------------------------------------------- image data sets

def test_mnist_from_the_cache(home, monkeypatch):
    home.mkdir(parents=True)
    arrays = mnist_arrays(50, 20)
    path = write_npz(home / "mnist.npz", **arrays)
    monkeypatch.setattr(mnist, "SHA256", sha256(path))
    offline(monkeypatch, mnist)  # found in the cache: the network is never asked
    (x, y), (xt, yt) = mnist.load_data()
    for got, key in ((x, "x_train"), (y, "y_train"), (xt, "x_test"), (yt, "y_test")):
        assert got.dtype == np.uint8 and np.array_equal(got, arrays[key])


def test_mnist_downloaded(home, server, tmp_path, monkeypatch):
    path = write_npz(tmp_path / "mnist.npz", **mnist_arrays(30, 10))
    server.put("mnist.npz", path.read_bytes())
    monkeypatch.setattr(mnist, "ORIGIN", server.origin)
    monkeypatch.setattr(mnist, "SHA256", sha256(path))
    (x, y), (xt, yt) = mnist.load_data()
    assert x.shape == (30, 28, 28) and xt.shape == (10, 28, 28)
    assert sorted(os.listdir(home)) == ["mnist.npz"]


def test_mnist_corrupt_file_is_a_value_error(home, monkeypatch):
    home.mkdir(parents=True)
    (home / "mnist.npz").write_bytes(b"PK\x03\x04 garbage")
    monkeypatch.setattr(mnist, "SHA256", sha256(home / "mnist.npz"))
    with pytest.raises(ValueError, match="mnist.npz"):
        mnist.load_data()


def test_fashion_mnist_idx_files(home, monkeypatch):
    rng = np.random.default_rng(1)
    d = home / "fashion-mnist"
    d.mkdir(parents=True)
    parts = {"train": (rng.integers(0, 256, (40, 28, 28)), rng.integers(0, 10, 40)),
             "t10k": (rng.integers(0, 256, (15, 28, 28)), rng.integers(0, 10, 15))}
    for prefix, (images, labels) in parts.items():
        write_idx_gz(d / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(d / f"{prefix}-labels-idx1-ubyte.gz", labels)
    offline(monkeypatch, fashion_mnist)
    (x, y), (xt, yt) = fashion_mnist.load_data()
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8 and y.shape == (40,)
    assert np.array_equal(x, parts["train"][0]) and np.array_equal(yt, parts["t10k"][1])


def _check_cifar10(result, images):
    (x, y), (xt, yt) = result
    n = len(images[0][1])
    assert x.shape == (5 * n, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (5 * n, 1) and y.dtype == np.uint8
    assert xt.shape == (n, 32, 32, 3) and yt.shape == (n, 1) and yt.dtype == np.uint8
    first = images[0][0][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(x[0], first)
    assert np.array_equal(y[n:2 * n, 0], images[1][1])
    assert np.array_equal(xt[-1], images[5][0][-1].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar10_downloaded_into_the_keras3_layout(home, server, tmp_path, monkeypatch):
    members, images = cifar10_members(4)
    monkeypatch.setattr(cifar10, "IMAGES", dict.fromkeys(cifar10.FILES, 4))
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tar(tar_path, "cifar-10-batches-py", members)
    monkeypatch.setattr(cifar10, "ORIGIN", server.put("cifar-10-python.tar.gz",
                                                      tar_path.read_bytes()))
    monkeypatch.setattr(cifar10, "SHA256", sha256(tar_path))
    _check_cifar10(cifar10.load_data(), images)
    assert (home / "cifar-10-batches-py-target_archive").is_file()
    assert (home / "cifar-10-batches-py-target" / "cifar-10-batches-py" / "test_batch").is_file()
    # Again, offline: the extracted files are reused.
    offline(monkeypatch, cifar10)
    _check_cifar10(cifar10.load_data(), images)


@pytest.mark.parametrize("layout", ["keras3_dir", "keras2_dir", "keras2_archive"])
def test_cifar10_both_cache_layouts(home, tmp_path, monkeypatch, layout):
    members, images = cifar10_members(3, seed=2)
    monkeypatch.setattr(cifar10, "IMAGES", dict.fromkeys(cifar10.FILES, 3))
    home.mkdir(parents=True)
    if layout == "keras2_archive":
        write_cifar_tar(home / "cifar-10-batches-py.tar.gz", "cifar-10-batches-py", members)
        monkeypatch.setattr(cifar10, "SHA256", sha256(home / "cifar-10-batches-py.tar.gz"))
    else:
        d = home / ("cifar-10-batches-py-target/cifar-10-batches-py" if layout == "keras3_dir"
                    else "cifar-10-batches-py")
        d.mkdir(parents=True)
        for name, payload in members:
            (d / name).write_bytes(payload)
    offline(monkeypatch, cifar10)
    _check_cifar10(cifar10.load_data(), images)


def test_a_fake_cifar10_directory_in_the_cache_is_not_used(home, monkeypatch):
    """Ten images per file where CIFAR-10 has 10,000: too small to be the real files, so
    ember goes for the archive (offline here) instead of loading the fake."""
    members, _ = cifar10_members(10)
    d = home / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, payload in members:
        (d / name).write_bytes(payload)
    offline(monkeypatch, cifar10)
    with pytest.raises(DownloadError):
        cifar10.load_data()
    # Files large enough but holding other counts: a ValueError naming the file.
    monkeypatch.setattr(cifar10, "IMAGES", dict.fromkeys(cifar10.FILES, 9))
    with pytest.raises(ValueError, match="data_batch_1 holds 10 images, not the 9"):
        cifar10.load_data()


def test_cifar_batch_with_int_labels_raises_value_error(tmp_path):
    from ember.datasets._cifar import load_batch
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": 7},
                                 protocol=2))
    with pytest.raises(ValueError, match="data_batch_1 is not a readable CIFAR batch file"):
        load_batch(str(bad))


def test_corrupt_fashion_mnist_gzip_names_the_file(tmp_path):
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b\x08 definitely not deflate data")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz is not a readable gzip"):
        fashion_mnist.read_idx(str(bad), 8)
    bad.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="not a readable gzip"):
        fashion_mnist.read_idx(str(bad), 8)


def test_cifar10_keras2_archive_with_a_wrong_checksum(home, monkeypatch):
    members, _ = cifar10_members(2)
    monkeypatch.setattr(cifar10, "IMAGES", dict.fromkeys(cifar10.FILES, 2))
    home.mkdir(parents=True)
    write_cifar_tar(home / "cifar-10-batches-py.tar.gz", "cifar-10-batches-py", members)
    offline(monkeypatch, cifar10)
    with pytest.raises(ValueError, match="sha256"):
        cifar10.load_data()


def test_cifar10_offline_error(home, monkeypatch):
    offline(monkeypatch, cifar10)
    with pytest.raises(DownloadError, match="cifar-10-batches-py-target_archive"):
        cifar10.load_data()


def test_cifar100_label_modes(home, monkeypatch):
    rng = np.random.default_rng(3)
    d = home / "cifar-100-python-target" / "cifar-100-python"
    d.mkdir(parents=True)
    fine = {}
    for name, n in (("train", 7), ("test", 4)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine[name] = rng.integers(0, 100, n).tolist()
        coarse = [f // 5 for f in fine[name]]
        payload = {b"data": data, b"fine_labels": fine[name], b"coarse_labels": coarse,
                   b"filenames": [b"x"] * n, b"batch_label": b"b"}
        (d / name).write_bytes(pickle.dumps(payload, protocol=2))
    monkeypatch.setattr(cifar100, "IMAGES", {"train": 7, "test": 4})
    offline(monkeypatch, cifar100)
    (x, y), (xt, yt) = cifar100.load_data()
    assert x.shape == (7, 32, 32, 3) and y.shape == (7, 1) and xt.shape == (4, 32, 32, 3)
    assert y.dtype == np.int64  # Keras reshapes the label list: int64, unlike cifar10
    assert y[:, 0].tolist() == fine["train"]
    (_, yc), _ = cifar100.load_data(label_mode="coarse")
    assert yc[:, 0].tolist() == [f // 5 for f in fine["train"]]
    with pytest.raises(ValueError, match="label_mode"):
        cifar100.load_data(label_mode="medium")


def test_cifar_pickle_that_runs_code_is_refused(home, monkeypatch):
    d = home / "cifar-100-python-target" / "cifar-100-python"
    d.mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    for name in ("train", "test"):
        (d / name).write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    monkeypatch.setattr(cifar100, "IMAGES", {"train": 0, "test": 0})
    offline(monkeypatch, cifar100)
    with pytest.raises(ValueError, match="Refusing"):
        cifar100.load_data()


def test_boston_housing_split(home, monkeypatch):
    home.mkdir(parents=True)
    x = np.arange(506 * 13, dtype=np.float64).reshape(506, 13)
    y = np.arange(506, dtype=np.float64)
    path = write_npz(home / "boston_housing.npz", x=x, y=y)
    monkeypatch.setattr(boston_housing, "SHA256", sha256(path))
    offline(monkeypatch, boston_housing)
    (xtr, ytr), (xte, yte) = boston_housing.load_data()
    assert xtr.shape == (404, 13) and xte.shape == (102, 13) and ytr.dtype == np.float64
    order = np.arange(506)
    np.random.RandomState(113).shuffle(order)
    assert np.array_equal(ytr, order[:404]) and np.array_equal(xte[:, 0], order[404:] * 13)
    with pytest.raises(ValueError, match="test_split"):
        boston_housing.load_data(test_split=1.0)


# ---------------------------------------------------------------- imdb and reuters

def _imdb_file(home, monkeypatch, x_train, y_train, x_test, y_test):
    home.mkdir(parents=True, exist_ok=True)
    obj = lambda seqs: np.array([list(s) for s in seqs] + [None], dtype=object)[:-1]  # noqa
    path = write_npz(home / "imdb.npz", x_train=obj(x_train), y_train=np.array(y_train),
                     x_test=obj(x_test), y_test=np.array(y_test))
    monkeypatch.setattr(imdb, "SHA256", sha256(path))
    offline(monkeypatch, imdb)
    return path


def test_imdb_index_arithmetic_by_hand(home, monkeypatch):
    # One review per split, so shuffling cannot reorder anything.
    _imdb_file(home, monkeypatch, [[1, 2, 3, 9]], [1], [[4, 5]], [0])
    # Defaults: start_char 1, index_from 3, oov 2; num_words None -> the largest id
    # (9 + 3 = 12) is itself out of range, as in Keras.
    (x, y), (xt, yt) = imdb.load_data()
    # (One review: np.array(..., dtype=object) makes that a (1, 5) array, as in Keras.)
    assert x.dtype == object and y.tolist() == [1]
    assert list(x[0]) == [1, 4, 5, 6, 2] and list(xt[0]) == [1, 7, 8]
    # num_words=7: ids >= 7 -> oov 2; skip_top=5: ids < 5 -> oov (start_char too).
    (x, _), (xt, _) = imdb.load_data(num_words=7, skip_top=5)
    assert list(x[0]) == [2, 2, 5, 6, 2] and list(xt[0]) == [2, 2, 2]
    # oov_char None drops the out-of-range ids instead.
    (x, _), _ = imdb.load_data(num_words=7, oov_char=None)
    assert list(x[0]) == [1, 4, 5, 6]
    # start_char None: only the shift; index_from 0 and start_char None: raw ids.
    (x, _), _ = imdb.load_data(start_char=None, num_words=100)
    assert list(x[0]) == [4, 5, 6, 12]
    (x, _), _ = imdb.load_data(start_char=None, index_from=0, num_words=100)
    assert list(x[0]) == [1, 2, 3, 9]
    # maxlen keeps sequences strictly shorter (after the start char is added).
    with pytest.raises(ValueError, match="maxlen=4"):
        imdb.load_data(maxlen=4)
    (x, _), (xt, _) = imdb.load_data(maxlen=6, num_words=100)
    assert list(x[0]) == [1, 4, 5, 6, 12] and list(xt[0]) == [1, 7, 8]


def test_imdb_maxlen_filters_and_shuffles(home, monkeypatch):
    x_train = [[1] * n for n in range(1, 9)]
    _imdb_file(home, monkeypatch, x_train, list(range(8)), [[2, 2], [3]], [0, 1])
    (x, y), (xt, yt) = imdb.load_data(maxlen=5, num_words=100)
    # Lengths after the start char are n + 1; kept when n + 1 < 5, i.e. n <= 3.
    assert sorted(y.tolist()) == [0, 1, 2] and all(len(s) == yy + 2 for s, yy in zip(x, y))
    rng = np.random.RandomState(113)
    order = np.arange(8)
    rng.shuffle(order)
    assert y.tolist() == [o for o in order.tolist() if o <= 2]


def test_imdb_and_reuters_word_index(home, monkeypatch):
    home.mkdir(parents=True)
    (home / "imdb_word_index.json").write_text('{"the": 1, "and": 2}')
    (home / "reuters_word_index.json").write_text('{"said": 1}')
    monkeypatch.setattr(imdb, "WORD_INDEX_MD5", md5(home / "imdb_word_index.json"))
    monkeypatch.setattr(reuters, "WORD_INDEX_MD5", md5(home / "reuters_word_index.json"))
    offline(monkeypatch, imdb, reuters)
    assert imdb.get_word_index() == {"the": 1, "and": 2}
    assert reuters.get_word_index() == {"said": 1}
    assert len(reuters.get_label_names()) == 46


def test_reuters_split_and_arithmetic(home, monkeypatch):
    home.mkdir(parents=True)
    seqs, labels = write_word_npz(home / "reuters.npz", 50, seed=4)
    monkeypatch.setattr(reuters, "SHA256", sha256(home / "reuters.npz"))
    offline(monkeypatch, reuters)
    (x, y), (xt, yt) = reuters.load_data(num_words=30, skip_top=2)
    assert len(x) == 40 and len(xt) == 10
    order = np.arange(50)
    np.random.RandomState(113).shuffle(order)
    expect = [[w if 2 <= w < 30 else 2 for w in [1] + [v + 3 for v in seqs[i]]]
              for i in order]
    assert [list(s) for s in x] + [list(s) for s in xt] == expect
    assert np.array_equal(np.concatenate([y, yt]), labels[order])


@pytest.mark.parametrize("kwargs", [
    {}, {"num_words": 20}, {"num_words": 20, "skip_top": 5}, {"maxlen": 8},
    {"oov_char": None, "num_words": 15}, {"start_char": None}, {"index_from": 0},
    {"start_char": None, "index_from": 0, "num_words": 30}, {"seed": 7, "maxlen": 10}])
def test_imdb_and_reuters_equal_keras(home, monkeypatch, kwargs):
    keras_or_skip()
    import keras.src.datasets.imdb as k_imdb
    import keras.src.datasets.reuters as k_reuters
    home.mkdir(parents=True)
    rng = np.random.default_rng(5)
    obj = lambda n: np.array([rng.integers(1, 40, rng.integers(1, 14)).tolist()  # noqa
                              for _ in range(n)] + [None], dtype=object)[:-1]
    ipath = write_npz(home / "imdb.npz", x_train=obj(30), y_train=rng.integers(0, 2, 30),
                      x_test=obj(20), y_test=rng.integers(0, 2, 20))
    rpath = write_npz(home / "reuters.npz", x=obj(40), y=rng.integers(0, 46, 40))
    monkeypatch.setattr(imdb, "SHA256", sha256(ipath))
    monkeypatch.setattr(reuters, "SHA256", sha256(rpath))
    offline(monkeypatch, imdb, reuters)
    monkeypatch.setattr(k_imdb, "get_file", lambda *a, **k: str(ipath))
    monkeypatch.setattr(k_reuters, "get_file", lambda *a, **k: str(rpath))
    for ours, theirs in ((imdb, k_imdb), (reuters, k_reuters)):
        got, want = ours.load_data(**kwargs), theirs.load_data(**kwargs)
        for (gx, gy), (wx, wy) in zip(got, want):
            assert gx.dtype == wx.dtype and gx.shape == wx.shape
            assert [list(s) for s in gx] == [list(s) for s in wx]
            assert gy.dtype == wy.dtype and np.array_equal(gy, wy)


# ---------------------------------------------------------------- shipped data sets

def test_digits_and_iris_ship_with_the_package(monkeypatch):
    monkeypatch.setenv("KERAS_HOME", "/nonexistent/never/used")
    (x, y), (xt, yt) = digits.load_data()
    assert x.shape == (1437, 8, 8) and x.dtype == np.uint8 and xt.shape == (360, 8, 8)
    assert y.dtype == np.uint8 and set(np.unique(y)) == set(range(10)) and x.max() == 16
    (x, y), (xt, yt) = iris.load_data()
    assert x.shape == (120, 4) and x.dtype == np.float64 and xt.shape == (30, 4)
    assert set(np.unique(np.concatenate([y, yt]))) == {0, 1, 2}
    assert iris.get_label_names() == ("setosa", "versicolor", "virginica")
    (x2, _), _ = iris.load_data(test_split=0.5, seed=1)
    assert x2.shape == (75, 4)


def test_digits_and_iris_equal_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    for ours, theirs, key in ((digits, sk.load_digits(), "images"),
                              (iris, sk.load_iris(), "data")):
        (x, y), (xt, yt) = ours.load_data(test_split=0.0)
        assert len(xt) == 0
        order = np.arange(len(theirs.target))
        np.random.RandomState(113).shuffle(order)
        assert np.array_equal(x, getattr(theirs, key)[order])
        assert np.array_equal(y, theirs.target[order])


# ---------------------------------------------------------------- full size

def test_full_size_mnist_and_cifar10_through_the_real_code_path(home, monkeypatch, tmp_path):
    """The issue's must-show: full-size files in the real formats, loaded by the real
    load_data() (here downloaded nowhere: found in the cache, checksums patched)."""
    home.mkdir(parents=True)
    path = write_npz(home / "mnist.npz", **mnist_arrays(60000, 10000))
    monkeypatch.setattr(mnist, "SHA256", sha256(path))
    offline(monkeypatch, mnist, cifar10)
    (x, y), (xt, yt) = mnist.load_data()
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((60000, 28, 28), np.uint8, (60000,), np.uint8)
    assert (xt.shape, yt.shape) == ((10000, 28, 28), (10000,))
    del x, xt

    members = []
    pattern = (np.arange(10000 * 3072, dtype=np.uint32) % 251).astype(np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        members.append((name, cifar_pickle(pattern.reshape(10000, 3072),
                                           [i % 10 for i in range(10000)], b"labels")))
    archive = home / "cifar-10-batches-py-target_archive"
    write_cifar_tar(archive, "cifar-10-batches-py", members)
    del members
    monkeypatch.setattr(cifar10, "SHA256", sha256(archive))
    (x, y), (xt, yt) = cifar10.load_data()
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((50000, 32, 32, 3), np.uint8,
                                                     (50000, 1), np.uint8)
    assert (xt.shape, yt.shape) == ((10000, 32, 32, 3), (10000, 1))
    assert x[1, 0, 0, 1] == pattern[3072 + 1024]  # image 1, row 0, col 0, green


def test_datasets_are_on_the_package():
    assert ember.datasets.mnist is mnist and callable(ember.utils.get_file)
