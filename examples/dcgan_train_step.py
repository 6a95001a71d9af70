"""A DCGAN written as Keras 3's example "DCGAN overriding Model.train_step" writes it: a
GAN(ember.Model) with two optimizers, whose train_step trains the discriminator on real
and generated images, then the generator through the discriminator, each under an
ember.GradientTape; `fit` traces the step once into C++ graphs and runs every batch in
one C++ call (compile(run_eagerly=True) runs it in Python instead).

The generator and discriminator are those of examples/dcgan.py (Conv2DTranspose,
BatchNormalization, LeakyReLU; Conv2D, Dropout). Trains on MNIST when mnist.npz is in
the Keras cache, else on the 8x8 digits that ship with ember, and prints how far the
generator's samples are from the data before and after training.

    python examples/dcgan_train_step.py [--epochs 15] [--dataset auto|mnist|digits]
"""
import argparse
import time

import numpy as np

import ember
from ember import ops
from dcgan import build, distance, load_images


class GAN(ember.Model):
    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.seed_generator = ember.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = ember.metrics.Mean(name="d_loss")
        self.g_loss_metric = ember.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = ops.shape(real_images)[0]
        noise = ember.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        generated = self.generator(noise)
        combined = ops.concatenate([generated, real_images], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))],
                                 axis=0)
        # Noise on the labels, a known trick.
        labels = labels + 0.05 * ember.random.uniform(ops.shape(labels),
                                                       seed=self.seed_generator)
        # The discriminator learns to tell generated (1) from real (0) images.
        with ember.GradientTape() as tape:
            predictions = self.discriminator(combined, training=True)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        # The generator learns to make the discriminator say "real", without updating it.
        noise = ember.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading = ops.zeros((batch_size, 1))
        with ember.GradientTape() as tape:
            predictions = self.discriminator(self.generator(noise, training=True),
                                             training=True)
            g_loss = self.loss_fn(misleading, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dataset", choices=["auto", "mnist", "digits"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    images, name = load_images(args.dataset)
    latent = 16
    generator, discriminator = build(images.shape[1], latent)
    gan = GAN(discriminator, generator, latent)
    gan.compile(ember.optimizers.Adam(2e-4, beta_1=0.5), ember.optimizers.Adam(2e-4, beta_1=0.5),
                ember.losses.BinaryCrossentropy())

    rng = np.random.default_rng(args.seed)
    probe = rng.normal(size=(512, latent)).astype("float32")
    real = images[rng.choice(len(images), 512, replace=False)]
    before = distance(generator.predict(probe, verbose=0), real)
    start = time.perf_counter()
    gan.fit(images, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose)
    seconds = time.perf_counter() - start
    after = distance(generator.predict(probe, verbose=0), real)
    steps = args.epochs * -(-len(images) // args.batch_size)
    print(f"{name} {images.shape[1]}x{images.shape[2]}: distance to the data {before:.3f} -> "
          f"{after:.3f}")
    print(f"{steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s, "
          f"{ember.config.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
