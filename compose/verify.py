"""What the running stack must show: healthy components that never restarted, the provider and UI plugin
registered, and every DAG in dags/ listed by the API server with no import error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from engine import Podman, log

# Every long-running service must declare a health check and reach `healthy` (a component without one could
# crash-loop unseen); airflow-init must exit 0.
LONG_RUNNING = ("postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
ONE_SHOT = ("airflow-init",)
PROVIDER = "airflow-provider-elastic-inference"
PLUGIN = "elastic_inference"
PASSWORDS_FILE = "/opt/airflow/simple_auth_manager_passwords.json.generated"


class CheckFailed(Exception):
    """The stack does not do what the README promises; the message says what and where to look."""


@dataclass
class Stack:
    podman: Podman
    project: str
    api: str  # http://127.0.0.1:<port>
    pg_port: str = "5432"  # PostgreSQL's port inside its container (the DAG-run variant moves it)

    def by_service(self) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for c in self.podman.containers(self.project):
            service = (c.get("Labels") or {}).get("com.docker.compose.service")
            if service:
                found[service] = self.podman.inspect(c["Id"])
        return found


def state_problems(containers: dict[str, dict], *, final: bool) -> list[str]:
    """Restarts, exits and unhealthy states; with final=True also anything not yet healthy."""
    problems = []
    for name in (*LONG_RUNNING, *ONE_SHOT):
        c = containers.get(name)
        if c is None:
            problems.append(f"{name}: no container")
            continue
        state = c.get("State") or {}
        restarts = c.get("RestartCount", 0)
        if restarts:
            problems.append(f"{name}: restarted {restarts} time(s)")
        if name in ONE_SHOT:
            if state.get("Status") == "exited" and state.get("ExitCode") != 0:
                problems.append(f"{name}: exited with {state.get('ExitCode')}")
            elif final and state.get("Status") != "exited":
                problems.append(f"{name}: still {state.get('Status')}")
            continue
        health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
        if not (c.get("Config") or {}).get("Healthcheck"):
            problems.append(f"{name}: declares no health check")
        elif state.get("Status") != "running" and (final or state.get("Status") == "exited"):
            problems.append(f"{name}: {state.get('Status')} (exit code {state.get('ExitCode')})")
        elif health == "unhealthy":
            problems.append(f"{name}: unhealthy")
        elif final and health != "healthy":
            problems.append(f"{name}: health {health or 'unknown'}")
    return problems


def wait_healthy(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: list[str] = []
    while True:
        containers = stack.by_service()
        hard = state_problems(containers, final=False)
        if hard and any("restarted" in p or "exited" in p or "unhealthy" in p or "no health" in p for p in hard):
            raise CheckFailed("; ".join(hard))
        pending = state_problems(containers, final=True)
        if not pending:
            return
        if pending != last:
            log("waiting: " + "; ".join(pending))
            last = pending
        if time.monotonic() > deadline:
            raise CheckFailed(f"not healthy after {timeout:.0f} s: " + "; ".join(pending))
        time.sleep(3)


def token(stack: Stack) -> str:
    """An API token the way the README tells a person to log in: the generated admin password."""
    apiserver = stack.by_service()["airflow-apiserver"]["Id"]
    raw = stack.podman.run("exec", apiserver, "cat", PASSWORDS_FILE, capture=True)
    username, password = next(iter(json.loads(raw).items()))
    resp = requests.post(f"{stack.api}/auth/token", json={"username": username, "password": password}, timeout=30)
    if resp.status_code not in (200, 201):
        raise CheckFailed(f"POST /auth/token: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json()["access_token"]


def api_get(stack: Stack, path: str, tok: str) -> dict:
    resp = requests.get(f"{stack.api}{path}", headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    if resp.status_code != 200:
        raise CheckFailed(f"GET {path}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json()


def check_health_endpoint(stack: Stack) -> None:
    resp = requests.get(f"{stack.api}/api/v2/monitor/health", timeout=30)
    if resp.status_code != 200:
        raise CheckFailed(f"GET /api/v2/monitor/health on loopback: HTTP {resp.status_code}")
    body = resp.json()
    bad = {k: v.get("status") for k, v in body.items() if isinstance(v, dict) and v.get("status") != "healthy"}
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        if (body.get(component) or {}).get("status") != "healthy":
            bad.setdefault(component, (body.get(component) or {}).get("status"))
    if bad:
        raise CheckFailed(f"/api/v2/monitor/health reports {bad}")
    log(f"API server on {stack.api}: " + ", ".join(f"{k} healthy" for k in body))


def check_provider(stack: Stack, tok: str) -> None:
    providers = api_get(stack, "/api/v2/providers?limit=1000", tok)["providers"]
    if PROVIDER not in {p["package_name"] for p in providers}:
        raise CheckFailed(f"provider {PROVIDER} is not registered (GET /api/v2/providers)")
    plugins = api_get(stack, "/api/v2/plugins?limit=1000", tok)["plugins"]
    if PLUGIN not in {p["name"] for p in plugins}:
        raise CheckFailed(f"plugin {PLUGIN} is not loaded (GET /api/v2/plugins)")
    log(f"provider {PROVIDER} registered, plugin {PLUGIN} loaded")


def expected_dags(repo: Path, scratch: Path) -> set[str]:
    """The DAG ids in dags/, parsed on the host with the project's own environment (the reference)."""
    code = (
        "import json, sys\n"
        "sys.path.append(sys.argv[1])\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': sorted(bag.import_errors)}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(scratch / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        # As in the stack: the DAG folder appended to sys.path (the DAGs import their sibling _assets.py;
        # dags/elastic_inference.py must not shadow the provider package of the same name).
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
    }
    out = subprocess.run(
        [sys.executable, "-c", code, str(repo / "dags")], env=env, check=True, capture_output=True, text=True
    )
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    if parsed["errors"] or not parsed["dags"]:
        raise CheckFailed(f"dags/ does not parse on the host either: {parsed}")
    return set(parsed["dags"])


def check_dags(stack: Stack, tok: str, expected: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = {d["dag_id"] for d in api_get(stack, "/api/v2/dags?limit=1000", tok)["dags"]}
        errors = api_get(stack, "/api/v2/importErrors?limit=1000", tok)
        if errors["total_entries"]:
            details = "; ".join(f"{e['filename']}: {e['stack_trace'][-300:]}" for e in errors["import_errors"])
            raise CheckFailed(f"{errors['total_entries']} import error(s): {details}")
        if listed == expected:
            log(f"{len(listed)} DAGs listed, 0 import errors: {', '.join(sorted(listed))}")
            return
        if time.monotonic() > deadline:
            raise CheckFailed(f"DAGs listed {sorted(listed)}, expected {sorted(expected)}")
        time.sleep(5)


def check_stable(stack: Stack) -> None:
    problems = state_problems(stack.by_service(), final=True)
    if problems:
        raise CheckFailed("; ".join(problems))
    log("all components healthy, none restarted")


def check_secrets(stack: Stack, tok: str) -> None:
    """The generated Fernet key really encrypts: a connection password stored through the API is encrypted
    in the metadatabase, and the key and JWT secret are neither empty nor shared between two stacks."""
    conn_id = "ei_compose_check_fernet"
    headers = {"Authorization": f"Bearer {tok}"}
    body = {"connection_id": conn_id, "conn_type": "http", "host": "example.invalid", "password": "s3cret-check"}
    requests.delete(f"{stack.api}/api/v2/connections/{conn_id}", headers=headers, timeout=30)
    resp = requests.post(f"{stack.api}/api/v2/connections", json=body, headers=headers, timeout=30)
    if resp.status_code != 201:
        raise CheckFailed(f"POST /api/v2/connections: HTTP {resp.status_code} {resp.text[:200]}")
    postgres = stack.by_service()["postgres"]["Id"]
    sql = f"SELECT is_encrypted, password <> 's3cret-check' FROM connection WHERE conn_id = '{conn_id}'"
    row = stack.podman.run(
        "exec", postgres, "psql", "-U", "airflow", "-d", "airflow", "-p", stack.pg_port, "-tAc", sql, capture=True
    ).strip()
    if row != "t|t":
        raise CheckFailed(f"connection password not encrypted with the Fernet key (is_encrypted|ciphertext: {row!r})")
    apiserver = stack.by_service()["airflow-apiserver"]["Id"]
    for name in ("fernet_key", "jwt_secret"):
        size = stack.podman.run("exec", apiserver, "stat", "-c", "%s", f"/opt/airflow/secrets/{name}", capture=True)
        if int(size.strip() or 0) < 32:
            raise CheckFailed(f"/opt/airflow/secrets/{name} is shorter than 32 bytes")
    requests.delete(f"{stack.api}/api/v2/connections/{conn_id}", headers=headers, timeout=30)
    log("Fernet key and JWT secret generated on first start; a connection password is stored encrypted")


def check_logs_writable(rundir: Path) -> None:
    """The engine created the logs bind mount as root; the components (uid 50000) must have written to it."""
    logs = rundir / "logs"
    written = [p for p in logs.rglob("*") if p.is_file()] if logs.is_dir() else []
    if not written:
        raise CheckFailed(f"no component wrote a log file under the mounted logs directory ({logs})")
    log(f"mounted logs directory written by the components ({len(written)} file(s))")
