"""Wait for a KServe InferenceService to be Ready; fail fast, naming pod and reason, when it cannot become so."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elastic_inference.k8s_objects import ResourceRef, Verdict
from elastic_inference.serving.kserve import ISVC_LABEL, KSERVE_API_VERSION, kserve_verdict
from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger, Snapshot, WatchSpec

ISVC = ResourceRef(KSERVE_API_VERSION, "InferenceService")
POD = ResourceRef("v1", "Pod")
EVENT = ResourceRef("v1", "Event")


class InferenceServiceTrigger(KubernetesWatchTrigger):
    """Watches the InferenceService, its predictor pods (``serving.kserve.io/inferenceservice=<name>``) and pod
    events; the verdict is :func:`elastic_inference.serving.kserve.kserve_verdict`."""

    recheck_seconds = 1.0  # the unschedulable grace period is time-based

    def __init__(self, *, unschedulable_grace_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unschedulable_grace_seconds = unschedulable_grace_seconds

    def extra_kwargs(self) -> dict[str, Any]:
        return {"unschedulable_grace_seconds": self.unschedulable_grace_seconds}

    def watches(self) -> list[WatchSpec]:
        return [
            WatchSpec(
                "isvc",
                ISVC.collection_path(self.namespace),
                "InferenceService",
                field_selector=f"metadata.name={self.name}",
            ),
            WatchSpec("pods", POD.collection_path(self.namespace), "Pod", label_selector=f"{ISVC_LABEL}={self.name}"),
            WatchSpec(
                "events",
                EVENT.collection_path(self.namespace),
                "Event",
                field_selector="involvedObject.kind=Pod",
                field_selector_optional=True,
            ),
        ]

    def evaluate(self, snapshot: Snapshot, now: datetime) -> Verdict:
        return kserve_verdict(
            snapshot["isvc"].get(f"{self.namespace}/{self.name}"),
            list(snapshot["pods"].values()),
            list(snapshot["events"].values()),
            now=now,
            unschedulable_grace_seconds=self.unschedulable_grace_seconds,
        )
