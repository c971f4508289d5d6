"""The deploy DAG under a real scheduler: ``airflow standalone`` (scheduler, dag-processor, triggerer,
api-server, LocalExecutor), triggered over the REST API, with the waits deferred to the real triggerer.

`airflow dags test` runs triggers in-process and differs in ways that matter (a real triggerer attaches the
task instance to the trigger, resumes with the defer() kwargs); this run caught a trigger attribute clash.
The run itself starts in the background with the first end-to-end test (``conftest.scheduler_run``); this
test waits for it and checks what it did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import SCHEDULER_RUN_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(SCHEDULER_RUN_TIMEOUT + 600)]


def test_deploy_dag_under_a_real_scheduler_and_triggerer(scheduler_run) -> None:
    standalone, run = scheduler_run
    result = run.result(timeout=SCHEDULER_RUN_TIMEOUT + 600)
    tail = standalone.log_path.read_text(errors="replace")[-3000:]
    assert result["state"] == "success", (result["task_states"], tail)
    assert set(result["task_states"].values()) == {"success"}, result["task_states"]
    # The waits really went through the triggerer: it wrote a trigger log for each deferred task.
    logs = Path(standalone.env["AIRFLOW_HOME"]) / "logs" / "dag_id=elastic_inference"
    run_id = result["run_id"]
    deferred = {p.parent.name.removeprefix("task_id=") for p in logs.rglob("*.trigger.*.log") if run_id in str(p)}
    assert {
        "node_pool.ensure_node_pool",
        "volume.oss_volume",
        "serving.seldon_deployment",
        "ingress.ingress",
    } <= deferred, deferred


def test_a_new_version_written_to_oss_outside_airflow_deploys_by_itself(scheduler_run) -> None:
    """The retraining hook: version 2 lands in the watched prefix (a job with its own OSS client); the OSS
    watcher's AssetWatcher starts the DAG, which copies the model inside OSS, canaries it beside version 1,
    promotes and verifies it, and emits the endpoint Asset for version 2. Exactly one run was started by it."""
    standalone, run = scheduler_run
    result = run.result(timeout=SCHEDULER_RUN_TIMEOUT + 600)
    tail = standalone.log_path.read_text(errors="replace")[-3000:]
    watched = result.get("watched")
    assert watched is not None, (result, tail)
    assert watched["state"] == "success", (watched["task_states"], tail)
    asset_runs = [r for r in watched["runs"] if r["run_type"] == "asset_triggered"]
    assert len(asset_runs) == 1, asset_runs
    by_asset = {}
    for event in watched["events"]:
        by_asset.setdefault(event["uri"], []).append(event)
    (oss_event,) = [e for uri, evs in by_asset.items() if uri.startswith("oss://") for e in evs]
    assert oss_event["extra"]["from_trigger"] is True
    assert oss_event["extra"]["payload"]["version"] == 2
    assert oss_event["extra"]["payload"]["path"].endswith("/exports/fashion-mnist/2/")
    endpoint = [e for uri, evs in by_asset.items() if uri.startswith("ack://") for e in evs]
    versions = sorted(e["extra"]["model_version"] for e in endpoint)
    assert versions == [1, 2], endpoint  # the REST run's version 1, then the watcher's version 2
    latest = max(endpoint, key=lambda e: e["extra"]["model_version"])
    assert latest["uri"].endswith("/sched/fm-sched") and latest["extra"]["verdict"] == "passed"
    assert latest["extra"]["endpoint"] and latest["extra"]["report"]


def test_the_deadline_alert_fires_for_a_run_without_a_verdict_in_time(scheduler_run) -> None:
    """A one-minute bound (``conftest``): each run takes longer, so the triggerer ran the deadline's callback."""
    standalone, run = scheduler_run
    run.result(timeout=SCHEDULER_RUN_TIMEOUT + 600)
    log = standalone.log_path.read_text(errors="replace")
    late = [line for line in log.splitlines() if "has no verdict 1 minute(s) after it was queued" in line]
    assert late, log[-3000:]
