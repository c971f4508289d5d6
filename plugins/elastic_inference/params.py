"""The ``elastic_inference`` DAG's run parameters: JSON schemas for the UI trigger form, and the checks run
before anything in the cloud is touched. Both come from the run specs (``elastic_inference.specs``): each
default, range and enum is written once, there; this module adds what only the form needs (titles, sections,
which empty fields are optional, the run's expected duration)."""

from __future__ import annotations

import copy
from typing import Any

from elastic_inference.specs.model import DNS_LABEL, OSS_BUCKET
from elastic_inference.specs.run import param_specs, resolve, with_object_defaults

__all__ = [
    "DNS_LABEL",
    "FORM_PARAMS",
    "OSS_BUCKET",
    "PARAM_SPECS",
    "check_run_config",
    "expected_duration",
    "form_params",
    "with_object_defaults",
]

# name -> (default, JSON schema keywords, description). The DAG wraps these in airflow.sdk.Param.
PARAM_SPECS: dict[str, tuple[Any, dict[str, Any], str]] = param_specs()

# Fields whose empty value means "use the default" (documented as "empty = ..."): the form must accept them
# empty. Airflow's trigger form marks a typed field required unless its type allows null
# (airflow/example_dags/example_params_ui_tutorial.py, "Fields can be required or not"); ``plan`` reads null
# as the empty string.
NULLABLE = ("model_source", "ingress_host")

# The form's sections, in order, and each param's title. A param the table does not name (e.g. one added by
# another backend) still gets a title from its name and lands in "Serving": the table only adds.
SECTIONS: dict[str, str] = {
    "model_source": "Model",
    "model_name": "Model",
    "model_version": "Model",
    "bucket": "Model",
    "prefix": "Model",
    "namespace": "Serving",
    "deployment_name": "Serving",
    "ingress_host": "Serving",
    "gpu_count": "Serving",
    "min_replicas": "Autoscaling",
    "max_replicas": "Autoscaling",
    "qps_target": "Autoscaling",
    "hpa_metric_format": "Autoscaling",
    "node_pool": "Node pool",
    "load_test": "Load test and SLO",
    "slo_p95_ms": "Load test and SLO",
    "slo_max_error_rate": "Load test and SLO",
    "rollout": "Rollout",
    "teardown": "Clean-up",
}
TITLES: dict[str, str] = {
    "model_source": "Model source (SavedModel directory; empty: the training DAG's model Asset)",
    "model_name": "Model name",
    "model_version": "Model version",
    "bucket": "OSS bucket",
    "prefix": "OSS prefix",
    "namespace": "Kubernetes namespace",
    "deployment_name": "Deployment name",
    "ingress_host": "Ingress host (empty: the ingress address, no Host header)",
    "gpu_count": "GPUs per replica",
    "min_replicas": "Min replicas (HPA)",
    "max_replicas": "Max replicas (HPA)",
    "qps_target": "QPS per replica (HPA target)",
    "hpa_metric_format": "HPA metric format",
    "node_pool": "Node pool",
    "load_test": "Load test shape",
    "slo_p95_ms": "SLO: p95 latency (ms; empty: no check)",
    "slo_max_error_rate": "SLO: max error rate (0..1; empty: no check)",
    "rollout": "Rollout",
    "teardown": "Remove the deployment at the end",
}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}".rstrip("0").rstrip(".") + " min"


def expected_duration(load_test: dict[str, Any]) -> str:
    """What a run with these load-test settings costs in time, in words (the form's description)."""
    lt = {**PARAM_SPECS["load_test"][0], **(load_test or {})}
    load = float(lt["ramp_seconds"]) + float(lt["hold_seconds"])
    replicas = float(lt["scale_in_timeout"])
    pool = replicas if lt.get("pool_scale_in_timeout") is None else float(lt["pool_scale_in_timeout"])
    wait = f"{_minutes(replicas)} (scale_in_timeout)" + (
        f", the pool's nodes up to {_minutes(pool)} (pool_scale_in_timeout)," if pool > replicas else ""
    )
    return (
        f"With these settings a run holds load for {_minutes(load)} (ramp {lt['ramp_seconds']:g} s + hold "
        f"{lt['hold_seconds']:g} s), then waits up to {wait} for the scale-in, after the node pool, upload and "
        f"rollout."
    )


def _node_pool_doc(doc: str, schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    choices = "; ".join(
        f"{key}: one of {', '.join(props[key]['enum'])}" for key in ("spot_strategy", "multi_az_policy") if key in props
    )
    return f"{doc} A JSON object (Airflow's form edits an object param as JSON, not as fields); {choices}."


def form_params() -> dict[str, dict[str, Any]]:
    """name -> the keyword arguments of ``airflow.sdk.Param`` (default, description, title, section, schema)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (default, schema, doc) in PARAM_SPECS.items():
        schema = copy.deepcopy(schema)
        if name in NULLABLE and schema.get("type") == "string":
            schema["type"] = ["string", "null"]  # a pattern applies to strings only: null passes it
            default = default or None
        if schema.get("type") == "object":
            # An emptied JSON editor means "the defaults" (``with_object_defaults``), so it is not required.
            schema["type"] = ["object", "null"]
        if name == "node_pool":
            doc = _node_pool_doc(doc, schema)
        if name == "load_test":
            doc = f"{doc} {expected_duration(default)}"
        out[name] = {
            "default": default,
            "description": doc,
            "title": TITLES.get(name, name.replace("_", " ").capitalize()),
            "section": SECTIONS.get(name, "Serving"),
            **schema,
        }
    return out


FORM_PARAMS: dict[str, dict[str, Any]] = form_params()


def check_run_config(params: dict[str, Any]) -> list[str]:
    """Every problem with a run's params (empty = valid): each spec's ``problems()`` and the cross-spec rules."""
    return resolve(params)[1]
