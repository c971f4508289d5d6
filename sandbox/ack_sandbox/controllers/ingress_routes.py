"""ingress-nginx's routing table: routes built from Ingress/Service/Pod objects, and request matching.

Pure logic, shared by the controller in the daemon (``ingress.py``, which builds the table) and the proxy
process (``ingress_proxy.py``, which matches requests against it).

Routing follows ingress-nginx: Ingresses of class ``nginx`` or with no class (the default class) are
served; a rule with a host matches that ``Host`` (wildcards ``*.example.com`` match one label); a
request whose host matches no rule uses the host-less rules; paths ``Exact`` and ``Prefix`` (element
wise, ``ImplementationSpecific`` as Prefix), longest first, Exact before Prefix. The backend Service
port maps to the targetPort of each ready pod the Service selects (Ready condition, not terminating),
round-robin.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.controllers.route_stats import route_name
from ack_sandbox.k8s.meta import labels_match, selector_from_label_selector

INGRESS_CLASS = "nginx"
Obj = dict[str, Any]


@dataclass
class Route:
    namespace: str
    ingress: str
    host: str | None
    path: str
    path_type: str
    service: str
    port: int | str
    endpoints: list[str] = field(default_factory=list)  # "ip:port"
    cycle: Any = None

    @property
    def name(self) -> str:
        return route_name(self.namespace, self.service, self.port)

    @property
    def identity(self) -> tuple[Any, ...]:
        return (self.namespace, self.host, self.path, self.path_type, self.service, self.port)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "ingress": self.ingress,
            "host": self.host,
            "path": self.path,
            "path_type": self.path_type,
            "service": self.service,
            "port": self.port,
            "endpoints": list(self.endpoints),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Route:
        return cls(
            doc["namespace"],
            doc["ingress"],
            doc.get("host"),
            doc["path"],
            doc["path_type"],
            doc["service"],
            doc["port"],
            list(doc.get("endpoints") or []),
        )

    def matches_path(self, path: str) -> bool:
        if self.path_type == "Exact":
            return path == self.path
        prefix = self.path.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")

    def next_endpoints(self) -> list[str]:
        """Every endpoint once, starting at the round-robin position."""
        if not self.endpoints:
            return []
        if self.cycle is None:
            self.cycle = itertools.cycle(range(len(self.endpoints)))
        start = next(self.cycle)
        return self.endpoints[start:] + self.endpoints[:start]


def host_matches(rule_host: str, host: str) -> bool:
    if rule_host.startswith("*."):
        suffix = rule_host[1:]
        return host.endswith(suffix) and "." not in host[: -len(suffix)]
    return rule_host == host


def served(ingress: Obj) -> bool:
    spec = ingress.get("spec") or {}
    cls = spec.get("ingressClassName") or (ingress["metadata"].get("annotations") or {}).get(
        "kubernetes.io/ingress.class"
    )
    return cls in (None, "", INGRESS_CLASS)


def ready_pod(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    st = pod.get("status") or {}
    return bool(st.get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


def target_port(pod: Obj, target: int | str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def build_routes(ingresses: list[Obj], services: list[Obj], pods: list[Obj]) -> list[Route]:
    """The routing table, most specific first."""
    svc_by_key = {(s["metadata"].get("namespace", ""), s["metadata"]["name"]): s for s in services}
    routes: list[Route] = []
    for ing in ingresses:
        if not served(ing):
            continue
        ns = ing["metadata"].get("namespace", "default")
        for rule in (ing.get("spec") or {}).get("rules") or []:
            for p in ((rule.get("http") or {}).get("paths")) or []:
                backend = (p.get("backend") or {}).get("service") or {}
                port = (backend.get("port") or {}).get("number") or (backend.get("port") or {}).get("name")
                if not backend.get("name") or port is None:
                    continue
                route = Route(
                    ns,
                    ing["metadata"]["name"],
                    rule.get("host") or None,
                    p.get("path") or "/",
                    p.get("pathType") or "Prefix",
                    backend["name"],
                    port,
                )
                svc = svc_by_key.get((ns, backend["name"]))
                if svc is not None:
                    route.endpoints = _endpoints(svc, port, [q for q in pods if q["metadata"].get("namespace") == ns])
                routes.append(route)
    routes.sort(key=lambda r: (-len(r.path), r.path_type != "Exact"))
    return routes


def _endpoints(svc: Obj, port: int | str, pods: list[Obj]) -> list[str]:
    spec = svc.get("spec") or {}
    sel = spec.get("selector")
    if not sel:
        return []
    sp = next((p for p in spec.get("ports") or [] if p.get("port") == port or p.get("name") == port), None)
    if sp is None:
        return []
    reqs = selector_from_label_selector({"matchLabels": sel})
    out = []
    for pod in sorted(pods, key=lambda q: q["metadata"]["name"]):
        if ready_pod(pod) and labels_match(reqs, pod["metadata"].get("labels")):
            tp = target_port(pod, sp.get("targetPort", sp.get("port")))
            if tp is not None:
                out.append(f"{pod['status']['podIP']}:{tp}")
    return out


class RoutingTable:
    """What the proxy consults; replaced wholesale when the controller's table changes."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.port: int = 0

    def replace(self, routes: list[Route]) -> None:
        old = {r.identity: r for r in self.routes}
        for r in routes:  # keep the round-robin position of unchanged routes
            prev = old.get(r.identity)
            if prev is not None and prev.endpoints == r.endpoints:
                r.cycle = prev.cycle
        self.routes = routes

    def match(self, host: str, path: str) -> Route | None:
        hosted = [r for r in self.routes if r.host is not None and host_matches(r.host, host)]
        for candidates in (hosted, [r for r in self.routes if r.host is None]):
            for r in candidates:
                if r.matches_path(path):
                    return r
            if hosted and candidates is hosted:
                return None  # a server block exists for the host: no fallback to the default server
        return None
