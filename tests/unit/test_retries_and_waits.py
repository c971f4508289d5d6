"""Airflow retries against waits (issue 12 item 7): terminal failures are not retried, a try never outlives its
wait, a no-stock failure says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import k8s_objects as k
from elastic_inference.exceptions import NodePoolFailedError, WaitTimeoutError
from elastic_inference.operators.node_pool import AckNodePoolOperator
from elastic_inference.operators.volume import CreateOssVolumeOperator
from elastic_inference.triggers.node_pool import node_pool_verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_failed_pool_is_terminal_and_a_timeout_is_not() -> None:
    assert isinstance(NodePoolFailedError("x"), AirflowFailException)  # the task runner never retries it
    assert not isinstance(WaitTimeoutError("x"), AirflowFailException)


def test_a_try_never_outlives_its_wait() -> None:
    pool = AckNodePoolOperator(task_id="p", node_pool={"name": "p"}, wait_timeout=1800)
    assert pool.execution_timeout == timedelta(seconds=1800 + 300)
    assert AckNodePoolOperator(task_id="q", node_pool={}, wait_for_active=False).execution_timeout is None
    given = AckNodePoolOperator(task_id="r", node_pool={}, execution_timeout=timedelta(seconds=5))
    assert given.execution_timeout == timedelta(seconds=5)
    volume = CreateOssVolumeOperator(task_id="v", bucket="b", pv_name="pv", pvc_name="pvc", timeout=300)
    assert volume.execution_timeout == timedelta(seconds=420)


SERVING = "{{ ti.xcom_pull(task_ids='plan')['serving'] }}"  # templated, as the DAG passes it


def test_the_serving_and_ingress_waits_bound_their_try_too() -> None:
    from elastic_inference.operators.ingress import CreateIngressOperator
    from elastic_inference.operators.rollout import CanaryAnalysisOperator
    from elastic_inference.operators.seldon import DeploySeldonOperator

    assert DeploySeldonOperator(task_id="s", serving=SERVING, timeout=900).execution_timeout == timedelta(seconds=1020)
    assert CreateIngressOperator(task_id="i", serving=SERVING, timeout=300).execution_timeout == timedelta(seconds=420)
    given = DeploySeldonOperator(task_id="g", serving=SERVING, timeout=900, execution_timeout=timedelta(seconds=60))
    assert given.execution_timeout == timedelta(seconds=60)
    assert DeploySeldonOperator(task_id="n", serving=SERVING, wait_for_completion=False).execution_timeout is None
    # the canary analysis runs its steps of load after its wait: bounded by them, not by the wait
    assert (
        CanaryAnalysisOperator(
            task_id="c", serving=SERVING, deployment="{}", ingress="{}", samples_path="s.json", timeout=300
        ).execution_timeout
        is None
    )


def test_no_stock_is_named_for_a_pod_and_for_a_pool() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "m-0", "namespace": "d", "creationTimestamp": _ts(100)},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }

    def event(reason: str, message: str, ago: float) -> dict:
        return {
            "reason": reason,
            "message": message,
            "lastTimestamp": _ts(ago),
            "involvedObject": {"kind": "Pod", "name": "m-0"},
        }

    events = [
        event("TriggeredScaleUp", "pod triggered scale-up", 60),
        event(
            "FailedScaleUp",
            "Node scale up in zones associated with this pod failed: NoStock: no zone has stock of "
            "ecs.gn6i-c4g1.xlarge. Pod is at risk of not being scheduled.",
            50,
        ),
        event("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 in backoff after failed scale-up", 10),
    ]
    sdep = {"kind": "SeldonDeployment", "metadata": {"name": "m", "namespace": "d"}, "status": {"state": "Creating"}}
    v = k.seldon_verdict(sdep, [pod], events, now=NOW)
    assert v.state == "error" and "out of stock" in v.message and "NoStock" in v.message
    assert "add instance types or vSwitches" in v.message
    pool = {
        "nodepool_info": {"nodepool_id": "np1"},
        "status": {
            "state": "failed",
            "conditions": [{"type": "ScaleOut", "reason": "OperationDenied.NoStock", "message": "no stock"}],
        },
    }
    pv = node_pool_verdict(pool)
    assert pv.state == "error" and "out of stock" in pv.message and "OperationDenied.NoStock" in pv.message
