"""The retraining hooks' wiring without a cluster: the DAG's schedule (the OSS watcher's AssetWatcher), its
deadline alert and callback (through a real notifier), the endpoint event's rules, and the trigger event's
payload folded into the run by ``plan``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.bases.notifier import BaseNotifier

from elastic_inference.deadline import deadline_alert, verdict_late
from elastic_inference.endpoint_asset import endpoint_event
from elastic_inference.specs.run import event_model
from elastic_inference.triggers.oss_watch import OssModelVersionTrigger, watch_kwargs


@pytest.fixture
def dag_with_watch(repo_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    watch = {"uri": "oss://train/exports/fashion-mnist/", "poll_interval": 5, "params": {"namespace": "ml"}}
    monkeypatch.setenv("ELASTIC_INFERENCE_OSS_WATCH", json.dumps(watch))
    monkeypatch.setenv("ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES", "45")
    sys.modules.pop("_assets", None)
    try:
        bag = DagBag(dag_folder=str(repo_root / "dags" / "elastic_inference.py"))
        assert bag.import_errors == {}
        yield bag.dags["elastic_inference"]
    finally:
        sys.modules.pop("_assets", None)


def test_dag_is_scheduled_by_the_oss_watcher_and_has_a_deadline(dag_with_watch) -> None:
    dag = dag_with_watch
    assets = {a.name: a for a in dag.timetable.asset_condition.objects}
    watched = assets["elastic_inference_model_in_oss"]
    assert watched.uri == "oss://train/exports/fashion-mnist"  # Airflow strips the trailing slash
    (watcher,) = watched.watchers
    assert isinstance(watcher.trigger, OssModelVersionTrigger)
    assert watcher.trigger.serialize()[1]["params"] == {"namespace": "ml"}
    assert "fashion_mnist_savedmodel" in assets  # the training DAG's Asset still schedules it
    (alert,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.interval.total_seconds() == 45 * 60
    assert alert.callback.path == "elastic_inference.deadline.verdict_late"
    assert [o.name for o in dag.get_task("endpoint").outlets] == ["elastic_inference_endpoint"]


def test_watch_config_errors_name_the_variable() -> None:
    assert watch_kwargs("") is None
    assert watch_kwargs("oss://b/p/") == {"uri": "oss://b/p/"}
    with pytest.raises(ValueError, match="ELASTIC_INFERENCE_OSS_WATCH"):
        watch_kwargs('{"uri": "oss://b/p/", "pol_interval": 3}')
    with pytest.raises(ValueError, match="ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES"):
        deadline_alert({"ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES": "an hour"})
    assert deadline_alert({"ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES": "0"}) is None
    assert deadline_alert({}) is None  # opt-in: the user sets the bound


class FileNotifier(BaseNotifier):
    """A real notifier (the interface Slack/SMTP notifiers implement) that appends to a file."""

    template_fields = ("path",)

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    async def async_notify(self, context: Any) -> None:
        with open(self.path, "a") as f:
            f.write(context["deadline_message"] + "\n")


async def test_deadline_callback_logs_and_notifies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "notified.txt"
    message = await verdict_late(
        {"dag_run": {"dag_run_id": "asset_triggered__1", "dag_id": "elastic_inference"}},  # as Deadline.handle_miss
        bound_minutes=45,
        notifier=f"{__name__}.FileNotifier",
        notifier_kwargs={"path": str(out)},
    )
    assert "asset_triggered__1 has no verdict 45 minute(s)" in message
    assert out.read_text() == message + "\n"
    assert message in caplog.text


PLAN = {
    "serving": {"namespace": "ml", "name": "fm"},
    "model": {"name": "fashion-mnist", "version": 2, "bucket": "models", "prefix": "models"},
}
PASSED = {"verdict": "passed", "report_path": "/r/report.html", "endpoint": "http://x/predict", "rollout": "promoted"}


def test_endpoint_event_only_for_a_verified_deployment_of_the_version() -> None:
    target, ingress = {"version": 2}, {"predict_url": "http://ing/api/v1.0/predictions", "host_header": "fm.local"}
    uri, extra = endpoint_event(cluster_id="c1", plan=PLAN, target=target, ingress=ingress, verification=PASSED)
    assert uri == "ack://c1/ml/fm"
    assert extra["verdict"] == "passed" and extra["model_version"] == 2
    assert (extra["endpoint"], extra["report"]) == ("http://ing/api/v1.0/predictions", "/r/report.html")
    assert extra["model_uri"] == "oss://models/models/fashion-mnist/2/"
    failed = {**PASSED, "verdict": "failed"}
    assert endpoint_event(cluster_id="c1", plan=PLAN, target=target, ingress=ingress, verification=failed) is None
    torn_down = {**PLAN, "teardown": True}
    assert endpoint_event(cluster_id="c1", plan=torn_down, target=target, ingress=ingress, verification=PASSED) is None
    old = {"version": 1}  # the stable still serves the old version: not this run's deployment
    assert endpoint_event(cluster_id="c1", plan=PLAN, target=old, ingress=ingress, verification=PASSED) is None


def test_a_trigger_made_asset_event_is_unwrapped() -> None:
    payload = {"path": "oss://t/exports/fm/2/", "version": 2, "params": {"namespace": "ml"}}
    assert event_model({"from_trigger": True, "payload": payload}) == payload
    assert event_model({"path": "/m", "version": 1}) == {"path": "/m", "version": 1}
