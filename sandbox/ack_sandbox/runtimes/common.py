"""What every container runtime shares: the pod's address, volume mounts, logging and a graceful server loop.

The kubelet passes two reserved variables to each container process:

- ``ACK_SANDBOX_POD_IP``: the pod's loopback address (127.x.y.z), shared by the pod's containers.
- ``ACK_SANDBOX_MOUNTS``: JSON ``{"<container mountPath>": "<local directory>", ...}`` so container paths
  in args (``--model_base_path=/mnt/arena/models/fashion-mnist``) resolve to the mapped local directory.
- ``ACK_SANDBOX_SERVING_NICE`` (optional): the CPU priority to take once the server listens. The kubelet
  starts containers at the lowest priority and sets this to its own: on ACK a new replica starts on a
  node of its own, here every pod shares the machine's cores, and a replica importing, loading and warming
  up its model must not take the CPU from the replicas already serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import PurePosixPath

from aiohttp import web

POD_IP_ENV = "ACK_SANDBOX_POD_IP"
MOUNTS_ENV = "ACK_SANDBOX_MOUNTS"
# Upper bound for in-flight requests to finish after SIGTERM (the kubelet SIGKILLs after the pod's grace).
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
SERVING_NICE_ENV = "ACK_SANDBOX_SERVING_NICE"

log = logging.getLogger("ack_sandbox.runtimes")


def pod_ip(env: Mapping[str, str] | None = None) -> str:
    """The address to bind: the pod IP the kubelet assigned, else ``POD_IP`` (downward API), else loopback."""
    env = os.environ if env is None else env
    ip = env.get(POD_IP_ENV) or env.get("POD_IP") or "127.0.0.1"
    if not ip.startswith("127."):
        raise SystemExit(f"{POD_IP_ENV}={ip!r}: the sandbox only binds loopback addresses (127.0.0.0/8)")
    return ip


def mounts(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    raw = env.get(MOUNTS_ENV)
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{MOUNTS_ENV} is not valid JSON ({exc}); expected {{mountPath: localDir}}") from exc
    if not isinstance(table, dict):
        raise SystemExit(f"{MOUNTS_ENV} must be a JSON object {{mountPath: localDir}}, got {type(table).__name__}")
    return {str(k): str(v) for k, v in table.items()}


def host_path(container_path: str, env: Mapping[str, str] | None = None) -> str:
    """Map a path as the container sees it onto the local directory backing its volume mount.

    Longest mountPath prefix wins, as with overlapping Kubernetes mounts. A path under no mount is
    returned unchanged (a container's own filesystem is the host's in the sandbox).
    """
    table = mounts(env)
    path = PurePosixPath(container_path)
    best: tuple[int, str, str] | None = None
    for mount_path, local in table.items():
        mp = PurePosixPath(mount_path)
        if path == mp or mp in path.parents:
            depth = len(mp.parts)
            if best is None or depth > best[0]:
                best = (depth, mount_path, local)
    if best is None:
        return container_path
    _, mount_path, local = best
    rel = path.relative_to(PurePosixPath(mount_path))
    return str(PurePosixPath(local) / rel) if rel.parts else local


def setup_logging(level: str | None = None) -> None:
    """Container logs go to stdout (the kubelet captures them), one line per record."""
    logging.basicConfig(
        level=(level or os.environ.get("ACK_SANDBOX_RUNTIME_LOG_LEVEL") or "INFO").upper(),
        stream=sys.stdout,
        format="%(asctime)s %(levelname).1s %(name)s] %(message)s",
        force=True,
    )


def go_style_args(argv: list[str]) -> list[str]:
    """Go's flag package accepts ``-flag`` and ``--flag``; argparse wants the double dash for long names."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            out.append("-" + arg)
        else:
            out.append(arg)
    return out


def termination_event() -> asyncio.Event:
    """An event set on SIGTERM/SIGINT (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def start_site(
    app: web.Application, host: str, port: int, *, name: str, shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
) -> web.AppRunner:
    """Listen on ``host:port``; exits the process with a clear message when the port cannot be bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=shutdown_timeout, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    log.info("%s listening on http://%s:%d", name, host, port)
    serving_priority()
    return runner


def serving_priority(env: Mapping[str, str] | None = None) -> int | None:
    """Leave the start-up priority: every thread of this process (TF's pools included) to
    ``ACK_SANDBOX_SERVING_NICE``. Returns the niceness now in force, ``None`` when there is nothing to do.

    Lowering niceness needs CAP_SYS_NICE (the kubelet only starts containers low when it has it); a
    refusal leaves the process as it is, logged.
    """
    raw = (os.environ if env is None else env).get(SERVING_NICE_ENV)
    if raw is None or not raw.lstrip("-").isdigit():
        return None
    target = int(raw)
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) > target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except ProcessLookupError:
            continue  # a thread that just ended
        except PermissionError as exc:
            log.info("start-up CPU priority kept (%s): %s", exc.strerror, "needs CAP_SYS_NICE")
            break
    return os.getpriority(os.PRIO_PROCESS, 0)


async def drain(runner: web.AppRunner, name: str) -> None:
    """Stop accepting, let in-flight requests finish (up to the site's shutdown_timeout), close.

    ``TCPSite.stop`` closes the listener first; ``AppRunner.cleanup`` then waits for running handlers
    before cancelling them.
    """
    log.info("%s received termination signal; draining in-flight requests", name)
    await runner.cleanup()
    log.info("%s stopped", name)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    name: str,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return (the process then exits 0)."""
    stop = termination_event()
    runner = await start_site(app, host, port, name=name, shutdown_timeout=shutdown_timeout)
    await stop.wait()
    await drain(runner, name)
