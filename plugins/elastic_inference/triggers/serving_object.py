"""The wait both serving backends share: one serving object, its pods and their events, until a verdict.

A backend's trigger names its object (``ref``, the snapshot ``key``, the pods' label) and its verdict function
(``seldon_verdict``, ``kserve_verdict``: the object, its pods and pod events -> Verdict); the watches, the
unschedulable grace period and the progress line (pods ready x/y, those waiting for a node) are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from elastic_inference.k8s_objects import Json, ResourceRef, Verdict, pod_ready
from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger, Snapshot, WatchSpec

POD = ResourceRef("v1", "Pod")
EVENT = ResourceRef("v1", "Event")

ServingVerdict = Callable[..., Verdict]  # (obj, pods, events, *, now, unschedulable_grace_seconds) -> Verdict


class ServingObjectTrigger(KubernetesWatchTrigger):
    """Watches the serving object ``ref`` named ``name``, its pods (``pod_label=<name>``) and pod events.

    :param unschedulable_grace_seconds: fail when a pod stays Unschedulable this long (None: only on the
        autoscaler's NotTriggerScaleUp).
    """

    ref: ClassVar[ResourceRef]
    key: ClassVar[str]  # the object's collection in the snapshot
    pod_label: ClassVar[str]
    ready_word: ClassVar[str] = "Ready"  # the state awaited, for the progress lines
    recheck_seconds = 1.0  # the grace period is time-based: re-evaluate even without events

    def __init__(self, *, unschedulable_grace_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unschedulable_grace_seconds = unschedulable_grace_seconds

    @staticmethod
    def verdict(*args: Any, **kwargs: Any) -> Verdict:
        raise NotImplementedError

    def wanted_replicas(self, obj: Json) -> int:
        """How many pods the object asks for (0: unknown, the live pods count)."""
        return 0

    def extra_kwargs(self) -> dict[str, Any]:
        return {"unschedulable_grace_seconds": self.unschedulable_grace_seconds}

    def watches(self) -> list[WatchSpec]:
        return [
            WatchSpec(
                self.key,
                self.ref.collection_path(self.namespace),
                self.ref.kind,
                field_selector=f"metadata.name={self.name}",
            ),
            WatchSpec(
                "pods", POD.collection_path(self.namespace), "Pod", label_selector=f"{self.pod_label}={self.name}"
            ),
            WatchSpec(
                "events",
                EVENT.collection_path(self.namespace),
                "Event",
                field_selector="involvedObject.kind=Pod",
                field_selector_optional=True,
            ),
        ]

    def evaluate(self, snapshot: Snapshot, now: datetime) -> Verdict:
        return self.verdict(
            snapshot[self.key].get(f"{self.namespace}/{self.name}"),
            list(snapshot["pods"].values()),
            list(snapshot["events"].values()),
            now=now,
            unschedulable_grace_seconds=self.unschedulable_grace_seconds,
        )

    def waiting_for(self) -> str:
        return f"{self.ref.kind} {self.namespace}/{self.name} to be {self.ready_word}"

    def progress(self, snapshot: Snapshot, verdict: Verdict) -> str:
        """The verdict plus the pods: ready x/y, and those not yet scheduled (a node being added for them)."""
        obj = snapshot[self.key].get(f"{self.namespace}/{self.name}") or {}
        live = [p for p in snapshot["pods"].values() if not (p.get("metadata") or {}).get("deletionTimestamp")]
        ready = sum(1 for p in live if pod_ready(p))
        unscheduled = sum(1 for p in live if not (p.get("spec") or {}).get("nodeName"))
        line = f"{verdict.message}; pods ready {ready}/{max(self.wanted_replicas(obj), len(live))}"
        if unscheduled:
            line += f", {unscheduled} waiting for a node (the autoscaler adds one)"
        return line
