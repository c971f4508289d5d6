"""Shared test setup.

Airflow reads its configuration at import time, so the environment is fixed here, before any test
module imports it: a throw-away AIRFLOW_HOME with a sqlite DB, this repository's dags/ and plugins/.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ei-airflow-home-"))

os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
os.environ.setdefault("AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES", "kube_config,kubeconfig")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
# The project's own tools (kubectl from the lock, airflow, ack-sandbox) before the machine's.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

import pytest  # noqa: E402

# Airflow appends the dags folder to sys.path in its processes (shared DAG modules like dags/_assets.py rely on it).
sys.path.append(str(REPO / "dags"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One sandbox daemon for the whole test session, started through the real ``ack-sandbox`` code path.

    Yields the parsed ``endpoints.json`` plus ``state_dir``. Cloud delays are compressed
    (``ACK_SANDBOX_TEST_TIME_SCALE``, default 30) so waits stay short.
    """
    from ack_sandbox import cli

    state_dir = tmp_path_factory.mktemp("ack-sandbox")
    endpoints = cli.up(state_dir, time_scale=float(os.environ.get("ACK_SANDBOX_TEST_TIME_SCALE", "30")))
    try:
        yield {**endpoints, "state_dir": state_dir}
    finally:
        cli.down(state_dir)


@pytest.fixture(scope="session")
def trained_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SavedModel of the demo classifier (``<dir>/fashion-mnist/1/saved_model.pb``), trained once in a
    subprocess so this process never imports TensorFlow. Returns ``<dir>``."""
    import subprocess

    out = tmp_path_factory.mktemp("savedmodel")
    env = {**os.environ, "PYTHONPATH": str(REPO / "include"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(
        [sys.executable, "-m", "training.train", str(out), "--epochs", "8"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (out / "fashion-mnist" / "1" / "saved_model.pb").is_file()
    return out
