"""A custom train_step: Keras's DCGAN-overriding-train_step on 28x28 images, batch 64.

Times, in one process, examples/dcgan_train_step.py's GAN (a discriminator update, then
a generator update through it, two Adam optimizers) trained with fit:
  - ember, the step traced into C++ graphs (every batch one C++ call);
  - ember, the same step run in Python (compile(run_eagerly=True));
  - PyTorch, the same networks and step written as a PyTorch user writes it
    (channels_last when it is faster).
Prints steps per second (median of --repeats runs of --steps steps each) and ratios.

    python benchmarks/gan_step.py [--steps 60] [--repeats 5] [--threads 2]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "examples"))

SIZE, LATENT, BATCH = 28, 16, 64


def ember_runner(eager, images):
    import ember
    from dcgan import build
    from dcgan_train_step import GAN
    ember.set_random_seed(0)
    gen, disc = build(SIZE, LATENT)
    gan = GAN(disc, gen, LATENT)
    gan.compile(ember.optimizers.Adam(2e-4, beta_1=0.5), ember.optimizers.Adam(2e-4, beta_1=0.5),
                ember.losses.BinaryCrossentropy())
    gan.run_eagerly = eager

    def run(steps):
        gan.fit(images[:steps * BATCH], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return run


def torch_runner(images, channels_last):
    import torch
    from torch import nn
    torch.manual_seed(0)
    base = SIZE // 4
    gen = nn.Sequential(
        nn.Linear(LATENT, base * base * 64, bias=False), nn.BatchNorm1d(base * base * 64),
        nn.LeakyReLU(0.2), nn.Unflatten(1, (64, base, base)),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
        nn.LeakyReLU(0.2), nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1), nn.Tanh())
    disc = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(64 * base * base, 1), nn.Sigmoid())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen, disc = gen.to(memory_format=fmt), disc.to(memory_format=fmt)
    d_opt = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-7)
    g_opt = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-7)

    def bce(p, t):  # Keras's formula: the noisy labels exceed 1, which BCELoss refuses
        p = p.clamp(1e-7, 1 - 1e-7)
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    data = data.contiguous(memory_format=fmt)

    def run(steps):
        for s in range(steps):
            real = data[s * BATCH:(s + 1) * BATCH]
            noise = torch.randn(BATCH, LATENT)
            with torch.no_grad():
                fake = gen(noise)
            combined = torch.cat([fake, real])
            labels = torch.cat([torch.ones(BATCH, 1), torch.zeros(BATCH, 1)])
            labels = labels + 0.05 * torch.rand(labels.shape)
            d_opt.zero_grad(set_to_none=True)
            bce(disc(combined), labels).backward()
            d_opt.step()
            noise = torch.randn(BATCH, LATENT)
            g_opt.zero_grad(set_to_none=True)
            bce(disc(gen(noise)), torch.zeros(BATCH, 1)).backward()
            g_opt.step()
    return run


def rate(run, steps, repeats):
    run(2)  # warm: traces, plans, first allocations
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - t)
    return steps / statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import ember
    ember.config.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (args.steps * BATCH, SIZE, SIZE, 1)).astype(np.float32)
    rates = {"ember traced": rate(ember_runner(False, images), args.steps, args.repeats),
             "ember eager": rate(ember_runner(True, images), args.steps, args.repeats)}
    try:
        import torch
        torch.set_num_threads(args.threads)
        for cl in (False, True):
            rates[f"torch{' channels_last' if cl else ''}"] = rate(
                torch_runner(images, cl), args.steps, args.repeats)
    except ImportError:
        print("(PyTorch not installed: skipped)")
    print(f"DCGAN train_step, {SIZE}x{SIZE}, batch {BATCH}, {args.threads} threads, "
          f"ember {ember.__version__} ({ember.config.gemm_kernel()} kernel)")
    best = max((v for k, v in rates.items() if k.startswith("torch")), default=None)
    for k, v in rates.items():
        extra = f"  {rates['ember traced'] / v:.2f}x" if k != "ember traced" else ""
        print(f"  {k:<22} {v:8.1f} steps/s{extra}")
    if best:
        print(f"ember traced vs the faster PyTorch layout: {rates['ember traced'] / best:.2f}x")


if __name__ == "__main__":
    main()
