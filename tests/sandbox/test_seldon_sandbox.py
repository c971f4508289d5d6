"""The Seldon v1 operator in the running sandbox, driven with kubectl and the kubernetes client.

The seed's fashion.yaml as written (v2beta1 HPA metrics) and in the v2 format: Seldon's names, labels,
services and the autoscaling/v2 HPA; deleting it garbage-collects them. An invalid graph ends Failed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from test_seldon_objects import EXPECTED_METRIC, seed_fashion, to_v2_format

DEP = "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist"


@pytest.fixture(scope="module")
def k8s(sandbox: dict) -> client.ApiClient:
    return config.new_client_from_config(str(Path(sandbox["state_dir"]) / "kubeconfig"))


def kubectl(sandbox: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(Path(sandbox["state_dir"]) / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(3000):
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def sdep_status(k8s: client.ApiClient, ns: str, name: str) -> dict:
    obj = client.CustomObjectsApi(k8s).get_namespaced_custom_object(
        "machinelearning.seldon.io", "v1", ns, "seldondeployments", name
    )
    return obj.get("status") or {}


def make_namespace(k8s: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_seed_fashion_yaml_objects_and_garbage_collection(sandbox: dict, k8s: client.ApiClient, fmt: str) -> None:
    ns = f"seldon-seed-{fmt}"
    make_namespace(k8s, ns)
    sdep = seed_fashion() if fmt == "v2beta1" else to_v2_format(seed_fashion())
    sdep["metadata"]["namespace"] = ns
    out = kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(sdep))
    assert "seldondeployment.machinelearning.seldon.io/fashion-mnist-ecs created" in out

    apps, core, autoscaling = client.AppsV1Api(k8s), client.CoreV1Api(k8s), client.AutoscalingV2Api(k8s)
    dep = until(lambda: _get(lambda: apps.read_namespaced_deployment(DEP, ns)), "the Deployment")
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
    svc = until(lambda: _get(lambda: core.read_namespaced_service("fashion-mnist-ecs-predictor", ns)), "the Service")
    assert sorted((p.name, p.port) for p in svc.spec.ports) == [("grpc", 5001), ("http", 8000)]
    hpa = until(lambda: _get(lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(DEP, ns)), "the HPA")
    assert hpa.spec.scale_target_ref.name == DEP and hpa.spec.max_replicas == 10
    raw = k8s.sanitize_for_serialization(hpa.spec.metrics)
    assert raw == [EXPECTED_METRIC]
    status = until(lambda: sdep_status(k8s, ns, "fashion-mnist-ecs").get("state"), "a state")
    assert status == "Creating"  # the GPU pool of the seed does not exist here: pods stay Pending
    st = sdep_status(k8s, ns, "fashion-mnist-ecs")
    assert (
        st["address"]["url"] == f"http://fashion-mnist-ecs-predictor.{ns}.svc.cluster.local:8000/api/v1.0/predictions"
    )
    printed = kubectl(
        sandbox, "get", "sdep", "-n", ns, "fashion-mnist-ecs", "-o", "jsonpath={.status.deploymentStatus}"
    )
    assert DEP in printed

    kubectl(sandbox, "delete", "sdep", "-n", ns, "fashion-mnist-ecs")
    until(lambda: _gone(lambda: apps.read_namespaced_deployment(DEP, ns)), "the Deployment garbage-collected")
    until(
        lambda: _gone(lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(DEP, ns)),
        "the HPA garbage-collected",
    )
    until(
        lambda: _gone(lambda: core.read_namespaced_service("fashion-mnist-ecs-predictor", ns)),
        "the Service garbage-collected",
    )


def test_invalid_graph_is_failed_with_the_cause(sandbox: dict, k8s: client.ApiClient) -> None:
    ns = "seldon-invalid"
    make_namespace(k8s, ns)
    sdep = seed_fashion()
    sdep["metadata"].update(namespace=ns, name="broken")
    sdep["spec"]["predictors"][0]["graph"]["name"] = "classifier"
    kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(sdep))
    until(lambda: sdep_status(k8s, ns, "broken").get("state") == "Failed", "state Failed")
    st = sdep_status(k8s, ns, "broken")
    assert "Can't find container for Predictive Unit" in st["description"] and "classifier" in st["description"]
    assert client.AppsV1Api(k8s).list_namespaced_deployment(ns).items == []
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
