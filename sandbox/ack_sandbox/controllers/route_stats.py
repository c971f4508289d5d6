"""Per-route request counters of the ingress proxy: what the nginx-ingress access log holds in SLS.

A route is ingress-nginx's ``$proxy_upstream_name``: ``<namespace>-<service>-<port>`` (port number, or the
port name when the backend names its port). A request a canary backend answered keeps the main location's
``$proxy_upstream_name`` (that is what the SLS query of the metrics adapter filters on) and names the canary's
upstream in ``$proxy_alternative_upstream_name``; both are kept: ``window(route, ...)`` by
``$proxy_upstream_name``, ``window(route, ..., served=True)`` by the upstream that answered. Each request is recorded at its sandbox time (cloud seconds)
in a ring of per-second buckets (count, sum of request times, a bounded sample of request times for the
percentiles). The external metrics API reads windows of these buckets the way the SLS SQL query reads
the log store. Shared in-process through ``ctx.services["route_stats"]``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RETENTION_SECONDS = 900  # cloud seconds of history kept per route
SAMPLES_PER_BUCKET = 256  # request-time samples kept per second (reservoir)


def route_name(namespace: str, service: str, port: int | str) -> str:
    """ingress-nginx upstreamName: ``%s-%s-%d`` for a port number, ``%s-%s-%s`` for a port name."""
    return f"{namespace}-{service}-{port}"


@dataclass
class Bucket:
    second: int
    count: int = 0
    errors: int = 0
    time_sum: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, request_time: float, status: int, rng: random.Random) -> None:
        self.count += 1
        if status >= 500:
            self.errors += 1
        self.time_sum += request_time
        if len(self.samples) < SAMPLES_PER_BUCKET:
            self.samples.append(request_time)
        else:  # reservoir sampling keeps an unbiased sample of the second's request times
            j = rng.randrange(self.count)
            if j < SAMPLES_PER_BUCKET:
                self.samples[j] = request_time


@dataclass
class WindowStats:
    count: int
    errors: int
    time_sum: float
    samples: list[float]

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the sampled request times (SLS approx_percentile stand-in)."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    @property
    def mean(self) -> float | None:
        return self.time_sum / self.count if self.count else None


class RouteStats:
    """All routes' buckets. ``record`` is called by the proxy; ``window`` by the metrics API."""

    def __init__(self, retention_seconds: int = RETENTION_SECONDS) -> None:
        self.retention = retention_seconds
        self._routes: dict[str, deque[Bucket]] = {}
        self._served: dict[str, deque[Bucket]] = {}  # by the upstream that answered (canary or main)
        self._totals: dict[str, int] = {}
        self._rng = random.Random(0)

    def record(self, route: str, at: float, request_time: float, status: int, alternative: str = "") -> None:
        """One request finished at sandbox time ``at`` (cloud s), taking ``request_time`` real seconds;
        ``alternative``: the canary upstream that answered it, if one did."""
        self._add(self._routes, route, at, request_time, status)
        self._add(self._served, alternative or route, at, request_time, status)
        self._totals[route] = self._totals.get(route, 0) + 1

    def _add(self, rings: dict[str, deque[Bucket]], route: str, at: float, request_time: float, status: int) -> None:
        ring = rings.setdefault(route, deque())
        second = math.floor(at)
        if not ring or ring[-1].second < second:
            ring.append(Bucket(second))
            while ring and ring[0].second < second - self.retention:
                ring.popleft()
            bucket = ring[-1]
        else:
            bucket = next((b for b in reversed(ring) if b.second == second), None)
            if bucket is None:  # out of order by more than a bucket: attribute it to the newest one
                bucket = ring[-1]
        bucket.add(request_time, status, self._rng)

    def window(self, route: str | None, start: float, end: float, served: bool = False) -> WindowStats:
        """Requests with ``start <= time < end`` (cloud seconds) for ``route`` (None: every route), by
        ``$proxy_upstream_name`` or (``served``) by the upstream that answered."""
        source = self._served if served else self._routes
        rings = [source.get(route, deque())] if route is not None else list(source.values())
        count = errors = 0
        time_sum = 0.0
        samples: list[float] = []
        # Buckets hold whole seconds [s, s + 1): a window of N seconds reads N buckets (floor at both ends), not
        # N + 1 (floor/ceil), which over-counted a 15 s SLS window by 1/15 on average.
        lo, hi = math.floor(start), math.floor(end)
        for ring in rings:
            for b in ring:
                if lo <= b.second < hi:
                    count += b.count
                    errors += b.errors
                    time_sum += b.time_sum
                    samples.extend(b.samples)
        return WindowStats(count, errors, time_sum, samples)

    def totals(self) -> dict[str, int]:
        """Requests per route since the sandbox started (the proxy's admin view)."""
        return dict(self._totals)

    def snapshot(self) -> dict[str, Any]:
        return {
            route: {"total": self._totals.get(route, 0), "buckets": [[b.second, b.count] for b in ring]}
            for route, ring in self._routes.items()
        }


def stats_of(ctx: Any) -> RouteStats:
    """The process-wide RouteStats, created on first use."""
    stats = ctx.services.get("route_stats")
    if stats is None:
        stats = ctx.services["route_stats"] = RouteStats()
    return stats
