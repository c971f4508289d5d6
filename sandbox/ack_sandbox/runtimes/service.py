"""Daemon service owning the TF zygote, so TF Serving pods start in ~0.4 s instead of ~5 s.

Registered in ``server.SERVICES`` as ``"runtimes": "ack_sandbox.runtimes.service"``. On start it launches
``tf_zygote`` in the background (the daemon does not wait for TensorFlow's import); once the zygote
answers it exports ``ACK_SANDBOX_TF_ZYGOTE`` in the daemon's environment, which ``registry.resolve`` copies
into TF Serving containers' env. Until then, or if the zygote fails, containers import TensorFlow
themselves (correct, only slower). On daemon stop the zygote and its forks are stopped.

``GET /`` reports ``{"zygote": "disabled"|"starting"|"ready"|"failed", "socket": ..., "error": ...}``.
Disable with ``ACK_SANDBOX_TF_ZYGOTE_DISABLE=1`` (e.g. on a machine short of memory: the zygote holds
~480 MiB RSS; each fork adds ~25 MiB private memory instead of ~490 MiB per in-process server).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ack_sandbox.context import SandboxContext
from ack_sandbox.runtimes import tf_zygote

log = logging.getLogger("ack_sandbox.runtimes.service")
DISABLE_ENV = "ACK_SANDBOX_TF_ZYGOTE_DISABLE"
STATE_KEY = web.AppKey("runtimes_state", dict)
READY_TIMEOUT = 180.0  # seconds for the zygote to import TensorFlow


def socket_path_for(state_dir: Path) -> str:
    """``<state_dir>/tf-zygote.sock``, or a short path in the temp dir when that exceeds AF_UNIX's limit."""
    preferred = str(state_dir / "tf-zygote.sock")
    if len(preferred.encode()) <= 100:
        return preferred
    digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / f"ack-tfz-{digest}.sock")


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application()
    state: dict[str, Any] = {"zygote": "disabled", "socket": None, "error": None, "handle": None, "task": None}
    app[STATE_KEY] = state

    async def start_zygote(_: web.Application) -> None:
        if os.environ.get(DISABLE_ENV, "").lower() in ("1", "true"):
            return
        path = socket_path_for(ctx.state_dir)
        state.update(zygote="starting", socket=path)

        try:
            handle = tf_zygote.spawn(path, ctx.service_dir("runtimes") / "tf-zygote.log")
        except (OSError, ValueError) as exc:
            state.update(zygote="failed", error=str(exc))
            return
        state["handle"] = handle

        async def wait_ready() -> None:
            end = asyncio.get_running_loop().time() + READY_TIMEOUT
            try:
                while not handle.ready():
                    if asyncio.get_running_loop().time() > end:
                        raise TimeoutError(f"not ready after {READY_TIMEOUT}s")
                    await asyncio.sleep(0.2)
            except (RuntimeError, TimeoutError) as exc:
                state.update(zygote="failed", error=str(exc))
                log.warning("TF zygote unavailable, TF Serving containers will import TensorFlow themselves: %s", exc)
                await asyncio.to_thread(handle.stop)
                return
            state["zygote"] = "ready"
            os.environ[tf_zygote.ZYGOTE_ENV] = path
            log.info("TF zygote ready at %s", path)

        state["task"] = asyncio.create_task(wait_ready())

    async def stop_zygote(_: web.Application) -> None:
        os.environ.pop(tf_zygote.ZYGOTE_ENV, None)
        task = state.get("task")
        if task is not None and not task.done():
            task.cancel()
        handle = state.get("handle")
        if handle is not None:
            await asyncio.to_thread(handle.stop)
            if state["zygote"] in ("ready", "starting"):
                state["zygote"] = "stopped"

    async def status(_: web.Request) -> web.Response:
        return web.json_response({k: state[k] for k in ("zygote", "socket", "error")})

    app.on_startup.append(start_zygote)
    app.on_cleanup.append(stop_zygote)
    app.router.add_get("/", status)
    return app
