"""Sequence to sequence, as Keras's character-level seq2seq example writes it: an LSTM
encoder whose final states start an LSTM decoder (teacher forcing in training), then
separate encoder and decoder models that decode one step at a time. The task: write a
string of digits backwards. The data is generated here, so the script runs offline.

    python examples/seq2seq_reverse.py
"""
import argparse
import time

import numpy as np

import ember
from ember import layers

DIGITS = "0123456789"
START, END = "\t", "\n"
TOKENS = [START, END] + list(DIGITS)
INDEX = {c: i for i, c in enumerate(TOKENS)}
N_TOKENS = len(TOKENS)
MAX_LEN = 8          # input strings of 3 to 8 digits
LATENT = 128


def make_pairs(n, rng):
    lengths = rng.integers(3, MAX_LEN + 1, n)
    inputs = ["".join(rng.choice(list(DIGITS), k)) for k in lengths]
    return inputs, [START + s[::-1] + END for s in inputs]


def one_hot(texts, steps):
    x = np.zeros((len(texts), steps, N_TOKENS), np.float32)
    for i, t in enumerate(texts):
        for j, c in enumerate(t):
            x[i, j, INDEX[c]] = 1.0
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args()
    ember.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs, targets = make_pairs(12000, rng)
    enc_steps, dec_steps = MAX_LEN, MAX_LEN + 2
    encoder_input_data = one_hot(inputs, enc_steps)
    decoder_input_data = one_hot(targets, dec_steps)
    decoder_target_data = np.zeros_like(decoder_input_data)
    decoder_target_data[:, :-1] = decoder_input_data[:, 1:]  # one step ahead

    # Training model: the encoder's states start the decoder.
    encoder_inputs = ember.Input(shape=(None, N_TOKENS))
    encoder = layers.LSTM(LATENT, return_state=True)
    _, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = ember.Input(shape=(None, N_TOKENS))
    decoder_lstm = layers.LSTM(LATENT, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = layers.Dense(N_TOKENS, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = ember.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit([encoder_input_data, decoder_input_data], decoder_target_data,
              batch_size=64, epochs=args.epochs, validation_split=0.1, verbose=args.verbose)
    seconds = time.perf_counter() - start

    # Inference models: the same layers, the states as inputs and outputs.
    encoder_model = ember.Model(encoder_inputs, encoder_states)
    state_inputs = [ember.Input(shape=(LATENT,)), ember.Input(shape=(LATENT,))]
    out, h, c = decoder_lstm(decoder_inputs, initial_state=state_inputs)
    decoder_model = ember.Model([decoder_inputs] + state_inputs,
                                [decoder_dense(out), h, c])

    def decode(seq):
        states = encoder_model.predict(seq, verbose=0)
        target = np.zeros((1, 1, N_TOKENS), np.float32)
        target[0, 0, INDEX[START]] = 1.0
        text = ""
        while len(text) <= MAX_LEN:
            probs, h, c = decoder_model.predict([target] + states, verbose=0)
            char = TOKENS[int(np.argmax(probs[0, -1]))]
            if char == END:
                break
            text += char
            target = np.zeros((1, 1, N_TOKENS), np.float32)
            target[0, 0, INDEX[char]] = 1.0
            states = [h, c]
        return text

    test_inputs, _ = make_pairs(200, np.random.default_rng(1))
    right = sum(decode(one_hot([s], enc_steps)) == s[::-1] for s in test_inputs)
    for s in test_inputs[:3]:
        print(f"{s} -> {decode(one_hot([s], enc_steps))}")
    print(f"training: {seconds:.1f} s; whole strings reversed correctly: "
          f"{right / len(test_inputs):.2f} of {len(test_inputs)} new ones")


if __name__ == "__main__":
    main()
