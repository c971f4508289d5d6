"""Assets shared by the training and deploy DAGs (not a DAG file)."""

from __future__ import annotations

from airflow.sdk import Asset

# Emitted by the training DAG with extra {"path": <model base dir>, "version": N, "samples": <json>};
# the deploy DAG is scheduled on it, so a newly trained model is redeployed.
MODEL_ASSET = Asset(name="fashion_mnist_savedmodel", uri="file:///models/fashion-mnist")
