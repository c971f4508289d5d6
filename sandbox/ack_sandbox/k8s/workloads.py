"""apps/v1 StatefulSets and DaemonSets, core/v1 ReplicationControllers: defaults, validation and table rows.

Defaults: pkg/apis/apps/v1/defaults.go (StatefulSet: ``podManagementPolicy`` OrderedReady, RollingUpdate with
``partition`` 0, ``revisionHistoryLimit`` 10, PVC retention Retain/Retain; DaemonSet: RollingUpdate with
``maxUnavailable`` 1 / ``maxSurge`` 0) and pkg/apis/core/v1/defaults.go (ReplicationController: ``replicas`` 1,
``selector`` and ``labels`` from the template's labels when unset). Columns: printers.go ``printStatefulSet``,
``printDaemonSet``, ``printReplicationController``.
"""

from __future__ import annotations

from typing import Any

from ack_sandbox.k8s import meta, validation
from ack_sandbox.k8s.defaults import Allocator, _template
from ack_sandbox.k8s.tables import AGE, NAME, Column, _md, _none
from ack_sandbox.k8s.validation import Cause, invalid, required


def statefulset(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strat = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strat.get("type", "RollingUpdate") == "RollingUpdate":
        strat.setdefault("type", "RollingUpdate")
        strat.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    for t in spec.get("volumeClaimTemplates") or []:
        t.setdefault("apiVersion", "v1")
        t.setdefault("kind", "PersistentVolumeClaim")
        t.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        t.setdefault("status", {"phase": "Pending"})
    _template(obj)
    obj.setdefault("status", {}).setdefault("replicas", 0)


def daemonset(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    strat = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strat.get("type", "RollingUpdate") == "RollingUpdate":
        strat.setdefault("type", "RollingUpdate")
        ru = strat.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(obj)
    st = obj.setdefault("status", {})
    for k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"):
        st.setdefault(k, 0)


def replicationcontroller(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not spec.get("selector") and tlabels:
        spec["selector"] = dict(tlabels)
    md = obj.setdefault("metadata", {})
    if not md.get("labels") and tlabels:
        md["labels"] = dict(tlabels)
    _template(obj)
    obj.setdefault("status", {}).setdefault("replicas", 0)


def _apps(obj: dict[str, Any], old: dict[str, Any] | None, immutable: tuple[str, ...]) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    sel = spec.get("selector")
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        out.append(required("spec.selector"))
    else:
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not meta.labels_match(meta.selector_from_label_selector(sel), tlabels):
            out.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy != "Always":
        out.append(validation.unsupported("spec.template.spec.restartPolicy", policy, ["Always"]))
    out += validation.pod_spec("spec.template.spec", (spec.get("template") or {}).get("spec"))
    r = spec.get("replicas")
    if r is not None and (not isinstance(r, int) or r < 0):
        out.append(invalid("spec.replicas", r, "must be greater than or equal to 0"))
    if old is not None:
        changed = [f for f in immutable if spec.get(f) != (old.get("spec") or {}).get(f)]
        if changed and len(immutable) > 1:
            out.append(
                validation.forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                    "'minReadySeconds' are forbidden",
                )
            )
        elif changed:
            out.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return out


def validate_statefulset(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _apps(obj, old, ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy"))


def validate_daemonset(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _apps(obj, old, ("selector",))


def validate_replicationcontroller(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    sel = spec.get("selector") or {}
    out: list[Cause] = []
    if not sel:
        out.append(required("spec.selector"))
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if sel and any(tlabels.get(k) != v for k, v in sel.items()):
        out.append(invalid("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
    out += validation.pod_spec("spec.template.spec", (spec.get("template") or {}).get("spec"))
    return out


def _cs(spec: dict[str, Any]) -> tuple[str, str]:
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def statefulset_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _cs(spec)
    return [
        _md(o).get("name"),
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        meta.age(o, now),
        names,
        images,
    ]


def daemonset_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _cs(spec)
    ns = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [
        _md(o).get("name"),
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        _none(",".join(f"{k}={v}" for k, v in sorted(ns.items()))),
        meta.age(o, now),
        names,
        images,
        _none(meta.label_selector_string(spec.get("selector"))),
    ]


def rc_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _cs(spec)
    sel = spec.get("selector") or {}
    return [
        _md(o).get("name"),
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        meta.age(o, now),
        names,
        images,
        _none(",".join(f"{k}={v}" for k, v in sorted(sel.items()))),
    ]


_WIDE: list[Column] = [("Containers", "string", 1), ("Images", "string", 1)]
STATEFULSET_TABLE = ([NAME, ("Ready", "string", 0), AGE, *_WIDE], statefulset_row)
DAEMONSET_TABLE = (
    [
        NAME,
        ("Desired", "integer", 0),
        ("Current", "integer", 0),
        ("Ready", "integer", 0),
        ("Up-to-date", "integer", 0),
        ("Available", "integer", 0),
        ("Node Selector", "string", 0),
        AGE,
        *_WIDE,
        ("Selector", "string", 1),
    ],
    daemonset_row,
)
RC_TABLE = (
    [
        NAME,
        ("Desired", "integer", 0),
        ("Current", "integer", 0),
        ("Ready", "integer", 0),
        AGE,
        *_WIDE,
        ("Selector", "string", 1),
    ],
    rc_row,
)
