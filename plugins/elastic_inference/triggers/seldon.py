"""Wait for a SeldonDeployment to be Available; fail fast, naming pod and reason, when it cannot become so."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elastic_inference.k8s_objects import SELDON_API_VERSION, ResourceRef, Verdict, pod_ready, seldon_verdict
from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger, Snapshot, WatchSpec

SDEP = ResourceRef(SELDON_API_VERSION, "SeldonDeployment")
POD = ResourceRef("v1", "Pod")
EVENT = ResourceRef("v1", "Event")
SELDON_ID_LABEL = "seldon-deployment-id"


class SeldonDeploymentTrigger(KubernetesWatchTrigger):
    """Watches the SeldonDeployment, its pods (label ``seldon-deployment-id=<name>``) and pod events.

    Fails on ``state: Failed``, a pod in CrashLoopBackOff / ImagePullBackOff / ErrImagePull /
    CreateContainerConfigError (and kin), or a pod that is Unschedulable while the autoscaler reports
    NotTriggerScaleUp — or, with ``unschedulable_grace_seconds``, stays Unschedulable that long.
    """

    recheck_seconds = 1.0  # the grace period is time-based: re-evaluate even without events

    def __init__(self, *, unschedulable_grace_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unschedulable_grace_seconds = unschedulable_grace_seconds

    def extra_kwargs(self) -> dict[str, Any]:
        return {"unschedulable_grace_seconds": self.unschedulable_grace_seconds}

    def watches(self) -> list[WatchSpec]:
        return [
            WatchSpec(
                "sdep",
                SDEP.collection_path(self.namespace),
                "SeldonDeployment",
                field_selector=f"metadata.name={self.name}",
            ),
            WatchSpec(
                "pods", POD.collection_path(self.namespace), "Pod", label_selector=f"{SELDON_ID_LABEL}={self.name}"
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
        return seldon_verdict(
            snapshot["sdep"].get(f"{self.namespace}/{self.name}"),
            list(snapshot["pods"].values()),
            list(snapshot["events"].values()),
            now=now,
            unschedulable_grace_seconds=self.unschedulable_grace_seconds,
        )

    def waiting_for(self) -> str:
        return f"SeldonDeployment {self.namespace}/{self.name} to be Available"

    def progress(self, snapshot: Snapshot, verdict: Verdict) -> str:
        """The verdict plus the pods: ready x/y, and those not yet scheduled (a node being added for them)."""
        sdep = snapshot["sdep"].get(f"{self.namespace}/{self.name}") or {}
        wanted = sum(int(p.get("replicas") or 1) for p in (sdep.get("spec") or {}).get("predictors") or [])
        live = [p for p in snapshot["pods"].values() if not (p.get("metadata") or {}).get("deletionTimestamp")]
        ready = sum(1 for p in live if pod_ready(p))
        unscheduled = sum(1 for p in live if not (p.get("spec") or {}).get("nodeName"))
        line = f"{verdict.message}; pods ready {ready}/{max(wanted, len(live))}"
        if unscheduled:
            line += f", {unscheduled} waiting for a node (the autoscaler adds one)"
        return line
