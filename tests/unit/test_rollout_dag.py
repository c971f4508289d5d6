"""The deploy DAG's rollout wiring: the rollout group between ingress and verify, the approval as Airflow's HITL
ApprovalOperator, a rollback's skipped upload with the volume still running, verification on the promoted target,
and the no-op tasks of a first deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from elastic_inference.operators.rollout import (
    CanaryAnalysisOperator,
    PromoteCanaryOperator,
    approval_request,
    stable_target,
)


def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "elastic_inference.py"))
    assert bag.import_errors == {}
    return bag.dags["elastic_inference"]


def test_rollout_group_sits_between_ingress_and_verify() -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = _dag()
    tasks = dag.task_dict
    assert tasks["rollout.canary_analysis"].upstream_task_ids == {"ingress.ingress"}
    assert tasks["rollout.approval"].upstream_task_ids == {"rollout.canary_analysis"}
    assert tasks["rollout.promote"].upstream_task_ids == {"rollout.approval"}
    assert tasks["verify.smoke_test"].upstream_task_ids == {"rollout.promote"}
    assert isinstance(tasks["rollout.approval"], ApprovalOperator)
    assert tasks["volume.oss_volume"].trigger_rule == "none_failed"  # runs after a rollback's skipped upload
    assert "rollout.promote" in tasks["verify.smoke_test"].version_check
    assert "rollout.promote" in tasks["verify.load_test"].deployment_name
    assert "rollout" in dag.params


def test_upload_is_skipped_on_a_rollback_only() -> None:
    hook = _dag().task_dict["model.upload_model"]._pre_execute_hook

    class TI:
        def __init__(self, rollout: dict[str, Any]) -> None:
            self.rollout = rollout

        def xcom_pull(self, task_ids: str) -> dict[str, Any]:
            return {"rollout": self.rollout}

    hook({"ti": TI({"rollback_to": None})})
    with pytest.raises(AirflowSkipException, match="rollback to version 1"):
        hook({"ti": TI({"rollback_to": 1})})


def test_first_deployment_makes_the_rollout_tasks_no_ops() -> None:
    direct = {
        "name": "m",
        "namespace": "d",
        "deployment": "m-predictor-0-a",
        "hpa": "m-predictor-0-a",
        "service": "m-predictor",
        "route": "d-m-predictor-8000",
        "pod_selector": "seldon-deployment-id=m",
        "backend": "seldon",
        "model_name": "fashion-mnist",
        "model_version": 1,
        "rollout": {"mode": "direct", "reason": "nothing serves yet: first deployment"},
    }
    target = stable_target(direct)
    assert target["version"] == 1 and target["pod_selector"] == "seldon-deployment-id=m"
    ingress = {"name": "m", "predict_url": "http://127.0.0.1:1/api/v1.0/predictions"}
    analysis = CanaryAnalysisOperator(task_id="a", deployment=direct, ingress=ingress, samples_path="/nonexistent")
    assert analysis.execute({})["mode"] == "direct"  # no cluster, no samples needed
    promote = PromoteCanaryOperator(
        task_id="p",
        serving={"name": "m", "model_name": "fashion-mnist"},
        deployment=direct,
        ingress=ingress,
        samples_path="/nonexistent",
        sls_project="p",
    )
    assert promote.execute({}) == target


def test_approval_is_asked_only_when_required_and_shows_the_canary_figures() -> None:
    from elastic_inference.operators.rollout import CanaryApprovalOperator, _figures
    from elastic_inference.rollout.analysis import Sample, step_verdict
    from elastic_inference.specs.rollout import RolloutSpec

    canary = {"model_version": 2, "rollout": {"mode": "canary", "stable_name": "m", "stable_version": 1}}
    op = CanaryApprovalOperator(task_id="a", deployment=canary, ingress={}, analysis={}, rollout={})
    assert op.execute({}) == {"chosen_options": ["Approve"], "asked": False}  # require_approval is off
    ok = [Sample(i * 0.1, 20.0, True, True) for i in range(30)]
    steps = [step_verdict(10, 0, 3, ok, ok, RolloutSpec())]
    subject, body = approval_request(canary, {"summary": _figures(steps), "prober": {"line": "prober: 9 requests"}})
    assert subject == "Promote m from version 1 to version 2?"
    assert "step 10 %: canary 30 req, error rate 0.00 %, p95 20 ms, agreement 100.0 %" in body
    assert "prober: 9 requests" in body and "Reject: the canary is removed" in body
