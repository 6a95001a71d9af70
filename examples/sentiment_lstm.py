"""Sentiment classification with an LSTM: Embedding(mask_zero=True) -> LSTM -> Dense.
Prints held-out accuracy and training speed.

The data: IMDB reviews (ember.datasets.imdb) when imdb.npz is in the Keras cache
($KERAS_HOME/datasets or ~/.keras/datasets), else a corpus generated here, where word
order matters: reviews mix positive and negative words, "not" flips the word after it,
and the label is the sign of the sum. Counting words cannot solve it; reading in order
can.

    python examples/sentiment_lstm.py [--epochs 6] [--data auto|imdb|generated]
"""
import argparse
import os
import time

import numpy as np

import ember
from ember import layers
from ember.preprocessing.sequence import pad_sequences
from ember.utils.file_utils import keras_home

POSITIVE = "good great excellent wonderful enjoyable superb brilliant moving fun".split()
NEGATIVE = "bad awful boring terrible dull weak poor painful tedious".split()
NEUTRAL = ("the film movie plot actors story it was and a with of scenes music ending "
           "director this").split()


def generated(n, seed):
    """n reviews as word-id lists (0 is padding) and 0/1 labels."""
    rng = np.random.default_rng(seed)
    vocab = ["<pad>", "not"] + POSITIVE + NEGATIVE + NEUTRAL
    ids = {w: i for i, w in enumerate(vocab)}
    seqs, labels = [], []
    while len(seqs) < n:
        words, score = [], 0
        for _ in range(rng.integers(3, 6)):
            words += list(rng.choice(NEUTRAL, rng.integers(1, 4)))
            negate = rng.random() < 0.4
            if negate:
                words.append("not")
            good = rng.random() < 0.5
            words.append(rng.choice(POSITIVE if good else NEGATIVE))
            score += (1 if good else -1) * (-1 if negate else 1)
        if score == 0:
            continue
        seqs.append([ids[w] for w in words])
        labels.append(int(score > 0))
    return seqs, np.array(labels), len(vocab)


def load(kind, seed):
    path = os.path.join(keras_home(), "datasets", "imdb.npz")
    if kind == "imdb" or (kind == "auto" and os.path.exists(path)):
        (xa, ya), (xb, yb) = ember.datasets.imdb.load_data(num_words=10000, maxlen=200)
        return "imdb", (list(xa), ya), (list(xb), yb), 10000, 200
    seqs, labels, vocab = generated(6000, seed)
    cut = 5000
    return "generated", (seqs[:cut], labels[:cut]), (seqs[cut:], labels[cut:]), vocab, 24


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--data", choices=["auto", "imdb", "generated"], default="auto")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args()
    ember.utils.set_random_seed(0)
    name, (xa, ya), (xb, yb), vocab, maxlen = load(args.data, 0)
    xa = pad_sequences(xa, maxlen=maxlen)
    xb = pad_sequences(xb, maxlen=maxlen)

    model = ember.Sequential([
        ember.Input((maxlen,), dtype="int32"),
        layers.Embedding(vocab, 32, mask_zero=True),
        layers.LSTM(32),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(ember.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(xa, ya, batch_size=64, epochs=args.epochs, validation_split=0.1,
              verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, acc = model.evaluate(xb, yb, verbose=0)
    print(f"data: {name}, {len(xa)} training and {len(xb)} test reviews")
    print(f"test accuracy: {acc:.4f}")
    print(f"training: {args.epochs * len(xa) / seconds:,.0f} samples/s")


if __name__ == "__main__":
    main()
