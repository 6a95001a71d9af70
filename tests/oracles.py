"""The optional reference frameworks (the `compare` extra), imported the way every test
wants them.

Keras always runs on JAX here: the backend is chosen before Keras is first imported
(conftest.py sets it for the whole session), whatever KERAS_BACKEND the shell had.
Without the extra the oracle tests skip. With EMBER_REQUIRE_ORACLES=1 (scripts/test
sets it once it has installed the extra) a missing oracle fails the test instead, so an
environment problem cannot silently turn the comparisons off. EMBER_NO_ORACLES=1 makes
every oracle look absent (scripts/mutation-check uses it to run the suite as a machine
without the extra would).
"""
import importlib
import os

import pytest


def _missing(what):
    if os.environ.get("EMBER_REQUIRE_ORACLES") == "1":
        pytest.fail(f"oracle unavailable: {what} (EMBER_REQUIRE_ORACLES=1: the compare "
                    f"extra is meant to be installed)")
    pytest.skip(f"oracle unavailable: {what} (pip install .[compare])", allow_module_level=True)


def _import(name):
    if os.environ.get("EMBER_NO_ORACLES") == "1":
        _missing(f"{name} (EMBER_NO_ORACLES=1)")
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _missing(f"{name} ({e})")


def keras_or_skip(seed=0):
    """Keras 3 on JAX, its random state seeded (so a comparison starts from the same
    weights every run)."""
    _import("jax")
    keras = _import("keras")
    if keras.backend.backend() != "jax":
        _missing(f"Keras on JAX (Keras runs on {keras.backend.backend()!r}: it was imported "
                 f"before conftest.py chose the backend)")
    keras.utils.set_random_seed(seed)
    return keras


def torch_or_skip():
    """PyTorch (CPU)."""
    return _import("torch")


def adam_step_like_keras(keras, k, e, x, y):
    """One Adam(0.01) step on the mean squared error for Keras model k and ember model e,
    which hold the same weights: the weights after it agree within 1e-5. Returns
    (ember's loss, Keras's loss)."""
    import numpy as np

    import ember
    k.compile(keras.optimizers.Adam(0.01), "mse")
    e.compile(ember.optimizers.Adam(0.01), "mse")
    keras_loss = float(k.train_on_batch(x, y))
    ember_loss = e.train_on_batch(x, y)
    for a, b in zip(e.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
    return ember_loss, keras_loss


def same_as_keras(keras, k, e, x, y):
    """e, given k's weights, predicts as k does, and one Adam step on (x, y) leaves the
    same weights (within 1e-5)."""
    import numpy as np
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    np.testing.assert_allclose(e.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)),
                               atol=1e-5)
    adam_step_like_keras(keras, k, e, x, y)


def same_as_keras_through_a_file(keras, k, e, x, y, path, atol=1e-5):
    """k and e have weights of the same shapes; e, given k's weights, predicts as k does,
    Keras reads e's file (saved at path) and predicts the same, and one Adam step leaves
    the same weights. Returns (ember's loss, Keras's loss) of that step."""
    import numpy as np
    assert [w.shape for w in e.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
    e.set_weights([np.asarray(w) for w in k.get_weights()])
    np.testing.assert_allclose(e.predict(x, verbose=0), np.asarray(k.predict(x, verbose=0)),
                               atol=atol)
    e.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path).predict(x, verbose=0)),
                               e.predict(x, verbose=0), atol=atol)
    return adam_step_like_keras(keras, k, e, x, y)
