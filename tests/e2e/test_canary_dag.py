"""``rollout.rollback_to`` end to end: ``airflow dags test elastic_inference`` puts version 1 back, beside a stable
version 2, through the canary path - nothing uploaded, a canary Ingress and SeldonDeployment for the analysis,
the stable object promoted (patched, same uid), no canary object left, every replica serving version 1 (TF
Serving's model status), the prober with no failed request, and the verification passed on the result.

One DAG run: version 2 is put in place beforehand with the operators themselves (cheap), in the names the DAG
uses. The operator-level cases (broken, failing and slow canaries rolled back; a good one promoted) are in
``tests/integration/test_rollout_canary.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import E2E_LOAD_TEST, E2E_SLO_P95_MS
from tests.helpers import airflow_env, kubectl, kubectl_json

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAMESPACE, NAME, BUCKET, MODEL = "rollback", "fm-rb", "rollback-models", "fashion-mnist"
ROLLOUT = {
    "rollback_to": 1,
    "steps": [50],
    "step_seconds": 4,
    "analysis_rps": 8,
    "prober_rps": 5,
    "max_p95_increase_ms": 150,
}


def run_conf(model_dir: Path) -> dict[str, Any]:
    return {
        "model_source": str(model_dir),  # only for the samples beside it: nothing is uploaded on a rollback
        "namespace": NAMESPACE,
        "deployment_name": NAME,
        "ingress_host": "fm-rb.e2e.local",
        "model_name": MODEL,
        "bucket": BUCKET,
        "gpu_count": 0,
        "max_replicas": 3,
        "qps_target": 10,
        "rollout": ROLLOUT,
        "slo_p95_ms": E2E_SLO_P95_MS,
        "load_test": dict(E2E_LOAD_TEST),
        "node_pool": {
            "name": "fm-rb-pool",
            "instance_types": ["ecs.gn6i-c4g1.xlarge"],
            "max_instances": 4,
            "spot_strategy": "SpotAsPriceGo",
            "on_demand_percentage_above_base_capacity": 30,
            "compensate_with_on_demand": True,
            "multi_az_policy": "COST_OPTIMIZED",
            "labels": {"seldon": "fm-rb"},
        },
    }


def served_versions(sandbox: dict, selector: str) -> dict[str, list[int]]:
    import requests

    out = {}
    for pod in kubectl_json(sandbox, "pods", "-n", NAMESPACE, "-l", selector)["items"]:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
        if ready and not pod["metadata"].get("deletionTimestamp"):
            status = requests.get(f"http://{pod['status']['podIP']}:8501/v1/models/{MODEL}", timeout=5).json()
            out[pod["metadata"]["name"]] = sorted(
                int(v["version"]) for v in status["model_version_status"] if v["state"] == "AVAILABLE"
            )
    return out


@pytest.fixture
def stable_v2(sandbox, e2e_model: Path, tmp_path: Path) -> dict[str, Any]:
    """Versions 1 and 2 in OSS, version 2 serving under the DAG's names (volume, SeldonDeployment, Ingress)."""
    from elastic_inference.operators.ingress import CreateIngressOperator
    from elastic_inference.operators.model_upload import ModelUploadOperator
    from elastic_inference.operators.seldon import DeploySeldonOperator
    from elastic_inference.operators.volume import CreateOssVolumeOperator
    from elastic_inference.specs.run import resolve

    conns = {k: v for k, v in airflow_env(sandbox).items() if k.startswith("AIRFLOW_CONN_")}
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    try:
        v2 = tmp_path / "v2"
        shutil.copytree(e2e_model / "1", v2)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(namespace))
        specs, problems = resolve({**run_conf(e2e_model), "rollout": {}, "model_version": 2})
        assert specs is not None, problems
        serving = {**specs.serving.to_dict(), "node_selector": {}}  # v2 on any node: the DAG's promote moves it
        for source, version in ((e2e_model / "1", 1), (v2, 2)):
            ModelUploadOperator(
                task_id="upload",
                model={**specs.model.to_dict(), "source": str(source), "version": version},
                create_bucket=True,
            ).execute({})
        CreateOssVolumeOperator(task_id="volume", serving=serving, model=specs.model.to_dict(), timeout=120).execute({})
        dep = DeploySeldonOperator(task_id="serve", serving=serving, deferrable=False, timeout=300).execute({})
        CreateIngressOperator(task_id="ing", serving=serving, deferrable=False, timeout=120).execute({})
        versions = served_versions(sandbox, f"seldon-deployment-id={NAME}")
        assert versions and all(v == [2] for v in versions.values()), versions
        return dep
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_rollback_to_goes_through_the_canary_path(sandbox, airflow_cli, e2e_model, stable_v2) -> None:
    before = kubectl_json(sandbox, "sdep", NAME, "-n", NAMESPACE)
    assert before["metadata"]["annotations"]["elastic-inference/model-version"] == "2"
    result = airflow_cli.run("dags", "test", "elastic_inference", "-c", json.dumps(run_conf(e2e_model)), timeout=800)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-8000:]
    assert "rollback to version 1: it is in OSS already" in log, log[-4000:]  # the upload was skipped
    assert "Rollout: canary (version 2 serves: canary of 1 beside it)" in log
    assert re.search(r"prober: \d+ requests over \d+ s, 0 failed, p99", log), log[-4000:]
    summary = json.loads(re.findall(r"Summary: (\{.*\})", log)[-1])
    assert summary["verdict"] == "passed" and summary["rollout"] == "promoted", summary
    after = kubectl_json(sandbox, "sdep", NAME, "-n", NAMESPACE)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, not replaced
    assert after["metadata"]["annotations"]["elastic-inference/model-version"] == "1"
    versions = served_versions(sandbox, f"seldon-deployment-id={NAME}")
    assert versions and all(v == [1] for v in versions.values()), versions
    left = kubectl(sandbox, "get", "sdep,ingress,configmap", "-n", NAMESPACE, "-o", "name")
    assert f"{NAME}-canary" not in left, left
    report = Path(summary["report_path"])
    assert (report.parent / "rollout.html").is_file() and "stable v2 vs canary v1" in report.read_text()
