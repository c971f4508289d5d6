"""The spot / pay-as-you-go / zone placement rule of the CS stand-in (pure logic, no server)."""

from __future__ import annotations

import pytest

from ack_sandbox.cs.mix import MixPolicy, NoStockError, Placement, payg_target, plan_scale_out

VSW = (("vsw-a", "cn-beijing-h"), ("vsw-b", "cn-beijing-i"))
GPU = "ecs.gn6i-c4g1.xlarge"


def seed_policy(**kw: object) -> MixPolicy:
    base = dict(
        instance_types=(GPU,),
        vswitches=VSW,
        spot_strategy="SpotAsPriceGo",
        on_demand_base_capacity=0,
        on_demand_percentage_above_base_capacity=30,
        compensate_with_on_demand=True,
        multi_az_policy="COST_OPTIMIZED",
    )
    base.update(kw)
    return MixPolicy(**base)  # type: ignore[arg-type]


def all_stock(*_: object) -> bool:
    return True


@pytest.mark.parametrize(
    ("total", "base", "pct", "expected"),
    [
        (0, 0, 30, 0),
        (1, 0, 30, 1),
        (3, 0, 30, 1),
        (4, 0, 30, 2),
        (10, 0, 30, 3),
        (11, 0, 30, 4),
        (2, 2, 30, 2),
        (5, 2, 0, 2),
        (5, 2, 100, 5),
        (1, 3, 30, 1),
    ],
)
def test_payg_target_rounds_up_above_base(total: int, base: int, pct: int, expected: int) -> None:
    assert payg_target(total, base, pct) == expected


def test_seed_policy_ten_instances_is_three_payg_seven_spot_spread_over_zones() -> None:
    plan = plan_scale_out(seed_policy(), [], 10, all_stock)
    assert sum(not p.is_spot for p in plan) == 3
    assert {p.spot_strategy for p in plan if p.is_spot} == {"SpotAsPriceGo"}
    zones = [p.zone_id for p in plan]
    assert zones.count("cn-beijing-h") == 5 and zones.count("cn-beijing-i") == 5


def test_growth_converges_on_the_ratio_whatever_the_steps() -> None:
    existing: list[Placement] = []
    for step in (1, 1, 2, 3, 3):
        existing += plan_scale_out(seed_policy(), existing, step, all_stock)
    assert len(existing) == 10
    assert sum(not p.is_spot for p in existing) == payg_target(10, 0, 30)


def test_no_spot_strategy_is_all_pay_as_you_go_in_priority_zone_order() -> None:
    plan = plan_scale_out(seed_policy(spot_strategy="NoSpot", multi_az_policy="PRIORITY"), [], 4, all_stock)
    assert all(not p.is_spot for p in plan)
    assert {p.zone_id for p in plan} == {"cn-beijing-h"}


def test_spot_sold_out_is_compensated_with_pay_as_you_go() -> None:
    plan = plan_scale_out(seed_policy(), [], 5, lambda t, z, spot: not spot)
    assert len(plan) == 5 and all(not p.is_spot for p in plan)


def test_spot_sold_out_without_compensation_fails_naming_the_fix() -> None:
    with pytest.raises(NoStockError) as err:
        plan_scale_out(seed_policy(compensate_with_on_demand=False), [], 5, lambda t, z, spot: not spot)
    assert "compensate_with_on_demand" in err.value.message


def test_cost_optimized_prefers_the_cheapest_type_per_vcpu() -> None:
    policy = seed_policy(instance_types=("ecs.gn6v-c8g1.2xlarge", "ecs.gn6i-c8g1.2xlarge"), spot_strategy="NoSpot")
    plan = plan_scale_out(policy, [], 2, all_stock)
    assert {p.instance_type for p in plan} == {"ecs.gn6i-c8g1.2xlarge"}
    # ... and falls back to the next type when the cheapest has no stock.
    plan = plan_scale_out(policy, [], 1, lambda t, z, s: t != "ecs.gn6i-c8g1.2xlarge")
    assert plan[0].instance_type == "ecs.gn6v-c8g1.2xlarge"


def test_spot_price_limit_below_spot_price_means_no_spot() -> None:
    policy = seed_policy(
        spot_strategy="SpotWithPriceLimit", spot_price_limit={GPU: 0.01}, on_demand_percentage_above_base_capacity=0
    )
    plan = plan_scale_out(policy, [], 2, all_stock)
    assert all(not p.is_spot for p in plan)  # compensated
    generous = seed_policy(
        spot_strategy="SpotWithPriceLimit", spot_price_limit={GPU: 10.0}, on_demand_percentage_above_base_capacity=0
    )
    assert all(p.spot_strategy == "SpotWithPriceLimit" for p in plan_scale_out(generous, [], 2, all_stock))
