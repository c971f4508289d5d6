"""``airflow dags test elastic_inference`` against the sandbox reaches a ready endpoint that predicts right,
and a second run with the same inputs changes nothing."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.support import E2E_LOAD_TEST, E2E_SLO_P95_MS
from tests.helpers import kubectl, kubectl_json

# Two whole DAG runs, each bounded by its own subprocess timeout; the default 300 s bound is for one step.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

NAMESPACE = "e2e"
KINDS = "seldondeployment,deployment,service,horizontalpodautoscaler,ingress,persistentvolumeclaim,secret"


def run_conf(model_dir) -> dict:
    return {
        "model_source": str(model_dir),
        "namespace": NAMESPACE,
        "deployment_name": "fm-e2e",
        "ingress_host": "fm-e2e.e2e.local",  # other tests' ingresses in the shared sandbox route "/" too
        "model_name": "fashion-mnist",
        "bucket": "e2e-models",
        "max_replicas": 3,
        "qps_target": 10,
        "slo_p95_ms": E2E_SLO_P95_MS,
        # a short load (the sandbox runs at x30): 0.8 x 10 x 3 = 24 req/s → the HPA formula wants 3 replicas
        "load_test": dict(E2E_LOAD_TEST),
        "node_pool": {
            "name": "fm-e2e-pool",
            "instance_types": ["ecs.gn6i-c4g1.xlarge"],
            "min_instances": 0,
            "max_instances": 4,
            "spot_strategy": "SpotAsPriceGo",
            "on_demand_base_capacity": 0,
            "on_demand_percentage_above_base_capacity": 30,
            "compensate_with_on_demand": True,
            "multi_az_policy": "COST_OPTIMIZED",
            "labels": {"seldon": "fm-e2e"},
            "taints": [],
        },
    }


def identities(sandbox: dict) -> dict[str, str]:
    objs = kubectl_json(sandbox, KINDS, "-n", NAMESPACE)["items"]
    pv = kubectl_json(sandbox, "pv", f"{NAMESPACE}-fm-e2e-model")
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in [*objs, pv]}


def test_deploy_dag_reaches_a_predicting_endpoint_and_reruns_unchanged(sandbox, airflow_cli, trained_model):
    namespace = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kubectl(sandbox, "apply", "-f", "-", stdin=namespace)
    conf = json.dumps(run_conf(trained_model))

    first = airflow_cli.run("dags", "test", "elastic_inference", "-c", conf, timeout=900)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-6000:]
    correct = re.search(r"smoke test: (\d+)/(\d+) correct", log)
    assert correct and int(correct[1]) >= 0.8 * int(correct[2]), log[-3000:]
    summary = json.JSONDecoder().raw_decode(log[log.rindex("Summary: {") + len("Summary: ") :])[0]
    assert summary["verdict"] == "passed", summary
    assert summary["replicas_reached"] >= 2 and summary["error_rate"] == 0, summary
    uids = identities(sandbox)
    assert {
        "SeldonDeployment/fm-e2e",
        "Ingress/fm-e2e",
        "PersistentVolumeClaim/fm-e2e-model",
        "PersistentVolume/e2e-fm-e2e-model",
        "Secret/fm-e2e-oss",
    } <= set(uids)
    sdep = kubectl_json(sandbox, "sdep", "fm-e2e", "-n", NAMESPACE)
    assert sdep["status"]["state"] == "Available"
    pods = kubectl_json(sandbox, "pods", "-n", NAMESPACE, "-l", "seldon-deployment-id=fm-e2e")["items"]
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(sandbox, "nodes")["items"]}
    assert pods and all(nodes[p["spec"]["nodeName"]]["metadata"]["labels"].get("seldon") == "fm-e2e" for p in pods)

    second = airflow_cli.run("dags", "test", "elastic_inference", "-c", conf, timeout=900)
    log2 = second.stdout + second.stderr
    assert second.returncode == 0, log2[-6000:]
    assert "0 bytes uploaded" in log2
    assert "nothing to modify" in log2
    assert identities(sandbox) == uids
    for kind in ("Secret", "PersistentVolume", "PersistentVolumeClaim", "SeldonDeployment", "Ingress"):
        assert f"{kind} " in log2 and "unchanged" in log2


def test_invalid_params_are_rejected_before_anything_is_created(sandbox, airflow_cli, trained_model):
    # A bad label key passes the Param schema (any string key) and used to fail only in ensure_node_pool, while
    # upload_model already ran: plan now runs the node pool spec's problems too, and names every problem at once.
    conf = run_conf(trained_model) | {
        "min_replicas": 5,
        "max_replicas": 2,
        "deployment_name": "never-made",
        "bucket": "never-made",
        "node_pool": {"name": "never-made", "labels": {"bad key!": "x"}},
    }
    result = airflow_cli.run("dags", "test", "elastic_inference", "-c", json.dumps(conf), timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "min_replicas (5) is greater than max_replicas (2)" in log
    assert "node_pool.labels['bad key!']: label key name must be 1-63 alphanumerics" in log
    assert "never-made" not in kubectl(sandbox, "get", "sdep,ingress", "-A")
    assert "never-made" not in json.dumps(cs_node_pools(sandbox))
    assert "never-made" not in oss_buckets(sandbox)  # upload_model did not run either


def oss_buckets(sandbox: dict) -> list[str]:
    import oss2

    service = oss2.Service(oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]), sandbox["oss"])
    return [b.name for b in oss2.BucketIterator(service)]


def cs_node_pools(sandbox: dict) -> list[dict]:
    from alibabacloud_cs20151215 import models as cs
    from alibabacloud_cs20151215.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    client = Client(
        Config(
            access_key_id=sandbox["access_key_id"],
            access_key_secret=sandbox["access_key_secret"],
            endpoint=sandbox["cs"].removeprefix("http://"),
            protocol="http",
        )
    )
    body = client.describe_cluster_node_pools(sandbox["cluster_id"], cs.DescribeClusterNodePoolsRequest()).body
    return body.to_map()["nodepools"]
