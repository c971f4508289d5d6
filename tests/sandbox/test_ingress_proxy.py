"""The ingress proxy over real HTTP on loopback, routed from objects in the sandbox's real store.

Two upstream servers stand in for two pods (127.0.0.1 and 127.0.0.2, same target port); the proxy is
the daemon's ``ingress`` service — its proxy process on its own port, its controller running against the
store in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ack_sandbox.context import Clock, SandboxContext
from ack_sandbox.controllers import ingress, metrics
from ack_sandbox.controllers.base import INGRESSES, PODS, SERVICES, Api
from ack_sandbox.k8s.store import Store

SELECTOR = "sls.project=k8s-log-c1,sls.logstore=nginx-ingress,sls.ingress.route=default-web-8000"


def free_port_on(*hosts: str) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def upstream(name: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "pod": name,
                "path": request.path_qs,
                "method": request.method,
                "host": request.host,
                "xff": request.headers.get("X-Forwarded-For"),
                "body": body.decode(),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@contextlib.asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    ctx = SandboxContext(state_dir=tmp_path, time_scale=60, cluster_id="c1", clock=Clock(60))
    store = Store(clock=ctx.clock)
    ctx.services["kubernetes"] = store
    api = Api(store)
    await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    target = free_port_on("127.0.0.1", "127.0.0.2")
    runners = [await serve(upstream("web-a"), "127.0.0.1", target), await serve(upstream("web-b"), "127.0.0.2", target)]
    proxy_port = free_port_on("127.0.0.1")
    stop = await ingress.start(ctx, "127.0.0.1", proxy_port)
    ctx.endpoints["ingress"] = f"http://127.0.0.1:{proxy_port}"
    await ingress.after_start(ctx)
    session = aiohttp.ClientSession()
    try:
        yield {"ctx": ctx, "api": api, "target": target, "url": ctx.endpoints["ingress"], "session": session}
    finally:
        await session.close()
        await stop()
        for runner in reversed(runners):
            await runner.cleanup()


async def add_pod(api: Api, name: str, ip: str, ready: bool = True) -> None:
    pod = await api.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 1}]}]},
        },
    )
    pod["status"] = {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    await api.update_status(PODS, pod)


async def add_route(api: Api, target: int, host: str | None = None) -> None:
    await api.create(
        SERVICES,
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8000, "targetPort": target}]},
        },
    )
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": "/api",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 8000}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    await api.create(
        INGRESSES,
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"ingressClassName": "nginx", "rules": [rule]}},
    )


async def routes(env: dict) -> list[dict]:
    async with env["session"].get(env["url"] + "/.sandbox/ingress/routes") as resp:
        return (await resp.json())["routes"]


async def until_endpoints(env: dict, count: int) -> None:
    deadline = time.monotonic() + 10
    for _ in range(1000):
        table = await routes(env)
        if table and len(table[0]["endpoints"]) == count:
            return
        assert time.monotonic() < deadline, table
        await asyncio.sleep(0.02)


async def test_round_robin_to_ready_pods_counts_requests_and_fills_status(tmp_path: Path) -> None:
    async with started(tmp_path) as env:
        api, s = env["api"], env["session"]
        await add_pod(api, "web-a", "127.0.0.1")
        await add_pod(api, "web-b", "127.0.0.2")
        await add_pod(api, "web-c", "127.0.0.3", ready=False)
        await add_route(api, env["target"])
        await until_endpoints(env, 2)
        seen = []
        for i in range(50):
            async with s.post(env["url"] + f"/api/v1.0/predictions?i={i}", data=b'{"data":1}') as resp:
                assert resp.status == 200
                body = await resp.json()
                seen.append(body["pod"])
                assert body["path"] == f"/api/v1.0/predictions?i={i}" and body["body"] == '{"data":1}'
                assert body["method"] == "POST" and body["xff"] == "127.0.0.1"
        assert seen[:4] in (["web-a", "web-b"] * 2, ["web-b", "web-a"] * 2)
        assert seen.count("web-a") == seen.count("web-b") == 25
        [route] = await routes(env)
        assert (route["route"], route["requests"]) == ("default-web-8000", 50)
        # the access log reaches route_stats (SLS) within a few flushes: then the metric over a window covering
        # all 50 requests is int(50 / window in wall seconds)
        deadline = time.monotonic() + 10
        while ingress.stats_of(env["ctx"]).totals().get("default-web-8000", 0) < 50:
            assert time.monotonic() < deadline, ingress.stats_of(env["ctx"]).totals()
            await asyncio.sleep(0.05)
        assert ingress.stats_of(env["ctx"]).totals()["default-web-8000"] == 50
        window = metrics.external_metric_value_list(
            env["ctx"], "default", "sls_ingress_qps", SELECTOR + ",sls.query.interval=600,sls.query.delay=0"
        )
        assert window["items"][0]["value"] == str(int(50 / env["ctx"].clock.real_seconds(600)))
        ing = await api.get(INGRESSES, "default", "web")
        port = int(env["url"].rsplit(":", 1)[1])
        assert ing["status"]["loadBalancer"] == {
            "ingress": [{"ip": "127.0.0.1", "ports": [{"port": port, "protocol": "TCP"}]}]
        }


async def test_nginx_error_pages(tmp_path: Path) -> None:
    async with started(tmp_path) as env:
        api, s = env["api"], env["session"]
        await add_pod(api, "web-a", "127.0.0.1", ready=False)
        await add_route(api, env["target"], host="fashion.example.com")
        await until_endpoints(env, 0)
        headers = {"Host": "fashion.example.com"}
        async with s.get(env["url"] + "/api/x", headers=headers) as resp:
            assert resp.status == 503 and "503 Service Temporarily Unavailable" in await resp.text()
        async with s.get(env["url"] + "/api/x") as resp:  # no rule for this host
            assert resp.status == 404 and "<center>nginx</center>" in await resp.text()
        async with s.get(env["url"] + "/other", headers=headers) as resp:
            assert resp.status == 404
        # a ready pod whose port refuses connections: 502 after trying it
        await add_pod(api, "web-dead", "127.0.0.9")
        await until_endpoints(env, 1)
        async with s.get(env["url"] + "/api/x", headers=headers) as resp:
            assert resp.status == 502 and "502 Bad Gateway" in await resp.text()
        [route] = await routes(env)
        assert route["requests"] == 2  # 503 and 502 were proxied attempts on the route; 404s were not


async def test_access_log_rows_keep_their_own_time_and_a_resent_batch_counts_once(tmp_path: Path) -> None:
    """The proxy's access log as the daemon takes it over real HTTP: a row is placed at the instant the request
    finished (the machine's monotonic clock), however late its batch arrives, as SLS takes a log line's own
    time; a batch sent again after a lost reply (same id) is not counted twice."""
    ctx = SandboxContext(state_dir=tmp_path, time_scale=60, cluster_id="c1", clock=Clock(60))
    port = free_port_on("127.0.0.1")
    runner = await serve(ingress.control_app(ctx, "t0ken"), "127.0.0.1", port)
    url, auth = f"http://127.0.0.1:{port}/records", {"Authorization": "Bearer t0ken"}
    try:
        finished = time.monotonic() - 1.0  # finished one real second (60 sandbox seconds) before it is shipped
        batch = {"batch": "p-1", "records": [["default-web-8000", finished, 0.01, 200, ""]] * 3}
        async with aiohttp.ClientSession(headers=auth) as session:
            for _ in range(2):  # the second time as after a timeout: same id
                async with session.post(url, json=batch) as resp:
                    assert resp.status == 204
            async with session.post(url, json={"batch": "p-2", "records": [["r", "not a time", 0, 200]]}) as resp:
                assert resp.status == 400 and "finished" in (await resp.json())["error"]
            async with aiohttp.ClientSession() as anonymous, anonymous.post(url, json=batch) as resp:
                assert resp.status == 401
        stats = ingress.stats_of(ctx)
        at = ctx.clock.at_monotonic(finished)
        assert stats.window("default-web-8000", at - 0.5, at + 1).count == 3
        assert stats.window("default-web-8000", at + 1, ctx.clock.now() + 1).count == 0  # not moved to arrival
        assert stats.totals() == {"default-web-8000": 3}
    finally:
        await runner.cleanup()


async def test_a_broken_keepalive_connection_is_retried_once_on_a_new_one(tmp_path: Path) -> None:
    """An upstream that drops each keep-alive connection at its second request, before answering (what a server
    closing an idle connection as the proxy reuses it looks like): nginx takes a failed *cached* connection as one
    extra try, so the client gets the answer, not a 502."""
    writers: list[asyncio.StreamWriter] = []

    async def one_request_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if served:
                    break  # the reused connection: dropped, no answer
                served += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async with started(tmp_path) as env:
        api, s = env["api"], env["session"]
        server = await asyncio.start_server(one_request_per_connection, "127.0.0.3", env["target"])
        try:
            await add_pod(api, "web-c", "127.0.0.3")
            await add_route(api, env["target"])
            await until_endpoints(env, 1)
            for i in range(4):
                async with s.post(env["url"] + f"/api/v1.0/predictions?i={i}", data=b'{"data":1}') as resp:
                    assert (resp.status, await resp.text()) == (200, "ok"), i
            assert len(writers) >= 4  # every request after the first found its pooled connection dropped
        finally:
            server.close()
            for writer in writers:  # the proxy keeps its last connection alive; wait_closed() waits for it
                writer.close()
            await server.wait_closed()
