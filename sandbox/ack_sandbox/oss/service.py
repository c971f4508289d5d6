"""The OSS stand-in's aiohttp app: ``create_app(ctx)`` for the sandbox daemon.

``ctx.services["oss"]`` holds the ``OssStore`` so other services (the OSS CSI volume) can read objects.
"""

from __future__ import annotations

from aiohttp import web

from ack_sandbox.alibaba_credentials import credential_store
from ack_sandbox.context import SandboxContext
from ack_sandbox.oss import handlers
from ack_sandbox.oss.faults import OssFaults
from ack_sandbox.oss.store import OssStore

SERVICE_KEY = "oss"


def create_app(ctx: SandboxContext) -> web.Application:
    store = OssStore(ctx.service_dir("oss"), ctx.region)
    ctx.services[SERVICE_KEY] = store
    app = web.Application(client_max_size=5 * 1024**3)
    app[handlers.STORE] = store
    app[handlers.CREDS] = credential_store(ctx)
    app[handlers.CTX] = ctx
    app[handlers.FAULTS] = OssFaults()
    handlers.add_routes(app)
    return app
