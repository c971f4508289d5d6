"""The daemon service that runs every controller, plus a small admin API for drills.

Registered in ``server.SERVICES`` as ``"controllers"`` after ``"kubernetes"`` (and after ``"cs"``/``"oss"``).
Controllers start in ``after_start`` — once every service answers, so the kubelet's OSS mounts and the
node sync's CS state are there — and stop (killing every pod process) when the app shuts down.

Adding a controller: append ``"module:Class"`` to ``CONTROLLERS``. The class is built as ``Class(ctx)``
and must have ``async start()`` and ``async stop()`` (``base.Controller`` has both). Modules that are not
there yet are skipped with a warning, so part-B controllers can be listed before they land.

Admin API (``Authorization: Bearer <demo access_key_id>``, as the CS stand-in's admin paths):

- ``POST /_sandbox/nodes/{name}/reclaim[?notice=SECONDS]`` — the spot market reclaims the node's ECS
  instance: reclaim notice now (node cordoned and drained), instance released after ``notice`` cloud
  seconds (default: CS ``DELAYS["reclaim_notice"]``). 202 ``{"node_name","instance_id","notice_seconds"}``;
  404 unknown node; 400 not a spot node.
- ``GET /_sandbox/autoscaler`` — the node autoscaler's config and state;
  ``PUT /_sandbox/autoscaler`` with a JSON object of settings (``scan_interval``, ``scale_down_enabled``,
  ``scale_down_unneeded``, ``scale_down_delay_after_add``, ``failed_pool_backoff``; cloud seconds).
- ``GET /_sandbox/controllers`` — which controllers run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from typing import Any

from aiohttp import web

from ack_sandbox.admin import require_admin
from ack_sandbox.context import SandboxContext

log = logging.getLogger("ack_sandbox.controllers")

SERVICE_KEY = "controllers"

# Start order: node sync first (Nodes exist before pods are scheduled), the kubelet last of part A.
CONTROLLERS: list[str] = [
    "ack_sandbox.controllers.nodes:NodeSync",
    "ack_sandbox.controllers.volumes:ClaimBinder",
    "ack_sandbox.controllers.volumes:VolumePhases",
    "ack_sandbox.controllers.scheduler:Scheduler",
    "ack_sandbox.controllers.replicaset:ReplicaSetController",
    "ack_sandbox.controllers.deployment:DeploymentController",
    "ack_sandbox.controllers.node_autoscaler:NodeAutoscaler",
    "ack_sandbox.controllers.kubelet:Kubelet",
    "ack_sandbox.controllers.metrics:ExternalMetricsApi",
    "ack_sandbox.controllers.seldon:SeldonController",
    "ack_sandbox.controllers.kserve:KServeController",
    "ack_sandbox.controllers.hpa:HpaController",
    "ack_sandbox.controllers.job:JobController",
    "ack_sandbox.controllers.cronjob:CronJobController",
    "ack_sandbox.controllers.endpoints:EndpointsController",
    "ack_sandbox.controllers.apiservices:ApiServiceController",
    "ack_sandbox.controllers.replicationcontroller:ReplicationControllerController",
    "ack_sandbox.controllers.daemonset:DaemonSetController",
    "ack_sandbox.controllers.statefulset:StatefulSetController",
]


class Controllers:
    """The running controllers of this daemon (at ``ctx.services["controllers"]``)."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.running: dict[str, Any] = {}

    def get(self, cls_name: str) -> Any:
        return next((c for path, c in self.running.items() if path.endswith(":" + cls_name)), None)

    async def start(self) -> None:
        for path in CONTROLLERS:
            mod_name, cls_name = path.split(":")
            try:
                cls = getattr(importlib.import_module(mod_name), cls_name)
            except (ImportError, AttributeError) as exc:
                log.warning("controller %s is not available: %s", path, exc)
                continue
            ctrl = cls(self.ctx)
            await ctrl.start()
            self.running[path] = ctrl
            log.info("controller %s started", path)

    async def stop(self) -> None:
        for path, ctrl in reversed(list(self.running.items())):
            try:
                await asyncio.wait_for(ctrl.stop(), 15)
            except Exception:
                log.exception("controller %s did not stop cleanly", path)
        self.running.clear()


def _auth(request: web.Request) -> None:
    require_admin(request, request.app["ctx"])


def _json_error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"message": message}), content_type="application/json")


async def reclaim_node(request: web.Request) -> web.Response:
    _auth(request)
    ctx: SandboxContext = request.app["ctx"]
    name = request.match_info["name"]
    cs = ctx.services.get("cs")
    if cs is None:
        raise _json_error(web.HTTPServiceUnavailable, "the CS stand-in is not running")
    inst = next((i for i in cs.instances() if i.node_name == name), None)
    if inst is None:
        raise _json_error(web.HTTPNotFound, f'node "{name}" is not an ECS instance of this cluster')
    if not inst.is_spot:
        raise _json_error(
            web.HTTPBadRequest,
            f'node "{name}" ({inst.instance_id}) is pay-as-you-go '
            f"(spot_strategy NoSpot); only spot instances are reclaimed",
        )
    notice_q = request.query.get("notice")
    try:
        notice = float(notice_q) if notice_q is not None else None
    except ValueError:
        raise _json_error(web.HTTPBadRequest, f"notice must be a number of cloud seconds, got {notice_q!r}") from None
    from ack_sandbox.cs.models import DELAYS

    task = asyncio.get_running_loop().create_task(cs.reclaim_spot(inst.instance_id, notice))
    request.app["bg"].add(task)
    task.add_done_callback(request.app["bg"].discard)
    return web.json_response(
        {
            "node_name": name,
            "instance_id": inst.instance_id,
            "notice_seconds": DELAYS["reclaim_notice"] if notice is None else notice,
        },
        status=202,
    )


def _autoscaler(request: web.Request) -> Any:
    ctrls: Controllers = request.app["ctx"].services[SERVICE_KEY]
    scaler = ctrls.get("NodeAutoscaler")
    if scaler is None:
        raise _json_error(web.HTTPServiceUnavailable, "the node autoscaler is not running")
    return scaler


async def get_autoscaler(request: web.Request) -> web.Response:
    _auth(request)
    return web.json_response(_autoscaler(request).describe())


async def put_autoscaler(request: web.Request) -> web.Response:
    _auth(request)
    scaler = _autoscaler(request)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object of settings")
        scaler.config.update(body)
    except ValueError as exc:
        raise _json_error(web.HTTPBadRequest, str(exc)) from None
    scaler.wake()
    return web.json_response(scaler.describe())


async def list_controllers(request: web.Request) -> web.Response:
    _auth(request)
    ctrls: Controllers = request.app["ctx"].services[SERVICE_KEY]
    return web.json_response({"controllers": list(ctrls.running)})


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application()
    app["ctx"] = ctx
    app["bg"] = set()
    ctx.services[SERVICE_KEY] = Controllers(ctx)

    async def cleanup(app: web.Application) -> None:
        for task in list(app["bg"]):
            task.cancel()
        await ctx.services[SERVICE_KEY].stop()

    app.on_cleanup.append(cleanup)
    app.router.add_post("/_sandbox/nodes/{name}/reclaim", reclaim_node)
    app.router.add_get("/_sandbox/autoscaler", get_autoscaler)
    app.router.add_put("/_sandbox/autoscaler", put_autoscaler)
    app.router.add_get("/_sandbox/controllers", list_controllers)
    return app


async def after_start(ctx: SandboxContext) -> None:
    if "kubernetes" not in ctx.services:
        log.error("controllers not started: the Kubernetes API service is not registered before them")
        return
    await ctx.services[SERVICE_KEY].start()
