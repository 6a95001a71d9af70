import os
import sys

# Keras reads its backend once, at its first import: the oracles need JAX, whatever the
# shell exported.
os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(__file__))
