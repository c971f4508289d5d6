"""The wait layer (event → outcome, node-pool verdict) and the exception tree: terminal vs transient."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from elastic_inference import exceptions as ex
from elastic_inference.hooks.kubernetes import KubernetesApiError, KubernetesTerminalError
from elastic_inference.triggers.node_pool import node_pool_verdict
from elastic_inference.waits import DEFER_TIMEOUT_SLACK_SECONDS, defer_timeout, raise_for_event

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "elastic_inference"


@pytest.mark.parametrize(
    "terminal",
    [
        ex.SpecError,
        ex.NodePoolSpecError,
        ex.ModelLayoutError,
        ex.NodePoolFailedError,
        ex.ResourceFailedError,
        ex.AlibabaCloudTerminalError,
        ex.AlibabaCloudCredentialsError,
        KubernetesTerminalError,
    ],
)
def test_terminal_errors_are_not_retried(terminal) -> None:
    assert issubclass(terminal, ex.TerminalError) and issubclass(terminal, AirflowFailException)
    assert issubclass(terminal, ex.ElasticInferenceError)


@pytest.mark.parametrize("transient", [ex.AlibabaCloudRetryableError, ex.WaitTimeoutError])
def test_transient_errors_may_be_retried(transient) -> None:
    assert issubclass(transient, ex.TransientError) and issubclass(transient, AirflowException)
    assert not issubclass(transient, AirflowFailException)


def test_kubernetes_api_errors_are_in_the_tree() -> None:
    assert issubclass(KubernetesApiError, ex.ElasticInferenceError)
    assert not issubclass(KubernetesApiError, AirflowFailException)  # 429/5xx after retries: retry the task


def test_events_become_outcomes() -> None:
    assert raise_for_event({"status": "success", "x": 1}, "t") == {"status": "success", "x": 1}
    with pytest.raises(ex.NodePoolFailedError, match="^np: out of stock$"):
        raise_for_event({"status": "error", "message": "out of stock"}, "np", failed=ex.NodePoolFailedError)
    with pytest.raises(ex.WaitTimeoutError, match="^t: timed out: still initial$"):
        raise_for_event({"status": "timeout", "message": "still initial"}, "t")
    with pytest.raises(ex.WaitTimeoutError, match="without an event"):
        raise_for_event(None, "t")
    assert defer_timeout(300).total_seconds() == 300 + DEFER_TIMEOUT_SLACK_SECONDS


def _pool(state: str, **status) -> dict:
    return {"nodepool_info": {"nodepool_id": "np1"}, "status": {"state": state, **status}}


def test_node_pool_verdict_is_the_one_set_of_state_rules() -> None:
    ok = node_pool_verdict(_pool("active"))
    assert (ok.state, ok.message, ok.details) == (
        "success",
        "node pool np1 is active",
        {"state": "active", "nodepool_id": "np1"},
    )
    for pending in ("initial", "scaling", "updating", "removing"):
        assert node_pool_verdict(_pool(pending)).state == "pending"
    failed = node_pool_verdict(
        _pool("failed", conditions=[{"type": "Ready", "reason": "NoStock", "message": "out of stock"}])
    )
    assert failed.state == "error" and "is 'failed'" in failed.message and "NoStock: out of stock" in failed.message
    for gone in ("deleting", "deleted"):
        assert node_pool_verdict(_pool(gone)).state == "error"
    task = {"task_id": "T1", "state": "fail", "error": {"code": "QuotaExceeded", "message": "no quota"}}
    by_task = node_pool_verdict(_pool("scaling"), task)
    assert by_task.state == "error" and "task T1 'fail'" in by_task.message and "no quota" in by_task.message


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_operators_never_import_sensors_and_sensors_never_import_operators() -> None:
    for path in (PLUGIN / "operators").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("elastic_inference.sensors")}, path.name
    for path in (PLUGIN / "sensors").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("elastic_inference.operators")}, path.name


def test_the_old_connection_argument_still_works_with_a_warning() -> None:
    from elastic_inference.hooks.ack import AckHook
    from elastic_inference.operators.node_pool import AckNodePoolOperator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        op = AckNodePoolOperator(task_id="np", alibaba_cloud_conn_id="old", node_pool={"name": "p"})
        hook = AckHook(alibaba_cloud_conn_id="old_hook")
    assert op.ack_conn_id == "old" and hook.ack_conn_id == "old_hook" == hook.alibaba_cloud_conn_id
    assert sum("alibaba_cloud_conn_id is deprecated; use ack_conn_id" in str(w.message) for w in caught) == 2
    assert AckNodePoolOperator(task_id="np2", node_pool={"name": "p"}).ack_conn_id == "alibaba_ack_default"


def test_invalid_run_config_is_gone_for_one_spec_error() -> None:
    import elastic_inference.params as params

    assert not hasattr(params, "InvalidRunConfig")
    assert issubclass(ex.SpecError, ValueError)
