"""The check that training gives the same bits at any thread count."""
import numpy as np

import ember


def assert_same_weights_at_thread_counts(train, counts=(1, 2)):
    """Runs train() (build a model, train it, return its weights) at each thread count,
    restoring the setting after: the weights must be the same bits every time."""
    saved = ember.config.get_num_threads()
    results = []
    try:
        for threads in counts:
            ember.config.set_num_threads(threads)
            results.append(train())
    finally:
        ember.config.set_num_threads(saved)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
