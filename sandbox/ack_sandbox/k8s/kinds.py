"""Per-kind metadata: group/version/kind/plural, scope, short names, categories, subresources, name rules,
field selectors, defaults, validation, strategic-merge support and table columns.

Names, short names and categories are the ones ``kubectl api-resources`` shows on a v1.32 cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.k8s import batch, defaults, meta, reviews, tables, validation, workloads

GR = tuple[str, str]  # (group, resource) of the storage: ("apps", "deployments")
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
Defaulter = Callable[[dict[str, Any], defaults.Allocator], None]
Validator = Callable[[dict[str, Any], "dict[str, Any] | None"], list[validation.Cause]]


@dataclass(frozen=True)
class ScalePaths:
    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None  # path to a selector string (CRDs) or None: derive from .spec.selector


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "log", "finalize"
    verbs: tuple[str, ...] = ALL_VERBS
    name_rule: meta.NameRule = meta.dns1123_subdomain_errors
    field_selectors: frozenset[str] = frozenset()
    default: Defaulter | None = None
    validate: Validator | None = None
    generation: bool = False  # metadata.generation bumps when the spec changes
    strategic: bool = True  # strategic merge patch accepted (built-in kinds); CRs answer 415
    scale: ScalePaths | None = None
    table: tuple[list[tables.Column], tables.RowFn] = field(default_factory=lambda: tables.DEFAULT_TABLE)
    crd: bool = False
    storage: tuple[str, str] | None = None  # another (group, plural) holding the objects (events.k8s.io → core)
    preferred: bool = True  # the group's preferred version

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def gr(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def storage_gr(self) -> tuple[str, str]:
        return self.storage or self.gr

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


_POD_FIELDS = frozenset(
    {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)
_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)


def _t(plural: str) -> tuple[list[tables.Column], tables.RowFn]:
    return tables.TABLES[plural]


def builtin_kinds() -> list[ResourceType]:
    R = ResourceType
    return [
        R(
            "",
            "v1",
            "Namespace",
            "namespaces",
            namespaced=False,
            short_names=("ns",),
            subresources=("status", "finalize"),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            name_rule=meta.dns1123_label_errors,
            field_selectors=frozenset({"status.phase"}),
            default=defaults.namespace,
            table=_t("namespaces"),
        ),
        R(
            "",
            "v1",
            "Node",
            "nodes",
            namespaced=False,
            short_names=("no",),
            subresources=("status",),
            field_selectors=frozenset({"spec.unschedulable"}),
            table=_t("nodes"),
        ),
        R(
            "",
            "v1",
            "Pod",
            "pods",
            short_names=("po",),
            categories=("all",),
            subresources=("status", "log", "exec", "attach", "portforward"),
            field_selectors=_POD_FIELDS,
            default=defaults.pod,
            validate=validation.pod,
            table=_t("pods"),
        ),
        R(
            "",
            "v1",
            "Service",
            "services",
            short_names=("svc",),
            categories=("all",),
            subresources=("status",),
            name_rule=meta.dns1035_label_errors,
            default=defaults.service,
            validate=validation.service,
            table=_t("services"),
        ),
        R("", "v1", "Endpoints", "endpoints", short_names=("ep",), table=_t("endpoints")),
        R("", "v1", "Event", "events", short_names=("ev",), field_selectors=_EVENT_FIELDS, table=_t("events")),
        R(
            "",
            "v1",
            "Secret",
            "secrets",
            field_selectors=frozenset({"type"}),
            default=defaults.secret,
            validate=validation.data_keys,
            table=_t("secrets"),
        ),
        R(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            short_names=("cm",),
            validate=validation.data_keys,
            table=_t("configmaps"),
        ),
        R("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), table=_t("serviceaccounts")),
        R(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            namespaced=False,
            short_names=("pv",),
            subresources=("status",),
            default=defaults.pv,
            validate=validation.pv,
            table=_t("persistentvolumes"),
        ),
        R(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            short_names=("pvc",),
            subresources=("status",),
            default=defaults.pvc,
            validate=validation.pvc,
            table=_t("persistentvolumeclaims"),
        ),
        R(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            short_names=("deploy",),
            categories=("all",),
            subresources=("status", "scale"),
            default=defaults.deployment,
            validate=validation.deployment,
            generation=True,
            scale=ScalePaths(),
            table=_t("deployments"),
        ),
        R(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            short_names=("rs",),
            categories=("all",),
            subresources=("status", "scale"),
            default=defaults.replicaset,
            validate=validation.replicaset,
            generation=True,
            scale=ScalePaths(),
            table=_t("replicasets"),
        ),
        R(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            short_names=("sts",),
            categories=("all",),
            subresources=("status", "scale"),
            default=workloads.statefulset,
            validate=workloads.validate_statefulset,
            generation=True,
            scale=ScalePaths(),
            table=workloads.STATEFULSET_TABLE,
        ),
        R(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            short_names=("ds",),
            categories=("all",),
            subresources=("status",),
            default=workloads.daemonset,
            validate=workloads.validate_daemonset,
            generation=True,
            table=workloads.DAEMONSET_TABLE,
        ),
        R(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            short_names=("rc",),
            categories=("all",),
            subresources=("status", "scale"),
            default=workloads.replicationcontroller,
            validate=workloads.validate_replicationcontroller,
            generation=True,
            scale=ScalePaths(label_selector=None),
            table=workloads.RC_TABLE,
        ),
        R(
            "batch",
            "v1",
            "Job",
            "jobs",
            categories=("all",),
            subresources=("status",),
            default=batch.job,
            validate=batch.validate_job,
            generation=True,
            table=batch.JOB_TABLE,
        ),
        R(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            short_names=("cj",),
            categories=("all",),
            subresources=("status",),
            default=batch.cronjob,
            validate=batch.validate_cronjob,
            generation=True,
            table=batch.CRONJOB_TABLE,
        ),
        R(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            short_names=("hpa",),
            categories=("all",),
            subresources=("status",),
            default=defaults.hpa,
            validate=validation.hpa,
            generation=True,
            table=_t("horizontalpodautoscalers"),
        ),
        R(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            short_names=("ing",),
            subresources=("status",),
            default=defaults.ingress,
            validate=validation.ingress,
            generation=True,
            table=_t("ingresses"),
        ),
        R(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            namespaced=False,
            generation=True,
            table=_t("ingressclasses"),
        ),
        R("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", generation=True, table=_t("endpointslices")),
        R(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            short_names=("ev",),
            field_selectors=_EVENT_FIELDS,
            storage=("", "events"),
            table=_t("events"),
        ),
        R("rbac.authorization.k8s.io", "v1", "Role", "roles", table=reviews.CREATED_TABLE),
        R(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            validate=reviews.validate_binding,
            table=reviews.BINDING_TABLE,
        ),
        R(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            namespaced=False,
            table=reviews.CREATED_TABLE,
        ),
        R(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            namespaced=False,
            validate=reviews.validate_binding,
            table=reviews.BINDING_TABLE,
        ),
        R(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            namespaced=False,
            verbs=("create",),
        ),
        R(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            namespaced=False,
            verbs=("create",),
        ),
        R(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            namespaced=False,
            categories=("api-extensions",),
            subresources=("status",),
            name_rule=reviews.apiservice_name_errors,
            table=reviews.APISERVICE_TABLE,
        ),
        R(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            namespaced=False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            subresources=("status",),
            default=defaults.crd,
            validate=validation.crd,
            generation=True,
            table=_t("customresourcedefinitions"),
        ),
    ]


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves (one per served version)."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    served = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage = next((v["name"] for v in served if v.get("storage")), served[0]["name"] if served else "")
    for v in served:
        subs = v.get("subresources") or {}
        scale = None
        if "scale" in subs:
            sc = subs["scale"] or {}
            scale = ScalePaths(
                sc.get("specReplicasPath", ".spec.replicas"),
                sc.get("statusReplicasPath", ".status.replicas"),
                sc.get("labelSelectorPath"),
            )
        cols = v.get("additionalPrinterColumns")
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(s for s in ("status", "scale") if s in subs),
                generation=True,
                strategic=False,
                scale=scale,
                crd=True,
                preferred=v["name"] == storage,
                table=tables.printer_columns_table(cols) if cols else tables.DEFAULT_TABLE,
            )
        )
    return out


# The SeldonDeployment CRD (machinelearning.seldon.io/v1) as seldon-core-operator 1.x installs it:
# shortName sdep, status and scale (spec.replicas <-> status.replicas) subresources. The schema is left open
# (x-kubernetes-preserve-unknown-fields), so the sandbox neither prunes nor validates the spec.
SELDON_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "seldondeployments.machinelearning.seldon.io",
        "labels": {"app": "seldon", "app.kubernetes.io/instance": "seldon-core-operator"},
    },
    "spec": {
        "group": "machinelearning.seldon.io",
        "names": {
            "kind": "SeldonDeployment",
            "listKind": "SeldonDeploymentList",
            "plural": "seldondeployments",
            "shortNames": ["sdep"],
            "singular": "seldondeployment",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
            }
        ],
    },
}


# The InferenceService CRD (serving.kserve.io/v1beta1) as KServe's helm chart installs it
# (config/crd/full/serving.kserve.io_inferenceservices.yaml): shortName isvc, status subresource, and the printer
# columns of `kubectl get isvc` (URL, READY, PREV, LATEST, PREVROLLEDOUTREVISION, LATESTREADYREVISION, AGE).
# The schema is left open, as for Seldon.
KSERVE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "inferenceservices.serving.kserve.io",
        "labels": {"app.kubernetes.io/name": "kserve", "app.kubernetes.io/instance": "kserve"},
    },
    "spec": {
        "group": "serving.kserve.io",
        "names": {
            "kind": "InferenceService",
            "listKind": "InferenceServiceList",
            "plural": "inferenceservices",
            "shortNames": ["isvc"],
            "singular": "inferenceservice",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"jsonPath": ".status.url", "name": "URL", "type": "string"},
                    {"jsonPath": ".status.conditions[?(@.type=='Ready')].status", "name": "Ready", "type": "string"},
                    {
                        "jsonPath": ".status.components.predictor.traffic[?(@.tag=='prev')].percent",
                        "name": "Prev",
                        "type": "integer",
                    },
                    {
                        "jsonPath": ".status.components.predictor.traffic[?(@.latestRevision==true)].percent",
                        "name": "Latest",
                        "type": "integer",
                    },
                    {
                        "jsonPath": ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName",
                        "name": "PrevRolledoutRevision",
                        "type": "string",
                    },
                    {
                        "jsonPath": ".status.components.predictor.latestReadyRevision",
                        "name": "LatestReadyRevision",
                        "type": "string",
                    },
                    {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                ],
            }
        ],
    },
}
