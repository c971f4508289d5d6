"""Which instances a scale-out creates: pay-as-you-go vs spot, instance type and zone. Pure logic.

Follows the ESS scaling-group semantics the node pool's ``scaling_group`` exposes (cs20151215 and
ess20220222 model docstrings, ESS "cost optimization policy" doc):

- the first ``on_demand_base_capacity`` instances are pay-as-you-go;
- above the base, ``on_demand_percentage_above_base_capacity`` % are pay-as-you-go, the rest spot.
  ESS does not document the rounding for small groups; the sandbox's explicit rule is
  ``payg_total = base + ceil(pct/100 * (total - base))`` over the *whole* pool after the scale-out, so
  the pool converges on the ratio however it grows;
- ``spot_strategy == NoSpot`` means every instance is pay-as-you-go;
- COST_OPTIMIZED tries instance types cheapest-per-vCPU first (spot price for spot) and spreads over
  the zones of the vSwitches; PRIORITY uses the vSwitch order and the listed type order; BALANCE spreads
  evenly over zones with the listed type order;
- when spot has no stock (or the price limit is below the spot price) and ``compensate_with_on_demand``
  is true, pay-as-you-go is created instead; otherwise the scale-out fails (``NoStockError``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ack_sandbox.cs.catalogue import lookup

NO_SPOT = "NoSpot"


@dataclass(frozen=True)
class MixPolicy:
    instance_types: tuple[str, ...]
    vswitches: tuple[tuple[str, str], ...]  # (vswitch_id, zone_id) in request order
    spot_strategy: str = NO_SPOT  # NoSpot | SpotAsPriceGo | SpotWithPriceLimit
    on_demand_base_capacity: int = 0
    on_demand_percentage_above_base_capacity: int = 100
    compensate_with_on_demand: bool = False
    multi_az_policy: str = "PRIORITY"  # PRIORITY | COST_OPTIMIZED | BALANCE
    spot_price_limit: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    instance_type: str
    vswitch_id: str
    zone_id: str
    spot_strategy: str  # NoSpot for pay-as-you-go

    @property
    def is_spot(self) -> bool:
        return self.spot_strategy != NO_SPOT


class NoStockError(Exception):
    """No instance type in any zone can supply what the scale-out needs."""

    def __init__(self, message: str, code: str = "NoStock") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# (instance_type, zone_id, spot) -> has stock
StockFn = Callable[[str, str, bool], bool]


def payg_target(total: int, base: int, pct: int) -> int:
    """Pay-as-you-go instances a pool of ``total`` instances should have."""
    if total <= base:
        return total
    return base + math.ceil(pct * (total - base) / 100)


def _type_order(policy: MixPolicy, spot: bool) -> list[str]:
    types = list(policy.instance_types)
    if policy.multi_az_policy == "COST_OPTIMIZED":

        def price(name: str) -> float:
            t = lookup(name)
            if t is None:
                return math.inf
            return (t.price_spot if spot else t.price_payg) / t.vcpu

        types.sort(key=price)
    return types


def _zone_order(policy: MixPolicy, per_zone: Counter[str]) -> list[tuple[str, str]]:
    if policy.multi_az_policy == "PRIORITY":
        return list(policy.vswitches)
    # COST_OPTIMIZED and BALANCE spread: the zone holding the fewest of the pool's instances first.
    order = {vsw: i for i, (vsw, _) in enumerate(policy.vswitches)}
    return sorted(policy.vswitches, key=lambda v: (per_zone[v[1]], order[v[0]]))


def _spot_allowed(policy: MixPolicy, type_name: str) -> bool:
    if policy.spot_strategy != "SpotWithPriceLimit":
        return True
    limit = policy.spot_price_limit.get(type_name)
    t = lookup(type_name)
    return limit is None or t is None or t.price_spot <= limit


def _pick(policy: MixPolicy, spot: bool, per_zone: Counter[str], stock: StockFn) -> Placement | None:
    for vsw, zone in _zone_order(policy, per_zone):
        for type_name in _type_order(policy, spot):
            if spot and not _spot_allowed(policy, type_name):
                continue
            if stock(type_name, zone, spot):
                return Placement(type_name, vsw, zone, policy.spot_strategy if spot else NO_SPOT)
    return None


def plan_scale_out(policy: MixPolicy, existing: Sequence[Placement], count: int, stock: StockFn) -> list[Placement]:
    """The ``count`` placements to add to a pool that already holds ``existing``."""
    if count <= 0:
        return []
    if not policy.vswitches or not policy.instance_types:
        raise NoStockError("the node pool has no vswitch or no instance type", "InvalidParameter")
    total = len(existing) + count
    have_payg = sum(1 for p in existing if not p.is_spot)
    if policy.spot_strategy == NO_SPOT:
        payg_needed = count
    else:
        target = payg_target(total, policy.on_demand_base_capacity, policy.on_demand_percentage_above_base_capacity)
        payg_needed = min(count, max(0, target - have_payg))
    wanted = [False] * payg_needed + [True] * (count - payg_needed)
    per_zone: Counter[str] = Counter(p.zone_id for p in existing)
    plan: list[Placement] = []
    for spot in wanted:
        placement = _pick(policy, spot, per_zone, stock)
        if placement is None and spot and policy.compensate_with_on_demand:
            placement = _pick(policy, False, per_zone, stock)
        if placement is None:
            kind = "spot" if spot else "pay-as-you-go"
            raise NoStockError(
                f"The requested {kind} resource ({', '.join(policy.instance_types)}) is sold out in zones "
                f"{', '.join(z for _, z in policy.vswitches)}"
                + ("" if not spot else "; set scaling_group.compensate_with_on_demand to fall back to pay-as-you-go")
                + ".",
                "RecommendEmpty.InstanceTypeNoStock",
            )
        per_zone[placement.zone_id] += 1
        plan.append(placement)
    return plan
