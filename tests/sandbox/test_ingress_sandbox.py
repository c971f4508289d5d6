"""The whole serving path in the running sandbox: Ingress -> nginx proxy -> predictor Service -> Seldon
executor -> model unit (``hashicorp/http-echo`` as the unit, a real process per pod), the per-route
count, and the external metric read with kubectl from the Kubernetes API URL.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

PREDICTION = {"data": {"ndarray": [[1.0, 2.0]]}}


def echo_sdep(ns: str, cluster_id: str, max_replicas: int = 6, name: str = "echo") -> dict:
    """A SeldonDeployment whose model unit is http-echo answering a fixed Seldon response on 9000."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "predictors": [
                {
                    "name": "default",
                    "replicas": 1,
                    "componentSpecs": [
                        {
                            "hpaSpec": {
                                "minReplicas": 1,
                                "maxReplicas": max_replicas,
                                "metrics": [
                                    {
                                        "type": "External",
                                        "external": {
                                            "metricName": "sls_ingress_qps",
                                            "metricSelector": {
                                                "matchLabels": {
                                                    "sls.project": f"k8s-log-{cluster_id}",
                                                    "sls.logstore": "nginx-ingress",
                                                    "sls.ingress.route": f"{ns}-{name}-default-8000",
                                                }
                                            },
                                            "targetAverageValue": 10,
                                        },
                                    }
                                ],
                            },
                            "spec": {
                                "containers": [
                                    {
                                        "name": "echo",
                                        "image": "hashicorp/http-echo",
                                        "args": ["-listen=:9000", '-text={"data":{"names":["t:0"],"ndarray":[[0.9]]}}'],
                                        "resources": {"requests": {"cpu": "50m"}},
                                    }
                                ]
                            },
                        }
                    ],
                    "graph": {"name": "echo", "type": "MODEL", "endpoint": {"type": "REST"}, "children": []},
                }
            ]
        },
    }


def ingress_for(ns: str, name: str = "echo", host: str | None = None) -> dict:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": f"{name}-default", "port": {"number": 8000}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ingressClassName": "nginx", "rules": [rule]},
    }


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


def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(10_000):
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def host_of(ns: str) -> str:
    """Each test's own virtual host: Ingresses of other tests in the session may be host-less."""
    return f"{ns}.example.com"


def deploy_echo(sandbox: dict, k8s: client.ApiClient, ns: str, **kw: Any) -> None:
    try:
        client.CoreV1Api(k8s).create_namespace({"metadata": {"name": ns}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    docs = [echo_sdep(ns, sandbox["cluster_id"], **kw), ingress_for(ns, host=host_of(ns))]
    for doc in docs:
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(doc))
    custom = client.CustomObjectsApi(k8s)
    until(
        lambda: (
            (
                custom.get_namespaced_custom_object(
                    "machinelearning.seldon.io", "v1", ns, "seldondeployments", "echo"
                ).get("status")
                or {}
            ).get("state")
            == "Available"
        ),
        "the SeldonDeployment Available",
    )


def route_ready(sandbox: dict, route: str) -> dict:
    def check() -> dict | None:
        routes = requests.get(f"{sandbox['ingress']}/.sandbox/ingress/routes", timeout=10).json()["routes"]
        return next((r for r in routes if r["route"] == route and r["endpoints"]), None)

    return until(check, f"endpoints of route {route}", timeout=30)


def metric(sandbox: dict, ns: str, labels: dict[str, str], name: str = "sls_ingress_qps") -> dict:
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in labels.items()))
    return json.loads(
        kubectl(
            sandbox,
            "get",
            "--raw",
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{name}?labelSelector={selector}",
        )
    )


def test_requests_through_the_ingress_reach_the_model_and_are_counted(sandbox: dict, k8s: client.ApiClient) -> None:
    ns = "ingress-echo"
    deploy_echo(sandbox, k8s, ns)
    ing = until(
        lambda: client.NetworkingV1Api(k8s).read_namespaced_ingress("echo", ns).status.load_balancer.ingress,
        "the Ingress address",
    )
    proxy_port = int(sandbox["ingress"].rsplit(":", 1)[1])
    assert ing[0].ip == "127.0.0.1" and ing[0].ports[0].port == proxy_port
    assert "127.0.0.1" in kubectl(sandbox, "get", "ingress", "-n", ns, "echo")

    url = f"http://{ing[0].ip}:{ing[0].ports[0].port}/api/v1.0/predictions"
    route_ready(sandbox, f"{ns}-echo-default-8000")  # nginx, too, picks endpoints up shortly after the pod
    sent = 60
    with requests.Session() as s:
        s.headers["Host"] = host_of(ns)
        for _ in range(sent):
            r = s.post(url, json=PREDICTION, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["ndarray"] == [[0.9]]
        other = s.post(url.replace("/api/", "/apx/"), json=PREDICTION, timeout=10)
        assert other.status_code == 404  # proxied (the executor's 404), so counted on the route
        routes = s.get(f"{sandbox['ingress']}/.sandbox/ingress/routes", timeout=10).json()
    route = next(r for r in routes["routes"] if r["route"] == f"{ns}-echo-default-8000")
    assert route["requests"] == sent + 1 and len(route["endpoints"]) == 1 and route["host"] == host_of(ns)

    labels = {
        "sls.project": f"k8s-log-{sandbox['cluster_id']}",
        "sls.logstore": "nginx-ingress",
        "sls.ingress.route": f"{ns}-echo-default-8000",
    }
    # A window long enough to hold every request (600 cloud s), no delay: value = requests / window (wall s)
    body = metric(sandbox, ns, {**labels, "sls.query.interval": "600", "sls.query.delay": "0"})
    window_wall = 600 / float(sandbox["time_scale"])
    assert body["kind"] == "ExternalMetricValueList"
    assert body["items"][0]["value"] == str(int((sent + 1) / window_wall))
    latency = metric(
        sandbox, ns, {**labels, "sls.query.interval": "600", "sls.query.delay": "0"}, "sls_ingress_latency_p95"
    )
    assert int(latency["items"][0]["value"]) >= 0
