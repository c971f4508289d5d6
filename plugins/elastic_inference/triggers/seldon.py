"""Wait for a SeldonDeployment to be Available; fail fast, naming pod and reason, when it cannot become so."""

from __future__ import annotations

from elastic_inference.k8s_objects import SELDON_API_VERSION, Json, ResourceRef, seldon_verdict
from elastic_inference.triggers.serving_object import ServingObjectTrigger

SDEP = ResourceRef(SELDON_API_VERSION, "SeldonDeployment")
SELDON_ID_LABEL = "seldon-deployment-id"


class SeldonDeploymentTrigger(ServingObjectTrigger):
    """Watches the SeldonDeployment, its pods (label ``seldon-deployment-id=<name>``) and pod events.

    Fails on ``state: Failed``, a pod in CrashLoopBackOff / ImagePullBackOff / ErrImagePull /
    CreateContainerConfigError (and kin), or a pod that is Unschedulable while the autoscaler reports
    NotTriggerScaleUp — or, with ``unschedulable_grace_seconds``, stays Unschedulable that long.
    """

    ref = SDEP
    key = "sdep"
    pod_label = SELDON_ID_LABEL
    ready_word = "Available"
    verdict = staticmethod(seldon_verdict)

    def wanted_replicas(self, obj: Json) -> int:
        return sum(int(p.get("replicas") or 1) for p in (obj.get("spec") or {}).get("predictors") or [])
