"""The canary rollout on the KServe backend, through the same operators as on Seldon: v1 served as an
InferenceService, v2 deployed beside it as ``<name>-canary`` (its own InferenceService, HPA and route), analysed
through the canary Ingress in TF Serving's protocol, and promoted: the stable InferenceService is updated in place
(same uid), every replica serves v2, no canary object is left, the prober saw no failed request."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from elastic_inference.operators.ingress import CreateIngressOperator
from elastic_inference.operators.model_upload import ModelUploadOperator
from elastic_inference.operators.rollout import CanaryAnalysisOperator, PromoteCanaryOperator
from elastic_inference.operators.seldon import DeployServingOperator
from elastic_inference.operators.volume import CreateOssVolumeOperator
from tests.helpers import FakeDag, FakeTI, until
from tests.integration.support import uid

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "fashion-mnist"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ROLLOUT = {"steps": [50], "step_seconds": 4, "analysis_rps": 8, "prober_rps": 5, "max_p95_increase_ms": 150}
_SAMPLES = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, os.path.join(sys.argv[2], "include"))
    import numpy as np
    from training.data import load_split

    _x, _y, x_test, y_test = load_split()
    with open(sys.argv[1], "w") as fh:
        json.dump({"images": np.asarray(x_test[:40]).tolist(), "labels": [int(v) for v in y_test[:40]]}, fh)
    """
)


def context(run_id: str) -> dict[str, Any]:
    return {"ti": FakeTI(), "dag": FakeDag(), "run_id": run_id}


def upload(source: Path, version: int, prefix: str) -> None:
    ModelUploadOperator(
        task_id="upload", source=str(source), bucket="models", prefix=prefix, model_name=MODEL, version=version
    ).execute({})


def isvc(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client

    try:
        return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except client.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise


def served(kube: Any, ns: str, selector: str) -> dict[str, tuple[int, ...]]:
    import requests
    from kubernetes import client

    out = {}
    for pod in client.CoreV1Api(kube).list_namespaced_pod(ns, label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if not ready or pod.metadata.deletion_timestamp:
            continue
        status = requests.get(f"http://{pod.status.pod_ip}:8080/v1/models/{MODEL}", timeout=5).json()
        out[pod.metadata.name] = tuple(
            sorted(int(v["version"]) for v in status["model_version_status"] if v["state"] == "AVAILABLE")
        )
    return out


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("kserve-rollout") / "samples.json"
    subprocess.run([sys.executable, "-c", _SAMPLES, str(path), str(REPO)], check=True, timeout=120)
    yield path


def test_good_canary_is_promoted_on_kserve(k8s_env, kube, trained_savedmodel, samples, tmp_path) -> None:
    from kubernetes import client

    from elastic_inference.hooks.oss import OssHook

    oss = OssHook()
    if not oss.bucket_exists("models"):
        oss.create_bucket("models")
    ns, prefix = f"kro-{uid()}", f"kro{uid()}"
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": ns}})
    v1 = trained_savedmodel / MODEL / "1"
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    try:
        upload(v1, 1, prefix)
        claim = CreateOssVolumeOperator(
            task_id="volume", bucket="models", path=f"/{prefix}", pv_name=f"{ns}-pv", pvc_name="model", namespace=ns
        ).execute({})["pvc"]
        serving = {
            "namespace": ns,
            "name": "fm",
            "serving_backend": "kserve",
            "ingress_host": f"{ns}.example",
            "gpu_count": 0,
            "min_replicas": 1,
            "max_replicas": 2,
            "model_name": MODEL,
            "model_version": 1,
        }
        kw: dict[str, Any] = dict(pvc_name=claim, rollout=ROLLOUT, deferrable=False, timeout=240)
        first = DeployServingOperator(task_id="serve", serving=serving, **kw).execute(context("v1"))
        assert first["backend"] == "kserve" and first["rollout"]["mode"] == "direct"
        ing = CreateIngressOperator(task_id="ing", serving=serving, deferrable=False, timeout=120).execute({})
        assert ing["predict_url"].endswith(f"/v1/models/{MODEL}:predict")
        before = isvc(kube, ns, "fm")
        assert before is not None

        upload(v2, 2, prefix)
        serving2 = {**serving, "model_version": 2}
        dep = DeployServingOperator(task_id="serve", serving=serving2, **kw).execute(context("good"))
        assert dep["rollout"]["mode"] == "canary" and dep["name"] == "fm-canary"
        assert dep["service"] == "fm-canary-predictor" and dep["protocol"] == "tfserving"
        reports = tmp_path / "reports"
        analysis = CanaryAnalysisOperator(
            task_id="analysis",
            deployment=dep,
            ingress=ing,
            rollout=ROLLOUT,
            samples_path=str(samples),
            reports_dir=str(reports),
        ).execute(context("good"))
        assert [s["weight"] for s in analysis["steps"]] == [0, 50] and all(s["passed"] for s in analysis["steps"])
        promoted = PromoteCanaryOperator(
            task_id="promote",
            serving=serving2,
            pvc_name=claim,
            deployment=dep,
            ingress=ing,
            analysis=analysis,
            rollout=ROLLOUT,
            samples_path=str(samples),
            reports_dir=str(reports),
            timeout=240,
        ).execute(context("good"))
        assert promoted["version"] == 2 and promoted["backend"] == "kserve"
        assert promoted["prober"]["failures"] == 0 and promoted["prober"]["requests"] > 0, promoted["prober"]
        after = isvc(kube, ns, "fm")
        assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
        until(
            "every stable replica on version 2",
            lambda: set(served(kube, ns, promoted["pod_selector"]).values()) == {(2,)},
            60,
        )
        assert isvc(kube, ns, "fm-canary") is None
        names = [i.metadata.name for i in client.NetworkingV1Api(kube).list_namespaced_ingress(ns).items]
        assert names == [ing["name"]]
        hpas = [
            h.metadata.name for h in client.AutoscalingV2Api(kube).list_namespaced_horizontal_pod_autoscaler(ns).items
        ]
        assert hpas == ["fm-predictor"]
    finally:
        core.delete_namespace(ns)
        try:
            core.delete_persistent_volume(f"{ns}-pv")
        except client.exceptions.ApiException:
            pass
