"""Field validation for the kinds we serve, with the real apiserver's field paths and messages
(pkg/apis/core/validation/validation.go, pkg/apis/apps/validation, pkg/apis/autoscaling/validation,
pkg/apis/networking/validation). Only the fields our workloads use are checked.

A cause is ``(reason, field, message)`` as in ``metav1.StatusCause``.
"""

from __future__ import annotations

import json
from typing import Any

from ack_sandbox.k8s import meta

Cause = tuple[str, str, str]


def required(field: str, detail: str = "") -> Cause:
    return ("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value: Any, detail: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {_go_repr(value)}: {detail}")


def unsupported(field: str, value: Any, allowed: list[str]) -> Cause:
    return (
        "FieldValueNotSupported",
        field,
        f"Unsupported value: {_go_repr(value)}: supported values: " + ", ".join(f'"{a}"' for a in allowed),
    )


def forbidden(field: str, detail: str) -> Cause:
    return ("FieldValueForbidden", field, f"Forbidden: {detail}")


def _go_repr(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def labels(path: str, values: dict[str, Any] | None) -> list[Cause]:
    out: list[Cause] = []
    for k, v in (values or {}).items():
        name = k.rsplit("/", 1)[-1]
        if not name or len(name) > 63 or not (name[0].isalnum() and name[-1].isalnum()):
            out.append(
                invalid(
                    path,
                    k,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character",
                )
            )
        if not isinstance(v, str):
            out.append(invalid(f"{path}.{k}", v, "must be a string"))
        elif len(v) > 63 or (v and not (v[0].isalnum() and v[-1].isalnum())):
            out.append(
                invalid(
                    path,
                    v,
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return out


def object_meta(obj: dict[str, Any], name_rule: meta.NameRule) -> list[Cause]:
    md = obj.get("metadata") or {}
    out: list[Cause] = []
    name = md.get("name")
    if not name:
        if not md.get("generateName"):
            out.append(required("metadata.name", "name or generateName is required"))
    else:
        for msg in name_rule(name):
            out.append(invalid("metadata.name", name, msg))
    out += labels("metadata.labels", md.get("labels"))
    for ref_i, ref in enumerate(md.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                out.append(invalid(f"metadata.ownerReferences[{ref_i}].{f}", ref.get(f, ""), f"{f} must not be empty"))
    return out


def _containers(path: str, containers: list[dict[str, Any]] | None, need_one: bool) -> list[Cause]:
    out: list[Cause] = []
    if need_one and not containers:
        out.append(required(path))
    seen = set()
    for i, c in enumerate(containers or []):
        p = f"{path}[{i}]"
        name = c.get("name")
        if not name:
            out.append(required(f"{p}.name"))
        else:
            out += [invalid(f"{p}.name", name, m) for m in meta.dns1123_label_errors(name)]
            if name in seen:
                out.append(("FieldValueDuplicate", f"{p}.name", f"Duplicate value: {_go_repr(name)}"))
            seen.add(name)
        if not c.get("image"):
            out.append(required(f"{p}.image"))
        for j, port in enumerate(c.get("ports") or []):
            cp = port.get("containerPort")
            if not isinstance(cp, int) or not 1 <= cp <= 65535:
                out.append(invalid(f"{p}.ports[{j}].containerPort", cp, "must be between 1 and 65535, inclusive"))
    return out


def pod_spec(path: str, spec: dict[str, Any] | None) -> list[Cause]:
    spec = spec or {}
    out = _containers(f"{path}.containers", spec.get("containers"), True)
    out += _containers(f"{path}.initContainers", spec.get("initContainers"), False)
    vols = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        if not vol.get("name"):
            out.append(required(f"{path}.volumes[{i}].name"))
        vols.add(vol.get("name"))
    for i, c in enumerate(spec.get("containers") or []):
        for j, vm in enumerate(c.get("volumeMounts") or []):
            if vm.get("name") not in vols:
                out.append(
                    (
                        "FieldValueNotFound",
                        f"{path}.containers[{i}].volumeMounts[{j}].name",
                        f"Not found: {_go_repr(vm.get('name'))}",
                    )
                )
            if not vm.get("mountPath"):
                out.append(required(f"{path}.containers[{i}].volumeMounts[{j}].mountPath"))
    policy = spec.get("restartPolicy")
    if policy not in ("Always", "OnFailure", "Never"):
        out.append(unsupported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    return out


def pod(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    out = pod_spec("spec", obj.get("spec"))
    if old is not None:
        # Pod updates may not change fields other than images, activeDeadlineSeconds, tolerations (additions).
        def strip(spec: dict[str, Any]) -> dict[str, Any]:
            s = json.loads(json.dumps(spec))
            for c in s.get("containers") or []:
                c.pop("image", None)
            for c in s.get("initContainers") or []:
                c.pop("image", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
            if not old.get("spec", {}).get("nodeName"):
                s.pop("nodeName", None)
            return s

        if strip(obj.get("spec", {})) != strip(old.get("spec", {})):
            out.append(
                forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)",
                )
            )
    return out


def _selector_matches_template(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        out.append(required("spec.selector"))
        out.append(invalid("spec.selector", sel or {}, "empty selector is invalid for deployment"))
        return out
    tlabels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    if not meta.labels_match(meta.selector_from_label_selector(sel), tlabels):
        out.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    if old is not None and old.get("spec", {}).get("selector") != sel:
        out.append(invalid("spec.selector", sel, "field is immutable"))
    return out


def _replicas(spec: dict[str, Any]) -> list[Cause]:
    r = spec.get("replicas")
    if r is not None and (not isinstance(r, int) or r < 0):
        return [invalid("spec.replicas", r, "must be greater than or equal to 0")]
    return []


def deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    return (
        _selector_matches_template(obj, old)
        + _replicas(spec)
        + pod_spec("spec.template.spec", (spec.get("template") or {}).get("spec"))
    )


replicaset = deployment


def service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        out.append(unsupported("spec.type", stype, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]))
    ports = spec.get("ports") or []
    if stype != "ExternalName" and not ports and spec.get("clusterIP") != "None":
        out.append(required("spec.ports"))
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            out.append(invalid(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not p.get("name"):
            out.append(required(f"spec.ports[{i}].name"))
    if old is not None:
        oip = old.get("spec", {}).get("clusterIP")
        if oip and spec.get("clusterIP") not in (oip, None, "") and stype != "ExternalName":
            out.append(invalid("spec.clusterIPs[0]", [spec.get("clusterIP")], "may not change once set"))
    return out


_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _access_modes(path: str, modes: list[str] | None) -> list[Cause]:
    if not modes:
        return [required(path, "at least 1 access mode is required")]
    return [unsupported(path, m, _ACCESS_MODES) for m in modes if m not in _ACCESS_MODES]


def pvc(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out = _access_modes("spec.accessModes", spec.get("accessModes"))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        out.append(required("spec.resources[storage]"))
    if old is not None:

        def strip(s: dict[str, Any]) -> dict[str, Any]:
            s = json.loads(json.dumps(s))
            s.get("resources", {}).pop("requests", None)
            s.pop("volumeAttributesClassName", None)
            if not (old.get("spec") or {}).get("volumeName"):
                s.pop("volumeName", None)  # the binder fills it once
            return s

        if strip(spec) != strip(old.get("spec") or {}):
            out.append(
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims",
                )
            )
    return out


_PV_SOURCES = ("csi", "hostPath", "nfs", "local", "flexVolume", "awsElasticBlockStore", "gcePersistentDisk")


def pv(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out = _access_modes("spec.accessModes", spec.get("accessModes"))
    if not (spec.get("capacity") or {}).get("storage"):
        out.append(required("spec.capacity", "must specify a capacity"))
    sources = [s for s in _PV_SOURCES if s in spec]
    if not sources:
        out.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        out.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    csi = spec.get("csi")
    if csi is not None:
        if not csi.get("driver"):
            out.append(required("spec.csi.driver"))
        if not csi.get("volumeHandle"):
            out.append(required("spec.csi.volumeHandle"))
    if old is not None:
        osrc = {k: (old.get("spec") or {}).get(k) for k in _PV_SOURCES}
        if osrc != {k: spec.get(k) for k in _PV_SOURCES}:
            out.append(
                forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation")
            )
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy not in ("Retain", "Delete", "Recycle"):
        out.append(unsupported("spec.persistentVolumeReclaimPolicy", policy, ["Delete", "Recycle", "Retain"]))
    return out


def hpa(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        out.append(required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        out.append(required("spec.scaleTargetRef.name"))
    mx, mn = spec.get("maxReplicas"), spec.get("minReplicas")
    if not isinstance(mx, int) or mx < 1:
        out.append(invalid("spec.maxReplicas", mx, "must be greater than or equal to 1"))
    elif isinstance(mn, int) and mn > mx:
        out.append(invalid("spec.minReplicas", mn, "must be less than or equal to maxReplicas"))
    if isinstance(mn, int) and mn < 1:
        out.append(invalid("spec.minReplicas", mn, "must be greater than or equal to 1"))
    for i, m in enumerate(spec.get("metrics") or []):
        t = m.get("type")
        if t not in ("Object", "Pods", "Resource", "ContainerResource", "External"):
            out.append(
                unsupported(
                    f"spec.metrics[{i}].type", t, ["ContainerResource", "External", "Object", "Pods", "Resource"]
                )
            )
        elif t == "External":
            ext = m.get("external") or {}
            if not (ext.get("metric") or {}).get("name"):
                out.append(required(f"spec.metrics[{i}].external.metric.name", "must specify a metric name"))
            if not (ext.get("target") or {}).get("type"):
                out.append(required(f"spec.metrics[{i}].external.target.type", "must specify a metric target type"))
    return out


def ingress(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    if not spec.get("rules") and not spec.get("defaultBackend"):
        out.append(invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    for i, rule in enumerate(spec.get("rules") or []):
        for j, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            p = f"spec.rules[{i}].http.paths[{j}]"
            if not path.get("pathType"):
                out.append(required(f"{p}.pathType", "pathType must be specified"))
            elif path["pathType"] not in ("Exact", "Prefix", "ImplementationSpecific"):
                out.append(
                    unsupported(f"{p}.pathType", path["pathType"], ["Exact", "ImplementationSpecific", "Prefix"])
                )
            if not path.get("backend"):
                out.append(required(f"{p}.backend"))
    return out


def data_keys(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    import re

    out: list[Cause] = []
    for field in ("data", "stringData", "binaryData"):
        for k in obj.get(field) or {}:
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                out.append(
                    invalid(
                        f"{field}[{k}]",
                        k,
                        "a valid config key must consist of alphanumeric characters, "
                        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                        "validation is '[-._a-zA-Z0-9]+')",
                    )
                )
    if (
        old is not None
        and old.get("immutable")
        and (obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"))
    ):
        out.append(forbidden("data", "field is immutable when `immutable` is set"))
    return out


def crd(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    out: list[Cause] = []
    for f in ("plural", "kind"):
        if not names.get(f):
            out.append(required(f"spec.names.{f}"))
    if not spec.get("group"):
        out.append(required("spec.group"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(unsupported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    if not spec.get("versions"):
        out.append(
            invalid("spec.versions", spec.get("versions"), "must have exactly one version marked as storage version")
        )
    want = f"{names.get('plural')}.{spec.get('group')}"
    name = (obj.get("metadata") or {}).get("name")
    if name and names.get("plural") and spec.get("group") and name != want:
        out.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    return out
