"""Small real data sets shipped in the package (no network): digits and iris."""
from ._common import load_npz, packaged, shuffle_split


def load_packaged(name, test_split, seed):
    arrays = load_npz(packaged(name))
    return shuffle_split(arrays["x"], arrays["y"], test_split, seed)
