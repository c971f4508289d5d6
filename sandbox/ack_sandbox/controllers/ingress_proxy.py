"""The nginx ingress data plane: a reverse proxy in a process of its own, as ingress-nginx runs in its own pod.

``python -m ack_sandbox.controllers.ingress_proxy --host H --port P --control URL`` (the bearer token for
the control URL in ``ACK_SANDBOX_INGRESS_TOKEN``), started and supervised by the daemon's ingress service
(``ingress.py``). Its own process, so a prediction never waits behind the control plane's event loop (the
API server, the controllers, the kubelet) — which is busiest exactly when a scale-out starts pods.

- Routing table: long-polled from the daemon (``GET <control>/table?version=N`` answers when the table
  differs from version N): the ingress controller there watches Ingresses, Services and Pods.
- Access log: every proxied request is shipped to the daemon in batches every ``FLUSH_INTERVAL`` (``POST
  <control>/records``, ``{"batch": id, "records": [[route, finished, request_time_s, status, alternative]]}``,
  ``finished`` the request's end on the machine's monotonic clock, a batch id taken once: ``route`` is
  ``$proxy_upstream_name``, ``alternative`` ``$proxy_alternative_upstream_name`` — the canary's upstream when
  the canary served it, else ""), where ``route_stats`` keeps what SLS holds for the metrics adapter — with
  SLS's own ingestion delay, far below its query delay.
- Routing follows ingress-nginx (see ``ingress_routes.py``, canary annotations included); no endpoint -> 503,
  no rule -> 404, upstream failure -> 502, timeout -> 504, each with nginx's HTML body;
  ``proxy_next_upstream error timeout`` over up to 3 endpoints: a request is tried on the next endpoint when
  the connection could not be made (refused, reset before any response byte); once the upstream has started
  answering, a failure is a 502. Keep-alive connection pool to the upstreams.
- In flight: a request keeps the endpoint and the connection it started on; a routing-table change (the pod
  left the endpoints: terminating, not ready) only changes where *new* requests go, never aborts one.

Admin: ``GET /.sandbox/ingress/routes`` lists routes, endpoints and the requests this proxy has counted:
per route ``requests`` (by ``$proxy_upstream_name``, canary-served ones included, as SLS counts them),
``served``/``errors`` (answered by the route's own backend / of those, 5xx), and its ``canary`` (policy,
endpoints, ``served``, ``errors``); ``backends`` has ``{requests, errors}`` by the upstream that answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from ack_sandbox.controllers.ingress_routes import Route, RoutingTable, use_canary
from ack_sandbox.runtimes.common import serving_priority

log = logging.getLogger("ack_sandbox.ingress_proxy")

ADMIN_PREFIX = "/.sandbox/ingress"
TOKEN_ENV = "ACK_SANDBOX_INGRESS_TOKEN"
UPSTREAM_TIMEOUT = 60.0  # proxy_read_timeout
FLUSH_INTERVAL = 0.1  # seconds between access-log batches to the daemon
MAX_PENDING = 200_000  # access-log rows kept while the daemon does not answer
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


def nginx_page(status: int, reason: str) -> web.Response:
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers={"Server": "nginx"})


class Proxy:
    """The request path, the local request totals and the pending access-log rows."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.session: aiohttp.ClientSession | None = None
        self.totals: dict[str, int] = {}  # by $proxy_upstream_name
        self.backends: dict[str, list[int]] = {}  # by the upstream that answered: [requests, 5xx]
        self.pending: list[list[Any]] = []  # [route, finished (monotonic), request_time, status, alternative]

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=60, ttl_dns_cache=None)
            self.session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=UPSTREAM_TIMEOUT),
            )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return self.admin()
        raw_host = request.host or ""
        host = raw_host if raw_host.startswith("[") else raw_host.rsplit(":", 1)[0].lower()
        route = self.table.match(host, request.path)
        if route is None:
            return nginx_page(404, "Not Found")
        started = time.monotonic()
        canary = route.canary
        if not route.endpoints:
            alternative = ""
            response: web.StreamResponse = nginx_page(503, "Service Temporarily Unavailable")
        elif canary is not None and use_canary(canary, request.headers):
            alternative = canary.name
            response = await self._forward(request, route, canary.next_endpoints())
        else:
            alternative = ""
            response = await self._forward(request, route, route.next_endpoints())
        finished = time.monotonic()
        self.totals[route.name] = self.totals.get(route.name, 0) + 1
        counts = self.backends.get(alternative or route.name)
        if counts is None:
            counts = self.backends[alternative or route.name] = [0, 0]
        counts[0] += 1
        if response.status >= 500:
            counts[1] += 1
        if len(self.pending) < MAX_PENDING:
            self.pending.append([route.name, finished, finished - started, response.status, alternative])
        return response

    async def _forward(self, request: web.Request, route: Route, endpoints: list[str]) -> web.StreamResponse:
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
        tries = list(endpoints[:3])  # proxy_next_upstream_tries: a few endpoints on connection errors
        extra_try = True
        while tries:
            endpoint = tries.pop(0)
            url = f"http://{endpoint}{request.rel_url}"
            answered = False
            try:
                async with self._session().request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                ) as upstream:
                    answered = True  # the status line arrived: from here on a failure is not retried
                    payload = await upstream.read()
                    return web.Response(
                        status=upstream.status,
                        body=payload,
                        headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
                    )
            except (aiohttp.ClientConnectionError, ConnectionError, aiohttp.ClientPayloadError) as exc:
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    return nginx_page(504, "Gateway Time-out")
                log.debug("upstream %s of %s failed: %s", endpoint, route.name, exc)
                if answered:
                    return nginx_page(502, "Bad Gateway")
                if extra_try and not isinstance(exc, aiohttp.ClientConnectorError):
                    # An established (pooled keep-alive) connection broke before any answer: nginx gives such a
                    # failure one more try without counting it (ngx_http_upstream_next: `if (u->peer.cached &&
                    # ft_type == NGX_HTTP_UPSTREAM_FT_ERROR) u->peer.tries++`), on a new connection.
                    extra_try = False
                    tries.insert(0, endpoint)
                continue
            except TimeoutError:
                return nginx_page(504, "Gateway Time-out")
        return nginx_page(502, "Bad Gateway")

    def admin(self) -> web.Response:
        def served(name: str) -> dict[str, int]:
            requests, errors = self.backends.get(name, (0, 0))
            return {"served": requests, "errors": errors}

        routes = []
        for r in self.table.routes:
            doc: dict[str, Any] = {
                "route": r.name,
                "namespace": r.namespace,
                "ingress": r.ingress,
                "host": r.host,
                "path": r.path,
                "pathType": r.path_type,
                "service": r.service,
                "port": r.port,
                "endpoints": r.endpoints,
                "requests": self.totals.get(r.name, 0),
                **served(r.name),
                "canary": None,
            }
            if r.canary is not None:
                doc["canary"] = {"route": r.canary.name, **r.canary.to_dict(), **served(r.canary.name)}
            routes.append(doc)
        backends = {name: {"requests": c[0], "errors": c[1]} for name, c in self.backends.items()}
        return web.json_response({"routes": routes, "totals": dict(self.totals), "backends": backends})

    def take_pending(self) -> list[list[Any]]:
        """The rows to ship: ``[route, finished, seconds, status, alternative]``, ``finished`` a ``time.monotonic()``
        reading. The daemon places each row at that instant (the monotonic clock is the machine's, shared by both
        processes), as SLS takes a log line's own time: how late a batch arrives does not move its rows."""
        rows, self.pending = self.pending, []
        return [
            [route, round(finished, 6), round(elapsed, 6), status, alt]
            for route, finished, elapsed, status, alt in rows
        ]


async def follow_table(control: str, headers: dict[str, str], table: RoutingTable) -> None:
    """Long-poll the daemon for routing-table changes, forever (re-trying while the daemon is busy or gone)."""
    version = -1
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=70)) as session:
        while True:
            try:
                async with session.get(f"{control}/table", params={"version": str(version), "wait": "60"}) as resp:
                    if resp.status == 200:
                        doc = await resp.json()
                        version = int(doc["version"])
                        table.replace([Route.from_dict(r) for r in doc["routes"]])
                        continue
                    log.warning("routing table from %s: HTTP %d", control, resp.status)
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
                log.debug("routing table from %s: %s", control, exc)
            await asyncio.sleep(0.2)


async def ship_records(control: str, headers: dict[str, str], proxy: Proxy) -> None:
    """Send the access log to the daemon every FLUSH_INTERVAL. A batch that was not acknowledged is sent again
    under the same id, before newer rows: the daemon drops a batch id it has already taken, so a reply lost to a
    timeout does not count its requests twice."""
    batch_prefix = f"{os.getpid()}-{time.monotonic_ns()}"
    sequence = 0
    unacknowledged: dict[str, Any] | None = None
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            if unacknowledged is None:
                if not proxy.pending:
                    continue
                sequence += 1
                unacknowledged = {"batch": f"{batch_prefix}-{sequence}", "records": proxy.take_pending()}
            try:
                async with session.post(f"{control}/records", json=unacknowledged) as resp:
                    if resp.status == 204:
                        unacknowledged = None
                        continue
                    log.warning("access log to %s: HTTP %d", control, resp.status)
                    if resp.status == 400:  # the daemon will never take this batch
                        unacknowledged = None
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.debug("access log to %s: %s", control, exc)


async def serve(host: str, port: int, control: str, token: str) -> None:
    table = RoutingTable()
    proxy = Proxy(table)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    log.info("ingress proxy listening on http://%s:%d (control %s)", host, port, control)
    headers = {"Authorization": f"Bearer {token}"}
    tasks = [
        asyncio.create_task(follow_table(control, headers, table)),
        asyncio.create_task(ship_records(control, headers, proxy)),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    await proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ack_sandbox.controllers.ingress_proxy")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", required=True, help="the daemon's ingress control URL")
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        print(f"{TOKEN_ENV} is not set: the control channel needs its bearer token", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("ACK_SANDBOX_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(OSError):  # die with the daemon that supervises us
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    serving_priority()  # the data plane serves at the priority the control plane stepped back from (server.py)
    asyncio.run(serve(args.host, args.port, args.control, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
