"""Assets shared by the training and deploy DAGs (not a DAG file)."""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetAlias, AssetWatcher

# Emitted by the training DAG with extra {"path": <model base dir>, "version": N, "samples": <json>};
# the deploy DAG is scheduled on it, so a newly trained model is redeployed.
MODEL_ASSET = Asset(name="fashion_mnist_savedmodel", uri="file:///models/fashion-mnist")

# A model a training system outside Airflow writes to OSS: ELASTIC_INFERENCE_OSS_WATCH (an oss:// folder of
# <version>/ folders, or a JSON object of the watcher's settings) puts an AssetWatcher on it, whose trigger fires
# once per new completed version; the event's payload carries the path, the version and the run params. Unset: no
# watcher (the Asset still takes REST events). Read from the environment, never from the DB at parse time.
OSS_WATCH_ENV = "ELASTIC_INFERENCE_OSS_WATCH"


def _oss_model_asset() -> Asset:
    from elastic_inference.triggers.oss_watch import OssModelVersionTrigger, watch_kwargs

    kwargs = watch_kwargs(os.environ.get(OSS_WATCH_ENV, ""))
    if kwargs is None:
        return Asset(name="elastic_inference_model_in_oss", uri="oss://models/exports")
    trigger = OssModelVersionTrigger(**kwargs)
    watcher = AssetWatcher(name="oss_model_versions", trigger=trigger)
    return Asset(name="elastic_inference_model_in_oss", uri=trigger.watched_uri, watchers=[watcher])


OSS_MODEL_ASSET = _oss_model_asset()

# The endpoint a verified (and promoted) deployment emits: ack://<cluster>/<namespace>/<name>, added to this alias
# at run time (elastic_inference.endpoint_asset); downstream DAGs schedule on the alias or on one ack:// Asset.
ENDPOINT_ALIAS = AssetAlias("elastic_inference_endpoint")
