"""HTTP traffic of the rollout: the labelled, paired load of a canary step and the background prober.

Both are bounded twice (seconds and requests) and run in threads of the task itself: no process outlives its
task, so nothing keeps sending when a task is killed or fails. Requests are real predictions
(:mod:`elastic_inference.protocol`); a failure is no HTTP answer, a non-200, or a body that holds no prediction.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from elastic_inference.protocol import predicted_class, request_body
from elastic_inference.rollout.analysis import Sample, percentile, series

REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Labelled:
    """One pre-encoded request body and its label (None: unlabelled)."""

    body: bytes
    label: int | None


def labelled_bodies(protocol: str, images: Sequence[Any], labels: Sequence[Any] | None) -> list[Labelled]:
    out = []
    for i, image in enumerate(images):
        label = labels[i] if labels is not None and i < len(labels) else None
        out.append(
            Labelled(json.dumps(request_body(protocol, [image])).encode(), None if label is None else int(label))
        )
    if not out:
        raise ValueError("no samples to send")
    return out


class _Sender:
    """One thread-local requests.Session per worker thread; ``send`` returns a :class:`Sample`."""

    def __init__(self, url: str, protocol: str, headers: dict[str, str], timeout: float = REQUEST_TIMEOUT) -> None:
        self.url, self.protocol, self.timeout = url, protocol, timeout
        self.headers = {"Content-Type": "application/json", **headers}
        self._local = threading.local()

    def _session(self) -> Any:
        import requests

        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def send(self, item: Labelled, extra_headers: dict[str, str] | None = None) -> Sample:
        import requests

        headers = {**self.headers, **(extra_headers or {})}
        t0 = time.time()
        start = time.perf_counter()
        try:
            resp = self._session().post(self.url, data=item.body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            return Sample(t0, 1000 * (time.perf_counter() - start), False, None, f"{type(exc).__name__}")
        latency = 1000 * (time.perf_counter() - start)
        if resp.status_code != 200:
            return Sample(t0, latency, False, None, f"HTTP {resp.status_code}")
        try:
            predicted = predicted_class(self.protocol, resp.json())
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return Sample(t0, latency, False, None, f"bad body: {type(exc).__name__}")
        return Sample(t0, latency, True, None if item.label is None else predicted == item.label)


def paired_load(
    url: str,
    protocol: str,
    items: Sequence[Labelled],
    *,
    headers: dict[str, str],
    sides: dict[str, dict[str, str]],
    rps: float,
    seconds: float,
    max_requests: int = 20_000,
    workers: int = 16,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, list[Sample]]:
    """Send the same labelled requests to every side (its extra headers, e.g. the canary header) at ``rps`` each,
    interleaved, for ``seconds`` (at most ``max_requests`` in all); each side's samples."""
    sender = _Sender(url, protocol, headers)
    out: dict[str, list[Sample]] = {name: [] for name in sides}
    lock = threading.Lock()
    cycle = itertools.cycle(items)
    interval = 1.0 / rps
    sent = 0

    def one(name: str, item: Labelled) -> None:
        sample = sender.send(item, sides[name])
        with lock:
            out[name].append(sample)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="canary-load") as pool:
        start = time.monotonic()
        tick = 0
        while sent < max_requests and not should_stop():
            due = start + tick * interval
            if due >= start + seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            item = next(cycle)
            for name in sides:
                pool.submit(one, name, item)
                sent += 1
            tick += 1
    return out


@dataclass
class ProberResult:
    """The prober's line: requests, failures, p99, and the first failures (when and what)."""

    requests: int = 0
    failures: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    start: float | None = None
    end: float | None = None
    first_failures: list[dict[str, Any]] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        span = f" over {self.end - self.start:.0f} s" if self.start is not None and self.end is not None else ""
        p99 = "n/a" if self.p99_ms is None else f"{self.p99_ms:.0f} ms"
        return f"prober: {self.requests} requests{span}, {self.failures} failed, p99 {p99}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "start": self.start,
            "end": self.end,
            "first_failures": self.first_failures,
            "segments": self.segments,
            "series": self.series,
            "line": self.line(),
        }

    @classmethod
    def merge(cls, parts: Sequence[dict[str, Any]]) -> ProberResult:
        """The segments of one rollout (analysis, promotion or rollback) as one line; p99 is the worst segment's."""
        parts = [p for p in parts if p]
        out = cls()
        for p in parts:
            out.requests += int(p.get("requests") or 0)
            out.failures += int(p.get("failures") or 0)
            out.first_failures += list(p.get("first_failures") or [])[: max(0, 5 - len(out.first_failures))]
            out.segments += list(p.get("segments") or [])
            out.series += list(p.get("series") or [])
            if p.get("p99_ms") is not None:
                out.p99_ms = max(out.p99_ms or 0.0, float(p["p99_ms"]))
            if p.get("p50_ms") is not None:
                out.p50_ms = max(out.p50_ms or 0.0, float(p["p50_ms"]))
            if p.get("start") is not None:
                out.start = p["start"] if out.start is None else min(out.start, p["start"])
            if p.get("end") is not None:
                out.end = p["end"] if out.end is None else max(out.end, p["end"])
        return out


class Prober:
    """Steady predictions to the public endpoint from a background thread, from :meth:`start` to :meth:`stop`.

    Open loop (a slow answer does not delay the next request), at most ``max_seconds`` and ``max_requests``.
    """

    def __init__(
        self,
        url: str,
        protocol: str,
        items: Sequence[Labelled],
        *,
        headers: dict[str, str] | None = None,
        rps: float = 5.0,
        max_seconds: float = 1800.0,
        max_requests: int | None = None,
        segment: str = "",
    ) -> None:
        self.sender = _Sender(url, protocol, headers or {})
        self.items = list(items)
        self.rps = rps
        self.max_seconds = max_seconds
        self.max_requests = max_requests if max_requests is not None else int(rps * max_seconds) + 1
        self.segment = segment
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def start(self) -> Prober:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="rollout-prober", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        cycle = itertools.cycle(self.items)
        interval = 1.0 / self.rps
        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="prober") as pool:
            for i in range(self.max_requests):
                due = begin + i * interval
                if due - begin > self.max_seconds:
                    break
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                pool.submit(self._one, next(cycle))

    def _one(self, item: Labelled) -> None:
        sample = self.sender.send(item)
        with self._lock:
            self.samples.append(sample)

    def stop(self) -> ProberResult:
        """Stop sending, let in-flight requests finish, and summarise."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT + 5)
        return self.result()

    def result(self) -> ProberResult:
        with self._lock:
            samples = list(self.samples)
        lat = [s.latency_ms for s in samples if s.ok]
        failed = [s for s in samples if not s.ok]
        return ProberResult(
            requests=len(samples),
            failures=len(failed),
            p50_ms=percentile(lat, 0.5),
            p99_ms=percentile(lat, 0.99),
            start=self.started_at,
            end=time.time(),
            first_failures=[{"t": s.t, "error": s.error, "segment": self.segment} for s in failed[:5]],
            segments=[f"{self.segment}: {len(samples)} requests, {len(failed)} failed"] if self.segment else [],
            series=series(samples, self.started_at or time.time()),
        )
