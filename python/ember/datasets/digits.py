"""The UCI optical digits as scikit-learn bundles them: 1,797 scans of 8x8 pixels with
values 0-16, labels 0-9. Shipped in the package; no network."""
from ._small import load_packaged


def load_data(test_split=0.2, seed=113):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (n, 8, 8) with
    values 0-16 and uint8 labels (n,), shuffled with `RandomState(seed)` and split as
    boston_housing is (1,437 train and 360 test samples by default)."""
    return load_packaged("digits.npz", test_split, seed)
