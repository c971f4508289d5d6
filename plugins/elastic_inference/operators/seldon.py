"""Seed step 4: the SeldonDeployment (tfserving-proxy + TensorFlow Serving, HPA on ``sls_ingress_qps``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.exceptions import SpecError
from elastic_inference.k8s_objects import Json
from elastic_inference.operators._kubernetes import KubernetesApplyOperator
from elastic_inference.specs.serving import HPA_METRIC_FORMATS, ServingSpec
from elastic_inference.triggers.seldon import SeldonDeploymentTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_PROXY_IMAGE = "registry.cn-beijing.aliyuncs.com/deepai/seldonio-tfserving-proxy_rest:1.3.0"
DEFAULT_SERVING_IMAGE = "tensorflow/serving:2.3.0-gpu"
SELDON_HTTP_PORT = 8000  # the predictor Service's http port (Seldon executor default, ref. §4.2)
__all__ = ["HPA_METRIC_FORMATS", "DeploySeldonOperator", "seldon_names"]
# What the serving spec sets on the operator (spec field -> operator attribute).
_FROM_SPEC = {
    "namespace": "namespace",
    "name": "name",
    "model_name": "model_name",
    "model_version": "model_version",
    "gpu_count": "gpu_count",
    "min_replicas": "min_replicas",
    "max_replicas": "max_replicas",
    "qps_target": "qps_target",
    "hpa_metric_format": "hpa_metric_format",
    "node_selector": "node_selector",
}


def seldon_names(sdep: Json, service_port: int = SELDON_HTTP_PORT) -> dict[str, str]:
    """Names Seldon v1 derives from a SeldonDeployment (first predictor, first componentSpec), ref. §4.2."""
    name = sdep["metadata"]["name"]
    namespace = sdep["metadata"].get("namespace", "default")
    predictors = (sdep.get("spec") or {}).get("predictors") or []
    if not predictors:
        raise AirflowFailException(f"SeldonDeployment {name}: spec.predictors is empty")
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


class DeploySeldonOperator(KubernetesApplyOperator):
    """Create or patch the SeldonDeployment (never a second object), then wait until it is ``Available``.

    Takes the run's :class:`~elastic_inference.specs.ServingSpec` whole as ``serving={...}`` (templated, e.g. the
    ``plan`` task's ``serving``): it sets name, namespace, model, replicas, HPA target and format, GPUs, node
    selector and (unless given) the claim ``<name>-model``. The single keywords below still work without it.

    Fails within seconds, naming pod and reason, on CrashLoopBackOff, ImagePullBackOff/ErrImagePull,
    CreateContainerConfigError, an Unschedulable pod the autoscaler will not scale up for (NotTriggerScaleUp,
    or still unschedulable after ``unschedulable_grace_seconds``), or ``state: Failed``.

    :param name: SeldonDeployment name. (templated)
    :param model_name: model name for TF Serving (``--model_name``) and the container. (templated)
    :param pvc_name: the claim holding the models, mounted at ``mount_path``. (templated)
    :param model_subpath: model directory below the mount (default: ``model_name``); it must hold numeric
        version directories. (templated)
    :param model_version: recorded as an annotation so a new version changes the object. (templated)
    :param proxy_image: the tfserving-proxy (Seldon model unit) image. (templated)
    :param serving_image: the TensorFlow Serving image. (templated)
    :param gpu_count: ``nvidia.com/gpu`` per pod (0: a CPU request of ``serving_cpu`` instead).
    :param node_selector: e.g. ``{"seldon": "fashion-mnist"}`` to land on the elastic pool.
    :param min_replicas: HPA lower bound (also the initial replicas).
    :param max_replicas: HPA upper bound.
    :param qps_target: the ``sls_ingress_qps`` average value per replica that triggers scale-out.
    :param hpa_metric_format: ``v2beta1`` (``metrics``/``targetAverageValue``, Seldon ≤1.15 and the seed) or
        ``v2`` (``metricsv2``/``target.averageValue``, Seldon ≥1.16).
    :param metric_labels: the external metric's selector; default ``sls.project=k8s-log-<cluster id>``,
        ``sls.logstore=nginx-ingress``, ``sls.ingress.route=<ns>-<service>-8000``.
    :param sls_project: override of the ``sls.project`` label. (templated)
    :param sls_route: override of the ``sls.ingress.route`` label. (templated)
    :param unschedulable_grace_seconds: fail when a pod stays Unschedulable this long (None: only when the
        autoscaler says it will not scale up).
    """

    template_fields: Sequence[str] = (
        *KubernetesApplyOperator.template_fields,
        "name",
        "model_name",
        "pvc_name",
        "model_subpath",
        "model_version",
        "proxy_image",
        "serving_image",
        "sls_project",
        "sls_route",
        "predictor",
        "gpu_count",
        "node_selector",
        "min_replicas",
        "max_replicas",
        "qps_target",
        "hpa_metric_format",
    )

    def __init__(
        self,
        *,
        name: str | None = None,
        model_name: str | None = None,
        pvc_name: str | None = None,
        predictor: str = "predictor",
        model_subpath: str | None = None,
        model_version: str | int = 1,
        proxy_image: str = DEFAULT_PROXY_IMAGE,
        serving_image: str = DEFAULT_SERVING_IMAGE,
        gpu_count: int = 1,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        min_replicas: int = 1,
        max_replicas: int = 10,
        qps_target: float = 10,
        metric_name: str = "sls_ingress_qps",
        metric_labels: dict[str, str] | None = None,
        sls_project: str | None = None,
        sls_logstore: str = "nginx-ingress",
        sls_route: str | None = None,
        hpa_metric_format: str = "v2beta1",
        log_level: str = "INFO",
        proxy_cpu: str = "0.5",
        serving_cpu: str = "1",
        grpc_port: int = 8500,
        rest_port: int = 8501,
        mount_path: str = "/mnt",
        termination_grace_seconds: int = 1,
        signature_name: str = "serving_default",
        unschedulable_grace_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.serving is None and not (name and model_name and pvc_name):
            raise ValueError(
                f"{type(self).__name__}: pass serving= (a ServingSpec mapping) or name, model_name and pvc_name"
            )
        self.name: str = name or ""  # set from serving= in execute
        self.model_name: str = model_name or ""
        self.pvc_name: str = pvc_name or ""
        self.predictor = predictor
        self.model_subpath = model_subpath
        self.model_version = model_version
        self.proxy_image = proxy_image
        self.serving_image = serving_image
        self.gpu_count = gpu_count
        self.node_selector = node_selector
        self.tolerations = tolerations
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.qps_target = qps_target
        self.metric_name = metric_name
        self.metric_labels = metric_labels
        self.sls_project = sls_project
        self.sls_logstore = sls_logstore
        self.sls_route = sls_route
        self.hpa_metric_format = hpa_metric_format
        self.log_level = log_level
        self.proxy_cpu = proxy_cpu
        self.serving_cpu = serving_cpu
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.mount_path = mount_path
        self.termination_grace_seconds = termination_grace_seconds
        self.signature_name = signature_name
        self.unschedulable_grace_seconds = unschedulable_grace_seconds

    def _cluster_id(self) -> str | None:
        if self.cluster_id:
            return self.cluster_id
        from airflow.sdk.exceptions import AirflowNotFoundException

        from elastic_inference.hooks.base import AlibabaCloudBaseHook

        try:
            return AlibabaCloudBaseHook(self.ack_conn_id or AlibabaCloudBaseHook.default_conn_name).settings.cluster_id
        except AirflowNotFoundException:
            return None

    def resolve_metric_labels(self) -> dict[str, str]:
        if self.metric_labels:
            return dict(self.metric_labels)
        project = self.sls_project
        if not project:
            cid = self._cluster_id()
            if not cid:
                raise AirflowFailException(
                    f"{self.task_id}: cannot name the SLS project for the HPA metric: pass sls_project (or"
                    " metric_labels), or cluster_id / an alibaba_ack connection with extra.cluster_id"
                    " (the project is k8s-log-<cluster id>)"
                )
            project = f"k8s-log-{cid}"
        service = manifests.seldon_predictor_service(self.name, self.predictor)
        route = self.sls_route or manifests.sls_ingress_route(self.namespace, service, SELDON_HTTP_PORT)
        return {"sls.project": project, "sls.logstore": self.sls_logstore, "sls.ingress.route": route}

    def template_variables(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            namespace=self.namespace,
            predictor=self.predictor,
            model_name=self.model_name,
            model_version=self.model_version,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            metric_name=self.metric_name,
            metric_labels=self.resolve_metric_labels(),
            qps_target=self.qps_target,
            hpa_metric_format=self.hpa_metric_format,
            proxy_image=self.proxy_image,
            serving_image=self.serving_image,
            log_level=self.log_level,
            proxy_cpu=self.proxy_cpu,
            serving_cpu=self.serving_cpu,
            grpc_port=self.grpc_port,
            rest_port=self.rest_port,
            mount_path=self.mount_path,
            model_subpath=(self.model_subpath or self.model_name).strip("/"),
            gpu_count=self.gpu_count,
            node_selector=self.node_selector or {},
            tolerations=self.tolerations or [],
            pvc_name=self.pvc_name,
            termination_grace_seconds=self.termination_grace_seconds,
            signature_name=self.signature_name,
        )

    def apply_spec(self) -> None:
        """Take the (rendered) serving spec's values; explicit keywords the spec does not set stay."""
        spec = self.serving_spec()
        if spec is None:
            return
        for field, attr in _FROM_SPEC.items():
            setattr(self, attr, getattr(spec, field))
        self.pvc_name = self.pvc_name or spec.pvc_name

    def validate(self) -> None:
        """Checks after rendering (these fields may be templates such as ``{{ params.max_replicas }}``): the
        serving spec's coercion and problems, so the values are numbers of the right range afterwards."""
        values = {field: getattr(self, attr) for field, attr in _FROM_SPEC.items()}
        values["node_selector"] = values["node_selector"] or {}
        try:
            spec = ServingSpec.from_mapping(values)
        except SpecError as exc:
            numbers = ("min_replicas", "max_replicas", "gpu_count", "qps_target")
            lead = (
                "min_replicas, max_replicas, gpu_count and qps_target must be numbers: "
                if any(n in p for p in exc.problems for n in numbers)
                else ""
            )
            raise AirflowFailException(f"{self.task_id}: {lead}" + "; ".join(exc.problems)) from exc
        problems = spec.problems()
        if problems:
            raise AirflowFailException(f"{self.task_id}: " + "; ".join(problems))
        for field, attr in _FROM_SPEC.items():
            setattr(self, attr, getattr(spec, field))

    def execute(self, context: Context) -> Any:
        self.apply_spec()
        self.validate()
        if self.manifest:
            objs = self.manifest_objects([])
        else:
            objs = manifests.render("seldon_deployment.yaml.j2", self.template_variables(), self.template_dir)
        sdep = self.apply_with_primary(objs, "SeldonDeployment")
        meta = sdep.object["metadata"]
        carry = {
            "name": meta["name"],
            "namespace": meta.get("namespace", self.namespace),
            "uid": sdep.uid,
            "action": sdep.action,
            "resource_version": sdep.resource_version,
            "service_port": SELDON_HTTP_PORT,
            **seldon_names(sdep.object),
        }
        if not self.wait_for_completion:
            return carry
        trigger = SeldonDeploymentTrigger(
            access=self.access.to_dict(),
            namespace=carry["namespace"],
            name=carry["name"],
            deadline=self.deadline(),
            watch_timeout_seconds=self.watch_timeout_seconds,
            unschedulable_grace_seconds=self.unschedulable_grace_seconds,
        )
        return self.wait_or_defer(context, trigger, carry)

    def result(self, context: Context, event: Json, carry: dict[str, Any]) -> Any:
        return {
            **carry,
            "state": event.get("state"),
            "address": event.get("address", ""),
            "replicas": event.get("replicas"),
        }
