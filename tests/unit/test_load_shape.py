"""Sizing the ramp/hold/stop load shape from the HPA numbers (pure)."""

from __future__ import annotations

import pytest

from elastic_inference.load_shape import PHASE_HOLD, PHASE_RAMP, LoadPlan, plan_load


def test_sized_from_hpa_target_max_replicas_and_fill_factor():
    plan = plan_load(
        qps_target=10, max_replicas=10, fill_factor=0.5, ramp_seconds=30, hold_seconds=60, ramp_steps=3, rps_per_user=2
    )
    assert plan.target_rps == 50
    assert plan.users == 25
    assert [(s.end, s.users, s.phase) for s in plan.stages] == [
        (10.0, 9, PHASE_RAMP),
        (20.0, 17, PHASE_RAMP),
        (30.0, 25, PHASE_RAMP),
        (90.0, 25, PHASE_HOLD),
    ]
    assert plan.hold_start == 30 and plan.run_time == 90
    assert plan.sizing["requested_rps"] == 50


def test_offered_rate_rounds_up_to_whole_users():
    plan = plan_load(qps_target=10, max_replicas=3, fill_factor=0.5, rps_per_user=4, ramp_seconds=0, hold_seconds=5)
    # 15 RPS requested at 4 RPS a user: 4 users offering 16 RPS, straight to the plateau.
    assert plan.users == 4 and plan.target_rps == 16
    assert [(s.end, s.phase) for s in plan.stages] == [(5.0, PHASE_HOLD)]
    assert plan.hold_start == 0


def test_fewer_users_than_steps_stretches_steps_instead_of_repeating():
    plan = plan_load(
        qps_target=1, max_replicas=2, fill_factor=1, rps_per_user=1, ramp_seconds=9, ramp_steps=3, hold_seconds=3
    )
    ramps = [s for s in plan.stages if s.phase == PHASE_RAMP]
    assert [(s.end, s.users) for s in ramps] == [(3.0, 1), (9.0, 2)]
    assert all(b.users > a.users for a, b in zip(ramps, ramps[1:]))


def test_explicit_target_rps_overrides_sizing():
    plan = plan_load(qps_target=10, max_replicas=10, target_rps=7, rps_per_user=1, hold_seconds=1, ramp_seconds=0)
    assert plan.target_rps == 7 and plan.users == 7


def test_round_trips_through_json():
    plan = plan_load(qps_target=10, max_replicas=4, hold_seconds=12, ramp_seconds=6, ramp_steps=2)
    again = LoadPlan.from_json(plan.to_json())
    assert again == plan
    assert plan.to_json()["users"] == plan.users


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"qps_target": 0, "max_replicas": 10}, "qps_target"),
        ({"qps_target": 10, "max_replicas": 0}, "max_replicas"),
        ({"qps_target": 10, "max_replicas": 2.5}, "max_replicas"),
        ({"qps_target": 10, "max_replicas": 10, "fill_factor": -1}, "fill_factor"),
        ({"qps_target": 10, "max_replicas": 10, "hold_seconds": 0}, "hold_seconds"),
        ({"qps_target": 10, "max_replicas": 10, "ramp_seconds": -3}, "ramp_seconds"),
        ({"qps_target": 10, "max_replicas": 10, "rps_per_user": "x"}, "rps_per_user"),
    ],
)
def test_invalid_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        plan_load(**kwargs)
