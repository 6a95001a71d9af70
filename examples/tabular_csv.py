"""Structured data from files, the way Keras's structured-data tutorials do it: a CSV of
customers (numeric columns, string categories, an integer category, a 0/1 label) read
with pandas (or NumPy alone), the categories turned into inputs by preprocessing
layers, a functional model with three inputs, then new customers read from a JSON file
and scored. Prints the accuracy on them.

The files ship in examples/data: customers.csv (600 rows) and new_customers.json (150
records, as a JSON list of objects).

    python examples/tabular_csv.py [--reader pandas|numpy] [--epochs 40] [--verbose 2]
"""
import argparse
import csv
import json
import os

import numpy as np

import ember
from ember import layers

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
STRINGS = ["contract", "payment"]
LABEL = "churned"


def read_csv(path, reader):
    """The CSV as {column: 1-D array}: with pandas (a DataFrame's columns) or NumPy."""
    if reader == "pandas":
        import pandas as pd
        frame = pd.read_csv(path)
        return {name: frame[name] for name in frame.columns}  # Series: fit takes them
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        try:
            columns[name] = np.array(values, dtype=np.float64)
        except ValueError:  # a string column
            columns[name] = np.array(values)
    return columns


def read_json(path):
    """A JSON list of records as {column: 1-D array}."""
    with open(path) as f:
        records = json.load(f)
    return {name: np.array([r[name] for r in records]) for name in records[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", choices=["pandas", "numpy"], default="pandas")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args()
    ember.utils.set_random_seed(7)

    train = read_csv(os.path.join(DATA, "customers.csv"), args.reader)

    # Numeric columns: one (n, 4) array, standardised by a Normalization layer that
    # learns the means and variances from the training data.
    def numeric(cols):
        return np.stack([np.asarray(cols[c], np.float32) for c in NUMERIC], axis=1)

    normalize = layers.Normalization()
    normalize.adapt(numeric(train))

    # String categories: StringLookup learns each vocabulary and encodes one-hot. String
    # layers run on the arrays before the model (they are not part of it).
    lookups = {c: layers.StringLookup(output_mode="one_hot") for c in STRINGS}
    for c, lookup in lookups.items():
        lookup.adapt(np.asarray(train[c]))

    def categories(cols):
        return np.concatenate([lookups[c](np.asarray(cols[c])) for c in STRINGS], axis=1)

    # The integer category (region 1-5) is one-hot encoded inside the model.
    num_in = ember.Input((len(NUMERIC),), name="numeric")
    region_in = ember.Input((1,), name="region")
    cat_in = ember.Input((categories(train).shape[1],), name="categories")
    x = layers.Concatenate()([normalize(num_in),
                              layers.CategoryEncoding(num_tokens=6, output_mode="one_hot")(
                                  region_in),
                              cat_in])
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid")(x)
    model = ember.Model([num_in, region_in, cat_in], out)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])

    # With pandas, the label and the region go in as Series, as Keras takes them.
    region = train["region"]
    model.fit([numeric(train), region, categories(train)], train[LABEL],
              validation_split=0.2, epochs=args.epochs, batch_size=32,
              verbose=args.verbose)

    new = read_json(os.path.join(DATA, "new_customers.json"))
    loss, acc = model.evaluate([numeric(new), new["region"], categories(new)], new[LABEL],
                               verbose=0)
    scores = model.predict([numeric(new), new["region"], categories(new)], verbose=0)
    print(f"churn probability of the first new customers: "
          f"{[round(float(s), 2) for s in scores[:3, 0]]}")
    print(f"test accuracy {acc:.4f} on {len(new[LABEL])} new customers (JSON)")


if __name__ == "__main__":
    main()
