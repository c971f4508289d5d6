"""The deploy DAG under a real scheduler: ``airflow standalone`` (scheduler, dag-processor, triggerer,
api-server, LocalExecutor), triggered over the REST API, with the waits deferred to the real triggerer.

`airflow dags test` runs triggers in-process and differs in ways that matter (a real triggerer attaches the
task instance to the trigger, resumes with the defer() kwargs); this run caught a trigger attribute clash.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import AIRFLOW, AirflowCli
from tests.helpers import until

pytestmark = pytest.mark.e2e

NAMESPACE = "sched"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """``until`` that reads an OSError (the API server not listening yet) as "not yet"."""

    def quiet() -> Any:
        try:
            return check()
        except OSError:
            return None

    return until(what, quiet, timeout, interval)


def test_deploy_dag_under_a_real_scheduler_and_triggerer(
    sandbox, airflow_cli: AirflowCli, trained_model, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **airflow_cli.env,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox["state_dir"] / "kubeconfig"), "apply", "-f", "-"],
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait(
            "scheduler and triggerer healthy",
            lambda: all(v.get("status") == "healthy" for v in api(base, "GET", "/api/v2/monitor/health").values()),
            180,
        )
        wait("DAG parsed", lambda: api(base, "GET", "/api/v2/dags/elastic_inference"), 120)
        api(base, "PATCH", "/api/v2/dags/elastic_inference", {"is_paused": False})
        conf = {
            "model_source": str(trained_model),
            "namespace": NAMESPACE,
            "deployment_name": "fm-sched",
            "ingress_host": "fm-sched.local",
            "bucket": "sched-models",
            "max_replicas": 3,
            "node_pool": {
                "name": "fm-sched-pool",
                "instance_types": ["ecs.gn6i-c4g1.xlarge"],
                "max_instances": 4,
                "spot_strategy": "SpotAsPriceGo",
                "on_demand_percentage_above_base_capacity": 30,
                "compensate_with_on_demand": True,
                "multi_az_policy": "COST_OPTIMIZED",
                "labels": {"seldon": "fm-sched"},
            },
            "load_test": {
                "ramp_seconds": 2,
                "hold_seconds": 10,
                "fill_factor": 0.8,
                "record_interval": 0.5,
                "scale_in_timeout": 40,
                "metric_lag_seconds": 1,
            },
        }
        run = api(base, "POST", "/api/v2/dags/elastic_inference/dagRuns", {"logical_date": None, "conf": conf})
        run_id = run["dag_run_id"]
        path = f"/api/v2/dags/elastic_inference/dagRuns/{run_id}"
        state = wait(
            "the run to finish",
            lambda: api(base, "GET", path)["state"] in ("success", "failed") and api(base, "GET", path)["state"],
            600,
            interval=3,
        )
        tis = {t["task_id"]: t["state"] for t in api(base, "GET", f"{path}/taskInstances")["task_instances"]}
        assert state == "success", tis
        assert set(tis.values()) == {"success"}, tis
        # The waits really went through the triggerer: it wrote a trigger log for each deferred task.
        logs = Path(airflow_cli.env["AIRFLOW_HOME"]) / "logs" / "dag_id=elastic_inference"
        deferred = {p.parent.name.removeprefix("task_id=") for p in logs.rglob("*.trigger.*.log") if run_id in str(p)}
        assert {
            "node_pool.ensure_node_pool",
            "volume.oss_volume",
            "serving.seldon_deployment",
            "ingress.ingress",
        } <= deferred, deferred
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
