"""KServe: an ``InferenceService`` (``serving.kserve.io/v1beta1``) in RawDeployment mode, rendered from
``inference_service.yaml.j2`` with the HPA on ``sls_ingress_qps`` beside it.

What is KServe-specific lives here (kserve/kserve ``pkg/constants/constants.go``, ``pkg/apis/serving/v1beta1``,
``pkg/controller/v1beta1/inferenceservice/reconcilers``): the names KServe derives (Deployment, Service and - with
``autoscalerClass: hpa`` - HPA ``<isvc>-predictor``, the Service on port 80, pods labelled
``serving.kserve.io/inferenceservice=<isvc>``), when it is ready (condition ``Ready=True`` for the current
generation) or failed for good (``modelStatus.transitionStatus`` ``InvalidSpec``/``BlockedByFailedLoad`` with
``lastFailureInfo``; ``PredictorReady=False`` with ``ProgressDeadlineExceeded`` once no pod is still on its way;
pods that cannot start), the TF Serving predict path (``/v1/models/<model>:predict``, KServe's v1 protocol), and
what teardown deletes: the InferenceService (its ownerReferences take the Deployment and Service with it) and the
project's own HPA, which ``serving.kserve.io/autoscalerClass: external`` leaves to us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from elastic_inference import manifests
from elastic_inference.k8s_objects import (
    Json,
    ResourceRef,
    Verdict,
    describe,
    pod_diagnosis,
    pod_failure,
    pod_ready,
    pod_unschedulable,
)
from elastic_inference.serving.base import ServingNames, annotated_version, tfserving_status_endpoint

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
KSERVE_HTTP_PORT = 80  # constants.CommonDefaultHttpPort: the predictor Service's port
ISVC_LABEL = "serving.kserve.io/inferenceservice"
PREDICT_PATH = "/v1/models/{model_name}:predict"  # the v1 (TF Serving) protocol of kserve-tensorflow-serving
MODEL_LABEL = "elastic-inference/model"
# modelStatus.transitionStatus values that no waiting changes (v1beta1 ``TransitionStatus``).
TERMINAL_TRANSITIONS = ("InvalidSpec", "BlockedByFailedLoad")


def predictor_name(isvc: str) -> str:
    """constants.PredictorServiceName: the predictor's Deployment, Service and HPA."""
    return f"{isvc}-predictor"


def _condition(obj: Json, ctype: str) -> Json:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def _current(obj: Json) -> bool:
    """The status describes the current spec (KServe writes ``status.observedGeneration``)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)


def missing_claim(pod: Json) -> str | None:
    """A pod the scheduler holds back because its claim does not exist: the claim never appears by waiting."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            message = c.get("message") or ""
            if "persistentvolumeclaim" in message and "not found" in message:
                return f"Unschedulable: {message}"
    return None


def kserve_verdict(
    isvc: Json | None,
    pods: list[Json],
    events: list[Json] | None = None,
    *,
    now: datetime | None = None,
    unschedulable_grace_seconds: float | None = None,
) -> Verdict:
    """Ready → success. Fails on a live predictor pod that crash-loops, cannot pull its image, has a bad config,
    waits for a claim that does not exist or cannot be scheduled with no pool able to grow; on
    ``modelStatus.transitionStatus`` InvalidSpec/BlockedByFailedLoad; and on ``PredictorReady=False``
    (ProgressDeadlineExceeded) when no pod is still starting. Pods are checked first, as for Seldon, so a rollout
    whose new pods crash is reported while the old ones keep it Ready."""
    if isvc is None:
        return Verdict("pending", "InferenceService not found yet")
    what = describe(isvc)
    status = isvc.get("status") or {}
    meta = isvc["metadata"]
    details: dict[str, Any] = {"isvc": meta["name"], "isvc_uid": meta.get("uid", "")}
    live = sorted(
        (p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")), key=lambda p: p["metadata"]["name"]
    )
    for pod in live:
        name = pod["metadata"]["name"]
        why = pod_failure(pod) or missing_claim(pod)
        why = why or pod_unschedulable(pod, events or [], now, unschedulable_grace_seconds)
        if why is not None:
            return Verdict("error", f"{what}: pod {name} {why}", {**details, "pod": name})
    model = status.get("modelStatus") or {}
    if _current(isvc) and model.get("transitionStatus") in TERMINAL_TRANSITIONS:
        failure = model.get("lastFailureInfo") or {}
        return Verdict(
            "error",
            f"{what} modelStatus {model['transitionStatus']}: {failure.get('reason', '')}: {failure.get('message', '')}",
            {**details, "reason": failure.get("reason", "")},
        )
    ready, predictor = _condition(isvc, "Ready"), _condition(isvc, "PredictorReady")
    details["state"] = "Ready" if ready.get("status") == "True" else "NotReady"
    if _current(isvc) and ready.get("status") == "True":
        details.update(url=status.get("url", ""), address=(status.get("address") or {}).get("url", ""))
        return Verdict("success", f"{what} is Ready ({status.get('url', '')})", details)
    if _current(isvc) and predictor.get("status") == "False" and predictor.get("reason") == "ProgressDeadlineExceeded":
        starting = [p["metadata"]["name"] for p in live if not pod_ready(p)]
        causes = [f"pod {p['metadata']['name']} {d}" for p in live if (d := pod_diagnosis(p))]
        if starting:  # none failing (checked above): a node, an image or a model still on its way - the wait's
            # own deadline decides, as for Seldon's state Failed on a passed progress deadline
            return Verdict(
                "pending",
                f"{what} PredictorReady False (ProgressDeadlineExceeded) while {len(starting)} pod(s) still start"
                f"{' (' + '; '.join(causes[:3]) + ')' if causes else ''}",
                details,
            )
        return Verdict(
            "error",
            f"{what} PredictorReady False: {predictor.get('reason')}: {predictor.get('message', '')}"
            f"{' (' + '; '.join(causes[:3]) + ')' if causes else ''}",
            details,
        )
    reason = ready.get("reason") or predictor.get("reason") or "waiting for the predictor"
    return Verdict("pending", f"{what} Ready {ready.get('status', 'Unknown')}: {reason}", details)


class KServeBackend:
    """The KServe (RawDeployment) adapter (see the module docstring)."""

    name: ClassVar[str] = "kserve"
    ref: ClassVar[ResourceRef] = ResourceRef(KSERVE_API_VERSION, "InferenceService")
    template: ClassVar[str] = "inference_service.yaml.j2"
    service_port: ClassVar[int] = KSERVE_HTTP_PORT
    protocol: ClassVar[str] = "tfserving"
    predict_path: ClassVar[str] = PREDICT_PATH

    def predictor_service(self, name: str, predictor: str = "predictor") -> str:
        return predictor_name(name)

    def names(self, obj: Json) -> ServingNames:
        meta = obj["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "default")
        service = predictor_name(name)
        return ServingNames(
            deployment=service,
            hpa=service,
            service=service,
            service_port=self.service_port,
            route=manifests.sls_ingress_route(namespace, service, self.service_port),
            pod_selector=f"{ISVC_LABEL}={name}",
        )

    def verdict(
        self,
        obj: Json | None,
        pods: list[Json],
        events: list[Json] | None = None,
        *,
        now: datetime | None = None,
        unschedulable_grace_seconds: float | None = None,
    ) -> Verdict:
        return kserve_verdict(obj, pods, events, now=now, unschedulable_grace_seconds=unschedulable_grace_seconds)

    def ready_trigger(self, **kwargs: Any) -> Any:
        from elastic_inference.triggers.kserve import InferenceServiceTrigger

        return InferenceServiceTrigger(**kwargs)

    def deployed_version(self, obj: Json) -> int | None:
        return annotated_version(obj)

    def is_ready(self, obj: Json) -> bool:
        return _current(obj) and _condition(obj, "Ready").get("status") == "True"

    def model_status_endpoint(self, pod: Json) -> tuple[str, int] | None:
        return tfserving_status_endpoint(pod)

    def teardown_objects(self, namespace: str, name: str) -> list[dict[str, str]]:
        return [
            {"apiVersion": KSERVE_API_VERSION, "kind": "InferenceService", "namespace": namespace, "name": name},
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "namespace": namespace,
                "name": predictor_name(name),
            },
        ]
