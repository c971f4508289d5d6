"""``tensorflow_model_server`` stand-in: TF Serving's REST API over the real SavedModel.

Run as ``python -m ack_sandbox.runtimes.tensorflow_model_server <model server flags>`` (the entry point,
which may hand the work to a zygote fork) or ``python -m ack_sandbox.runtimes.tfserving <flags>``; the flags are the binary's own
(``tensorflow_serving/model_servers/main.cc``): ``--port`` (gRPC, default 8500), ``--rest_api_port``
(default 0 = REST disabled), ``--model_name`` (default "default"), ``--model_base_path`` (required unless
``--model_config_file``), ``--model_config_file`` (a text-format ``ModelServerConfig``: one or more models,
each with its ``base_path`` and ``model_version_policy``; ``tfserving_config.py``; it wins over
``--model_name``/``--model_base_path``), ``--file_system_poll_wait_seconds`` (default 1),
``--max_num_load_retries`` (default 5), ``--load_retry_interval_micros`` (default 60 000 000). Only
``--name=value`` is accepted, as TF's flag parser does; a stray positional argument is reported as
``unknown argument`` and ignored, as the binary does.

Versions: with ``--model_base_path`` the policy is the default one, ``latest { num_versions: 1 }``: the
highest numeric version directory is served, and the base path is polled for new ones (a new version is
loaded, then the previous one unloaded) — so a version uploaded into a mounted base path goes live by
itself. ``specific { versions: N }`` in a config file serves exactly N, whatever else appears.

The docker image's entrypoint adds ``--port=8500 --rest_api_port=8501 --model_name=$MODEL_NAME
--model_base_path=$MODEL_BASE_PATH/$MODEL_NAME`` before the container args (later flags win); that
expansion is done by ``registry.py``, so the seed's ``args: [/usr/bin/tensorflow_model_server,
--port=7001, ...]`` ends up with REST on 8501 and gRPC on 7001, exactly like on a real cluster.

Like ``ServerCore::Create``, nothing listens until the initial model version is AVAILABLE; a missing base
path or version directory is logged and polled for; a version that fails to load aborts the process
(TF_CHECK_OK -> SIGABRT, exit code 134). The gRPC API is not served (the REST path is what Seldon's
tfserving-proxy uses here); that is logged at start.

Signals: SIGTERM is ignored (the real server has no handler and runs as the container's PID 1, so it serves
until the kubelet's SIGKILL at the end of the grace period); SIGINT drains and exits 0.

Start-time optimisation: with ``ACK_SANDBOX_TF_ZYGOTE=<socket>`` in the env the entry point becomes a thin
launcher and the container runs as a fork of a pre-imported TensorFlow process (``tf_zygote.py``).

Routes (``http_rest_api_handler.cc``): ``GET /v1/models/NAME[/versions/N|/labels/L]`` (model status:
``{"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK",
"error_message": ""}}, ...]}``, newest first, states START/LOADING/AVAILABLE/UNLOADING/END),
``GET /v1/models/NAME[/versions/N|/labels/L]/metadata``, ``POST
/v1/models/NAME[/versions/N|/labels/L]:(predict|classify|regress)`` (no version: the latest AVAILABLE one).
Errors are ``{ "error": "..." }`` with the canonical status code's HTTP mapping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ack_sandbox.runtimes import common
from ack_sandbox.runtimes.tfserving_config import ConfigError, parse_model_server_config
from ack_sandbox.runtimes.tfserving_json import error_body, parse_body, request_tensors, response_json, signature_name
from ack_sandbox.runtimes.tfserving_model import HTTP_STATUS, ModelManager, ServingError, import_tensorflow

log = logging.getLogger("tensorflow_serving")

EXIT_USAGE = 255  # main() returns -1
EXIT_CHECK_FAILED = 134  # TF_CHECK_OK failure -> abort()

_VERSION = r"(?:/versions/(\d+)|/labels/([^/:]+))?"
PREDICTION_RE = re.compile(r"(?i)/v1/models/([^/:]+)" + _VERSION + r":(classify|regress|predict)")
STATUS_RE = re.compile(r"(?i)/v1/models(?:/([^/:]+))?" + _VERSION)
METADATA_RE = re.compile(r"(?i)/v1/models/([^/:]+)" + _VERSION + r"/metadata")


@dataclass
class Flags:
    port: int = 8500
    rest_api_port: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    file_system_poll_wait_seconds: float = 1.0
    rest_api_timeout_in_ms: int = 30000
    rest_api_num_threads: int = 0
    enable_batching: bool = False
    enable_model_warmup: bool = True
    version: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000


_INT_FLAGS = {
    "port",
    "rest_api_port",
    "rest_api_timeout_in_ms",
    "rest_api_num_threads",
    "max_num_load_retries",
    "load_retry_interval_micros",
}
_FLOAT_FLAGS = {"file_system_poll_wait_seconds"}
_STR_FLAGS = {"model_name", "model_base_path", "model_config_file"}
_BOOL_FLAGS = {"enable_batching", "enable_model_warmup", "version"}
# Accepted and ignored: they change nothing observable over REST in the sandbox.
_IGNORED_FLAGS = {
    "batching_parameters_file",
    "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "per_process_gpu_memory_fraction",
    "saved_model_tags",
    "grpc_channel_arguments",
    "flush_filesystem_caches",
    "platform_config_file",
    "monitoring_config_file",
    "model_config_file_poll_wait_seconds",
    "allow_version_labels_for_unavailable_models",
    "xla_cpu_compilation_enabled",
    "num_load_threads",
    "num_unload_threads",
    "enable_signature_method_name_check",
    "rest_api_enable_cors_support",
    "grpc_max_threads",
    "ssl_config_file",
    "thread_pool_factory_config_file",
    "mixed_precision",
}

USAGE = (
    "usage: tensorflow_model_server\n"
    "Flags:\n"
    "\t--port=8500\tint32\tPort to listen on for gRPC API\n"
    "\t--rest_api_port=0\tint32\tPort to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be "
    "exported. This port must be different than the one specified in --port.\n"
    '\t--model_name="default"\tstring\tname of model (ignored if --model_config_file flag is set)\n'
    '\t--model_base_path=""\tstring\tpath to export (ignored if --model_config_file flag is set, otherwise required)\n'
    "\t--file_system_poll_wait_seconds=1\tint32\tInterval in seconds between each poll of the filesystem for new "
    "model version.\n"
)


def parse_flags(argv: list[str]) -> tuple[Flags | None, list[str]]:
    """TF's ``Flags::Parse``: ``--name=value`` (bools also bare ``--name``). Returns (flags|None, leftovers)."""
    flags = Flags()
    leftovers: list[str] = []
    ok = True
    for arg in argv:
        if not arg.startswith("--"):
            leftovers.append(arg)
            continue
        name, eq, value = arg[2:].partition("=")
        try:
            if name in _INT_FLAGS and eq:
                setattr(flags, name, int(value))
            elif name in _FLOAT_FLAGS and eq:
                setattr(flags, name, float(value))
            elif name in _STR_FLAGS and eq:
                setattr(flags, name, value)
            elif name in _BOOL_FLAGS:
                if eq and value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                setattr(flags, name, (not eq) or value.lower() in ("true", "1"))
            elif name in _IGNORED_FLAGS and eq:
                pass
            else:
                leftovers.append(arg)
        except ValueError:
            print(f"Couldn't interpret value {value} for flag {name}.", flush=True)
            ok = False
    return (flags if ok else None), leftovers


# --- the wire ---------------------------------------------------------------------------------------


def _error(status_code: str, message: str) -> web.Response:
    return web.Response(
        status=HTTP_STATUS.get(status_code, 500), text=error_body(message), content_type="application/json"
    )


def _json(doc: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(doc, indent=1), content_type="application/json")


class Models:
    """The models of one server, by name (one for ``--model_name``, one per config of ``--model_config_file``)."""

    def __init__(self, managers: list[ModelManager]) -> None:
        self.by_name = {m.name: m for m in managers}

    def get(self, name: str) -> ModelManager | None:
        return self.by_name.get(name)

    def all(self) -> list[ModelManager]:
        return list(self.by_name.values())


def create_app(models: Models | ModelManager) -> web.Application:
    if isinstance(models, ModelManager):
        models = Models([models])
    app = web.Application(client_max_size=1024**3)

    async def dispatch(request: web.Request) -> web.Response:
        path, method = request.path, request.method
        if not path.lower().startswith("/v1/"):
            return web.Response(status=404, text="404 Not Found")
        try:
            if method == "POST" and (m := PREDICTION_RE.fullmatch(path)):
                body = await request.read()
                manager, version = _resolve(models, m.group(1), m.group(2), m.group(3))
                return _json(_predict(manager, m.group(1), version, m.group(4), body))
            if method == "GET" and (m := METADATA_RE.fullmatch(path)):
                manager, version = _resolve(models, m.group(1), m.group(2), m.group(3))
                return _json(_metadata(manager, m.group(1), version))
            if method == "GET" and (m := STATUS_RE.fullmatch(path)):
                return _json(_status(models, m.group(1), m.group(2), m.group(3)))
            return _error("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        except ServingError as exc:
            if exc.code != "NOT_FOUND":
                log.debug("%s %s -> %s: %s", method, path, exc.code, exc.message)
            return _error(exc.code, exc.message)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {text} to numeric.") from None


def _resolve(models: Models, name: str, version: str | None, label: str | None) -> tuple[ModelManager, int | None]:
    manager = models.get(name)
    number = _version(version)
    if manager is None:
        spec = f"Specific({name}, {number})" if number is not None else f"Latest({name})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {spec}")
    if label is not None:
        number = manager.label_version(label)
    return manager, number


def _status(models: Models, name: str | None, version: str | None, label: str | None) -> dict[str, Any]:
    if not name:
        raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
    manager = models.get(name)
    if manager is None:
        raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
    number = manager.label_version(label) if label is not None else _version(version)
    return {"model_version_status": manager.statuses(number)}


def _metadata(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    served, model = manager.servable(version)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(served)},
        "metadata": {
            "signature_def": {
                "signature_def": model.signature_def_json,
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
            }
        },
    }


def _predict(manager: ModelManager, name: str, version: int | None, verb: str, body: bytes) -> dict[str, Any]:
    _, model = manager.servable(version)
    doc = parse_body(body)
    sig_name = signature_name(doc)
    sig = model.signatures.get(sig_name)
    if sig is None:
        raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{sig_name}" not found in signature def')
    if verb in ("classify", "regress"):
        expected = f"tensorflow/serving/{verb}"
        if sig.method_name != expected:
            kind = "classification" if verb == "classify" else "regression"
            raise ServingError(
                "INVALID_ARGUMENT", f"Expected {kind} signature method_name to be {expected}. Was: {sig.method_name}"
            )
        raise ServingError("UNIMPLEMENTED", f":{verb} over tf.Example input is not implemented by the sandbox")
    fmt, tensors = request_tensors(doc, sig)
    return response_json(fmt, model.run(sig_name, tensors))


# --- the process ------------------------------------------------------------------------------------


def _stop_event() -> asyncio.Event:
    """Set on SIGINT only. tensorflow_model_server installs no SIGTERM handler, and as a container's PID 1 (the
    seed's ``command: /usr/bin/tensorflow_model_server``; the image's bash entrypoint is PID 1 and does not
    pass it on either) the kernel drops SIGTERM: the server keeps serving until the kubelet's SIGKILL at the
    end of the grace period (tensorflow/serving#356, #1853; kserve/kserve#394)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(
        signal.SIGTERM,
        lambda: log.info("(sandbox) SIGTERM ignored, as the real server does: serving until SIGKILL"),
    )
    return stop


async def _run(flags: Flags, models: Models) -> int:
    stop = _stop_event()
    host = common.pod_ip()
    # The real binary has TensorFlow linked in; import it now, overlapping the wait for the model files.
    preimport = asyncio.create_task(asyncio.to_thread(import_tensorflow))

    def poll_all() -> list[tuple[ModelManager, list[Any]]]:
        return [(m, m.poll_once()) for m in models.all()]

    # ServerCore::Create: wait (polling) until every model has an available version; a failed load is fatal.
    while not all(m.has_available() for m in models.all()):
        rounds = await asyncio.to_thread(poll_all)
        for manager, failed in rounds:
            if failed and not manager.has_available():
                log.critical(
                    "Check failed: ::tensorflow::Status::OK() == (ServerCore::Create(std::move(options), &core)) "
                    "(OK vs. %s: Some servables were not available: %s)",
                    failed[0].error_code,
                    f"{{name: {manager.name} version: {failed[0].version}}}",
                )
                return EXIT_CHECK_FAILED
        if all(m.has_available() for m in models.all()):
            break
        try:
            await asyncio.wait_for(stop.wait(), timeout=flags.file_system_poll_wait_seconds)
            log.info("Termination requested before the model became available")
            return 0
        except TimeoutError:
            continue

    await preimport
    log.info(
        "gRPC ModelServer port %d: not served by the sandbox runtime (REST API only; Seldon's tfserving-proxy "
        "uses REST)",
        flags.port,
    )
    runner = None
    if flags.rest_api_port == 0:
        log.info("--rest_api_port=0: HTTP/REST API not exported")
    elif flags.rest_api_port == flags.port:
        log.error(
            "--rest_api_port cannot be same as --port. Please use a different port for HTTP/REST API. "
            "Skipped exporting HTTP/REST API."
        )
    else:
        runner = await common.start_site(create_app(models), host, flags.rest_api_port, name="tensorflow_model_server")
        log.info("Exporting HTTP/REST API at:%s:%d ...", host, flags.rest_api_port)

    async def poll_forever() -> None:
        while True:
            await asyncio.sleep(flags.file_system_poll_wait_seconds)
            try:
                await asyncio.to_thread(poll_all)
            except Exception:  # noqa: BLE001 - keep serving the current version whatever the poll hit
                log.exception("file system poll failed")

    poller = asyncio.create_task(poll_forever()) if flags.file_system_poll_wait_seconds > 0 else None
    await stop.wait()
    if poller is not None:
        poller.cancel()
    if runner is not None:
        await common.drain(runner, "tensorflow_model_server")
    return 0


def main(argv: list[str] | None = None) -> int:
    common.setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    flags, leftovers = parse_flags(argv)
    if flags is not None and flags.version:
        print("TensorFlow ModelServer: 2.x (ack-sandbox REST stand-in)", flush=True)
        return 0
    if flags is None or (not flags.model_base_path and not flags.model_config_file):
        print(USAGE, end="", flush=True)
        return EXIT_USAGE
    if leftovers:
        print(f"unknown argument: {leftovers[0]}\n{USAGE}", end="", flush=True)
    retry: dict[str, Any] = {
        "max_load_retries": flags.max_num_load_retries,
        "load_retry_interval": flags.load_retry_interval_micros / 1e6,
        "warmup": flags.enable_model_warmup,
    }
    if flags.model_config_file:
        config_path = common.host_path(flags.model_config_file)
        try:
            configs = parse_model_server_config(Path(config_path).read_text())
        except OSError as exc:
            log.critical("Check failed: ParseProtoTextFile(%s): %s", flags.model_config_file, exc.strerror or exc)
            return EXIT_CHECK_FAILED
        except ConfigError as exc:
            log.critical("Error parsing text-format tensorflow.serving.ModelServerConfig: %s", exc)
            return EXIT_CHECK_FAILED
        managers = []
        for cfg in configs:
            log.info(
                "Adding/updating models. (model %s, base_path %s, version policy %s)",
                cfg.name,
                cfg.base_path,
                cfg.policy.describe(),
            )
            managers.append(
                ModelManager(
                    cfg.name, common.host_path(cfg.base_path), policy=cfg.policy, labels=cfg.version_labels, **retry
                )
            )
        return asyncio.run(_run(flags, Models(managers)))
    base_path = common.host_path(flags.model_base_path)
    log.info(
        "Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
        flags.model_name,
        flags.model_base_path,
    )
    if base_path != flags.model_base_path:
        log.info("(sandbox) %s is mounted from %s", flags.model_base_path, base_path)
    manager = ModelManager(flags.model_name, base_path, **retry)
    return asyncio.run(_run(flags, Models([manager])))


if __name__ == "__main__":
    sys.exit(main())
