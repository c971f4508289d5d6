"""What the Seldon v1 reconciler derives from the seed's fashion.yaml (pure logic)."""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest

from ack_sandbox.controllers import seldon_objects as so
from tests.sandbox.workloads import EXPECTED_METRIC, seed_fashion, to_v2_format


@pytest.fixture()
def fashion() -> dict:
    return seed_fashion()


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_seed_objects_have_seldons_names_labels_and_hpa(fashion: dict, fmt: str) -> None:
    sdep = fashion if fmt == "v2beta1" else to_v2_format(fashion)
    comps = so.build(sdep)
    [dep] = comps.deployments
    assert dep["metadata"]["name"] == "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["seldon-app"] == "fashion-mnist-ecs-predictor"
    assert labels["seldon-deployment-id"] == "fashion-mnist-ecs"
    assert labels["app.kubernetes.io/managed-by"] == "seldon-core"
    assert labels["seldon-app-svc"] == "fashion-mnist-ecs-predictor-tfserving-proxy"
    names = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
    assert names == ["tfserving-proxy", "fashion-mnist", "seldon-container-engine"]
    assert {s["metadata"]["name"]: [p["port"] for p in s["spec"]["ports"]] for s in comps.services} == {
        "fashion-mnist-ecs-predictor": [8000, 5001],
        "fashion-mnist-ecs-predictor-tfserving-proxy": [9000, 9500],
    }
    [hpa] = comps.hpas
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["metadata"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    assert hpa["spec"]["metrics"] == [EXPECTED_METRIC]
    assert comps.address == "http://fashion-mnist-ecs-predictor.default.svc.cluster.local:8000/api/v1.0/predictions"


def test_executor_and_unit_container_wiring(fashion: dict) -> None:
    dep = so.build(fashion).deployments[0]
    proxy, serving, engine = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert env["SELDON_LOG_LEVEL"] == "DEBUG"  # user env kept
    assert env["PREDICTIVE_UNIT_HTTP_SERVICE_PORT"] == "9000" and env["PREDICTIVE_UNIT_ID"] == "tfserving-proxy"
    params = json.loads(env["PREDICTIVE_UNIT_PARAMETERS"])
    assert {p["name"]: p["value"] for p in params}["model_name"] == "fashion-mnist"
    assert "env" not in serving or not any(e["name"].startswith("PREDICTIVE_UNIT") for e in serving["env"])
    assert engine["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8000, "scheme": "HTTP"}
    predictor = json.loads(base64.b64decode({e["name"]: e["value"] for e in engine["env"]}["ENGINE_PREDICTOR"]))
    assert predictor["name"] == "predictor"
    assert predictor["graph"]["endpoint"] == {
        "type": "REST",
        "service_host": "localhost",
        "service_port": 9000,
        "httpPort": 9000,
        "grpcPort": 9500,
    }


def test_invalid_graph_names_the_field(fashion: dict) -> None:
    fashion["spec"]["predictors"][0]["graph"]["name"] = "classifier"
    with pytest.raises(
        so.SeldonSpecError,
        match=r'spec\.predictors\[0\]\.graph: Invalid value: "classifier": '
        r"Can't find container for Predictive Unit",
    ):
        so.build(fashion)


def test_long_names_are_hashed() -> None:
    name = so.deployment_name("a" * 40, "predictor", 0, {"spec": {"containers": [{"name": "b" * 30}]}})
    assert re.fullmatch(r"seldon-[0-9a-f]{32}", name)


def test_status_transitions(fashion: dict) -> None:
    comps = so.build(fashion)
    dep_name = comps.default_deployment
    creating = so.compute_status(comps, {dep_name: {"metadata": {"generation": 1}, "status": {}}}, True, {}, "t1")
    assert creating["state"] == "Creating"
    ready_cond = next(c for c in creating["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == "False"
    available_dep = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                }
            ],
        },
    }
    available = so.compute_status(comps, {dep_name: available_dep}, True, creating, "t2")
    assert available["state"] == "Available" and "description" not in available
    assert available["deploymentStatus"] == {dep_name: {"replicas": 1, "availableReplicas": 1}}
    assert available["replicas"] == 1
    assert available["address"]["url"].endswith(":8000/api/v1.0/predictions")
    conds = {c["type"]: c for c in available["conditions"]}
    assert [c["type"] for c in available["conditions"]] == sorted(conds)
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["lastTransitionTime"] == "t2"
    assert conds["HpasReady"]["reason"] == "All HPAs resources ready"
    assert conds["ServicesReady"]["lastTransitionTime"] == "t1"  # unchanged status keeps its time
    stuck = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            ],
        },
    }
    failed = so.compute_status(comps, {dep_name: stuck}, True, available, "t3")
    assert (failed["state"], failed["description"]) == ("Failed", so.FAILED_PROGRESS)
    error = so.compute_status(None, {}, False, {}, "t4", error="boom")
    assert (error["state"], error["description"]) == ("Failed", "boom")


def test_contains_ignores_server_defaults() -> None:
    desired = {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}
    found = {
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "template": {
                "spec": {
                    "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}],
                    "dnsPolicy": "ClusterFirst",
                }
            },
        }
    }
    assert so.contains(found, desired)
    found["spec"]["template"]["spec"]["containers"][0]["image"] = "y"
    assert not so.contains(found, desired)


def test_a_replicas_change_alone_leaves_the_pod_template_as_it_was(fashion: dict) -> None:
    """Scaling a SeldonDeployment by its replicas must not roll its pods (seldon-core #2008, fixed in #2016: the
    executor's ENGINE_PREDICTOR leaves replicas out)."""
    before = so.build(copy.deepcopy(fashion)).deployments[0]
    fashion["spec"]["predictors"][0]["replicas"] = 7
    after = so.build(fashion).deployments[0]
    assert after["spec"]["replicas"] == 7 != before["spec"]["replicas"]
    assert after["spec"]["template"] == before["spec"]["template"]
