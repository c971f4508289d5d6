"""End-to-end fixtures: a real Airflow CLI (``airflow dags test``) against the session sandbox, and a run under a
real scheduler that starts in the background as soon as the model is trained."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.groups import OTHER_PATHS
from tests.e2e.support import AirflowCli, Background, Standalone, oss_watch_config, run_under_scheduler

REPO = Path(__file__).resolve().parents[2]
SCHEDULER_TEST = "test_real_scheduler.py"
BROWSER_TEST = "test_ui_browser.py"  # opens the same run in a browser: one DAG run for both


@pytest.fixture(scope="session")
def airflow_cli(sandbox, tmp_path_factory: pytest.TempPathFactory) -> AirflowCli:
    cli = AirflowCli(tmp_path_factory.mktemp("airflow-home"), sandbox)
    migrated = cli.run("db", "migrate", timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return cli


@pytest.fixture(scope="session")
def models_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the training DAG writes the demo model (known before it is trained: the scheduler run's stack
    starts meanwhile)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def trained_model(airflow_cli: AirflowCli, models_home: Path) -> Path:
    """The demo model, trained by the training DAG itself (real data, real SavedModel)."""
    out = models_home
    result = airflow_cli.run("dags", "test", "train_fashion_mnist", "-c", f'{{"output_dir": "{out}"}}')
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (out / "fashion-mnist" / "1" / "saved_model.pb").is_file()
    assert (out / "samples.json").is_file()
    return out / "fashion-mnist"


@pytest.fixture(scope="session")
def e2e_model(trained_savedmodel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model trained once for the test run (``trained_savedmodel``), laid out as the training DAG writes it
    (``<dir>/fashion-mnist/1`` and ``<dir>/samples.json``): for the runs that are not about training."""
    import shutil
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("e2e-model")
    shutil.copytree(trained_savedmodel / "fashion-mnist", out / "fashion-mnist")
    write = (
        "import json, sys; from training import sample_images; images, labels = sample_images(16); "
        "open(sys.argv[1], 'w').write(json.dumps({'images': images, 'labels': labels}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    subprocess.run([sys.executable, "-c", write, str(out / "samples.json")], env=env, check=True, timeout=120)
    return out / "fashion-mnist"


@pytest.fixture(autouse=True)
def _background_runs(request: pytest.FixtureRequest) -> None:
    """The DAG group's first test on its worker starts the background scheduler run (and the live view)."""
    if request.node.path.name not in OTHER_PATHS:
        request.getfixturevalue("live_view")


@pytest.fixture(scope="session")
def scheduler_run(
    request: pytest.FixtureRequest, sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Standalone, Background] | None]:
    """The run under a real scheduler, started with the first end-to-end test when ``test_real_scheduler`` is
    selected: it is mostly waiting, so it overlaps the ``airflow dags test`` runs instead of adding to them."""
    if not any(item.path.name in (SCHEDULER_TEST, BROWSER_TEST) for item in request.session.items):
        yield None
        return
    model_dir = request.getfixturevalue("models_home") / "fashion-mnist"
    standalone = Standalone(AirflowCli(tmp_path_factory.mktemp("airflow-standalone-home"), sandbox))
    standalone.env["ELASTIC_INFERENCE_OSS_WATCH"] = json.dumps(oss_watch_config(model_dir))
    standalone.env["ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES"] = "1"  # every run here takes longer: it fires
    # The stack starts while this thread trains the model; the run is triggered once the model is there.
    trained = threading.Event()
    run = Background(lambda: run_under_scheduler(standalone, sandbox, model_dir, model_ready=trained))
    try:
        try:
            request.getfixturevalue("trained_model")
        finally:
            trained.set()  # a failed training ends the wait too (the run then finds no model)
        yield standalone, run
    finally:
        standalone.stop()


@pytest.fixture(scope="session")
def live_view(request: pytest.FixtureRequest, scheduler_run) -> Background | None:
    """The run view during the load test, caught in a browser while the scheduler run goes (the browser test,
    which runs later, collects it): started with the run when ``test_ui_browser`` is selected."""
    if scheduler_run is None or not any(item.path.name == BROWSER_TEST for item in request.session.items):
        return None
    from tests.e2e.browser import capture_live_view

    standalone, run = scheduler_run
    return Background(lambda: capture_live_view(standalone, run))
