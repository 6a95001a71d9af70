"""A Keras-style CNN classifies the 8x8 digits that ship with ember
(`ember.datasets.digits`, 1,797 real scans, no download) as 8x8x1 images. Prints test accuracy and training speed.

    python examples/digits_cnn.py [--epochs 20] [--verbose 2]
"""
import argparse
import time

import ember
from ember import layers


def load_digit_images():
    """(x_train, y_train), (x_test, y_test): images (n, 8, 8, 1) in [0, 1], labels."""
    (x_train, y_train), (x_test, y_test) = ember.datasets.digits.load_data()
    images = lambda x: (x / 16.0).astype("float32")[..., None]  # noqa: E731
    return (images(x_train), y_train), (images(x_test), y_test)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digit_images()

    model = ember.Sequential([
        layers.Input(shape=(8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(0.25),
        layers.Dense(64, activation="relu"),
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
          f"({seconds:.2f} s for {args.epochs} epochs, {ember.config.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
