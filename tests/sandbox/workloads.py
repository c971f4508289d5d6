"""Objects and waits the sandbox's integration tests share (test modules never import each other).

The echo serving path: a SeldonDeployment whose model unit is ``hashicorp/http-echo`` (a real process per pod)
behind an nginx Ingress on its own virtual host, and the waits for it to serve.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.helpers import kubectl, until

NS = "default"
SEED = Path(__file__).resolve().parents[1] / "data" / "seed"  # the seed procedure's manifests, verbatim


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


def host_of(ns: str) -> str:
    """Each test's own virtual host: Ingresses of other tests in the session may be host-less."""
    return f"{ns}.example.com"


def deploy_echo(sandbox: dict, kube: client.ApiClient, ns: str, **kw: Any) -> None:
    try:
        client.CoreV1Api(kube).create_namespace({"metadata": {"name": ns}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    docs = [echo_sdep(ns, sandbox["cluster_id"], **kw), ingress_for(ns, host=host_of(ns))]
    for doc in docs:
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(doc))
    custom = client.CustomObjectsApi(kube)
    until(
        "the SeldonDeployment Available",
        lambda: (
            (
                custom.get_namespaced_custom_object(
                    "machinelearning.seldon.io", "v1", ns, "seldondeployments", "echo"
                ).get("status")
                or {}
            ).get("state")
            == "Available"
        ),
    )


def route_ready(sandbox: dict, route: str) -> dict:
    def check() -> dict | None:
        routes = requests.get(f"{sandbox['ingress']}/.sandbox/ingress/routes", timeout=10).json()["routes"]
        return next((r for r in routes if r["route"] == route and r["endpoints"]), None)

    return until(f"endpoints of route {route}", check, timeout=30)


def events_for(core: client.CoreV1Api, name: str, namespace: str = NS) -> list[client.CoreV1Event]:
    return [e for e in core.list_namespaced_event(namespace).items if e.involved_object.name == name]


# ---- the seed procedure's SeldonDeployment (fashion.yaml) ----------------------------------------------------------


def seed_fashion() -> dict:
    """The SeldonDeployment of the seed procedure, as written there (``tests/data/seed/fashion.yaml``)."""
    return yaml.safe_load((SEED / "fashion.yaml").read_text())


def to_v2_format(sdep: dict) -> dict:
    out = copy.deepcopy(sdep)
    hpa = out["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"]
    ext = hpa.pop("metrics")[0]["external"]
    hpa["metricsv2"] = [
        {
            "type": "External",
            "external": {
                "metric": {"name": ext["metricName"], "selector": ext["metricSelector"]},
                "target": {"type": "AverageValue", "averageValue": str(ext["targetAverageValue"])},
            },
        }
    ]
    return out


EXPECTED_METRIC = {
    "type": "External",
    "external": {
        "metric": {
            "name": "sls_ingress_qps",
            "selector": {
                "matchLabels": {
                    "sls.project": "k8s-log-c9522b942edaf4ec98c2cbc351ec8ade6",
                    "sls.logstore": "nginx-ingress",
                    "sls.ingress.route": "default-fashion-mnist-ecs-predictor-8000",
                }
            },
        },
        "target": {"type": "AverageValue", "averageValue": "10"},
    },
}
