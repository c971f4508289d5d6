"""Wait for a KServe InferenceService to be Ready; fail fast, naming pod and reason, when it cannot become so."""

from __future__ import annotations

from elastic_inference.k8s_objects import Json, ResourceRef
from elastic_inference.serving.kserve import ISVC_LABEL, KSERVE_API_VERSION, kserve_verdict
from elastic_inference.triggers.serving_object import ServingObjectTrigger

ISVC = ResourceRef(KSERVE_API_VERSION, "InferenceService")


class InferenceServiceTrigger(ServingObjectTrigger):
    """Watches the InferenceService, its predictor pods (``serving.kserve.io/inferenceservice=<name>``) and pod
    events; the verdict is :func:`elastic_inference.serving.kserve.kserve_verdict`."""

    ref = ISVC
    key = "isvc"
    pod_label = ISVC_LABEL
    verdict = staticmethod(kserve_verdict)

    def wanted_replicas(self, obj: Json) -> int:
        return int(((obj.get("spec") or {}).get("predictor") or {}).get("minReplicas") or 0)
