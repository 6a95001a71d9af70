"""Preprocessing as the Keras text tutorials use it: `text.Tokenizer` and
`sequence.pad_sequences`."""
from . import sequence, text
from .sequence import pad_sequences
from .text import Tokenizer, text_to_word_sequence, tokenizer_from_json

__all__ = ["Tokenizer", "pad_sequences", "sequence", "text", "text_to_word_sequence",
           "tokenizer_from_json"]
