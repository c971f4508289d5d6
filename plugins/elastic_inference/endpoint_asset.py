"""The endpoint Asset a verified deployment emits: ``ack://<cluster>/<namespace>/<name>``, so downstream DAGs
(batch scoring, a model-registry update) are scheduled on "a new verified endpoint", not on "a new file".

Its URI is known only at run time (cluster, namespace and name are run parameters), so the DAG's task declares
the ``AssetAlias`` :data:`ENDPOINT_ALIAS` as its outlet and adds the concrete Asset to it (Airflow's idiom for
runtime assets: ``outlet_events[alias].add(Asset(...), extra=...)``). Downstream DAGs schedule on the alias (any
endpoint) or on one ``ack://...`` Asset. Pure logic: what to emit, or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENDPOINT_ALIAS = "elastic_inference_endpoint"


def endpoint_uri(cluster_id: str, namespace: str, name: str) -> str:
    return f"ack://{cluster_id or 'cluster'}/{namespace}/{name}"


def endpoint_event(
    *,
    cluster_id: str,
    plan: Mapping[str, Any],
    target: Mapping[str, Any] | None,
    ingress: Mapping[str, Any] | None,
    verification: Mapping[str, Any] | None,
) -> tuple[str, dict[str, Any]] | None:
    """(uri, extra) of the endpoint event, or None when the deployment is not verified: the verification's
    verdict must be ``passed`` and the version under test the one now served (``rollout.promote``'s target: a
    canary promoted, or a direct deploy), and the run must not tear it down at its end."""
    if not verification or verification.get("verdict") != "passed" or not target:
        return None
    if plan.get("teardown"):  # the run removes what it deployed at its end: no endpoint to schedule on
        return None
    serving, model = plan.get("serving") or {}, plan.get("model") or {}
    version = target.get("version")
    if version is None or int(version) != int(model.get("version") or 0):
        return None
    extra = {
        "verdict": "passed",
        "model_name": model.get("name"),
        "model_version": int(version),
        "model_uri": f"oss://{model.get('bucket')}/{model.get('prefix', '').strip('/')}/{model.get('name')}/{version}/"
        if model.get("prefix")
        else f"oss://{model.get('bucket')}/{model.get('name')}/{version}/",
        "endpoint": (ingress or {}).get("predict_url") or verification.get("endpoint"),
        "host_header": (ingress or {}).get("host_header"),
        "rollout": verification.get("rollout") or "direct",
        "report": verification.get("report_path"),
        "p95_latency_ms": verification.get("p95_latency_ms"),
        "error_rate": verification.get("error_rate"),
        "replicas_reached": verification.get("replicas_reached"),
    }
    return endpoint_uri(cluster_id, str(serving.get("namespace")), str(serving.get("name"))), extra


def publish(
    context: Mapping[str, Any], outlet_events: Any, alias: Any, *, ack_conn_id: str = "alibaba_ack_default"
) -> Any:
    """The DAG's ``endpoint`` task: add the endpoint Asset to ``alias`` when the run verified its deployment.
    Returns the event (uri + extra) or None (nothing emitted)."""
    from airflow.sdk import Asset

    from elastic_inference.hooks.base import AlibabaCloudBaseHook

    ti = context["ti"]
    event = endpoint_event(
        cluster_id=AlibabaCloudBaseHook(ack_conn_id).settings.cluster_id,
        plan=ti.xcom_pull(task_ids="plan") or {},
        target=ti.xcom_pull(task_ids="rollout.promote"),
        ingress=ti.xcom_pull(task_ids="ingress.ingress"),
        verification=ti.xcom_pull(task_ids="verify.scale_verification"),
    )
    if event is None:
        return None
    uri, extra = event
    outlet_events[alias].add(Asset(uri=uri, name=uri), extra=extra)
    return {"uri": uri, "extra": extra}
