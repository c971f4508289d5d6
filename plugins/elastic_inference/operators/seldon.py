"""Seed step 4: the serving object (by default the seed's SeldonDeployment: tfserving-proxy + TensorFlow Serving,
HPA on ``sls_ingress_qps``), through the serving-backend interface (:mod:`elastic_inference.serving`).

With a ``rollout`` spec the operator first looks at what serves under the name: nothing (or the same version) →
today's path, create or patch it; another version → leave the stable object exactly as it is and deploy the new
version beside it as ``<name>-canary`` (same pool, same HPA rules on its own route) for the rollout to analyse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.exceptions import SpecError
from elastic_inference.k8s_objects import Json
from elastic_inference.operators._kubernetes import KubernetesApplyOperator
from elastic_inference.serving.base import ServingBackend, get_backend
from elastic_inference.serving.seldon import SELDON_HTTP_PORT, SeldonNamesError
from elastic_inference.serving.seldon import seldon_names as _seldon_names
from elastic_inference.specs.serving import HPA_METRIC_FORMATS, ServingSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_PROXY_IMAGE = "registry.cn-beijing.aliyuncs.com/deepai/seldonio-tfserving-proxy_rest:1.3.0"
DEFAULT_SERVING_IMAGE = "tensorflow/serving:2.3.0-gpu"
TFSERVING_CONFIG_MOUNT = "/etc/tfserving"
__all__ = ["HPA_METRIC_FORMATS", "SELDON_HTTP_PORT", "DeploySeldonOperator", "DeployServingOperator", "seldon_names"]
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
    "serving_backend": "backend_name",
}


def seldon_names(sdep: Json, service_port: int = SELDON_HTTP_PORT) -> dict[str, str]:
    """Names Seldon v1 derives from a SeldonDeployment (see :func:`elastic_inference.serving.seldon.seldon_names`)."""
    try:
        return _seldon_names(sdep, service_port)
    except SeldonNamesError as exc:
        raise AirflowFailException(str(exc)) from exc


def tfserving_config_name(name: str, version: int | str) -> str:
    """The ConfigMap pinning ``name``'s model server to one version: ``<name>-tfserving-v<version>``.

    One immutable ConfigMap per version, not one edited in place: a pod of the old ReplicaSet that restarts during
    (or long after) a rolling update must read the version its ReplicaSet was deployed with, and a changed
    reference in the pod template is what makes the update a rolling one.
    """
    return f"{name}-tfserving-v{version}"


class DeploySeldonOperator(KubernetesApplyOperator):
    """Create or patch the serving object (never a second one), then wait until the backend says it is ready.

    Each deployment serves exactly the version it was deployed with: TF Serving runs with ``--model_config_file``
    whose ``model_version_policy { specific { versions: N } }`` names the version (a ConfigMap per version, see
    :func:`tfserving_config_name`), not with ``--model_base_path`` alone, whose default policy (``latest``) would
    switch every live replica to a version uploaded later - on ACK's ossfs mount new objects appear in running pods
    at once. A per-version base path would pin too, but needs a model layout of its own on OSS and still lets a
    base path be repointed; the config file is TF Serving's own mechanism for exactly this.

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
    :param backend: the serving backend (``seldon``; see :mod:`elastic_inference.serving`).
    :param rollout: the run's :class:`~elastic_inference.specs.rollout.RolloutSpec` (templated): with it, a version
        already serving under ``name`` is left as it is and the new one deployed as ``<name>-canary``.
    :param pin_model_version: serve exactly ``model_version`` (TF Serving model config file); False: the latest
        version under the model's base path, as the seed does.
    """

    template_fields: Sequence[str] = (
        *KubernetesApplyOperator.template_fields,
        "name",
        "model_name",
        "pvc_name",
        "model_subpath",
        "model_version",
        # Not "proxy_image": Airflow masks every field whose name contains "proxy" (secrets_masker's
        # DEFAULT_SENSITIVE_FIELDS), so the rendered template showed the image as ***.
        "model_unit_image",
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
        "rollout",
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
        backend: str = "seldon",
        rollout: Mapping[str, Any] | str | None = None,
        pin_model_version: bool = True,
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
        self.model_unit_image = proxy_image
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
        self.backend_name = backend
        self.rollout = rollout
        self.pin_model_version = pin_model_version

    @property
    def backend(self) -> ServingBackend:
        return get_backend(self.backend_name)

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
        service = self.backend.predictor_service(self.name, self.predictor)
        route = self.sls_route or manifests.sls_ingress_route(self.namespace, service, self.backend.service_port)
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
            proxy_image=self.model_unit_image,
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
            pin_version=bool(self.pin_model_version),
            tfserving_config=tfserving_config_name(self.name, self.model_version),
            tfserving_config_mount=TFSERVING_CONFIG_MOUNT,
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

    def decide(self) -> dict[str, Any]:
        """Direct (create or patch ``name``) or canary (``<name>-canary`` beside it), from what serves now."""
        from elastic_inference.rollout.plan import canary_name, decide, stable_snapshot
        from elastic_inference.specs.rollout import RolloutSpec

        if self.rollout is None:
            return {"mode": "direct", "reason": "no rollout spec", "stable": None}
        spec = RolloutSpec.from_mapping(self.rollout).validate()
        hook = self.get_hook()
        try:
            existing = hook.get(self.backend.ref, self.namespace, self.name)
        finally:
            hook.close()
        decision = decide(spec.strategy, existing, self.backend, int(self.model_version))
        self.log.info("Rollout: %s (%s)", decision.mode, decision.reason)
        out = {**decision.to_dict(), "stable_name": self.name}
        out["stable"] = stable_snapshot(existing, self.backend) if existing is not None else None
        if decision.mode == "canary":
            self.name = canary_name(self.name)
        return out

    def execute(self, context: Context) -> Any:
        self.apply_spec()
        self.validate()
        rollout = self.decide()
        if self.manifest:
            objs = self.manifest_objects([])
        else:
            objs = manifests.render(self.backend.template, self.template_variables(), self.template_dir)
        sdep = self.apply_with_primary(objs, self.backend.ref.kind)
        meta = sdep.object["metadata"]
        try:
            names = self.backend.names(sdep.object)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        carry = {
            "name": meta["name"],
            "namespace": meta.get("namespace", self.namespace),
            "uid": sdep.uid,
            "action": sdep.action,
            "resource_version": sdep.resource_version,
            "service_port": names.service_port,
            "deployment": names.deployment,
            "hpa": names.hpa,
            "service": names.service,
            "route": names.route,
            "pod_selector": names.pod_selector,
            "backend": self.backend.name,
            "protocol": self.backend.protocol,
            "model_name": self.model_name,
            "model_version": int(self.model_version),
            "rollout": rollout,
        }
        if not self.wait_for_completion:
            return carry
        trigger = self.backend.ready_trigger(
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


DeployServingOperator = DeploySeldonOperator  # the backend-neutral name (``backend=`` chooses the adapter)
