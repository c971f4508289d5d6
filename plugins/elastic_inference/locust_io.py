"""Files exchanged with the locust subprocess: the payload it sends and the CSV stats it leaves.

No locust import here (locust monkey-patches with gevent on import); the formats are locust 2.x's
``--csv`` outputs (``locust/stats.py``: ``StatsCSVFileWriter``): ``<prefix>_stats.csv`` (one row per
request name plus ``Aggregated``), ``<prefix>_stats_history.csv`` (one row a second; with
``--csv-full-history`` also per request name) and ``<prefix>_failures.csv`` (Method, Name, Error,
Occurrences).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from elastic_inference.protocol import PROTOCOLS, request_path

__all__ = [
    "PROTOCOLS",
    "load_samples",
    "parse_failures",
    "parse_history",
    "parse_stats",
    "read_summary",
    "request_path",
    "write_payload",
]
SAMPLE_KEYS = (("x", "y"), ("x_test", "y_test"), ("images", "labels"), ("X", "y"), ("data", "labels"))


# -- payload --------------------------------------------------------------------------------------------
def _pairs_from_arrays(x: Any, y: Any, source: str) -> tuple[Any, Any]:
    import numpy as np

    xs = np.asarray(x, dtype="float64")
    if xs.ndim < 2 or xs.shape[0] == 0:
        raise ValueError(f"{source}: expected images shaped (n, ...) with n > 0, got shape {xs.shape}")
    ys = None
    if y is not None:
        ys = np.asarray(y)
        ys = ys.argmax(axis=1) if ys.ndim == 2 and ys.shape[1] > 1 else ys.reshape(-1)  # one-hot -> ids
    if ys is not None and ys.shape[0] != xs.shape[0]:
        raise ValueError(f"{source}: {xs.shape[0]} images but {ys.shape[0]} labels")
    if ys is not None and ys.dtype.kind == "f":
        ys = ys.astype("int64")
    return xs, ys


def load_samples(samples_path: str | Path, *, limit: int = 200, flatten: bool = False) -> list[dict[str, Any]]:
    """Read real test images and labels: ``.npz`` (keys x/y, x_test/y_test, images/labels) or ``.json``
    (``{"x": [...], "y": [...]}`` or ``[{"x": ..., "label": ...}]``). One-hot labels are turned into ids.

    Pixels are sent as stored (shape kept; ``flatten`` makes each image one row): the samples must already be
    preprocessed the way the model expects."""
    import numpy as np

    path = Path(samples_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"samples_path {str(path)!r} does not exist; pass the .npz/.json of test images "
            f"and labels the training step writes"
        )
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            for xk, yk in SAMPLE_KEYS:
                if xk in data.files:
                    x, y = data[xk], (data[yk] if yk in data.files else None)
                    break
            else:
                raise ValueError(
                    f"{path}: no image array; expected one of the keys "
                    f"{', '.join(k for k, _ in SAMPLE_KEYS)} (found {', '.join(data.files)})"
                )
    elif path.suffix == ".json":
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, list):
            x = [r["x"] for r in raw]
            y = [r.get("label", r.get("y")) for r in raw] if all("label" in r or "y" in r for r in raw) else None
        else:
            xk = next((k for k, _ in SAMPLE_KEYS if k in raw), None)
            if xk is None:
                raise ValueError(f"{path}: expected a key among {', '.join(k for k, _ in SAMPLE_KEYS)}")
            x, y = raw[xk], raw.get(dict(SAMPLE_KEYS)[xk])
    else:
        raise ValueError(f"samples_path {str(path)!r} must end in .npz or .json")
    xs, ys = _pairs_from_arrays(x, y, str(path))
    n = min(int(limit), xs.shape[0])
    out = []
    for i in range(n):
        row = xs[i].reshape(-1) if flatten else xs[i]
        out.append({"x": row.tolist(), "label": None if ys is None else int(ys[i])})
    return out


def write_payload(
    path: Path,
    *,
    protocol: str,
    samples: list[dict[str, Any]],
    model_name: str | None = None,
    request_path_override: str | None = None,
    signature_name: str | None = "serving_default",
) -> Path:
    """The JSON the locustfile reads (``EI_PAYLOAD_FILE``)."""
    if not samples:
        raise ValueError("no samples to send: the samples file is empty")
    doc = {
        "protocol": protocol,
        "path": request_path(protocol, model_name, request_path_override),
        "model_name": model_name,
        "signature_name": signature_name if protocol == "tfserving" else None,
        "samples": samples,
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# -- results --------------------------------------------------------------------------------------------
def _num(value: str | None) -> float | None:
    if value is None or value in ("", "N/A"):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def parse_stats(prefix: str | Path) -> dict[str, Any]:
    """The ``Aggregated`` row of ``<prefix>_stats.csv``: requests, failures, error rate, RPS, latency (ms)."""
    rows = _rows(Path(f"{prefix}_stats.csv"))
    agg = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if agg is None:
        raise FileNotFoundError(f"{prefix}_stats.csv has no Aggregated row (did locust start?)")
    requests = int(_num(agg["Request Count"]) or 0)
    failures = int(_num(agg["Failure Count"]) or 0)
    return {
        "requests": requests,
        "failures": failures,
        "error_rate": (failures / requests) if requests else 0.0,
        "rps": _num(agg["Requests/s"]) or 0.0,
        "failures_per_s": _num(agg["Failures/s"]) or 0.0,
        "avg_ms": _num(agg["Average Response Time"]),
        "min_ms": _num(agg["Min Response Time"]),
        "max_ms": _num(agg["Max Response Time"]),
        "p50_ms": _num(agg["50%"]),
        "p95_ms": _num(agg["95%"]),
        "p99_ms": _num(agg["99%"]),
    }


def parse_history(prefix: str | Path) -> list[dict[str, Any]]:
    """Aggregated rows of ``<prefix>_stats_history.csv``, one a second: ``t`` is the Unix time, the
    percentiles are locust's current (sliding-window) values, the totals are cumulative."""
    out = []
    for r in _rows(Path(f"{prefix}_stats_history.csv")):
        if r.get("Name") != "Aggregated":
            continue
        out.append(
            {
                "t": _num(r["Timestamp"]),
                "users": int(_num(r["User Count"]) or 0),
                "rps": _num(r["Requests/s"]) or 0.0,
                "failures_per_s": _num(r["Failures/s"]) or 0.0,
                "p50_ms": _num(r["50%"]),
                "p95_ms": _num(r["95%"]),
                "p99_ms": _num(r["99%"]),
                "total_requests": int(_num(r["Total Request Count"]) or 0),
                "total_failures": int(_num(r["Total Failure Count"]) or 0),
            }
        )
    return out


_WRAPPED = re.compile(r"^\w+\((['\"])(?P<msg>.*)\1\)$", re.S)


def parse_failures(prefix: str | Path) -> list[dict[str, Any]]:
    """``<prefix>_failures.csv`` rows, most frequent first; ``CatchResponseError('HTTP 503: ...')`` becomes
    ``HTTP 503: ...``."""
    out = []
    for r in _rows(Path(f"{prefix}_failures.csv")):
        out.append(
            {
                "method": r.get("Method", ""),
                "name": r.get("Name", ""),
                "error": _clean_error(r.get("Error", "")),
                "occurrences": int(_num(r.get("Occurrences")) or 0),
            }
        )
    return sorted(out, key=lambda f: -f["occurrences"])


def _clean_error(error: str) -> str:
    m = _WRAPPED.match(error.strip())
    return m.group("msg") if m else error


def read_summary(path: Path) -> dict[str, Any] | None:
    """The final numbers the locustfile writes on quit (``EI_SUMMARY``), or None when it wrote nothing.

    ``stats`` has the keys of :func:`parse_stats`; ``errors`` those of :func:`parse_failures`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    stats = dict(data.get("stats") or {})
    if stats:
        stats["requests"] = int(stats.get("requests") or 0)
        stats["failures"] = int(stats.get("failures") or 0)
        stats["error_rate"] = stats["failures"] / stats["requests"] if stats["requests"] else 0.0
    errors = [{**e, "error": _clean_error(str(e.get("error", "")))} for e in data.get("errors") or []]
    return {
        "checked": int(data.get("checked", 0)),
        "mismatches": int(data.get("mismatches", 0)),
        "exit_code": data.get("exit_code"),
        "stats": stats or None,
        "errors": sorted(errors, key=lambda e: -int(e.get("occurrences") or 0)),
    }
