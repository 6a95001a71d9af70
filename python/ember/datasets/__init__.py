"""Data sets as Keras users load them: `(x_train, y_train), (x_test, y_test) = mnist.load_data()`.

mnist, fashion_mnist, cifar10, cifar100, imdb, reuters and boston_housing fetch Keras's
own files (same addresses, names, archive layouts and checksums) into Keras's cache,
`$KERAS_HOME/datasets` or `~/.keras/datasets`, and return what keras.datasets returns.
digits and iris are small real data sets shipped inside the package: no network.
"""
from ..utils.file_utils import cache_directory
from . import (boston_housing, cifar10, cifar100, digits, fashion_mnist, imdb, iris, mnist,
               reuters)


def data_dir():
    """The directory the loaders cache their files in (where to put them by hand)."""
    return cache_directory("datasets")


__all__ = ["boston_housing", "cifar10", "cifar100", "data_dir", "digits", "fashion_mnist",
           "imdb", "iris", "mnist", "reuters"]
