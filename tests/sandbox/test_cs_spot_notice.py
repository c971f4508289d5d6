"""Spot reclamation gives ECS's notice (issue 16): the interruption notice comes 5 minutes before the instance is
released (ECS RunInstances ``SpotDuration``: "Alibaba Cloud sends an ECS system event to notify you 5 minutes
before the instance is released"), on the sandbox clock, so ``--time-scale`` compresses it like every other delay.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ack_sandbox.context import SandboxContext
from ack_sandbox.cs.faults import Faults
from ack_sandbox.cs.models import CsState
from ack_sandbox.cs.state import DELAYS

GPU = "ecs.gn6i-c4g1.xlarge"
SCALE = 300  # 300 cloud s of notice = 1 s of wall time


async def test_default_reclaim_notice_is_five_cloud_minutes_compressed_by_the_time_scale(tmp_path: Path) -> None:
    assert DELAYS["reclaim_notice"] == 300.0
    state = CsState(SandboxContext.load_or_create(tmp_path, time_scale=SCALE), Faults())
    vsw = [v["vswitch_id"] for v in state.cluster["vswitches"]]
    pool, _ = state.create_pool(
        {
            "nodepool_info": {"name": "spot"},
            "auto_scaling": {"enable": True, "min_instances": 0, "max_instances": 2, "type": "spot"},
            "scaling_group": {
                "instance_types": [GPU],
                "vswitch_ids": vsw,
                "spot_strategy": "SpotAsPriceGo",
                "on_demand_percentage_above_base_capacity": 0,
            },
        }
    )
    for _ in range(300):
        if pool.state == "active":
            break
        await asyncio.sleep(0.01)
    spot = (await state.scale_out(pool.nodepool_id, 1))[0]
    assert spot.is_spot
    seen: dict[str, float] = {}
    state.add_listener(lambda event, inst: seen.setdefault(event, state.ctx.clock.now()))
    wall = time.monotonic()
    await state.reclaim_spot(spot.instance_id)  # no notice given: the default
    notice = seen["removing"] - seen["reclaim_notice"]  # notice -> release starts
    assert 300 <= notice < 450, notice  # ECS's 5 minutes (it was 120 s), plus event-loop latency on a busy machine
    assert time.monotonic() - wall < 20  # compressed: 1.1 s of wall time at x300, not 5 real minutes
    assert state.instance(spot.instance_id) is None
