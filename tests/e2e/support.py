"""The Airflow CLI the end-to-end tests run, wired to the sandbox (``conftest.py`` makes the session fixture of it).

A plain module, not a test module: tests import ``AIRFLOW`` and ``AirflowCli`` from here, not from ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import airflow_env

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


class AirflowCli:
    """Runs Airflow CLI commands in their own AIRFLOW_HOME, wired to the sandbox's connections."""

    def __init__(self, home: Path, sandbox: dict) -> None:
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
