"""A DCGAN in the classic Keras recipe: a generator (Dense, Reshape, Conv2DTranspose,
BatchNormalization, LeakyReLU) and a discriminator (Conv2D, LeakyReLU, Dropout), trained
with train_on_batch. The discriminator is compiled, then frozen inside the combined model
(ember reads `trainable` when a model is compiled, as Keras 2 documented it).

Trains on MNIST when mnist.npz is in the Keras cache (~/.keras/datasets), else on the 8x8
digits that ship with ember. Prints how far the generator's samples are from the data
(the distance between their mean images and between their per-pixel deviations) before
and after training, which should shrink.

    python examples/dcgan.py [--steps 300] [--dataset auto|mnist|digits]
"""
import argparse
import os
import time

import numpy as np

import ember
from ember import layers


def load_images(dataset):
    """Images (n, h, w, 1) scaled to [-1, 1], and the data set's name."""
    cached = os.path.exists(os.path.join(os.environ.get("KERAS_HOME") or
                                         os.path.expanduser("~/.keras"), "datasets", "mnist.npz"))
    if dataset == "mnist" or (dataset == "auto" and cached):
        (x, _), _ = ember.datasets.mnist.load_data()
        return (x.astype("float32") / 127.5 - 1.0)[..., None], "mnist"
    (x, _), _ = ember.datasets.digits.load_data()
    return (x.astype("float32") / 8.0 - 1.0)[..., None], "digits"


def build(size, latent):
    """(generator, discriminator) for square images of `size` (8 or 28) pixels."""
    base = size // 4
    generator = ember.Sequential([
        layers.Input((latent,)),
        layers.Dense(base * base * 64, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Reshape((base, base, 64)),
        layers.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),
    ], name="generator")
    discriminator = ember.Sequential([
        layers.Input((size, size, 1)),
        layers.Conv2D(32, 3, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Dropout(0.3),
        layers.Conv2D(64, 3, strides=2, padding="same"),
        layers.LeakyReLU(0.2),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")
    return generator, discriminator


def distance(fake, real):
    """How far generated images are from the data: mean-image and deviation gaps."""
    return (float(np.abs(fake.mean(0) - real.mean(0)).mean()) +
            float(np.abs(fake.std(0) - real.std(0)).mean()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dataset", choices=["auto", "mnist", "digits"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    images, name = load_images(args.dataset)
    latent = 16
    generator, discriminator = build(images.shape[1], latent)
    discriminator.compile(ember.optimizers.Adam(2e-4, beta_1=0.5), "binary_crossentropy")
    discriminator.trainable = False  # frozen inside gan, read when gan is compiled
    gan = ember.Sequential([generator, discriminator])
    gan.compile(ember.optimizers.Adam(2e-4, beta_1=0.5), "binary_crossentropy")

    probe = rng.normal(size=(512, latent)).astype("float32")
    real = images[rng.choice(len(images), 512, replace=False)]
    before = distance(generator.predict(probe, verbose=0), real)
    half = args.batch_size // 2
    start = time.perf_counter()
    for step in range(args.steps):
        batch = images[rng.integers(0, len(images), half)]
        z = rng.normal(size=(half, latent)).astype("float32")
        fake = generator.predict(z, verbose=0)
        d_loss = discriminator.train_on_batch(np.concatenate([batch, fake]),
                                              np.r_[np.full(half, 0.9), np.zeros(half)])
        z = rng.normal(size=(args.batch_size, latent)).astype("float32")
        g_loss = gan.train_on_batch(z, np.ones(args.batch_size))
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: d_loss {d_loss:.3f}  g_loss {g_loss:.3f}")
    seconds = time.perf_counter() - start
    after = distance(generator.predict(probe, verbose=0), real)
    print(f"{name} {images.shape[1]}x{images.shape[2]}: distance to the data {before:.3f} -> "
          f"{after:.3f}")
    print(f"{args.steps} steps in {seconds:.1f} s ({args.steps / seconds:.0f} steps/s, "
          f"{ember.config.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
