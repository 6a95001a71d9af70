"""Every loss and metric against a NumPy reference: the per-sample functions, the
classes, the string aliases, the values fit/evaluate log, and the new losses'
gradients by finite differences (float64)."""
import numpy as np
import pytest

import ember
from ember import _core, losses, metrics
from gradcheck import assert_close, numeric_grad
from oracles import keras_or_skip

rng = np.random.default_rng(11)
EPS = 1e-7


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


N, C = 6, 4
P = softmax(rng.normal(size=(N, C)))            # probabilities
# Half the labels are the arg max, so that accuracies fall strictly between 0 and 1.
LABELS = np.where(np.arange(N) % 2 == 0, P.argmax(-1), (P.argmax(-1) + 1 + rng.integers(0, C - 1, size=N)) % C)
ONEHOT = np.eye(C)[LABELS]
Y01 = rng.integers(0, 2, size=(N, C)).astype(np.float64)
YREG = rng.normal(size=(N, C))
ZREG = rng.normal(size=(N, C))
# Eight classes, so that top-k at Keras's default k=5 can miss.
P8 = softmax(rng.normal(size=(3 * N, 8)))
LABELS8 = rng.integers(0, 8, size=3 * N)
ONEHOT8 = np.eye(8)[LABELS8]


def ref_huber(y, p, delta=1.0):
    e = p - y
    a = np.abs(e)
    return np.mean(np.where(a <= delta, 0.5 * e * e, delta * a - 0.5 * delta ** 2), -1)


def ref_hinge(y, p):
    t = 2 * y - 1 if np.all((y == 0) | (y == 1)) else y
    return np.mean(np.maximum(1 - t * p, 0), -1)


def ref_kl(y, p):
    y, p = np.clip(y, EPS, 1), np.clip(p, EPS, 1)
    return np.sum(y * np.log(y / p), -1)


def ref_bce(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), -1)


LOSS_CASES = [
    # (alias, class, function, y_true, y_pred, reference per-sample)
    ("mse", losses.MeanSquaredError, losses.mean_squared_error, YREG, ZREG,
     np.mean((ZREG - YREG) ** 2, -1)),
    ("mae", losses.MeanAbsoluteError, losses.mean_absolute_error, YREG, ZREG,
     np.mean(np.abs(ZREG - YREG), -1)),
    ("huber", losses.Huber, losses.huber, YREG, ZREG, ref_huber(YREG, ZREG)),
    ("hinge", losses.Hinge, losses.hinge, Y01, ZREG, ref_hinge(Y01, ZREG)),
    ("kl_divergence", losses.KLDivergence, losses.kl_divergence, softmax(YREG), P,
     ref_kl(softmax(YREG), P)),
    ("binary_crossentropy", losses.BinaryCrossentropy, losses.binary_crossentropy, Y01,
     P, ref_bce(Y01, P)),
    ("categorical_crossentropy", losses.CategoricalCrossentropy,
     losses.categorical_crossentropy, ONEHOT, P,
     -np.sum(ONEHOT * np.log(np.clip(P, EPS, 1 - EPS)), -1)),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy,
     losses.sparse_categorical_crossentropy, LABELS, P,
     -np.log(np.clip(P[np.arange(N), LABELS], EPS, 1 - EPS))),
]


@pytest.mark.parametrize("alias,cls,fn,y,p,ref", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_matches_numpy(alias, cls, fn, y, p, ref):
    np.testing.assert_allclose(fn(y, p), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cls()(y, p), ref.mean(), rtol=1e-5)
    sw = rng.uniform(0, 2, size=N)
    np.testing.assert_allclose(cls()(y, p, sample_weight=sw), (ref * sw).sum() / N, rtol=1e-5)
    np.testing.assert_allclose(cls(reduction="sum")(y, p), ref.sum(), rtol=1e-5)
    np.testing.assert_allclose(cls(reduction="none")(y, p), ref, rtol=1e-5, atol=1e-6)
    assert type(losses.get(alias)) is cls and type(losses.get(cls.__name__)) is cls
    assert type(losses.get(fn)) is cls
    again = losses.deserialize(losses.serialize(cls()))
    assert type(again) is cls and again.get_config() == cls().get_config()


def test_loss_names_and_aliases_follow_keras():
    assert losses.Huber().name == "huber_loss"
    assert losses.KLDivergence().name == "kl_divergence"
    assert losses.MeanAbsoluteError().name == "mean_absolute_error"
    for alias in ("kld", "KLD", "MAE", "MSE", "huber_loss"):
        losses.get(alias)
    np.testing.assert_allclose(losses.Huber(delta=0.3)(YREG, ZREG),
                               ref_huber(YREG, ZREG, 0.3).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="delta=-1"):
        losses.Huber(delta=-1)
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 'nope'"):
        losses.get("nope")
    # Hinge keeps -1/1 targets as they are.
    pm = np.where(Y01 > 0, 1.0, -1.0)
    np.testing.assert_allclose(losses.hinge(pm, ZREG), ref_hinge(Y01, ZREG), rtol=1e-5)


@pytest.mark.parametrize("name,t,out", [
    ("mean_absolute_error", YREG, ZREG),
    ("huber", YREG, ZREG * 2),
    ("hinge", Y01, ZREG * 0.7),
    ("kl_divergence", softmax(YREG), rng.uniform(0.05, 0.95, size=(N, C))),
    ("mean_squared_logarithmic_error", rng.uniform(0, 2, size=(N, C)),
     rng.uniform(0.01, 2, size=(N, C))),
    ("mean_absolute_percentage_error", YREG, ZREG * 2),
    ("log_cosh", YREG, ZREG * 2),
    ("poisson", rng.uniform(0, 3, size=(N, C)), rng.uniform(0.1, 3, size=(N, C))),
    ("squared_hinge", Y01, ZREG * 0.7),
    ("categorical_hinge", ONEHOT, ZREG),
    ("cosine_similarity", YREG, ZREG),
])
def test_new_loss_gradients(name, t, out):
    param = 0.8 if name == "huber" else 1.0
    f = lambda: _core.loss(name, out, t, False, "linear", 1.0, None, param)[0]
    _, g = _core.loss(name, out, t, False, "linear", 1.0, None, param)
    assert_close(g, numeric_grad(f, out), tol=1e-5, what=name)


def test_more_losses_against_numpy():
    """Keras 3's formulas, written out in NumPy (float64)."""
    eps = 1e-7
    y, p = YREG, ZREG * 2
    yp, pp = rng.uniform(0, 2, size=(N, C)), rng.uniform(0.01, 2, size=(N, C))
    t = 2 * Y01 - 1
    neg = ((1 - ONEHOT) * ZREG).max(-1)
    norm = lambda a: a / np.sqrt((a * a).sum(-1, keepdims=True))
    cases = {
        "msle": (yp, pp, np.mean((np.log(np.maximum(pp, eps) + 1) -
                                  np.log(np.maximum(yp, eps) + 1)) ** 2, -1)),
        "mape": (y, p, 100 * np.mean(np.abs((y - p) / np.maximum(np.abs(y), eps)), -1)),
        "log_cosh": (y, p, np.mean(np.log(np.cosh(p - y)), -1)),
        "poisson": (yp, pp, np.mean(pp - yp * np.log(pp + eps), -1)),
        "squared_hinge": (Y01, ZREG, np.mean(np.maximum(1 - t * ZREG, 0) ** 2, -1)),
        "categorical_hinge": (ONEHOT, ZREG,
                              np.maximum(neg - (ONEHOT * ZREG).sum(-1) + 1, 0)),
        "cosine_similarity": (y, p, -(norm(y) * norm(p)).sum(-1)),
    }
    for name, (a, b, ref) in cases.items():
        np.testing.assert_allclose(losses.get(name)(a, b), ref.mean(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(getattr(losses, name)(a, b), ref, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # The squared hinge keeps -1/1 targets as they are, like the hinge.
    np.testing.assert_allclose(losses.squared_hinge(t, ZREG),
                               np.mean(np.maximum(1 - t * ZREG, 0) ** 2, -1), rtol=1e-5)
    m = ember.Sequential([ember.Input((C,)), ember.layers.Dense(C)])
    m.compile("adam", "categorical_hinge")
    m.fit(ZREG.astype(np.float32), ONEHOT, verbose=0)
    with pytest.raises(ValueError, match="last axis only"):
        losses.CosineSimilarity(axis=0)


def ref_in_top_k(p, target, k):
    return (p > p[np.arange(len(p)), target][:, None]).sum(-1) < k


METRIC_CASES = [
    (metrics.BinaryAccuracy, Y01, P, (P > 0.5) == Y01),  # per element, as Keras 3
    (metrics.CategoricalAccuracy, ONEHOT, P, P.argmax(-1) == LABELS),
    (metrics.SparseCategoricalAccuracy, LABELS, P, P.argmax(-1) == LABELS),
    (metrics.TopKCategoricalAccuracy, ONEHOT8, P8, ref_in_top_k(P8, LABELS8, 5)),
    (metrics.SparseTopKCategoricalAccuracy, LABELS8, P8, ref_in_top_k(P8, LABELS8, 5)),
    (lambda: metrics.TopKCategoricalAccuracy(k=2), ONEHOT, P, ref_in_top_k(P, LABELS, 2)),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), LABELS, P,
     ref_in_top_k(P, LABELS, 2)),
    (metrics.MeanAbsoluteError, YREG, ZREG, np.mean(np.abs(ZREG - YREG), -1)),
    (metrics.MeanSquaredError, YREG, ZREG, np.mean((ZREG - YREG) ** 2, -1)),
]


@pytest.mark.parametrize("make,y,p,ref", METRIC_CASES)
def test_metric_matches_numpy(make, y, p, ref):
    if ref.dtype == bool:  # a case that can tell a right accuracy from a wrong one
        assert 0 < ref.mean() < 1
    m = make()
    m.update_state(y[:3], p[:3])
    m.update_state(y[3:], p[3:])
    fn = getattr(metrics, m._core_name)  # Keras's function form: one value per sample
    np.testing.assert_allclose(fn(y, p, **({"k": m.k} if hasattr(m, "k") else {})), ref,
                               rtol=1e-5, atol=1e-7)
    ref = ref.mean(-1) if ref.ndim == 2 else ref  # per sample, for the weighted mean
    np.testing.assert_allclose(m.result(), ref.mean(), rtol=1e-5)
    sw = rng.uniform(0, 2, size=len(y))
    m.reset_state()
    m.update_state(y, p, sample_weight=sw)
    np.testing.assert_allclose(m.result(), (ref * sw).sum() / sw.sum(), rtol=1e-5)


def test_top_k_hand_worked():
    p = np.array([[0.1, 0.4, 0.3, 0.2],    # ranks: 1, 2, 3, 0
                  [0.7, 0.1, 0.1, 0.1],
                  [0.25, 0.25, 0.3, 0.2]], dtype=np.float32)
    labels = np.array([3, 2, 0])
    # k=2: class 3 is third (miss); class 2 ties for second behind 0.7 (hit: ties
    # count in favour); class 0 ties for second behind 0.3 (hit).
    np.testing.assert_array_equal(
        metrics.sparse_top_k_categorical_accuracy(labels, p, k=2), [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(
        metrics.top_k_categorical_accuracy(np.eye(4)[labels], p, k=1), [0.0, 0.0, 0.0])
    m = metrics.SparseTopKCategoricalAccuracy(k=3)
    m.update_state(labels, p)
    assert m.result() == pytest.approx(1.0)
    m = metrics.SparseTopKCategoricalAccuracy(k=2)
    m.update_state(labels, p, sample_weight=np.array([2.0, 1.0, 1.0]))
    assert m.result() == pytest.approx(0.5)


def test_top_k_ties_count_in_favour_like_keras():
    p = np.array([[0.5, 0.5, 0.5, 0.0]], dtype=np.float32)
    assert metrics.sparse_top_k_categorical_accuracy(np.array([2]), p, k=1) == 1.0
    assert metrics.sparse_top_k_categorical_accuracy(np.array([3]), p, k=3) == 0.0


def test_top_k_matches_keras():
    keras = keras_or_skip()
    cases = [(P8, LABELS8, k) for k in (1, 2, 5)]
    cases.append((np.array([[0.5, 0.5, 0.5, 0.0]], dtype=np.float32), np.array([2]), 1))
    for p, labels, k in cases:
        ours = metrics.sparse_top_k_categorical_accuracy(labels, p, k=k)
        theirs = keras.metrics.sparse_top_k_categorical_accuracy(labels, p, k=k)
        np.testing.assert_array_equal(np.asarray(ours, np.float32),
                                      np.asarray(theirs, np.float32))
        dense = metrics.top_k_categorical_accuracy(np.eye(p.shape[1])[labels], p, k=k)
        np.testing.assert_array_equal(np.asarray(dense, np.float32),
                                      np.asarray(theirs, np.float32))


def identity_model(c, loss, metric_list, weighted=None):
    m = ember.Sequential([ember.Input((c,)), ember.layers.Activation("linear")])
    m.compile("sgd", loss, metrics=metric_list, weighted_metrics=weighted)
    return m


def test_evaluate_logs_every_metric_by_its_keras_name():
    m = identity_model(C, "mse", ["mae", "mean_squared_error", metrics.MeanAbsoluteError(),
                                  metrics.TopKCategoricalAccuracy(k=2)])
    logs = m.evaluate(ZREG, YREG, batch_size=4, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "mae", "mean_absolute_error", "mean_squared_error",
                          "top_k_categorical_accuracy"]  # sorted, as Keras 3 returns them
    np.testing.assert_allclose(logs["loss"], np.mean((ZREG - YREG) ** 2), rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], np.mean(np.abs(ZREG - YREG)), rtol=1e-5)
    np.testing.assert_allclose(logs["mean_absolute_error"], logs["mae"], rtol=1e-6)
    np.testing.assert_allclose(logs["mean_squared_error"], logs["loss"], rtol=1e-5)
    np.testing.assert_allclose(logs["top_k_categorical_accuracy"],
                               ref_in_top_k(ZREG, YREG.argmax(-1), 2).mean())
    assert 0 < logs["top_k_categorical_accuracy"] < 1
    # The string at Keras's default k=5, on eight classes.
    m8 = identity_model(8, "mse", ["top_k_categorical_accuracy"])
    acc = m8.evaluate(P8, ONEHOT8, verbose=0, return_dict=True)["top_k_categorical_accuracy"]
    np.testing.assert_allclose(acc, ref_in_top_k(P8, LABELS8, 5).mean())
    assert 0 < acc < 1


@pytest.mark.parametrize("loss", ["mae", "huber", "hinge", "kl_divergence", "kld"])
def test_each_loss_evaluates_by_alias(loss):
    y = softmax(YREG) if loss in ("kl_divergence", "kld") else (Y01 if loss == "hinge" else YREG)
    p = P if loss in ("kl_divergence", "kld") else ZREG
    m = identity_model(C, loss, [])
    np.testing.assert_allclose(m.evaluate(p, y, verbose=0), losses.get(loss)(y, p), rtol=1e-5)


def test_metrics_ignore_sample_weight_but_weighted_metrics_use_it():
    """Keras 3: compile(metrics=...) are unweighted; weighted_metrics take the weights;
    the loss is sum(w * L) / n."""
    sw = np.array([1, 0, 0, 2, 1, 0], dtype=np.float32)
    m = identity_model(C, "sparse_categorical_crossentropy", ["accuracy"], ["accuracy"])
    logs = m.evaluate(P, LABELS, sample_weight=sw, verbose=0, return_dict=True)
    hit = P.argmax(-1) == LABELS
    per = -np.log(P[np.arange(N), LABELS])
    np.testing.assert_allclose(logs["accuracy"], hit.mean())
    np.testing.assert_allclose(logs["weighted_accuracy"], (hit * sw).sum() / sw.sum())
    np.testing.assert_allclose(logs["loss"], (per * sw).sum() / N, rtol=1e-5)


def test_accuracy_resolves_from_shapes():
    assert metrics.get("accuracy", (1,), False)[1][0] == "binary_accuracy"
    assert metrics.get("acc", (3,), True)[1][0] == "sparse_categorical_accuracy"
    assert metrics.get("accuracy", (3,), False)[1][0] == "categorical_accuracy"
    with pytest.raises(ValueError, match="Unknown metric: 'nope'"):
        metrics.get("nope", (3,), True)
    with pytest.raises(ValueError, match="does not fit"):
        metrics.get("mae", (3,), True)


@pytest.mark.parametrize("loss,labels", [
    ("sparse_categorical_crossentropy", np.array([0, 1, 1, 2])),
    ("categorical_crossentropy", np.eye(3)[[0, 1, 1, 2]]),
])
def test_saturated_softmax_gets_no_gradient_through_the_clip(loss, labels):
    """Keras clips probabilities to [1e-7, 1 - 1e-7] and the clip passes no gradient: a
    softmax saturated on the right class (p > 1 - 1e-7) or on a wrong one (p < 1e-7)
    gets none, so an SGD step leaves the weights exactly as they were."""
    def model(lib):
        m = lib.Sequential([lib.Input((3,)), lib.layers.Dense(3, activation="softmax")])
        m.set_weights([np.eye(3, dtype=np.float32) * 100, np.zeros(3, np.float32)])
        m.compile(lib.optimizers.SGD(0.1), loss)
        return m
    x = np.eye(3, dtype=np.float32)[[0, 1, 0, 2]]  # rows 0, 1, 3 right; row 2 wrong
    m = model(ember)
    before = m.get_weights()
    m.train_on_batch(x, labels)
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    # One unsaturated row makes the step move the weights (the test can fail).
    x2 = x.copy()
    x2[0] *= 0.01
    m.train_on_batch(x2, labels)
    assert not np.array_equal(m.get_weights()[0], before[0])


def test_saturated_softmax_gradient_matches_keras():
    keras = keras_or_skip()
    x = np.eye(3, dtype=np.float32)[[0, 1, 0, 2]]
    x[3] *= 0.01
    labels = np.array([0, 1, 1, 2])
    results = []
    for lib in (ember, keras):
        m = lib.Sequential([lib.Input((3,)), lib.layers.Dense(3, activation="softmax")])
        m.set_weights([np.eye(3, dtype=np.float32) * 100, np.zeros(3, np.float32)])
        m.compile(lib.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        m.train_on_batch(x, labels)
        results.append([np.asarray(w) for w in m.get_weights()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_binary_accuracy_hand_worked():
    """Keras: a prediction counts as 1 when strictly above the 0.5 threshold."""
    p = np.array([[0.5, 0.7, 0.2, 0.5000001]], dtype=np.float32)
    y = np.array([[0, 1, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(metrics.binary_accuracy(y, p), [[1, 1, 1, 1]])
    np.testing.assert_array_equal(metrics.binary_accuracy(1 - y, p), [[0, 0, 0, 0]])
    m = metrics.BinaryAccuracy()
    m.update_state(np.array([[1.0], [0.0]]), np.array([[0.5], [0.5]]))
    assert m.result() == pytest.approx(0.5)


def test_binary_accuracy_takes_any_threshold():
    p = np.array([[0.2, 0.35, 0.7, -1.0]], dtype=np.float32)
    y = np.array([[0, 1, 1, 0]], dtype=np.float32)
    # The function form gives one value per element, as Keras 3's does.
    np.testing.assert_array_equal(metrics.binary_accuracy(y, p, threshold=0.3), [[1, 1, 1, 1]])
    np.testing.assert_array_equal(metrics.binary_accuracy(y, p), [[1, 0, 1, 1]])
    np.testing.assert_array_equal(metrics.binary_accuracy(y, p, threshold=0.0), [[0, 1, 1, 1]])
    m = metrics.BinaryAccuracy(threshold=0.0)  # for a model that outputs logits
    assert m.get_config()["threshold"] == 0.0
    assert metrics.BinaryAccuracy.from_config(m.get_config()).threshold == 0.0
    m.update_state(y, p)
    assert m.result() == pytest.approx(0.75)
    model = ember.Sequential([ember.Input((1,)), ember.layers.Activation("linear")])
    model.compile("sgd", "mse", metrics=[metrics.BinaryAccuracy(threshold=0.0)])
    logs = model.evaluate(np.array([[-2.0], [0.5], [3.0], [-0.1]]),
                          np.array([[0.0], [1.0], [0.0], [0.0]]), verbose=0, return_dict=True)
    assert logs["binary_accuracy"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        metrics.BinaryAccuracy(threshold=float("nan"))


def test_binary_accuracy_function_matches_keras():
    keras = keras_or_skip()
    p = np.array([[0.2, 0.35, 0.7, -1.0], [0.5, 0.51, 0.0, 0.9]], dtype=np.float32)
    y = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=np.float32)
    for threshold in (0.3, 0.5, 0.0):
        np.testing.assert_array_equal(
            metrics.binary_accuracy(y, p, threshold=threshold),
            np.asarray(keras.metrics.binary_accuracy(y, p, threshold=threshold)))


@pytest.mark.parametrize("name,from_logits", [("CategoricalCrossentropy", False),
                                              ("CategoricalCrossentropy", True),
                                              ("BinaryCrossentropy", False),
                                              ("BinaryCrossentropy", True)])
def test_label_smoothing(name, from_logits):
    rng = np.random.default_rng(3)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 12)]
    z = rng.standard_normal((12, 4)).astype(np.float32)
    p = z if from_logits else (np.exp(z) / np.exp(z).sum(1, keepdims=True) if
                               name.startswith("Cat") else 1 / (1 + np.exp(-z)))
    ls = 0.2
    smooth = y * (1 - ls) + (ls / 4 if name.startswith("Cat") else ls / 2)
    plain = getattr(losses, name)(from_logits=from_logits)
    np.testing.assert_allclose(getattr(losses, name)(from_logits=from_logits,
                                                     label_smoothing=ls)(y, p),
                               plain(smooth, p), rtol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        getattr(losses, name)(label_smoothing=1.5)
    # In a model: the same step as training on the smoothed targets (metrics see the
    # targets as given).
    last = "softmax" if name.startswith("Cat") and not from_logits else \
        ("sigmoid" if not from_logits else None)
    models = []
    for loss, target in ((getattr(losses, name)(from_logits=from_logits, label_smoothing=ls),
                          y), (plain, smooth)):
        ember.set_random_seed(5)
        m = ember.Sequential([ember.Input((3,)), ember.layers.Dense(4, activation=last)])
        m.compile(ember.optimizers.SGD(0.5), loss)
        m.train_on_batch(z[:, :3], target)
        models.append(m)
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    try:
        keras = keras_or_skip()
    except pytest.skip.Exception:  # the checks above ran; only Keras's is missing
        return
    k = getattr(keras.losses, name)(from_logits=from_logits, label_smoothing=ls)
    np.testing.assert_allclose(getattr(losses, name)(from_logits=from_logits,
                                                     label_smoothing=ls)(y, p),
                               float(k(y, p)), rtol=1e-5)


def test_large_outputs_train_to_the_same_bits_and_logs_at_any_thread_count():
    """An autoencoder's loss and metrics run over the threads (each row's value kept,
    the sum taken in row order): weights, loss and metrics are the same bits at 1 and 2
    threads, and the loss matches its definition computed in float64."""
    from threads import assert_same_weights_at_thread_counts

    x = np.random.default_rng(0).random((192, 784), dtype=np.float32)
    logs = []

    def train():
        ember.utils.set_random_seed(1)
        m = ember.Sequential([ember.Input((784,)), ember.layers.Dense(16, activation="relu"),
                              ember.layers.Dense(784, activation="sigmoid")])
        m.compile("adam", "binary_crossentropy", metrics=["mae", "binary_accuracy"])
        h = m.fit(x, x, batch_size=64, epochs=2, verbose=0, shuffle=False)
        logs.append(h.history)
        p = m.predict(x, verbose=0).astype(np.float64)
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        want = -np.mean(x * np.log(pc) + (1 - x) * np.log(1 - pc))
        got = m.evaluate(x, x, batch_size=192, verbose=0)[0]
        assert abs(got - want) < 1e-5 * want
        return m.get_weights()

    assert_same_weights_at_thread_counts(train)
    assert logs[0] == logs[1]
