"""The load-test operator end to end against a small predict server on 127.0.0.1.

The server mimics the Seldon (``/api/v1.0/predictions``) and TF Serving (``/v1/models/<m>:predict``)
REST endpoints; what is under test here is the locust subprocess (real locust, real HTTP), the staged shape,
the payload from real sample files, CSV parsing, label checks, distributed mode and the SLO verdicts. The
real endpoint chain (ingress -> Seldon -> TF Serving) is tested by the sandbox's own tests. locust is never
imported into this process.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.links import LOCUST_URL_KEY
from elastic_inference.operators.load_test import LocustLoadTestOperator
from elastic_inference.timeline import read_timeline

pytestmark = pytest.mark.integration


class PredictServer:
    """Predicts class ``round(x[0])`` as a one-hot row; ``/broken`` answers 503, ``/slow`` sleeps 150 ms."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _one_hot(row: list[float]) -> list[float]:
        k = int(round(row[0])) % 10
        return [1.0 if i == k else 0.0 for i in range(10)]

    async def _seldon(self, request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        body = await request.json()
        if len(self.bodies) < 5:
            self.bodies.append(body)
        if mode == "broken":
            return web.json_response({"status": {"status": 1, "info": "model not loaded", "code": -1,
                                                 "reason": "MICROSERVICE_INTERNAL_ERROR"}}, status=503)
        if mode == "slow":
            await asyncio.sleep(0.15)
        row = body["data"]["ndarray"][0]
        return web.json_response({"data": {"names": [f"t:{i}" for i in range(10)], "ndarray": [self._one_hot(row)]},
                                  "meta": {"requestPath": {"tfserving-proxy": "seldonio/tfserving-proxy:1.18.2"}}})

    async def _tfserving(self, request: web.Request) -> web.Response:
        body = await request.json()
        if len(self.bodies) < 5:
            self.bodies.append(body)
        if request.match_info["model"] != "fm":
            return web.json_response({"error": "Servable not found for request: Latest(x)"}, status=404)
        return web.json_response({"predictions": [self._one_hot(r) for r in body["instances"]]})

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{mode}/api/v1.0/predictions", self._seldon)
        app.router.add_post("/{mode}/v1/models/{model}:predict", self._tfserving)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> PredictServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"


@pytest.fixture(scope="module")
def server() -> Iterator[PredictServer]:
    with PredictServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 28x28 'images' whose first pixel encodes their class; two labels are deliberately wrong."""
    x = np.zeros((20, 28, 28), dtype="float32")
    y = np.arange(20) % 10
    x[:, 0, 0] = y
    y_labels = y.copy()
    y_labels[3] = 9
    y_labels[7] = 1
    path = tmp_path_factory.mktemp("samples") / "test_images.npz"
    np.savez(path, x=x, y=y_labels)
    return path


class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class FakeDag:
    dag_id = "elastic_inference"


def run(op: LocustLoadTestOperator, run_id: str) -> tuple[dict[str, Any], FakeTI]:
    ti = FakeTI()
    result = op.execute({"ti": ti, "dag": FakeDag(), "run_id": run_id})
    return result, ti


def short(**kwargs: Any) -> dict[str, Any]:
    """A few seconds of load: 1 s ramp in one step, 2 s hold, 4 users at 5 RPS each (20 RPS)."""
    return {"target_rps": 20, "rps_per_user": 5, "ramp_seconds": 1, "ramp_steps": 1, "hold_seconds": 2,
            "record_cluster": False, "progress_interval": 1, "startup_grace": 60, **kwargs}


def test_seldon_run_reports_stats_history_and_label_checks(server, samples, tmp_path):
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("ok"), protocol="seldon",
                                samples_path=str(samples), reports_dir=str(tmp_path), **short())
    result, ti = run(op, "manual__2026-11-25T11:35:09+00:00")
    stats = result["stats"]
    assert stats["requests"] > 10 and stats["failures"] == 0 and stats["error_rate"] == 0
    assert stats["p95_ms"] is not None and stats["rps"] > 0
    # Every prediction was checked; the two wrong labels of 20 show up as mismatches, not failures.
    assert stats["checked"] == stats["requests"]
    assert 0 < stats["mismatches"] < stats["checked"]
    body = server.bodies[0]
    assert list(body) == ["data"] and len(body["data"]["ndarray"][0]) == 784
    run_dir = tmp_path / "elastic_inference" / "manual__2026-11-25T11_35_09_00_00"
    assert result["run_dir"] == str(run_dir)
    assert ti.xcom["timeline_path"] == str(run_dir / "timeline.json")
    assert ti.xcom[LOCUST_URL_KEY] == (run_dir / "locust.html").resolve().as_uri()
    timeline = read_timeline(ti.xcom["timeline_path"])
    history = timeline["locust"]["history"]
    assert history and history[-1]["total_requests"] == stats["requests"]
    assert timeline["load"]["start"] < timeline["load"]["hold_start"] < timeline["load"]["stop"]
    assert timeline["load"]["plan"]["users"] == 4
    assert timeline["samples"] == []  # record_cluster=False


def test_tfserving_protocol_posts_instances_to_the_model(server, samples, tmp_path):
    server.bodies.clear()
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("ok"), protocol="tfserving", model_name="fm",
                                samples_path=str(samples), reports_dir=str(tmp_path), **short())
    result, _ = run(op, "tf")
    assert result["stats"]["failures"] == 0 and result["stats"]["requests"] > 10
    body = server.bodies[0]
    assert body["signature_name"] == "serving_default" and len(body["instances"][0]) == 784


def test_broken_model_fails_the_run_with_the_numbers(server, samples, tmp_path):
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("broken"), samples_path=str(samples),
                                reports_dir=str(tmp_path), slo_error_rate=0.01, **short())
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as excinfo:
        op.execute({"ti": ti, "dag": FakeDag(), "run_id": "broken"})
    message = str(excinfo.value)
    result = ti.xcom["load_test_result"]
    n = result["stats"]["requests"]
    assert n > 0 and result["stats"]["failures"] == n
    assert f"error rate 100.00% ({n} of {n} requests failed) exceeds the SLO of 1.00% (slo_error_rate)" in message
    assert "HTTP 503" in message and "model not loaded" in message
    # The timeline is still written, so a verify task can explain the failure too.
    assert read_timeline(ti.xcom["timeline_path"])["locust"]["stats"]["failures"] == n


def test_slow_endpoint_breaks_the_p95_slo(server, samples, tmp_path):
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("slow"), samples_path=str(samples),
                                reports_dir=str(tmp_path), slo_p95_ms=50, slo_error_rate=None, **short())
    with pytest.raises(AirflowFailException, match=r"p95 latency \d+ ms exceeds the SLO of 50 ms \(slo_p95_ms\)"):
        run(op, "slow")


def test_distributed_master_and_workers(server, samples, tmp_path):
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("ok"), samples_path=str(samples),
                                reports_dir=str(tmp_path), workers=2, **short())
    result, _ = run(op, "distributed")
    stats = result["stats"]
    assert stats["requests"] > 10 and stats["failures"] == 0
    # Label checks counted on the workers reach the master's summary.
    assert stats["checked"] == stats["requests"] and stats["mismatches"] > 0
    log = (Path(result["run_dir"]) / "locust.log").read_text()
    assert "2 workers connected" in log and "to 2 ready workers" in log


def test_missing_samples_fail_fast_with_the_fix(tmp_path):
    op = LocustLoadTestOperator(task_id="load_test", host="http://127.0.0.1:9", samples_path=str(tmp_path / "no.npz"),
                                reports_dir=str(tmp_path), **short())
    with pytest.raises(AirflowFailException, match="samples_path .* does not exist; pass the .npz/.json"):
        run(op, "x")


def test_json_samples_are_accepted(server, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"x": [float(i)] + [0.0] * 783, "label": i} for i in range(10)]))
    op = LocustLoadTestOperator(task_id="load_test", host=server.url("ok"), samples_path=str(path),
                                reports_dir=str(tmp_path), **short(hold_seconds=1))
    result, _ = run(op, "json")
    assert result["stats"]["mismatches"] == 0 and result["stats"]["checked"] > 0


# -- the timeline recorder against the sandbox's Kubernetes API -------------------------------------------------
def _sandbox_kube_conn(sandbox: dict) -> str:
    import shlex

    for line in (Path(sandbox["state_dir"]) / "airflow.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "AIRFLOW_CONN_KUBERNETES_DEFAULT":
            return shlex.split(value)[0]
    pytest.fail("the sandbox wrote no AIRFLOW_CONN_KUBERNETES_DEFAULT")


def test_recorder_samples_the_sandbox_cluster(sandbox, monkeypatch, tmp_path):
    """HPA spec/status, Deployment, pods, nodes and the external metric, read through the provider's hook."""
    import secrets
    import time

    from kubernetes import client, config

    monkeypatch.setenv("AIRFLOW_CONN_EI_RECORDER_K8S", _sandbox_kube_conn(sandbox))
    kube = config.new_client_from_config(config_file=str(Path(sandbox["state_dir"]) / "kubeconfig"))
    ns = f"rec-{secrets.token_hex(3)}"
    core, apps, autoscaling = client.CoreV1Api(kube), client.AppsV1Api(kube), client.AutoscalingV2Api(kube)
    core.create_namespace({"metadata": {"name": ns}})
    route = f"{ns}-web-8000"
    labels = {"sls.project": f"k8s-log-{sandbox['cluster_id']}", "sls.logstore": "nginx-ingress", "sls.ingress.route": route}
    try:
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "web", "labels": {"seldon-deployment-id": "fm"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"nodeSelector": {"seldon": "no-such-pool"},
                                           "containers": [{"name": "c", "image": "nginx"}]}}}})
        autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, {
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 4,
                     "metrics": [{"type": "External", "external": {
                         "metric": {"name": "sls_ingress_qps", "selector": {"matchLabels": labels}},
                         "target": {"type": "AverageValue", "averageValue": "10"}}}]}})
        op = LocustLoadTestOperator(task_id="load_test", host="http://127.0.0.1:9", namespace=ns,
                                    seldon_deployment="fm", kubernetes_conn_id="ei_recorder_k8s")
        recorder = op._recorder(op._kube())
        assert recorder.deployment_name == "web" and recorder.pod_selector == "app=web"
        assert recorder.hpa == {"name": "web", "min_replicas": 2, "max_replicas": 4, "metric": "sls_ingress_qps",
                                "selector": labels, "target": 10.0, "target_type": "AverageValue",
                                "scale_target": "web"}
        assert recorder.pool_selector == {"seldon": "no-such-pool"}  # from the pods' nodeSelector
        deadline = time.monotonic() + 30
        sample = recorder.sample()
        while (len(sample["pods"]) < 2 or sample["hpa"]["current"] is None) and time.monotonic() < deadline:
            time.sleep(0.2)
            sample = recorder.sample()
        assert sample["errors"] == []
        assert sample["qps"] == 0  # no traffic on the route
        assert sample["hpa"]["current"] == 2 and sample["deployment"]["spec_replicas"] == 2
        assert sorted(p["name"] for p in sample["pods"]) == sorted(
            p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="app=web").items)
        nodes = core.list_node().items
        assert sorted(n["name"] for n in sample["nodes"]) == sorted(n.metadata.name for n in nodes)
        assert all(n["charge"] in {"PayAsYouGo", "Spot", "Subscription", "unknown"} for n in sample["nodes"])
        assert not any(n["in_pool"] for n in sample["nodes"])  # nothing carries seldon=no-such-pool
    finally:
        core.delete_namespace(ns)
        kube.close()
