"""One test (at least) per callback, with Keras's semantics, plus saving."""
import csv
import os

import numpy as np
import pytest

import ember
from ember import callbacks as cb
from ember.layers import Dense

rng = np.random.default_rng(5)
X = rng.normal(size=(64, 6)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def model(lr=0.01, metrics=("accuracy",)):
    ember.set_random_seed(1)
    m = ember.Sequential([ember.Input((6,)), Dense(8, activation="relu"),
                          Dense(2, activation="softmax")])
    m.compile(ember.optimizers.SGD(lr), "sparse_categorical_crossentropy",
              metrics=list(metrics))
    return m


class Recorder(cb.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
            calls = object.__getattribute__(self, "calls")
            return lambda *a, **k: calls.append(name)
        return object.__getattribute__(self, name)


class EpochWeights(cb.Callback):
    """Keeps the weights at the end of every epoch."""
    def __init__(self):
        super().__init__()
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch] = self.model.get_weights()


def test_base_callback_hooks_in_keras_order():
    r = Recorder()
    m = model()
    m.fit(X, Y, epochs=2, batch_size=32, validation_split=0.25, callbacks=[r], verbose=0)
    assert r.calls[:3] == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin"]
    assert "on_test_begin" in r.calls and r.calls[-1] == "on_train_end"
    assert r.calls.count("on_epoch_end") == 2 and r.calls.count("on_train_batch_end") == 4
    m.evaluate(X, Y, callbacks=[r], verbose=0)
    m.predict(X, callbacks=[r], verbose=0)
    assert "on_predict_batch_end" in r.calls and "on_test_batch_end" in r.calls
    # on_train_batch_* fall back to the older on_batch_* names.
    seen = []

    class Old(cb.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)
    model().fit(X, Y, epochs=1, batch_size=16, callbacks=[Old()], verbose=0)
    assert seen == [0, 1, 2, 3]


def test_history_keys_follow_keras():
    h = model().fit(X, Y, epochs=3, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h.epoch == [0, 1, 2] and all(len(v) == 3 for v in h.history.values())


def test_stop_training_from_a_callback():
    class StopAt(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True
    h = model().fit(X, Y, epochs=10, callbacks=[StopAt()], verbose=0)
    assert len(h.history["loss"]) == 2


def test_early_stopping_patience_and_restore_best_weights():
    m = model(lr=0.0)  # nothing improves: stops after patience epochs
    es = cb.EarlyStopping(monitor="loss", patience=2)
    h = m.fit(X, Y, epochs=20, callbacks=[es], verbose=0)
    assert len(h.history["loss"]) == 3 and es.stopped_epoch == 2

    m = model(lr=0.5)
    es = cb.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    rec = EpochWeights()
    # Epochs 0-1 learn; from epoch 2 the learning rate makes every epoch worse.
    lrs = cb.LearningRateScheduler(lambda epoch, lr: 0.5 if epoch < 2 else 50.0)
    h = m.fit(X, Y, epochs=30, callbacks=[lrs, rec, es], verbose=0)
    assert m.stop_training
    best = int(np.argmin(h.history["loss"]))
    last = len(h.history["loss"]) - 1
    assert best < last
    for restored, at_best, at_last in zip(m.get_weights(), rec.at[best], rec.at[last]):
        np.testing.assert_array_equal(restored, at_best)
    assert any(not np.array_equal(a, b) for a, b in zip(rec.at[best], rec.at[last]))


def test_early_stopping_start_from_epoch_and_baseline():
    es = cb.EarlyStopping(monitor="loss", patience=0, start_from_epoch=4)
    h = model(lr=0.0).fit(X, Y, epochs=20, callbacks=[es], verbose=0)
    assert len(h.history["loss"]) == 6  # epochs 0-3 unwatched, 4 sets best, 5 stops
    # A baseline never beaten: the wait is never reset (epoch 0 counts as 1).
    es = cb.EarlyStopping(monitor="accuracy", patience=2, baseline=1.01)
    h = model(lr=0.0).fit(X, Y, epochs=20, callbacks=[es], verbose=0)
    assert len(h.history["loss"]) == 2


def test_unknown_monitor_warns_or_raises_like_keras():
    with pytest.warns(UserWarning, match="`val_nope` which is not available"):
        model().fit(X, Y, epochs=2, callbacks=[cb.EarlyStopping("val_nope", mode="min")],
                    verbose=0)
    with pytest.raises(ValueError, match="monitor=nope"):
        model().fit(X, Y, epochs=1, callbacks=[cb.EarlyStopping("nope")], verbose=0)
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric"):
        model().fit(X, Y, epochs=1, callbacks=[cb.ReduceLROnPlateau("val_loss")], verbose=0)
    with pytest.warns(UserWarning, match="mode 'sideways' is unknown"):
        cb.EarlyStopping(mode="sideways")


def test_model_checkpoint_every_epoch_best_only_and_weights(tmp_path):
    path = str(tmp_path / "ck-{epoch:02d}-{loss:.2f}.keras")
    m = model()
    m.fit(X, Y, epochs=2, callbacks=[cb.ModelCheckpoint(path, monitor="loss")], verbose=0)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and files[0].startswith("ck-01-") and files[1].startswith("ck-02-")
    back = ember.models.load_model(tmp_path / files[1])
    np.testing.assert_array_equal(back.predict(X, verbose=0), m.predict(X, verbose=0))
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert back.optimizer.learning_rate == pytest.approx(0.01)

    best = tmp_path / "best.weights.h5"
    ck = cb.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True,
                            save_weights_only=True)
    ck_weights = EpochWeights()
    m.fit(X, Y, epochs=3, validation_split=0.25, callbacks=[ck, ck_weights], verbose=0)
    assert best.exists() and ck.best is not None
    other = model()
    other.load_weights(best)
    # The file holds the weights of the epoch with the best val_accuracy.
    h = m.history.history["val_accuracy"]
    assert ck.best == max(h)
    for a, b in zip(other.get_weights(), ck_weights.at[int(np.argmax(h))]):
        np.testing.assert_array_equal(a, b)

    batch_path = tmp_path / "b-{epoch}-{batch}.keras"
    m.fit(X, Y, epochs=1, batch_size=16, verbose=0,
          callbacks=[cb.ModelCheckpoint(str(batch_path), save_freq=2, monitor="loss")])
    assert {"b-1-2.keras", "b-1-4.keras"} <= set(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        cb.ModelCheckpoint(tmp_path / "x.keras", save_weights_only=True)
    with pytest.raises(ValueError, match="must end in `.keras`"):
        cb.ModelCheckpoint(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        cb.ModelCheckpoint(tmp_path / "x.keras", save_freq="batch")


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    """A crash in the middle of a save leaves the previous good file and no debris."""
    path = tmp_path / "m.keras"
    m = model()
    m.save(path)
    good = path.read_bytes()
    saved_weights = m.get_weights()
    import zipfile

    def boom(self, *a, **k):
        raise KeyboardInterrupt("simulated crash")
    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, Y, epochs=1, verbose=0,
              callbacks=[cb.ModelCheckpoint(path, monitor="loss")])
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.keras"]
    for a, b in zip(ember.models.load_model(path).get_weights(), saved_weights):
        np.testing.assert_array_equal(a, b)


def test_corrupt_files_raise_clearly(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.keras is neither a .keras archive nor"):
        ember.models.load_model(bad)
    badw = tmp_path / "bad.weights.h5"
    badw.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.weights.h5 is neither an HDF5"):
        model().load_weights(badw)
    with pytest.raises(FileNotFoundError):
        ember.models.load_model(tmp_path / "missing.keras")


def test_reduce_lr_on_plateau():
    m = model(lr=0.0)
    r = cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=1, min_lr=0.0)
    m.optimizer.learning_rate = 0.0
    h = m.fit(X, Y, epochs=1, callbacks=[r], verbose=0)
    assert h.history["learning_rate"] == [0.0]
    m = model(lr=1e-9)
    r = cb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=2,
                             min_delta=1.0)
    h = m.fit(X, Y, epochs=5, callbacks=[r], verbose=0)
    # Keras's counting: epoch 0 sets best; 1 reduces; 2 is cooldown (counter 2 -> 1);
    # 3 ends the cooldown (1 -> 0) and reduces in the same epoch; logs show the rate
    # before each epoch's reduction.
    np.testing.assert_allclose(h.history["learning_rate"],
                               [1e-9, 1e-9, 5e-10, 5e-10, 2.5e-10], rtol=1e-6)
    assert m.optimizer.learning_rate == pytest.approx(2.5e-10)
    with pytest.raises(ValueError, match="factor >= 1.0"):
        cb.ReduceLROnPlateau(factor=2)


def test_learning_rate_scheduler_both_signatures():
    m = model()
    h = m.fit(X, Y, epochs=3, verbose=0,
              callbacks=[cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    np.testing.assert_allclose(h.history["learning_rate"], [0.005, 0.0025, 0.00125])
    h = m.fit(X, Y, epochs=2, verbose=0,
              callbacks=[cb.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))])
    np.testing.assert_allclose(h.history["learning_rate"], [0.1, 0.05])
    with pytest.raises(ValueError, match="should be a float"):
        m.fit(X, Y, epochs=1, verbose=0,
              callbacks=[cb.LearningRateScheduler(lambda epoch: "fast")])
    with pytest.raises(ValueError, match="learning_rate=-1"):
        m.fit(X, Y, epochs=1, verbose=0,
              callbacks=[cb.LearningRateScheduler(lambda epoch: -1.0)])


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    model().fit(X, Y, epochs=2, validation_split=0.25, verbose=0,
                callbacks=[cb.CSVLogger(path)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    model().fit(X, Y, epochs=1, validation_split=0.25, verbose=0,
                callbacks=[cb.CSVLogger(path, append=True)])
    rows = list(csv.reader(open(path)))
    assert len(rows) == 4 and rows[3][0] == "0"
    path2 = tmp_path / "sep.csv"
    model().fit(X, Y, epochs=2, validation_split=0.25, validation_freq=2, verbose=0,
                callbacks=[cb.CSVLogger(path2, separator=";")])
    lines = open(path2).read().splitlines()
    assert lines[0] == "epoch;accuracy;loss;val_accuracy;val_loss"
    assert lines[1].endswith(";NA;NA")


def test_lambda_callback():
    seen = []
    lc = cb.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(("e", epoch)),
                           on_train_begin=lambda logs: seen.append("begin"),
                           on_train_batch_end=lambda batch, logs: seen.append(("b", batch)),
                           on_test_end=lambda logs: seen.append("test"))
    model().fit(X, Y, epochs=1, batch_size=32, validation_split=0.5, callbacks=[lc], verbose=0)
    assert seen == ["begin", ("b", 0), "test", ("e", 0)]
    with pytest.raises(ValueError, match="unknown hook 'on_nothing'"):
        cb.LambdaCallback(on_nothing=print)


def test_terminate_on_nan(capsys):
    m = ember.Sequential([ember.Input((6,)), Dense(2)])
    m.compile(ember.optimizers.SGD(1e30), "mse")
    h = m.fit(X * 1e10, np.eye(2)[Y], epochs=5, batch_size=8,
              callbacks=[cb.TerminateOnNaN()], verbose=0)
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert len(h.history.get("loss", [])) <= 1
