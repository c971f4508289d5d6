"""Benchmark: how soon the deploy waits see a change — watch trigger vs. poke-mode sensor.

Starts a sandbox (``ack-sandbox up`` code path), creates Ingresses of a class no controller serves, and for
each one writes ``status.loadBalancer`` itself while a wait runs: the watch-based ``IngressAddressTrigger``
(what deferred and in-process waits use) and the poke-mode ``IngressAddressSensor`` at ``--poke-interval``.
Latency is measured from the status write's response (the commit) to the wait returning. Prints medians,
p95 and the poll/watch ratio. Loopback only; rounds are bounded in count and each wait by a deadline.

    .venv/bin/python -m benchmarks.deploy_waits [--rounds 20] [--poke-rounds 6] [--poke-interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WAIT_DEADLINE = 30.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ingress(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "bench-unserved",
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "svc", "port": {"number": 8000}}},
                            }
                        ]
                    }
                }
            ],
        },
    }


def _set_address(net: Any, ns: str, name: str) -> float:
    net.patch_namespaced_ingress_status(
        name,
        ns,
        {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ports": [{"port": 8080, "protocol": "TCP"}]}]}}},
    )
    return time.perf_counter()


async def watch_rounds(net: Any, ns: str, rounds: int) -> list[float]:
    from elastic_inference.triggers.ingress import IngressAddressTrigger

    out = []
    for i in range(rounds):
        name = f"w{i}"
        net.create_namespaced_ingress(ns, _ingress(name))
        trigger = IngressAddressTrigger(
            access={"kubernetes_conn_id": "kubernetes_default"},
            namespace=ns,
            name=name,
            deadline=time.time() + WAIT_DEADLINE,
        )
        task = asyncio.create_task(trigger.wait())
        await asyncio.sleep(0.5)  # let it list and open its watch
        committed = await asyncio.to_thread(_set_address, net, ns, name)
        event = await task
        done = time.perf_counter()
        assert event["status"] == "success", event
        out.append(done - committed)
    return out


def poke_rounds(net: Any, ns: str, rounds: int, interval: float) -> list[float]:
    import threading

    from elastic_inference.sensors.kubernetes import IngressAddressSensor

    out = []
    for i in range(rounds):
        name = f"p{i}"
        net.create_namespaced_ingress(ns, _ingress(name))
        sensor = IngressAddressSensor(task_id=f"p{i}", name=name, namespace=ns, deferrable=False, timeout=WAIT_DEADLINE)
        committed: list[float] = []
        # the write lands at a random phase of the poke cycle, as it would in real life
        timer = threading.Timer(
            0.37 + (i * 0.61) % interval, lambda n=name, c=committed: c.append(_set_address(net, ns, n))
        )
        timer.start()
        for _ in range(int(WAIT_DEADLINE / interval) + 1):
            if sensor.poke({}).is_done:
                break
            time.sleep(interval)
        done = time.perf_counter()
        timer.join()
        out.append(done - committed[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.deploy_waits", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poke-rounds", type=int, default=6)
    parser.add_argument("--poke-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deploy-waits-") as tmp:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(tmp) / "airflow"))
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
        from kubernetes import client, config

        from ack_sandbox import cli

        state = Path(tmp) / "sandbox"
        state.mkdir()
        cli.up(state, time_scale=30)
        try:
            for line in (state / "airflow.env").read_text().splitlines():
                key, _, value = line.partition("=")
                if key == "AIRFLOW_CONN_KUBERNETES_DEFAULT":
                    os.environ[key] = shlex.split(value)[0]
            api = config.new_client_from_config(config_file=str(state / "kubeconfig"))
            net = client.NetworkingV1Api(api)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
            watch = asyncio.run(watch_rounds(net, "bench", args.rounds))
            poke = poke_rounds(net, "bench", args.poke_rounds, args.poke_interval)
            api.close()
        finally:
            cli.down(state)
    res = {
        "watch_median_ms": statistics.median(watch) * 1000,
        "watch_p95_ms": _pct(watch, 0.95) * 1000,
        "poke_median_ms": statistics.median(poke) * 1000,
        "poke_p95_ms": _pct(poke, 0.95) * 1000,
    }
    res["ratio_poke_to_watch_median"] = res["poke_median_ms"] / res["watch_median_ms"]
    for k, v in res.items():
        print(f"{k:40s} {v:10.2f}")
    print(f"(poke interval {args.poke_interval}s; {args.rounds} watch rounds, {args.poke_rounds} poke rounds)")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
