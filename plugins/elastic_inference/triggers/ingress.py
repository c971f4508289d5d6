"""Wait for an Ingress to get an address in ``status.loadBalancer.ingress``."""

from __future__ import annotations

from datetime import datetime

from elastic_inference.k8s_objects import ResourceRef, Verdict, ingress_verdict
from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger, Snapshot, WatchSpec

INGRESS = ResourceRef("networking.k8s.io/v1", "Ingress")


class IngressAddressTrigger(KubernetesWatchTrigger):
    def waiting_for(self) -> str:
        return f"Ingress {self.namespace}/{self.name} to get an address"

    def watches(self) -> list[WatchSpec]:
        return [
            WatchSpec(
                "ingress",
                INGRESS.collection_path(self.namespace),
                "Ingress",
                field_selector=f"metadata.name={self.name}",
            )
        ]

    def evaluate(self, snapshot: Snapshot, now: datetime) -> Verdict:
        return ingress_verdict(snapshot["ingress"].get(f"{self.namespace}/{self.name}"))
