"""End-to-end fixtures: a real Airflow CLI (``airflow dags test``) against the session sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _sandbox_env(state_dir: Path) -> dict[str, str]:
    env = {}
    for line in (state_dir / "airflow.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True,
                                  check=True).stdout  # undo shell quoting exactly as `source` would
    return env


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
            **_sandbox_env(Path(sandbox["state_dir"])),
        }
        self.env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def airflow_cli(sandbox, tmp_path_factory: pytest.TempPathFactory) -> AirflowCli:
    cli = AirflowCli(tmp_path_factory.mktemp("airflow-home"), sandbox)
    migrated = cli.run("db", "migrate", timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return cli


@pytest.fixture(scope="session")
def trained_model(airflow_cli: AirflowCli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained by the training DAG itself (real data, real SavedModel)."""
    out = tmp_path_factory.mktemp("models")
    result = airflow_cli.run("dags", "test", "train_fashion_mnist", "-c", f'{{"output_dir": "{out}"}}')
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (out / "fashion-mnist" / "1" / "saved_model.pb").is_file()
    assert (out / "samples.json").is_file()
    return out / "fashion-mnist"
