"""The CS stand-in's aiohttp app: ``create_app(ctx)`` for the sandbox daemon."""

from __future__ import annotations

from aiohttp import web

from ack_sandbox.alibaba_credentials import credential_store
from ack_sandbox.context import SandboxContext
from ack_sandbox.cs import handlers
from ack_sandbox.cs.faults import Faults
from ack_sandbox.cs.models import SERVICE_KEY, CsState
from ack_sandbox.cs.signature import NonceCache


def create_app(ctx: SandboxContext) -> web.Application:
    faults = Faults()
    state = CsState(ctx, faults)
    ctx.services[SERVICE_KEY] = state
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[handlers.STATE] = state
    app[handlers.FAULTS] = faults
    app[handlers.CREDS] = credential_store(ctx)
    app[handlers.CTX] = ctx
    app[handlers.NONCES] = NonceCache()
    handlers.add_routes(app)

    async def on_startup(_: web.Application) -> None:
        state.resume()

    app.on_startup.append(on_startup)
    return app
