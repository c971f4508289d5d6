"""The run view's data: a timeline (live or final) reduced to the few series a person watches, and the run's
summary. Pure logic, no HTTP, so it is unit-tested apart from the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elastic_inference.timeline import CHARGE_PAYG, CHARGE_SPOT, replicas_of

LIVE_NAME = "timeline.live.json"  # written by the load test while it runs
FINAL_NAME = "timeline.json"
SUMMARY_NAME = "verdict.json"  # written by the scale verification with the report (locust has summary.json)
# What the app serves from a run's directory: the reports and their data, nothing else (no payloads, no logs).
SERVED = ("report.html", "locust.html", "rollout.html", FINAL_NAME, LIVE_NAME, SUMMARY_NAME)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not there yet, or being replaced
    return doc if isinstance(doc, dict) else None


def timeline_series(timeline: dict[str, Any]) -> dict[str, Any]:
    """Seconds since the load started -> RPS sent, the HPA metric, desired/current/ready replicas, pool nodes by
    charge type, p95 latency."""
    load = timeline.get("load") or {}
    samples = timeline.get("samples") or []
    history = (timeline.get("locust") or {}).get("history") or []
    t0 = float(load.get("start") or (samples[0]["t"] if samples else 0.0))

    def nodes(s: dict[str, Any], charge: str) -> int:
        return sum(1 for n in s.get("nodes") or [] if n.get("in_pool") and n.get("charge") == charge)

    meta = timeline.get("meta") or {}
    return {
        "t0": t0,
        "metric": ((meta.get("metric") or {}).get("name")) or "metric",
        "max_replicas": (meta.get("hpa") or {}).get("max_replicas"),
        "load": [[round(h["t"] - t0, 1), h.get("rps"), h.get("p95_ms")] for h in history if h.get("t") is not None],
        "cluster": [
            [
                round(s["t"] - t0, 1),
                s.get("qps"),
                (s.get("hpa") or {}).get("desired"),
                replicas_of(s),
                (s.get("deployment") or {}).get("ready"),
                nodes(s, CHARGE_PAYG),
                nodes(s, CHARGE_SPOT),
            ]
            for s in samples
        ],
        "stop": round(float(load["stop"]) - t0, 1) if load.get("stop") else None,
    }


def run_state(run_dir: Path) -> dict[str, Any]:
    """What the view shows of one run: ``phase`` (none, load, done), the series, the summary when verified."""
    final = _read(run_dir / FINAL_NAME)
    timeline = final or _read(run_dir / LIVE_NAME)
    summary = _read(run_dir / SUMMARY_NAME)
    phase = "none" if timeline is None else ("done" if final else "load")
    return {
        "phase": phase,
        "series": timeline_series(timeline) if timeline else None,
        "summary": summary,
        "reports": [name for name in ("report.html", "locust.html", "rollout.html") if (run_dir / name).is_file()],
    }
