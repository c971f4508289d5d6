"""Locust load test for an inference endpoint: real images, real predictions, a staged shape.

Run by ``elastic_inference.operators.load_test.LocustLoadTestOperator`` as a subprocess (locust
monkey-patches the process with gevent on import, so it never runs inside an Airflow worker). It reads:

* ``EI_PAYLOAD_FILE`` - JSON ``{"protocol": "seldon"|"tfserving", "path": "/api/v1.0/predictions",
  "signature_name": ..., "samples": [{"x": <one image: 28x28 or 784 floats>, "label": 3}, ...]}`` written by the operator;
* ``EI_LOAD_PLAN`` - JSON from ``elastic_inference.load_shape.LoadPlan.to_json()`` (stages, rps_per_user);
* ``EI_REQUEST_HEADERS`` - optional JSON object of extra request headers (e.g. ``Host`` for an ingress);
* ``EI_SUMMARY`` - where the master (or the single local process) writes the final numbers when it has
  quit: ``{"checked", "mismatches", "stats": {requests, failures, rps, percentiles...}, "errors": [...]}``.
  Written on ``events.quit``, after the last requests and the workers' final reports are counted; the CSV
  files are rewritten only once a second and can miss the last in-flight requests.

Requests and responses follow ``elastic_inference.protocol`` (Seldon or TF Serving REST; the one definition the
smoke test uses too - standard library only, so importing it here is cheap). HTTP errors and unparseable bodies
are locust failures; a well-formed prediction of the wrong class is only counted as a mismatch, because a
model's accuracy is not an availability problem.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task

try:
    from elastic_inference import protocol
except ImportError:  # the provider is not installed where locust runs: the operator says where its package is
    sys.path.append(os.environ.get("EI_PROVIDER_PATH", ""))
    from elastic_inference import protocol


def _load_json(env: str) -> dict[str, Any]:
    path = os.environ.get(env)
    if not path:
        raise RuntimeError(f"{env} is not set; the load-test operator sets it to a JSON file it writes")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


PAYLOAD = _load_json("EI_PAYLOAD_FILE")
PLAN = _load_json("EI_LOAD_PLAN")
HEADERS: dict[str, str] = json.loads(os.environ.get("EI_REQUEST_HEADERS") or "{}")
PROTOCOL: str = PAYLOAD["protocol"]
PATH: str = PAYLOAD["path"]
SAMPLES: list[dict[str, Any]] = PAYLOAD["samples"]
if not SAMPLES:
    raise RuntimeError(f"{os.environ['EI_PAYLOAD_FILE']} holds no samples")


# Pre-encode once: the load generator should spend its CPU on sending, not on json.dumps.
BODIES = [
    (json.dumps(protocol.request_body(PROTOCOL, [s["x"]], PAYLOAD.get("signature_name"))).encode(), s.get("label"))
    for s in SAMPLES
]


def predicted_class(body: dict[str, Any]) -> int:
    """The predicted class of the first (only) row of a Seldon or TF Serving response."""
    return protocol.predicted_class(PROTOCOL, body)


class _CheckStats:
    """Label checks: counted here, summed on the master in distributed mode."""

    def __init__(self) -> None:
        self.checked = 0
        self.mismatches = 0
        self.lock = threading.Lock()

    def add(self, mismatch: bool) -> None:
        with self.lock:
            self.checked += 1
            self.mismatches += int(mismatch)

    def take(self) -> tuple[int, int]:
        with self.lock:
            out = (self.checked, self.mismatches)
            self.checked = self.mismatches = 0
            return out


CHECKS = _CheckStats()
TOTALS = {"checked": 0, "mismatches": 0}


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    checked, mismatches = CHECKS.take()
    data["ei_checked"] = checked
    data["ei_mismatches"] = mismatches


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    TOTALS["checked"] += int(data.get("ei_checked", 0))
    TOTALS["mismatches"] += int(data.get("ei_mismatches", 0))


ENV: dict[str, Any] = {}


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    ENV["environment"] = environment


def _final_stats(environment: Any) -> dict[str, Any]:
    from locust.stats import StatsError

    total = environment.stats.total
    pct = total.get_response_time_percentile
    stats = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": total.total_rps,
        "failures_per_s": total.total_fail_per_sec,
        "avg_ms": total.avg_response_time,
        "min_ms": total.min_response_time,
        "max_ms": total.max_response_time,
        "p50_ms": pct(0.5) if total.num_requests else None,
        "p95_ms": pct(0.95) if total.num_requests else None,
        "p99_ms": pct(0.99) if total.num_requests else None,
    }
    errors = [
        {"method": e.method, "name": e.name, "error": StatsError.parse_error(e.error), "occurrences": e.occurrences}
        for e in environment.stats.errors.values()
    ]
    return {"stats": stats, "errors": sorted(errors, key=lambda e: -e["occurrences"])}


@events.quit.add_listener
def _on_quit(exit_code: int, **_: Any) -> None:
    from locust.runners import WorkerRunner

    out = os.environ.get("EI_SUMMARY")
    environment = ENV.get("environment")
    if not out or environment is None or isinstance(environment.runner, WorkerRunner):
        return
    checked, mismatches = CHECKS.take()  # local mode: everything is still here
    result = {
        "checked": TOTALS["checked"] + checked,
        "mismatches": TOTALS["mismatches"] + mismatches,
        "exit_code": exit_code,
        **_final_stats(environment),
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


class PredictionUser(FastHttpUser):
    """Posts one real image per request at a fixed rate per user."""

    wait_time = constant_throughput(float(PLAN["rps_per_user"]))

    def on_start(self) -> None:
        # Users start at different samples so concurrent requests carry different images.
        start = hash(id(self)) % len(BODIES)
        self._bodies = itertools.islice(itertools.cycle(BODIES), start, None)

    @task
    def predict(self) -> None:
        payload, label = next(self._bodies)
        headers = {"Content-Type": "application/json", **HEADERS}
        with self.client.post(
            PATH, data=payload, headers=headers, name=f"{PROTOCOL} predict", catch_response=True
        ) as resp:
            if resp.status_code == 0:  # no HTTP response at all: refused, reset, timed out
                error = getattr(resp, "error", None)
                resp.failure(f"connection error: {type(error).__name__}: {error}" if error else "connection error")
                return
            if resp.status_code != 200:
                text = " ".join((resp.text or "").split())[:160] if resp.content else ""
                resp.failure(f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}")
                return
            try:
                predicted = predicted_class(resp.json())
            except Exception as exc:  # noqa: BLE001 - any malformed body is a failed request
                resp.failure(f"bad response body: {type(exc).__name__}: {str(exc)[:120]}")
                return
            resp.success()
            if label is not None:
                CHECKS.add(predicted != int(label))


class StagedShape(LoadTestShape):
    """Ramp, hold, stop: the stages sized by ``elastic_inference.load_shape.plan_load``."""

    stages = PLAN["stages"]

    def tick(self) -> tuple[int, float] | None:
        now = self.get_run_time()
        for stage in self.stages:
            if now < stage["end"]:
                return int(stage["users"]), float(stage["spawn_rate"])
        return None
