"""Metric objects with state (Precision, Recall, AUC, F1Score, MeanIoU, R2Score, ...):
standalone update_state / result / reset_state against Keras 3 and hand-worked values,
and in compile(metrics=...) computed over the whole pass, not averaged per batch."""
import numpy as np
import pytest

import ember
from ember import layers, metrics

from oracles import keras_or_skip

rng = np.random.default_rng(0)
Y_BIN = (rng.random((96, 1)) > 0.6).astype(np.float32)
P_BIN = rng.random((96, 1)).astype(np.float32)
Y_HOT = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]
P_CLS = rng.random((48, 3)).astype(np.float32)
Y_REG = rng.standard_normal((40, 2)).astype(np.float32)
P_REG = (Y_REG + 0.5 * rng.standard_normal((40, 2))).astype(np.float32)

# (ember metric, the Keras class name and arguments, y_true, y_pred)
CASES = [
    (lambda: metrics.Precision(), ("Precision", {}), Y_BIN, P_BIN),
    (lambda: metrics.Precision(thresholds=0.3), ("Precision", {"thresholds": 0.3}), Y_BIN, P_BIN),
    (lambda: metrics.Recall(), ("Recall", {}), Y_BIN, P_BIN),
    (lambda: metrics.TruePositives(), ("TruePositives", {}), Y_BIN, P_BIN),
    (lambda: metrics.FalsePositives(), ("FalsePositives", {}), Y_BIN, P_BIN),
    (lambda: metrics.TrueNegatives(), ("TrueNegatives", {}), Y_BIN, P_BIN),
    (lambda: metrics.FalseNegatives(), ("FalseNegatives", {}), Y_BIN, P_BIN),
    (lambda: metrics.AUC(), ("AUC", {}), Y_BIN, P_BIN),
    (lambda: metrics.AUC(curve="PR"), ("AUC", {"curve": "PR"}), Y_BIN, P_BIN),
    (lambda: metrics.AUC(num_thresholds=17, summation_method="minoring"),
     ("AUC", {"num_thresholds": 17, "summation_method": "minoring"}), Y_BIN, P_BIN),
    (lambda: metrics.PrecisionAtRecall(0.6), ("PrecisionAtRecall", {"recall": 0.6}), Y_BIN,
     P_BIN),
    (lambda: metrics.RecallAtPrecision(0.4), ("RecallAtPrecision", {"precision": 0.4}), Y_BIN,
     P_BIN),
    (lambda: metrics.BinaryAccuracy(threshold=0.7), ("BinaryAccuracy", {"threshold": 0.7}),
     Y_BIN, P_BIN),
    (lambda: metrics.F1Score(), ("F1Score", {}), Y_HOT, P_CLS),
    (lambda: metrics.F1Score(average="macro", threshold=0.5),
     ("F1Score", {"average": "macro", "threshold": 0.5}), Y_HOT, P_CLS),
    (lambda: metrics.FBetaScore(average="weighted", beta=2.0),
     ("FBetaScore", {"average": "weighted", "beta": 2.0}), Y_HOT, P_CLS),
    (lambda: metrics.F1Score(average="micro"), ("F1Score", {"average": "micro"}), Y_HOT, P_CLS),
    (lambda: metrics.MeanIoU(3, sparse_y_true=False, sparse_y_pred=False),
     ("MeanIoU", {"num_classes": 3, "sparse_y_true": False, "sparse_y_pred": False}), Y_HOT,
     P_CLS),
    (lambda: metrics.MeanIoU(3, ignore_class=1, sparse_y_true=False, sparse_y_pred=False),
     ("MeanIoU", {"num_classes": 3, "ignore_class": 1, "sparse_y_true": False,
                  "sparse_y_pred": False}), Y_HOT, P_CLS),
    (lambda: metrics.R2Score(), ("R2Score", {}), Y_REG, P_REG),
    (lambda: metrics.R2Score(class_aggregation="variance_weighted_average", num_regressors=2),
     ("R2Score", {"class_aggregation": "variance_weighted_average", "num_regressors": 2}),
     Y_REG, P_REG),
    (lambda: metrics.RootMeanSquaredError(), ("RootMeanSquaredError", {}), Y_REG, P_REG),
    (lambda: metrics.MeanAbsolutePercentageError(), ("MeanAbsolutePercentageError", {}),
     Y_REG, P_REG),
    (lambda: metrics.LogCoshError(), ("LogCoshError", {}), Y_REG, P_REG),
    (lambda: metrics.CosineSimilarity(), ("CosineSimilarity", {}), Y_REG, P_REG),
]
IDS = [f"{c[1][0]}{'-' + '-'.join(map(str, c[1][1].values())) if c[1][1] else ''}"
       for c in CASES]


@pytest.mark.parametrize("make,keras_spec,y,p", CASES, ids=IDS)
def test_standalone_metric_matches_keras(make, keras_spec, y, p):
    keras = keras_or_skip()
    ours, theirs = make(), getattr(keras.metrics, keras_spec[0])(**keras_spec[1])
    w = rng.random(len(y)).astype(np.float32)
    if keras_spec[0] == "MeanIoU":  # Keras casts MeanIoU's weights to integers
        w = np.round(w * 3).astype(np.float32)
    for sl, sw in ((slice(0, 30), None), (slice(30, None), w[30:])):
        ours.update_state(y[sl], p[sl], sample_weight=sw)
        theirs.update_state(y[sl], p[sl], sample_weight=sw)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=2e-5,
                               atol=1e-6)
    ours.reset_state()
    theirs.reset_state()
    ours.update_state(y[:20], p[:20])
    theirs.update_state(y[:20], p[:20])
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=2e-5,
                               atol=1e-6)


def test_hand_worked_values():
    y = np.array([[1], [1], [0], [0], [1]], np.float32)
    p = np.array([[0.9], [0.2], [0.8], [0.7], [0.6]], np.float32)
    pr, rc, tp = metrics.Precision(), metrics.Recall(), metrics.TruePositives()
    for m in (pr, rc, tp):
        m.update_state(y, p)
    assert float(tp.result()) == 2.0
    assert float(pr.result()) == pytest.approx(2 / 4)  # tp 2, fp 2
    assert float(rc.result()) == pytest.approx(2 / 3)  # tp 2, fn 1
    auc = metrics.AUC()
    auc.update_state([[0], [0], [1], [1]], [[0.1], [0.2], [0.8], [0.9]])
    assert float(auc.result()) == pytest.approx(1.0, abs=1e-6)
    empty = metrics.Precision()
    assert float(empty.result()) == 0.0  # nothing predicted: 0, not NaN
    iou = metrics.MeanIoU(2)
    iou.update_state([0, 0, 1, 1], [0, 1, 1, 1])  # class 0: 1/2, class 1: 2/3
    assert float(iou.result()) == pytest.approx((1 / 2 + 2 / 3) / 2)
    f1 = metrics.F1Score(average="macro", threshold=0.5)
    f1.update_state(np.eye(2, dtype=np.float32), np.array([[0.9, 0.1], [0.8, 0.7]], np.float32))
    # class 0: tp 1, fp 1 -> f1 2/3; class 1: tp 1 -> f1 1
    assert float(f1.result()) == pytest.approx((2 / 3 + 1) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="one threshold"):
        metrics.Precision(thresholds=[0.3, 0.5])
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match="true class 5"):
        metrics.MeanIoU(2).update_state([5], [0])


def _binary_model():
    ember.set_random_seed(1)
    m = ember.Sequential([ember.Input((4,)), layers.Dense(8, activation="relu"),
                          layers.Dense(1, activation="sigmoid")])
    return m


def test_compiled_metrics_cover_the_whole_pass():
    x = rng.standard_normal((200, 4)).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.standard_normal((200, 1)) > 0).astype(np.float32)
    m = _binary_model()
    objs = [metrics.Precision(), metrics.Recall(), metrics.AUC(), metrics.TruePositives(),
            metrics.F1Score(average="micro", threshold=0.5)]
    m.compile(ember.optimizers.SGD(0.0), "binary_crossentropy", metrics=objs)
    logs = m.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    pred = m.predict(x, verbose=0)
    for obj in (metrics.Precision(), metrics.Recall(), metrics.AUC(),
                metrics.TruePositives(), metrics.F1Score(average="micro", threshold=0.5)):
        obj.update_state(y, pred)
        assert logs[obj.name] == pytest.approx(float(obj.result()), rel=1e-5, abs=1e-6), obj.name
    # fit's epoch logs: the same pass (SGD at rate 0 leaves the weights as they are).
    hist = m.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for name in ("precision", "recall", "auc", "true_positives", "f1_score"):
        assert hist.history[name][0] == pytest.approx(logs[name], rel=1e-5, abs=1e-6)
    # Not a mean of per-batch precisions.
    per_batch = []
    for s in range(0, 200, 32):
        b = metrics.Precision()
        b.update_state(y[s:s + 32], pred[s:s + 32])
        per_batch.append(float(b.result()))
    assert abs(np.mean(per_batch) - logs["precision"]) > 1e-4


def test_compiled_metrics_match_keras_training():
    keras = keras_or_skip()
    x = rng.standard_normal((128, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    e = _binary_model()
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    k.set_weights(e.get_weights())
    e.compile(ember.optimizers.Adam(0.01), "binary_crossentropy",
              metrics=[metrics.AUC(name="auc"), metrics.Precision(name="precision")])
    k.compile(keras.optimizers.Adam(0.01), "binary_crossentropy",
              metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision")])
    he = e.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    hk = k.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    for name in ("loss", "auc", "precision"):
        np.testing.assert_allclose(he[name], hk[name], rtol=1e-4, atol=1e-5)
    ke = k.evaluate(x, y, return_dict=True, verbose=0)
    ee = e.evaluate(x, y, return_dict=True, verbose=0)
    for name in ("auc", "precision"):
        assert ee[name] == pytest.approx(ke[name], rel=1e-4, abs=1e-5)


def test_mean_iou_and_r2_in_compile():
    ember.set_random_seed(2)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    m = ember.Sequential([ember.Input((5,)), layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy",
              metrics=[metrics.MeanIoU(3, sparse_y_pred=False)])
    logs = m.evaluate(x, labels, return_dict=True, verbose=0)
    ref = metrics.MeanIoU(3, sparse_y_pred=False)
    ref.update_state(labels, m.predict(x, verbose=0))
    assert logs["mean_io_u"] == pytest.approx(float(ref.result()), rel=1e-6)
    r = ember.Sequential([ember.Input((5,)), layers.Dense(2)])
    yr = rng.standard_normal((60, 2)).astype(np.float32)
    r.compile("adam", "mse", metrics=[metrics.R2Score(), "mape", metrics.RootMeanSquaredError()])
    logs = r.evaluate(x, yr, return_dict=True, verbose=0, batch_size=16)
    pred = r.predict(x, verbose=0)
    r2 = metrics.R2Score()
    r2.update_state(yr, pred)
    assert logs["r2_score"] == pytest.approx(float(r2.result()), rel=1e-5)
    assert logs["root_mean_squared_error"] == pytest.approx(
        float(np.sqrt(np.mean((pred - yr) ** 2))), rel=1e-5)


def test_mean_iou_ignores_a_void_class_as_keras():
    """Segmentation maps mark unlabelled pixels with a void class (255 here, outside
    the classes): ignore_class leaves those pixels out, standalone and in compile."""
    keras = keras_or_skip()
    labels = rng.integers(0, 3, 80)
    labels[::7] = 255
    pred = rng.random((80, 3)).astype(np.float32)
    ours = metrics.MeanIoU(3, ignore_class=255, sparse_y_pred=False)
    theirs = keras.metrics.MeanIoU(3, ignore_class=255, sparse_y_pred=False)
    ours.update_state(labels, pred)
    theirs.update_state(labels, pred)
    assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-6)
    assert ours.get_config()["ignore_class"] == 255
    with pytest.raises(ValueError, match="outside"):
        metrics.MeanIoU(3).update_state(labels, pred.argmax(1))
    x = rng.standard_normal((80, 5)).astype(np.float32)
    m = ember.Sequential([ember.Input((5,)), layers.Dense(3, activation="softmax")])
    m.compile("adam", ember.losses.SparseCategoricalCrossentropy(ignore_class=255),
              metrics=[metrics.MeanIoU(3, ignore_class=255, sparse_y_pred=False)])
    logs = m.evaluate(x, labels, return_dict=True, verbose=0, batch_size=16)
    ref = metrics.MeanIoU(3, ignore_class=255, sparse_y_pred=False)
    ref.update_state(labels, m.predict(x, verbose=0))
    assert logs["mean_io_u"] == pytest.approx(float(ref.result()), rel=1e-6)
