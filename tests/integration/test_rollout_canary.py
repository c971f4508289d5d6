"""The rollout operators against the sandbox: one namespace, one deployed v1 (stable) for every case, then a canary
per case through the real operators, SDKs and HTTP - the ingress stand-in honours the ingress-nginx canary
annotations, TF Serving's model status API says which version each replica serves.

Cases (the issue's "done when", at the operator level; versions are distinct so each canary differs from v1):
garbage predictions (v3), a model that fails every request (v4) and a slow one (v5) are rolled back - the stable
object keeps its uid and generation and still serves v1, the prober saw no failed request, the failure names the
metric; a good v2 is promoted - every replica serves 2, no canary object is left, the prober saw no failure.
Uploads of those versions after v1 is serving never change what v1's replicas serve (the version is pinned).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.operators.ingress import CreateIngressOperator
from elastic_inference.operators.model_upload import ModelUploadOperator
from elastic_inference.operators.rollout import CanaryAnalysisOperator, PromoteCanaryOperator
from elastic_inference.operators.seldon import DeploySeldonOperator
from elastic_inference.operators.volume import CreateOssVolumeOperator
from tests.helpers import FakeDag, FakeTI, until
from tests.integration.support import seed_pool, uid

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "fashion-mnist"
POOL = {"elastic-pool": "rollout-canary"}  # the node labels of this module's pool, selected by its pods
GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
# Short windows: the verdicts compare canary and stable over the same seconds, so they need few requests.
ROLLOUT = {
    "steps": [50],
    "step_seconds": 4,
    "analysis_rps": 8,
    "prober_rps": 5,
    "max_p95_increase_ms": 150,
    "prober_max_seconds": 300,
}

_BUILD = textwrap.dedent(
    """
    import json, os, shutil, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.join(sys.argv[3], "include"))
    import numpy as np
    import tensorflow as tf
    from training.data import load_split

    v1, out = sys.argv[1], sys.argv[2]
    _x, _y, x_test, y_test = load_split()
    with open(os.path.join(out, "samples.json"), "w") as fh:
        json.dump({"images": np.asarray(x_test[:40]).tolist(), "labels": [int(v) for v in y_test[:40]]}, fh)
    shutil.copytree(v1, os.path.join(out, "good"))

    class Variant(tf.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind
            self.base = tf.saved_model.load(v1)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serve(self, images):
            n = tf.shape(images)[0]
            if self.kind == "error":  # every request fails inside the model server
                tf.debugging.assert_equal(n, -1, message="broken model")
            if self.kind == "garbage":  # well-formed answers, always class 3
                return {"output_0": tf.one_hot(tf.fill([n], 3), 10)}
            out = self.base.signatures["serving_default"](images=images)["output_0"]
            if self.kind == "slow":  # the right answers, 400 ms late (a graph op: no CPU burnt)
                ds = tf.data.Dataset.from_tensors(out)
                spec = dict(output_types=[tf.float32], output_shapes=[tf.TensorShape([None, 10])])
                slept = tf.raw_ops.SleepDataset(
                    input_dataset=ds._variant_tensor, sleep_microseconds=tf.constant(400_000, tf.int64), **spec
                )
                out = tf.raw_ops.DatasetToSingleElement(dataset=slept, **spec)[0]
            return {"output_0": out}

    for kind in ("garbage", "error", "slow"):
        m = Variant(kind)
        tf.saved_model.save(m, os.path.join(out, kind), signatures={"serving_default": m.serve})
    """
)


class Models:
    """v1 (trained) and its variants as SavedModel directories, plus labelled samples. The variants are built in a
    subprocess (TensorFlow stays out of this process) that runs while v1 is being deployed; ``[kind]`` waits."""

    def __init__(self, v1: Path, out: Path) -> None:
        self.v1, self.out = v1, out
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(v1), str(out), str(REPO)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def __getitem__(self, kind: str) -> Path:
        if kind == "v1":
            return self.v1
        if self.proc.returncode is None:
            output, _ = self.proc.communicate(timeout=300)
            assert self.proc.returncode == 0, output.decode(errors="replace")[-3000:]
        return self.out / ("samples.json" if kind == "samples" else kind)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def models(trained_savedmodel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    built = Models(trained_savedmodel / MODEL / "1", tmp_path_factory.mktemp("rollout-models"))
    try:
        yield built
    finally:
        built.close()


def upload(source: Path, version: int, prefix: str) -> None:
    ModelUploadOperator(
        task_id="upload", source=str(source), bucket="models", prefix=prefix, model_name=MODEL, version=version
    ).execute({})


def context(run_id: str) -> dict[str, Any]:
    return {"ti": FakeTI(), "dag": FakeDag(), "run_id": run_id}


@pytest.fixture(scope="module")
def stable(k8s_env, kube, models, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Namespace, OSS volume, v1 deployed on the first-deployment path and its Ingress (one unique host), on an
    elastic GPU pool of its own whose max is exactly the stable's replica plus the canary's: the pool is full
    while a canary runs, as a busy CI run found it (the promotion's rolling update must still get its surge)."""
    from kubernetes import client

    from elastic_inference.hooks.ack import AckHook
    from elastic_inference.hooks.oss import OssHook
    from elastic_inference.operators.node_pool import AckNodePoolOperator

    oss = OssHook()
    if not oss.bucket_exists("models"):
        oss.create_bucket("models")
    ns, name, prefix = f"ro-{uid()}", "fm", f"ro{uid()}"
    ack = AckHook()
    pool = AckNodePoolOperator(
        task_id="pool",
        deferrable=False,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(f"{ns}-pool", ack.describe_cluster()["vswitch_ids"][:2], max_instances=2, labels=POOL),
    ).execute({})
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": ns}})
    try:
        upload(models["v1"], 1, prefix)
        claim = CreateOssVolumeOperator(
            task_id="volume",
            bucket="models",
            path=f"/{prefix}",
            pv_name=f"{ns}-pv",
            pvc_name="model",
            namespace=ns,
            timeout=60,
        ).execute({})["pvc"]
        serving = {
            "namespace": ns,
            "name": name,
            "ingress_host": f"{ns}.example",
            "gpu_count": 1,
            "node_selector": POOL,
            "min_replicas": 1,
            "max_replicas": 1,  # with the canary's one replica: the pool's max
            "model_name": MODEL,
            "model_version": 1,
        }
        first = DeploySeldonOperator(
            task_id="serve",
            serving=serving,
            pvc_name=claim,
            rollout=ROLLOUT,
            deferrable=False,
            timeout=240,
        ).execute(context("v1"))
        assert first["rollout"]["mode"] == "direct" and "first deployment" in first["rollout"]["reason"]
        ing = CreateIngressOperator(task_id="ing", serving=serving, deferrable=False, timeout=120).execute({})
        yield {
            "ns": ns,
            "name": name,
            "prefix": prefix,
            "claim": claim,
            "serving": serving,
            "deployment": first,
            "ingress": ing,
            "reports": tmp_path_factory.mktemp("reports"),
        }
    finally:
        core.delete_namespace(ns)
        try:
            core.delete_persistent_volume(f"{ns}-pv")
        except client.exceptions.ApiException:
            pass
        ack.delete_node_pool(pool["nodepool_id"], force=True)


def stored_sdep(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client

    try:
        return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except client.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise


def served(stable: dict[str, Any], kube: Any, selector: str) -> dict[str, tuple[int, ...]]:
    """pod -> AVAILABLE versions, from TF Serving's model status API on each ready pod."""
    import requests
    from kubernetes import client

    out = {}
    for pod in client.CoreV1Api(kube).list_namespaced_pod(stable["ns"], label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if not ready or pod.metadata.deletion_timestamp:
            continue
        status = requests.get(f"http://{pod.status.pod_ip}:8501/v1/models/{MODEL}", timeout=5).json()
        out[pod.metadata.name] = tuple(
            sorted(int(v["version"]) for v in status["model_version_status"] if v["state"] == "AVAILABLE")
        )
    return out


def canary_run(stable: dict[str, Any], models: Models, kind: str, version: int) -> dict[str, Any]:
    """Upload ``kind`` as ``version``, deploy it (a canary beside v1) and analyse it; the analysis result."""
    upload(models[kind], version, stable["prefix"])
    serving = {**stable["serving"], "model_version": version}
    dep = DeploySeldonOperator(
        task_id="serve",
        serving=serving,
        pvc_name=stable["claim"],
        rollout=ROLLOUT,
        deferrable=False,
        timeout=240,
    ).execute(context(kind))
    assert dep["rollout"]["mode"] == "canary" and dep["name"] == f"{stable['name']}-canary"
    assert dep["rollout"]["stable"]["version"] == 1
    analysis = CanaryAnalysisOperator(
        task_id="analysis",
        deployment=dep,
        ingress=stable["ingress"],
        rollout=ROLLOUT,
        samples_path=str(models["samples"]),
        reports_dir=str(stable["reports"]),
    )
    try:
        return {"dep": dep, "analysis": analysis.execute(context(kind)), "error": None}
    except AirflowFailException as exc:
        return {"dep": dep, "analysis": None, "error": str(exc)}


def assert_stable_untouched(stable: dict[str, Any], kube: Any, before: dict[str, Any]) -> None:
    after = stored_sdep(kube, stable["ns"], stable["name"])
    assert after is not None
    assert (after["metadata"]["uid"], after["metadata"]["generation"]) == (
        before["metadata"]["uid"],
        before["metadata"]["generation"],
    )
    versions = served(stable, kube, f"seldon-deployment-id={stable['name']}")
    assert versions and set(versions.values()) == {(1,)}, versions
    assert stored_sdep(kube, stable["ns"], f"{stable['name']}-canary") is None


@pytest.mark.parametrize(
    ("kind", "version", "metric"),
    [("garbage", 3, "agreement"), ("error", 4, "error_rate"), ("slow", 5, "p95")],
)
def test_broken_canary_is_rolled_back_and_the_stable_kept(stable, kube, models, kind, version, metric) -> None:
    before = stored_sdep(kube, stable["ns"], stable["name"])
    assert before is not None
    run = canary_run(stable, models, kind, version)
    assert run["error"] is not None, f"the {kind} canary passed its analysis: {run['analysis']}"
    message = run["error"]
    assert f"canary of version {version} rolled back, stable version 1 kept" in message
    assert f"{metric}: canary" in message and "bound" in message
    assert "prober:" in message and ", 0 failed," in message, message
    assert "unchanged (uid" in message
    assert_stable_untouched(stable, kube, before)
    record = json.loads((Path(stable["reports"]) / "elastic_inference" / kind / "rollout.json").read_text())
    assert record["verdict"] == "rolled back" and record["prober_rollback"]["failures"] == 0
    assert record["prober_rollback"]["requests"] > 0  # it ran from the canary Ingress to the canary's removal


def test_good_canary_is_promoted_with_no_failed_request(stable, kube, models) -> None:
    from kubernetes import client

    before = stored_sdep(kube, stable["ns"], stable["name"])
    assert before is not None
    run = canary_run(stable, models, "good", 2)
    assert run["error"] is None, run["error"]
    analysis = run["analysis"]
    assert [s["weight"] for s in analysis["steps"]] == [0, 50] and all(s["passed"] for s in analysis["steps"])
    promoted = PromoteCanaryOperator(
        task_id="promote",
        serving={**stable["serving"], "model_version": 2},
        pvc_name=stable["claim"],
        deployment=run["dep"],
        ingress=stable["ingress"],
        analysis=analysis,
        rollout=ROLLOUT,
        samples_path=str(models["samples"]),
        reports_dir=str(stable["reports"]),
        timeout=240,
        promote_timeout=180,  # a surge pod stuck Unschedulable on the full pool fails here, not after 10 min
    ).execute(context("good"))
    assert promoted["version"] == 2 and promoted["prober"]["failures"] == 0, promoted["prober"]
    assert promoted["prober"]["requests"] > 0
    after = stored_sdep(kube, stable["ns"], stable["name"])
    assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]  # updated, not replaced
    until(
        "every stable replica on version 2",
        lambda: set(served(stable, kube, promoted["pod_selector"]).values()) == {(2,)},
        60,
    )
    # no canary object left: serving object, its pods, its Ingress
    assert stored_sdep(kube, stable["ns"], f"{stable['name']}-canary") is None
    names = [i.metadata.name for i in client.NetworkingV1Api(kube).list_namespaced_ingress(stable["ns"]).items]
    assert names == [stable["ingress"]["name"]]
    left = client.CoreV1Api(kube).list_namespaced_pod(
        stable["ns"], label_selector=f"seldon-deployment-id={stable['name']}-canary"
    )
    assert left.items == []
    record = json.loads((Path(stable["reports"]) / "elastic_inference" / "good" / "rollout.json").read_text())
    assert (
        record["verdict"] == "promoted" and (Path(stable["reports"]) / "elastic_inference/good/rollout.html").is_file()
    )


def test_a_redeploy_removes_the_canary_an_interrupted_run_left(stable, kube, models) -> None:
    """A run whose worker died mid-analysis leaves a canary Ingress taking its weight; the next run removes it."""
    import logging

    from kubernetes import client

    from elastic_inference.hooks.kubernetes import KubeHook
    from elastic_inference.operators.rollout import set_canary_ingress

    current = stored_sdep(kube, stable["ns"], stable["name"])
    assert current is not None
    version = int(current["metadata"]["annotations"]["elastic-inference/model-version"])
    dep = DeploySeldonOperator(
        task_id="serve",
        serving={**stable["serving"], "model_version": version},
        pvc_name=stable["claim"],
        rollout=ROLLOUT,
        deferrable=False,
        timeout=120,
    ).execute(context("rerun"))
    assert dep["rollout"]["mode"] == "direct" and "already serves" in dep["rollout"]["reason"]
    hook = KubeHook()
    try:
        left = {**dep, "service": dep["service"]}
        set_canary_ingress(hook, left, stable["ingress"], 50, log=logging.getLogger(__name__))
    finally:
        hook.close()
    names = {i.metadata.name for i in client.NetworkingV1Api(kube).list_namespaced_ingress(stable["ns"]).items}
    assert f"{stable['ingress']['name']}-canary" in names
    out = CanaryAnalysisOperator(
        task_id="analysis",
        deployment=dep,
        ingress=stable["ingress"],
        rollout=ROLLOUT,
        samples_path=str(models["samples"]),
        reports_dir=str(stable["reports"]),
    ).execute(context("rerun"))
    assert out["mode"] == "direct"
    names = {i.metadata.name for i in client.NetworkingV1Api(kube).list_namespaced_ingress(stable["ns"]).items}
    assert names == {stable["ingress"]["name"]}
    assert stored_sdep(kube, stable["ns"], stable["name"])["metadata"]["uid"] == current["metadata"]["uid"]
