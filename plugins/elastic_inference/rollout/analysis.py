"""Canary analysis: the two sides' figures over one window and the verdict against the rollout's bounds.

Each step sends the same labelled requests to the canary and to the stable version over the same seconds
(pinned with the canary Ingress's header), so a busy machine slows both alike and the comparison holds. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from elastic_inference.specs.rollout import RolloutSpec

MIN_REQUESTS = 10  # fewer answered requests than this on a side: the step proves nothing


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class Sample:
    """One request: when it started, how long it took, whether it failed, and the label check."""

    t: float
    latency_ms: float
    ok: bool
    correct: bool | None = None  # None: no label, or no prediction to check
    error: str = ""


@dataclass(frozen=True)
class SideStats:
    """One side's figures over a window."""

    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    checked: int
    agreeing: int
    rps: float
    top_errors: list[tuple[str, int]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.checked if self.checked else None

    @classmethod
    def of(cls, samples: Iterable[Sample], seconds: float | None = None) -> SideStats:
        items = list(samples)
        lat = [s.latency_ms for s in items if s.ok]
        errors: dict[str, int] = {}
        for s in items:
            if not s.ok:
                errors[s.error or "failed"] = errors.get(s.error or "failed", 0) + 1
        span = seconds
        if span is None and items:
            span = max(s.t for s in items) - min(s.t for s in items)
        checked = [s for s in items if s.ok and s.correct is not None]
        return cls(
            requests=len(items),
            failures=sum(not s.ok for s in items),
            p50_ms=percentile(lat, 0.50),
            p95_ms=percentile(lat, 0.95),
            p99_ms=percentile(lat, 0.99),
            checked=len(checked),
            agreeing=sum(bool(s.correct) for s in checked),
            rps=len(items) / span if span else 0.0,
            top_errors=sorted(errors.items(), key=lambda kv: -kv[1])[:3],
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate, "agreement": self.agreement}


@dataclass(frozen=True)
class Bound:
    """One comparison: the metric, the canary's and the stable side's values, the limit, and the outcome."""

    metric: str
    canary: float | None
    stable: float | None
    limit: float | None
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepVerdict:
    """The verdict of one canary step (weight in percent)."""

    weight: int
    start: float
    end: float
    canary: SideStats
    stable: SideStats
    bounds: list[Bound]
    share: dict[str, Any] = field(default_factory=dict)  # observed traffic share of the public stream

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.bounds)

    def failures(self) -> list[Bound]:
        return [b for b in self.bounds if not b.passed]

    def failure_message(self) -> str:
        return "; ".join(b.message for b in self.failures())

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "start": self.start,
            "end": self.end,
            "passed": self.passed,
            "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict(),
            "bounds": [b.to_dict() for b in self.bounds],
            "share": self.share,
        }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"


def judge(canary: SideStats, stable: SideStats, spec: RolloutSpec) -> list[Bound]:
    """The canary against the bounds, each bound naming the metric, both values and the limit."""
    bounds: list[Bound] = []
    if canary.requests - canary.failures < MIN_REQUESTS and canary.failures == 0:
        bounds.append(
            Bound(
                "requests",
                canary.requests,
                stable.requests,
                MIN_REQUESTS,
                False,
                f"requests: only {canary.requests} canary requests were answered (stable {stable.requests}), "
                f"fewer than the {MIN_REQUESTS} a verdict needs: raise step_seconds or analysis_rps",
            )
        )
        return bounds
    ok = canary.error_rate <= spec.max_error_rate
    bounds.append(
        Bound(
            "error_rate",
            canary.error_rate,
            stable.error_rate,
            spec.max_error_rate,
            ok,
            f"error_rate: canary {_pct(canary.error_rate)} ({canary.failures} of {canary.requests}) vs stable "
            f"{_pct(stable.error_rate)}; bound {_pct(spec.max_error_rate)}"
            + (f"; errors: {canary.top_errors[0][0]}" if canary.top_errors and not ok else ""),
        )
    )
    if spec.max_p95_ratio is not None:
        if canary.p95_ms is None or stable.p95_ms is None:
            limit = None
            ok = canary.p95_ms is not None or stable.p95_ms is None
        else:
            limit = max(stable.p95_ms * spec.max_p95_ratio, stable.p95_ms + spec.max_p95_increase_ms)
            ok = canary.p95_ms <= limit
        bounds.append(
            Bound(
                "p95_ms",
                canary.p95_ms,
                stable.p95_ms,
                limit,
                ok,
                f"p95: canary {_ms(canary.p95_ms)} vs stable {_ms(stable.p95_ms)}; bound {_ms(limit)} "
                f"(the larger of {spec.max_p95_ratio:g} x stable and stable + {spec.max_p95_increase_ms:g} ms)",
            )
        )
    agreement = canary.agreement
    ok = agreement is not None and agreement >= spec.min_agreement
    bounds.append(
        Bound(
            "agreement",
            agreement,
            stable.agreement,
            spec.min_agreement,
            ok,
            f"agreement: canary {_pct(agreement)} of {canary.checked} predictions agree with the labels vs stable "
            f"{_pct(stable.agreement)} of {stable.checked}; bound {_pct(spec.min_agreement)}",
        )
    )
    return bounds


def step_verdict(
    weight: int,
    start: float,
    end: float,
    canary: Sequence[Sample],
    stable: Sequence[Sample],
    spec: RolloutSpec,
    share: dict[str, Any] | None = None,
) -> StepVerdict:
    seconds = max(end - start, 1e-9)
    c, s = SideStats.of(canary, seconds), SideStats.of(stable, seconds)
    return StepVerdict(weight, start, end, c, s, judge(c, s, spec), share or {})


def series(samples: Sequence[Sample], start: float, bucket: float = 1.0) -> list[dict[str, Any]]:
    """Per-``bucket`` seconds: RPS, errors and p95 of the requests that started then (for the report)."""
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int((s.t - start) // bucket), []).append(s)
    out = []
    for i in sorted(buckets):
        items = buckets[i]
        lat = [x.latency_ms for x in items if x.ok]
        out.append(
            {
                "t": start + i * bucket,
                "rps": len(items) / bucket,
                "errors": sum(not x.ok for x in items),
                "p95_ms": percentile(lat, 0.95),
            }
        )
    return out
