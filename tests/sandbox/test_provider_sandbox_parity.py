"""What the provider and the sandbox both hard-code, kept in step: the price table and the pay-as-you-go rule.

The provider's report estimates cost from ``elastic_inference.report.DEFAULT_PRICES`` and its scale verification
expects ``PoolPolicy.payg_nodes`` pay-as-you-go nodes; the sandbox's node pools buy from
``ack_sandbox.cs.catalogue`` and split spot / pay-as-you-go with ``ack_sandbox.cs.mix``. Neither package imports
the other (an import contract), so these tests are what fails when one side changes and the other does not.
"""

from __future__ import annotations

import pytest

from ack_sandbox.cs.catalogue import CATALOGUE
from ack_sandbox.cs.mix import NO_SPOT, MixPolicy, Placement, payg_target, plan_scale_out
from elastic_inference.report import DEFAULT_PRICES
from elastic_inference.verification import PoolPolicy

SPOT_STRATEGIES = (NO_SPOT, "SpotAsPriceGo", "SpotWithPriceLimit")
BASES = (0, 1, 2, 3)
PERCENTAGES = (0, 1, 10, 25, 30, 33, 50, 67, 70, 99, 100)


def test_the_report_prices_every_instance_type_the_sandbox_sells_at_the_sandbox_price() -> None:
    sandbox = {name: (t.price_payg, t.price_spot) for name, t in CATALOGUE.items()}
    assert sorted(DEFAULT_PRICES) == sorted(sandbox)
    for name, (payg, spot) in sandbox.items():
        assert DEFAULT_PRICES[name] == (pytest.approx(payg, abs=1e-9), pytest.approx(spot, abs=1e-9)), name


@pytest.mark.parametrize("strategy", SPOT_STRATEGIES)
def test_the_verification_expects_the_pay_as_you_go_count_the_sandbox_rule_gives(strategy: str) -> None:
    for base in BASES:
        for pct in PERCENTAGES:
            policy = PoolPolicy(strategy, base, pct)
            for total in range(31):
                want = total if strategy == NO_SPOT else payg_target(total, base, pct)
                assert policy.payg_nodes(total) == want, (strategy, base, pct, total)


def _grow(policy: MixPolicy, steps: list[int]) -> list[Placement]:
    pool: list[Placement] = []
    for count in steps:
        pool += plan_scale_out(policy, pool, count, lambda _type, _zone, _spot: True)
    return pool


@pytest.mark.parametrize("strategy", SPOT_STRATEGIES)
def test_a_sandbox_pool_grown_any_way_holds_what_the_verification_expects(strategy: str) -> None:
    """However the sandbox's autoscaler grows a pool (one node at a time, in threes, all at once), the pool it buys
    has exactly the pay-as-you-go count the provider's scale verification checks for."""
    for base in BASES:
        for pct in PERCENTAGES:
            mix = MixPolicy(
                instance_types=("ecs.gn6i-c4g1.xlarge",),
                vswitches=(("vsw-a", "cn-beijing-h"),),
                spot_strategy=strategy,
                on_demand_base_capacity=base,
                on_demand_percentage_above_base_capacity=pct,
            )
            expected = PoolPolicy.from_dict(
                {
                    "scaling_group": {
                        "spot_strategy": strategy,
                        "on_demand_base_capacity": base,
                        "on_demand_percentage_above_base_capacity": pct,
                    }
                }
            )
            assert expected is not None
            for steps in ([1] * 12, [3] * 4, [12]):
                pool = _grow(mix, steps)
                assert len(pool) == 12
                payg = sum(1 for p in pool if not p.is_spot)
                assert payg == expected.payg_nodes(len(pool)), (strategy, base, pct, steps)
