"""``make compose-check-dagrun``: the deploy DAG run inside the stack, against a sandbox started on the host.

The sandbox starts on the host (``ack-sandbox``, as ``make demo`` does), the model is trained on the host with
``airflow dags test train_fashion_mnist`` (the image has no TensorFlow: it only deploys), and the stack gets the
sandbox's connections (its airflow.env) and the model (mounted read-only at the same path). Then
``elastic_inference`` is unpaused and triggered through the stack's REST API and must end ``success`` with the
scale verification's verdict ``passed`` (its XCom, and the verdict.json written into the mounted reports
directory). This proves the image has what the operators need: Kubernetes access without kubectl, locust, the
manifests and locustfile at the paths the provider looks them up.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from engine import log
from verify import CheckFailed, Stack

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "elastic_inference"
VERIFY_TASK = "verify.scale_verification"
RUN_TIMEOUT = float(os.environ.get("EI_DAGRUN_TIMEOUT", "1200"))
PORTS = (
    "EI_DAGRUN_PG_PORT",
    "EI_DAGRUN_API_PORT",
    "EI_DAGRUN_SCHEDULER_HEALTH_PORT",
    "EI_DAGRUN_WORKER_LOG_PORT",
    "EI_DAGRUN_TRIGGER_LOG_PORT",
)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_conf(model_dir: Path) -> dict:
    """The demo's run parameters (demo/__main__.py), at a smaller pool so the load fits beside four Airflow
    components on two cores."""
    sys.path.insert(0, str(REPO))
    from demo.__main__ import RUN_CONF

    conf = json.loads(json.dumps(RUN_CONF))
    conf["max_replicas"] = int(os.environ.get("EI_DAGRUN_MAX_REPLICAS", "4"))
    conf["model_source"] = str(model_dir)
    return conf


def sandbox_env(state_dir: Path, kube_dir: Path) -> list[str]:
    """The sandbox's AIRFLOW_CONN_* lines for the stack, the kubeconfig path pointing at the mounted copy."""
    lines = []
    for line in (state_dir / "airflow.env").read_text().splitlines():
        key, _, quoted = line.partition("=")
        value = json.loads(shlex.split(quoted)[0])
        if value.get("conn_type") == "kubernetes":
            value["extra"]["kube_config_path"] = "/opt/airflow/.kube/config"
        lines.append(f"{key}={shlex.quote(json.dumps(value))}")
    kube_dir.mkdir(parents=True, exist_ok=True)
    config = kube_dir / "config"
    config.write_bytes((state_dir / "kubeconfig").read_bytes())
    os.chown(config, 50000, 0)
    config.chmod(0o600)
    return lines


def train(rundir: Path, models: Path, env: dict[str, str]) -> None:
    home = rundir / "train_airflow"
    env = {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONWARNINGS": "ignore",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    with (rundir / "train.log").open("w") as out:
        for args in (
            ["db", "migrate"],
            ["dags", "test", "train_fashion_mnist", "-c", json.dumps({"output_dir": str(models)})],
        ):
            if subprocess.run([airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1200).returncode:
                raise CheckFailed(f"training on the host failed (airflow {args[0]}): see {rundir / 'train.log'}")


def trigger_and_wait(stack: Stack, tok: str, conf: dict) -> dict:
    h = {"Authorization": f"Bearer {tok}"}
    resp = requests.patch(f"{stack.api}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, headers=h, timeout=30)
    if resp.status_code != 200:
        raise CheckFailed(f"unpause {DAG_ID}: HTTP {resp.status_code} {resp.text[:200]}")
    resp = requests.post(
        f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}, headers=h, timeout=30
    )
    if resp.status_code != 200:
        raise CheckFailed(f"trigger {DAG_ID}: HTTP {resp.status_code} {resp.text[:300]}")
    run_id = resp.json()["dag_run_id"]
    log(f"triggered {DAG_ID} run {run_id} through the stack's REST API")
    deadline = time.monotonic() + RUN_TIMEOUT
    last = None
    while True:
        run = requests.get(f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", headers=h, timeout=30).json()
        tis = requests.get(
            f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100", headers=h, timeout=30
        ).json()["task_instances"]
        states = {t["task_id"]: t["state"] for t in tis}
        progress = f"{run['state']}: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items()) if v)
        if progress != last:
            log(progress)
            last = progress
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            raise CheckFailed(f"{DAG_ID} run {run_id} not finished after {RUN_TIMEOUT:.0f} s: {progress}")
        time.sleep(10)
    xcom = requests.get(
        f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{VERIFY_TASK}/xcomEntries/return_value",
        headers=h,
        timeout=30,
    )
    summary = xcom.json().get("value") if xcom.status_code == 200 else None
    if run["state"] != "success":
        failed = sorted(k for k, v in states.items() if v in ("failed", "upstream_failed"))
        raise CheckFailed(f"{DAG_ID} run {run_id} {run['state']} (failed tasks: {', '.join(failed)})")
    if isinstance(summary, str):
        summary = json.loads(summary)
    return {"run_id": run_id, **(summary or {})}


def check_verdict(summary: dict, reports: Path) -> None:
    found = sorted(reports.glob(f"{DAG_ID}/*/verdict.json"))
    on_disk = json.loads(found[-1].read_text()) if found else {}
    if summary.get("verdict") != "passed" or on_disk.get("verdict") != "passed":
        raise CheckFailed(
            f"verdict: XCom {summary.get('verdict')!r}, verdict.json {on_disk.get('verdict')!r} (expected 'passed')"
        )
    log(
        f"verdict passed (XCom and {found[-1].relative_to(reports)}): replicas reached "
        f"{summary.get('replicas_reached')}, {summary.get('rps')} req/s, error rate {summary.get('error_rate')}"
    )
