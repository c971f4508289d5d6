"""The serving-backend interface and the parts every TF Serving-based backend shares.

A backend adapter is pure: it renders nothing itself and does no I/O; it names things (template, kind, Service,
pods, HPA), judges what the cluster reports (ready / failed), and builds the trigger that waits for it. Reading
the served version goes to the model server's own status API (TF Serving ``GET /v1/models/<name>``,
``tensorflow_serving/g3doc/api_rest.md`` "Model status API") on each pod, the one source that says which version a
replica really answers with.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from elastic_inference.k8s_objects import Json, ResourceRef, Verdict

if TYPE_CHECKING:
    from datetime import datetime

    from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger

# name -> "module:Class" of the adapter (imported lazily: a DAG file parses without any of them).
BACKENDS: dict[str, str] = {
    "seldon": "elastic_inference.serving.seldon:SeldonBackend",
    "kserve": "elastic_inference.serving.kserve:KServeBackend",
}
MODEL_VERSION_ANNOTATION = "elastic-inference/model-version"


@dataclass(frozen=True)
class ServingNames:
    """What a deployed serving object is made of, as the rest of the provider needs it."""

    deployment: str  # the apps/v1 Deployment whose pods serve
    hpa: str  # the HorizontalPodAutoscaler scaling it
    service: str  # the Service an Ingress routes to
    service_port: int  # ... on this port
    route: str  # ingress-nginx's upstream name <ns>-<service>-<port> (the sls.ingress.route label)
    pod_selector: str  # label selector of the serving pods

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServedVersion:
    """What one replica's model server reports: its pod, the AVAILABLE versions, and an error if unreadable."""

    pod: str
    versions: tuple[int, ...]
    error: str = ""

    def serves_only(self, version: int) -> bool:
        return not self.error and self.versions == (version,)

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "versions": list(self.versions), "error": self.error}


class ServingBackend(Protocol):
    """One serving stack (Seldon v1, KServe, ...). Implementations are stateless; see :mod:`serving.seldon`."""

    name: ClassVar[str]
    ref: ClassVar[ResourceRef]  # the primary object's apiVersion/kind
    template: ClassVar[str]  # the manifest template (include/manifests) holding exactly one primary object
    service_port: ClassVar[int]  # the port of the Service an Ingress routes to
    protocol: ClassVar[str]  # the prediction protocol clients speak (elastic_inference.protocol.PROTOCOLS)
    predict_path: ClassVar[str]  # the predict request's path behind the Ingress

    def predictor_service(self, name: str, predictor: str = "predictor") -> str:
        """The Service the backend will create for object ``name`` (before it exists: the HPA's route label)."""
        ...

    def names(self, obj: Json) -> ServingNames:
        """Deployment, HPA, Service/port, route and pod selector of a (rendered or stored) primary object."""
        ...

    def verdict(
        self,
        obj: Json | None,
        pods: list[Json],
        events: list[Json] | None = None,
        *,
        now: datetime | None = None,
        unschedulable_grace_seconds: float | None = None,
    ) -> Verdict:
        """Ready → success; a terminal state of the object or its pods → error naming the cause."""
        ...

    def ready_trigger(self, **kwargs: Any) -> KubernetesWatchTrigger:
        """The deferrable wait for :meth:`verdict` (kwargs: access, namespace, name, deadline, ...)."""
        ...

    def deployed_version(self, obj: Json) -> int | None:
        """The model version an object was deployed with (None: not recorded)."""
        ...

    def is_ready(self, obj: Json) -> bool:
        """Whether the stored object reports itself ready (used to decide whether a version already serves)."""
        ...

    def model_status_endpoint(self, pod: Json) -> tuple[str, int] | None:
        """(pod IP, REST port) of the pod's model server status API, or None when the pod has none yet."""
        ...

    def teardown_objects(self, namespace: str, name: str) -> list[dict[str, str]]:
        """What deleting this deployment means (the backend's controller removes what it created)."""
        ...


def get_backend(name: str = "seldon") -> ServingBackend:
    """The adapter registered as ``name``; ValueError naming the known ones otherwise."""
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"unknown serving backend {name!r}: use one of {sorted(BACKENDS)}")
    module, _, cls = target.partition(":")
    backend: ServingBackend = getattr(importlib.import_module(module), cls)()
    return backend


# --- TF Serving, the model server behind every backend here ------------------------------------------------------


def tfserving_rest_port(container: Json) -> int | None:
    """The REST port TF Serving listens on, from its ``--rest_api_port=`` flag (the last one wins)."""
    port = None
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        if isinstance(arg, str) and arg.startswith("--rest_api_port="):
            try:
                port = int(arg.split("=", 1)[1])
            except ValueError:
                port = None
    return port


def annotated_version(obj: Json) -> int | None:
    """The model version a serving object was deployed with (its ``MODEL_VERSION_ANNOTATION``), None if unset."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)
    try:
        return int(str(raw).strip('"'))
    except (TypeError, ValueError):
        return None


def pod_ip(pod: Json) -> str | None:
    return (pod.get("status") or {}).get("podIP") or None


def tfserving_status_endpoint(pod: Json) -> tuple[str, int] | None:
    """(pod IP, REST port) of the pod's TF Serving container, for its model status API; None before it has both."""
    ip = pod_ip(pod)
    if not ip:
        return None
    for container in (pod.get("spec") or {}).get("containers") or []:
        if (port := tfserving_rest_port(container)) is not None:
            return ip, port
    return None


def available_versions(status: Json) -> tuple[int, ...]:
    """The versions a TF Serving model status answer reports AVAILABLE, ascending.

    ``{"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": {...}}, ...]}``
    (``GetModelStatusResponse`` as JSON: int64 ``version`` as a string).
    """
    out = []
    for entry in status.get("model_version_status") or []:
        if entry.get("state") == "AVAILABLE":
            try:
                out.append(int(entry.get("version")))
            except (TypeError, ValueError):
                continue
    return tuple(sorted(set(out)))
