"""Quickstart: a Keras-style MLP classifies scikit-learn's bundled 8x8 digits
(1,797 real scans, no download). Prints test accuracy and training speed.

    python examples/quickstart.py [--epochs 30] [--verbose 1]
"""
import argparse
import time

import numpy as np

import ember
from ember import layers


def load_digits_split(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    return train_test_split(x, d.target, test_size=0.25, random_state=seed, stratify=d.target)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    x_train, x_test, y_train, y_test = load_digits_split(args.seed)

    model = ember.Sequential([
        layers.Input(shape=(64,)),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, verbose=0)

    print(f"test accuracy {acc:.4f}  (loss {loss:.4f}, {len(x_test)} held-out digits)")
    print(f"training {len(x_train) * 0.9 * args.epochs / seconds:,.0f} samples/s "
          f"({seconds:.2f} s for {args.epochs} epochs, {ember.config.get_num_threads()} threads, "
          f"GEMM kernel {ember.config.gemm_kernel()})")


if __name__ == "__main__":
    main()
