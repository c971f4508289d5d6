"""Staged load shape for the locust load test: ramp, hold, stop. Pure logic, no locust import.

The offered load is *controlled*, not open-ended: every locust user runs with
``constant_throughput(rps_per_user)``, so ``users x rps_per_user`` is the request rate the test offers
(as long as latency stays under ``1 / rps_per_user`` seconds). The target total rate is sized from the
HPA settings so the endpoint is pushed to scale out but not beyond what the pool may hold:

    target_rps = qps_target x max_replicas x fill_factor

With ``fill_factor`` 0.5 and the seed's target 10 / maxReplicas 10 that is 50 RPS, for which the HPA
formula predicts ``ceil(50 / 10) = 5`` replicas: a visible scale-out that stays under the cap.

The plan is written to JSON and read by ``include/locust/locustfile.py``'s ``LoadTestShape``; stage
``end`` values are seconds since the test started, the way locust's shape examples count them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

PHASE_RAMP = "ramp"
PHASE_HOLD = "hold"


@dataclass(frozen=True)
class Stage:
    """One step of the shape: run ``users`` users until ``end`` seconds after the start."""

    end: float
    users: int
    spawn_rate: float
    phase: str


@dataclass(frozen=True)
class LoadPlan:
    """A sized load shape plus the numbers it was sized from."""

    target_rps: float
    rps_per_user: float
    stages: tuple[Stage, ...]
    sizing: dict[str, Any] = field(default_factory=dict)

    @property
    def users(self) -> int:
        return max(s.users for s in self.stages)

    @property
    def run_time(self) -> float:
        """Seconds from the start until the shape returns ``None`` (locust stops all users)."""
        return self.stages[-1].end

    @property
    def hold_start(self) -> float:
        """Seconds from the start when the plateau begins (the end of the last ramp stage)."""
        ramps = [s.end for s in self.stages if s.phase == PHASE_RAMP]
        return max(ramps) if ramps else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "target_rps": self.target_rps,
            "rps_per_user": self.rps_per_user,
            "users": self.users,
            "run_time": self.run_time,
            "hold_start": self.hold_start,
            "stages": [asdict(s) for s in self.stages],
            "sizing": dict(self.sizing),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadPlan:
        return cls(
            target_rps=float(data["target_rps"]),
            rps_per_user=float(data["rps_per_user"]),
            stages=tuple(Stage(**s) for s in data["stages"]),
            sizing=dict(data.get("sizing") or {}),
        )


def _positive(name: str, value: float, hint: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; {hint}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; {hint}")
    return number


def plan_load(
    *,
    qps_target: float,
    max_replicas: int,
    fill_factor: float = 0.5,
    ramp_seconds: float = 30.0,
    hold_seconds: float = 60.0,
    ramp_steps: int = 3,
    rps_per_user: float = 2.0,
    target_rps: float | None = None,
) -> LoadPlan:
    """Size a ramp/hold shape.

    :param qps_target: the HPA's per-replica target for ``sls_ingress_qps`` (``targetAverageValue``).
    :param max_replicas: the HPA's ``maxReplicas``.
    :param fill_factor: the fraction of ``qps_target x max_replicas`` to offer (0 < f; above 1 overloads on
        purpose, which the verification then reports as capped by ``maxReplicas``).
    :param ramp_seconds: time to reach the plateau, split into ``ramp_steps`` equal steps.
    :param hold_seconds: plateau length; the HPA needs a few sync periods plus the metric window here.
    :param rps_per_user: the request rate each locust user offers (``constant_throughput``).
    :param target_rps: offer exactly this total rate instead of sizing it from the HPA numbers.
    """
    hint_hpa = "pass the HPA's targetAverageValue and maxReplicas"
    qps = _positive("qps_target", qps_target, hint_hpa)
    if int(max_replicas) != max_replicas or int(max_replicas) < 1:
        raise ValueError(f"max_replicas must be an integer >= 1, got {max_replicas!r}; {hint_hpa}")
    fill = _positive("fill_factor", fill_factor, "0.5 offers half of what maxReplicas replicas absorb")
    per_user = _positive("rps_per_user", rps_per_user, "each locust user offers this many requests/s")
    hold = _positive("hold_seconds", hold_seconds, "the plateau must last a few HPA sync periods")
    ramp = float(ramp_seconds)
    if not math.isfinite(ramp) or ramp < 0:
        raise ValueError(f"ramp_seconds must be >= 0, got {ramp_seconds!r}; 0 jumps straight to the plateau")
    steps = int(ramp_steps)
    if steps < 1:
        raise ValueError(f"ramp_steps must be >= 1, got {ramp_steps!r}")

    if target_rps is None:
        total = qps * int(max_replicas) * fill
    else:
        total = _positive("target_rps", target_rps, "or leave it unset to size from the HPA numbers")
    users = max(1, math.ceil(round(total / per_user, 9)))

    stages: list[Stage] = []
    if ramp > 0:
        step_len = ramp / steps
        previous = 0
        for i in range(1, steps + 1):
            step_users = max(1, math.ceil(round(users * i / steps, 9)))
            if step_users == previous and stages:
                # Fewer users than steps: stretch the previous step instead of repeating it.
                last = stages.pop()
                stages.append(
                    Stage(end=round(step_len * i, 3), users=last.users, spawn_rate=last.spawn_rate, phase=PHASE_RAMP)
                )
                continue
            # Spawn each step's new users within one second so the step is a step, not a slope.
            stages.append(
                Stage(
                    end=round(step_len * i, 3),
                    users=step_users,
                    spawn_rate=float(max(1, step_users - previous)),
                    phase=PHASE_RAMP,
                )
            )
            previous = step_users
    stages.append(Stage(end=round(ramp + hold, 3), users=users, spawn_rate=float(users), phase=PHASE_HOLD))

    return LoadPlan(
        target_rps=round(users * per_user, 6),
        rps_per_user=per_user,
        stages=tuple(stages),
        sizing={
            "qps_target": qps,
            "max_replicas": int(max_replicas),
            "fill_factor": fill,
            "requested_rps": round(total, 6),
        },
    )
