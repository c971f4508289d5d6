"""Benchmark: how many requests a second our locust load generator makes on one core, next to wrk.

Both clients hit the same local endpoint: an aiohttp server on 127.0.0.1 that answers the Seldon predict
call (``POST /api/v1.0/predictions`` with a 784-float image, a 10-class one-hot reply), pinned to one core;
the client is pinned to the other (``taskset``, when there are two cores). locust runs our real
``include/locust/locustfile.py`` (FastHttpUser, JSON parsing and the label check on every reply) with
``constant_throughput`` set so high that users never wait; wrk posts the same body with a Lua script.

Prints each run, the medians and the ratio wrk / locust. wrk comes from Debian (``apt-get install -y wrk``);
pass ``--install-wrk`` to let the benchmark install it, otherwise a missing wrk is reported and only locust
is measured. Traffic stays on 127.0.0.1 and every run is bounded by ``--seconds``.

    .venv/bin/python -m benchmarks.locust_vs_wrk [--seconds 8] [--repeats 3] [--users 10] [--install-wrk]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "include" / "locust" / "locustfile.py"
PATH = "/api/v1.0/predictions"


# -- the endpoint ---------------------------------------------------------------------------------------
def serve(port: int) -> None:
    """The predict endpoint (runs in its own process)."""
    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        k = int(round(body["data"]["ndarray"][0][0])) % 10
        return web.json_response(
            {"data": {"names": [f"t:{i}" for i in range(10)], "ndarray": [[1.0 if i == k else 0.0 for i in range(10)]]}}
        )

    app = web.Application()
    app.router.add_post(PATH, predict)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(core: int | None) -> list[str]:
    if core is None or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(core)]


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the benchmark server did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _image(label: int) -> list[float]:
    return [float(label)] + [0.5] * 783


# -- clients --------------------------------------------------------------------------------------------
def run_locust(url: str, seconds: float, users: int, work: Path, pin: list[str]) -> dict[str, float]:
    payload = work / "payload.json"
    payload.write_text(
        json.dumps({"protocol": "seldon", "path": PATH, "samples": [{"x": _image(i), "label": i} for i in range(10)]})
    )
    plan = work / "plan.json"
    # One stage at full strength; 1e6 RPS per user means constant_throughput never makes a user wait.
    plan.write_text(
        json.dumps(
            {
                "target_rps": 1e6 * users,
                "rps_per_user": 1e6,
                "stages": [{"end": seconds, "users": users, "spawn_rate": users, "phase": "hold"}],
            }
        )
    )
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    env = {**os.environ, "EI_PAYLOAD_FILE": str(payload), "EI_LOAD_PLAN": str(plan), "EI_SUMMARY": str(summary)}
    cmd = [
        *pin,
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(
        cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60, check=False
    )
    data = json.loads(summary.read_text())
    stats = data["stats"]
    return {
        "rps": stats["rps"],
        "requests": stats["requests"],
        "failures": stats["failures"],
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "mismatches": data["mismatches"],
    }


def run_wrk(url: str, seconds: float, connections: int, work: Path, pin: list[str]) -> dict[str, float]:
    script = work / "post.lua"
    body = json.dumps({"data": {"ndarray": [_image(3)]}})
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    )
    cmd = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url + PATH]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    if not rps or not total:
        raise RuntimeError(f"could not read wrk's output:\n{out}")

    def ms(m: re.Match[str] | None) -> float | None:
        if not m:
            return None
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "failures": int(errors.group(1)) if errors else 0,
        "p50_ms": ms(p50),
    }


def ensure_wrk(install: bool) -> str | None:
    if shutil.which("wrk"):
        return None
    if not install:
        return "wrk is not installed (apt-get install -y wrk, or rerun with --install-wrk); measured locust only"
    cmd = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        subprocess.run(cmd, capture_output=True, check=False)
    return None if shutil.which("wrk") else "wrk could not be installed with apt-get; measured locust only"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=10, help="locust users and wrk connections")
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install wrk when it is missing")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if not 1 <= args.seconds <= 120 or not 1 <= args.repeats <= 10:
        parser.error("--seconds must be within 1..120 and --repeats within 1..10")

    two_cores = (os.cpu_count() or 1) >= 2
    server_pin, client_pin = (_pin(0), _pin(1)) if two_cores else ([], [])
    note = ensure_wrk(args.install_wrk)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*server_pin, sys.executable, str(Path(__file__).resolve()), "--serve", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, list[dict[str, float]]] = {"locust": [], "wrk": []}
    try:
        _wait_port(port)
        print(
            f"endpoint {url}{PATH} (aiohttp, {'core 0' if server_pin else 'unpinned'}); client "
            f"{'on core 1' if client_pin else 'unpinned'}; {args.repeats} x {args.seconds:.0f} s, "
            f"{args.users} users/connections"
        )
        with tempfile.TemporaryDirectory(prefix="ei-bench-") as tmp:
            for i in range(args.repeats):
                r = run_locust(url, args.seconds, args.users, Path(tmp), client_pin)
                results["locust"].append(r)
                print(
                    f"  locust run {i + 1}: {r['rps']:.0f} req/s ({r['requests']} requests, "
                    f"{r['failures']} failed, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms)"
                )
                if note is None:
                    w = run_wrk(url, args.seconds, args.users, Path(tmp), client_pin)
                    results["wrk"].append(w)
                    print(
                        f"  wrk    run {i + 1}: {w['rps']:.0f} req/s ({w['requests']} requests, "
                        f"{w['failures']} non-2xx, p50 {w['p50_ms']} ms)"
                    )
    finally:
        server.terminate()
        server.wait(timeout=10)

    locust_median = statistics.median(r["rps"] for r in results["locust"])
    line: dict[str, object] = {
        "benchmark": "locust_vs_wrk",
        "locust_rps_median": round(locust_median, 1),
        "users": args.users,
        "seconds": args.seconds,
        "repeats": args.repeats,
    }
    print(f"locust (1 core, our locustfile): median {locust_median:.0f} req/s")
    if note:
        print(note)
        line["wrk"] = note
    else:
        wrk_median = statistics.median(r["rps"] for r in results["wrk"])
        print(f"wrk    (1 thread):               median {wrk_median:.0f} req/s")
        print(f"ratio wrk / locust: {wrk_median / locust_median:.2f}")
        line.update(wrk_rps_median=round(wrk_median, 1), ratio_wrk_over_locust=round(wrk_median / locust_median, 2))
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
