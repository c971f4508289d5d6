"""The sandbox daemon: every service's aiohttp app on its own loopback port, one event loop.

Started by ``ack-sandbox up`` as a child process; runs until SIGTERM/SIGINT. Each service lives in
``ack_sandbox.<package>.service`` and exposes ``create_app(ctx) -> aiohttp.web.Application`` — or, for a
service that listens from a process of its own (the ingress proxy), ``async start(ctx, host, port)``
returning the coroutine function that stops it — and may expose ``after_start(ctx)`` to write files that
need every endpoint (e.g. the kubeconfig).
Ports are chosen once per state directory and kept, so a kubeconfig stays valid across down/up.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import shlex
import signal
import socket
from pathlib import Path
from typing import Any

from aiohttp import web

from ack_sandbox.context import SandboxContext
from ack_sandbox.runtimes.common import SERVING_NICE_ENV

log = logging.getLogger("ack_sandbox")

# endpoints.json key -> module providing create_app(ctx). Order is start order.
SERVICES: dict[str, str] = {
    "kubernetes": "ack_sandbox.k8s.service",
    "cs": "ack_sandbox.cs.service",
    "oss": "ack_sandbox.oss.service",
    # A pre-imported TensorFlow process that TF Serving pods fork from (pod start ~0.4 s instead of ~5 s);
    # ACK_SANDBOX_TF_ZYGOTE_DISABLE=1 turns it off and pods import TensorFlow themselves.
    "runtimes": "ack_sandbox.runtimes.service",
    "controllers": "ack_sandbox.controllers.service",
    "ingress": "ack_sandbox.controllers.ingress",
}

READY_FILE = "ready.json"
PID_FILE = "sandbox.pid"
# On ACK the control plane and every node have CPUs of their own; here they share the machine's two. The daemon
# (API server, controllers, kubelet) steps back by this much, so a scale-out's bookkeeping does not take the CPU
# from the replicas and the ingress serving requests: those take the daemon's original priority
# (ACK_SANDBOX_SERVING_NICE) once they serve. Only with the privilege to give it back; 0 turns it off.
CONTROL_PLANE_NICE = int(os.environ.get("ACK_SANDBOX_CONTROL_PLANE_NICE", "5"))


def control_plane_priority() -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    if CONTROL_PLANE_NICE <= 0 or os.geteuid() != 0 or SERVING_NICE_ENV in os.environ:
        return
    os.environ[SERVING_NICE_ENV] = str(own)  # what pods and the ingress proxy serve at (inherited by children)
    os.setpriority(os.PRIO_PROCESS, 0, own + CONTROL_PLANE_NICE)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def assign_ports(ctx: SandboxContext, names: list[str]) -> dict[str, int]:
    """Reuse the ports recorded for this state directory where still free; pick new ones otherwise."""
    ports_file = ctx.state_dir / "ports.json"
    ports: dict[str, int] = json.loads(ports_file.read_text()) if ports_file.exists() else {}
    for name in names:
        if name not in ports or not _port_is_free(ctx.host, ports[name]):
            ports[name] = _free_port(ctx.host)
    ports_file.write_text(json.dumps(ports, indent=2))
    return ports


LISTENERS = "listeners"  # ctx.services key: service name -> its Listener(s)


class Listener:
    """One service's listening socket on its runner, stoppable and restartable (the Kubernetes API outage drill).

    :meth:`stop` closes the socket (new connections are refused, as from a stopped API server or its load
    balancer) and drops the open ones (watches break mid-stream); :meth:`start` listens again on the same port.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, ssl_context: Any = None) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.site: web.TCPSite | None = None

    async def start(self) -> None:
        if self.site is not None:
            return
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        self.site = site

    async def stop(self) -> None:
        if self.site is None:
            return
        site, self.site = self.site, None
        await site.stop()
        server = self.runner.server
        for handler in list(getattr(server, "connections", None) or []):
            handler.force_close()


def register_listener(ctx: SandboxContext, name: str, listener: Listener) -> None:
    ctx.services.setdefault(LISTENERS, {}).setdefault(name, []).append(listener)


def endpoints_document(ctx: SandboxContext) -> dict[str, Any]:
    return {
        **ctx.endpoints,
        "region": ctx.region,
        "cluster_id": ctx.cluster_id,
        "access_key_id": ctx.account.access_key_id,
        "access_key_secret": ctx.account.access_key_secret,
        "time_scale": ctx.time_scale,
    }


def airflow_env_lines(ctx: SandboxContext) -> list[str]:
    """``AIRFLOW_CONN_*`` lines pointing the provider's default connections at this sandbox:
    ``alibaba_ack_default`` (the demo account), ``kubernetes_default`` and ``alibaba_oss_volume`` (read-only)."""
    ack = {
        "conn_type": "alibaba_ack",
        "login": ctx.account.access_key_id,
        "password": ctx.account.access_key_secret,
        "extra": {
            "region_id": ctx.region,
            "cluster_id": ctx.cluster_id,
            **({"cs_endpoint": ctx.endpoints["cs"]} if "cs" in ctx.endpoints else {}),
            **({"oss_endpoint": ctx.endpoints["oss"]} if "oss" in ctx.endpoints else {}),
            # The cloud's delays run this many times faster here: the provider's scale report says so.
            "time_scale": ctx.time_scale,
        },
    }
    kube = {
        "conn_type": "kubernetes",
        "extra": {"kube_config_path": str(ctx.state_dir / "kubeconfig"), "namespace": "default"},
    }
    lines = [
        f"AIRFLOW_CONN_ALIBABA_ACK_DEFAULT={shlex.quote(json.dumps(ack))}",
        f"AIRFLOW_CONN_KUBERNETES_DEFAULT={shlex.quote(json.dumps(kube))}",
    ]
    if "oss" in ctx.endpoints:
        # The OSS volume's own connection: a RAM user's key that may only read (the PV's Secret gets this one,
        # never the deploying account's key).
        from ack_sandbox.alibaba_credentials import credential_store, volume_reader_key

        reader = volume_reader_key(credential_store(ctx))
        volume = {
            "conn_type": "alibaba_ack",
            "login": reader.access_key_id,
            "password": reader.access_key_secret,
            "extra": {"region_id": ctx.region, "oss_endpoint": ctx.endpoints["oss"]},
        }
        lines.append(f"AIRFLOW_CONN_ALIBABA_OSS_VOLUME={shlex.quote(json.dumps(volume))}")
    return lines


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def write_state_files(ctx: SandboxContext) -> None:
    _write_private(ctx.state_dir / "endpoints.json", json.dumps(endpoints_document(ctx), indent=2) + "\n")
    _write_private(ctx.state_dir / "airflow.env", "\n".join(airflow_env_lines(ctx)) + "\n")
    kubeconfig = ctx.state_dir / "kubeconfig"
    if not kubeconfig.exists():
        # Replaced by the Kubernetes service when it runs; until then a valid, empty kubeconfig.
        _write_private(kubeconfig, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")


async def serve(ctx: SandboxContext, stop: asyncio.Event) -> None:
    modules = {name: importlib.import_module(mod) for name, mod in SERVICES.items()}
    ports = assign_ports(ctx, list(modules))
    for name in modules:
        ctx.endpoints[name] = f"http://{ctx.host}:{ports[name]}"
    runners: list[web.AppRunner] = []
    stoppers: list[Any] = []
    try:
        for name, module in modules.items():
            if hasattr(module, "start"):
                stoppers.append(await module.start(ctx, ctx.host, ports[name]))
                log.info("%s listening on %s (own process)", name, ctx.endpoints[name])
                continue
            app = module.create_app(ctx)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            listener = Listener(runner, ctx.host, ports[name])
            await listener.start()
            register_listener(ctx, name, listener)
            runners.append(runner)
            log.info("%s listening on %s", name, ctx.endpoints[name])
        write_state_files(ctx)
        for module in modules.values():
            after = getattr(module, "after_start", None)
            if after is not None:
                await after(ctx)
        _write_private(ctx.state_dir / READY_FILE, json.dumps({"pid": os.getpid(), **ctx.endpoints}))
        await stop.wait()
    finally:
        (ctx.state_dir / READY_FILE).unlink(missing_ok=True)
        for stop_service in reversed(stoppers):
            await stop_service()
        for runner in reversed(runners):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ack_sandbox.server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("ACK_SANDBOX_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx = SandboxContext.load_or_create(args.state_dir.resolve(), args.time_scale)
    (ctx.state_dir / PID_FILE).write_text(str(os.getpid()))
    control_plane_priority()  # before any thread exists: threads inherit it

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(ctx, stop)

    try:
        asyncio.run(run())
    finally:
        (ctx.state_dir / PID_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
