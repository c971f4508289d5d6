"""Benchmark: the sandbox Kubernetes API's list and watch throughput and its watch latency.

Starts a sandbox in a temporary state directory (``ack-sandbox up`` code path) and talks plain HTTP with
the admin token (aiohttp, one connection pool): creates ``--objects`` ConfigMaps, lists them ``--repeats``
times (items/s), then, with a watch open, writes ``--writes`` updates one after another and records when
the watcher sees each event: from request sent and from the write's response (the commit) to the event
line arriving. Prints medians, p95 and ratios. Loopback only; every phase is bounded in count and time.

    .venv/bin/python -m benchmarks.k8s_api [--objects 500] [--repeats 20] [--writes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

PHASE_TIMEOUT = 120.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(base: str, token: str, objects: int, repeats: int, writes: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ns = "default"
    url = f"{base}/api/v1/namespaces/{ns}/configmaps"
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        t0 = time.perf_counter()
        for i in range(objects):
            body = {"metadata": {"name": f"bench-{i}", "labels": {"bench": "k8s"}}, "data": {"i": str(i)}}
            async with http.post(url, json=body) as r:
                assert r.status == 201, await r.text()
        out["create_per_s"] = objects / (time.perf_counter() - t0)

        list_times = []
        for _ in range(repeats):
            t = time.perf_counter()
            async with http.get(url, params={"labelSelector": "bench=k8s"}) as r:
                doc = await r.json()
            list_times.append(time.perf_counter() - t)
            assert len(doc["items"]) == objects
        out["list_median_ms"] = statistics.median(list_times) * 1000
        out["list_items_per_s"] = objects / statistics.median(list_times)

        rv = doc["metadata"]["resourceVersion"]
        seen: dict[str, float] = {}
        all_seen = asyncio.Event()

        async def watcher() -> None:
            params = {"watch": "true", "resourceVersion": rv, "labelSelector": "bench=k8s", "timeoutSeconds": "120"}
            async with http.get(url, params=params, timeout=aiohttp.ClientTimeout(total=PHASE_TIMEOUT)) as r:
                async for line in r.content:
                    ev = json.loads(line)
                    seen[ev["object"]["metadata"]["resourceVersion"]] = time.perf_counter()
                    if len(seen) >= writes:
                        all_seen.set()
                        return

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0.2)  # the watch is registered
        sent, acked = {}, {}
        t_start = time.perf_counter()
        for i in range(writes):
            t = time.perf_counter()
            patch = {"data": {"w": str(i)}}
            async with http.patch(
                f"{url}/bench-{i % objects}",
                data=json.dumps(patch),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as r:
                obj = await r.json()
            rvw = obj["metadata"]["resourceVersion"]
            sent[rvw], acked[rvw] = t, time.perf_counter()
        await asyncio.wait_for(all_seen.wait(), PHASE_TIMEOUT)
        elapsed = max(seen.values()) - t_start
        task.cancel()
        from_send = [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]
        from_ack = [(seen[k] - acked[k]) * 1000 for k in acked if k in seen]
        out["watch_events_per_s"] = writes / elapsed
        out["watch_latency_from_send_median_ms"] = statistics.median(from_send)
        out["watch_latency_from_send_p95_ms"] = _pct(from_send, 0.95)
        out["watch_latency_from_commit_median_ms"] = statistics.median(from_ack)

        # Burst: many writes in flight, one watcher: fan-out throughput.
        seen.clear()
        all_seen.clear()
        rv = str(max(int(k) for k in sent))
        writes_burst = writes
        task = asyncio.create_task(watcher())
        await asyncio.sleep(0.2)
        t_start = time.perf_counter()

        async def one(i: int) -> None:
            async with http.patch(
                f"{url}/bench-{i % objects}",
                data=json.dumps({"data": {"b": str(i)}}),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as r:
                await r.read()

        await asyncio.gather(*(one(i) for i in range(writes_burst)))
        await asyncio.wait_for(all_seen.wait(), PHASE_TIMEOUT)
        out["watch_burst_events_per_s"] = writes_burst / (max(seen.values()) - t_start)
        task.cancel()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.k8s_api", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args(argv)
    from ack_sandbox import cli

    with tempfile.TemporaryDirectory(prefix="k8s-bench-") as tmp:
        state = Path(tmp)
        endpoints = cli.up(state, time_scale=30)
        try:
            token = json.loads((state / "kubernetes" / "tokens.json").read_text())["admin"]
            res = asyncio.run(run(endpoints["kubernetes"], token, args.objects, args.repeats, args.writes))
        finally:
            cli.down(state)
    for k, v in res.items():
        print(f"{k:40s} {v:10.2f}")
    print(f"{'ratio list_items/s : watch_events/s':40s} {res['list_items_per_s'] / res['watch_events_per_s']:10.2f}")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
