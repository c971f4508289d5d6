"""Seldon's tfserving-proxy model: a Seldon v1 Python microservice forwarding to TF Serving's REST API.

Behaviour of ``servers/tfserving_proxy/TfServingProxy.py`` served by ``seldon_core/wrapper.py``:

- Listens on ``PREDICTIVE_UNIT_HTTP_SERVICE_PORT`` (the operator sets 9000; older ``PREDICTIVE_UNIT_SERVICE_PORT``).
- Parameters from ``PREDICTIVE_UNIT_PARAMETERS``: ``rest_endpoint``, ``model_name``, ``signature_name``
  (default ``serving_default``); ``grpc_endpoint``/``model_input``/``model_output`` are accepted (gRPC path,
  not served here). An unknown parameter is a TypeError at start in the real image; here too (exit 1).
- ``/predict``, ``/api/v1.0/predictions``, ``/api/v0.1/predictions``: ``data.ndarray``/``data.tensor`` become
  ``{"instances": X.tolist(), "signature_name": ...}`` posted to ``<rest_endpoint>/v1/models/<model_name>:predict``;
  ``predictions`` come back as ndarray/tensor (1-D expanded to 2-D) named ``t:i``. A ``jsonData`` object is
  posted as-is and TF's reply returned as ``jsonData``. A non-200 from TF Serving is returned as
  ``jsonData`` (status 200): that is what TfServingProxy.predict does (it returns ``response.json()``).
- ``/health/ping`` -> ``pong``; ``/health/status`` -> ``{"strData": "healthy"}``; ``/send-feedback``.
- Sandbox addition: ``/ready`` is 200 once TF Serving reports the model AVAILABLE (503 before).

Address resolution (sandbox): containers of a pod share a network namespace on a real node, so
``localhost`` reaches the TF Serving container. Here a pod is its own 127.x.y.z address; ``localhost``,
``127.0.0.1``, ``0.0.0.0`` and the seed's documentation placeholder ``127.x.x.x`` in ``rest_endpoint``
therefore resolve to this pod's IP (``ACK_SANDBOX_POD_IP``). Any other address is used as written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np
from aiohttp import web

from ack_sandbox.runtimes import common
from ack_sandbox.runtimes.seldon_messages import (
    SeldonMicroserviceError,
    construct_response,
    extract_request,
    parse_parameters,
)

log = logging.getLogger("seldon_core.microservice")

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "127.x.x.x"}
KNOWN_PARAMETERS = {"rest_endpoint", "grpc_endpoint", "model_name", "signature_name", "model_input", "model_output"}
DEFAULT_PORT = 9000
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5)


def resolve_endpoint(url: str, own_ip: str) -> str:
    """Map pod-local hosts in ``rest_endpoint`` onto the pod's own address (see module docstring)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    if host not in LOCAL_HOSTS:
        return urlunsplit(parts).rstrip("/")
    netloc = own_ip + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


class TfServingProxy:
    """The user model: ``predict(X)`` as TfServingProxy.py does it, over aiohttp."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        rest_endpoint: str,
        model_name: str,
        signature_name: str | None = None,
        **_grpc_only: Any,
    ) -> None:
        self.session = session
        self.base = rest_endpoint
        self.model_name = model_name
        self.predict_url = f"{rest_endpoint}/v1/models/{model_name}:predict"
        self.status_url = f"{rest_endpoint}/v1/models/{model_name}"
        self.signature_name = signature_name or "serving_default"

    async def predict(self, features: Any) -> Any:
        if isinstance(features, dict):
            payload = features
        elif isinstance(features, np.ndarray):
            payload = {"instances": features.tolist(), "signature_name": self.signature_name}
        else:
            raise SeldonMicroserviceError(
                f"tfserving-proxy accepts data.ndarray, data.tensor or a jsonData object, not {type(features).__name__}",
                status_code=500,
                reason="MICROSERVICE_INTERNAL_ERROR",
            )
        try:
            async with self.session.post(self.predict_url, data=json.dumps(payload)) as resp:
                text = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SeldonMicroserviceError(
                f"TensorFlow Serving at {self.predict_url} is unreachable: {exc!r}",
                status_code=500,
                reason="MICROSERVICE_INTERNAL_ERROR",
            ) from None
        body = _json_or_text(text)
        if status == 200:
            log.debug("%s", text)
            if isinstance(features, dict):
                return body
            if not isinstance(body, dict) or "predictions" not in body:
                raise SeldonMicroserviceError(
                    f"TensorFlow Serving reply has no 'predictions': {text[:200]}", 500, "MICROSERVICE_INTERNAL_ERROR"
                )
            result = np.array(body["predictions"])
            if result.ndim == 1:
                result = np.expand_dims(result, axis=0)
            return result
        log.warning("Error from server: <Response [%d]> content: %s", status, text)
        return body

    async def ready(self) -> tuple[bool, str]:
        try:
            async with self.session.get(self.status_url) as resp:
                doc = _json_or_text(await resp.text())
        except (TimeoutError, aiohttp.ClientError) as exc:
            return False, f"TensorFlow Serving at {self.status_url} is unreachable: {exc!r}"
        states = [v.get("state") for v in doc.get("model_version_status", [])] if isinstance(doc, dict) else []
        if "AVAILABLE" in states:
            return True, "AVAILABLE"
        return False, f"model {self.model_name} not AVAILABLE at {self.status_url}: {doc}"


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _request_message(request: web.Request) -> Any:
    """``flask_utils.get_request``: form field ``json``, query ``?json=``, else the JSON body."""
    raw: str | None = None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        raw = form.get("json") if isinstance(form.get("json"), str) else None  # type: ignore[assignment]
    if raw is None:
        raw = request.query.get("json")
    if raw is None:
        raw = await request.text()
    if not raw:
        raise SeldonMicroserviceError("Can't find JSON in data")
    try:
        message = json.loads(raw)
    except ValueError:
        raise SeldonMicroserviceError("Can't find JSON in data") from None
    if message is None:
        raise SeldonMicroserviceError("Invalid Data Format - empty JSON")
    return message


def create_app(model: TfServingProxy) -> web.Application:
    app = web.Application(client_max_size=1024**3)

    @web.middleware
    async def seldon_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except SeldonMicroserviceError as exc:
            log.error("%s", exc.to_dict())
            return web.json_response(exc.to_dict(), status=exc.status_code)

    app.middlewares.append(seldon_errors)

    async def predict(request: web.Request) -> web.Response:
        message = await _request_message(request)
        features, meta, data_type = extract_request(message)
        result = await model.predict(features)
        return web.json_response(construct_response(data_type, meta, result))

    async def feedback(request: web.Request) -> web.Response:
        message = await _request_message(request)
        if not isinstance(message, dict):
            raise SeldonMicroserviceError(f"Invalid feedback: {message!r:.200}")
        # TfServingProxy defines no send_feedback: the wrapper answers with an empty message.
        return web.json_response({"data": {"names": [], "ndarray": []}, "meta": {}})

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def health_status(_: web.Request) -> web.Response:
        return web.json_response({"strData": "healthy", "meta": {}})

    async def ready(_: web.Request) -> web.Response:
        ok, detail = await model.ready()
        return web.Response(status=200 if ok else 503, text=detail)

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response(
            {"name": model.model_name, "versions": [], "platform": "tensorflow", "inputs": [], "outputs": []}
        )

    for path in ("/predict",):
        app.router.add_route("GET", path, predict)
        app.router.add_route("POST", path, predict)
    for path in ("/api/v1.0/predictions", "/api/v0.1/predictions"):
        app.router.add_post(path, predict)
    app.router.add_route("GET", "/send-feedback", feedback)
    app.router.add_route("POST", "/send-feedback", feedback)
    for path in ("/api/v1.0/feedback", "/api/v0.1/feedback"):
        app.router.add_post(path, feedback)
    app.router.add_get("/health/ping", ping)
    app.router.add_get("/health/status", health_status)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metadata", metadata)
    return app


def _port() -> int:
    raw = os.environ.get("PREDICTIVE_UNIT_HTTP_SERVICE_PORT") or os.environ.get("PREDICTIVE_UNIT_SERVICE_PORT")
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"PREDICTIVE_UNIT_HTTP_SERVICE_PORT={raw!r} is not a port number") from None


async def _run() -> int:
    own_ip = common.pod_ip()
    try:
        params = parse_parameters(os.environ.get("PREDICTIVE_UNIT_PARAMETERS"))
    except ValueError as exc:
        log.critical("%s", exc)
        return 1
    unknown = sorted(set(params) - KNOWN_PARAMETERS)
    if unknown:
        log.critical("TypeError: TfServingProxy.__init__() got an unexpected keyword argument '%s'", unknown[0])
        return 1
    missing = [p for p in ("rest_endpoint", "model_name") if not params.get(p)]
    if missing:
        log.critical(
            "PREDICTIVE_UNIT_PARAMETERS is missing %s: the graph node needs parameters rest_endpoint "
            "(e.g. http://localhost:8501) and model_name",
            ", ".join(missing),
        )
        return 1
    endpoint = resolve_endpoint(str(params["rest_endpoint"]), own_ip)
    log.info("rest_endpoint: %s (resolved to %s)", params["rest_endpoint"], endpoint)
    stop = common.termination_event()
    async with aiohttp.ClientSession(timeout=UPSTREAM_TIMEOUT, connector=aiohttp.TCPConnector(limit=64)) as session:
        model = TfServingProxy(
            session,
            rest_endpoint=endpoint,
            model_name=str(params["model_name"]),
            signature_name=params.get("signature_name"),
        )
        runner = await common.start_site(create_app(model), own_ip, _port(), name="seldon-tfserving-proxy")
        await stop.wait()
        await common.drain(runner, "seldon-tfserving-proxy")
    return 0


def main() -> int:
    common.setup_logging(os.environ.get("SELDON_LOG_LEVEL"))
    return asyncio.run(_run())


if __name__ == "__main__":
    sys.exit(main())
