"""Views of stored objects through another group/version.

events.k8s.io/v1 Events are the core/v1 Events seen through other field names
(pkg/apis/events/v1/conversion.go); CRD versions without a conversion webhook only change apiVersion
(``conversion.strategy: None``).
"""

from __future__ import annotations

from typing import Any

from ack_sandbox.k8s.kinds import ResourceType

_EVENT_FIELDS = [  # (events.k8s.io/v1 name, core/v1 name)
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("action", "action"),
    ("reason", "reason"),
    ("type", "type"),
    ("related", "related"),
]


def to_view(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    if rt.storage == ("", "events"):
        out: dict[str, Any] = {"kind": "Event", "apiVersion": rt.api_version, "metadata": obj.get("metadata", {})}
        for new, old in _EVENT_FIELDS:
            if obj.get(old) is not None:
                out[new] = obj[old]
        if "reportingController" not in out and (obj.get("source") or {}).get("component"):
            out["reportingController"] = obj["source"]["component"]
        return out
    if obj.get("apiVersion") != rt.api_version:
        return {**obj, "apiVersion": rt.api_version}
    return obj


def from_view(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    if rt.storage == ("", "events"):
        out: dict[str, Any] = {"kind": "Event", "apiVersion": "v1", "metadata": obj.get("metadata", {})}
        for new, old in _EVENT_FIELDS:
            if obj.get(new) is not None:
                out[old] = obj[new]
        if out.get("reportingComponent") and not out.get("source"):
            out["source"] = {"component": out["reportingComponent"]}
        return out
    return obj


def field_selector_to_storage(rt: ResourceType, text: str | None) -> str | None:
    if not text or rt.storage != ("", "events"):
        return text
    for new, old in _EVENT_FIELDS:
        text = text.replace(f"{new}.", f"{old}.") if new in ("regarding",) else text
    return text.replace("reportingController", "reportingComponent")
