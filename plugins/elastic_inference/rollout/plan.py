"""What a rollout does, decided from what serves now (pure): the first deployment's path, a direct rolling update,
or a canary beside the stable version; the canary's names; the ingress-nginx canary annotations.

ingress-nginx canary rules (``docs/user-guide/nginx-configuration/annotations.md#canary``): a second Ingress for
the same host and path with ``nginx.ingress.kubernetes.io/canary: "true"`` takes ``canary-weight`` percent of the
traffic; ``canary-by-header: <name>`` overrides the weight per request (value ``always`` → canary, ``never`` →
never), checked before the weight; a canary Ingress without a main Ingress for its host/path is ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from elastic_inference.k8s_objects import Json
from elastic_inference.serving.base import ServingBackend

CANARY_SUFFIX = "canary"
CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
HEADER_ANNOTATION = "nginx.ingress.kubernetes.io/canary-by-header"
CANARY_HEADER = "X-Elastic-Inference-Canary"
ALWAYS, NEVER = "always", "never"

Mode = Literal["direct", "canary"]


def canary_name(name: str) -> str:
    """The canary's serving object and Ingress: ``<name>-canary`` (a DNS label when ``name`` leaves room)."""
    return f"{name[: 63 - len(CANARY_SUFFIX) - 1]}-{CANARY_SUFFIX}"


def canary_annotations(weight: int, header: str = CANARY_HEADER) -> dict[str, str]:
    """The canary Ingress's annotations at ``weight`` percent (annotation values are strings)."""
    return {CANARY_ANNOTATION: "true", WEIGHT_ANNOTATION: str(int(weight)), HEADER_ANNOTATION: header}


@dataclass(frozen=True)
class Decision:
    """How this run deploys: ``direct`` (today's path: create or patch the serving object) or ``canary``."""

    mode: Mode
    reason: str
    stable_version: int | None = None
    target_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(strategy: str, existing: Json | None, backend: ServingBackend, target_version: int) -> Decision:
    """``existing`` is the stable serving object as stored (None: nothing deployed under that name)."""
    if existing is None:
        return Decision("direct", "nothing serves yet: first deployment", None, target_version)
    current = backend.deployed_version(existing)
    if current == target_version:
        return Decision("direct", f"version {current} already serves: unchanged", current, target_version)
    if strategy == "direct":
        return Decision(
            "direct", f"strategy direct: rolling update {current} → {target_version}", current, target_version
        )
    if not backend.is_ready(existing):
        return Decision(
            "direct",
            f"the stable deployment (version {current}) is not ready: nothing to compare a canary with; "
            f"rolling update to {target_version}",
            current,
            target_version,
        )
    return Decision(
        "canary", f"version {current} serves: canary of {target_version} beside it", current, target_version
    )


def stable_snapshot(obj: Json, backend: ServingBackend) -> dict[str, Any]:
    """What must be unchanged after a rollback: uid, generation, the deployed version."""
    meta = obj.get("metadata") or {}
    return {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "generation": meta.get("generation"),
        "resource_version": meta.get("resourceVersion"),
        "version": backend.deployed_version(obj),
    }


def snapshot_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """How the stable object moved between two snapshots (uid, generation, version); empty: it did not."""
    return [
        f"{key} {before.get(key)!r} → {after.get(key)!r}"
        for key in ("uid", "generation", "version")
        if before.get(key) != after.get(key)
    ]
