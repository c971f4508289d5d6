"""What the Seldon Core v1 operator derives from a SeldonDeployment (pure logic, no I/O).

Checked against SeldonIO/seldon-core ``operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go``
(GetDeploymentName, GetPredictorKey, GetContainerServiceName, labels, PREDICTIVE_UNIT_* env names) and
``operator/controllers/seldondeployment_controller.go`` / ``seldondeployment_engine.go`` (createComponents,
createHpa, createDeployments readiness, executor container, status):

- Deployment ``<sdep>-<predictor>-<i>-<containers joined by '-'>`` (``seldon-<md5>`` when over 63 chars);
  the executor ``seldon-container-engine`` (REST 8000, gRPC 5001, ``/ready`` and ``/live`` probes) is
  added to the pod that holds the graph's root unit, and gets the predictor as base64 JSON in
  ``ENGINE_PREDICTOR``; unit containers get ``PREDICTIVE_UNIT_*`` env (HTTP 9000, gRPC 9500) and, unless
  they set their own, ``createContainerService``'s TCP readiness (20 s delay) / liveness (60 s) probes on 9000
  and the preStop ``/bin/sh -c "/bin/sleep 10"``; the executor's preStop ``curl 127.0.0.1:8000/pause;
  /bin/sleep 10`` makes its ``/ready`` fail before SIGTERM. Containers outside the graph (the seed's TF
  Serving sidecar) get neither: they are signalled as soon as the pod is deleted, as on a real cluster (TF
  Serving ignores SIGTERM and serves until the grace period's SIGKILL).
- Deployment strategy RollingUpdate with ``maxUnavailable: 0`` (the operator's ``IntOrString{StrVal: "10%"}``
  has type Int) and the default ``maxSurge: 25%``: a rolling update never goes below the desired ready
  replicas.
- Services: the predictor ``<sdep>-<predictor>`` (http 8000, grpc 5001, selector ``seldon-app``) and one
  per graph unit ``<sdep>-<predictor>-<container>`` (http 9000, grpc 9500, selector ``seldon-app-svc``).
- HPA (autoscaling/v2) named after the Deployment; ``hpaSpec.metrics`` (v2beta1) converted like
  ConvertMetricSpecSlice, ``hpaSpec.metricsv2`` taken as is; ``metrics`` wins when both are set.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

LABEL_SELDON_ID = "seldon-deployment-id"
LABEL_SELDON_APP = "seldon-app"
LABEL_SELDON_APP_SVC = "seldon-app-svc"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "seldon-core"
ANNOTATION_SVC_NAME = "seldon.io/svc-name"

ENGINE_CONTAINER = "seldon-container-engine"
ENGINE_IMAGE = "docker.io/seldonio/seldon-core-executor:1.18.2"
ENGINE_HTTP_PORT = 8000
ENGINE_GRPC_PORT = 5001
UNIT_HTTP_PORT = 9000
UNIT_GRPC_PORT = 9500
UNIT_METRICS_PORT = 6000

PREDICTION_PATHS = {
    "seldon": "/api/v1.0/predictions",
    "tensorflow": "/v1/models/{graph}:predict",
    "kfserving": "/v2/models/{graph}/infer",
    "v2": "/v2/models/{graph}/infer",
}


class SeldonSpecError(ValueError):
    """The SeldonDeployment cannot be reconciled; the message becomes ``status.description``."""


def _hash(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _limit(name: str) -> str:
    return name if len(name) <= 63 else "seldon-" + _hash(name)


def deployment_name(sdep: str, predictor: str, index: int, component: dict) -> str:
    """GetDeploymentName."""
    meta_name = (component.get("metadata") or {}).get("name")
    containers = (component.get("spec") or {}).get("containers") or []
    suffix = meta_name or "-".join(c["name"] for c in containers)
    return _limit(f"{sdep}-{predictor}-{index}-{suffix}")


def predictor_service_name(sdep: str, predictor: dict) -> str:
    """GetPredictorKey."""
    custom = (predictor.get("annotations") or {}).get(ANNOTATION_SVC_NAME)
    return custom or _limit(f"{sdep}-{predictor['name']}")


def unit_service_name(sdep: str, predictor: str, container: str) -> str:
    """GetContainerServiceName."""
    return _limit(f"{sdep}-{predictor}-{container}")


# ------------------------------------------------------------------------------------------- HPA metrics
def _qty(value: Any) -> str:
    return value if isinstance(value, str) else (str(int(value)) if float(value).is_integer() else str(value))


def convert_metric_v2beta1(m: dict) -> dict:
    """One autoscaling/v2beta1 MetricSpec -> autoscaling/v2 (k8s pkg/apis/autoscaling conversion)."""
    mtype = m.get("type")
    if mtype == "External":
        e = m.get("external") or {}
        metric = {"name": e.get("metricName")}
        if e.get("metricSelector") is not None:
            metric["selector"] = e["metricSelector"]
        if e.get("targetValue") is not None:
            target = {"type": "Value", "value": _qty(e["targetValue"])}
        else:
            target = {"type": "AverageValue", "averageValue": _qty(e.get("targetAverageValue"))}
        return {"type": "External", "external": {"metric": metric, "target": target}}
    if mtype == "Resource":
        r = m.get("resource") or {}
        if r.get("targetAverageUtilization") is not None:
            target = {"type": "Utilization", "averageUtilization": int(r["targetAverageUtilization"])}
        else:
            target = {"type": "AverageValue", "averageValue": _qty(r.get("targetAverageValue"))}
        return {"type": "Resource", "resource": {"name": r.get("name"), "target": target}}
    if mtype == "Pods":
        p = m.get("pods") or {}
        metric = {"name": p.get("metricName"), **({"selector": p["selector"]} if p.get("selector") else {})}
        return {
            "type": "Pods",
            "pods": {
                "metric": metric,
                "target": {"type": "AverageValue", "averageValue": _qty(p.get("targetAverageValue"))},
            },
        }
    if mtype == "Object":
        o = m.get("object") or {}
        metric = {"name": o.get("metricName"), **({"selector": o["selector"]} if o.get("selector") else {})}
        if o.get("averageValue") is not None:
            target = {"type": "AverageValue", "averageValue": _qty(o["averageValue"])}
        else:
            target = {"type": "Value", "value": _qty(o.get("targetValue"))}
        return {"type": "Object", "object": {"describedObject": o.get("target"), "metric": metric, "target": target}}
    raise SeldonSpecError(f"hpaSpec.metrics: unsupported metric type {mtype!r} (External, Resource, Pods or Object)")


def hpa_metrics(hpa_spec: dict) -> list[dict]:
    if hpa_spec.get("metrics"):
        return [convert_metric_v2beta1(m) for m in hpa_spec["metrics"]]
    return copy.deepcopy(hpa_spec.get("metricsv2") or [])


# ------------------------------------------------------------------------------------------- graph
def graph_units(unit: dict) -> list[dict]:
    out = [unit]
    for child in unit.get("children") or []:
        out.extend(graph_units(child))
    return out


def validate(sdep: dict) -> None:
    """The checks of Seldon's validating webhook that a reconcile depends on (names the failing field)."""
    spec = sdep.get("spec") or {}
    predictors = spec.get("predictors") or []
    if not predictors:
        raise SeldonSpecError("spec.predictors: Required value: at least one predictor is needed")
    seen: set[str] = set()
    for i, p in enumerate(predictors):
        name = p.get("name")
        if not name:
            raise SeldonSpecError(f"spec.predictors[{i}].name: Required value")
        if name in seen:
            raise SeldonSpecError(f'spec.predictors[{i}].name: Invalid value: "{name}": Duplicate predictor name')
        seen.add(name)
        if not p.get("graph") or not p["graph"].get("name"):
            raise SeldonSpecError(f"spec.predictors[{i}].graph.name: Required value")
        containers = {
            c.get("name")
            for cs in p.get("componentSpecs") or []
            for c in (cs.get("spec") or {}).get("containers") or []
        }
        for unit in graph_units(p["graph"]):
            if unit.get("name") not in containers and not unit.get("implementation"):
                raise SeldonSpecError(
                    f'spec.predictors[{i}].graph: Invalid value: "{unit.get("name")}": '
                    f"Can't find container for Predictive Unit; graph.name must match a container "
                    f"name in componentSpecs (have: {', '.join(sorted(c for c in containers if c)) or 'none'})"
                )


def _replicas(spec: dict, predictor: dict, component: dict) -> int:
    for src in (component, predictor, spec):
        if src.get("replicas") is not None:
            return int(src["replicas"])
    return 1


def _env_set(container: dict, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    if not any(e.get("name") == name for e in env):
        env.append({"name": name, "value": value})


def _engine_predictor(predictor: dict) -> dict:
    """The predictor as the executor reads it: every unit's endpoint filled in (localhost, 9000/9500).

    Without ``replicas`` and ``explainer``, as the operator's ``getEngineVarJson`` leaves them out (seldon-core
    issue #2008, PR #2016): otherwise a change of replicas alone changes the pod template and rolls every pod."""
    p = copy.deepcopy(predictor)
    p.pop("replicas", None)
    p.pop("explainer", None)
    for unit in graph_units(p["graph"]):
        ep = unit.setdefault("endpoint", {})
        ep.setdefault("type", "REST")
        ep["service_host"] = "localhost"
        ep["service_port"] = UNIT_HTTP_PORT if ep["type"] == "REST" else UNIT_GRPC_PORT
        ep["httpPort"] = UNIT_HTTP_PORT
        ep["grpcPort"] = UNIT_GRPC_PORT
    return p


def engine_container(sdep: dict, predictor: dict, image: str = ENGINE_IMAGE) -> dict:
    meta, spec = sdep["metadata"], sdep.get("spec") or {}
    encoded = base64.b64encode(json.dumps(_engine_predictor(predictor), separators=(",", ":")).encode()).decode()
    probe = {
        "initialDelaySeconds": 20,
        "periodSeconds": 5,
        "failureThreshold": 3,
        "successThreshold": 1,
        "timeoutSeconds": 60,
    }
    container = {
        "name": ENGINE_CONTAINER,
        "image": image,
        "args": [
            "--sdep",
            meta["name"],
            "--namespace",
            meta.get("namespace", "default"),
            "--predictor",
            predictor["name"],
            "--http_port",
            str(ENGINE_HTTP_PORT),
            "--grpc_port",
            str(ENGINE_GRPC_PORT),
            "--protocol",
            spec.get("protocol") or "seldon",
            "--transport",
            spec.get("transport") or "rest",
            "--prometheus_path",
            "/prometheus",
            "--server_type",
            spec.get("serverType") or "rpc",
            "--log_work_buffer_size",
            "10000",
            "--log_write_timeout_ms",
            "2000",
            "--full_health_checks=false",
        ],
        "env": [
            {"name": "ENGINE_PREDICTOR", "value": encoded},
            {"name": "REQUEST_LOGGER_DEFAULT_ENDPOINT", "value": "http://default-broker"},
        ],
        "ports": [
            {"name": "http", "containerPort": ENGINE_HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": ENGINE_GRPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": ENGINE_HTTP_PORT, "scheme": "HTTP"}, **probe},
        "livenessProbe": {"httpGet": {"path": "/live", "port": ENGINE_HTTP_PORT, "scheme": "HTTP"}, **probe},
        "resources": predictor.get("engineResources") or {"requests": {"cpu": "100m"}},
        "securityContext": {"runAsUser": 8888},
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "curl 127.0.0.1:8000/pause; /bin/sleep 10"]}}},
    }
    return container


# ------------------------------------------------------------------------------------------- components
@dataclass
class Components:
    deployments: list[dict] = field(default_factory=list)
    services: list[dict] = field(default_factory=list)
    hpas: list[dict] = field(default_factory=list)
    service_status: dict[str, dict] = field(default_factory=dict)
    default_deployment: str = ""
    address: str = ""
    hpa_targets: set[str] = field(default_factory=set)  # deployments an HPA scales (replicas left to it)


def build(sdep: dict, engine_image: str = ENGINE_IMAGE) -> Components:
    """createComponents: the Deployments, Services and HPAs of every predictor (objects without ownerRefs)."""
    validate(sdep)
    meta, spec = sdep["metadata"], sdep.get("spec") or {}
    name, ns = meta["name"], meta.get("namespace", "default")
    seldon_id = _limit(name)
    out = Components()
    for p_index, predictor in enumerate(spec["predictors"]):
        pname = predictor["name"]
        psvc = predictor_service_name(name, predictor)
        root = predictor["graph"]["name"]
        unit_names = {u["name"] for u in graph_units(predictor["graph"])}
        params_by_unit = {u["name"]: u.get("parameters") or [] for u in graph_units(predictor["graph"])}
        for c_index, component in enumerate(predictor.get("componentSpecs") or []):
            pod_spec = copy.deepcopy(component.get("spec") or {})
            containers = pod_spec.get("containers") or []
            if not containers:
                continue
            dep_name = deployment_name(name, pname, c_index, component)
            has_engine = any(c["name"] == root for c in containers)
            labels = {
                LABEL_SELDON_ID: seldon_id,
                "app": dep_name,
                LABEL_MANAGED_BY: MANAGED_BY,
                **(predictor.get("labels") or {}),
            }
            tmpl_labels = dict(labels)
            if has_engine:
                tmpl_labels[LABEL_SELDON_APP] = psvc
                labels[LABEL_SELDON_APP] = psvc
            for c in containers:
                if c["name"] not in unit_names:
                    continue
                svc_name = unit_service_name(name, pname, c["name"])
                tmpl_labels[LABEL_SELDON_APP_SVC] = svc_name
                for key, value in (
                    ("PREDICTIVE_UNIT_SERVICE_PORT", UNIT_HTTP_PORT),
                    ("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", UNIT_HTTP_PORT),
                    ("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", UNIT_GRPC_PORT),
                    ("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", UNIT_METRICS_PORT),
                    ("PREDICTIVE_UNIT_METRICS_ENDPOINT", "/prometheus"),
                    ("PREDICTIVE_UNIT_PARAMETERS", json.dumps(params_by_unit[c["name"]], separators=(",", ":"))),
                    ("PREDICTIVE_UNIT_ID", c["name"]),
                    ("PREDICTIVE_UNIT_IMAGE", c.get("image", "")),
                    ("PREDICTOR_ID", pname),
                    ("PREDICTOR_LABELS", json.dumps(predictor.get("labels") or {}, separators=(",", ":"))),
                    ("SELDON_DEPLOYMENT_ID", seldon_id),
                    ("SELDON_EXECUTOR_ENABLED", "true"),
                ):
                    _env_set(c, key, str(value))
                ports = c.setdefault("ports", [])
                if not any(pt.get("containerPort") == UNIT_HTTP_PORT for pt in ports):
                    ports.append({"containerPort": UNIT_HTTP_PORT, "protocol": "TCP"})
                # createContainerService: a unit container without its own probes / lifecycle gets the
                # operator's TCP probes on its port and a preStop sleep, so it outlives its endpoint removal
                tcp = {"tcpSocket": {"port": UNIT_HTTP_PORT}, "periodSeconds": 5, "successThreshold": 1}
                c.setdefault(
                    "livenessProbe", {**tcp, "initialDelaySeconds": 60, "failureThreshold": 3, "timeoutSeconds": 1}
                )
                c.setdefault(
                    "readinessProbe", {**tcp, "initialDelaySeconds": 20, "failureThreshold": 3, "timeoutSeconds": 1}
                )
                c.setdefault("lifecycle", {"preStop": {"exec": {"command": ["/bin/sh", "-c", "/bin/sleep 10"]}}})
                out.services.append(
                    _service(svc_name, ns, seldon_id, {LABEL_SELDON_APP_SVC: svc_name}, UNIT_HTTP_PORT, UNIT_GRPC_PORT)
                )
                out.service_status[svc_name] = _svc_status(svc_name, ns, UNIT_HTTP_PORT, UNIT_GRPC_PORT)
            if has_engine:
                containers.append(engine_container(sdep, predictor, engine_image))
            pod_spec.setdefault("terminationGracePeriodSeconds", 20)
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": dep_name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": _replicas(spec, predictor, component),
                    # the operator writes RollingUpdate{MaxUnavailable: &intstr.IntOrString{StrVal: "10%"}}: an
                    # IntOrString of type Int, i.e. maxUnavailable 0 on the wire (maxSurge defaults to 25%)
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                    "selector": {"matchLabels": {LABEL_SELDON_ID: seldon_id, "app": dep_name}},
                    "template": {
                        "metadata": {
                            "labels": tmpl_labels,
                            "annotations": {"prometheus.io/path": "/prometheus", "prometheus.io/scrape": "true"},
                        },
                        "spec": pod_spec,
                    },
                    **(
                        {"progressDeadlineSeconds": int(predictor["progressDeadlineSeconds"])}
                        if predictor.get("progressDeadlineSeconds") is not None
                        else {}
                    ),
                },
            }
            out.deployments.append(deployment)
            if p_index == 0 and (not out.default_deployment or has_engine):
                out.default_deployment = dep_name
            hpa_spec = component.get("hpaSpec")
            if hpa_spec:
                out.hpa_targets.add(dep_name)
                hpa: dict[str, Any] = {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": dep_name, "namespace": ns, "labels": {LABEL_SELDON_ID: seldon_id}},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep_name},
                        "maxReplicas": int(hpa_spec["maxReplicas"]),
                        "metrics": hpa_metrics(hpa_spec),
                    },
                }
                if hpa_spec.get("minReplicas") is not None:
                    hpa["spec"]["minReplicas"] = int(hpa_spec["minReplicas"])
                out.hpas.append(hpa)
        out.services.append(
            _service(
                psvc,
                ns,
                seldon_id,
                {LABEL_SELDON_APP: psvc},
                ENGINE_HTTP_PORT,
                ENGINE_GRPC_PORT,
                extra_labels={LABEL_SELDON_APP: psvc},
            )
        )
        out.service_status[psvc] = _svc_status(psvc, ns, ENGINE_HTTP_PORT, ENGINE_GRPC_PORT)
        if p_index == 0:
            protocol = spec.get("protocol") or "seldon"
            path = PREDICTION_PATHS.get(protocol, PREDICTION_PATHS["seldon"]).format(graph=root)
            out.address = f"http://{psvc}.{ns}.svc.cluster.local:{ENGINE_HTTP_PORT}{path}"
    return out


def _service(
    name: str, ns: str, seldon_id: str, selector: dict, http: int, grpc: int, extra_labels: dict | None = None
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {LABEL_SELDON_ID: seldon_id, LABEL_MANAGED_BY: MANAGED_BY, **(extra_labels or {})},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "sessionAffinity": "None",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": http, "targetPort": http},
                {"name": "grpc", "protocol": "TCP", "port": grpc, "targetPort": grpc},
            ],
        },
    }


def _svc_status(name: str, ns: str, http: int, grpc: int) -> dict:
    return {"svcName": name, "httpEndpoint": f"{name}.{ns}:{http}", "grpcEndpoint": f"{name}.{ns}:{grpc}"}


# ------------------------------------------------------------------------------------------- comparison
def contains(found: Any, desired: Any) -> bool:
    """True when every field of ``desired`` is in ``found`` with the same value (server defaults ignored).

    Plays the role of Seldon's ``equality.Semantic.DeepEqual`` after the API server's defaulting: a
    reconcile rewrites an object only when something it owns really changed, so nothing is bumped
    (generation, resourceVersion) by a no-op.
    """
    if isinstance(desired, dict):
        return isinstance(found, dict) and all(contains(found.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(found, list)
            and len(found) == len(desired)
            and all(contains(f, d) for f, d in zip(found, desired))
        )
    if isinstance(desired, (int, float)) and isinstance(found, str):
        return str(desired) == found
    return found == desired


# ------------------------------------------------------------------------------------------- status
def _cond(ctype: str, ok: bool | None, reason: str = "", message: str = "", stamp: str = "") -> dict:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    out = {"type": ctype, "status": status, "lastTransitionTime": stamp}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def deployment_ready(dep: dict | None) -> bool:
    """createDeployments: a Deployment is ready unless readyReplicas == 0 or unavailableReplicas > 0."""
    if dep is None:
        return False
    st = dep.get("status") or {}
    if int(st.get("observedGeneration") or 0) < int(dep["metadata"].get("generation") or 0):
        return False
    return int(st.get("readyReplicas") or 0) > 0 and int(st.get("unavailableReplicas") or 0) == 0


def deployment_failed(dep: dict | None) -> bool:
    """Progress deadline exceeded and still not available: Seldon reports the SeldonDeployment Failed."""
    if dep is None:
        return False
    conds = {c.get("type"): c for c in (dep.get("status") or {}).get("conditions") or []}
    prog, avail = conds.get("Progressing") or {}, conds.get("Available") or {}
    return (
        prog.get("status") == "False"
        and prog.get("reason") == "ProgressDeadlineExceeded"
        and avail.get("status") != "True"
    )


FAILED_PROGRESS = "Deployment is no longer progressing and not available."


def compute_status(
    comps: Components | None,
    deployments: dict[str, dict | None],
    services_ready: bool,
    old_status: dict,
    stamp: str,
    error: str | None = None,
) -> dict:
    """The SeldonDeployment ``status`` after a reconcile (state, description, per-object status, conditions).

    Conditions follow the knative duck type Seldon uses (sorted by type, ``Ready`` aggregating the
    others); a condition keeps its ``lastTransitionTime`` while its status does not change.
    """
    old_conds = {c.get("type"): c for c in old_status.get("conditions") or []}
    status: dict[str, Any] = {}
    if comps is not None:
        status["deploymentStatus"] = {
            name: {
                "replicas": int(((dep or {}).get("status") or {}).get("replicas") or 0),
                "availableReplicas": int(((dep or {}).get("status") or {}).get("availableReplicas") or 0),
            }
            for name, dep in deployments.items()
        }
        status["serviceStatus"] = comps.service_status
        default = deployments.get(comps.default_deployment)
        status["replicas"] = int(((default or {}).get("status") or {}).get("replicas") or 0)
        status["address"] = {"url": comps.address}
    conds: list[dict] = []
    deps_ready = bool(deployments) and all(deployment_ready(d) for d in deployments.values())
    failed_dep = next((n for n, d in deployments.items() if deployment_failed(d)), None)
    if comps is not None:
        first_unready = next((d for d in deployments.values() if not deployment_ready(d)), None)
        avail = next(
            (
                c
                for c in ((first_unready or next(iter(deployments.values()), None) or {}).get("status") or {}).get(
                    "conditions"
                )
                or []
                if c.get("type") == "Available"
            ),
            {},
        )
        conds.append(
            _cond(
                "DeploymentsReady",
                deps_ready,
                avail.get("reason", "" if deps_ready else "DeploymentsNotReady"),
                avail.get("message", ""),
                stamp,
            )
        )
        conds.append(
            _cond("HpasReady", True, "All HPAs resources ready" if comps.hpas else "No HPAs defined", "", stamp)
        )
        conds.append(_cond("KedaReady", True, "No KEDA resources defined", "", stamp))
        conds.append(_cond("PdbsReady", True, "No PDBs defined", "", stamp))
        conds.append(
            _cond(
                "ServicesReady",
                services_ready,
                "All services created" if services_ready else "Not all services created",
                "",
                stamp,
            )
        )
    dependents_ok = comps is not None and deps_ready and services_ready
    if error is not None:
        state, description = "Failed", error
    elif failed_dep is not None:
        state, description = "Failed", FAILED_PROGRESS
    elif dependents_ok:
        state, description = "Available", ""
    else:
        state, description = "Creating", ""
    blocking = next((c for c in conds if c["status"] != "True"), None)
    if error is not None:
        conds.append(_cond("Ready", False, "ReconcileError", error, stamp))
    elif blocking is None and conds:
        conds.append(_cond("Ready", True, "", "", stamp))
    else:
        conds.append(
            _cond("Ready", False, (blocking or {}).get("reason", ""), (blocking or {}).get("message", ""), stamp)
        )
    for c in conds:
        old = old_conds.get(c["type"])
        if old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime"):
            c["lastTransitionTime"] = old["lastTransitionTime"]
    status["conditions"] = sorted(conds, key=lambda c: c["type"])
    status["state"] = state
    if description:
        status["description"] = description
    return status
