"""Text classification the way the Keras tutorials do it: raw strings -> Tokenizer ->
pad_sequences -> Embedding -> GlobalAveragePooling1D -> Dense. Prints held-out
accuracy and training speed.

The corpus is generated here (no download): short "news" items on four topics, each
topic with its own vocabulary, mixed with words every topic uses and with words
borrowed from the other topics as noise.

    python examples/text_classification.py [--epochs 8] [--verbose 2]
"""
import argparse
import time

import numpy as np

import ember
from ember import layers
from ember.preprocessing.sequence import pad_sequences
from ember.preprocessing.text import Tokenizer

TOPICS = {
    "sports": "match goal team coach league season striker keeper referee stadium fans "
              "victory defeat tournament playoff score pitch injury transfer captain",
    "business": "market shares profit revenue investor stock merger earnings quarter "
                "bank inflation startup economy growth dividend acquisition budget tax loan",
    "science": "research study scientists planet telescope molecule genome experiment "
               "climate species physics laboratory vaccine quantum fossil orbit neuron cell",
    "politics": "election minister parliament vote senator policy campaign president law "
                "government reform party debate coalition treaty opposition ballot court",
}
COMMON = ("the a of to in and on for with said new year after over more about this "
          "that from report week people first time today")


def make_corpus(n, seed):
    """n texts and their topic ids: about 30% topic words, 15% other topics' words
    (noise), the rest common words; 15 to 60 words each."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    vocab = {t: TOPICS[t].split() for t in names}
    common = COMMON.split()
    texts, labels = [], rng.integers(0, len(names), n)
    for label in labels:
        words = []
        for _ in range(rng.integers(15, 61)):
            u = rng.random()
            if u < 0.30:
                words.append(rng.choice(vocab[names[label]]))
            elif u < 0.45:
                words.append(rng.choice(vocab[names[rng.integers(len(names))]]))
            else:
                words.append(rng.choice(common))
        text = " ".join(words).capitalize() + "."
        texts.append(text)
    return texts, labels, names


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--verbose", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    ember.set_random_seed(args.seed)
    texts, labels, names = make_corpus(args.samples, args.seed)
    split = int(0.8 * len(texts))
    tokenizer = Tokenizer(num_words=1000, oov_token="<unk>")
    tokenizer.fit_on_texts(texts[:split])  # the vocabulary comes from training text only
    x = pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=64, padding="post")
    x_train, y_train, x_test, y_test = x[:split], labels[:split], x[split:], labels[split:]
    print(f"{len(texts)} texts, {len(tokenizer.word_index)} distinct words, e.g. "
          f"[{names[labels[0]]}] {texts[0][:70]}...")

    model = ember.Sequential([
        layers.Input(shape=(64,)),
        layers.Embedding(1000, 32, mask_zero=True),
        layers.GlobalAveragePooling1D(),
        layers.Dense(32, activation="relu"),
        layers.Dense(len(names), activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_split=0.1, verbose=args.verbose)
    seconds = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, verbose=0)

    probe = ["The striker scored a late goal and the fans stormed the pitch",
             "Shares fell after the bank reported weaker quarterly earnings"]
    guess = model.predict(pad_sequences(tokenizer.texts_to_sequences(probe), maxlen=64,
                                        padding="post"), verbose=0).argmax(1)
    for text, g in zip(probe, guess):
        print(f"  {names[g]:>8}: {text}")
    print(f"test accuracy {acc:.4f}  (loss {loss:.4f}, {len(x_test)} held-out texts)")
    print(f"training {len(x_train) * 0.9 * args.epochs / seconds:,.0f} samples/s "
          f"({seconds:.2f} s for {args.epochs} epochs, {ember.config.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
