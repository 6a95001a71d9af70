"""GradientTape and custom training steps: tape gradients against the C++ training
step and float64 finite differences, train_step overrides driven by fit (Keras's
guide's CustomModel and the DCGAN pattern), and the errors misuse gets."""
import numpy as np
import pytest

import ember
from ember import layers, ops


def _mlp(seed=0, dropout=0.0, bn=False):
    ember.set_random_seed(seed)
    stack = [ember.Input((6,)), layers.Dense(8, activation="tanh")]
    if bn:
        stack.append(layers.BatchNormalization())
    if dropout:
        stack.append(layers.Dropout(dropout))
    return ember.Sequential(stack + [layers.Dense(3, activation="softmax")])


def _data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("bn", [False, True])
def test_tape_gradients_are_those_of_the_training_step(bn):
    x, y = _data()
    model = _mlp(bn=bn)
    loss_fn = ember.losses.SparseCategoricalCrossentropy()
    moving = [w.numpy() for w in model.non_trainable_weights]
    with ember.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    # The C++ step with SGD(1.0): the update is the gradient.
    ref = _mlp(bn=bn)
    ref.set_weights([w.numpy() for w in model.weights])
    for w, m in zip(ref.non_trainable_weights, moving):
        w.assign(m)
    ref.compile(ember.optimizers.SGD(1.0), "sparse_categorical_crossentropy")
    before = [w.numpy() for w in ref.trainable_weights]
    ref_loss = ref.train_on_batch(x, y)
    assert abs(float(loss) - float(ref_loss)) < 1e-6
    for g, b, w in zip(grads, before, ref.trainable_weights):
        np.testing.assert_allclose(g, b - w.numpy(), rtol=1e-5, atol=1e-7)
    if bn:  # the moving statistics moved once, as in the C++ step
        for a, b in zip(model.non_trainable_weights, ref.non_trainable_weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def _central_difference(f, w, eps=1e-3):
    g = np.zeros(w.shape)
    base = w.numpy().astype(np.float64)
    for i in np.ndindex(w.shape):
        for sign in (1, -1):
            v = base.copy()
            v[i] += sign * eps
            w.assign(v)
            g[i] += sign * f() / (2 * eps)
    w.assign(base)
    return g


def test_tape_through_two_models_and_ops_matches_finite_differences():
    ember.set_random_seed(3)
    gen = ember.Sequential([ember.Input((2,)), layers.Dense(4, activation="tanh")])
    disc = ember.Sequential([ember.Input((4,)), layers.Dense(1)])
    z = np.random.default_rng(2).standard_normal((5, 2)).astype(np.float32)

    def loss_of(tape=None):
        h = gen(z)
        both = ops.concatenate([h, ops.square(h) * 0.5], axis=0)
        mixed = ops.where(both > 0, both, both * 0.1)
        p = disc(mixed[:5] + ops.softmax(mixed[5:], axis=-1))
        return ops.mean(ops.square(p - 1.0)) + ops.max(ops.abs(p)) * 0.1

    with ember.GradientTape() as tape:
        loss = loss_of()
    variables = gen.trainable_weights + disc.trainable_weights
    grads = tape.gradient(loss, variables)
    for g, w in zip(grads, variables):
        num = _central_difference(lambda: float(np.asarray(loss_of(), np.float64)), w)
        np.testing.assert_allclose(g, num, rtol=2e-2, atol=2e-3)


def test_tape_rules():
    model = _mlp()
    other = layers.Dense(2)
    other.build((6,))
    x, y = _data()
    with ember.GradientTape() as tape:
        loss = ember.losses.SparseCategoricalCrossentropy()(y, model(x))
    assert tape.gradient(loss, other.kernel) is None  # the loss does not reach it
    with pytest.raises(RuntimeError, match="non-persistent"):
        tape.gradient(loss, model.trainable_weights)
    with ember.GradientTape(persistent=True) as tape:
        t = ops.convert_to_tensor(np.array([1.0, 2.0, 3.0], np.float32))
        tape.watch(t)
        s = ops.sum(t * t)
    np.testing.assert_allclose(tape.gradient(s, t), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(tape.gradient(s, [t])[0], [2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="watch takes ember Tensors"):
        with ember.GradientTape() as tape:
            tape.watch(np.ones(3))
    with pytest.raises(ValueError, match="gradient for 'dense.*/kernel' has shape"):
        ember.optimizers.SGD().apply([np.ones((2, 2))], [model.trainable_weights[0]])
    with pytest.raises(ValueError, match="received 1 gradients for 2 variables"):
        ember.optimizers.SGD().apply([None], model.trainable_weights[:2])


# -- train_step overrides -------------------------------------------------------------------

class CustomModel(ember.Model):
    """Keras's guide "Customizing what happens in fit()": a train_step over the compiled
    loss and metrics."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.hidden = layers.Dense(16, activation="relu")
        self.out = layers.Dense(1)

    def call(self, x, training=None):
        return self.out(self.hidden(x))

    def train_step(self, data):
        x, y = data
        with ember.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def test_guide_custom_train_step_matches_the_built_in_step():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 1))).astype(np.float32)

    class Plain(CustomModel):
        train_step = ember.Model.train_step

    custom, plain = CustomModel(), Plain()
    for m in (custom, plain):
        m.compile(ember.optimizers.Adam(0.01), "mse", metrics=["mae"])
    custom.build((None, 5))
    plain.build((None, 5))
    plain.set_weights(custom.get_weights())
    assert custom._custom_step and not plain._custom_step
    h1 = custom.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    h2 = plain.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert set(h1.history) == {"loss", "mae"}
    for a, b in zip(custom.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Logs: means over the epoch's batches, as Keras's trackers give them.
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(h1.history["mae"], h2.history["mae"], rtol=1e-4)


def test_super_train_step_and_metric_logs():
    class Logged(CustomModel):
        def train_step(self, data):
            logs = super().train_step(data)
            logs["extra"] = 1.5
            return logs

    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    m = Logged()
    m.compile("adam", "mse", metrics=["mae"])
    seen = []
    cb = ember.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs))
    hist = m.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb])
    assert set(hist.history) == {"loss", "mae", "extra"}
    assert len(seen) == 8 and all(isinstance(v, float) for v in seen[0].values())


def _example_gan():
    """The GAN class of examples/dcgan_train_step.py (Keras's DCGAN-overriding-train_step
    pattern), imported from the example itself."""
    import importlib.util
    import os
    import sys
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples")
    sys.path.insert(0, examples)  # the example imports dcgan.py beside it
    try:
        spec = importlib.util.spec_from_file_location(
            "dcgan_train_step", os.path.join(examples, "dcgan_train_step.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(examples)
    return module.GAN


def test_gan_train_step_moves_samples_toward_the_data():
    ember.set_random_seed(6)
    (x, _), _ = ember.datasets.digits.load_data()
    real = (x.reshape(-1, 64).astype(np.float32) / 16.0)[:512]
    latent = 8
    disc = ember.Sequential([ember.Input((64,)), layers.Dense(32), layers.LeakyReLU(0.2),
                             layers.Dense(1)])
    gen = ember.Sequential([ember.Input((latent,)), layers.Dense(32), layers.LeakyReLU(0.2),
                            layers.Dense(64, activation="sigmoid")])
    gan = _example_gan()(disc, gen, latent)
    gan.compile(ember.optimizers.Adam(2e-3, beta_1=0.5), ember.optimizers.Adam(2e-3, beta_1=0.5),
                ember.losses.BinaryCrossentropy(from_logits=True))
    probe = ember.random.normal((256, latent), seed=7)
    gap = lambda: float(np.abs(gen.predict(probe, verbose=0).mean(0) - real.mean(0)).mean())
    before = gap()
    disc_before = [w.numpy() for w in disc.weights]
    hist = gan.fit(real, batch_size=64, epochs=10, verbose=0)
    assert set(hist.history) == {"d_loss", "g_loss"} and len(hist.history["d_loss"]) == 10
    assert all(np.isfinite(hist.history["g_loss"]))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(disc_before, disc.weights))
    after = gap()
    assert after < 0.5 * before, (before, after)


def test_custom_step_fit_refuses_what_it_cannot_honour():
    m = CustomModel()
    m.compile("adam", "mse")
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="class_weight"):
        m.fit(x, np.zeros((4, 1), np.float32), class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        m.fit(x, np.zeros((4, 1), np.float32), validation_data=x, verbose=0)

    class Bad(CustomModel):
        def train_step(self, data):
            return 3.0
    b = Bad()
    b.compile("adam", "mse")
    with pytest.raises(ValueError, match="must return a dict"):
        b.fit(x, np.zeros((4, 1), np.float32), verbose=0)


# -- random values inside a model: Keras's VAE ---------------------------------------------

class Sampling(layers.Layer):
    """Keras's VAE example's sampling layer: z = mean + exp(log_var / 2) * eps."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = ember.random.SeedGenerator(1337) if seed is None else seed

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch, dim = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
        epsilon = ember.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def sampling_model(seed=None):
    zm, zl = ember.Input((3,)), ember.Input((3,))
    return ember.Model([zm, zl], Sampling(seed)([zm, zl]))


def test_random_values_inside_a_model_are_drawn_at_each_call():
    rng = np.random.default_rng(20)
    zm = rng.standard_normal((4000, 3)).astype(np.float32)
    zl = (0.3 * rng.standard_normal((4000, 3))).astype(np.float32)
    m = sampling_model()
    z1, z2 = m.predict([zm, zl], verbose=0), m.predict([zm, zl], verbose=0)
    eps = (z1 - zm) / np.exp(0.5 * zl)
    assert abs(eps.mean()) < 0.03 and abs(eps.std() - 1) < 0.03
    assert not np.array_equal(z1, z2)
    fixed = sampling_model(seed=5)  # an integer seed: the same values each call
    np.testing.assert_array_equal(fixed.predict([zm, zl], verbose=0),
                                  fixed.predict([zm, zl], verbose=0))
    # Under a tape the gradient goes through this call's values.
    a, b = ember.Tensor(zm[:5]), ember.Tensor(zl[:5])
    with ember.GradientTape() as tape:
        tape.watch(a)
        tape.watch(b)
        z = m([a, b], training=True)
        loss = ops.sum(z * z)
    ga, gb = tape.gradient(loss, [a, b])
    zv = np.asarray(z, np.float64)
    eps = (zv - zm[:5]) / np.exp(0.5 * zl[:5])
    np.testing.assert_allclose(ga, 2 * zv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, 2 * zv * 0.5 * np.exp(0.5 * zl[:5]) * eps, rtol=1e-4,
                               atol=1e-6)
    u = ember.Input((4,))
    draws = ember.Model(u, u + ember.random.uniform((None, 4), -2.0, 3.0, seed=9)).predict(
        np.zeros((500, 4), np.float32), verbose=0)
    assert draws.min() >= -2.0 and draws.max() < 3.0 and abs(draws.mean() - 0.5) < 0.1
    with pytest.raises(ValueError, match="positive axes after the batch"):
        ember.random.normal((None,))


def test_random_values_do_not_depend_on_the_thread_count():
    from threads import assert_same_weights_at_thread_counts
    zm = np.random.default_rng(21).standard_normal((300, 3)).astype(np.float32)

    def run():
        m = sampling_model()
        return [m.predict([zm, zm], verbose=0), m.predict([zm, zm], verbose=0)]
    assert_same_weights_at_thread_counts(run)


class VAE(ember.Model):
    """Keras's VAE example (train_step alone, no call), on ember.GradientTape."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.total_loss_tracker = ember.metrics.Mean(name="total_loss")
        self.kl_loss_tracker = ember.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with ember.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            rec = ops.mean(ops.sum(ops.square(data - reconstruction), axis=1))
            kl = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl = ops.mean(ops.sum(kl, axis=1))
            total = rec + kl
        grads = tape.gradient(total, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total)
        self.kl_loss_tracker.update_state(kl)
        return {"loss": self.total_loss_tracker.result(),
                "kl_loss": self.kl_loss_tracker.result()}


def test_keras_vae_example_trains():
    ember.set_random_seed(4)
    i = ember.Input((6,))
    h = layers.Dense(16, activation="relu")(i)
    zm, zl = layers.Dense(2)(h), layers.Dense(2)(h)
    encoder = ember.Model(i, [zm, zl, Sampling()([zm, zl])])
    d = ember.Input((2,))
    decoder = ember.Model(d, layers.Dense(6)(layers.Dense(16, activation="relu")(d)))
    vae = VAE(encoder, decoder)
    assert len(vae.trainable_weights) == 10  # the parts' weights, as Keras lists them
    rng = np.random.default_rng(22)
    x = (rng.standard_normal((512, 2)) @ rng.standard_normal((2, 6))).astype(np.float32)
    vae.compile(optimizer=ember.optimizers.Adam(0.01))
    h = vae.fit(x, epochs=8, batch_size=64, verbose=0).history
    assert sorted(h) == ["kl_loss", "loss"]
    assert h["loss"][-1] < 0.7 * h["loss"][0]


def test_function_form_losses_on_a_tape_keep_their_gradient():
    """Keras's VAE sums keras.losses.binary_crossentropy(data, reconstruction) over the
    pixels inside its train_step: the function forms follow the tape."""
    from gradcheck import numeric_grad
    rng = np.random.default_rng(23)
    target = rng.random((3, 4, 5)).astype(np.float32)
    pred = (0.05 + 0.9 * rng.random((3, 4, 5))).astype(np.float32)
    probs = rng.random((3, 5)).astype(np.float32) + 0.1
    onehot = np.eye(5, dtype=np.float32)[[0, 3, 1]]
    reference = {  # float64, for the finite differences
        "binary_crossentropy": lambda t, p: -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p), -1),
        "mean_squared_error": lambda t, p: np.mean((p - t) ** 2, -1),
        "mean_absolute_error": lambda t, p: np.mean(np.abs(p - t), -1),
        "categorical_crossentropy": lambda t, p: -np.sum(t * np.log(p / p.sum(-1, keepdims=True)),
                                                         -1)}
    for name, t, p in (("binary_crossentropy", target, pred),
                       ("mean_squared_error", target, pred),
                       ("mean_absolute_error", target, pred),
                       ("categorical_crossentropy", onehot, probs)):
        fn = getattr(ember.losses, name)
        y = ember.Tensor(p)
        with ember.GradientTape() as tape:
            tape.watch(y)
            per = fn(t, y)
            loss = ops.sum(per)
        np.testing.assert_allclose(np.asarray(per), fn(t, p), rtol=1e-5, atol=1e-6)
        p64 = p.astype(np.float64)
        grad = numeric_grad(lambda: float(np.sum(reference[name](t, p64))), p64)
        np.testing.assert_allclose(tape.gradient(loss, y), grad, rtol=2e-3, atol=1e-4,
                                   err_msg=name)
    with pytest.raises(ValueError, match="ember.losses.huber on a GradientTape"):
        with ember.GradientTape():
            ember.losses.huber(target, ember.Tensor(pred))


def test_tape_gradient_of_an_embedding_table_is_dense():
    """An Embedding's table under a tape: the gradient of the rows the batch used, as a
    dense array (the C++ step's sparse update, made dense), through an LSTM."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (16, 12)).astype(np.float32)
    x[:, 9:] = 0
    y = rng.integers(0, 3, 16)

    def make():
        ember.set_random_seed(0)
        return ember.Sequential([ember.Input((12,)), layers.Embedding(50, 8, mask_zero=True),
                                 layers.LSTM(6), layers.Dense(3, activation="softmax")])
    model = make()
    with ember.GradientTape() as tape:
        loss = ember.losses.SparseCategoricalCrossentropy()(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    ref = make()
    ref.compile(ember.optimizers.SGD(1.0), "sparse_categorical_crossentropy")
    before = [w.numpy() for w in ref.trainable_weights]
    ref.train_on_batch(x, y)
    assert np.abs(grads[0]).max() > 0
    unused = np.setdiff1d(np.arange(50), x)
    assert not grads[0][unused].any()
    for g, b, w in zip(grads, before, ref.trainable_weights):
        np.testing.assert_allclose(g, b - w.numpy(), rtol=1e-5, atol=1e-7)
