"""The nginx ingress controller: routing table and Ingress status here, the reverse proxy in its own process.

Service module of the daemon (``"ingress": "ack_sandbox.controllers.ingress"`` in ``server.SERVICES``):
``start`` launches and supervises the data plane (``ingress_proxy.py``, its own process listening on the
port the daemon assigns, endpoints.json ``"ingress"``) and serves it a small control channel on an internal
port: the routing table (long-polled) and the access log it ships back, which goes into ``route_stats``
(what the SLS access log holds for the metrics adapter). ``after_start`` starts the controller that keeps
the routing table and writes every served Ingress's
``status.loadBalancer.ingress[0] = {"ip": "127.0.0.1", "ports": [{"port": <proxy port>, "protocol": "TCP"}]}``
— the real ADDRESS is the SLB IP on port 80; here clients learn the port from ``ports[0].port`` (or
endpoints.json) and send the Ingress host in the ``Host`` header.

Routing rules: ``ingress_routes.py`` (canary annotations included). Every proxied request is counted per
route ``<namespace>-<service>-<port>`` (``route_stats``): under ``$proxy_upstream_name`` — the main
location's upstream, also for a request the canary answered, as ingress-nginx logs it and the SLS query of
``sls_ingress_qps`` filters it — and under the upstream that answered (``$proxy_alternative_upstream_name``
for a canary request), which ``route_stats.window(..., served=True)`` reads.

Admin: ``GET /.sandbox/ingress/routes`` on the proxy port lists routes, endpoints and request totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import secrets
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers.base import INGRESSES, PODS, SERVICES, Controller, Key, Kind, Obj
from ack_sandbox.controllers.ingress_proxy import TOKEN_ENV
from ack_sandbox.controllers.ingress_routes import Route, build_routes, served
from ack_sandbox.controllers.route_stats import stats_of
from ack_sandbox.k8s.errors import ApiError

log = logging.getLogger("ack_sandbox.controllers.ingress")

TABLE_KEY: Key = ("", "routing-table")
RESTART_DELAY = 0.5  # seconds before a proxy process that died is started again
MAX_WAIT = 60.0  # longest long-poll of the routing table


class PublishedTable:
    """The routing table as the proxy process fetches it: a version that changes with its content."""

    def __init__(self) -> None:
        self.port: int = 0
        self.routes: list[Route] = []
        self.version = 0
        self._doc: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def replace(self, routes: list[Route]) -> None:
        doc = [r.to_dict() for r in routes]
        self.routes = routes
        if doc != self._doc:
            self._doc, self.version = doc, self.version + 1
            self._changed.set()
            self._changed = asyncio.Event()

    def wake(self) -> None:
        """Answer every waiting long-poll now (on shutdown)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_newer(self, version: int, timeout: float) -> dict[str, Any]:
        if version == self.version:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return {"version": self.version, "routes": self._doc}


class IngressController(Controller):
    """Rebuilds the routing table on any Ingress / Service / Pod change and writes Ingress status."""

    name = "nginx-ingress-controller"
    primary = INGRESSES
    watches = (SERVICES, PODS)
    resync = 60.0

    def __init__(self, ctx: SandboxContext, table: PublishedTable, **kw: Any) -> None:
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


# ------------------------------------------------------------------------------------------ the data plane
def _state(ctx: SandboxContext) -> dict[str, Any]:
    return ctx.services.setdefault("ingress", {"table": PublishedTable(), "controllers": []})


def control_app(ctx: SandboxContext, token: str) -> web.Application:
    """What the proxy process calls: ``GET /table`` (long-poll) and ``POST /records`` (the access log)."""
    table: PublishedTable = _state(ctx)["table"]

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    async def get_table(request: web.Request) -> web.Response:
        try:
            version = int(request.query.get("version", "-1"))
            wait = min(float(request.query.get("wait", "0")), MAX_WAIT)
        except ValueError:
            return web.json_response({"error": "version and wait must be numbers"}, status=400)
        return web.json_response(await table.wait_newer(version, wait))

    taken: deque[str] = deque(maxlen=1024)  # batch ids already recorded (the proxy re-sends unacknowledged ones)

    async def post_records(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            rows, batch = doc["records"], str(doc.get("batch") or "")
            parsed = [
                (str(r[0]), float(r[1]), float(r[2]), int(r[3]), str(r[4]) if len(r) > 4 and r[4] else "") for r in rows
            ]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return web.json_response(
                {"error": 'expected {"batch": id, "records": [[route, finished, seconds, status, alternative]]}'},
                status=400,
            )
        if batch and batch in taken:
            return web.Response(status=204)
        stats, clock = stats_of(ctx), ctx.clock
        for route, finished, elapsed, status, alternative in parsed:
            stats.record(route, clock.at_monotonic(finished), elapsed, status, alternative)
        if batch:
            taken.append(batch)
        return web.Response(status=204)

    app = web.Application(middlewares=[auth], client_max_size=64 * 1024 * 1024)
    app.router.add_get("/table", get_table)
    app.router.add_post("/records", post_records)
    return app


class ProxyProcess:
    """Runs ``ingress_proxy`` on the public port and starts it again if it dies, until stopped."""

    def __init__(self, ctx: SandboxContext, host: str, port: int, control_url: str, token: str) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "ack_sandbox.controllers.ingress_proxy",
            "--host",
            host,
            "--port",
            str(port),
            "--control",
            control_url,
        ]
        self.env = {**os.environ, TOKEN_ENV: token}
        self.log_path = ctx.service_dir("ingress") / "proxy.log"
        self.host, self.port = host, port
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def start(self, ready_timeout: float = 30.0) -> None:
        await self._spawn()
        self.task = asyncio.create_task(self._supervise())
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while True:  # the port answers once the proxy listens
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(
                        f"ingress proxy not listening on {self.host}:{self.port} after "
                        f"{ready_timeout:.0f}s; see {self.log_path}"
                    ) from None
                await asyncio.sleep(0.05)

    async def _spawn(self) -> None:
        with open(self.log_path, "ab", buffering=0) as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT
            )

    async def _supervise(self) -> None:
        while not self.stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.stopping:
                return
            log.warning("ingress proxy exited (rc=%s); starting it again (log: %s)", code, self.log_path)
            await asyncio.sleep(RESTART_DELAY)
            if not self.stopping:
                await self._spawn()

    async def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def start(ctx: SandboxContext, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """Start the proxy process on ``host:port`` and its control channel; returns the coroutine that stops both
    (and the ingress controller)."""
    state = _state(ctx)
    state["table"].port = port
    token = secrets.token_urlsafe(24)
    runner = web.AppRunner(control_app(ctx, token), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, shutdown_timeout=1.0)
    await site.start()
    control_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy = ProxyProcess(ctx, host, port, f"http://{host}:{control_port}", token)
    await proxy.start()
    state["proxy"] = proxy

    async def stop() -> None:
        for ctrl in state["controllers"]:
            await ctrl.stop()
        state["controllers"].clear()
        await proxy.stop()
        state["table"].wake()
        await runner.cleanup()

    return stop


async def after_start(ctx: SandboxContext) -> None:
    """Start the controller once the store runs and the proxy's port is known."""
    state = _state(ctx)
    if "kubernetes" not in ctx.services:
        log.warning("ingress controller not started: no Kubernetes store in this daemon")
        return
    ctrl = IngressController(ctx, state["table"])
    await ctrl.start()
    state["controllers"].append(ctrl)
    ctrl.enqueue(TABLE_KEY)
