"""Keras's files both ways: `.keras`, `.weights.h5`, legacy `.h5` and JSON, with the
compile arguments and the optimizer's state. Keras 3 (the `compare` extra) is the
oracle where it is installed; the tests that need it skip cleanly without it."""
import json
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import ember
from ember import layers
from oracles import keras_or_skip

rng = np.random.default_rng(0)
DATA = {
    "mlp": (rng.random((32, 20), dtype=np.float32), rng.integers(0, 3, 32)),
    "cnn": (rng.random((32, 8, 8, 1), dtype=np.float32),
            np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]),
    "text": (rng.integers(0, 50, (32, 10)).astype(np.int32),
             rng.integers(0, 2, (32, 1)).astype(np.float32)),
    "functional": ([rng.random((32, 6), dtype=np.float32),
                    rng.random((32, 4), dtype=np.float32)], rng.integers(0, 2, 32)),
    "nested": (rng.random((32, 4), dtype=np.float32), np.ones((32, 1), dtype=np.float32)),
}


def build(lib, kind):
    """The same model in Keras or in ember (their APIs agree), compiled."""
    L = lib.layers
    if kind == "mlp":
        m = lib.Sequential([lib.Input((20,)), L.Dense(16, activation="relu"),
                            L.Dropout(0.2), L.Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    elif kind == "cnn":
        m = lib.Sequential([lib.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                            L.BatchNormalization(), L.MaxPooling2D(), L.Flatten(),
                            L.Dense(3, activation="softmax")])
        m.compile(lib.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy",
                  metrics=["accuracy"])
    elif kind == "text":
        m = lib.Sequential([lib.Input((10,), dtype="int32"), L.Embedding(50, 8),
                            L.GlobalAveragePooling1D(), L.Dense(1, activation="sigmoid")])
        m.compile(lib.optimizers.RMSprop(0.01), "binary_crossentropy", metrics=["accuracy"])
    elif kind == "nested":  # a GAN's stacked generator and discriminator
        g = lib.Sequential([lib.Input((4,)), L.Dense(6, activation="relu"), L.Dense(5)])
        i = lib.Input((5,))
        d = lib.Model(i, L.Dense(1, activation="sigmoid")(L.Dense(3)(i)))
        m = lib.Sequential([g, d])
        m.compile("adam", "binary_crossentropy")
    else:
        a, b = lib.Input((6,), name="a"), lib.Input((4,), name="b")
        shared = L.Dense(5, activation="tanh")
        x = L.Concatenate()([shared(a), L.Dense(5)(b)])
        x = L.LayerNormalization()(x)
        m = lib.Model([a, b], L.Dense(2, activation="softmax")(x))
        m.compile(lib.optimizers.Adam(0.01, amsgrad=True), "sparse_categorical_crossentropy")
    return m


def trained(lib, kind):
    m = build(lib, kind)
    x, y = DATA[kind]
    m.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return m


def assert_same_predictions(a, b, x):
    np.testing.assert_allclose(np.asarray(a.predict(x, verbose=0)),
                               np.asarray(b.predict(x, verbose=0)), atol=1e-6)


KINDS = ["mlp", "cnn", "text", "functional", "nested"]


# -- Keras -> ember and ember -> Keras ----------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_keras_model_files_load_in_ember(tmp_path, kind, fmt):
    keras = keras_or_skip()
    k = trained(keras, kind)
    path = str(tmp_path / f"m{fmt}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.save(path)
    e = ember.models.load_model(path)
    assert_same_predictions(e, k, DATA[kind][0])
    assert int(e.optimizer.iterations) == int(k.optimizer.iterations) == 4
    w = str(tmp_path / "w.weights.h5")
    k.save_weights(w)
    fresh = build(ember, kind)
    fresh.load_weights(w)
    assert_same_predictions(fresh, k, DATA[kind][0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_ember_model_files_load_in_keras(tmp_path, kind, fmt):
    keras = keras_or_skip()
    e = trained(ember, kind)
    path = str(tmp_path / f"m{fmt}")
    if fmt == ".h5":
        with pytest.warns(UserWarning, match="legacy"):
            e.save(path)
    else:
        e.save(path)
    k = keras.models.load_model(path)
    assert_same_predictions(e, k, DATA[kind][0])
    assert int(k.optimizer.iterations) == 4
    w = str(tmp_path / "w.weights.h5")
    e.save_weights(w)
    assert h5py.is_hdf5(w)
    fresh = build(keras, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's note that its optimizer is not built
        fresh.load_weights(w)
    assert_same_predictions(e, fresh, DATA[kind][0])


def test_the_archive_has_keras_layout(tmp_path):
    m = trained(ember, "mlp")
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        meta = json.loads(z.read("metadata.json"))
        config = json.loads(z.read("config.json"))
        z.extract("model.weights.h5", tmp_path)
    assert set(meta) >= {"keras_version", "date_saved"}
    assert set(config) == {"module", "class_name", "config", "registered_name",
                           "build_config", "compile_config"}
    dense = config["config"]["layers"][1]
    assert set(dense) == {"module", "class_name", "config", "registered_name", "build_config"}
    assert {"quantization_config", "kernel_regularizer", "dtype"} <= set(dense["config"])
    with h5py.File(tmp_path / "model.weights.h5") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert f["layers/dense_1/vars"].attrs["name"] == m.layers[2].name
        # Adam's slots interleaved per variable: m and v of the kernel, then of the bias
        core = m.optimizer._core
        kernel, bias = m.layers[0].kernel, m.layers[0].bias
        expected = [int(m.optimizer.iterations), np.float32(m.optimizer.learning_rate),
                    *core.slots(kernel._storage), *core.slots(bias._storage)]
        for i, want in enumerate(expected):
            np.testing.assert_array_equal(f[f"optimizer/vars/{i}"][()],
                                          np.asarray(want).reshape(f[f"optimizer/vars/{i}"].shape))
    # layers by class in snake case, numbered; Adam: iteration, learning rate, (m, v) per
    # trainable variable in order
    assert sorted(names) == sorted(
        ["layers/dense/vars/0", "layers/dense/vars/1", "layers/dense_1/vars/0",
         "layers/dense_1/vars/1"] + [f"optimizer/vars/{i}" for i in range(10)])


# -- compile arguments and optimizer state -------------------------------------------------
@pytest.mark.parametrize("kind", ["cnn", "text", "functional", "nested"])
@pytest.mark.parametrize("direction", ["keras_to_ember", "ember_to_keras"])
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_compile_is_restored_and_training_continues_alike(tmp_path, kind, direction, fmt):
    keras = keras_or_skip()
    src, dst = (keras, ember) if direction == "keras_to_ember" else (ember, keras)
    m = trained(src, kind)
    path = str(tmp_path / f"m{fmt}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(path)
    loaded = (ember.models if dst is ember else keras.models).load_model(path)
    assert type(loaded.optimizer).__name__ == type(m.optimizer).__name__
    assert int(loaded.optimizer.iterations) == 4
    if fmt == ".h5" and dst is keras:
        return  # Keras 3 on JAX cannot train a model it loaded from .h5, even its own
    x, y = DATA[kind]
    xb = [a[:16] for a in x] if isinstance(x, list) else x[:16]
    m.train_on_batch(xb, y[:16])
    loaded.train_on_batch(xb, y[:16])
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", [".keras", ".h5", ".weights.h5"])
def test_resume_is_bit_identical(tmp_path, threads, fmt):
    before = ember.config.get_num_threads()
    ember.config.set_num_threads(threads)
    try:
        x, y = rng.random((64, 12), dtype=np.float32), rng.integers(0, 3, 64)

        def fresh():
            ember.utils.set_random_seed(3)
            lr = ember.optimizers.schedules.ExponentialDecay(0.01, 3, 0.9)
            m = ember.Sequential([layers.Input((12,)), layers.Dense(8, activation="relu"),
                                  layers.Dense(3, activation="softmax")])
            m.compile(ember.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
            return m
        straight = fresh()
        straight.fit(x, y, batch_size=16, epochs=5, verbose=0, shuffle=False)
        first = fresh()
        first.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
        path = str(tmp_path / f"m{fmt}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == ".weights.h5":
                first.save_weights(path)
                resumed = fresh()
                resumed.load_weights(path)
            else:
                first.save(path)
                resumed = ember.models.load_model(path)
        assert int(resumed.optimizer.iterations) == 12
        resumed.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        for a, b in zip(straight.get_weights(), resumed.get_weights()):
            np.testing.assert_array_equal(a, b)
    finally:
        ember.config.set_num_threads(before)


@pytest.mark.parametrize("opt", ["sgd_momentum", "rmsprop_centered_momentum", "adagrad",
                                 "adamax", "nadam", "lion", "adadelta", "adamw", "ftrl"])
def test_every_optimizers_state_matches_keras_layout(tmp_path, opt):
    keras = keras_or_skip()
    args = {"sgd_momentum": ("SGD", {"momentum": 0.9, "nesterov": True}),
            "rmsprop_centered_momentum": ("RMSprop", {"momentum": 0.5, "centered": True}),
            "adagrad": ("Adagrad", {}), "adamax": ("Adamax", {}), "nadam": ("Nadam", {}),
            "lion": ("Lion", {}), "adadelta": ("Adadelta", {"learning_rate": 1.0}),
            "adamw": ("AdamW", {}),
            "ftrl": ("Ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.01,
                              "l2_shrinkage_regularization_strength": 0.02})}[opt]
    x, y = DATA["mlp"]

    def make(lib):
        m = lib.Sequential([lib.Input((20,)), lib.layers.Dense(4, activation="tanh"),
                            lib.layers.Dense(3, activation="softmax")])
        m.compile(getattr(lib.optimizers, args[0])(**args[1]), "sparse_categorical_crossentropy")
        return m
    k = make(keras)
    k.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    k.save(tmp_path / "k.keras")
    e = ember.models.load_model(tmp_path / "k.keras")
    for m in (k, e):
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=2e-5)
    e.save(tmp_path / "e.keras")
    k2 = keras.models.load_model(tmp_path / "e.keras")
    assert [v.shape for v in k2.optimizer.variables] == [v.shape for v in k.optimizer.variables]
    for a, b in zip(k2.optimizer.variables[2:], k.optimizer.variables[2:]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-3)


# -- Keras 2's legacy layout -----------------------------------------------------------------
def write_keras2_file(path, weights):
    """A Keras 2 (tf.keras 2.x) full-model HDF5 file, written field by field."""
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 5],
                                                "dtype": "float32", "sparse": False,
                                                "ragged": False, "name": "dense_input"}},
        {"class_name": "Dense", "config": {
            "name": "dense", "trainable": True, "dtype": "float32",
            "batch_input_shape": [None, 5], "units": 4, "activation": "relu",
            "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}},
        {"class_name": "Dense", "config": {
            "name": "dense_1", "trainable": True, "dtype": "float32", "units": 2,
            "activation": "softmax", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}}]}}
    training = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                "weighted_metrics": None, "loss_weights": None,
                "optimizer_config": {"class_name": "Adam", "config": {
                    "name": "Adam", "learning_rate": 0.001, "decay": 0.0, "beta_1": 0.9,
                    "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.11.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["training_config"] = json.dumps(training).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"dense", b"dense_1"])
        g.attrs["backend"] = b"tensorflow"
        g.attrs["keras_version"] = b"2.11.0"
        for name, (kernel, bias) in zip(["dense", "dense_1"], weights):
            lg = g.create_group(name)
            lg.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(),
                                                 f"{name}/bias:0".encode()])
            lg.create_dataset(f"{name}/kernel:0", data=kernel)
            lg.create_dataset(f"{name}/bias:0", data=bias)
        o = f.create_group("optimizer_weights")
        o.attrs["weight_names"] = np.array([b"Adam/iter:0"])
        o.create_dataset("Adam/iter:0", data=np.int64(7))


def keras2_weights():
    r = np.random.default_rng(5)
    return [(r.standard_normal((5, 4)).astype(np.float32), r.standard_normal(4).astype(np.float32)),
            (r.standard_normal((4, 2)).astype(np.float32), r.standard_normal(2).astype(np.float32))]


def test_keras2_h5_loads_in_ember_and_in_keras(tmp_path):
    path = str(tmp_path / "old.h5")
    weights = keras2_weights()
    write_keras2_file(path, weights)
    x = np.random.default_rng(1).random((6, 5), dtype=np.float32)
    h = np.maximum(x @ weights[0][0] + weights[0][1], 0) @ weights[1][0] + weights[1][1]
    expected = np.exp(h - h.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    with pytest.warns(UserWarning, match="Keras 2's optimizer"):
        e = ember.models.load_model(path)
    np.testing.assert_allclose(e.predict(x, verbose=0), expected, atol=1e-6)
    assert e.compiled and e.optimizer.name == "Adam"
    e.fit(x, np.zeros(6, dtype=np.int64), verbose=0)
    # Keras 2's save_weights: the same groups at the root of the file
    wpath = str(tmp_path / "old_weights.h5")
    with h5py.File(path) as src, h5py.File(wpath, "w") as dst:
        for k, v in src["model_weights"].attrs.items():
            dst.attrs[k] = v
        for name in src["model_weights"]:
            src.copy(src["model_weights"][name], dst, name)
    fresh = ember.Sequential([layers.Input((5,)), layers.Dense(4, activation="relu"),
                              layers.Dense(2, activation="softmax")])
    fresh.load_weights(wpath)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)
    keras = keras_or_skip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), expected, atol=1e-6)


def test_keras2_functional_config_loads(tmp_path):
    config = {"class_name": "Functional", "config": {
        "name": "model", "layers": [
            {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "in"}},
            {"class_name": "Dense", "name": "d1", "inbound_nodes": [[["in", 0, 0, {}]]],
             "config": {"name": "d1", "units": 2, "dtype": "float32"}},
            {"class_name": "Dense", "name": "d2", "inbound_nodes": [[["in", 0, 0, {}]]],
             "config": {"name": "d2", "units": 2}},
            {"class_name": "Add", "name": "add", "config": {"name": "add"},
             "inbound_nodes": [[["d1", 0, 0, {}], ["d2", 0, 0, {}]]]}],
        "input_layers": [["in", 0, 0]], "output_layers": [["add", 0, 0]]}}
    m = ember.models.model_from_json(json.dumps(config))
    assert [layer.name for layer in m.layers] == ["in", "d1", "d2", "add"]
    x = np.ones((2, 3), dtype=np.float32)
    d1, d2 = m.get_layer("d1"), m.get_layer("d2")
    want = x @ d1.kernel.numpy() + x @ d2.kernel.numpy()
    np.testing.assert_allclose(m.predict(x, verbose=0), want, atol=1e-6)


# -- JSON ----------------------------------------------------------------------------------
def test_json_round_trip_and_keras_reads_it():
    e = trained(ember, "functional")
    text = e.to_json()
    again = ember.models.model_from_json(text)
    assert again.get_config() == e.get_config()
    assert again.compiled  # the compile config travels in the JSON, as in Keras
    assert json.loads(again.to_json())["config"] == json.loads(text)["config"]
    keras = keras_or_skip()
    k = keras.models.model_from_json(text)
    assert [layer.name for layer in k.layers] == [layer.name for layer in e.layers]
    k.set_weights(e.get_weights())
    assert_same_predictions(e, k, DATA["functional"][0])
    back = ember.models.model_from_json(k.to_json())
    assert [type(layer).__name__ for layer in back.layers] == \
        [type(layer).__name__ for layer in e.layers]


# -- every way to build a model --------------------------------------------------------------
def styles():
    def input_first():
        return ember.Sequential([layers.Input((5,)), layers.Dense(3)])

    def input_shape():
        return ember.Sequential([layers.Dense(3, input_shape=(5,))])

    def input_dim():
        return ember.Sequential([layers.Dense(3, input_dim=5)])

    def built():
        m = ember.Sequential([layers.Dense(3)])
        m.build((None, 5))
        return m

    def lazy():
        m = ember.Sequential()
        m.add(layers.Dense(3))
        m.predict(np.zeros((2, 5), dtype=np.float32), verbose=0)
        return m

    def functional():
        i = layers.Input((5,))
        return ember.Model(i, layers.Dense(3)(i))
    return [input_first, input_shape, input_dim, built, lazy, functional]


@pytest.mark.parametrize("make", styles(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("fmt", [".keras", ".h5"])
def test_every_construction_style_round_trips(tmp_path, make, fmt):
    m = make()
    x = np.random.default_rng(2).random((4, 5), dtype=np.float32)
    path = str(tmp_path / f"m{fmt}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(path)
    assert_same_predictions(ember.models.load_model(path), m, x)
    w = str(tmp_path / "w.weights.h5")
    m.save_weights(w)
    other = make()
    other.load_weights(w)
    assert_same_predictions(other, m, x)
    keras = keras_or_skip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_predictions(keras.models.load_model(path), m, x)


# -- configs ember cannot honour, custom classes, safe mode ---------------------------------
def keras_like_archive(tmp_path, mutate):
    m = ember.Sequential([layers.Input((4,)), layers.Dense(3)])
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        entries = {n: z.read(n) for n in z.namelist()}
    config = json.loads(entries["config.json"])
    mutate(config)
    entries["config.json"] = json.dumps(config).encode()
    path = tmp_path / "changed.keras"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
    return path


def test_default_keras_keys_load_and_other_values_are_refused(tmp_path):
    def defaults(c):
        c["config"]["layers"][1]["config"].update(lora_rank=None, renorm=False)
    ember.models.load_model(keras_like_archive(tmp_path, defaults))

    def quantized(c):
        c["config"]["layers"][1]["config"]["quantization_config"] = {"mode": "int8"}
    with pytest.raises(ValueError, match="quantization_config"):
        ember.models.load_model(keras_like_archive(tmp_path, quantized))

    def float16(c):
        c["config"]["layers"][1]["config"]["dtype"] = "mixed_float16"
    with pytest.raises(ValueError, match="mixed_float16"):
        ember.models.load_model(keras_like_archive(tmp_path, float16))

    def unknown(c):
        c["config"]["layers"][1]["config"]["frobnicate"] = 3
    with pytest.raises(ValueError, match="frobnicate=3"):
        ember.models.load_model(keras_like_archive(tmp_path, unknown))


class Scaled(layers.Dense):
    """A user's own layer: a Dense with an extra argument."""

    def __init__(self, units, factor=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.factor = factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_custom_objects_and_registered_classes(tmp_path):
    m = ember.Sequential([layers.Input((4,)), Scaled(3, factor=2.5)])
    m.save(tmp_path / "c.keras")
    with pytest.raises(ValueError, match="Unknown layer class 'Scaled'.*custom_objects"):
        ember.models.load_model(tmp_path / "c.keras")
    loaded = ember.models.load_model(tmp_path / "c.keras", custom_objects={"Scaled": Scaled})
    assert isinstance(loaded.layers[0], Scaled) and loaded.layers[0].factor == 2.5
    np.testing.assert_array_equal(loaded.get_weights()[0], m.get_weights()[0])

    @ember.saving.register_keras_serializable(package="mine")
    class Registered(Scaled):
        pass
    m = ember.Sequential([layers.Input((4,)), Registered(3)])
    m.save(tmp_path / "r.keras")
    with zipfile.ZipFile(tmp_path / "r.keras") as z:
        entry = json.loads(z.read("config.json"))["config"]["layers"][1]
    assert entry["registered_name"] == "mine>Registered"
    assert isinstance(ember.models.load_model(tmp_path / "r.keras").layers[0], Registered)


def test_lambda_and_unknown_modules_are_refused(tmp_path):
    def add_lambda(c):
        c["config"]["layers"].append({"module": "keras.layers", "class_name": "Lambda",
                                      "config": {"name": "l", "function": {
                                          "class_name": "__lambda__",
                                          "config": {"code": "AAAA"}}},
                                      "registered_name": None})
    path = keras_like_archive(tmp_path, add_lambda)
    with pytest.raises(ValueError, match="Lambda.*safe mode"):
        ember.models.load_model(path)
    with pytest.raises(ValueError, match="bytecode cannot be read"):
        ember.models.load_model(path, safe_mode=False)

    def foreign(c):
        c["config"]["layers"][1].update(module="os", class_name="Dense",
                                        registered_name="evil>Dense")
    with pytest.raises(ValueError, match="Unknown layer class 'Dense'.*module='os'"):
        ember.models.load_model(keras_like_archive(tmp_path, foreign))


# -- corrupt, truncated and foreign files -----------------------------------------------------
def unchanged_after(model, load):
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        load()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    return str(info.value)


def test_bad_weight_files_raise_and_leave_the_model_unchanged(tmp_path):
    m = trained(ember, "mlp")
    good = tmp_path / "good.weights.h5"
    m.save_weights(good)
    target = build(ember, "mlp")
    cases = {}
    data = good.read_bytes()
    (tmp_path / "trunc.weights.h5").write_bytes(data[: len(data) // 2])
    cases["trunc"] = "trunc.weights.h5"
    (tmp_path / "text.weights.h5").write_bytes(b"hello, I am not HDF5")
    cases["text"] = "neither an HDF5"
    for name, edit in {
        "shape": lambda f: (f["layers/dense_1/vars"].__delitem__("0"),
                            f["layers/dense_1/vars"].create_dataset("0", data=np.zeros((3, 3)))),
        "dtype": lambda f: (f["layers/dense/vars"].__delitem__("1"),
                            f["layers/dense/vars"].create_dataset("1", data=np.array([b"x"] * 16))),
        "missing": lambda f: f["layers/dense_1/vars"].__delitem__("1"),
        "extra": lambda f: f["layers/dense/vars"].create_dataset("2", data=np.zeros(3)),
        "link": lambda f: (f["layers/dense/vars"].__delitem__("1"),
                           f["layers/dense/vars"].__setitem__(
                               "1", h5py.ExternalLink("elsewhere.h5", "/x"))),
    }.items():
        path = tmp_path / f"{name}.weights.h5"
        path.write_bytes(data)
        with h5py.File(path, "a") as f:
            edit(f)
        cases[name] = {"shape": "shape", "dtype": "dtype", "missing": "2 variables",
                       "extra": "3", "link": "link"}[name]
    for name, message in cases.items():
        path = tmp_path / (f"{name}.weights.h5")
        text = unchanged_after(target, lambda: target.load_weights(path))
        assert str(path) in text and message in text, (name, text)


def test_bad_model_files_raise_with_the_file_named(tmp_path):
    m = trained(ember, "cnn")
    m.save(tmp_path / "m.keras")
    m.save(tmp_path / "m.h5")
    for name in ("m.keras", "m.h5"):
        data = (tmp_path / name).read_bytes()
        for cut in (len(data) // 3, len(data) - 10):
            bad = tmp_path / f"cut_{name}"
            bad.write_bytes(data[:cut])
            with pytest.raises(ValueError, match="cut_m"):
                ember.models.load_model(bad)
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f.attrs["model_config"]
    with pytest.raises(ValueError, match="no model_config"):
        ember.models.load_model(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="Invalid filepath extension"):
        m.save(tmp_path / "m.pkl")


def test_checkpoint_to_h5_and_keras(tmp_path):
    x, y = DATA["mlp"]
    for name in ("best.h5", "best.keras"):
        m = build(ember, "mlp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(x, y, epochs=2, verbose=0, callbacks=[
                ember.callbacks.ModelCheckpoint(str(tmp_path / name), monitor="loss")])
        assert_same_predictions(ember.models.load_model(tmp_path / name), m, x)


# -- the interim format of earlier ember releases ------------------------------------------
def test_interim_files_still_load_with_a_warning(tmp_path):
    import io
    m = build(ember, "mlp")
    weights = m.get_weights()
    buf = io.BytesIO()
    np.savez(buf, **{f"arr_{i:04d}": a for i, a in enumerate(weights)})
    config = {"module": "keras", "class_name": "Sequential", "config": m.get_config(),
              "registered_name": None}
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as z:
        z.writestr("metadata.json", json.dumps({"format": "ember-0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("weights.npz", buf.getvalue())
    (tmp_path / "old.weights.h5").write_bytes(buf.getvalue())
    with pytest.warns(UserWarning, match="interim format.*saving it again"):
        loaded = ember.models.load_model(tmp_path / "old.keras")
    for a, b in zip(loaded.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    other = build(ember, "mlp")
    with pytest.warns(UserWarning, match="interim format"):
        other.load_weights(tmp_path / "old.weights.h5")
    for a, b in zip(other.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


# -- every layer ember has, both ways ------------------------------------------------------
def every_layer(lib):
    """A functional model with each layer type ember supports (image, sequence and merge
    branches)."""
    L = lib.layers
    img = lib.Input((8, 8, 3), name="img")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(img)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.SeparableConv2D(4, 3, padding="same")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.GroupNormalization(groups=2)(x)
    x = L.MaxPooling2D()(x)
    x = L.AveragePooling2D(2)(x)
    x = L.UpSampling2D()(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Cropping2D(1)(x)
    x = L.PReLU()(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.ELU()(x)
    x = L.ReLU(max_value=6.0)(x)
    x = L.SpatialDropout2D(0.1)(x)
    x = L.GaussianNoise(0.1)(x)
    x = L.GaussianDropout(0.1)(x)
    x = L.Permute((2, 1, 3))(x)
    x = L.Reshape((8, 32))(x)
    x = L.Conv1D(6, 3, padding="same")(x)
    x = L.MaxPooling1D()(x)
    x = L.AveragePooling1D(1)(x)
    x = L.UpSampling1D()(x)
    x = L.ZeroPadding1D(1)(x)
    x = L.Cropping1D(1)(x)
    x = L.SpatialDropout1D(0.1)(x)
    x = L.LayerNormalization()(x)
    a = L.GlobalMaxPooling1D()(x)
    b = L.GlobalAveragePooling1D()(x)
    y = L.GlobalAveragePooling2D()(L.Conv2D(6, 1)(img))
    ids = lib.Input((5,), dtype="int32", name="ids")
    e = L.GlobalAveragePooling1D()(L.Embedding(20, 6)(ids))
    m = [L.Add()([a, b]), L.Subtract()([a, y]), L.Multiply()([b, y]), L.Average()([a, e]),
         L.Maximum()([b, e]), L.Minimum()([y, e])]
    z = L.Concatenate()(m)
    z = L.Dense(8, activation="tanh")(L.Dropout(0.1)(L.Flatten()(z)))
    d = L.Dot(axes=1)([z, L.Dense(8)(z)])
    out = L.Activation("sigmoid")(L.Concatenate()([d, L.Softmax()(L.Dense(3)(z))]))
    return lib.Model([img, ids], out)


def test_every_layer_matches_keras_config_and_files(tmp_path):
    keras = keras_or_skip()
    r = np.random.default_rng(9)
    x = [r.random((4, 8, 8, 3), dtype=np.float32), r.integers(0, 20, (4, 5)).astype(np.int32)]
    k, e = every_layer(keras), every_layer(ember)
    assert [type(a).__name__ for a in e.layers] == [type(a).__name__ for a in k.layers]
    for a, b in zip(e.layers, k.layers):
        assert set(a.get_config()) == set(b.get_config()), type(a).__name__
    k.save(tmp_path / "k.keras")
    from_keras = ember.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(from_keras.predict(x, verbose=0),
                               np.asarray(k.predict(x, verbose=0)), atol=1e-5)
    e.save(tmp_path / "e.keras")
    from_ember = keras.models.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(np.asarray(from_ember.predict(x, verbose=0)),
                               e.predict(x, verbose=0), atol=1e-5)


def test_from_config_takes_custom_objects():
    m = ember.Sequential([layers.Input((4,)), Scaled(3, factor=2.0)])
    again = ember.Sequential.from_config(m.get_config(), custom_objects={"Scaled": Scaled})
    assert isinstance(again.layers[0], Scaled) and again.layers[0].factor == 2.0
    i = layers.Input((4,))
    f = ember.Model(i, Scaled(2)(i))
    assert isinstance(ember.Model.from_config(f.get_config(), custom_objects={
        "Scaled": Scaled}).layers[1], Scaled)
    with pytest.raises(ValueError, match="Unknown layer class 'Scaled'"):
        ember.Model.from_config(f.get_config())
