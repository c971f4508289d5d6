"""How the model is served: the SeldonDeployment's name and place, its HPA, its GPU and where its pods land."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from elastic_inference.serving.base import BACKENDS, get_backend
from elastic_inference.specs._base import Spec, spec_field
from elastic_inference.specs.model import DNS_LABEL, DNS_LABEL_HINT

HPA_METRIC_FORMATS = ("v2beta1", "v2")
SERVING_BACKENDS = tuple(BACKENDS)  # seldon (the seed's), kserve
# Shared with the load test, which sizes its load from them.
DEFAULT_QPS_TARGET = 10
DEFAULT_MAX_REPLICAS = 10
QPS_TARGET_SCHEMA: dict[str, Any] = {"exclusiveMinimum": 0, "maximum": 10_000}
LABEL_VALUE_MAX = 63  # Kubernetes label values (and DNS-1123 labels)
PREDICTOR = "predictor"  # the SeldonDeployment's predictor name (operators.seldon default)
SERVICE_PORT = 8000  # the predictor Service's http port (the sls.ingress.route label's last part)
MAX_REPLICAS_SCHEMA: dict[str, Any] = {"minimum": 1, "maximum": 100}
_HOST = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"


@dataclasses.dataclass(frozen=True)
class ServingSpec(Spec):
    """The SeldonDeployment (tfserving-proxy + TF Serving) with an HPA on ``sls_ingress_qps``, and its Ingress."""

    namespace: str = spec_field(
        "default", "string", pattern=DNS_LABEL, hint=DNS_LABEL_HINT, doc="Kubernetes namespace."
    )
    name: str = spec_field(
        "fashion-mnist-ecs",
        "string",
        param="deployment_name",
        pattern=DNS_LABEL,
        hint=DNS_LABEL_HINT,
        doc="SeldonDeployment (and Ingress) name.",
    )
    ingress_host: str = spec_field(
        "",
        "string",
        pattern=_HOST,
        hint="a DNS host name (or empty: any host)",
        doc="Host rule of the Ingress (empty: any host). Clients send it as the Host header.",
    )
    gpu_count: int = spec_field(1, "integer", minimum=0, maximum=8, doc="GPUs per model-server pod.")
    min_replicas: int = spec_field(1, "integer", minimum=1, maximum=100, doc="HPA minReplicas.")
    max_replicas: int = spec_field(DEFAULT_MAX_REPLICAS, "integer", **MAX_REPLICAS_SCHEMA, doc="HPA maxReplicas.")
    qps_target: float = spec_field(
        DEFAULT_QPS_TARGET, "number", **QPS_TARGET_SCHEMA, doc="sls_ingress_qps per replica (HPA target)."
    )
    hpa_metric_format: str = spec_field(
        "v2beta1",
        "string",
        enum=HPA_METRIC_FORMATS,
        doc="v2beta1: hpaSpec.metrics/targetAverageValue (Seldon <= 1.15, the seed); v2: metricsv2.",
    )
    serving_backend: str = spec_field(
        "seldon",
        "string",
        enum=SERVING_BACKENDS,
        title="Serving backend",
        doc="seldon: a SeldonDeployment (Seldon Core v1, as the seed; Business Source License since 2024-01);"
        " kserve: a KServe InferenceService in RawDeployment mode (Apache-2.0; ACK's ack-kserve component)."
        " Same model, claim, pool, HPA on sls_ingress_qps, Ingress and checks on either.",
    )
    # Filled by plan from the model and node pool specs.
    model_name: str = spec_field("", "string", doc="TF Serving model name (the model spec's name).")
    model_version: int = spec_field(1, "integer", minimum=0, doc="Model version (recorded as an annotation).")
    node_selector: dict[str, str] = spec_field({}, "object", doc="Node labels the pods select (the pool's labels).")

    label_prefix: ClassVar[str] = ""  # its fields are top-level params
    derived: ClassVar[tuple[str, ...]] = (
        "pv_name",
        "pvc_name",
        "secret_name",
        "predictor_service",
        "service_port",
        "serving_objects",
    )

    @property
    def pv_name(self) -> str:
        return f"{self.namespace}-{self.name}-model"

    @property
    def pvc_name(self) -> str:
        return f"{self.name}-model"

    @property
    def secret_name(self) -> str:
        return f"{self.name}-oss"

    @property
    def predictor_service(self) -> str:
        """The Service the backend creates for the deployment (``<name>-predictor`` for Seldon and KServe)."""
        return get_backend(self.serving_backend).predictor_service(self.name, PREDICTOR)

    @property
    def service_port(self) -> int:
        """The predictor Service's port the Ingress routes to (Seldon 8000, KServe 80)."""
        return get_backend(self.serving_backend).service_port

    @property
    def serving_objects(self) -> list[dict[str, str]]:
        """What teardown deletes for the serving object (the backend's controller removes what it created)."""
        return get_backend(self.serving_backend).teardown_objects(self.namespace, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **{name: getattr(self, name) for name in self.derived}}

    def derived_name_problems(self) -> list[str]:
        """Names built from namespace and deployment_name that Kubernetes limits to 63 characters: the PV's
        ``alicloud-pvname`` label, the predictor Service, and the HPA metric's ``sls.ingress.route`` label."""
        port = self.service_port if self.serving_backend in BACKENDS else SERVICE_PORT
        derived = {
            f"the PV name and its alicloud-pvname label '<namespace>-<deployment_name>-model' ({self.pv_name!r})": (
                self.pv_name,
                len(self.namespace) + 7,
            ),
            f"the predictor Service '<deployment_name>-{PREDICTOR}' ({self.name}-{PREDICTOR!s})": (
                f"{self.name}-{PREDICTOR}",
                len(PREDICTOR) + 1,
            ),
            f"the HPA metric label sls.ingress.route '<namespace>-<deployment_name>-{PREDICTOR}-{port}'": (
                f"{self.namespace}-{self.name}-{PREDICTOR}-{port}",
                len(self.namespace) + len(PREDICTOR) + len(str(port)) + 3,
            ),
        }
        p = []
        for what, (value, overhead) in derived.items():
            if len(value) > LABEL_VALUE_MAX:
                p.append(
                    f"deployment_name {self.name!r} ({len(self.name)} characters) in namespace {self.namespace!r}"
                    f" makes {what} {len(value)} characters, over Kubernetes' {LABEL_VALUE_MAX}: use a"
                    f" deployment_name of at most {max(1, LABEL_VALUE_MAX - overhead)} characters (or a shorter"
                    " namespace)"
                )
        return p

    def problems(self) -> list[str]:
        p = super().problems()
        if self.min_replicas > self.max_replicas:
            p.append(
                f"min_replicas ({self.min_replicas}) is greater than max_replicas ({self.max_replicas}): "
                "lower min_replicas or raise max_replicas"
            )
        p.extend(self.derived_name_problems())
        bad = {k: v for k, v in self.node_selector.items() if not isinstance(v, str)}
        if bad:
            p.append(f"node_selector: values must be strings (node label values), got {bad}")
        return p
