"""Ingress operator: create-or-patch, wait for an address, predict URL to XCom; plus Kubernetes access through
the ACK user kubeconfig (DescribeClusterUserKubeconfig on the sandbox CS) instead of the cncf connection."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook, ResourceFailedError, ResourceWaitTimeout
from elastic_inference.k8s_objects import ResourceRef
from elastic_inference.operators.ingress import CreateIngressOperator
from elastic_inference.sensors.kubernetes import IngressAddressSensor
from tests.helpers import until
from tests.integration.support import run_deferred, uid

pytestmark = pytest.mark.integration


def lb_port(kube: Any, namespace: str, name: str) -> int:
    """The port the sandbox's ingress controller published in the Ingress status."""
    from kubernetes import client

    ing = client.NetworkingV1Api(kube).read_namespaced_ingress(name, namespace)
    return ing.status.load_balancer.ingress[0].ports[0].port


def ingress_op(namespace: str, name: str, **kw: Any) -> CreateIngressOperator:
    return CreateIngressOperator(
        task_id="ingress",
        name=name,
        namespace=namespace,
        service_name=f"{name}-predictor",
        timeout=kw.pop("timeout", 60),
        **kw,
    )


def test_ingress_address_to_predict_url_and_rerun_unchanged(kube, namespace) -> None:
    """The sandbox's ingress controller (nginx class, the default) fills status.loadBalancer."""
    from kubernetes import client

    name = f"i{uid()}"
    first = run_deferred(ingress_op(namespace, name, deferrable=True))
    assert first["action"] == "created"
    port = lb_port(kube, namespace, name)
    assert (first["address"], first["port"]) == ("127.0.0.1", port)
    assert first["predict_url"] == f"http://127.0.0.1:{port}/api/v1.0/predictions"
    stored = client.NetworkingV1Api(kube).read_namespaced_ingress(name, namespace)
    backend = stored.spec.rules[0].http.paths[0].backend.service
    assert (backend.name, backend.port.number) == (f"{name}-predictor", 8000)

    second = ingress_op(namespace, name, deferrable=False).execute({})
    assert second["action"] == "unchanged" and second["uid"] == first["uid"]
    assert second["resource_version"] == stored.metadata.resource_version
    assert second["predict_url"] == first["predict_url"]

    with_host = run_deferred(ingress_op(namespace, name, deferrable=True, host="fashion.example.com"))
    assert with_host["action"] == "patched" and with_host["uid"] == first["uid"]
    assert with_host["host_header"] == "fashion.example.com"


def test_unserved_ingress_ends_in_a_timeout_from_the_trigger(namespace) -> None:
    """No controller serves this class: the deadline inside the wait ends it with the last state seen."""
    name = f"i{uid()}"
    with pytest.raises(ResourceWaitTimeout, match="has no address yet"):
        ingress_op(namespace, name, deferrable=False, timeout=1.5, ingress_class="no-such-class").execute({})


def test_on_kill_ends_an_in_process_wait(namespace) -> None:
    name = f"i{uid()}"
    op = ingress_op(namespace, name, deferrable=False, timeout=300, ingress_class="no-such-class")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            op.execute({})
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    until("the in-process wait", lambda: op._waiter is not None and op._waiter._task is not None, timeout=10.0)
    op.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), ResourceFailedError) and "cancelled" in str(outcome["error"])


def test_access_through_the_ack_user_kubeconfig(k8s_env, kube, namespace) -> None:
    """Only an alibaba_ack connection and a cluster id: the kubeconfig comes from DescribeClusterUserKubeconfig."""
    name = f"i{uid()}"
    access = dict(kubernetes_conn_id=None, ack_conn_id="alibaba_ack_default", cluster_id=k8s_env["cluster_id"])
    hook = KubeHook(KubeAccess(**access))
    assert hook.get(ResourceRef("v1", "Namespace"), None, namespace)["metadata"]["name"] == namespace

    result = run_deferred(ingress_op(namespace, name, deferrable=True, **access))
    assert result["predict_url"] == f"http://127.0.0.1:{lb_port(kube, namespace, name)}/api/v1.0/predictions"
    sensor = IngressAddressSensor(
        task_id="addr", name=name, namespace=namespace, timeout=10, deferrable=False, **access
    )
    assert sensor.poke({}).xcom_value["address"] == "127.0.0.1"


@pytest.fixture
def bad_token_conn(k8s_env) -> Any:
    """A kubernetes connection with the kubeconfig inline (``kube_config`` extra) and a token the API rejects."""
    import json
    import os

    import yaml

    cfg = yaml.safe_load((k8s_env["state_dir"] / "kubeconfig").read_text())
    for user in cfg["users"]:
        user["user"]["token"] = "not-a-valid-token"
    var = "AIRFLOW_CONN_K8S_BAD_TOKEN"
    os.environ[var] = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": yaml.safe_dump(cfg)}})
    yield "k8s_bad_token"
    os.environ.pop(var, None)


def test_rejected_credentials_fail_at_once(namespace, bad_token_conn) -> None:
    """401 is terminal: the apply fails on its first attempt, and a trigger reports an error, not a timeout."""
    import asyncio

    from elastic_inference.hooks.kubernetes import KubernetesTerminalError
    from elastic_inference.triggers.ingress import IngressAddressTrigger

    with pytest.raises(KubernetesTerminalError, match="HTTP 401") as err:
        ingress_op(namespace, f"i{uid()}", kubernetes_conn_id=bad_token_conn).execute({})
    assert "not-a-valid-token" not in str(err.value)

    trigger = IngressAddressTrigger(
        access={"kubernetes_conn_id": bad_token_conn},
        namespace=namespace,
        name="x",
        deadline=__import__("time").time() + 60,
    )
    event = asyncio.run(trigger.wait())
    assert event["status"] == "error" and "401" in event["message"]


def test_kind_the_cluster_does_not_serve_fails_with_a_hint(namespace) -> None:
    from elastic_inference.hooks.kubernetes import KubernetesTerminalError

    op = ingress_op(
        namespace,
        f"i{uid()}",
        manifest=("apiVersion: networking.k8s.io/v9\nkind: Ingress\nmetadata:\n  name: x\nspec: {}\n"),
    )
    with pytest.raises(KubernetesTerminalError, match="networking.k8s.io/v9 Ingress is not served by this cluster"):
        op.execute({})


def test_resume_with_the_event_alone_keeps_the_applied_details(namespace) -> None:
    """`airflow dags test` resumes a deferred task with only the trigger event (no defer() kwargs): the
    operator's carry travels inside the event, so the XCom still has the host header, uid and action."""
    import asyncio
    import importlib

    from airflow.sdk.exceptions import TaskDeferred

    name = f"i{uid()}"
    op = ingress_op(namespace, name, deferrable=True, host=f"{name}.example.com")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    module, _, cls = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), cls)(**kwargs)

    async def first_event() -> dict:
        return (await trigger.run().__anext__()).payload

    result = op.execute_complete({}, event=asyncio.run(first_event()))  # no carry= kwarg, as in dags test
    assert result["host_header"] == f"{name}.example.com"
    assert result["action"] == "created" and result["uid"]
    assert result["predict_url"].endswith("/api/v1.0/predictions")
