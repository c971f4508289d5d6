"""Benchmark: the TF Serving runtime's pod start time and memory, and predict latency direct vs the Seldon chain.

Start (process spawn -> ``GET /v1/models/NAME`` answers 200, i.e. the version is AVAILABLE) and memory are
measured for three ways of running the container:

- ``with-keras``: plain ``import tensorflow`` (pulls Keras and scikit-learn), the naive baseline;
- ``in-process``: the runtime's default, TensorFlow imported without Keras (the C++ server has none);
- ``zygote``: a fork of a pre-imported TensorFlow (``ack_sandbox.runtimes.tf_zygote``); the zygote's
  own one-off start is printed separately. Memory of a fork is given as RSS and as PSS/USS, because
  most of its RSS is pages shared copy-on-write with the zygote.

Latency: one real image per request, sequential keep-alive requests, p50/p95 of TF Serving's REST
``:predict`` directly and of the Seldon path ``executor :8000 -> tfserving-proxy :9000 -> TF Serving``.

    .venv/bin/python -m benchmarks.runtimes [--repeats 3] [--requests 300] [--model-dir DIR]

Everything runs on a loopback pod address; every wait is bounded.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POD_IP = "127.0.77.7"
MODEL = "fashion-mnist"
DEADLINE = 180.0


def _memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private) in MiB from /proc (smaps_rollup)."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        return {}
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields.get("Rss", 0) / 1024, "pss": fields.get("Pss", 0) / 1024, "uss": uss / 1024}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(POD_IP, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _wait_ready(proc: subprocess.Popen, port: int, path: str, deadline: float = DEADLINE) -> float:
    started = time.perf_counter()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited rc={proc.returncode}")
        try:
            if _get(port, path) == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{path} on :{port} not ready in {deadline}s")


def _spawn(spec, extra_env: dict[str, str], log: Path) -> subprocess.Popen:
    from ack_sandbox.runtimes import common

    env = {**os.environ, **spec.env, **extra_env, common.POD_IP_ENV: POD_IP}
    return subprocess.Popen(spec.argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_start(model_base: Path, work: Path, repeats: int) -> dict[str, list[dict[str, float]]]:
    from ack_sandbox.runtimes import registry, tf_zygote

    spec = registry.resolve(
        "tensorflow/serving:2.3.0",
        None,
        ["--rest_api_port=8501"],
        {"MODEL_NAME": MODEL, "MODEL_BASE_PATH": str(model_base)},
    )
    results: dict[str, list[dict[str, float]]] = {"with-keras": [], "in-process": [], "zygote": []}
    for mode, extra in (("with-keras", {"ACK_SANDBOX_TF_WITH_KERAS": "1"}), ("in-process", {})):
        for i in range(repeats):
            proc = _spawn(spec, extra, work / f"{mode}-{i}.log")
            try:
                seconds = _wait_ready(proc, 8501, f"/v1/models/{MODEL}")
                results[mode].append({"start_s": seconds, **_memory(proc.pid)})
            finally:
                _stop(proc)
    t0 = time.perf_counter()
    zygote = tf_zygote.start(work / "z.sock", work / "zygote.log", ready_timeout=DEADLINE)
    zygote_start = time.perf_counter() - t0
    zygote_mem = _memory(zygote.process.pid)
    try:
        for i in range(repeats):
            proc = _spawn(spec, zygote.env(), work / f"zygote-{i}.log")
            try:
                seconds = _wait_ready(proc, 8501, f"/v1/models/{MODEL}")
                forks = _children(zygote.process.pid)
                child = _memory(forks[0]) if forks else {}
                launcher = _memory(proc.pid)
                results["zygote"].append({"start_s": seconds, **child, "launcher_rss": launcher.get("rss", 0.0)})
            finally:
                _stop(proc)
    finally:
        zygote.stop()
    results["zygote_process"] = [{"start_s": zygote_start, **zygote_mem}]
    return results


def _latency(port: int, path: str, body: bytes, n: int) -> list[float]:
    conn = http.client.HTTPConnection(POD_IP, port, timeout=30)
    out: list[float] = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{path}: {resp.status} {payload[:200]!r}")
            out.append((time.perf_counter() - t) * 1000)
    finally:
        conn.close()
    return out


def measure_latency(model_base: Path, work: Path, requests: int) -> dict[str, list[float]]:
    from ack_sandbox.runtimes import registry

    sys.path.insert(0, str(REPO / "include"))
    from training.data import sample_images

    images, _ = sample_images(1)
    tfs = registry.resolve(
        "tensorflow/serving:2.3.0",
        None,
        ["--rest_api_port=8501"],
        {"MODEL_NAME": MODEL, "MODEL_BASE_PATH": str(model_base)},
    )
    params = [
        {"name": "rest_endpoint", "type": "STRING", "value": "http://127.x.x.x:8501"},
        {"name": "model_name", "type": "STRING", "value": MODEL},
    ]
    graph = {
        "name": "tfserving-proxy",
        "type": "MODEL",
        "endpoint": {"service_host": "localhost", "service_port": 9000},
    }
    proxy = registry.resolve(
        "seldonio/tfserving-proxy_rest:1.3.0",
        None,
        None,
        {"PREDICTIVE_UNIT_PARAMETERS": json.dumps(params), "SELDON_LOG_LEVEL": "WARNING"},
    )
    executor = registry.resolve(
        "seldonio/seldon-core-executor:1.18.2",
        None,
        [
            "--sdep",
            "bench",
            "--namespace",
            "default",
            "--predictor",
            "p",
            "--http_port",
            "8000",
            "--log_level",
            "WARNING",
        ],
        {"ENGINE_PREDICTOR": base64.b64encode(json.dumps({"name": "p", "graph": graph}).encode()).decode()},
    )
    procs = [
        _spawn(tfs, {}, work / "lat-tfs.log"),
        _spawn(proxy, {}, work / "lat-proxy.log"),
        _spawn(executor, {}, work / "lat-executor.log"),
    ]
    try:
        _wait_ready(procs[0], 8501, f"/v1/models/{MODEL}")
        _wait_ready(procs[1], 9000, "/ready")
        _wait_ready(procs[2], 8000, "/ready")
        direct_body = json.dumps({"instances": images}).encode()
        seldon_body = json.dumps({"data": {"ndarray": images}}).encode()
        _latency(8501, f"/v1/models/{MODEL}:predict", direct_body, 20)  # warm up
        _latency(8000, "/api/v1.0/predictions", seldon_body, 20)
        return {
            "direct": _latency(8501, f"/v1/models/{MODEL}:predict", direct_body, requests),
            "seldon chain": _latency(8000, "/api/v1.0/predictions", seldon_body, requests),
        }
    finally:
        for p in reversed(procs):
            _stop(p)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.runtimes", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--model-dir", type=Path, default=None, help="a base dir holding fashion-mnist/<version>")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        work = Path(tmp)
        base = args.model_dir
        if base is None:
            base = work / "models"
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "training.train", str(base)],
                check=True,
                timeout=600,
                env={**os.environ, "PYTHONPATH": str(REPO / "include")},
                capture_output=True,
            )
            print(f"trained the demo model in {time.perf_counter() - t:.1f} s (process incl. TF import)")
        starts = measure_start(base, work, args.repeats)
        print("TF Serving runtime start (spawn -> model AVAILABLE over REST) and memory, medians:")
        for mode in ("with-keras", "in-process", "zygote", "zygote_process"):
            runs = starts[mode]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            mem = "  ".join(f"{k} {v:.0f} MiB" for k, v in med.items() if k != "start_s")
            print(f"  {mode:15s} start {med['start_s']:.2f} s  {mem}  (n={len(runs)})")
        base_s = statistics.median(r["start_s"] for r in starts["with-keras"])
        for mode in ("in-process", "zygote"):
            s = statistics.median(r["start_s"] for r in starts[mode])
            print(f"  speed-up vs with-keras: {mode} x{base_s / s:.1f}")
        lat = measure_latency(base, work, args.requests)
        print(f"predict latency, 1 image, {args.requests} sequential keep-alive requests:")
        for name, values in lat.items():
            print(f"  {name:13s} p50 {statistics.median(values):.2f} ms  p95 {_pct(values, 0.95):.2f} ms")
        ratio = statistics.median(lat["seldon chain"]) / statistics.median(lat["direct"])
        print(f"  seldon chain / direct (p50): x{ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
