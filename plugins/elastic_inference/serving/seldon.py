"""Seldon Core v1: a ``SeldonDeployment`` (tfserving-proxy + TensorFlow Serving) rendered from
``seldon_deployment.yaml.j2``.

What is Seldon-specific lives here: the names Seldon derives (Deployment/HPA ``<sdep>-<predictor>-0-<containers>``,
Service ``<sdep>-<predictor>`` on 8000, pods labelled ``seldon-deployment-id=<sdep>``; seldon-core
``operator/controllers/seldondeployment_controller.go``), when it is ready (``status.state: Available``) or failed
for good (``state: Failed``, pods that cannot start), and what teardown deletes (the SeldonDeployment: Seldon's
ownerReferences take the Deployment, Service and HPA with it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from elastic_inference import manifests
from elastic_inference.k8s_objects import (
    SELDON_API_VERSION,
    SELDON_PREDICT_PATH,
    Json,
    ResourceRef,
    Verdict,
    seldon_verdict,
)
from elastic_inference.serving.base import ServingNames, annotated_version, tfserving_status_endpoint

SELDON_HTTP_PORT = 8000  # the predictor Service's http port (Seldon executor default, ref. §4.2)
SELDON_ID_LABEL = "seldon-deployment-id"


class SeldonNamesError(ValueError):
    """A SeldonDeployment without predictors: Seldon derives nothing from it."""


def seldon_names(sdep: Json, service_port: int = SELDON_HTTP_PORT) -> dict[str, str]:
    """Names Seldon v1 derives from a SeldonDeployment (first predictor, first componentSpec), ref. §4.2."""
    name = sdep["metadata"]["name"]
    namespace = sdep["metadata"].get("namespace", "default")
    predictors = (sdep.get("spec") or {}).get("predictors") or []
    if not predictors:
        raise SeldonNamesError(f"SeldonDeployment {name}: spec.predictors is empty")
    pred = predictors[0]
    comp = (pred.get("componentSpecs") or [{}])[0]
    comp_name = (comp.get("metadata") or {}).get("name")
    containers = [c["name"] for c in ((comp.get("spec") or {}).get("containers") or [])]
    deployment = (
        f"{name}-{pred['name']}-0-{comp_name}"
        if comp_name
        else manifests.seldon_deployment_name(name, pred["name"], containers)
    )
    service = (pred.get("annotations") or {}).get("seldon.io/svc-name") or manifests.seldon_predictor_service(
        name, pred["name"]
    )
    return {
        "deployment": deployment,
        "hpa": deployment,
        "service": service,
        "route": manifests.sls_ingress_route(namespace, service, service_port),
    }


class SeldonBackend:
    """The Seldon Core v1 adapter (see the module docstring)."""

    name: ClassVar[str] = "seldon"
    ref: ClassVar[ResourceRef] = ResourceRef(SELDON_API_VERSION, "SeldonDeployment")
    template: ClassVar[str] = "seldon_deployment.yaml.j2"
    service_port: ClassVar[int] = SELDON_HTTP_PORT
    protocol: ClassVar[str] = "seldon"
    predict_path: ClassVar[str] = SELDON_PREDICT_PATH

    def names(self, obj: Json) -> ServingNames:
        derived = seldon_names(obj, self.service_port)
        return ServingNames(
            deployment=derived["deployment"],
            hpa=derived["hpa"],
            service=derived["service"],
            service_port=self.service_port,
            route=derived["route"],
            pod_selector=f"{SELDON_ID_LABEL}={obj['metadata']['name']}",
        )

    def predictor_service(self, name: str, predictor: str = "predictor") -> str:
        """The Service of a SeldonDeployment not rendered yet (for the HPA's route label)."""
        return manifests.seldon_predictor_service(name, predictor)

    def verdict(
        self,
        obj: Json | None,
        pods: list[Json],
        events: list[Json] | None = None,
        *,
        now: datetime | None = None,
        unschedulable_grace_seconds: float | None = None,
    ) -> Verdict:
        return seldon_verdict(obj, pods, events, now=now, unschedulable_grace_seconds=unschedulable_grace_seconds)

    def ready_trigger(self, **kwargs: Any) -> Any:
        from elastic_inference.triggers.seldon import SeldonDeploymentTrigger

        return SeldonDeploymentTrigger(**kwargs)

    def deployed_version(self, obj: Json) -> int | None:
        return annotated_version(obj)

    def is_ready(self, obj: Json) -> bool:
        return (obj.get("status") or {}).get("state") == "Available"

    def model_status_endpoint(self, pod: Json) -> tuple[str, int] | None:
        return tfserving_status_endpoint(pod)

    def teardown_objects(self, namespace: str, name: str) -> list[dict[str, str]]:
        return [{"apiVersion": SELDON_API_VERSION, "kind": "SeldonDeployment", "namespace": namespace, "name": name}]
