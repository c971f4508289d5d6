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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``make test`` runs three xdist workers (``TEST_WORKERS``) with ``--dist loadscope``, scheduled here by
    module: a module's tests stay on one worker (its module fixtures are set up once). The end-to-end modules are
    the longest and form two groups, the first two units handed out, so two workers start with one each: the DAG
    group (sharing the Airflow home, the DAG-trained model and the background scheduler run) and the other-paths
    group (the rollback and KServe runs, on the model trained once for the test run); the third starts on the
    other modules. ``--dist loadgroup`` cannot do it: xdist 3.8 renames ``item._nodeid``, which pytest 9.2 no
    longer reads."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from tests.e2e.groups import e2e_group

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return e2e_group(module) or module

    return ModuleScheduling(config, log)


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run sees (the parent of the workers' base temps)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SavedModel of the demo classifier (``<dir>/fashion-mnist/1/saved_model.pb``), trained once per
    test run (the first worker to need it trains, the others wait on the lock) in a subprocess so this process
    never imports TensorFlow. Returns ``<dir>``, with the training's own report in ``<dir>/train.json``; read-only
    for the tests."""
    import fcntl
    import subprocess

    shared = _shared_dir(tmp_path_factory)
    out, done = shared / "savedmodel", shared / "savedmodel.done"
    with (shared / "savedmodel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            out.mkdir(exist_ok=True)
            env = {**os.environ, "PYTHONPATH": str(REPO / "include"), "TF_CPP_MIN_LOG_LEVEL": "2"}
            trained = subprocess.run(
                [sys.executable, "-m", "training.train", str(out), "--epochs", "8"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            # what the training reported (metrics, path), for the tests about the training itself
            (out / "train.json").write_text(trained.stdout.strip().splitlines()[-1])
            done.touch()
    assert (out / "fashion-mnist" / "1" / "saved_model.pb").is_file()
    return out
