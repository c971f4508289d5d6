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

from tests.helpers import airflow_conn, airflow_env, kubectl, until

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SCHEDULER_NAMESPACE = "sched"
# Each waits for its own deadline inside; the whole run gets a generous bound (a busy 2-core machine).
SCHEDULER_RUN_TIMEOUT = 900

# The e2e runs assert what the DAG does (verdict, scale-out, idempotency), not how fast a shared 2-core machine
# answers: their load tests run with a latency SLO no busy machine breaks. The DAG's own default (500 ms) is what
# `make demo` runs with; latency is measured in `benchmarks/` (issue 9: verdict tests must not need an idle machine).
E2E_SLO_P95_MS = 10_000

# The e2e runs' load test: a short ramp and hold at 80 % of what maxReplicas absorb, the compressed metric lag,
# scale-in watched for 40 s. The pool's ~30 s scale-in tail is skipped: it is tested in tests/integration (suite time).
E2E_LOAD_TEST = {
    "ramp_seconds": 2,
    "hold_seconds": 10,
    "fill_factor": 0.8,
    "rps_per_user": 2,
    "workers": 0,
    "record_interval": 0.5,
    "scale_in_timeout": 40,
    "pool_scale_in_timeout": 0,
    "metric_lag_seconds": 1,
}


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


COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class Standalone:
    """What ``airflow standalone`` runs (api-server, scheduler with the LocalExecutor, dag-processor, triggerer),
    each as a process of its own, in its own AIRFLOW_HOME and sqlite DB, so it can run beside ``airflow dags test``
    runs of the other tests, and one component (the triggerer) can be restarted alone.

    Kept from ``airflow/cli/commands/standalone_command.py``: the LocalExecutor and SimpleAuthManager it forces
    (``calculate_env``), the DB it initializes (``db migrate`` here: the same upgrade + default pool), no user
    passwords (``simple_auth_manager_all_admins`` is on, so its ``find_user_info`` does nothing), and its output:
    one log, each line prefixed with the component's name (``scheduler  | ...``).
    """

    def __init__(self, cli: AirflowCli) -> None:
        self.cli = cli
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = cli.home / "standalone.log"
        self.env = {
            **cli.env,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # The log servers on ports of their own: another stack on this machine holds the defaults (8793/8794).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self.started: dict[str, str] = {}  # run_id of the run under the scheduler, once triggered
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log: Any = None
        self._stopped = False

    def start(self) -> None:
        migrated = self.cli.run("db", "migrate", timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        with self._lock:
            assert not self._stopped, "stopped before it started"
            self._log = self.log_path.open("ab", buffering=0)
            for name in COMPONENTS:
                self._spawn(name)

    def _spawn(self, name: str) -> None:
        """One component in a session of its own (its children, e.g. the log server, stop with it); its output
        pumped into the shared log line by line, as ``airflow standalone`` does."""
        proc = subprocess.Popen(
            [AIRFLOW, name], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        pump = threading.Thread(target=self._pump, args=(name, proc), name=f"e2e-log-{name}", daemon=True)
        pump.start()
        self._pumps.append(pump)

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        prefix = f"{name:10} | ".encode()
        for line in proc.stdout:
            with self._log_lock:
                self._log.write(prefix + line.rstrip(b"\r\n") + b"\n")

    def log_size(self) -> int:
        """Where the shared log ends now: what a component writes from here on is read with ``log_since``."""
        with self._log_lock:
            return self.log_path.stat().st_size

    def log_since(self, offset: int, component: str | None = None) -> str:
        """The shared log from ``offset`` on (only ``component``'s lines when given)."""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        if component is None:
            return text
        prefix = f"{component:10} | "
        return "".join(line for line in text.splitlines(keepends=True) if line.startswith(prefix))

    def health(self) -> dict[str, Any]:
        return self.api("GET", "/api/v2/monitor/health")

    def restart(self, name: str, timeout: float = 120) -> None:
        """Stop one component as a service manager does (SIGTERM to its main process: it stops its children and
        marks its job row ended), wait for it to exit, and start it again; the caller waits for its health."""
        with self._lock:
            assert not self._stopped, "stopped"
            proc = self.procs[name]
            proc.terminate()
            self._terminate(proc, timeout)
            self._spawn(name)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait for a signalled component to exit (SIGKILL to its session past ``timeout``), then its leftovers."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        try:  # a child left behind in its session (the log server)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

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
            for proc in self.procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)  # the whole session, as stopping ``standalone`` did
            for proc in self.procs.values():
                self._terminate(proc, 30)
        for pump in self._pumps:
            pump.join(timeout=10)
        if self._log is not None:
            with self._log_lock:
                self._log.close()


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
        "slo_p95_ms": E2E_SLO_P95_MS,
        "node_pool": {
            "name": "fm-sched-pool",
            "instance_types": ["ecs.gn6i-c4g1.xlarge"],
            "max_instances": 4,  # maxReplicas 3 + a canary: full while a canary runs beside a scaled-out stable
            "spot_strategy": "SpotAsPriceGo",
            "on_demand_percentage_above_base_capacity": 30,
            "compensate_with_on_demand": True,
            "multi_az_policy": "COST_OPTIMIZED",
            "labels": {"seldon": "fm-sched"},
        },
        "load_test": dict(E2E_LOAD_TEST),
    }


WATCHED = "exports/fashion-mnist/"  # where the "training job outside Airflow" writes, in the run's bucket
# Latency bounds wide on purpose: this case is about the hook (a fresh canary replica on a busy shared machine
# answered at 4x the stable's p95 once); the bounds themselves are tested in tests/integration/test_rollout_canary.py.
WATCH_ROLLOUT = {
    "steps": [50],
    "step_seconds": 4,
    "analysis_rps": 8,
    "prober_rps": 5,
    "max_p95_ratio": 10,
    "max_p95_increase_ms": 2000,
}


def oss_watch_config(model_dir: Path) -> dict:
    """``ELASTIC_INFERENCE_OSS_WATCH`` for the standalone stack: the run's own settings as the event's params, the
    samples beside the trained model; version 1 is deployed over REST first, so versions above 1 fire."""
    conf = scheduler_run_conf(model_dir)
    conf.pop("model_source")
    params = {**conf, "samples_path": str(model_dir.parent / "samples.json"), "rollout": WATCH_ROLLOUT}
    bucket = conf["bucket"]
    return {"uri": f"oss://{bucket}/{WATCHED}", "poll_interval": 2, "start_after": 1, "params": params}


def write_version_outside_airflow(sandbox: dict, model_dir: Path, version: int, *, half: bool = False) -> None:
    """A training job that is not Airflow: its own oss2 client writes the SavedModel as ``<version>/`` (``half``:
    only ``saved_model.pb``, the job stopped before ``variables/``)."""
    import oss2

    conn = airflow_conn(sandbox, "alibaba_ack_default")
    bucket = oss2.Bucket(
        oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]),
        conn["extra"].get("oss_endpoint") or sandbox["oss"],
        scheduler_run_conf(model_dir)["bucket"],
    )
    root = model_dir / "1"
    files = [root / "saved_model.pb"] if half else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        bucket.put_object_from_file(f"{WATCHED}{version}/{path.relative_to(root).as_posix()}", str(path))


def run_under_scheduler(
    standalone: Standalone, sandbox: dict, model_dir: Path, model_ready: threading.Event | None = None
) -> dict:
    """Start the standalone stack, trigger ``elastic_inference`` over REST (once ``model_ready`` is set: the model
    may still be training while the stack starts) and wait for the run to end."""
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
        lambda: all(v.get("status") == "healthy" for v in standalone.health().values()),
        420,  # five Airflow processes starting on a machine the other tests keep busy
    )
    standalone.wait("DAG parsed", lambda: standalone.api("GET", "/api/v2/dags/elastic_inference"), 180)
    standalone.api("PATCH", "/api/v2/dags/elastic_inference", {"is_paused": False})
    if model_ready is not None:
        assert model_ready.wait(SCHEDULER_RUN_TIMEOUT), "the model was not trained in time"
        assert (model_dir / "1" / "saved_model.pb").is_file(), f"training wrote no model in {model_dir}"
    body = {"logical_date": None, "conf": scheduler_run_conf(model_dir)}
    run_id = standalone.api("POST", "/api/v2/dags/elastic_inference/dagRuns", body)["dag_run_id"]
    standalone.started["run_id"] = run_id  # the browser test watches this run while it goes
    path = f"/api/v2/dags/elastic_inference/dagRuns/{run_id}"

    def ended() -> str | None:
        state = standalone.api("GET", path)["state"]
        return state if state in ("success", "failed") else None

    state = standalone.wait("the run to finish", ended, SCHEDULER_RUN_TIMEOUT, interval=3)
    tis = {t["task_id"]: t["state"] for t in standalone.api("GET", f"{path}/taskInstances")["task_instances"]}
    result = {"run_id": run_id, "state": state, "task_states": tis}
    if state == "success":
        result["watched"] = run_on_new_version(standalone, sandbox, model_dir)
    return result


def run_on_new_version(standalone: Standalone, sandbox: dict, model_dir: Path) -> dict:
    """Version 2 lands in the watched prefix from outside Airflow; nobody calls anything: the watcher's event
    starts ``elastic_inference``, which runs to its end (canary beside version 1, promoted, verified)."""
    write_version_outside_airflow(sandbox, model_dir, 2)

    def asset_run() -> dict | None:
        runs = standalone.api("GET", "/api/v2/dags/elastic_inference/dagRuns?run_type=asset_triggered")["dag_runs"]
        return runs[0] if runs else None

    run = standalone.wait("a run started by the OSS watcher", asset_run, 300, interval=3)
    path = f"/api/v2/dags/elastic_inference/dagRuns/{run['dag_run_id']}"

    def ended() -> str | None:
        state = standalone.api("GET", path)["state"]
        return state if state in ("success", "failed") else None

    state = standalone.wait("the watched run to finish", ended, SCHEDULER_RUN_TIMEOUT, interval=3)
    tis = {t["task_id"]: t["state"] for t in standalone.api("GET", f"{path}/taskInstances")["task_instances"]}
    events, runs = asset_events(standalone), dag_runs(standalone)
    result = {"run_id": run["dag_run_id"], "state": state, "task_states": tis, "events": events, "runs": runs}
    if state == "success":
        try:
            result["quiet"] = nothing_fires_again(standalone, sandbox, model_dir)
        except AssertionError as exc:  # fails its own test, not the ones about the run above
            result["quiet"] = {"error": str(exc)}
    return result


def asset_events(standalone: Standalone) -> list[dict]:
    return standalone.api("GET", "/api/v2/assets/events?limit=100&order_by=-timestamp")["asset_events"]


def dag_runs(standalone: Standalone) -> list[dict]:
    return standalone.api("GET", "/api/v2/dags/elastic_inference/dagRuns?limit=100")["dag_runs"]


WATCH_BOUND = 300  # each wait below: a triggerer restart on a busy 2-core machine is the slowest (~1 min)


def nothing_fires_again(standalone: Standalone, sandbox: dict, model_dir: Path) -> dict:
    """After version 2 was deployed by the watcher: version 2 written again, a half-written version 3, then a
    triggerer restart - each must start nothing. The watcher is shown to have looked after each step (its own
    lines in the triggerer's output), so "nothing started" is not "nothing polled"; the test asserts the counts.

    * ``version 3 ... unchanged across two listings ... not complete``: two listings after both writes (the
      rewritten version 2 is at the watermark; a stability-only check would have fired version 3 here);
    * after the restart, ``watching ...: versions above N fire (...)``: the new triggerer re-created the trigger
      and read its watermark (the test asserts it is 2, from the asset state store), then the version-3 line
      again: two listings by it.
    """
    watched = oss_watch_config(model_dir)["uri"]
    start = standalone.log_size()

    def logged(offset: int, *texts: str) -> str | None:
        """The triggerer's lines since ``offset`` once they hold ``texts`` in this order."""
        log = standalone.log_since(offset, "triggerer")
        at = 0
        for text in texts:
            at = log.find(text, at)
            if at < 0:
                return None
        return log

    def wait(what: str, check: Callable[[], Any]) -> None:
        try:
            standalone.wait(what, check, WATCH_BOUND, interval=1)
        except AssertionError as exc:
            tail = standalone.log_since(start, "triggerer")[-4000:]
            raise AssertionError(f"{exc}\n--- the triggerer's output since the rewrite:\n{tail}") from None

    write_version_outside_airflow(sandbox, model_dir, 2)  # the same version again
    write_version_outside_airflow(sandbox, model_dir, 3, half=True)
    waiting = f"version 3 at {watched} unchanged across two listings"
    wait("the watcher to list the half-written version 3 twice", lambda: logged(start, waiting))
    restart = standalone.log_size()
    standalone.restart("triggerer")
    wait(
        "the restarted triggerer healthy",
        lambda: logged(restart, "Starting the triggerer") and standalone.health()["triggerer"]["status"] == "healthy",
    )
    # Any watermark: which one it read (2, from the asset state store) is the test's to assert.
    resumed = f"watching {watched}: versions above"
    wait("the restarted triggerer's watcher to list version 3 twice", lambda: logged(restart, resumed, waiting))
    return {
        "watched": watched,
        "events": asset_events(standalone),
        "runs": dag_runs(standalone),
        "log": standalone.log_since(start, "triggerer"),
        "restart_log": standalone.log_since(restart, "triggerer"),
        "health": standalone.health(),
    }
