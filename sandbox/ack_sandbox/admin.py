"""The sandbox's own admin paths (``/_sandbox/...``): outside the emulated APIs, guarded by the demo account's
AccessKey ID as a bearer token so they are not open to anything on loopback."""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from ack_sandbox.context import SandboxContext


class FaultSwitch(Protocol):
    def describe(self) -> dict[str, Any]: ...
    def configure(self, doc: Any) -> None: ...
    def clear(self) -> None: ...


def require_admin(request: web.Request, ctx: SandboxContext) -> None:
    if request.headers.get("Authorization") != f"Bearer {ctx.account.access_key_id}":
        raise web.HTTPUnauthorized(
            text=json.dumps({"message": "send Authorization: Bearer <demo access_key_id>"}),
            content_type="application/json",
        )


def add_fault_routes(app: web.Application, faults_key: web.AppKey[Any], ctx_key: web.AppKey[SandboxContext]) -> None:
    """``GET`` (what is armed), ``POST`` (arm: the service's fault document), ``DELETE`` (clear) ``/_sandbox/faults``."""

    async def get_faults(request: web.Request) -> web.Response:
        require_admin(request, request.app[ctx_key])
        return web.json_response(request.app[faults_key].describe())

    async def set_faults(request: web.Request) -> web.Response:
        require_admin(request, request.app[ctx_key])
        try:
            request.app[faults_key].configure(await request.json())
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response(request.app[faults_key].describe())

    async def clear_faults(request: web.Request) -> web.Response:
        require_admin(request, request.app[ctx_key])
        request.app[faults_key].clear()
        return web.json_response(request.app[faults_key].describe())

    app.router.add_get("/_sandbox/faults", get_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_delete("/_sandbox/faults", clear_faults)
