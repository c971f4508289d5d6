"""Seldon v1 executor (service orchestrator), the ``seldon-container-engine`` container, REST transport.

Mirrors ``executor/main.go``, ``executor/api/rest/{server,client,errors}.go`` and
``executor/predictor/{predictor_process,ready_checker}.go`` (seldon-core 1.x):

- Flags (Go ``flag``: ``-x v``, ``--x v``, ``--x=v``): ``--sdep``, ``--namespace``, ``--predictor`` (all
  required), ``--http_port`` (the operator passes 8000), ``--grpc_port``, ``--protocol`` (seldon | tensorflow),
  ``--transport`` (rest), ``--file`` (a SeldonDeployment YAML), plus the operator's logging/metrics flags.
  An undefined flag exits 2 with ``flag provided but not defined``, as Go's flag package does.
- The graph comes from ``ENGINE_PREDICTOR`` (base64 JSON PredictorSpec, set by the operator) or ``--file``.
  Each unit's ``endpoint.service_host``/``service_port`` is where it is called (the operator sets
  ``localhost`` and 9000, 9001, ... in graph order; missing ones get the same defaults here).
- Seldon protocol: ``POST /api/v1.0/predictions`` (and v0.1) runs the graph: MODEL -> ``/predict``,
  TRANSFORMER -> ``/transform-input``, OUTPUT_TRANSFORMER -> ``/transform-output``, ROUTER -> ``/route``,
  COMBINER -> ``/aggregate``; children are chained. Bytes pass through untouched (the executor adds no
  metadata). A unit's non-200 reply is returned with the unit's status code and body; a transport error
  is 500 ``{"status": {"code": 500, "info": "..."}}`` (``JSONRestClient.CreateErrorPayload``).
  ``/api/v1.0/feedback`` forwards to ``/send-feedback``.
- Tensorflow protocol: ``POST /v1/models/NAME:predict`` -> the unit's ``/v1/models/<unit>:predict``.
- ``/ready``: 200 when every unit's host:port accepts a TCP connection, else 503 (``ready_checker.go``);
  ``/live``: 200. ``/pause`` (called by the operator's preStop hook) makes ``/ready`` fail until ``/unpause``.

``localhost`` means this pod's own address (``ACK_SANDBOX_POD_IP``), as a shared network namespace would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ack_sandbox.runtimes import common

log = logging.getLogger("seldon-executor")

FIRST_HTTP_PORT = 9000
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", ""}
PUID_HEADER = "Seldon-Puid"
# The real client has no timeout unless seldon.io/rest-timeout is set; bound it anyway.
UNIT_TIMEOUT = aiohttp.ClientTimeout(total=300, connect=5)

METHOD_PATHS = {
    "predict": "/predict",
    "transform_input": "/transform-input",
    "transform_output": "/transform-output",
    "route": "/route",
    "aggregate": "/aggregate",
    "feedback": "/send-feedback",
    "status": "/health/status",
    "metadata": "/metadata",
}


class GraphError(Exception):
    pass


@dataclass
class Unit:
    name: str
    type: str
    host: str
    port: int
    children: list[Unit] = field(default_factory=list)

    def walk(self) -> list[Unit]:
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def build_graph(node: dict[str, Any], own_ip: str, counter: list[int] | None = None) -> Unit:
    counter = [FIRST_HTTP_PORT] if counter is None else counter
    if not isinstance(node, dict) or not node.get("name"):
        raise GraphError(f"graph node needs a name: {node!r:.200}")
    endpoint = node.get("endpoint") or {}
    host = str(endpoint.get("service_host") or "")
    port = endpoint.get("service_port") or endpoint.get("httpPort")
    if not port:
        port = counter[0]
        counter[0] += 1
    unit = Unit(
        name=str(node["name"]),
        type=str(node.get("type") or "MODEL").upper(),
        host=own_ip if host in LOCAL_HOSTS else host,
        port=int(port),
    )
    unit.children = [build_graph(child, own_ip, counter) for child in node.get("children") or []]
    return unit


def load_predictor(file: str, predictor_name: str) -> dict[str, Any]:
    b64 = os.environ.get("ENGINE_PREDICTOR")
    if file:
        import yaml

        path = Path(common.host_path(file))
        if not str(path).endswith("yaml"):
            raise GraphError(f"Unsupported file type {file}")
        sdep = yaml.safe_load(path.read_text())
        for predictor in (sdep.get("spec") or {}).get("predictors") or []:
            if predictor.get("name") == predictor_name:
                return predictor
        raise GraphError(f"Predictor not found {predictor_name}")
    if b64:
        try:
            return json.loads(base64.b64decode(b64))
        except (ValueError, TypeError) as exc:
            raise GraphError(f"ENGINE_PREDICTOR is not base64-encoded JSON: {exc}") from None
    raise GraphError(
        "no predictor: set ENGINE_PREDICTOR (base64 JSON of the predictor spec, as the Seldon operator does) or "
        "--file; reading the SeldonDeployment from the API is not supported by the sandbox executor"
    )


class Executor:
    def __init__(self, root: Unit, protocol: str, session: aiohttp.ClientSession) -> None:
        self.root = root
        self.protocol = protocol
        self.session = session

    # -- calls to units --

    async def call(
        self, unit: Unit, method: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, str]:
        if self.protocol == "tensorflow":
            path = {"status": f"/v1/models/{unit.name}", "metadata": f"/v1/models/{unit.name}/metadata"}.get(
                method, f"/v1/models/{unit.name}:predict"
            )
        else:
            path = METHOD_PATHS[method]
        url = f"http://{unit.host}:{unit.port}{path}"
        try:
            if body is None:
                ctx = self.session.get(url, headers=headers)
            else:
                ctx = self.session.post(url, data=body, headers={"Content-Type": "application/json", **headers})
            async with ctx as resp:
                return resp.status, await resp.read(), resp.headers.get("Content-Type", "application/json")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            info = f'Post "{url}": {exc.__class__.__name__}: {exc}' if body is not None else f'Get "{url}": {exc}'
            return 500, json.dumps({"status": {"code": 500, "info": info}}).encode(), "application/json"

    async def predict(self, unit: Unit, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """predictor_process.go Predict: transform input, then children, then transform output."""
        status, out, ctype = 200, body, "application/json"
        if unit.type in ("MODEL", "TRANSFORMER", "UNKNOWN_TYPE"):
            status, out, ctype = await self.call(
                unit, "predict" if unit.type != "TRANSFORMER" else "transform_input", body, headers
            )
            if status != 200:
                return status, out, ctype
        if unit.children:
            if unit.type == "ROUTER":
                status, routed, ctype = await self.call(unit, "route", out, headers)
                if status != 200:
                    return status, routed, ctype
                branch = _route_from(routed)
                targets = (
                    unit.children
                    if branch == -1
                    else [unit.children[branch]]
                    if 0 <= branch < len(unit.children)
                    else None
                )
                if targets is None:
                    return (
                        500,
                        _error(f"invalid route {branch} for {len(unit.children)} children of {unit.name}"),
                        ctype,
                    )
            else:
                targets = unit.children
            results = await asyncio.gather(*(self.predict(child, out, headers) for child in targets))
            for r in results:
                if r[0] != 200:
                    return r
            if len(results) == 1:
                status, out, ctype = results[0]
            elif unit.type == "COMBINER":
                msgs = [json.loads(r[1]) for r in results]
                status, out, ctype = await self.call(
                    unit, "aggregate", json.dumps({"seldonMessages": msgs}).encode(), headers
                )
                if status != 200:
                    return status, out, ctype
            else:
                return (
                    500,
                    _error(f"node {unit.name} ({unit.type}) has {len(results)} children: needs a COMBINER or ROUTER"),
                    ctype,
                )
        if unit.type == "OUTPUT_TRANSFORMER":
            status, out, ctype = await self.call(unit, "transform_output", out, headers)
        return status, out, ctype

    async def ready(self) -> str | None:
        for unit in self.root.walk():
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(unit.host, unit.port), timeout=2)
            except (TimeoutError, OSError) as exc:
                return f"dial tcp {unit.host}:{unit.port}: {exc}"
            writer.close()
        return None


def _route_from(body: bytes) -> int:
    try:
        msg = json.loads(body)
        data = msg["data"]
        value = data["ndarray"][0][0] if "ndarray" in data else data["tensor"]["values"][0]
        return int(value)
    except (ValueError, KeyError, IndexError, TypeError):
        return -2


def _error(info: str) -> bytes:
    return json.dumps({"status": {"code": 500, "info": info}}).encode()


def create_app(executor: Executor, prometheus_path: str = "/prometheus") -> web.Application:
    app = web.Application(client_max_size=1024**3)

    def _headers(request: web.Request) -> dict[str, str]:
        puid = request.headers.get(PUID_HEADER) or secrets.token_hex(13)[:26]
        return {PUID_HEADER: puid}

    def _respond(result: tuple[int, bytes, str], headers: dict[str, str]) -> web.Response:
        status, body, ctype = result
        return web.Response(
            status=status, body=body, content_type=ctype.split(";")[0] or "application/json", headers=headers
        )

    async def predictions(request: web.Request) -> web.Response:
        headers = _headers(request)
        body = await request.read()
        root = executor.root
        if executor.protocol == "tensorflow" and (name := request.match_info.get("model")):
            found = [u for u in executor.root.walk() if u.name == name]
            if not found:
                return web.Response(
                    status=500, body=_error(f"Failed to find model {name}"), content_type="application/json"
                )
            root = found[0]
        return _respond(await executor.predict(root, body, headers), headers)

    async def feedback(request: web.Request) -> web.Response:
        headers = _headers(request)
        body = await request.read()
        result = (200, body, "application/json")
        for unit in executor.root.walk():
            result = await executor.call(unit, "feedback", body, headers)
            if result[0] != 200:
                break
        return _respond(result, headers)

    async def unit_get(request: web.Request, method: str) -> web.Response:
        name = request.match_info["model"]
        found = [u for u in executor.root.walk() if u.name == name]
        if not found:
            return web.Response(
                status=500, body=_error(f"Failed to find model {name}"), content_type="application/json"
            )
        headers = _headers(request)
        return _respond(await executor.call(found[0], method, None, headers), headers)

    async def status(request: web.Request) -> web.Response:
        return await unit_get(request, "status")

    async def metadata(request: web.Request) -> web.Response:
        return await unit_get(request, "metadata")

    paused = {"on": False}

    async def pause(_: web.Request) -> web.Response:
        # The operator's preStop hook calls /pause so the pod leaves the Service before SIGTERM.
        paused["on"] = True
        log.info("paused: /ready now fails")
        return web.Response(status=200)

    async def unpause(_: web.Request) -> web.Response:
        paused["on"] = False
        return web.Response(status=200)

    async def ready(_: web.Request) -> web.Response:
        if paused["on"]:
            return web.Response(status=503, text="paused")
        problem = await executor.ready()
        if problem:
            log.error("Ready check failed: %s", problem)
            return web.Response(status=503)
        return web.Response(status=200)

    async def live(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="# sandbox executor: no Prometheus metrics\n", content_type="text/plain")

    app.router.add_get("/ready", ready)
    app.router.add_get("/live", live)
    for path, handler in (("/pause", pause), ("/unpause", unpause)):
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
    app.router.add_get(prometheus_path, metrics)
    if executor.protocol == "seldon":
        for version in ("v0.1", "v1.0"):
            app.router.add_post(f"/api/{version}/predictions", predictions)
            app.router.add_post(f"/api/{version}/feedback", feedback)
            app.router.add_get(f"/api/{version}/status/{{model}}", status)
            app.router.add_get(f"/api/{version}/metadata/{{model}}", metadata)
    else:
        app.router.add_post("/v1/models/{model}:predict", predictions)
        app.router.add_post("/v1/models/{model}/:predict", predictions)
        app.router.add_post("/v1/models:predict", predictions)
        app.router.add_get("/v1/models/{model}", status)
        app.router.add_get("/v1/models/{model}/metadata", metadata)
    return app


class _GoFlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # Go's flag package: message + usage, exit 2
        bad = message.split(": ", 1)[-1]
        print(f"flag provided but not defined: {bad}" if "unrecognized" in message else message, file=sys.stderr)
        self.print_usage(sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _GoFlagParser(prog="executor", add_help=False)
    for name, default in (
        ("config", ""),
        ("sdep", ""),
        ("namespace", ""),
        ("predictor", ""),
        ("protocol", "seldon"),
        ("transport", "rest"),
        ("file", ""),
        ("hostname", "localhost"),
        ("prometheus_path", "/metrics"),
        ("server_type", "rpc"),
        ("graceful_timeout", "15s"),
        ("log_level", "INFO"),
        ("full_health_checks", "false"),
        ("log_kafka_broker", ""),
        ("log_kafka_topic", ""),
    ):
        p.add_argument(f"--{name}", default=default)
    for name, default in (
        ("http_port", 8080),
        ("grpc_port", 5000),
        ("logger_workers", 5),
        ("log_work_buffer_size", 10000),
        ("log_write_timeout_ms", 2000),
    ):
        p.add_argument(f"--{name}", type=int, default=default)
    return p.parse_args(common.go_style_args(argv))


async def _run(args: argparse.Namespace) -> int:
    own_ip = common.pod_ip()
    for flag, what in (
        ("sdep", "Seldon deployment name must be provided"),
        ("namespace", "Namespace must be provied"),
        ("predictor", "Predictor must be provied"),
    ):
        if not getattr(args, flag):
            log.critical("%s (--%s)", what, flag)
            return 1
    if args.protocol not in ("seldon", "tensorflow"):
        log.critical("Protocol must be seldon or tensorflow (got --protocol=%s)", args.protocol)
        return 1
    if args.transport != "rest":
        log.critical(
            "Only the rest transport is implemented by the sandbox executor (got --transport=%s)", args.transport
        )
        return 1
    try:
        predictor = load_predictor(args.file, args.predictor)
        root = build_graph(predictor.get("graph") or {}, own_ip)
    except (GraphError, OSError) as exc:
        log.critical("Failed to get predictor: %s", exc)
        return 1
    log.info("Graph %s", " -> ".join(f"{u.name}({u.type})@{u.host}:{u.port}" for u in root.walk()))
    stop = common.termination_event()
    async with aiohttp.ClientSession(timeout=UNIT_TIMEOUT, connector=aiohttp.TCPConnector(limit=128)) as session:
        app = create_app(Executor(root, args.protocol, session), args.prometheus_path)
        runner = await common.start_site(app, own_ip, args.http_port, name="seldon-executor")
        await stop.wait()
        await common.drain(runner, "seldon-executor")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    common.setup_logging(args.log_level if args.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else None)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
