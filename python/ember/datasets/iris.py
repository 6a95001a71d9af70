"""Fisher's iris: 150 flowers, 4 float features (sepal and petal length and width,
cm), 3 species. Shipped in the package; no network."""
from ._small import load_packaged

FEATURE_NAMES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                 "petal width (cm)")
LABEL_NAMES = ("setosa", "versicolor", "virginica")


def load_data(test_split=0.2, seed=113):
    """Returns `(x_train, y_train), (x_test, y_test)`: float64 features (n, 4) and
    uint8 labels (n,), shuffled with `RandomState(seed)` and split as boston_housing
    is (120 train and 30 test samples by default)."""
    return load_packaged("iris.npz", test_split, seed)


def get_label_names():
    """The species names, in label order."""
    return LABEL_NAMES
