"""Boston housing prices: 506 samples of 13 features, target in thousands of dollars."""
from ..utils.file_utils import get_file
from ._common import ORIGIN, load_npz, require, shuffle_split

SHA256 = "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"


def load_data(path="boston_housing.npz", test_split=0.2, seed=113):
    """Returns `(x_train, y_train), (x_test, y_test)` (float64; 404 and 102 samples
    with the default split), shuffled with `numpy.random.RandomState(seed)`."""
    if not 0 <= test_split < 1:
        raise ValueError(f"Invalid `test_split` argument: {test_split}. It must be between "
                         "0 and 1 (exclusive of 1).")
    path = get_file(path, origin=ORIGIN + "boston_housing.npz", file_hash=SHA256)
    x, y = require(load_npz(path), ["x", "y"], path)
    return shuffle_split(x, y, test_split, seed)
