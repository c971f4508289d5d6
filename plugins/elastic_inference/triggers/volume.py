"""Wait for an OSS-backed PersistentVolumeClaim to be Bound; fail fast when it is Lost or its PV is rejected."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elastic_inference.k8s_objects import ResourceRef, Verdict, pvc_verdict
from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger, Snapshot, WatchSpec

PVC = ResourceRef("v1", "PersistentVolumeClaim")
PV = ResourceRef("v1", "PersistentVolume")
EVENT = ResourceRef("v1", "Event")


class PvcBoundTrigger(KubernetesWatchTrigger):
    """Watches the claim, its PV (``pv_name``) and the claim's events.

    :param pv_name: the PersistentVolume the claim should bind to (its phase and claimRef are checked).
    """

    def __init__(self, *, pv_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pv_name = pv_name

    def extra_kwargs(self) -> dict[str, Any]:
        return {"pv_name": self.pv_name}

    def waiting_for(self) -> str:
        return f"PersistentVolumeClaim {self.namespace}/{self.name} to be Bound"

    def watches(self) -> list[WatchSpec]:
        specs = [
            WatchSpec(
                "pvc",
                PVC.collection_path(self.namespace),
                "PersistentVolumeClaim",
                field_selector=f"metadata.name={self.name}",
            ),
            WatchSpec(
                "events",
                EVENT.collection_path(self.namespace),
                "Event",
                field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={self.name}",
                field_selector_optional=True,
            ),
        ]
        if self.pv_name:
            specs.append(
                WatchSpec(
                    "pv", PV.collection_path(None), "PersistentVolume", field_selector=f"metadata.name={self.pv_name}"
                )
            )
        return specs

    def evaluate(self, snapshot: Snapshot, now: datetime) -> Verdict:
        pvc = snapshot["pvc"].get(f"{self.namespace}/{self.name}")
        pv = snapshot.get("pv", {}).get(f"/{self.pv_name}") if self.pv_name else None
        return pvc_verdict(pvc, pv, list(snapshot["events"].values()), pv_name=self.pv_name)
