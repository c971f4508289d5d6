"""The sandbox's Kubernetes API service: the aiohttp app, the bootstrap objects and the kubeconfig.

Other modules of the daemon extend it in-process:

- ``ctx.services["kubernetes"]`` is the :class:`~ack_sandbox.k8s.store.Store` (see its module docstring).
- :func:`register_api_group` serves an aggregated API group (like an APIService), e.g. external.metrics.k8s.io:
  the handler gets every request under ``/apis/<group>/<version>/`` after authentication.
- :func:`set_log_source` answers ``pods/<name>/log`` with the containers' real output.

The outage drill (admin, bearer = the demo AccessKey ID): ``POST /_sandbox/outage`` with ``{"seconds": N}``
answers 202, then stops both of the API's listeners (plain HTTP and HTTPS) for N real seconds — connections are
refused and open watches break, as when the API server restarts or its load balancer drops it — and starts them
again on the same ports. Only the Kubernetes API goes away: controllers, kubelet, pods, CS and OSS keep running.
``GET /_sandbox/outage`` tells whether one is scheduled (reachable only before and after it).

Both may be called before or after the app starts (the router looks them up per request).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ack_sandbox.context import SandboxContext
from ack_sandbox.k8s import auth, kinds, tls
from ack_sandbox.k8s.discovery import AggregatedGroup
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.handlers import Api, protobuf_responses
from ack_sandbox.k8s.store import Store

log = logging.getLogger(__name__)
SERVICE = "kubernetes"
_AGG = "kubernetes.aggregated"
_LOGS = "kubernetes.logs"
_API = "kubernetes.api"
_TLS_RUNNER = "kubernetes.tls_runner"
HTTPS_URL = "kubernetes.https_url"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
KUBERNETES_SERVICE_IP = "172.21.0.1"  # first address of ACK's default service CIDR 172.21.0.0/20

AggregatedHandler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]
LogSource = Callable[[dict[str, Any], str, dict[str, str]], Awaitable["bytes | str | AsyncIterator[bytes]"]]


def register_api_group(
    ctx: SandboxContext, group: str, version: str, resources: list[dict[str, Any]], handler: AggregatedHandler
) -> None:
    """Serve ``/apis/<group>/<version>/...`` with ``handler(request, rest_path_parts)``.

    ``resources`` is the APIResourceList ``resources`` entries discovery shows, e.g.
    ``[{"name": "*", "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}]``.
    The request is already authenticated (``request["user"]`` is an :class:`auth.User`); ``rest_path_parts``
    is ``[]`` for the group-version root, which the handler must answer with its APIResourceList
    (:func:`resource_list_response` builds it).
    """
    registry: dict[str, AggregatedGroup] = ctx.services.setdefault(_AGG, {})
    registry[f"{group}/{version}"] = AggregatedGroup(group, version, resources, handler)


def resource_list_response(group: str, version: str, resources: list[dict[str, Any]]) -> web.Response:
    return web.json_response(
        {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}", "resources": resources}
    )


def set_log_source(ctx: SandboxContext, source: LogSource) -> None:
    """``source(pod, container, query) -> bytes | str | async iterator of bytes`` (for ``follow=true``)."""
    ctx.services.setdefault(_LOGS, {})["fn"] = source


StreamHandler = Callable[[web.Request, dict[str, Any], str], Awaitable[web.StreamResponse]]


def set_stream_handler(ctx: SandboxContext, handler: StreamHandler) -> None:
    """``handler(request, pod, "exec" | "attach" | "portforward")`` answers the pod's streaming subresources
    (the kubelet's streaming server; the request is authenticated and authorized)."""
    ctx.services.setdefault(_LOGS, {})["stream"] = handler


def api_error(exc: ApiError) -> web.Response:
    """A Status response for aggregated handlers that want the real error shape."""
    return web.json_response(exc.status(), status=exc.code)


def _bootstrap(store: Store) -> None:
    """What a fresh cluster with Seldon installed has: system namespaces, default service accounts, the
    ``kubernetes`` Service and the SeldonDeployment CRD."""
    reg = store.registry
    ns_rt, svc_rt = reg.resolve("namespaces"), reg.resolve("services")
    crd_rt = reg.resolve("customresourcedefinitions")
    manager = "kube-apiserver"
    for ns in SYSTEM_NAMESPACES:
        if ("", ns) not in store._objs.get(ns_rt.gr, {}):
            store.create_raw(
                ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None, field_manager=manager
            )
    if ("default", "kubernetes") not in store._objs.get(svc_rt.gr, {}):
        store.create_raw(
            svc_rt,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": KUBERNETES_SERVICE_IP,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                },
            },
            "default",
            field_manager=manager,
        )
    for crd in (kinds.SELDON_CRD, kinds.KSERVE_CRD):
        if ("", crd["metadata"]["name"]) not in store._objs.get(crd_rt.gr, {}):
            store.create_raw(crd_rt, crd, None, field_manager="helm")
    for key in list(store._objs.get(ns_rt.gr, {})):
        _ensure_default_sa(store, key[1])
    _bootstrap_rbac(store)


# The bootstrap policy's user-facing roles (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go), as data:
# the sandbox authorizes with its fixed two-user policy (k8s.auth), these objects only answer reads.
_ALL = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]
_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_CORE = ["pods", "services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts"]
_APPS = ["deployments", "replicasets", "statefulsets", "daemonsets"]
BOOTSTRAP_CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": _ALL,
    "admin": [
        {"apiGroups": [""], "resources": _CORE, "verbs": _READ + _WRITE},
        {"apiGroups": ["apps"], "resources": _APPS, "verbs": _READ + _WRITE},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _READ + _WRITE},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": _READ + _WRITE},
    ],
    "edit": [
        {"apiGroups": [""], "resources": _CORE, "verbs": _READ + _WRITE},
        {"apiGroups": ["apps"], "resources": _APPS, "verbs": _READ + _WRITE},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _READ + _WRITE},
    ],
    "view": [
        {"apiGroups": [""], "resources": [r for r in _CORE if r != "secrets"], "verbs": _READ},
        {"apiGroups": ["apps"], "resources": _APPS, "verbs": _READ},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _READ},
    ],
}


def _bootstrap_rbac(store: Store) -> None:
    reg = store.registry
    cr_rt, crb_rt = (
        reg.resolve("clusterroles.rbac.authorization.k8s.io"),
        reg.resolve("clusterrolebindings.rbac.authorization.k8s.io"),
    )
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    for name, rules in BOOTSTRAP_CLUSTER_ROLES.items():
        if ("", name) not in store._objs.get(cr_rt.gr, {}):
            doc = {"metadata": {"name": name, "labels": labels}, "rules": rules}
            store.create_raw(cr_rt, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", **doc}, None)
    if ("", "cluster-admin") not in store._objs.get(crb_rt.gr, {}):
        store.create_raw(
            crb_rt,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "cluster-admin", "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
            },
            None,
        )


def _ensure_default_sa(store: Store, namespace: str) -> None:
    sa_rt = store.registry.resolve("serviceaccounts")
    ns = store._objs.get(("", "namespaces"), {}).get(("", namespace))
    if ns is None or ns["metadata"].get("deletionTimestamp"):
        return
    if (namespace, "default") not in store._objs.get(sa_rt.gr, {}):
        store.create_raw(
            sa_rt,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}},
            namespace,
            field_manager="kube-controller-manager",
        )


async def _sa_loop(store: Store) -> None:
    watch = store.watch("namespaces", copy=False)
    try:
        async for etype, ns in watch:
            if etype == "ADDED":
                try:
                    _ensure_default_sa(store, ns["metadata"]["name"])
                except ApiError as exc:
                    log.debug("default service account: %s", exc)
    finally:
        watch.close()


def create_app(ctx: SandboxContext) -> web.Application:
    data = ctx.service_dir(SERVICE)
    store = Store(db_path=data / "store.sqlite", clock=ctx.clock)
    _bootstrap(store)
    ctx.services[SERVICE] = store
    authn = auth.Authenticator(data / "tokens.json")
    address = ctx.endpoints.get(SERVICE, "").removeprefix("http://")
    api = Api(store, authn, ctx.services.setdefault(_AGG, {}), ctx.services.setdefault(_LOGS, {}), address)
    app = _app(api, ctx)
    ctx.services[_API] = api

    async def background(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(_sa_loop(store))
        yield
        task.cancel()
        tls_runner = ctx.services.pop(_TLS_RUNNER, None)
        if tls_runner is not None:
            await tls_runner.cleanup()
        store.close()

    app.cleanup_ctx.append(background)
    return app


MAX_OUTAGE_SECONDS = 600


async def _outage(ctx: SandboxContext, seconds: float) -> None:
    from ack_sandbox.server import LISTENERS

    listeners = ctx.services.get(LISTENERS, {}).get(SERVICE, [])
    await asyncio.sleep(0.05)  # let the 202 reach the caller first
    log.warning("kubernetes API outage: listeners down for %.1fs", seconds)
    try:
        for listener in listeners:
            await listener.stop()
        await asyncio.sleep(seconds)
    finally:
        try:
            for listener in listeners:
                await listener.start()
            log.warning("kubernetes API outage over: listening again")
        except (OSError, RuntimeError) as exc:  # the daemon is shutting down (its runners are cleaned up)
            log.info("kubernetes API outage: not listening again (%s)", exc)
        ctx.services.pop(_OUTAGE, None)


_OUTAGE = "kubernetes.outage"


def _outage_routes(app: web.Application, ctx: SandboxContext) -> None:
    from ack_sandbox.admin import require_admin

    async def start_outage(request: web.Request) -> web.Response:
        require_admin(request, ctx)
        try:
            doc = await request.json()
            seconds = float(doc["seconds"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"message": 'send {"seconds": N}'}, status=400)
        if not 0 < seconds <= MAX_OUTAGE_SECONDS:
            return web.json_response({"message": f"seconds must be in (0, {MAX_OUTAGE_SECONDS}]"}, status=400)
        if _OUTAGE in ctx.services:
            return web.json_response({"message": "an outage is already scheduled"}, status=409)
        task = asyncio.get_running_loop().create_task(_outage(ctx, seconds))
        ctx.services[_OUTAGE] = {"task": task, "seconds": seconds}
        return web.json_response({"outage_seconds": seconds}, status=202)

    async def get_outage(request: web.Request) -> web.Response:
        require_admin(request, ctx)
        current = ctx.services.get(_OUTAGE)
        return web.json_response({"outage_seconds": current["seconds"] if current else None})

    app.router.add_post("/_sandbox/outage", start_outage)
    app.router.add_get("/_sandbox/outage", get_outage)


def _app(api: Api, ctx: SandboxContext) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[protobuf_responses])
    _outage_routes(app, ctx)
    app.router.add_route("*", "/{tail:.*}", api.dispatch)
    return app


def kubeconfig(
    server: str, admin_token: str, restricted_token: str, ca_pem: bytes | None = None, cluster: str = "ack-sandbox"
) -> dict[str, Any]:
    cluster_doc: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster_doc["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": cluster_doc}],
        "users": [
            {"name": auth.ADMIN_USER, "user": {"token": admin_token}},
            {"name": auth.RESTRICTED_USER, "user": {"token": restricted_token}},
        ],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": auth.ADMIN_USER, "namespace": "default"}},
            {
                "name": f"{cluster}-restricted",
                "context": {"cluster": cluster, "user": auth.RESTRICTED_USER, "namespace": "default"},
            },
        ],
        "current-context": cluster,
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _https_port(ctx: SandboxContext) -> int:
    """The HTTPS port, kept per state directory like the daemon's own ports."""
    from ack_sandbox.server import _free_port, _port_is_free

    port_file = ctx.service_dir(SERVICE) / "https_port"
    if port_file.exists():
        port = int(port_file.read_text())
        if _port_is_free(ctx.host, port):
            return port
    port = _free_port(ctx.host)
    port_file.write_text(str(port))
    return port


async def after_start(ctx: SandboxContext) -> None:
    """Start the HTTPS listener (same API) and write the real kubeconfig over the placeholder.

    The kubeconfig points at ``https://127.0.0.1:<port>`` with the sandbox CA, because kubectl sends bearer
    tokens only over TLS; ``endpoints.json``'s plain-HTTP URL serves the same API for the Python clients.
    Contexts: ``ack-sandbox`` (admin, current) and ``ack-sandbox-restricted`` (namespace ``default`` only).
    """
    data = ctx.service_dir(SERVICE)
    ca_crt, crt, key = tls.ensure(data, ctx.host)
    port = _https_port(ctx)
    from ack_sandbox.server import Listener, register_listener

    runner = web.AppRunner(_app(ctx.services[_API], ctx), access_log=None, handle_signals=False)
    await runner.setup()
    listener = Listener(runner, ctx.host, port, ssl_context=tls.server_context(crt, key))
    await listener.start()
    register_listener(ctx, SERVICE, listener)
    ctx.services[_TLS_RUNNER] = runner
    https_url = f"https://{ctx.host}:{port}"
    ctx.services[HTTPS_URL] = https_url
    tokens = auth.Authenticator(data / "tokens.json").tokens
    doc = kubeconfig(https_url, tokens["admin"], tokens["restricted"], ca_crt.read_bytes())
    _write_private(ctx.state_dir / "kubeconfig", yaml.safe_dump(doc, sort_keys=False))
    log.info("kubernetes API also on %s (kubeconfig)", https_url)
