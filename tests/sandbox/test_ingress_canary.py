"""ingress-nginx canary annotations in the sandbox's ingress, over real HTTP on loopback.

Two upstream servers stand in for a stable pod (127.0.0.1) and a canary pod (127.0.0.2); a main Ingress routes
to the stable Service, a canary Ingress (``nginx.ingress.kubernetes.io/canary: "true"``) for the same host and
path to the canary Service. The proxy is the daemon's ``ingress`` service (its own process), its controller
running against the real store in this process; counts are read from its admin view, the access log the
daemon keeps (``route_stats``) and the external metrics API (``sls_ingress_qps``).
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
from ack_sandbox.controllers.route_stats import stats_of
from ack_sandbox.k8s.store import Store

HOST = "fashion.example.com"
ANN = "nginx.ingress.kubernetes.io/"
STABLE, CANARY = "default-web-8000", "default-web-canary-8000"


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


def upstream(name: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"pod": name})

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
    runners = []
    for name, host in (("stable", "127.0.0.1"), ("canary", "127.0.0.2")):
        runner = web.AppRunner(upstream(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, target).start()
        runners.append(runner)
    proxy_port = free_port_on("127.0.0.1")
    stop = await ingress.start(ctx, "127.0.0.1", proxy_port)
    await ingress.after_start(ctx)
    session = aiohttp.ClientSession()
    env = {"ctx": ctx, "api": api, "target": target, "url": f"http://127.0.0.1:{proxy_port}", "session": session}
    try:
        for svc, app, ip in (("web", "stable", "127.0.0.1"), ("web-canary", "canary", "127.0.0.2")):
            await api.create(
                SERVICES,
                {
                    "metadata": {"name": svc, "namespace": "default"},
                    "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8000, "targetPort": target}]},
                },
            )
            await add_pod(api, f"{app}-0", ip, app)
        yield env
    finally:
        await session.close()
        await stop()
        for runner in reversed(runners):
            await runner.cleanup()


async def add_pod(api: Api, name: str, ip: str, app: str) -> None:
    pod = await api.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    pod["status"] = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
    await api.update_status(PODS, pod)


def ingress_obj(name: str, service: str, annotations: dict[str, str] | None = None, host: str = HOST) -> dict:
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/api",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": 8000}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


async def admin(env: dict) -> dict:
    async with env["session"].get(env["url"] + "/.sandbox/ingress/routes") as resp:
        return await resp.json()


async def until_table(env: dict, check: Any, what: str) -> dict:
    deadline = time.monotonic() + 15
    doc: dict = {}
    for _ in range(2000):
        doc = await admin(env)
        if check(doc):
            return doc
        assert time.monotonic() < deadline, f"{what}: {doc}"
        await asyncio.sleep(0.02)
    raise AssertionError(what)


def canary_ready(doc: dict) -> bool:
    return any((r.get("canary") or {}).get("endpoints") and r["endpoints"] for r in doc["routes"])


async def who(env: dict, headers: dict[str, str] | None = None) -> str:
    async with env["session"].get(env["url"] + "/api/x", headers={"Host": HOST, **(headers or {})}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["pod"]


async def test_a_canary_ingress_without_a_main_ingress_is_ignored(tmp_path: Path) -> None:
    async with started(tmp_path) as env:
        await env["api"].create(INGRESSES, ingress_obj("web-canary", "web-canary", {ANN + "canary": "true"}))
        await asyncio.sleep(0.5)
        doc = await admin(env)
        assert doc["routes"] == []
        async with env["session"].get(env["url"] + "/api/x", headers={"Host": HOST}) as resp:
            assert resp.status == 404
        # the main Ingress arrives: the canary becomes its alternative backend
        await env["api"].create(INGRESSES, ingress_obj("web", "web"))
        doc = await until_table(env, canary_ready, "canary merged into the main location")
        [route] = doc["routes"]
        assert (route["route"], route["canary"]["route"], route["canary"]["weight"]) == (STABLE, CANARY, 0)
        assert {await who(env) for _ in range(20)} == {"stable"}  # weight 0: nothing to the canary


async def test_header_then_cookie_then_weight(tmp_path: Path) -> None:
    async with started(tmp_path) as env:
        await env["api"].create(INGRESSES, ingress_obj("web", "web"))
        await env["api"].create(
            INGRESSES,
            ingress_obj(
                "web-canary",
                "web-canary",
                {
                    ANN + "canary": "true",
                    ANN + "canary-by-header": "X-Canary",
                    ANN + "canary-by-cookie": "canary",
                    ANN + "canary-weight": "0",
                },
            ),
        )
        await until_table(env, canary_ready, "canary merged")
        assert await who(env, {"X-Canary": "always"}) == "canary"
        assert await who(env, {"x-canary": "always"}) == "canary"  # header names are case-insensitive
        assert await who(env, {"X-Canary": "never"}) == "stable"
        assert await who(env, {"X-Canary": "maybe"}) == "stable"  # other values fall through (weight 0)
        assert await who(env, {"Cookie": "a=1; canary=always"}) == "canary"
        assert await who(env, {"Cookie": "canary=never"}) == "stable"
        # header before cookie
        assert await who(env, {"X-Canary": "never", "Cookie": "canary=always"}) == "stable"
        assert await who(env, {"X-Canary": "always", "Cookie": "canary=never"}) == "canary"
        assert await who(env, {"X-Canary": "maybe", "Cookie": "canary=always"}) == "canary"


async def test_header_value_and_weight_with_per_route_counts(tmp_path: Path) -> None:
    async with started(tmp_path) as env:
        ctx = env["ctx"]
        await env["api"].create(INGRESSES, ingress_obj("web", "web"))
        await env["api"].create(
            INGRESSES,
            ingress_obj(
                "web-canary",
                "web-canary",
                {
                    ANN + "canary": "true",
                    ANN + "canary-by-header": "X-Release",
                    ANN + "canary-by-header-value": "v2",
                    ANN + "canary-weight": "30",
                },
            ),
        )
        await until_table(env, canary_ready, "canary merged")
        assert {await who(env, {"X-Release": "v2"}) for _ in range(10)} == {"canary"}
        served = [await who(env, {"X-Release": "always"}) for _ in range(400)]  # not the value: by weight
        share = served.count("canary") / len(served)
        assert 0.15 < share < 0.45, share
        doc = await admin(env)
        [route] = doc["routes"]
        total = 10 + 400
        assert route["requests"] == total  # $proxy_upstream_name: every request of the location
        assert route["served"] + route["canary"]["served"] == total
        assert route["canary"]["served"] == 10 + served.count("canary")
        assert doc["backends"][CANARY]["requests"] == route["canary"]["served"]
        assert doc["backends"][STABLE]["requests"] == served.count("stable")
        assert route["errors"] == route["canary"]["errors"] == 0

        # the access log in the daemon: by upstream that answered, and by $proxy_upstream_name
        stats = stats_of(ctx)
        deadline = time.monotonic() + 10
        while sum(stats.totals().values()) < total:
            assert time.monotonic() < deadline, stats.totals()
            await asyncio.sleep(0.05)
        now = ctx.clock.now()
        assert stats.window(CANARY, now - 600, now + 1, served=True).count == route["canary"]["served"]
        assert stats.window(STABLE, now - 600, now + 1, served=True).count == route["served"]
        assert stats.window(STABLE, now - 600, now + 1).count == total
        # sls_ingress_qps filters proxy_upstream_name, as the metrics adapter's SLS query does: the canary's own
        # route has no requests under that field
        selector = "sls.project=k8s-log-c1,sls.logstore=nginx-ingress,sls.ingress.route={},sls.query.delay=0"
        assert metrics.external_metric_values(ctx, "sls_ingress_qps", selector.format(CANARY)) == [0]


async def test_a_canary_without_endpoints_takes_no_traffic_and_a_main_without_endpoints_is_503(
    tmp_path: Path,
) -> None:
    async with started(tmp_path) as env:
        api = env["api"]
        await api.create(INGRESSES, ingress_obj("web", "web"))
        await api.create(
            INGRESSES,
            ingress_obj(
                "web-canary",
                "web-canary",
                {ANN + "canary": "true", ANN + "canary-by-header": "X-Canary", ANN + "canary-weight": "100"},
            ),
        )
        await until_table(env, canary_ready, "canary merged")
        assert await who(env) == "canary"  # weight 100
        await api.delete(PODS, "default", "canary-0")
        await until_table(env, lambda d: d["routes"] and not d["routes"][0]["canary"]["endpoints"], "canary empty")
        assert await who(env, {"X-Canary": "always"}) == "stable"
        await api.delete(PODS, "default", "stable-0")
        await until_table(env, lambda d: d["routes"] and not d["routes"][0]["endpoints"], "main empty")
        async with env["session"].get(env["url"] + "/api/x", headers={"Host": HOST}) as resp:
            assert resp.status == 503
