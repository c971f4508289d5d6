"""ingress-nginx's routing table: routes built from Ingress/Service/Pod objects, and request matching.

Pure logic, shared by the controller in the daemon (``ingress.py``, which builds the table) and the proxy
process (``ingress_proxy.py``, which matches requests against it).

Routing follows ingress-nginx: Ingresses of class ``nginx`` or with no class (the default class) are
served; a rule with a host matches that ``Host`` (wildcards ``*.example.com`` match one label); a
request whose host matches no rule uses the host-less rules; paths ``Exact`` and ``Prefix`` (element
wise, ``ImplementationSpecific`` as Prefix), longest first, Exact before Prefix. The backend Service
port maps to the targetPort of each ready pod the Service selects (Ready condition, not terminating),
round-robin.

Canary (ingress-nginx ``docs/user-guide/nginx-configuration/annotations.md#canary``; the controller's
``mergeAlternativeBackends`` and ``rootfs/etc/nginx/lua/balancer.lua`` ``route_to_alternative_balancer``):
an Ingress annotated ``nginx.ingress.kubernetes.io/canary: "true"`` makes no server or location of its own:
each of its rule paths becomes the *alternative backend* of the main (non-canary) Ingress's location with the
same host and path; a canary path with no such main location is ignored (``unable to find real backend for
alternative backend``), and only the first canary (oldest Ingress) of a location counts (the Lua balancer
uses ``alternative_backends[1]``). Per request (``use_canary``), in this order:
``canary-by-header`` (with ``canary-by-header-value``: that exact value -> canary; with
``canary-by-header-pattern`` (regex) when no value is set; otherwise ``always`` -> canary, ``never`` -> main),
other values fall through; then ``canary-by-cookie`` (``always``/``never``); then ``canary-weight`` out of
``canary-weight-total`` (default 100; used only when > 100): canary when ``random(1..total) <= weight``.
A canary backend without endpoints takes no traffic (no balancer for it: the request goes to the main
backend, whatever the header); a main backend without endpoints answers 503 even with a canary.
Attribution, as the access log has it: ``$proxy_upstream_name`` stays the main location's upstream
(``<ns>-<main service>-<port>``) for a canary request, whose own upstream is in
``$proxy_alternative_upstream_name`` (``<ns>-<canary service>-<port>``).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ack_sandbox.controllers.route_stats import route_name
from ack_sandbox.k8s.meta import labels_match, selector_from_label_selector

INGRESS_CLASS = "nginx"
Obj = dict[str, Any]

ANN = "nginx.ingress.kubernetes.io/"
CANARY = ANN + "canary"
CANARY_WEIGHT = ANN + "canary-weight"
CANARY_WEIGHT_TOTAL = ANN + "canary-weight-total"
CANARY_BY_HEADER = ANN + "canary-by-header"
CANARY_BY_HEADER_VALUE = ANN + "canary-by-header-value"
CANARY_BY_HEADER_PATTERN = ANN + "canary-by-header-pattern"
CANARY_BY_COOKIE = ANN + "canary-by-cookie"


@dataclass
class Canary:
    """The alternative backend of a location and its traffic-shaping policy (the canary Ingress's annotations)."""

    namespace: str
    ingress: str
    service: str
    port: int | str
    endpoints: list[str] = field(default_factory=list)
    weight: int = 0
    weight_total: int = 100
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""
    cycle: Any = None
    _pattern: Any = None

    @property
    def name(self) -> str:
        return route_name(self.namespace, self.service, self.port)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "ingress": self.ingress,
            "service": self.service,
            "port": self.port,
            "endpoints": list(self.endpoints),
            "weight": self.weight,
            "weight_total": self.weight_total,
            "header": self.header,
            "header_value": self.header_value,
            "header_pattern": self.header_pattern,
            "cookie": self.cookie,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Canary:
        keys = ("weight", "weight_total", "header", "header_value", "header_pattern", "cookie")
        return cls(
            doc["namespace"],
            doc["ingress"],
            doc["service"],
            doc["port"],
            list(doc.get("endpoints") or []),
            **{k: doc[k] for k in keys if k in doc},
        )

    def next_endpoints(self) -> list[str]:
        if not self.endpoints:
            return []
        if self.cycle is None:
            self.cycle = itertools.cycle(range(len(self.endpoints)))
        start = next(self.cycle)
        return self.endpoints[start:] + self.endpoints[:start]


def is_canary(ingress: Obj) -> bool:
    return (ingress["metadata"].get("annotations") or {}).get(CANARY, "").strip().lower() == "true"


def _int_annotation(annotations: dict[str, str], key: str, default: int) -> int:
    try:
        return int(str(annotations.get(key, default)).strip())
    except ValueError:
        return default  # an invalid annotation is ignored (parser error: the default applies)


def canary_policy(ingress: Obj, service: str, port: int | str) -> Canary:
    """The traffic-shaping policy of a canary Ingress (ingress-nginx ``internal/ingress/annotations/canary``)."""
    ann = ingress["metadata"].get("annotations") or {}
    weight = max(0, _int_annotation(ann, CANARY_WEIGHT, 0))
    total = _int_annotation(ann, CANARY_WEIGHT_TOTAL, 100)
    return Canary(
        ingress["metadata"].get("namespace", "default"),
        ingress["metadata"]["name"],
        service,
        port,
        weight=weight,
        weight_total=total if total > 0 else 100,
        header=str(ann.get(CANARY_BY_HEADER, "")).strip(),
        header_value=str(ann.get(CANARY_BY_HEADER_VALUE, "")),
        header_pattern=str(ann.get(CANARY_BY_HEADER_PATTERN, "")),
        cookie=str(ann.get(CANARY_BY_COOKIE, "")).strip(),
    )


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """``$cookie_<name>``: the first cookie of that name in the Cookie header."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value
    return None


def use_canary(c: Canary, headers: Mapping[str, str], rand: Any = random.randint) -> bool:
    """``route_to_alternative_balancer``: True when this request goes to the canary backend.

    ``headers`` is case-insensitive (aiohttp's CIMultiDictProxy); ``rand(a, b)`` an integer in [a, b]."""
    if not c.endpoints:
        return False  # no balancer for a backend without endpoints
    if c.header:
        value = headers.get(c.header)
        if value is not None:
            if c.header_value:
                if value == c.header_value:
                    return True
            elif c.header_pattern:
                if c._pattern is None:
                    try:
                        c._pattern = re.compile(c.header_pattern)
                    except re.error:
                        c._pattern = False
                if c._pattern and c._pattern.search(value):
                    return True
            elif value == "always":
                return True
            elif value == "never":
                return False
    if c.cookie:
        value = cookie_value(headers.get("Cookie"), c.cookie)
        if value == "always":
            return True
        if value == "never":
            return False
    if c.weight <= 0:
        return False
    total = c.weight_total if c.weight_total > 100 else 100
    return rand(1, total) <= c.weight


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
    canary: Canary | None = None

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
            "canary": self.canary.to_dict() if self.canary is not None else None,
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
            canary=Canary.from_dict(doc["canary"]) if doc.get("canary") else None,
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


def _backend(p: Obj) -> tuple[str, int | str] | None:
    backend = (p.get("backend") or {}).get("service") or {}
    port = (backend.get("port") or {}).get("number") or (backend.get("port") or {}).get("name")
    if not backend.get("name") or port is None:
        return None
    return backend["name"], port


def _creation_order(ing: Obj) -> tuple[str, str, str]:
    meta = ing["metadata"]
    return (meta.get("creationTimestamp") or "", meta.get("namespace", ""), meta["name"])


def build_routes(ingresses: list[Obj], services: list[Obj], pods: list[Obj]) -> list[Route]:
    """The routing table, most specific first (canary Ingresses merged into their main locations)."""
    svc_by_key = {(s["metadata"].get("namespace", ""), s["metadata"]["name"]): s for s in services}
    pods_by_ns: dict[str, list[Obj]] = {}
    for q in pods:
        pods_by_ns.setdefault(q["metadata"].get("namespace", ""), []).append(q)

    def endpoints(ns: str, service: str, port: int | str) -> list[str]:
        svc = svc_by_key.get((ns, service))
        return _endpoints(svc, port, pods_by_ns.get(ns, [])) if svc is not None else []

    routes: list[Route] = []
    canaries: list[Obj] = []
    for ing in sorted(ingresses, key=_creation_order):  # ingress-nginx orders Ingresses by creation time
        if not served(ing):
            continue
        if is_canary(ing):
            canaries.append(ing)
            continue
        ns = ing["metadata"].get("namespace", "default")
        for rule in (ing.get("spec") or {}).get("rules") or []:
            for p in ((rule.get("http") or {}).get("paths")) or []:
                backend = _backend(p)
                if backend is None:
                    continue
                route = Route(
                    ns,
                    ing["metadata"]["name"],
                    rule.get("host") or None,
                    p.get("path") or "/",
                    p.get("pathType") or "Prefix",
                    backend[0],
                    backend[1],
                )
                route.endpoints = endpoints(ns, *backend)
                routes.append(route)
    by_location = {(r.host, r.path): r for r in reversed(routes)}  # the first Ingress's location wins
    for ing in canaries:
        ns = ing["metadata"].get("namespace", "default")
        for rule in (ing.get("spec") or {}).get("rules") or []:
            for p in ((rule.get("http") or {}).get("paths")) or []:
                backend = _backend(p)
                main = by_location.get((rule.get("host") or None, p.get("path") or "/"))
                if backend is None or main is None or main.canary is not None:
                    continue  # no main location for it (ignored), or the location has its canary already
                if (main.namespace, main.service, main.port) == (ns, *backend):
                    continue
                canary = canary_policy(ing, *backend)
                canary.endpoints = endpoints(ns, *backend)
                main.canary = canary
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
            if (
                prev is not None
                and prev.canary is not None
                and r.canary is not None
                and prev.canary.endpoints == r.canary.endpoints
            ):
                r.canary.cycle = prev.canary.cycle
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
