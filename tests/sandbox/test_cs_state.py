"""The CS state's in-process API (used by the node-pool autoscaler and the Kubernetes node sync)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ack_sandbox.context import SandboxContext
from ack_sandbox.cs.errors import CsError
from ack_sandbox.cs.faults import Faults
from ack_sandbox.cs.mix import NoStockError, payg_target
from ack_sandbox.cs.models import CsState, Instance

GPU = "ecs.gn6i-c4g1.xlarge"


def new_state(tmp_path: Path, faults: Faults | None = None) -> CsState:
    ctx = SandboxContext.load_or_create(tmp_path, time_scale=3000)  # 90 cloud s = 30 ms
    return CsState(ctx, faults or Faults())


async def active_pool(state: CsState, **sg: object) -> str:
    vsw = [v["vswitch_id"] for v in state.cluster["vswitches"]]
    body = {
        "nodepool_info": {"name": "elastic"},
        "auto_scaling": {"enable": True, "min_instances": 0, "max_instances": 10, "type": "spot"},
        "scaling_group": {
            "instance_types": [GPU],
            "vswitch_ids": vsw,
            "spot_strategy": "SpotAsPriceGo",
            "multi_az_policy": "COST_OPTIMIZED",
            "on_demand_percentage_above_base_capacity": 30,
            "compensate_with_on_demand": True,
            **sg,
        },
        "kubernetes_config": {"labels": [{"key": "seldon", "value": "fashion-mnist"}]},
    }
    pool, _ = state.create_pool(body)
    for _ in range(200):
        if pool.state == "active":
            return pool.nodepool_id
        await asyncio.sleep(0.01)
    raise AssertionError(f"pool stuck in {pool.state}")


async def test_scale_out_mix_events_and_node_spec(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    events: list[tuple[str, str]] = []
    state.add_listener(lambda event, inst: events.append((event, inst.instance_id)))
    pool_id = await active_pool(state)
    created = await state.scale_out(pool_id, 10)
    assert all(i.state == "running" and i.node_status == "Ready" for i in created)
    assert sum(not i.is_spot for i in created) == payg_target(10, 0, 30)
    assert {i.zone_id for i in created} == {v["zone_id"] for v in state.cluster["vswitches"]}
    for inst in created:
        assert events.index(("added", inst.instance_id)) < events.index(("running", inst.instance_id))
    spec = state.node_spec(created[0])
    assert spec["labels"]["seldon"] == "fashion-mnist"
    assert spec["labels"]["alibabacloud.com/nodepool-id"] == pool_id
    assert spec["labels"]["node.alibabacloud.com/spot-strategy"] == created[0].spot_strategy
    assert spec["allocatable"]["nvidia.com/gpu"] == "1"
    assert spec["provider_id"] == f"{state.ctx.region}.{created[0].instance_id}"
    assert state.pool(pool_id).state == "active"
    with pytest.raises(CsError) as over:  # max_instances is 10
        await state.scale_out(pool_id, 1)
    assert over.value.code == "InvalidParameter.Count" and "max_instances" in over.value.message

    await state.remove_instances(pool_id, [created[0].instance_id])
    assert ("removed", created[0].instance_id) in events
    assert len(state.instances(pool_id)) == 9


async def test_reclaim_spot_with_remedy_replaces_the_instance(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    pool_id = await active_pool(state, spot_instance_remedy=True, on_demand_percentage_above_base_capacity=0)
    spot = (await state.scale_out(pool_id, 2))[0]
    assert spot.is_spot
    events: list[str] = []
    state.add_listener(lambda event, inst: events.append(f"{event}:{inst.instance_id}"))
    replacement = await state.reclaim_spot(spot.instance_id, notice_seconds=10)
    assert replacement is not None and replacement.state == "running" and replacement.is_spot
    assert state.instance(spot.instance_id) is None
    assert events[0] == f"reclaim_notice:{spot.instance_id}" and f"removed:{spot.instance_id}" in events
    assert len(state.instances(pool_id)) == 2


async def test_scale_out_without_stock_raises_and_records_the_task(tmp_path: Path) -> None:
    faults = Faults()
    state = new_state(tmp_path, faults)
    pool_id = await active_pool(state, compensate_with_on_demand=False)
    faults.configure({"no_stock": [GPU]})
    with pytest.raises(NoStockError):
        await state.scale_out(pool_id, 1)
    failed = [t for t in state.tasks.values() if t.task_type == "cluster_scaleout"]
    assert failed[-1].state == "fail" and failed[-1].error["code"] == "RecommendEmpty.InstanceTypeNoStock"
    assert state.instances(pool_id) == []


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    pool_id = await active_pool(state)
    created: list[Instance] = await state.scale_out(pool_id, 3)
    again = new_state(tmp_path)
    assert again.pool(pool_id).name == "elastic"
    assert {i.instance_id for i in again.instances(pool_id)} == {i.instance_id for i in created}
    assert len(again.instances()) == len(state.instances())
