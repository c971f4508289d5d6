"""The Seldon v1 operator in the running sandbox, driven with kubectl and the kubernetes client.

The seed's fashion.yaml as written (v2beta1 HPA metrics) and in the v2 format: Seldon's names, labels,
services and the autoscaling/v2 HPA; deleting it garbage-collects them. An invalid graph ends Failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.helpers import kubectl, until
from tests.sandbox.workloads import EXPECTED_METRIC, seed_fashion, to_v2_format

DEP = "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist"


def sdep_status(kube: client.ApiClient, ns: str, name: str) -> dict:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "machinelearning.seldon.io", "v1", ns, "seldondeployments", name
    )
    return obj.get("status") or {}


def make_namespace(kube: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_seed_fashion_yaml_objects_and_garbage_collection(sandbox: dict, kube: client.ApiClient, fmt: str) -> None:
    ns = f"seldon-seed-{fmt}"
    make_namespace(kube, ns)
    sdep = seed_fashion() if fmt == "v2beta1" else to_v2_format(seed_fashion())
    sdep["metadata"]["namespace"] = ns
    out = kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(sdep))
    assert "seldondeployment.machinelearning.seldon.io/fashion-mnist-ecs created" in out

    apps, core, autoscaling = client.AppsV1Api(kube), client.CoreV1Api(kube), client.AutoscalingV2Api(kube)
    dep = until("the Deployment", lambda: _get(lambda: apps.read_namespaced_deployment(DEP, ns)))
    labels = dep.spec.template.metadata.labels
    assert labels["seldon-app"] == "fashion-mnist-ecs-predictor"
    assert labels["seldon-deployment-id"] == "fashion-mnist-ecs"
    assert labels["app.kubernetes.io/managed-by"] == "seldon-core"
    assert [c.name for c in dep.spec.template.spec.containers] == [
        "tfserving-proxy",
        "fashion-mnist",
        "seldon-container-engine",
    ]
    assert dep.spec.template.spec.node_selector == {"seldon": "fashion-mnist"}
    svc = until("the Service", lambda: _get(lambda: core.read_namespaced_service("fashion-mnist-ecs-predictor", ns)))
    assert sorted((p.name, p.port) for p in svc.spec.ports) == [("grpc", 5001), ("http", 8000)]
    hpa = until("the HPA", lambda: _get(lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(DEP, ns)))
    assert hpa.spec.scale_target_ref.name == DEP and hpa.spec.max_replicas == 10
    raw = kube.sanitize_for_serialization(hpa.spec.metrics)
    assert raw == [EXPECTED_METRIC]
    status = until("a state", lambda: sdep_status(kube, ns, "fashion-mnist-ecs").get("state"))
    assert status == "Creating"  # the GPU pool of the seed does not exist here: pods stay Pending
    st = sdep_status(kube, ns, "fashion-mnist-ecs")
    assert (
        st["address"]["url"] == f"http://fashion-mnist-ecs-predictor.{ns}.svc.cluster.local:8000/api/v1.0/predictions"
    )
    printed = kubectl(
        sandbox, "get", "sdep", "-n", ns, "fashion-mnist-ecs", "-o", "jsonpath={.status.deploymentStatus}"
    )
    assert DEP in printed

    kubectl(sandbox, "delete", "sdep", "-n", ns, "fashion-mnist-ecs")
    until("the Deployment garbage-collected", lambda: _gone(lambda: apps.read_namespaced_deployment(DEP, ns)))
    until(
        "the HPA garbage-collected",
        lambda: _gone(lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(DEP, ns)),
    )
    until(
        "the Service garbage-collected",
        lambda: _gone(lambda: core.read_namespaced_service("fashion-mnist-ecs-predictor", ns)),
    )


def test_invalid_graph_is_failed_with_the_cause(sandbox: dict, kube: client.ApiClient) -> None:
    ns = "seldon-invalid"
    make_namespace(kube, ns)
    sdep = seed_fashion()
    sdep["metadata"].update(namespace=ns, name="broken")
    sdep["spec"]["predictors"][0]["graph"]["name"] = "classifier"
    kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(sdep))
    until("state Failed", lambda: sdep_status(kube, ns, "broken").get("state") == "Failed")
    st = sdep_status(kube, ns, "broken")
    assert "Can't find container for Predictive Unit" in st["description"] and "classifier" in st["description"]
    assert client.AppsV1Api(kube).list_namespaced_deployment(ns).items == []
    events = kubectl(sandbox, "get", "events", "-n", ns, "-o", "json")
    assert any(
        e["reason"] == "InternalError" and e["involvedObject"]["name"] == "broken" for e in json.loads(events)["items"]
    )


def _get(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _gone(fn: Callable[[], Any]) -> bool:
    return _get(fn) is None
