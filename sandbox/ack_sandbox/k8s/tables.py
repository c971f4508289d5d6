"""Table columns (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``) as pkg/printers/internalversion/printers.go
defines them; priority 1 columns only show with ``kubectl get -o wide``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ack_sandbox.k8s import meta

Column = tuple[str, str, int]  # (name, type, priority)
RowFn = Callable[[dict[str, Any], float], list[Any]]

NAME: Column = ("Name", "string", 0)
AGE: Column = ("Age", "string", 0)


def column_definitions(cols: list[Column]) -> list[dict[str, Any]]:
    out = []
    for name, typ, prio in cols:
        d: dict[str, Any] = {
            "name": name,
            "type": typ,
            "format": "name" if name == "Name" else "",
            "description": name,
            "priority": prio,
        }
        out.append(d)
    return out


def _none(v: Any) -> str:
    return v if v else "<none>"


def _md(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def _pod_status(o: dict[str, Any]) -> tuple[str, int, int, int]:
    st = o.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Unknown"
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    for c in st.get("initContainerStatuses") or []:
        state = c.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode") == 0:
            continue
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        elif "running" in state or "waiting" in state:
            reason = f"Init:0/{len(st.get('initContainerStatuses') or [])}"
        break
    else:
        for c in reversed(cs):
            state = c.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated", {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif "terminated" in state:
                sig = state["terminated"].get("signal")
                reason = f"Signal:{sig}" if sig else f"ExitCode:{state['terminated'].get('exitCode')}"
    if _md(o).get("deletionTimestamp"):
        reason = "Terminating"
    total = len((o.get("spec") or {}).get("containers") or [])
    return reason, ready, total, restarts


def pod_row(o: dict[str, Any], now: float) -> list[Any]:
    reason, ready, total, restarts = _pod_status(o)
    st = o.get("status") or {}
    return [
        _md(o).get("name"),
        f"{ready}/{total}",
        reason,
        restarts,
        meta.age(o, now),
        _none(st.get("podIP")),
        _none((o.get("spec") or {}).get("nodeName")),
        _none(st.get("nominatedNodeName")),
        "<none>",
    ]


POD_COLS = [
    NAME,
    ("Ready", "string", 0),
    ("Status", "string", 0),
    ("Restarts", "string", 0),
    AGE,
    ("IP", "string", 1),
    ("Node", "string", 1),
    ("Nominated Node", "string", 1),
    ("Readiness Gates", "string", 1),
]


def _ports(ports: list[dict[str, Any]] | None) -> str:
    parts = []
    for p in ports or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        parts.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def service_row(o: dict[str, Any], now: float) -> list[Any]:
    spec = o.get("spec") or {}
    ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ext = ",".join(i.get("ip") or i.get("hostname", "") for i in ing)
    if not ext:
        ext = "<pending>" if spec.get("type") == "LoadBalancer" else (spec.get("externalName") or "<none>")
    sel = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        _md(o).get("name"),
        spec.get("type"),
        spec.get("clusterIP") or "<none>",
        ext,
        _ports(spec.get("ports")),
        meta.age(o, now),
        _none(sel),
    ]


SERVICE_COLS = [
    NAME,
    ("Type", "string", 0),
    ("Cluster-IP", "string", 0),
    ("External-IP", "string", 0),
    ("Port(s)", "string", 0),
    AGE,
    ("Selector", "string", 1),
]


def _containers(o: dict[str, Any]) -> tuple[str, str]:
    cs = ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def deployment_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(o)
    return [
        _md(o).get("name"),
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        meta.age(o, now),
        names,
        images,
        _none(meta.label_selector_string(spec.get("selector"))),
    ]


DEPLOYMENT_COLS = [
    NAME,
    ("Ready", "string", 0),
    ("Up-to-date", "integer", 0),
    ("Available", "integer", 0),
    AGE,
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
]


def replicaset_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(o)
    return [
        _md(o).get("name"),
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        meta.age(o, now),
        names,
        images,
        _none(meta.label_selector_string(spec.get("selector"))),
    ]


REPLICASET_COLS = [
    NAME,
    ("Desired", "integer", 0),
    ("Current", "integer", 0),
    ("Ready", "integer", 0),
    AGE,
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
]


def node_row(o: dict[str, Any], now: float) -> list[Any]:
    st = o.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (_md(o).get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [
        _md(o).get("name"),
        status,
        ",".join(roles) or "<none>",
        meta.age(o, now),
        info.get("kubeletVersion", ""),
        _none(addrs.get("InternalIP")),
        _none(addrs.get("ExternalIP")),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


NODE_COLS = [
    NAME,
    ("Status", "string", 0),
    ("Roles", "string", 0),
    AGE,
    ("Version", "string", 0),
    ("Internal-IP", "string", 1),
    ("External-IP", "string", 1),
    ("OS-Image", "string", 1),
    ("Kernel-Version", "string", 1),
    ("Container-Runtime", "string", 1),
]


def namespace_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), (o.get("status") or {}).get("phase", ""), meta.age(o, now)]


def _modes(modes: list[str] | None) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def pv_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else ""
    return [
        _md(o).get("name"),
        (spec.get("capacity") or {}).get("storage", ""),
        _modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        st.get("phase", ""),
        claim,
        spec.get("storageClassName", ""),
        _none(spec.get("volumeAttributesClassName")),
        st.get("reason", ""),
        meta.age(o, now),
        spec.get("volumeMode", ""),
    ]


PV_COLS = [
    NAME,
    ("Capacity", "string", 0),
    ("Access Modes", "string", 0),
    ("Reclaim Policy", "string", 0),
    ("Status", "string", 0),
    ("Claim", "string", 0),
    ("StorageClass", "string", 0),
    ("VolumeAttributesClass", "string", 0),
    ("Reason", "string", 0),
    AGE,
    ("VolumeMode", "string", 1),
]


def pvc_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    bound = st.get("phase") == "Bound"
    return [
        _md(o).get("name"),
        st.get("phase", ""),
        spec.get("volumeName", ""),
        (st.get("capacity") or {}).get("storage", "") if bound else "",
        _modes(st.get("accessModes")) if bound else "",
        spec.get("storageClassName") or "",
        _none(spec.get("volumeAttributesClassName")),
        meta.age(o, now),
        spec.get("volumeMode", ""),
    ]


PVC_COLS = [
    NAME,
    ("Status", "string", 0),
    ("Volume", "string", 0),
    ("Capacity", "string", 0),
    ("Access Modes", "string", 0),
    ("StorageClass", "string", 0),
    ("VolumeAttributesClass", "string", 0),
    AGE,
    ("VolumeMode", "string", 1),
]


def _hpa_targets(o: dict[str, Any]) -> str:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    current = st.get("currentMetrics") or []
    parts = []
    for i, m in enumerate(spec.get("metrics") or []):
        t = m.get("type")
        body = m.get(t[0].lower() + t[1:] if t else "", {}) or {}
        target = body.get("target") or {}
        cur_body = (current[i].get(t[0].lower() + t[1:], {}) if i < len(current) else {}) or {}
        cur = cur_body.get("current") or {}
        if target.get("type") == "Utilization":
            want, got = (
                f"{target.get('averageUtilization')}%",
                (f"{cur['averageUtilization']}%" if "averageUtilization" in cur else "<unknown>"),
            )
        elif target.get("type") == "AverageValue":
            want, got = target.get("averageValue"), cur.get("averageValue", "<unknown>")
        else:
            want, got = target.get("value"), cur.get("value", "<unknown>")
        parts.append(f"{got}/{want}" + (" (avg)" if target.get("type") == "AverageValue" and t == "External" else ""))
    return ", ".join(parts) or "<none>"


def hpa_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [
        _md(o).get("name"),
        f"{ref.get('kind')}/{ref.get('name')}",
        _hpa_targets(o),
        spec.get("minReplicas", 1),
        spec.get("maxReplicas"),
        st.get("currentReplicas", 0),
        meta.age(o, now),
    ]


HPA_COLS = [
    NAME,
    ("Reference", "string", 0),
    ("Targets", "string", 0),
    ("MinPods", "string", 0),
    ("MaxPods", "integer", 0),
    ("Replicas", "integer", 0),
    AGE,
]


def ingress_row(o: dict[str, Any], now: float) -> list[Any]:
    spec = o.get("spec") or {}
    hosts = ",".join(r.get("host", "*") or "*" for r in spec.get("rules") or []) or "*"
    ing = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addr = ",".join(i.get("ip") or i.get("hostname", "") for i in ing)
    ports = "80, 443" if spec.get("tls") else "80"
    return [_md(o).get("name"), _none(spec.get("ingressClassName")), hosts, addr, ports, meta.age(o, now)]


INGRESS_COLS = [
    NAME,
    ("Class", "string", 0),
    ("Hosts", "string", 0),
    ("Address", "string", 0),
    ("Ports", "string", 0),
    AGE,
]


def ingressclass_row(o: dict[str, Any], now: float) -> list[Any]:
    spec = o.get("spec") or {}
    params = spec.get("parameters")
    return [
        _md(o).get("name"),
        spec.get("controller", ""),
        f"{params.get('kind')}/{params.get('name')}" if params else "<none>",
        meta.age(o, now),
    ]


def event_row(o: dict[str, Any], now: float) -> list[Any]:
    last = meta.parse_time(o.get("lastTimestamp") or o.get("eventTime") or _md(o).get("creationTimestamp"))
    inv = o.get("involvedObject") or {}
    return [
        meta.human_duration(now - last) if last else "<unknown>",
        o.get("type", ""),
        o.get("reason", ""),
        f"{(inv.get('kind') or '').lower()}/{inv.get('name')}",
        o.get("message", ""),
        (o.get("source") or {}).get("component", ""),
        (inv.get("fieldPath") or ""),
        o.get("count", 1),
        _md(o).get("name"),
    ]


EVENT_COLS = [
    ("Last Seen", "string", 0),
    ("Type", "string", 0),
    ("Reason", "string", 0),
    ("Object", "string", 0),
    ("Message", "string", 0),
    ("Source", "string", 1),
    ("Subobject", "string", 1),
    ("Count", "string", 1),
    NAME,
]


def secret_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), o.get("type", ""), len(o.get("data") or {}), meta.age(o, now)]


def configmap_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), len(o.get("data") or {}) + len(o.get("binaryData") or {}), meta.age(o, now)]


def sa_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), len(o.get("secrets") or []), meta.age(o, now)]


def endpoints_row(o: dict[str, Any], now: float) -> list[Any]:
    eps = []
    for sub in o.get("subsets") or []:
        for a in sub.get("addresses") or []:
            for p in sub.get("ports") or [{}]:
                eps.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip"))
    text = ",".join(eps[:3]) + (f" + {len(eps) - 3} more..." if len(eps) > 3 else "")
    return [_md(o).get("name"), text or "<none>", meta.age(o, now)]


def endpointslice_row(o: dict[str, Any], now: float) -> list[Any]:
    ports = ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    text = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [_md(o).get("name"), o.get("addressType", ""), ports, text or "<unset>", meta.age(o, now)]


def crd_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), _md(o).get("creationTimestamp")]


def default_row(o: dict[str, Any], now: float) -> list[Any]:
    return [_md(o).get("name"), meta.age(o, now)]


TABLES: dict[str, tuple[list[Column], RowFn]] = {
    "pods": (POD_COLS, pod_row),
    "services": (SERVICE_COLS, service_row),
    "deployments": (DEPLOYMENT_COLS, deployment_row),
    "replicasets": (REPLICASET_COLS, replicaset_row),
    "nodes": (NODE_COLS, node_row),
    "namespaces": ([NAME, ("Status", "string", 0), AGE], namespace_row),
    "persistentvolumes": (PV_COLS, pv_row),
    "persistentvolumeclaims": (PVC_COLS, pvc_row),
    "horizontalpodautoscalers": (HPA_COLS, hpa_row),
    "ingresses": (INGRESS_COLS, ingress_row),
    "ingressclasses": ([NAME, ("Controller", "string", 0), ("Parameters", "string", 0), AGE], ingressclass_row),
    "events": (EVENT_COLS, event_row),
    "secrets": ([NAME, ("Type", "string", 0), ("Data", "string", 0), AGE], secret_row),
    "configmaps": ([NAME, ("Data", "string", 0), AGE], configmap_row),
    "serviceaccounts": ([NAME, ("Secrets", "string", 0), AGE], sa_row),
    "endpoints": ([NAME, ("Endpoints", "string", 0), AGE], endpoints_row),
    "endpointslices": (
        [NAME, ("AddressType", "string", 0), ("Ports", "string", 0), ("Endpoints", "string", 0), AGE],
        endpointslice_row,
    ),
    "customresourcedefinitions": ([NAME, ("Created At", "date", 0)], crd_row),
}

DEFAULT_TABLE: tuple[list[Column], RowFn] = ([NAME, AGE], default_row)


_FILTER = re.compile(r"^(\w+)\[\?\(@\.(\w+)\s*==\s*(?:'([^']*)'|\"([^\"]*)\"|(true|false|-?\d+))\)\]$")


def _simple_jsonpath(o: Any, path: str) -> Any:
    """``.a.b`` and ``.a[?(@.k=='v')].b`` (kubectl's JSONPath filter, first match): what CRD printer columns use."""
    cur: Any = o
    for part in re.findall(r"(?:[^.\[]|\[[^\]]*\])+", path):
        m = _FILTER.match(part)
        if m is None:
            cur = cur.get(part) if isinstance(cur, dict) else None
            continue
        items = cur.get(m.group(1)) if isinstance(cur, dict) else None
        key, literal = m.group(2), m.group(5)
        want: Any = m.group(3) if m.group(3) is not None else m.group(4)
        if literal is not None:
            want = {"true": True, "false": False}.get(
                literal, literal if not literal.lstrip("-").isdigit() else int(literal)
            )
        cur = next((i for i in items or [] if isinstance(i, dict) and i.get(key) == want), None)
    return cur


def printer_columns_table(columns: list[dict[str, Any]]) -> tuple[list[Column], RowFn]:
    """A CRD's ``additionalPrinterColumns`` (JSONPath of the simple ``.a.b`` form)."""
    cols: list[Column] = [NAME] + [(c["name"], c.get("type", "string"), int(c.get("priority", 0))) for c in columns]
    if not any(c["jsonPath"] == ".metadata.creationTimestamp" for c in columns):
        cols.append(AGE)

    def row(o: dict[str, Any], now: float) -> list[Any]:
        cells: list[Any] = [_md(o).get("name")]
        for c in columns:
            if c["jsonPath"] == ".metadata.creationTimestamp":
                cells.append(meta.age(o, now))
                continue
            cells.append(_simple_jsonpath(o, c["jsonPath"]))
        if len(cells) < len(cols):
            cells.append(meta.age(o, now))
        return cells

    return cols, row
