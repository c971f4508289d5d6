"""The Airflow processes the end-to-end tests run, wired to the sandbox (``conftest.py`` makes fixtures of them).

A plain module, not a test module: tests import from here, not from ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import airflow_env, kubectl, until

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SCHEDULER_NAMESPACE = "sched"
# Each waits for its own deadline inside; the whole run gets a generous bound (a busy 2-core machine).
SCHEDULER_RUN_TIMEOUT = 900


class AirflowCli:
    """Runs Airflow CLI commands in their own AIRFLOW_HOME, wired to the sandbox's connections."""

    def __init__(self, home: Path, sandbox: dict) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "kube_config,kubeconfig",
            "ELASTIC_INFERENCE_REPORTS_DIR": str(home / "reports"),
            "PYTHONWARNINGS": "ignore",
            **airflow_env(sandbox),
        }
        self.env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standalone:
    """``airflow standalone`` (scheduler, dag-processor, triggerer, api-server, LocalExecutor) in its own
    AIRFLOW_HOME and sqlite DB, so it can run beside ``airflow dags test`` runs of the other tests."""

    def __init__(self, cli: AirflowCli) -> None:
        self.cli = cli
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = cli.home / "standalone.log"
        self.env = {
            **cli.env,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.started: dict[str, str] = {}  # run_id of the run under the scheduler, once triggered
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        migrated = self.cli.run("db", "migrate", timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        with self._lock, self.log_path.open("w") as log:
            assert not self._stopped, "stopped before it started"
            self.proc = subprocess.Popen(
                [AIRFLOW, "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def wait(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
        """``until`` that reads an OSError (the API server not listening yet) as "not yet"."""

        def quiet() -> Any:
            try:
                return check()
            except OSError:
                return None

        return until(what, quiet, timeout, interval)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Background:
    """Runs ``work`` in a thread from the moment it is made; ``result()`` waits for it and re-raises its error.

    The end-to-end run under a real scheduler is mostly waiting (deferred waits, the load test, scale-in), so
    it runs beside the other end-to-end tests and the test that checks it only collects the result.
    """

    def __init__(self, work: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name="e2e-background", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # re-raised in the test that asks for the result
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the background run did not finish within {timeout:g}s"
        if self._error is not None:
            raise self._error
        return self._value


def scheduler_run_conf(model_dir: Path) -> dict:
    return {
        "model_source": str(model_dir),
        "namespace": SCHEDULER_NAMESPACE,
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


def run_under_scheduler(standalone: Standalone, sandbox: dict, model_dir: Path) -> dict:
    """Start the standalone stack, trigger ``elastic_inference`` over REST and wait for the run to end."""
    kubectl(
        sandbox,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SCHEDULER_NAMESPACE}}),
    )
    standalone.start()
    standalone.wait(
        "scheduler and triggerer healthy",
        lambda: all(v.get("status") == "healthy" for v in standalone.api("GET", "/api/v2/monitor/health").values()),
        240,
    )
    standalone.wait("DAG parsed", lambda: standalone.api("GET", "/api/v2/dags/elastic_inference"), 180)
    standalone.api("PATCH", "/api/v2/dags/elastic_inference", {"is_paused": False})
    body = {"logical_date": None, "conf": scheduler_run_conf(model_dir)}
    run_id = standalone.api("POST", "/api/v2/dags/elastic_inference/dagRuns", body)["dag_run_id"]
    standalone.started["run_id"] = run_id  # the browser test watches this run while it goes
    path = f"/api/v2/dags/elastic_inference/dagRuns/{run_id}"

    def ended() -> str | None:
        state = standalone.api("GET", path)["state"]
        return state if state in ("success", "failed") else None

    state = standalone.wait("the run to finish", ended, SCHEDULER_RUN_TIMEOUT, interval=3)
    tis = {t["task_id"]: t["state"] for t in standalone.api("GET", f"{path}/taskInstances")["task_instances"]}
    return {"run_id": run_id, "state": state, "task_states": tis}
