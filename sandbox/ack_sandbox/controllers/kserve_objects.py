"""What KServe's controller derives from an InferenceService in RawDeployment mode (pure logic, no I/O).

Checked against kserve/kserve (``pkg/apis/serving/v1beta1``, ``pkg/constants/constants.go``,
``pkg/controller/v1beta1/inferenceservice/reconcilers/{deployment,service,ingress,hpa}``, the storage-initializer
injector ``pkg/webhook/admission/pod/storage_initializer_injector.go`` and ``config/runtimes``):

- One component, the predictor: Deployment and Service ``<isvc>-predictor`` (``constants.PredictorServiceName``),
  pods labelled ``serving.kserve.io/inferenceservice=<isvc>``, ``component=predictor`` and
  ``app=isvc.<isvc>-predictor`` (the Deployment's and the Service's selector). The Service listens on 80
  (``constants.CommonDefaultHttpPort``) and targets the container port, 8080 by default
  (``constants.InferenceServiceDefaultHttpPort``).
- ``predictor.model`` (``modelFormat.name: tensorflow``) selects the ClusterServingRuntime
  ``kserve-tensorflow-serving`` (``config/runtimes/kserve-tensorflow-serving.yaml``): container ``kserve-container``,
  ``/usr/bin/tensorflow_model_server --model_name={{.Name}} --port=9000 --rest_api_port=8080
  --model_base_path=/mnt/models --rest_api_timeout_in_ms=60000``. The model's own container fields are merged over
  the runtime's (image, resources, env, ports, probes, volume mounts) and its ``args`` appended after the runtime's
  (``MergeRuntimeContainers``); ``runtimeVersion`` replaces the image tag. No runtime for the format:
  ``modelStatus.transitionStatus: InvalidSpec`` with ``lastFailureInfo.reason: NoSupportingRuntime``.
- ``storageUri: pvc://<claim>/<path>``: the claim is mounted read-only straight at ``/mnt/models`` with
  ``subPath: <path>`` (volume ``kserve-pvc-source``) - the direct PVC mount, the default since KServe 0.14 and the
  only behaviour once ``enableDirectPvcVolumeMount`` was removed (kserve PR #4694); no storage-initializer init
  container runs for a PVC. Other schemes need the storage-initializer, which the sandbox does not run: refused
  with ``InvalidPredictorSpec`` naming the field.
- Autoscaling (kserve.github.io/website/latest/modelserving/autoscaling/raw_deployment_autoscaling):
  ``serving.kserve.io/autoscalerClass: hpa`` (the default) creates HPA ``<isvc>-predictor`` on ``scaleMetric``
  (cpu or memory; or the ``serving.kserve.io/metric`` annotation) at ``scaleTarget`` % (default 80);
  ``external`` creates none and deletes one it created before - the replica count is the external scaler's (the
  project's own HPA on ``sls_ingress_qps``), so an existing Deployment keeps its ``replicas``.
- Ingress: ``networking.kserve.io/visibility: cluster-local`` creates none (``RawIngressReconciler``); otherwise,
  once the predictor is ready, Ingress ``<isvc>`` with hosts ``<isvc>-<ns>.<domain>`` and
  ``<isvc>-predictor-<ns>.<domain>`` to the predictor Service on 80. ``status.url`` is
  ``http://<isvc>-<ns>.example.com`` (``domainTemplate`` ``{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}``,
  ``ingressDomain`` example.com), ``status.address.url`` the Service's cluster DNS name.
- Conditions (knative ``apis.NewLivingConditionSet(PredictorReady, IngressReady)``): ``PredictorReady`` mirrors the
  Deployment's ``Available`` condition (``PropagateRawStatus``), ``IngressReady`` is True when the Ingress exists
  (or none is wanted), ``Ready`` is True when both are, False with the first False one's reason and message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

LABEL_ISVC = "serving.kserve.io/inferenceservice"
LABEL_COMPONENT = "component"
LABEL_VISIBILITY = "networking.kserve.io/visibility"
CLUSTER_LOCAL = "cluster-local"
ANNOTATION_MODE = "serving.kserve.io/deploymentMode"
ANNOTATION_AUTOSCALER = "serving.kserve.io/autoscalerClass"
ANNOTATION_METRIC = "serving.kserve.io/metric"
ANNOTATION_TARGET = "serving.kserve.io/targetUtilizationPercentage"
RAW_DEPLOYMENT = "RawDeployment"
AUTOSCALER_HPA = "hpa"
AUTOSCALER_EXTERNAL = "external"
CONTAINER = "kserve-container"
MODEL_MOUNT = "/mnt/models"  # constants.DefaultModelLocalMountPath
PVC_VOLUME = "kserve-pvc-source"  # PvcSourceMountName
SERVICE_PORT = 80  # constants.CommonDefaultHttpPort
CONTAINER_PORT = 8080  # constants.InferenceServiceDefaultHttpPort
INGRESS_DOMAIN = "example.com"

# config/runtimes/kserve-tensorflow-serving.yaml (the helm chart's ClusterServingRuntime).
TF_RUNTIME = "kserve-tensorflow-serving"
TF_RUNTIME_SPEC: dict[str, Any] = {
    "supportedModelFormats": [{"name": "tensorflow", "version": "1"}, {"name": "tensorflow", "version": "2"}],
    "protocolVersions": ["v1", "grpc-v1"],
    "container": {
        "name": CONTAINER,
        "image": "tensorflow/serving:2.6.2",
        "command": ["/usr/bin/tensorflow_model_server"],
        "args": [
            "--model_name={{.Name}}",
            "--port=9000",
            f"--rest_api_port={CONTAINER_PORT}",
            f"--model_base_path={MODEL_MOUNT}",
            "--rest_api_timeout_in_ms=60000",
        ],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
    },
}
RUNTIMES = {TF_RUNTIME: TF_RUNTIME_SPEC}

# PodSpec fields of the predictor (PredictorSpec inlines corev1.PodSpec) passed to the Deployment's pods.
_POD_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "volumes",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
    "imagePullSecrets",
    "priorityClassName",
    "schedulerName",
    "securityContext",
)


class IsvcSpecError(ValueError):
    """The InferenceService cannot be reconciled; ``reason`` is KServe's FailureReason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def predictor_name(isvc: str) -> str:
    """constants.PredictorServiceName."""
    return f"{isvc}-predictor"


def pod_app_label(isvc: str) -> str:
    return f"isvc.{predictor_name(isvc)}"


def parse_pvc_uri(uri: str) -> tuple[str, str]:
    """``pvc://<claim>[/<path>]`` -> (claim, path) (``utils.ParsePvcURI``)."""
    rest = uri[len("pvc://") :]
    claim, _, path = rest.partition("/")
    if not claim:
        raise IsvcSpecError("InvalidPredictorSpec", f"spec.predictor.model.storageUri {uri!r}: no claim name")
    return claim, path.strip("/")


def _merge_resources(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for part in ("requests", "limits"):
        if over.get(part):
            out[part] = {**(out.get(part) or {}), **over[part]}
    return out


def _merge_by_name(base: list[dict], over: list[dict]) -> list[dict]:
    out = {item.get("name"): copy.deepcopy(item) for item in base}
    for item in over:
        out[item.get("name")] = copy.deepcopy(item)
    return list(out.values())


def _with_tag(image: str, tag: str) -> str:
    slash = image.rfind("/")
    colon = image.rfind(":")
    repo = image[:colon] if colon > slash else image
    return f"{repo}:{tag}"


def select_runtime(isvc: dict) -> tuple[str, dict]:
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    fmt = (model.get("modelFormat") or {}).get("name") or ""
    wanted = model.get("runtime")
    if wanted:
        spec = RUNTIMES.get(wanted)
        if spec is None:
            raise IsvcSpecError("RuntimeNotRecognized", f"Specified runtime {wanted} is not recognized")
        if not any(f["name"] == fmt for f in spec["supportedModelFormats"]):
            raise IsvcSpecError(
                "NoSupportingRuntime", f"Specified runtime {wanted} does not support model format {fmt}"
            )
        return wanted, spec
    for name, spec in RUNTIMES.items():
        if any(f["name"] == fmt for f in spec["supportedModelFormats"]):
            return name, spec
    raise IsvcSpecError("NoSupportingRuntime", "No runtime found to support specified framework/version")


def container(isvc: dict) -> tuple[str, dict, list[dict]]:
    """(runtime name, the merged kserve-container, extra pod volumes) of the predictor."""
    meta = isvc["metadata"]
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model")
    if not model:
        raise IsvcSpecError(
            "InvalidPredictorSpec", "spec.predictor.model is required (the sandbox serves model predictors only)"
        )
    runtime, spec = select_runtime(isvc)
    base = copy.deepcopy(spec["container"])
    base["args"] = [a.replace("{{.Name}}", meta["name"]) for a in base["args"]]
    c = base
    if model.get("image"):
        c["image"] = model["image"]
    elif model.get("runtimeVersion"):
        c["image"] = _with_tag(c["image"], str(model["runtimeVersion"]))
    c["args"] = [*c["args"], *(model.get("args") or [])]
    if model.get("command"):
        c["command"] = list(model["command"])
    if model.get("resources"):
        c["resources"] = _merge_resources(c.get("resources") or {}, model["resources"])
    for key in ("env", "ports", "volumeMounts"):
        if model.get(key):
            c[key] = _merge_by_name(c.get(key) or [], model[key])
    for key in ("readinessProbe", "livenessProbe", "startupProbe", "lifecycle", "securityContext"):
        if model.get(key):
            c[key] = copy.deepcopy(model[key])
    volumes: list[dict] = []
    uri = model.get("storageUri") or ""
    if uri:
        if not uri.startswith("pvc://"):
            raise IsvcSpecError(
                "InvalidPredictorSpec",
                f"spec.predictor.model.storageUri {uri!r}: the sandbox mounts pvc://<claim>/<path> only (other"
                " schemes need the storage-initializer init container, which it does not run)",
            )
        claim, path = parse_pvc_uri(uri)
        readonly = (meta.get("annotations") or {}).get("storage.kserve.io/readonly", "true") != "false"
        volumes.append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": readonly}})
        mount: dict[str, Any] = {"name": PVC_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": readonly}
        if path:
            mount["subPath"] = path
        c["volumeMounts"] = [*(c.get("volumeMounts") or []), mount]
    if not c.get("ports"):
        c["ports"] = [{"containerPort": CONTAINER_PORT, "name": "http1", "protocol": "TCP"}]
    return runtime, c, volumes


@dataclass
class Components:
    runtime: str = ""
    deployment: dict = field(default_factory=dict)
    service: dict = field(default_factory=dict)
    hpa: dict | None = None
    ingress: dict | None = None
    autoscaler: str = AUTOSCALER_HPA


def build(isvc: dict) -> Components:
    """The predictor's Deployment, Service, HPA (class hpa) and Ingress (not cluster-local), without ownerRefs."""
    meta = isvc["metadata"]
    name, ns = meta["name"], meta.get("namespace", "default")
    annotations = meta.get("annotations") or {}
    mode = annotations.get(ANNOTATION_MODE, RAW_DEPLOYMENT)
    if mode != RAW_DEPLOYMENT:
        raise IsvcSpecError(
            "InvalidPredictorSpec",
            f"metadata.annotations[{ANNOTATION_MODE}]={mode!r}: this cluster has no Knative Serving; use"
            f" {RAW_DEPLOYMENT}",
        )
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    runtime, c, volumes = container(isvc)
    pname = predictor_name(name)
    labels = {
        **(meta.get("labels") or {}),
        LABEL_ISVC: name,
        LABEL_COMPONENT: "predictor",
        "app": pod_app_label(name),
    }
    pod_spec: dict[str, Any] = {k: copy.deepcopy(predictor[k]) for k in _POD_FIELDS if k in predictor}
    pod_spec["containers"] = [c]
    if volumes:
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *volumes]
    min_replicas = int(predictor["minReplicas"]) if predictor.get("minReplicas") is not None else 1
    strategy = copy.deepcopy(predictor.get("deploymentStrategy")) or {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    pod_annotations = {k: v for k, v in annotations.items() if not k.startswith("kubectl.kubernetes.io/")}
    out = Components(runtime=runtime, autoscaler=annotations.get(ANNOTATION_AUTOSCALER, AUTOSCALER_HPA))
    out.deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": pname, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": min_replicas,
            "selector": {"matchLabels": {"app": pod_app_label(name)}},
            "strategy": strategy,
            "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod_spec},
        },
    }
    target = int(c["ports"][0].get("containerPort") or CONTAINER_PORT)
    out.service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": pname, "namespace": ns, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": pod_app_label(name)},
            "ports": [{"name": pname, "protocol": "TCP", "port": SERVICE_PORT, "targetPort": target}],
        },
    }
    if out.autoscaler == AUTOSCALER_HPA:
        metric = predictor.get("scaleMetric") or annotations.get(ANNOTATION_METRIC, "cpu")
        util = int(annotations.get(ANNOTATION_TARGET) or predictor.get("scaleTarget") or 80)
        out.hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": pname, "namespace": ns, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": pname},
                "minReplicas": max(min_replicas, 1),
                "maxReplicas": max(int(predictor.get("maxReplicas") or 0), max(min_replicas, 1)),
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": metric, "target": {"type": "Utilization", "averageUtilization": util}},
                    }
                ],
            },
        }
    elif out.autoscaler != AUTOSCALER_EXTERNAL:
        raise IsvcSpecError(
            "InvalidPredictorSpec",
            f"metadata.annotations[{ANNOTATION_AUTOSCALER}]={out.autoscaler!r}: use {AUTOSCALER_HPA} or"
            f" {AUTOSCALER_EXTERNAL} (RawDeployment)",
        )
    if (meta.get("labels") or {}).get(LABEL_VISIBILITY) != CLUSTER_LOCAL:
        rules = [
            _rule(f"{name}-{ns}.{INGRESS_DOMAIN}", pname),
            _rule(f"{pname}-{ns}.{INGRESS_DOMAIN}", pname),
        ]
        out.ingress = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"rules": rules},
        }
    return out


def _rule(host: str, service: str) -> dict:
    return {
        "host": host,
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": service, "port": {"number": SERVICE_PORT}}},
                }
            ]
        },
    }


# ------------------------------------------------------------------------------------------- status
def _cond(ctype: str, status: str, reason: str = "", message: str = "", stamp: str = "") -> dict:
    out = {"type": ctype, "status": status, "lastTransitionTime": stamp}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _deployment_condition(dep: dict | None, ctype: str) -> dict | None:
    for c in ((dep or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def model_failure(pods: list[dict]) -> dict | None:
    """``lastFailureInfo`` from a predictor pod whose kserve-container cannot run (PropagateModelStatus)."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != CONTAINER:
                continue
            waiting = (cs.get("state") or {}).get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if waiting.get("reason") == "CrashLoopBackOff" and last:
                info = {
                    "reason": "ModelLoadFailed",
                    "message": last.get("message") or f"container {CONTAINER} exited with {last.get('exitCode')}",
                    "exitCode": last.get("exitCode"),
                    "location": pod["metadata"]["name"],
                }
                return info
    return None


def compute_status(
    isvc: dict,
    comps: Components | None,
    deployment: dict | None,
    ingress_ready: bool,
    pods: list[dict],
    stamp: str,
    error: IsvcSpecError | None = None,
) -> dict:
    """The InferenceService ``status`` after a reconcile (conditions, url, address, components, modelStatus)."""
    meta = isvc["metadata"]
    name, ns = meta["name"], meta.get("namespace", "default")
    old = isvc.get("status") or {}
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    status: dict[str, Any] = {"observedGeneration": int(meta.get("generation") or 0)}
    conds: list[dict] = []
    if error is not None:
        conds.append(_cond("PredictorReady", "False", error.reason, str(error), stamp))
        status["modelStatus"] = {
            "transitionStatus": "InvalidSpec",
            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": error.reason, "message": str(error)},
        }
    else:
        avail = _deployment_condition(deployment, "Available")
        if avail is None:
            conds.append(_cond("PredictorReady", "Unknown", "", "", stamp))
        else:
            conds.append(
                _cond(
                    "PredictorReady",
                    avail.get("status", "Unknown"),
                    avail.get("reason", ""),
                    avail.get("message", ""),
                    stamp,
                )
            )
        predictor_ok = conds[0]["status"] == "True"
        if (comps is not None and comps.ingress is None) or (ingress_ready and predictor_ok):
            conds.append(_cond("IngressReady", "True", "", "", stamp))
        else:
            conds.append(_cond("IngressReady", "False", "Predictor ingress not created", "", stamp))
        pname = predictor_name(name)
        if conds[1]["status"] == "True":  # RawIngressReconciler sets the URL once it has (or needs no) Ingress
            status["url"] = f"http://{name}-{ns}.{INGRESS_DOMAIN}"
        status["address"] = {"url": f"http://{pname}.{ns}.svc.cluster.local"}
        revision = (
            ((deployment or {}).get("metadata") or {})
            .get("annotations", {})
            .get("deployment.kubernetes.io/revision", "")
        )
        comp: dict[str, Any] = {}
        if revision:
            comp["latestCreatedRevision"] = revision
            if predictor_ok:
                comp["latestReadyRevision"] = revision
        if predictor_ok:
            comp["url"] = f"http://{pname}-{ns}.{INGRESS_DOMAIN}"
        status["components"] = {"predictor": comp}
        failure = model_failure(pods)
        if predictor_ok:
            model = {
                "transitionStatus": "UpToDate",
                "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            }
        elif failure is not None:
            model = {
                "transitionStatus": "BlockedByFailedLoad",
                "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                "lastFailureInfo": failure,
            }
        else:
            model = {
                "transitionStatus": "InProgress",
                "states": {"activeModelState": "", "targetModelState": "Loading"},
            }
        status["modelStatus"] = model
    blocking = next((c for c in conds if c["status"] == "False"), None)
    if blocking is not None:
        conds.append(_cond("Ready", "False", blocking.get("reason", ""), blocking.get("message", ""), stamp))
    elif all(c["status"] == "True" for c in conds):
        conds.append(_cond("Ready", "True", "", "", stamp))
    else:
        conds.append(_cond("Ready", "Unknown", "", "", stamp))
    for c in conds:
        prev = old_conds.get(c["type"])
        if prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev["lastTransitionTime"]
    status["conditions"] = sorted(conds, key=lambda c: c["type"])
    return status
