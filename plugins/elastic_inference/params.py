"""The ``elastic_inference`` DAG's run parameters: JSON schemas for the UI trigger form, and the checks a
schema cannot express (cross-field rules, the model on disk), run before anything in the cloud is touched."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
OSS_BUCKET = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"

# name -> (default, JSON schema keywords, description). The DAG wraps these in airflow.sdk.Param.
PARAM_SPECS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "model_source": ("", {"type": "string"},
                     "Local SavedModel directory or .tar.gz/.zip archive. Empty: the path the training DAG's "
                     "model Asset event carries."),
    "model_name": ("fashion-mnist", {"type": "string", "pattern": DNS_LABEL},
                   "Model name: TF Serving model_name and the OSS directory (a DNS label)."),
    "model_version": (1, {"type": "integer", "minimum": 1}, "Numeric version directory TF Serving loads."),
    "bucket": ("models", {"type": "string", "pattern": OSS_BUCKET}, "OSS bucket holding the models."),
    "prefix": ("models", {"type": "string", "pattern": r"^[A-Za-z0-9._/-]*$"}, "Key prefix inside the bucket."),
    "namespace": ("default", {"type": "string", "pattern": DNS_LABEL}, "Kubernetes namespace."),
    "deployment_name": ("fashion-mnist-ecs", {"type": "string", "pattern": DNS_LABEL},
                        "SeldonDeployment (and Ingress) name."),
    "ingress_host": ("", {"type": "string", "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"},
                     "Host rule of the Ingress (empty: any host). Clients send it as the Host header."),
    "node_pool": ({
        "name": "fashion-mnist-elastic",
        "instance_types": ["ecs.gn6i-c4g1.xlarge"],
        "vswitch_ids": [],
        "min_instances": 0,
        "max_instances": 10,
        "spot_strategy": "SpotAsPriceGo",
        "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 30,
        "compensate_with_on_demand": True,
        "multi_az_policy": "COST_OPTIMIZED",
        "labels": {"seldon": "fashion-mnist"},
        "taints": [],
    }, {
        "type": "object",
        "required": ["name", "instance_types"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 63},
            "instance_types": {"type": "array", "items": {"type": "string", "pattern": r"^ecs\."},
                               "minItems": 1, "maxItems": 10},
            "vswitch_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
            "min_instances": {"type": "integer", "minimum": 0},
            "max_instances": {"type": "integer", "minimum": 1, "maximum": 2000},
            "spot_strategy": {"enum": ["NoSpot", "SpotAsPriceGo", "SpotWithPriceLimit"]},
            "on_demand_base_capacity": {"type": "integer", "minimum": 0, "maximum": 1000},
            "on_demand_percentage_above_base_capacity": {"type": "integer", "minimum": 0, "maximum": 100},
            "compensate_with_on_demand": {"type": "boolean"},
            "multi_az_policy": {"enum": ["PRIORITY", "COST_OPTIMIZED", "BALANCE"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "taints": {"type": "array"},
        },
    }, "Elastic node pool (seed step 1)."),
    "gpu_count": (1, {"type": "integer", "minimum": 0, "maximum": 8}, "GPUs per model-server pod."),
    "min_replicas": (1, {"type": "integer", "minimum": 1, "maximum": 100}, "HPA minReplicas."),
    "max_replicas": (10, {"type": "integer", "minimum": 1, "maximum": 100}, "HPA maxReplicas."),
    "qps_target": (10, {"type": "number", "exclusiveMinimum": 0}, "sls_ingress_qps per replica (HPA target)."),
    "hpa_metric_format": ("v2beta1", {"enum": ["v2beta1", "v2"]},
                          "v2beta1: hpaSpec.metrics/targetAverageValue (Seldon <= 1.15, the seed); v2: metricsv2."),
    "slo_p95_ms": (500, {"type": "number", "exclusiveMinimum": 0}, "Load test fails above this p95 latency."),
    "slo_max_error_rate": (0.01, {"type": "number", "minimum": 0, "maximum": 1}, "Load test error-rate budget."),
    "load_test": ({
        "ramp_seconds": 60,
        "hold_seconds": 180,
        "fill_factor": 0.5,
        "rps_per_user": 2,
        "workers": 0,
        "record_interval": 5,
        "scale_in_timeout": 600,
        "metric_lag_seconds": 25,
    }, {
        "type": "object",
        "properties": {
            "ramp_seconds": {"type": "number", "minimum": 0},
            "hold_seconds": {"type": "number", "exclusiveMinimum": 0},
            "fill_factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "rps_per_user": {"type": "number", "exclusiveMinimum": 0},
            "workers": {"type": "integer", "minimum": 0, "maximum": 32},
            "record_interval": {"type": "number", "exclusiveMinimum": 0},
            "scale_in_timeout": {"type": "number", "minimum": 0},
            "metric_lag_seconds": {"type": "number", "minimum": 0},
        },
    }, "Load test shape (ramp, hold; offered RPS = qps_target × max_replicas × fill_factor) and how long to "
       "watch scale-in afterwards. metric_lag_seconds: how far the QPS metric trails the load (SLS window + "
       "delay, 25 s on ACK)."),
    "teardown": (False, {"type": "boolean"},
                 "Remove what this run created (Seldon deployment, ingress, volume) at the end. The node pool "
                 "and the uploaded model are shared and always kept."),
}


def with_object_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """Object params given in part (``{"load_test": {"hold_seconds": 30}}``) keep the defaults of the keys
    they leave out, as a user of the trigger form or the REST API would expect."""
    merged = dict(params)
    for name, (default, schema, _doc) in PARAM_SPECS.items():
        if schema.get("type") == "object" and isinstance(default, dict):
            merged[name] = {**default, **(params.get(name) or {})}
    return merged


class InvalidRunConfig(ValueError):
    """Run parameters that cannot work; the message names the field and the fix."""


def check_run_config(params: dict[str, Any]) -> list[str]:
    """Cross-field and on-disk checks; returns every problem found (empty = valid)."""
    problems: list[str] = []
    if params["min_replicas"] > params["max_replicas"]:
        problems.append(f"min_replicas ({params['min_replicas']}) is greater than max_replicas "
                        f"({params['max_replicas']}): lower min_replicas or raise max_replicas")
    pool = params["node_pool"]
    if pool.get("min_instances", 0) > pool.get("max_instances", 10):
        problems.append(f"node_pool.min_instances ({pool.get('min_instances')}) is greater than "
                        f"node_pool.max_instances ({pool.get('max_instances')})")
    if params["gpu_count"] > 0 and not pool.get("instance_types"):
        problems.append("gpu_count > 0 needs node_pool.instance_types with GPU instance types")
    for field in ("model_name", "namespace", "deployment_name"):
        if not re.match(DNS_LABEL, str(params[field])):
            problems.append(f"{field} {params[field]!r} is not a DNS-1123 label: lower-case letters, digits and "
                            "'-', starting and ending with a letter or digit, at most 63 characters")
    source = params.get("model_source") or ""
    if not source:
        problems.append("model_source is empty and no model Asset event supplied one: pass the path of a "
                        "SavedModel directory or archive")
    elif not Path(source).exists():
        problems.append(f"model_source {source!r} does not exist on the worker")
    return problems
