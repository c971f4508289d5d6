"""The nginx ingress controller: a real HTTP reverse proxy on loopback, plus Ingress status.

Service module of the daemon (``"ingress": "ack_sandbox.controllers.ingress"`` in ``server.SERVICES``):
``create_app`` is the proxy listening on the port the daemon assigns (endpoints.json ``"ingress"``),
``after_start`` starts the controller that keeps the routing table and writes every served Ingress's
``status.loadBalancer.ingress[0] = {"ip": "127.0.0.1", "ports": [{"port": <proxy port>, "protocol": "TCP"}]}``
— the real ADDRESS is the SLB IP on port 80; here clients learn the port from ``ports[0].port`` (or
endpoints.json) and send the Ingress host in the ``Host`` header.

Routing follows ingress-nginx: Ingresses of class ``nginx`` or with no class (the default class) are
served; a rule with a host matches that ``Host`` (wildcards ``*.example.com`` match one label); a
request whose host matches no rule uses the host-less rules; paths ``Exact`` and ``Prefix`` (element
wise, ``ImplementationSpecific`` as Prefix), longest first, Exact before Prefix. The backend Service
port maps to the targetPort of each ready pod the Service selects (Ready condition, not terminating),
round-robin, over a keep-alive connection pool; a connection error moves to the next endpoint
(``proxy_next_upstream error timeout``). No endpoint -> 503, no rule -> 404, upstream failure -> 502,
timeout -> 504, each with nginx's HTML body. Every proxied request is counted per route
``<namespace>-<service>-<port>`` in ``route_stats`` (what the SLS access log holds).

Admin: ``GET /.sandbox/ingress/routes`` on the proxy port lists routes, endpoints and request totals.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers.base import INGRESSES, PODS, SERVICES, Controller, Key, Kind, Obj
from ack_sandbox.controllers.route_stats import route_name, stats_of
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import labels_match, selector_from_label_selector

log = logging.getLogger("ack_sandbox.controllers.ingress")

INGRESS_CLASS = "nginx"
ADMIN_PREFIX = "/.sandbox/ingress"
UPSTREAM_TIMEOUT = 60.0  # proxy_read_timeout
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "host"}
TABLE_KEY: Key = ("", "routing-table")


def nginx_page(status: int, reason: str) -> web.Response:
    body = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    return web.Response(status=status, text=body, content_type="text/html", headers={"Server": "nginx"})


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
    cls = spec.get("ingressClassName") or (ingress["metadata"].get("annotations") or {}).get("kubernetes.io/ingress.class")
    return cls in (None, "", INGRESS_CLASS)


def ready_pod(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    st = pod.get("status") or {}
    return bool(st.get("podIP")) and any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in st.get("conditions") or [])


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
                route = Route(ns, ing["metadata"]["name"], rule.get("host") or None, p.get("path") or "/",
                              p.get("pathType") or "Prefix", backend["name"], port)
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
    """What the proxy consults; replaced wholesale by the controller."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.port: int = 0

    def replace(self, routes: list[Route]) -> None:
        old = {(r.namespace, r.host, r.path, r.path_type, r.service, r.port): r for r in self.routes}
        for r in routes:  # keep the round-robin position of unchanged routes
            prev = old.get((r.namespace, r.host, r.path, r.path_type, r.service, r.port))
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


class IngressController(Controller):
    """Rebuilds the routing table on any Ingress / Service / Pod change and writes Ingress status."""

    name = "nginx-ingress-controller"
    primary = INGRESSES
    watches = (SERVICES, PODS)
    resync = 60.0

    def __init__(self, ctx: SandboxContext, table: RoutingTable, **kw: Any) -> None:
        super().__init__(ctx, **kw)
        self.table = table

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        return [TABLE_KEY]

    async def reconcile(self, key: Key) -> float | None:
        ingresses = await self.api.list(INGRESSES)
        self.table.replace(build_routes(ingresses, await self.api.list(SERVICES), await self.api.list(PODS)))
        lb = {"ingress": [{"ip": self.ctx.host, "ports": [{"port": self.table.port, "protocol": "TCP"}]}]}
        for ing in ingresses:
            if not served(ing) or ing["metadata"].get("deletionTimestamp"):
                continue
            if (ing.get("status") or {}).get("loadBalancer") == lb:
                continue
            obj = copy.deepcopy(ing)
            obj["status"] = {"loadBalancer": lb}
            try:
                await self.api.update_status(INGRESSES, obj)
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
                return 0.5  # changed meanwhile: try again shortly
        return None


# ------------------------------------------------------------------------------------------------- proxy
class Proxy:
    def __init__(self, ctx: SandboxContext, table: RoutingTable) -> None:
        self.ctx = ctx
        self.table = table
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=60, ttl_dns_cache=None)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=5,
                                                                               sock_read=UPSTREAM_TIMEOUT))
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return self.admin(request)
        host = (request.host or "").rsplit(":", 1)[0].lower() if not (request.host or "").startswith("[") else request.host
        route = self.table.match(host, request.path)
        if route is None:
            return nginx_page(404, "Not Found")
        started = time.monotonic()
        response = await self._forward(request, route)
        stats_of(self.ctx).record(route.name, self.ctx.clock.now(), time.monotonic() - started, response.status)
        return response

    async def _forward(self, request: web.Request, route: Route) -> web.StreamResponse:
        endpoints = route.next_endpoints()
        if not endpoints:
            return nginx_page(503, "Service Temporarily Unavailable")
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = request.host or ""
        peer = request.remote or ""
        headers["X-Real-IP"] = peer
        headers["X-Forwarded-For"] = ", ".join(x for x in (request.headers.get("X-Forwarded-For"), peer) if x)
        headers["X-Forwarded-Host"] = request.host or ""
        headers["X-Forwarded-Proto"] = request.scheme
        for endpoint in endpoints[:3]:  # proxy_next_upstream_tries: a few endpoints on connection errors
            url = f"http://{endpoint}{request.rel_url}"
            try:
                async with self._session().request(request.method, url, headers=headers, data=body,
                                                   allow_redirects=False) as upstream:
                    payload = await upstream.read()
                    out = web.Response(status=upstream.status, body=payload, headers={
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
                    return out
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    return nginx_page(504, "Gateway Time-out")
                log.debug("upstream %s of %s failed: %s", endpoint, route.name, exc)
                continue
            except asyncio.TimeoutError:
                return nginx_page(504, "Gateway Time-out")
        return nginx_page(502, "Bad Gateway")

    def admin(self, request: web.Request) -> web.Response:
        totals = stats_of(self.ctx).totals()
        return web.json_response({"routes": [
            {"route": r.name, "namespace": r.namespace, "ingress": r.ingress, "host": r.host, "path": r.path,
             "pathType": r.path_type, "service": r.service, "port": r.port, "endpoints": r.endpoints,
             "requests": totals.get(r.name, 0)} for r in self.table.routes],
            "totals": totals})


def _state(ctx: SandboxContext) -> dict[str, Any]:
    return ctx.services.setdefault("ingress", {"table": RoutingTable(), "controllers": []})


def create_app(ctx: SandboxContext) -> web.Application:
    state = _state(ctx)
    proxy = Proxy(ctx, state["table"])
    state["proxy"] = proxy
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)

    async def _close(_app: web.Application) -> None:
        for ctrl in state["controllers"]:
            await ctrl.stop()
        await proxy.close()

    app.on_cleanup.append(_close)
    return app


async def after_start(ctx: SandboxContext) -> None:
    """Start the controller once the store runs and the proxy's port is known."""
    state = _state(ctx)
    url = ctx.endpoints.get("ingress", "")
    state["table"].port = int(url.rsplit(":", 1)[1]) if url else 0
    if "kubernetes" not in ctx.services:
        log.warning("ingress controller not started: no Kubernetes store in this daemon")
        return
    ctrl = IngressController(ctx, state["table"])
    await ctrl.start()
    state["controllers"].append(ctrl)
    ctrl.enqueue(TABLE_KEY)
