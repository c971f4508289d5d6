"""An open-loop HTTP load generator: requests start on a fixed schedule, whatever the server's latency.

``python -m benchmarks._openloop URL --rate R --seconds S --body FILE [--header K:V] [--window W]`` sends
``round(R * S)`` POSTs, the i-th at ``t0 + i / R``, and prints one JSON document on stdout: sent, ok,
errors (non-200 or transport), achieved requests/s, latency percentiles (ms, measured from each
request's *scheduled* start, so a stalled server is not hidden by a stalled client: no coordinated
omission), the client's own CPU seconds, and per-window percentiles (``--window`` seconds) so a
benchmark can look at a phase such as a scale-out. Bounded: at most ``R * S`` requests, each with a
timeout, and the whole run ends by ``S + timeout`` seconds. Run as a subprocess so the client does not
share an event loop or a core's time slice accounting with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
from pathlib import Path

import aiohttp

REQUEST_TIMEOUT = 10.0


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(latencies_ms: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies_ms)
    return {
        f"p{int(q * 100)}_ms": (round(v, 2) if (v := percentile(ordered, q)) is not None else None)
        for q in (0.50, 0.95, 0.99)
    }


async def run(url: str, rate: float, seconds: float, body: bytes, headers: dict[str, str], window: float) -> dict:
    total = max(1, round(rate * seconds))
    results: list[tuple[float, float, bool]] = []  # (scheduled offset s, latency ms, ok)
    connector = aiohttp.TCPConnector(limit=512, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05

        async def one(offset: float) -> None:
            ok = False
            try:
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (TimeoutError, aiohttp.ClientError, OSError):
                ok = False
            results.append((offset, (loop.time() - (t0 + offset)) * 1000.0, ok))

        tasks = []
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(total):
            offset = i / rate
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(offset)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ok_lat = [lat for _, lat, ok in results if ok]
    errors = sum(1 for _, _, ok in results if not ok)
    windows = []
    if window > 0:
        for w in range(math.ceil(seconds / window)):
            lo, hi = w * window, (w + 1) * window
            lat = [latency for off, latency, ok in results if lo <= off < hi and ok]
            errs = sum(1 for off, _, ok in results if lo <= off < hi and not ok)
            windows.append({"start_s": round(lo, 3), "ok": len(lat), "errors": errs, **summarise(lat)})
    return {
        "sent": total,
        "ok": len(ok_lat),
        "errors": errors,
        "achieved_rps": round(len(ok_lat) / elapsed, 2) if elapsed > 0 else None,
        **summarise(ok_lat),
        "client_cpu_s": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 3),
        "windows": windows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._openloop", description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--body", type=Path, required=True, help="file holding the request body (JSON)")
    p.add_argument("--header", action="append", default=[], help="K:V, repeatable")
    p.add_argument("--window", type=float, default=0.0, help="per-window percentiles every W seconds")
    args = p.parse_args(argv)
    if not (0 < args.rate <= 2000 and 0 < args.seconds <= 600):
        p.error("--rate must be in (0, 2000] and --seconds in (0, 600]: the loop is bounded")
    host = args.url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if not host.startswith("127.") and host != "localhost":
        p.error(f"{host}: load goes to loopback addresses only")
    headers = dict(h.split(":", 1) for h in args.header)
    headers.setdefault("Content-Type", "application/json")
    doc = asyncio.run(run(args.url, args.rate, args.seconds, args.body.read_bytes(), headers, args.window))
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
