"""``airflow dags test elastic_inference`` with ``serving_backend: kserve`` against the sandbox: the same DAG serves
the model as a KServe InferenceService (RawDeployment) - ``kubectl get isvc`` READY True with its URL, smoke and
load test over TF Serving's protocol through the same Ingress, scale-out onto spot and pay-as-you-go nodes of the
elastic pool, verification passed.

One DAG run: the second run with the same inputs (every object keeps its uid, nothing is uploaded) is the Seldon
run's, in test_elastic_inference_dag.py, through the same tasks; the InferenceService's and its HPA's unchanged
re-apply after a scale-out is tests/integration/test_kserve_operator.py."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.support import E2E_LOAD_TEST, E2E_SLO_P95_MS
from tests.helpers import kubectl, kubectl_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

NAMESPACE = "e2e-kserve"
NAME = "fm-ks"
KINDS = "inferenceservice,deployment,service,horizontalpodautoscaler,ingress,persistentvolumeclaim,secret"


def run_conf(model_dir) -> dict:
    return {
        "model_source": str(model_dir),
        "serving_backend": "kserve",
        "namespace": NAMESPACE,
        "deployment_name": NAME,
        "ingress_host": f"{NAME}.e2e.local",  # other tests' ingresses in the shared sandbox route "/" too
        "model_name": "fashion-mnist",
        "bucket": "e2e-kserve-models",
        "max_replicas": 3,
        "qps_target": 10,
        "slo_p95_ms": E2E_SLO_P95_MS,
        "load_test": dict(E2E_LOAD_TEST),
        "node_pool": {
            "name": f"{NAME}-pool",
            "instance_types": ["ecs.gn6i-c4g1.xlarge"],
            "min_instances": 0,
            "max_instances": 4,
            "spot_strategy": "SpotAsPriceGo",
            "on_demand_base_capacity": 0,
            # half of the nodes above the base pay-as-you-go: from 2 nodes on, both charge types
            "on_demand_percentage_above_base_capacity": 50,
            "compensate_with_on_demand": True,
            "multi_az_policy": "COST_OPTIMIZED",
            "labels": {"seldon": NAME},
            "taints": [],
        },
    }


def identities(sandbox: dict) -> dict[str, str]:
    objs = kubectl_json(sandbox, KINDS, "-n", NAMESPACE)["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in objs}


def test_kserve_backend_end_to_end(sandbox, airflow_cli, e2e_model):
    namespace = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kubectl(sandbox, "apply", "-f", "-", stdin=namespace)
    conf = json.dumps(run_conf(e2e_model))

    first = airflow_cli.run("dags", "test", "elastic_inference", "-c", conf, timeout=900)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-6000:]
    correct = re.search(r"smoke test: (\d+)/(\d+) correct", log)
    assert correct and int(correct[1]) >= 0.8 * int(correct[2]), log[-3000:]
    summary = json.JSONDecoder().raw_decode(log[log.rindex("Summary: {") + len("Summary: ") :])[0]
    assert summary["verdict"] == "passed", summary
    assert summary["replicas_reached"] >= 2 and summary["error_rate"] == 0, summary
    mix = re.search(r"PASS spot_mix: at its peak the pool had (\d+) nodes?: (\d+) pay-as-you-go, (\d+) spot", log)
    assert mix and int(mix[2]) >= 1 and int(mix[3]) >= 1, log[-3000:]

    table = kubectl(sandbox, "get", "isvc", "-n", NAMESPACE, NAME).strip().splitlines()
    assert table[0].split()[:3] == ["NAME", "URL", "READY"]
    assert table[1].split()[:3] == [NAME, f"http://{NAME}-{NAMESPACE}.example.com", "True"]
    assert {
        f"InferenceService/{NAME}",
        f"Deployment/{NAME}-predictor",
        f"Service/{NAME}-predictor",
        f"HorizontalPodAutoscaler/{NAME}-predictor",
        f"Ingress/{NAME}",
    } <= set(uids := identities(sandbox))
    assert not any(k.startswith("SeldonDeployment/") for k in uids)
    ing = kubectl_json(sandbox, "ingress", NAME, "-n", NAMESPACE)
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{NAME}-predictor", "port": {"number": 80}}
    hpa = kubectl_json(sandbox, "hpa", f"{NAME}-predictor", "-n", NAMESPACE)
    route = hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["sls.ingress.route"]
    assert route == f"{NAMESPACE}-{NAME}-predictor-80"
    pods = kubectl_json(sandbox, "pods", "-n", NAMESPACE, "-l", f"serving.kserve.io/inferenceservice={NAME}")["items"]
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(sandbox, "nodes")["items"]}
    assert pods and all(nodes[p["spec"]["nodeName"]]["metadata"]["labels"].get("seldon") == NAME for p in pods)
