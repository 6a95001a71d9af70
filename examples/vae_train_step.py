"""A variational autoencoder written as Keras 3's "Variational AutoEncoder" example
writes it: a Sampling layer drawing z = mean + exp(log_var / 2) * eps inside the
encoder (ember.random.normal with the batch axis as None: the graph draws eps for every
sample at each call), an encoder of three outputs, a convolutional decoder, and a
VAE(ember.Model) with a train_step alone (no call) that sums the binary crossentropy
over the pixels and adds the KL divergence, under an ember.GradientTape. fit traces the
step once into C++ graphs and runs every batch in one C++ call.

Trains on MNIST when mnist.npz is in the Keras cache, else on the 8x8 digits that ship
with ember, and prints the reconstruction error of held-out images against that of
the mean image.

    python examples/vae_train_step.py [--epochs 60] [--dataset auto|mnist|digits]
"""
import argparse
import os
import time

import numpy as np

import ember
from ember import layers, ops


class Sampling(layers.Layer):
    """z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, 1) drawn at each call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = ember.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch, dim = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
        epsilon = ember.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def build(size, latent_dim=2):
    """(encoder, decoder) for square images of `size` (8 or 28) pixels."""
    base = size // 4
    inputs = ember.Input((size, size, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = ember.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    latent = ember.Input((latent_dim,))
    x = layers.Dense(base * base * 64, activation="relu")(latent)
    x = layers.Reshape((base, base, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return encoder, ember.Model(latent, outputs, name="decoder")


class VAE(ember.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = ember.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = ember.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = ember.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker,
                self.kl_loss_tracker]

    def train_step(self, data):
        with ember.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.sum(
                ember.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {"loss": self.total_loss_tracker.result(),
                "reconstruction_loss": self.reconstruction_loss_tracker.result(),
                "kl_loss": self.kl_loss_tracker.result()}


def load_images(dataset):
    """(train, test) images (n, h, w, 1) in [0, 1], and the data set's name."""
    cached = os.path.exists(os.path.join(os.environ.get("KERAS_HOME") or
                                         os.path.expanduser("~/.keras"), "datasets", "mnist.npz"))
    if dataset == "mnist" or (dataset == "auto" and cached):
        (x, _), (t, _) = ember.datasets.mnist.load_data()
        scale, name = 255.0, "mnist"
    else:
        (x, _), (t, _) = ember.datasets.digits.load_data()
        scale, name = 16.0, "digits"
    return ((x.astype("float32") / scale)[..., None], (t.astype("float32") / scale)[..., None],
            name)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dataset", choices=["auto", "mnist", "digits"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    train, test, name = load_images(args.dataset)
    vae = VAE(*build(train.shape[1]))
    vae.compile(optimizer=ember.optimizers.Adam(1e-3))
    start = time.perf_counter()
    history = vae.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    h = history.history
    print(f"{name}: {len(train)} images, {args.epochs} epochs in {seconds:.1f} s")
    print(f"loss {h['loss'][0]:.2f} -> {h['loss'][-1]:.2f} (reconstruction "
          f"{h['reconstruction_loss'][-1]:.2f}, KL {h['kl_loss'][-1]:.2f})")
    z_mean, _, _ = vae.encoder.predict(test, verbose=0)
    rebuilt = vae.decoder.predict(z_mean, verbose=0)
    error = float(np.mean((rebuilt - test) ** 2))
    baseline = float(np.mean((train.mean(0) - test) ** 2))
    print(f"held-out reconstruction error {error:.4f} (the mean image's {baseline:.4f})")


if __name__ == "__main__":
    main()
