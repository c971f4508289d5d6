"""End-to-end fixtures: a real Airflow CLI (``airflow dags test``) against the session sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import AirflowCli


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
