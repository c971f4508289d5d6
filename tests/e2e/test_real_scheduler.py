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
