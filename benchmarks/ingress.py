"""Ingress proxy overhead: requests/s and p50/p95 latency through the sandbox's nginx stand-in vs direct.

Three processes, as in the sandbox: an aiohttp upstream ("ok" JSON, like a model answering at once)
on 127.0.0.1, the ingress proxy app routing to it (its routing table filled directly, no API server),
and this process as a closed-loop client with ``--concurrency`` keep-alive connections. Rounds
alternate direct and proxied for ``--seconds`` each; the medians over rounds and the ratios are printed.

    python -m benchmarks.ingress [--rounds 5] [--seconds 2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time

import aiohttp
from aiohttp import web

from ack_sandbox.controllers import ingress_proxy
from ack_sandbox.controllers.ingress_routes import Route, RoutingTable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _round(url: str, seconds: float, concurrency: int, headers: dict[str, str]) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p95 ms) of a closed loop of ``concurrency`` clients."""
    latencies: list[float] = []
    payload = b'{"data":{"ndarray":[[1.0,2.0]]}}'
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for _ in range(10_000_000):
                if time.monotonic() >= deadline:
                    return
                t0 = time.perf_counter()
                async with session.post(url, data=payload) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"status {resp.status} from {url}")
                latencies.append(time.perf_counter() - t0)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - start
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return len(latencies) / elapsed, p(0.50), p(0.95)


async def _ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"data": {"names": ["t:0"], "ndarray": [[0.9]]}})


def _upstream_process(port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _ok)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


def _proxy_process(port: int, upstream_port: int) -> None:
    table = RoutingTable()
    table.replace(
        [
            Route(
                "bench",
                "bench",
                "bench.example.com",
                "/",
                "Prefix",
                "model",
                8000,
                endpoints=[f"127.0.0.1:{upstream_port}"],
            )
        ]
    )
    proxy = ingress_proxy.Proxy(table)  # the proxy process's request path; its access log is not shipped here
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


async def _wait_port(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


async def run(rounds: int, seconds: float, concurrency: int) -> dict[str, float]:
    up_port, proxy_port = _free_port(), _free_port()
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_upstream_process, args=(up_port,), daemon=True),
        spawn.Process(target=_proxy_process, args=(proxy_port, up_port), daemon=True),
    ]
    for proc in procs:
        proc.start()
    try:
        await _wait_port(up_port)
        await _wait_port(proxy_port)
        direct_url = f"http://127.0.0.1:{up_port}/api/v1.0/predictions"
        proxy_url = f"http://127.0.0.1:{proxy_port}/api/v1.0/predictions"
        await _round(direct_url, 0.3, concurrency, {})  # warm-up both paths
        await _round(proxy_url, 0.3, concurrency, {"Host": "bench.example.com"})
        direct, proxied = [], []
        for _ in range(rounds):
            direct.append(await _round(direct_url, seconds, concurrency, {}))
            proxied.append(await _round(proxy_url, seconds, concurrency, {"Host": "bench.example.com"}))
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(timeout=10)
    med = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    out = {
        "direct_rps": med(direct, 0),
        "direct_p50_ms": med(direct, 1),
        "direct_p95_ms": med(direct, 2),
        "proxy_rps": med(proxied, 0),
        "proxy_p50_ms": med(proxied, 1),
        "proxy_p95_ms": med(proxied, 2),
    }
    out["rps_ratio_proxy_over_direct"] = out["proxy_rps"] / out["direct_rps"]
    out["p50_ratio_proxy_over_direct"] = out["proxy_p50_ms"] / out["direct_p50_ms"]
    out["p95_ratio_proxy_over_direct"] = out["proxy_p95_ms"] / out["direct_p95_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.ingress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv if argv is not None else [])
    res = asyncio.run(run(args.rounds, args.seconds, args.concurrency))
    print(
        f"ingress proxy overhead, {args.rounds} rounds x {args.seconds:g}s, {args.concurrency} connections "
        f"(medians over rounds)"
    )
    print(
        f"  direct : {res['direct_rps']:8.0f} req/s  p50 {res['direct_p50_ms']:6.2f} ms  p95 {res['direct_p95_ms']:6.2f} ms"
    )
    print(
        f"  ingress: {res['proxy_rps']:8.0f} req/s  p50 {res['proxy_p50_ms']:6.2f} ms  p95 {res['proxy_p95_ms']:6.2f} ms"
    )
    print(
        f"  ratios ingress/direct: req/s {res['rps_ratio_proxy_over_direct']:.2f}  "
        f"p50 {res['p50_ratio_proxy_over_direct']:.2f}  p95 {res['p95_ratio_proxy_over_direct']:.2f}"
    )
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
