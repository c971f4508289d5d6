"""Node pool operator, sensor and trigger through the real CS SDK against the sandbox.

Deferral is exercised as Airflow does it: ``execute`` raises ``TaskDeferred``; the trigger is rebuilt from
``serialize()``, run until its one event, and the event is fed to the ``method_name`` callback.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from elastic_inference.exceptions import NodePoolFailedError, NodePoolSpecError
from elastic_inference.hooks.ack import AckHook
from elastic_inference.operators.node_pool import AckNodePoolOperator
from elastic_inference.sensors.node_pool import NodePoolActiveSensor
from tests.helpers import FakeTI
from tests.integration.support import FAST_RETRY, admin_ok, connection, sandbox_conn, seed_pool

pytestmark = pytest.mark.integration


@pytest.fixture
def conn_id(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_ack_np", conn) as cid:
        yield cid
    admin_ok(sandbox, "cs", "DELETE", "/_sandbox/faults")


@pytest.fixture
def vswitches(conn_id) -> list[str]:
    return AckHook(conn_id).describe_cluster()["vswitch_ids"][:2]


async def run_deferred(op: Any, context: dict, excinfo: pytest.ExceptionInfo[TaskDeferred]) -> Any:
    deferred = excinfo.value
    classpath, kwargs = deferred.trigger.serialize()
    module, _, cls = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), cls)(**kwargs)
    event = await trigger.run().__anext__()
    return getattr(op, deferred.method_name)(context, event=event.payload, **(deferred.kwargs or {}))


async def test_create_then_active_then_rerun_is_a_no_op(conn_id, vswitches):
    name = "fm-" + secrets.token_hex(3)
    ti = FakeTI()
    op = AckNodePoolOperator(
        task_id="node_pool",
        ack_conn_id=conn_id,
        deferrable=True,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(name, vswitches),
    )
    with pytest.raises(TaskDeferred) as excinfo:
        op.execute({"ti": ti})
    assert ti.xcom["created"] is True and ti.xcom["modified"] is False
    assert ti.xcom["nodepool_id"].startswith("np") and ti.xcom["task_id"]
    result = await run_deferred(op, {"ti": ti}, excinfo)
    assert result["state"] == "active"
    assert result["nodepool_id"] == ti.xcom["nodepool_id"]

    pool = AckHook(conn_id).describe_node_pool(result["nodepool_id"])
    sg = pool["scaling_group"]
    assert (sg["multi_az_policy"], sg["on_demand_percentage_above_base_capacity"]) == ("COST_OPTIMIZED", 30)
    assert sg["spot_strategy"] == "SpotAsPriceGo" and sg["compensate_with_on_demand"] is True
    assert {"key": "seldon", "value": "fashion-mnist"} in pool["kubernetes_config"]["labels"]

    # Re-run with the same spec: found by name, nothing to modify, no second pool, no task.
    ti2 = FakeTI()
    op2 = AckNodePoolOperator(
        task_id="node_pool",
        ack_conn_id=conn_id,
        deferrable=False,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(name, vswitches),
    )
    again = op2.execute({"ti": ti2})
    assert again["nodepool_id"] == result["nodepool_id"]
    assert (again["created"], again["modified"], again["task_id"]) == (False, False, None)
    assert again["state"] == "active"
    assert len(AckHook(conn_id).list_node_pools(name=name)) == 1


async def test_changed_spec_modifies_the_same_pool(conn_id, vswitches):
    name = "fm-" + secrets.token_hex(3)
    first = AckNodePoolOperator(
        task_id="np",
        ack_conn_id=conn_id,
        deferrable=False,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(name, vswitches),
    ).execute({"ti": FakeTI()})
    changed = AckNodePoolOperator(
        task_id="np",
        ack_conn_id=conn_id,
        deferrable=False,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(name, vswitches, max_instances=6, labels={"seldon": "fashion-mnist", "tier": "gpu"}),
    ).execute({"ti": FakeTI()})
    assert changed["nodepool_id"] == first["nodepool_id"]
    assert changed["modified"] is True and changed["created"] is False
    assert any(c.startswith("auto_scaling.max_instances") for c in changed["changes"])
    pool = AckHook(conn_id).describe_node_pool(first["nodepool_id"])
    assert pool["auto_scaling"]["max_instances"] == 6
    assert {"key": "tier", "value": "gpu"} in pool["kubernetes_config"]["labels"]
    assert len(AckHook(conn_id).list_node_pools(name=name)) == 1


def test_create_survives_throttling(sandbox, conn_id, vswitches):
    admin_ok(
        sandbox,
        "cs",
        "POST",
        "/_sandbox/faults",
        {"throttle": {"count": 2, "action": "CreateClusterNodePool", "retry_after": 0}},
    )
    name = "fm-" + secrets.token_hex(3)
    result = AckNodePoolOperator(
        task_id="np", ack_conn_id=conn_id, wait_for_active=False, node_pool=seed_pool(name, vswitches)
    ).execute({"ti": FakeTI()})
    assert result["created"] is True
    assert admin_ok(sandbox, "cs", "GET", "/_sandbox/faults")["throttle"]["count"] == 0
    assert len(AckHook(conn_id).list_node_pools(name=name)) == 1


def test_invalid_spec_fails_before_any_cloud_call(vswitches):
    op = AckNodePoolOperator(
        task_id="np",
        ack_conn_id="no_such_connection",
        node_pool=seed_pool("fm-bad", vswitches, min_instances=20, max_instances=5),
    )
    with pytest.raises(NodePoolSpecError, match="min_instances=20"):
        op.execute({"ti": FakeTI()})


async def test_sensor_defers_until_active(conn_id, vswitches):
    name = "fm-" + secrets.token_hex(3)
    created = AckNodePoolOperator(
        task_id="np", ack_conn_id=conn_id, wait_for_active=False, node_pool=seed_pool(name, vswitches)
    ).execute({"ti": FakeTI()})
    sensor = NodePoolActiveSensor(
        task_id="wait",
        nodepool_id=created["nodepool_id"],
        ack_conn_id=conn_id,
        task_id_to_watch=created["task_id"],
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )
    with pytest.raises(TaskDeferred) as excinfo:
        sensor.execute({})
    event = await run_deferred(sensor, {}, excinfo)
    assert event["status"] == "success" and event["state"] == "active"
    # Not deferrable: poke sees it active straight away.
    assert (
        NodePoolActiveSensor(
            task_id="poke", nodepool_id=created["nodepool_id"], ack_conn_id=conn_id, deferrable=False
        ).poke({})
        is True
    )


async def test_no_stock_fails_fast_with_the_cause(sandbox, conn_id, vswitches):
    admin_ok(sandbox, "cs", "POST", "/_sandbox/faults", {"no_stock": ["ecs.gn6i-c8g1.2xlarge"]})
    name = "fm-" + secrets.token_hex(3)
    op = AckNodePoolOperator(
        task_id="np",
        ack_conn_id=conn_id,
        deferrable=True,
        poll_interval=0.2,
        wait_timeout=120,
        node_pool=seed_pool(name, vswitches, min_instances=1, instance_types=["ecs.gn6i-c8g1.2xlarge"]),
    )
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as excinfo:
        op.execute({"ti": ti})
    with pytest.raises(NodePoolFailedError) as err:
        await run_deferred(op, {"ti": ti}, excinfo)
    message = str(err.value)
    assert "failed" in message
    assert "stock" in message.lower()  # the cause, from the pool's conditions / task error
    sensor = NodePoolActiveSensor(
        task_id="wait", nodepool_id=ti.xcom["nodepool_id"], ack_conn_id=conn_id, deferrable=False
    )
    with pytest.raises(NodePoolFailedError):
        sensor.poke({})


async def test_trigger_times_out_with_one_event(conn_id, vswitches):
    import time

    from elastic_inference.triggers.node_pool import NodePoolStateTrigger

    name = "fm-" + secrets.token_hex(3)
    created = AckNodePoolOperator(
        task_id="np", ack_conn_id=conn_id, wait_for_active=False, node_pool=seed_pool(name, vswitches)
    ).execute({"ti": FakeTI()})
    trigger = NodePoolStateTrigger(
        nodepool_id=created["nodepool_id"], ack_conn_id=conn_id, poll_interval=0.05, end_time=time.time()
    )  # deadline already passed
    events = [e async for e in trigger.run()]
    assert len(events) == 1
    # Just created: the pool is still "initial" (pool setup takes 60 cloud seconds), so the deadline wins.
    assert (events[0].payload["status"], events[0].payload["state"]) == ("timeout", "initial")
    assert events[0].payload["nodepool_id"] == created["nodepool_id"]


def test_vswitches_default_to_the_clusters_own(conn_id, vswitches):
    name = "fm-" + secrets.token_hex(3)
    spec = seed_pool(name, vswitches)
    del spec["vswitch_ids"]
    op = AckNodePoolOperator(task_id="node_pool", ack_conn_id=conn_id, wait_for_active=False, node_pool=spec)
    result = op.execute({"ti": FakeTI()})
    pool = AckHook(conn_id).describe_node_pool(result["nodepool_id"])
    assert pool["scaling_group"]["vswitch_ids"] == AckHook(conn_id).describe_cluster()["vswitch_ids"]


async def test_trigger_keeps_the_cs_task_when_the_triggerer_attaches_the_task_instance(conn_id, vswitches):
    """The triggerer assigns ``trigger.task_instance``, and BaseTrigger then sets ``trigger.task_id`` to the
    Airflow task id: the CS task the trigger watches must live under another name (seen under a real
    triggerer: DescribeTaskInfo was asked for task 'node_pool.ensure_node_pool')."""
    from types import SimpleNamespace

    from elastic_inference.triggers.node_pool import NodePoolStateTrigger

    op = AckNodePoolOperator(
        task_id="node_pool.ensure_node_pool",
        ack_conn_id=conn_id,
        deferrable=True,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool("fm-" + secrets.token_hex(3), vswitches),
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": FakeTI()})
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["cs_task_id"].startswith("T-")
    trigger = NodePoolStateTrigger(**kwargs)
    trigger.task_instance = SimpleNamespace(
        task_id="node_pool.ensure_node_pool", dag_id="elastic_inference", run_id="manual__x", map_index=-1, try_number=1
    )
    assert trigger.task_id == "node_pool.ensure_node_pool"  # what BaseTrigger does
    event = await trigger.run().__anext__()
    assert event.payload["status"] == "success", event.payload
