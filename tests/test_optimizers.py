"""Each optimizer against a float64 NumPy transcription of Keras's rule: a linear
Dense model with MSE (gradients known in closed form) takes 3 steps from the same
weights; clipping, weight decay, schedules and frozen layers included."""
import math

import numpy as np
import pytest

import ember
from ember import optimizers as opt

RNG = np.random.default_rng(3)
X = RNG.normal(size=(8, 4)).astype(np.float32)
Y = RNG.normal(size=(8, 2)).astype(np.float32)
W0 = RNG.normal(size=(4, 2)).astype(np.float32)
B0 = np.array([0.1, -0.2], dtype=np.float32)


def grads(w, b):
    p = X.astype(np.float64) @ w + b
    dp = 2.0 * (p - Y) / p.size
    return [X.T.astype(np.float64) @ dp, dp.sum(0)]


def keras_reference(kind, steps=3, lr_at=lambda t: 0.01, weight_decay=None, clipnorm=None,
                    clipvalue=None, global_clipnorm=None, exclude=(), **h):
    """Keras 3's BaseOptimizer.apply in float64: clip, decay, rule, iterations += 1."""
    ws = [W0.astype(np.float64), B0.astype(np.float64)]
    names = ["kernel", "bias"]
    init = h.get("initial_accumulator_value", 0.1) if kind == "adagrad" else 0.0
    slots = [[np.full_like(w, init) for w in ws] for _ in range(4)]
    for t in range(steps):
        lr = lr_at(t)
        gs = grads(*ws)
        if clipnorm:
            gs = [g * clipnorm / max(np.linalg.norm(g), clipnorm) for g in gs]
        elif global_clipnorm:
            norm = math.sqrt(sum((g ** 2).sum() for g in gs))
            gs = [g * global_clipnorm * min(1 / norm, 1 / global_clipnorm) for g in gs]
        elif clipvalue:
            gs = [np.clip(g, -clipvalue, clipvalue) for g in gs]
        if weight_decay:
            ws = [w if n in exclude else w - w * weight_decay * lr for w, n in zip(ws, names)]
        for i, (w, g) in enumerate(zip(ws, gs)):
            s = [slot[i] for slot in slots]
            if kind == "sgd":
                mu = h.get("momentum", 0.0)
                if mu:
                    s[0][...] = mu * s[0] - lr * g
                    w += mu * s[0] - lr * g if h.get("nesterov") else s[0]
                else:
                    w -= lr * g
            elif kind == "adam":
                b1, b2, eps = 0.9, 0.999, 1e-7
                alpha = lr * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
                s[0] += (g - s[0]) * (1 - b1)
                s[1] += (g * g - s[1]) * (1 - b2)
                v = s[1]
                if h.get("amsgrad"):
                    s[2][...] = np.maximum(s[2], s[1])
                    v = s[2]
                w -= alpha * s[0] / (np.sqrt(v) + eps)
            elif kind == "rmsprop":
                rho, mu, eps = 0.9, h.get("momentum", 0.0), 1e-7
                s[0][...] = rho * s[0] + (1 - rho) * g * g
                den = s[0] + eps
                if h.get("centered"):
                    s[2][...] = rho * s[2] + (1 - rho) * g
                    den = s[0] - s[2] ** 2 + eps
                inc = lr * g / np.sqrt(den)
                if mu:
                    s[1][...] = mu * s[1] + inc
                    w -= s[1]
                else:
                    w -= inc
            elif kind == "adagrad":
                s[0] += g * g
                w -= lr * g / np.sqrt(s[0] + 1e-7)
    return ws


def ember_run(optimizer, steps=3):
    m = ember.Sequential([ember.Input((4,)), ember.layers.Dense(2)])
    m.set_weights([W0, B0])
    m.compile(optimizer, "mse")
    for _ in range(steps):
        m.train_on_batch(X, Y)
    return m.get_weights()


CASES = [
    ("sgd", lambda: opt.SGD(0.01), {}),
    ("sgd", lambda: opt.SGD(0.01, momentum=0.9), {"momentum": 0.9}),
    ("sgd", lambda: opt.SGD(0.01, momentum=0.9, nesterov=True),
     {"momentum": 0.9, "nesterov": True}),
    ("adam", lambda: opt.Adam(0.01), {}),
    ("adam", lambda: opt.Adam(0.01, amsgrad=True), {"amsgrad": True}),
    ("adam", lambda: opt.AdamW(0.01), {"weight_decay": 0.004}),
    ("adam", lambda: opt.AdamW(0.01, weight_decay=0.1), {"weight_decay": 0.1}),
    ("rmsprop", lambda: opt.RMSprop(0.01), {}),
    ("rmsprop", lambda: opt.RMSprop(0.01, momentum=0.5, centered=True),
     {"momentum": 0.5, "centered": True}),
    ("adagrad", lambda: opt.Adagrad(0.01), {}),
    ("adagrad", lambda: opt.Adagrad(0.01, initial_accumulator_value=0.5),
     {"initial_accumulator_value": 0.5}),
    ("sgd", lambda: opt.SGD(0.1, clipnorm=0.05), {"clipnorm": 0.05, "lr_at": lambda t: 0.1}),
    ("adam", lambda: opt.Adam(0.01, clipvalue=0.02), {"clipvalue": 0.02}),
    ("rmsprop", lambda: opt.RMSprop(0.01, global_clipnorm=0.1), {"global_clipnorm": 0.1}),
    ("sgd", lambda: opt.SGD(0.1, weight_decay=0.5), {"weight_decay": 0.5, "lr_at": lambda t: 0.1}),
]


@pytest.mark.parametrize("kind,make,h", CASES,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CASES)])
def test_optimizer_matches_keras_rule_in_float64(kind, make, h):
    got = ember_run(make())
    ref = keras_reference(kind, **h)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_weight_decay_exclusion_by_name():
    o = opt.AdamW(0.01, weight_decay=0.3)
    o.exclude_from_weight_decay(var_names=["bias"])
    got = ember_run(o)
    ref = keras_reference("adam", weight_decay=0.3, exclude=("bias",))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("schedule", [
    opt.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5),
    opt.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True),
    opt.schedules.PiecewiseConstantDecay([0, 1], [0.1, 0.05, 0.01]),
    opt.schedules.CosineDecay(0.1, decay_steps=3, alpha=0.1),
    opt.schedules.CosineDecay(0.0, decay_steps=4, warmup_target=0.1, warmup_steps=2),
])
def test_schedules_drive_the_update(schedule):
    got = ember_run(opt.SGD(schedule))
    ref = keras_reference("sgd", lr_at=lambda t: schedule(t))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_schedule_formulas():
    e = opt.schedules.ExponentialDecay(1.0, 10, 0.5)
    assert e(0) == 1.0 and e(10) == pytest.approx(0.5) and e(5) == pytest.approx(0.5 ** 0.5)
    assert opt.schedules.ExponentialDecay(1.0, 10, 0.5, staircase=True)(19) == 0.5
    p = opt.schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [p(0), p(10), p(11), p(20), p(21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    c = opt.schedules.CosineDecay(1.0, 10, alpha=0.2)
    assert c(0) == 1.0 and c(10) == pytest.approx(0.2) and c(100) == pytest.approx(0.2)
    assert c(5) == pytest.approx(0.2 + 0.8 * 0.5)
    w = opt.schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    assert w(2) == pytest.approx(0.5) and w(4) == pytest.approx(1.0)
    for s in (e, p, c, w):
        again = opt.schedules.deserialize(opt.schedules.serialize(s))
        assert again.get_config() == s.get_config()


def test_learning_rate_is_settable_and_validated():
    o = opt.Adam()
    o.learning_rate = 0.5
    assert o.learning_rate == 0.5
    with pytest.raises(ValueError, match="learning_rate=-0.1"):
        o.learning_rate = -0.1
    with pytest.raises(ValueError, match="learning_rate=-1"):
        opt.SGD(learning_rate=-1)
    s = opt.SGD(opt.schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="not settable"):
        s.learning_rate = 0.1
    with pytest.raises(ValueError, match="Only one of"):
        opt.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="clipnorm=-1"):
        opt.SGD(clipnorm=-1)
    with pytest.raises(ValueError, match="beta_1=1.5"):
        opt.Adam(beta_1=1.5)
    with pytest.raises(ValueError, match="not recognized"):
        opt.Adam(foo=1)
    with pytest.raises(ValueError, match="weight_decay=None"):
        opt.AdamW(weight_decay=None)


@pytest.mark.parametrize("name,cls", [("sgd", opt.SGD), ("adam", opt.Adam), ("adamw", opt.AdamW),
                                      ("rmsprop", opt.RMSprop), ("adagrad", opt.Adagrad)])
def test_string_names_and_config_round_trip(name, cls):
    o = opt.get(name)
    assert type(o) is cls
    again = opt.deserialize(opt.serialize(o))
    assert type(again) is cls and again.get_config() == o.get_config()
    sched = cls(learning_rate=opt.schedules.CosineDecay(0.1, 100))
    assert isinstance(cls.from_config(sched.get_config())._learning_rate,
                      opt.schedules.CosineDecay)


def test_frozen_layer_is_not_updated_and_iterations_count():
    m = ember.Sequential([ember.Input((4,)), ember.layers.Dense(3, activation="relu"),
                          ember.layers.Dense(2)])
    m.layers[0].trainable = False  # read when the model is compiled (Keras 2's rule)
    m.compile(opt.Adam(0.05, global_clipnorm=1.0), "mse")
    before = m.get_weights()
    m.fit(X, Y, epochs=2, batch_size=4, verbose=0)
    after = m.get_weights()
    # Keras's order puts the frozen layer's weights with the non-trainable ones, still
    # in layer order for get_weights.
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert not np.array_equal(before[2], after[2])
    assert m.optimizer.iterations == 4
    assert len(m.trainable_weights) == 2 and len(m.non_trainable_weights) == 2
    m.layers[0].trainable = True
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(before[0], m.get_weights()[0])  # until recompiled
    m.compile(m.optimizer, "mse")
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert not np.array_equal(before[0], m.get_weights()[0])


def test_learning_rate_and_iterations_read_and_write_like_keras_variables():
    """Tutorials call model.optimizer.learning_rate.numpy() and .assign(...)."""
    m = ember.Sequential([ember.Input((3,)), ember.layers.Dense(2)])
    m.compile(ember.optimizers.Adam(1e-3), "mse")
    lr = m.optimizer.learning_rate
    assert lr == pytest.approx(1e-3) and float(lr) == pytest.approx(1e-3)
    assert lr.numpy().dtype == np.float32 and lr.numpy() == np.float32(1e-3)
    lr.assign(5e-4)
    assert m.optimizer.learning_rate == pytest.approx(5e-4)
    assert m.optimizer.iterations == 0 and m.optimizer.iterations.numpy() == 0
    m.train_on_batch(np.ones((4, 3)), np.zeros((4, 2)))
    assert int(m.optimizer.iterations) == 1 and m.optimizer.iterations.numpy() == 1
    m.optimizer.learning_rate = 0.1
    assert m.optimizer.learning_rate * 2 == pytest.approx(0.2)
    sched = ember.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    opt = ember.optimizers.SGD(sched)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate.assign(0.3)


@pytest.mark.parametrize("name", ["adamax", "nadam", "lion", "adadelta", "ftrl"])
def test_new_optimizers_train_and_round_trip(name):
    o = opt.get(name)
    assert type(o).__name__.lower() == name and o.get_config()["name"] == name
    again = type(o).from_config(o.get_config())
    assert again.get_config() == o.get_config()
    ember.set_random_seed(0)
    r = np.random.default_rng(0)
    x = r.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    m = ember.Sequential([ember.Input((5,)), ember.layers.Dense(8, activation="relu"),
                          ember.layers.Dense(2, activation="softmax")])
    lr = {"adadelta": 1.0, "ftrl": 0.5}.get(name, 0.01)
    m.compile(type(o)(learning_rate=lr), "sparse_categorical_crossentropy")
    h = m.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.8 * h.history["loss"][0]
    assert m.optimizer._core.num_slots == (1 if name == "lion" else 2)
    kernel = m.layers[0].kernel._storage
    assert len(m.optimizer._core.slots(kernel)) == m.optimizer._core.num_slots


def test_ftrl_matches_keras_training():
    from oracles import keras_or_skip
    keras = keras_or_skip()
    r = np.random.default_rng(1)
    x = r.normal(size=(32, 5)).astype(np.float32)
    y = r.normal(size=(32, 2)).astype(np.float32)
    kw = dict(learning_rate=0.1, l1_regularization_strength=0.01, l2_regularization_strength=0.02,
              l2_shrinkage_regularization_strength=0.03, beta=0.5, learning_rate_power=-0.7)
    k = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                          keras.layers.Dense(2)])
    e = ember.Sequential([ember.Input((5,)), ember.layers.Dense(4, activation="tanh"),
                          ember.layers.Dense(2)])
    e.set_weights(k.get_weights())
    k.compile(keras.optimizers.Ftrl(**kw), "mse")
    e.compile(ember.optimizers.Ftrl(**kw), "mse")
    for _ in range(3):
        assert float(e.train_on_batch(x, y)) == pytest.approx(float(k.train_on_batch(x, y)),
                                                              rel=1e-5)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert e.optimizer.get_config().keys() == k.optimizer.get_config().keys()
    with pytest.raises(ValueError, match="learning_rate_power"):
        ember.optimizers.Ftrl(learning_rate_power=0.5)
