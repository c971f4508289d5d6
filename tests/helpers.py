"""Helpers the test suites share: waits, kubectl, the sandbox's admin API, its ``airflow.env``, Airflow stand-ins.

Import them (``from tests.helpers import until, kubectl``); test modules never import each other. ``sandbox`` is the
session fixture of ``tests/conftest.py``: the parsed ``endpoints.json`` plus ``state_dir``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# kubectl as PATH finds it: tests/conftest.py puts the project's own (pinned in uv.lock, .venv/bin) first.
KUBECTL = "kubectl"


# ---- waits -----------------------------------------------------------------------------------------------------


def until(what: str, check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Call ``check`` until it returns something truthy and return that; bounded in time and in count.

    Fails with ``AssertionError("timed out waiting for <what> ...")`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(int(timeout / interval) + 2):
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last value: {last!r}")


async def until_async(what: str, check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.02) -> T:
    """``until`` for coroutines: await ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(int(timeout / interval) + 2):
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last value: {last!r}")


# ---- kubectl ---------------------------------------------------------------------------------------------------


def kubectl_run(
    sandbox: dict, *args: str, stdin: str | None = None, check: bool = True, cache_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the sandbox's kubeconfig; with ``check``, fail the test on a non-zero exit."""
    cmd = [KUBECTL, "--kubeconfig", str(Path(sandbox["state_dir"]) / "kubeconfig")]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    proc = subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def kubectl(sandbox: dict, *args: str, stdin: str | None = None) -> str:
    """kubectl's stdout; a non-zero exit fails the test with kubectl's stderr."""
    return kubectl_run(sandbox, *args, stdin=stdin).stdout


def kubectl_json(sandbox: dict, *args: str) -> Any:
    """``kubectl get <args> -o json``, parsed."""
    return json.loads(kubectl(sandbox, "get", *args, "-o", "json"))


# ---- the sandbox's admin API (/_sandbox/..., bearer = the demo AccessKey ID) -------------------------------------


def admin(
    sandbox: dict, service: str, method: str, path: str, doc: Any = None, bearer: str | None = None
) -> tuple[int, Any]:
    """Call a sandbox admin route of ``service`` (``cs``, ``oss``, ``controllers``): (status, parsed JSON body).

    HTTP errors are returned, not raised, so tests can assert on them.
    """
    req = urllib.request.Request(
        sandbox[service] + path,
        method=method,
        data=None if doc is None else json.dumps(doc).encode(),
        headers={"Authorization": f"Bearer {bearer or sandbox['access_key_id']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


# ---- airflow.env: the Airflow connections the sandbox writes ------------------------------------------------------


def airflow_env(sandbox: dict) -> dict[str, str]:
    """The ``NAME=value`` lines of the state directory's ``airflow.env``, values unquoted as a shell would."""
    env: dict[str, str] = {}
    for line in (Path(sandbox["state_dir"]) / "airflow.env").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        words = shlex.split(value)
        env[key] = words[0] if words else ""
    return env


def airflow_conn(sandbox: dict, conn_id: str) -> dict[str, Any]:
    """The connection ``conn_id`` (``alibaba_ack_default``, ``kubernetes_default``) as ``airflow.env`` has it."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    env = airflow_env(sandbox)
    if var not in env:
        raise AssertionError(f"airflow.env has no {var}")
    return json.loads(env[var])


# ---- Airflow stand-ins for operator.execute(context) ---------------------------------------------------------------


class FakeTI:
    """Stands in for Airflow's TaskInstance in an execution context: records ``xcom_push``, answers ``xcom_pull``
    from ``pulled`` (``{(task_ids, key): value}``)."""

    def __init__(self, pulled: dict[tuple[str, str], Any] | None = None) -> None:
        self.xcom: dict[str, Any] = {}
        self.pulled = pulled or {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.pulled.get((task_ids, key))


class FakeDag:
    dag_id = "elastic_inference"
