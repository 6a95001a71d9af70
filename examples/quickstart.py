"""Quickstart: a Keras-style MLP classifies handwritten digits. Prints test accuracy
and training speed.

It trains on MNIST (`ember.datasets.mnist.load_data()`) when mnist.npz is already in
the Keras cache (`$KERAS_HOME/datasets` or `~/.keras/datasets`), and otherwise on the
8x8 digits that ship with ember (1,797 real scans, no download).

    python examples/quickstart.py [--dataset auto|mnist|digits] [--epochs N] [--verbose 1]
"""
import argparse
import os
import time

import ember
from ember import layers


def load(dataset):
    """(x_train, y_train), (x_test, y_test) with flat float32 pixels in [0, 1]."""
    if dataset == "auto":
        cached = os.path.exists(os.path.join(ember.datasets.data_dir(), "mnist.npz"))
        dataset = "mnist" if cached else "digits"
    if dataset == "mnist":
        (x_train, y_train), (x_test, y_test) = ember.datasets.mnist.load_data()
        scale = 255.0
    else:
        (x_train, y_train), (x_test, y_test) = ember.datasets.digits.load_data()
        scale = 16.0
    flat = lambda x: (x.reshape(len(x), -1) / scale).astype("float32")  # noqa: E731
    return dataset, (flat(x_train), y_train), (flat(x_test), y_test)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=["auto", "mnist", "digits"], default="auto")
    p.add_argument("--epochs", type=int, default=None,
                   help="default: 5 on MNIST, 30 on the digits")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    dataset, (x_train, y_train), (x_test, y_test) = load(args.dataset)
    epochs = args.epochs or (5 if dataset == "mnist" else 30)
    print(f"{dataset}: {len(x_train)} training and {len(x_test)} test samples")

    model = ember.Sequential([
        layers.Input(shape=x_train.shape[1:]),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs,
              validation_split=0.1, verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, verbose=0)

    print(f"test accuracy {acc:.4f}  (loss {loss:.4f}, {len(x_test)} held-out images, {dataset})")
    print(f"training {len(x_train) * 0.9 * epochs / seconds:,.0f} samples/s "
          f"({seconds:.2f} s for {epochs} epochs, {ember.config.get_num_threads()} threads, "
          f"GEMM kernel {ember.config.gemm_kernel()})")


if __name__ == "__main__":
    main()
