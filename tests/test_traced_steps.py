"""A custom train_step traced into C++ graphs: fit traces it once per batch shape and
runs every batch in one C++ call. The traced step must train as the same step run in
Python (compile(run_eagerly=True)); a step the trace cannot follow runs eagerly; a
Python `if` on a traced tensor is a clear error."""
import numpy as np
import pytest

import ember
from ember import _core, layers, ops, step_trace
from threads import assert_same_weights_at_thread_counts


def _traced(model):
    """The model's traced steps, failing with the reason when a step ran eagerly."""
    steps = list(model._traced_steps.values())
    for s in steps:
        if isinstance(s, Exception):
            raise AssertionError(f"the step was not traced: {s!r}")
    return steps


class Guide(ember.Model):
    """Keras's guide "Customizing what happens in fit()", with a BatchNormalization and
    a kernel regularizer in the model."""

    def __init__(self, bn=False, l2=0.0, **kw):
        super().__init__(**kw)
        self.hidden = layers.Dense(16, activation="relu",
                                   kernel_regularizer=ember.regularizers.l2(l2) if l2 else None)
        self.norm = layers.BatchNormalization() if bn else None
        self.out = layers.Dense(1)

    def call(self, x, training=None):
        h = self.hidden(x)
        if self.norm is not None:
            h = self.norm(h, training=training)
        return self.out(h)

    def train_step(self, data):
        x, y = data
        with ember.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def _regression(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, (x @ rng.standard_normal((5, 1)) + 0.1).astype(np.float32)


def _train_guide(eager, bn=False, l2=0.0, epochs=3):
    ember.set_random_seed(3)
    x, y = _regression()
    m = Guide(bn=bn, l2=l2)
    m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"], run_eagerly=eager)
    m.build((None, 5))
    h = m.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return m, h


@pytest.mark.parametrize("bn,l2", [(False, 0.0), (True, 0.0), (False, 0.01)])
def test_traced_step_trains_as_the_eager_step(bn, l2):
    traced, h1 = _train_guide(False, bn, l2)
    eager, h2 = _train_guide(True, bn, l2)
    assert len(_traced(traced)) == 2  # batches of 16, and the last one of 12
    assert not hasattr(eager, "_traced_steps")
    # BatchNormalization takes the whole batch's statistics; the moving ones move alike.
    for a, b in zip(traced.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert set(h1.history) == {"loss", "mae"}
    for k in h1.history:
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-4)


def test_each_batch_is_one_core_call(monkeypatch):
    calls = []
    real = _core.train_steps
    monkeypatch.setattr(_core, "train_steps", lambda phases: calls.append(len(phases)) or
                        real(phases))
    _train_guide(False, epochs=2)
    assert calls == [1] * 8  # 4 batches an epoch, one phase each


class PairedGAN(ember.Model):
    """Keras's DCGAN step with the noise given as data (so that both runs see the same):
    the discriminator's update, then the generator's through the updated discriminator."""

    def __init__(self, disc, gen, **kw):
        super().__init__(**kw)
        self.disc, self.gen = disc, gen

    def compile(self, d_opt, g_opt, loss_fn, **kw):
        super().compile(**kw)
        self.d_opt, self.g_opt, self.loss_fn = d_opt, g_opt, loss_fn
        self.d_tracker = ember.metrics.Mean(name="d_loss")
        self.g_tracker = ember.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_tracker, self.g_tracker]

    def train_step(self, data):
        real, noise = data
        batch = ops.shape(real)[0]
        fake = self.gen(noise)
        combined = ops.concatenate([fake, real], axis=0)
        labels = ops.concatenate([ops.ones((batch, 1)), ops.zeros((batch, 1))], axis=0)
        with ember.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.disc(combined, training=True))
        grads = tape.gradient(d_loss, self.disc.trainable_weights)
        self.d_opt.apply_gradients(zip(grads, self.disc.trainable_weights))
        with ember.GradientTape() as tape:
            g_loss = self.loss_fn(ops.zeros((batch, 1)),
                                  self.disc(self.gen(noise, training=True), training=True))
        grads = tape.gradient(g_loss, self.gen.trainable_weights)
        self.g_opt.apply_gradients(zip(grads, self.gen.trainable_weights))
        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_loss)
        return {"d_loss": self.d_tracker.result(), "g_loss": self.g_tracker.result()}


def _train_gan(eager, from_logits):
    ember.set_random_seed(5)
    rng = np.random.default_rng(5)
    real = rng.random((48, 12)).astype(np.float32)
    noise = rng.standard_normal((48, 4)).astype(np.float32)
    disc = ember.Sequential([ember.Input((12,)), layers.Dense(8), layers.LeakyReLU(0.2),
                             layers.Dense(1, activation=None if from_logits else "sigmoid")])
    gen = ember.Sequential([ember.Input((4,)), layers.Dense(8), layers.BatchNormalization(),
                            layers.LeakyReLU(0.2), layers.Dense(12, activation="sigmoid")])
    gan = PairedGAN(disc, gen)
    gan.compile(ember.optimizers.Adam(0.01, beta_1=0.5), ember.optimizers.RMSprop(0.01),
                ember.losses.BinaryCrossentropy(from_logits=from_logits), run_eagerly=eager)
    h = gan.fit((real, noise), batch_size=16, epochs=3, shuffle=False, verbose=0)
    return gan, h


@pytest.mark.parametrize("from_logits", [False, True])
def test_two_optimizer_gan_step_traced_as_eager(from_logits):
    traced, h1 = _train_gan(False, from_logits)
    eager, h2 = _train_gan(True, from_logits)
    [step] = _traced(traced)
    assert len(step.trace.phases) == 2
    for a, b in zip(traced.disc.get_weights() + traced.gen.get_weights(),
                    eager.disc.get_weights() + eager.gen.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for k in ("d_loss", "g_loss"):
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=1e-4)


def test_traced_gan_bits_do_not_depend_on_the_thread_count():
    def train():
        gan, _ = _train_gan(False, True)
        _traced(gan)
        return gan.get_weights()
    assert_same_weights_at_thread_counts(train)


class Classifier(ember.Model):
    """A step over a loss object given to compile, with labels of several forms."""

    def __init__(self, loss, **kw):
        super().__init__(**kw)
        self.dense = layers.Dense(4, activation=None if loss.from_logits else "softmax")
        self.loss_obj = loss

    def call(self, x, training=None):
        return self.dense(x)

    def train_step(self, data):
        x, y, sw = data
        with ember.GradientTape() as tape:
            loss = self.loss_obj(y, self(x, training=True), sample_weight=sw)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return {"loss": loss}


@pytest.mark.parametrize("loss", [
    lambda: ember.losses.SparseCategoricalCrossentropy(),
    lambda: ember.losses.SparseCategoricalCrossentropy(from_logits=True),
    lambda: ember.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    lambda: ember.losses.BinaryCrossentropy(label_smoothing=0.2),
    lambda: ember.losses.MeanAbsoluteError(reduction="sum"),
])
def test_traced_loss_formulas_match_the_core_losses(loss):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    sw = rng.random(32).astype(np.float32)
    results = []
    for eager in (False, True):
        ember.set_random_seed(1)
        fn = loss()
        y = labels if fn._sparse else np.eye(4, dtype=np.float32)[labels]
        m = Classifier(fn)
        m.compile(ember.optimizers.SGD(0.1), run_eagerly=eager)
        h = m.fit(x, y, sample_weight=sw, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append((m.get_weights(), h.history["loss"]))
        if not eager:
            _traced(m)
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4)


def test_python_if_on_a_traced_tensor_is_an_error():
    class Branchy(Guide):
        def train_step(self, data):
            x, y = data
            with ember.GradientTape() as tape:
                loss = self.compute_loss(y=y, y_pred=self(x, training=True))
            if loss > 1.0:
                loss = loss * 0.5
            self.optimizer.apply(tape.gradient(loss, self.trainable_weights),
                                 self.trainable_weights)
            return {"loss": loss}
    m = Branchy()
    m.compile("adam", "mse")
    x, y = _regression(8)
    with pytest.raises(ValueError, match="ops.where"):
        m.fit(x, y, verbose=0)
    m.compile("adam", "mse", run_eagerly=True)  # in Python the branch is fine
    m.fit(x, y, verbose=0)


def test_a_step_the_trace_cannot_follow_runs_eagerly():
    class Clipped(Guide):
        def train_step(self, data):
            x, y = data
            with ember.GradientTape() as tape:
                loss = self.compute_loss(y=y, y_pred=self(x, training=True))
            grads = tape.gradient(loss, self.trainable_weights)
            grads = [np.clip(g, -0.1, 0.1) for g in grads]  # arrays: needs values
            self.optimizer.apply(grads, self.trainable_weights)
            return {"loss": loss}
    m = Clipped()
    m.compile(ember.optimizers.SGD(0.1), "mse")
    x, y = _regression(16)
    before = [w.numpy() for w in m.weights] if m.built else None
    h = m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    [reason] = m._traced_steps.values()
    assert isinstance(reason, step_trace.TraceUnsupported)
    assert np.isfinite(h.history["loss"]).all() and before is None


def test_vae_example_step_is_traced():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "vae_train_step.py")
    spec = importlib.util.spec_from_file_location("vae_train_step", path)
    vae_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vae_mod)
    ember.set_random_seed(0)
    (x, _), _ = ember.datasets.digits.load_data()
    images = (x[:256].astype(np.float32) / 16.0)[..., None]
    encoder, decoder = vae_mod.build(8, 2)
    vae = vae_mod.VAE(encoder, decoder)
    vae.compile(optimizer=ember.optimizers.Adam(1e-3))
    h = vae.fit(images, batch_size=64, epochs=4, verbose=0)
    _traced(vae)
    assert set(h.history) == {"loss", "reconstruction_loss", "kl_loss"}
    assert h.history["loss"][-1] < h.history["loss"][0]
    np.testing.assert_allclose(np.array(h.history["reconstruction_loss"]) +
                               np.array(h.history["kl_loss"]), h.history["loss"], rtol=1e-5)


# -- test_step and predict_step overrides ---------------------------------------------------

class Evaluated(Guide):
    """Keras's guide: "Providing your own evaluation step", and a predict_step."""

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        for metric in self.metrics:
            if metric.name != "loss":
                metric.update_state(y, y_pred)
            else:
                metric.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def predict_step(self, data):
        return {"scaled": self(data, training=False) * 2.0, "first": data[:, :1]}


def test_test_step_and_predict_step_overrides():
    x, y = _regression(64)  # equal batches: the guide's tracker averages batch losses
    m = Evaluated(bn=True)
    m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    plain = Guide(bn=True)
    plain.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    plain.build((None, 5))
    plain.set_weights(m.get_weights())
    seen = []
    cb = ember.callbacks.LambdaCallback(on_test_batch_end=lambda b, logs: seen.append(b))
    got = m.evaluate(x, y, batch_size=16, verbose=0, callbacks=[cb])
    want = plain.evaluate(x, y, batch_size=16, verbose=0)
    assert seen == [0, 1, 2, 3]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for s in m._traced_tests.values():  # the test step runs traced too
        assert isinstance(s, step_trace.TracedStep), s
    m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"], run_eagerly=True)
    np.testing.assert_allclose(m.evaluate(x, y, batch_size=16, verbose=0), want, rtol=1e-5)
    m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    assert set(m.evaluate(x, y, verbose=0, return_dict=True)) == {"loss", "mae"}
    out = m.predict(x, batch_size=16, verbose=0)
    np.testing.assert_allclose(out["scaled"], 2.0 * plain.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(out["first"], x[:, :1])
    assert all(isinstance(t, step_trace.TracedStep) for t in m._traced_predicts.values())

    class Super(Guide):
        def test_step(self, data):
            logs = super().test_step(data)
            return {**logs, "extra": 2.0}
    s = Super(bn=True)
    s.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    s.build((None, 5))
    s.set_weights(m.get_weights())
    logs = s.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose([logs["loss"], logs["mae"]], want, rtol=1e-5)
    assert logs["extra"] == 2.0
    assert all(isinstance(t, step_trace.TracedStep) for t in s._traced_tests.values())


def test_a_value_computed_outside_the_tape_stays_a_constant():
    """A target computed from the model outside the tape (a Q-learning target): the
    eager tape does not differentiate through it, so neither may the trace."""
    class TargetStep(Guide):
        def train_step(self, data):
            x, y = data
            target = y + 0.5 * self(x)  # outside the tape: a constant to it
            with ember.GradientTape() as tape:
                loss = ops.mean(ops.square(self(x, training=True) - target))
            self.optimizer.apply(tape.gradient(loss, self.trainable_weights),
                                 self.trainable_weights)
            return {"loss": loss}
    results = []
    for eager in (False, True):
        ember.set_random_seed(3)
        m = TargetStep()
        m.compile(ember.optimizers.SGD(0.05), run_eagerly=eager)
        x, y = _regression(32)
        m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results.append(m.get_weights())
        if not eager:
            _traced(m)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class TwoTapeGAN(PairedGAN):
    """TensorFlow's DCGAN tutorial step: one forward under two tapes, a gradient from
    each, then both updates (the generator's first)."""

    def train_step(self, data):
        real, noise = data
        with ember.GradientTape() as gen_tape, ember.GradientTape() as disc_tape:
            fake = self.gen(noise, training=True)
            real_out = self.disc(real, training=True)
            fake_out = self.disc(fake, training=True)
            g_loss = self.loss_fn(ops.ones_like(fake_out), fake_out)
            d_loss = self.loss_fn(ops.ones_like(real_out), real_out) + \
                self.loss_fn(ops.zeros_like(fake_out), fake_out)
        g_grads = gen_tape.gradient(g_loss, self.gen.trainable_variables)
        d_grads = disc_tape.gradient(d_loss, self.disc.trainable_variables)
        self.g_opt.apply_gradients(zip(g_grads, self.gen.trainable_variables))
        self.d_opt.apply_gradients(zip(d_grads, self.disc.trainable_variables))
        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_loss)
        return {"d_loss": self.d_tracker.result(), "g_loss": self.g_tracker.result()}


def test_two_tapes_over_one_forward_traced_as_eager():
    results = []
    for eager in (False, True):
        ember.set_random_seed(5)
        rng = np.random.default_rng(5)
        real = rng.random((48, 12)).astype(np.float32)
        noise = rng.standard_normal((48, 4)).astype(np.float32)
        disc = ember.Sequential([ember.Input((12,)), layers.Dense(8), layers.LeakyReLU(0.2),
                                 layers.Dense(1)])
        gen = ember.Sequential([ember.Input((4,)), layers.Dense(8), layers.LeakyReLU(0.2),
                                layers.Dense(12, activation="sigmoid")])
        gan = TwoTapeGAN(disc, gen)
        gan.compile(ember.optimizers.Adam(0.01, beta_1=0.5), ember.optimizers.Adam(0.01),
                    ember.losses.BinaryCrossentropy(from_logits=True), run_eagerly=eager)
        h = gan.fit((real, noise), batch_size=16, epochs=3, shuffle=False, verbose=0)
        if not eager:
            [step] = _traced(gan)
            assert [len(g.phases) for g in step.groups] == [2]
        results.append((gan.disc.get_weights() + gan.gen.get_weights(), h.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for k in ("d_loss", "g_loss"):
        np.testing.assert_allclose(results[0][1][k], results[1][1][k], rtol=1e-4)


def test_custom_step_fit_validates():
    x, y = _regression(80)
    m = Evaluated()
    m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    h = m.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "mae", "val_loss", "val_mae"}
    # The last epoch's validation is the model's test_step over the last quarter.
    np.testing.assert_allclose(
        [h.history["val_loss"][-1], h.history["val_mae"][-1]],
        m.evaluate(x[60:], y[60:], batch_size=16, verbose=0), rtol=1e-6)
    h = m.fit(x[:60], y[:60], batch_size=16, epochs=2, validation_data=(x[60:], y[60:]),
              validation_freq=2, verbose=0)
    assert len(h.history["val_loss"]) == 1
    with pytest.raises(ValueError, match="class_weight"):
        m.fit(x, y, class_weight={0: 1.0}, verbose=0)


class Wrapped(ember.Model):
    """The guide's step around a model given to it (called with training=training)."""

    def __init__(self, body, **kw):
        super().__init__(**kw)
        self.body = body

    def call(self, x, training=None):
        return self.body(x, training=training)

    train_step = Guide.train_step


def test_traced_step_over_a_masked_lstm_trains_as_fit():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (40, 12)).astype(np.float32)
    x[:, 8:] = 0
    y = rng.integers(0, 3, 40)
    results = []
    for custom in (True, False):
        ember.set_random_seed(0)
        body = ember.Sequential([ember.Input((12,)), layers.Embedding(50, 8, mask_zero=True),
                                 layers.LSTM(6), layers.Dense(3, activation="softmax")])
        m = Wrapped(body) if custom else body
        m.compile(ember.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        h = m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        if custom:
            _traced(m)
        results.append((m.get_weights(), h.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1]["accuracy"], results[1][1]["accuracy"])


def test_a_traced_step_refuses_bad_data_as_the_eager_step_does():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    labels[20] = 4
    for eager in (False, True):
        m = Classifier(ember.losses.SparseCategoricalCrossentropy())
        m.compile(ember.optimizers.SGD(0.1), run_eagerly=eager)
        with pytest.raises(ValueError, match="label value of 4 .*valid range of \\[0, 4\\)"):
            m.fit(x, labels, sample_weight=np.ones(32, np.float32), batch_size=32, verbose=0)
    bad = x.copy()
    bad[3, 2] = np.nan
    m = Classifier(ember.losses.SparseCategoricalCrossentropy())
    m.compile(ember.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="finite"):
        m.fit(bad, labels % 4, sample_weight=np.ones(32, np.float32), batch_size=32, verbose=0)
    _traced(m)
