"""Image reference -> what the sandbox kubelet executes for a container.

``resolve(image, command, args, env)`` returns a :class:`RuntimeSpec`, or ``None`` when the sandbox has
no runtime for the image (the kubelet reports ``ImagePullBackOff``, the way a registry without that
repository/tag makes a real node fail). It raises :class:`UnsupportedCommand` when the image is known
but the container's ``command`` cannot run in it (report ``RunContainerError``/``StartError``).

Kubernetes semantics applied here: ``command`` replaces the image ENTRYPOINT, ``args`` replace CMD.
Known images (any registry host, e.g. ``registry.cn-beijing.aliyuncs.com/deepai/...``, ``docker.io/...``):

==========================  ==========================================================================
family                      image names
==========================  ==========================================================================
tensorflow-serving          ``tensorflow/serving[:TAG]`` (``-gpu`` tags too); ENTRYPOINT
                            ``tf_serving_entrypoint.sh``: ``tensorflow_model_server --port=8500
                            --rest_api_port=8501 --model_name=$MODEL_NAME
                            --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME "$@"`` (MODEL_NAME=model,
                            MODEL_BASE_PATH=/models)
seldon-tfserving-proxy      ``seldonio/tfserving-proxy[_rest]:1.x``, mirror ``.../seldonio-tfserving-proxy_rest``
seldon-executor             ``seldonio/seldon-core-executor:1.x`` (ENTRYPOINT ``/executor``, flags as args)
http-echo                   ``hashicorp/http-echo`` (``-listen=:5678 -text=...``): a tiny test server
==========================  ==========================================================================

Every spec carries ``ACK_SANDBOX_TF_ZYGOTE`` when the resolving process has it (``runtimes.service`` runs
the zygote in the daemon): the container then runs as a fork of the pre-imported runtimes (``tf_zygote``),
started by a launcher that imports nothing heavy (``launcher``, ``tensorflow_model_server``).

The kubelet must add to ``spec.env``: ``ACK_SANDBOX_POD_IP`` (the pod's 127.x.y.z) and
``ACK_SANDBOX_MOUNTS`` (JSON ``{mountPath: localDir}``), see ``common.py``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

from ack_sandbox.runtimes.tf_zygote import ZYGOTE_ENV

TF_ENTRYPOINT = "/usr/bin/tf_serving_entrypoint.sh"
TF_BINARY_NAMES = {"tensorflow_model_server", "/usr/bin/tensorflow_model_server"}
EXECUTOR_BINARY_NAMES = {"/executor", "executor", "./executor"}

_TF_TAG = re.compile(r"^(latest|nightly|\d+\.\d+(\.\d+)?(-rc\d+)?)(-gpu)?$")
_SELDON_TAG = re.compile(r"^(latest|1\.\d+\.\d+(-dev|-rc\d+)?)$")
_ECHO_TAG = re.compile(r"^(latest|\d+\.\d+(\.\d+)?|alpine)$")
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


class UnsupportedCommand(ValueError):
    """The image is known but ``command`` names something the sandbox cannot start in it."""


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "" for Docker Hub
    repository: str  # e.g. "tensorflow/serving", "deepai/seldonio-tfserving-proxy_rest"
    tag: str  # "latest" when omitted
    digest: str = ""

    @property
    def last(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    @property
    def namespace(self) -> str:
        return self.repository.rsplit("/", 1)[0] if "/" in self.repository else ""


def parse_image(image: str) -> ImageRef | None:
    """Split ``[host[:port]/]path[:tag][@digest]``; ``None`` if not a valid reference (InvalidImageName)."""
    if not image or image != image.strip():
        return None
    ref, _, digest = image.partition("@")
    registry = ""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, ref = first, rest
    name, _, tag = ref.rpartition(":") if ":" in ref else (ref, "", "")
    if not name:
        name, tag = ref, ""
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io") and name.startswith("library/"):
        name = name[len("library/") :]
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        registry = ""
    if not _NAME.match(name) or (tag and not re.match(r"^[\w][\w.-]{0,127}$", tag)):
        return None
    return ImageRef(registry=registry, repository=name, tag=tag or "latest", digest=digest)


@dataclass(frozen=True)
class RuntimeSpec:
    family: str
    image: str
    argv: list[str]  # exec as is; the first element is this Python interpreter
    env: dict[str, str]  # image ENV defaults overlaid with the container's env
    ports: list[int]  # TCP ports the process listens on (on the pod IP)
    # An HTTP GET path on ports[0] that answers 200 once the program is ready (for logs/diagnostics; the
    # container's own readinessProbe, if any, is what Kubernetes semantics use).
    ready_path: str | None = None
    imports_tensorflow: bool = False  # slow start (~5 s) and ~500 MiB RSS
    notes: list[str] = field(default_factory=list)


def _module_argv(module: str, args: list[str]) -> list[str]:
    """The launcher runs ``module`` as a zygote fork when one is up, in its own process otherwise."""
    return [sys.executable, "-m", "ack_sandbox.runtimes.launcher", f"ack_sandbox.runtimes.{module}", *args]


def _with_zygote(env: dict[str, str]) -> dict[str, str]:
    """A zygote run by this process (runtimes.service in the daemon) serves the container as a fork."""
    if os.environ.get(ZYGOTE_ENV) and ZYGOTE_ENV not in env:
        return {**env, ZYGOTE_ENV: os.environ[ZYGOTE_ENV]}
    return env


def resolve(
    image: str, command: list[str] | None = None, args: list[str] | None = None, env: dict[str, str] | None = None
) -> RuntimeSpec | None:
    ref = parse_image(image)
    if ref is None:
        return None
    env = dict(env or {})
    command = list(command or [])
    args = list(args or [])
    last, ns = ref.last, ref.namespace
    if (ref.repository == "tensorflow/serving" or last == "tensorflow-serving") and _TF_TAG.match(ref.tag):
        return _tensorflow_serving(image, command, args, env)
    if (
        re.fullmatch(r"(seldonio-)?tfserving-proxy(_rest)?", last)
        and (ns in ("seldonio", "") or ref.registry)
        and _SELDON_TAG.match(ref.tag)
    ):
        return _tfserving_proxy(image, command, args, env)
    if re.fullmatch(r"(seldonio-)?seldon-core-executor", last) and _SELDON_TAG.match(ref.tag):
        return _executor(image, command, args, env)
    if ref.repository == "hashicorp/http-echo" and _ECHO_TAG.match(ref.tag):
        return _http_echo(image, command, args, env)
    return None


def _tensorflow_serving(image: str, command: list[str], args: list[str], env: dict[str, str]) -> RuntimeSpec:
    from ack_sandbox.runtimes.tfserving import parse_flags

    full_env = _with_zygote({"MODEL_NAME": "model", "MODEL_BASE_PATH": "/models", **env})
    if not command or command == [TF_ENTRYPOINT]:
        flags = [
            "--port=8500",
            "--rest_api_port=8501",
            f"--model_name={full_env['MODEL_NAME']}",
            f"--model_base_path={full_env['MODEL_BASE_PATH']}/{full_env['MODEL_NAME']}",
            *args,
        ]
    elif command[0] in TF_BINARY_NAMES:
        flags = [*command[1:], *args]
    else:
        raise UnsupportedCommand(
            f'exec: "{command[0]}": the sandbox runs tensorflow/serving only through its entrypoint or '
            "/usr/bin/tensorflow_model_server"
        )
    parsed, _ = parse_flags(flags)
    ports = []
    notes = []
    if parsed is not None and parsed.rest_api_port and parsed.rest_api_port != parsed.port:
        ports.append(parsed.rest_api_port)
    else:
        notes.append("REST API disabled (--rest_api_port=0 or equal to --port): nothing will listen")
    if parsed is not None:
        notes.append(f"gRPC port {parsed.port} is not served by the sandbox")
    return RuntimeSpec(
        family="tensorflow-serving",
        image=image,
        argv=[sys.executable, "-m", "ack_sandbox.runtimes.tensorflow_model_server", *flags],
        env=full_env,
        ports=ports,
        ready_path=(
            f"/v1/models/{parsed.model_name}" if parsed is not None and ports and not parsed.model_config_file else None
        ),
        imports_tensorflow=True,
        notes=notes,
    )


def _tfserving_proxy(image: str, command: list[str], args: list[str], env: dict[str, str]) -> RuntimeSpec:
    if command or args:
        raise UnsupportedCommand(
            "the sandbox runs the tfserving-proxy image with its own entrypoint (seldon-core-microservice); "
            "remove command/args"
        )
    port_raw = env.get("PREDICTIVE_UNIT_HTTP_SERVICE_PORT") or env.get("PREDICTIVE_UNIT_SERVICE_PORT") or "9000"
    ports = [int(port_raw)] if port_raw.isdigit() else []
    return RuntimeSpec(
        family="seldon-tfserving-proxy",
        image=image,
        argv=_module_argv("seldon_tfserving_proxy", []),
        env=_with_zygote({"PREDICTIVE_UNIT_IMAGE": image, **env}),
        ports=ports,
        ready_path="/ready",
    )


def _executor(image: str, command: list[str], args: list[str], env: dict[str, str]) -> RuntimeSpec:
    if command and command[0] not in EXECUTOR_BINARY_NAMES:
        raise UnsupportedCommand(f'exec: "{command[0]}": the executor image runs /executor')
    flags = [*command[1:], *args] if command else args
    from ack_sandbox.runtimes.seldon_executor import parse_args

    ports: list[int] = []
    try:
        ports = [parse_args(flags).http_port]
    except SystemExit:
        pass  # the process itself will report the bad flag and exit 2, like the real binary
    return RuntimeSpec(
        family="seldon-executor",
        image=image,
        argv=_module_argv("seldon_executor", flags),
        env=_with_zygote(env),
        ports=ports,
        ready_path="/ready",
    )


def _http_echo(image: str, command: list[str], args: list[str], env: dict[str, str]) -> RuntimeSpec:
    if command and command[0] not in ("/http-echo", "http-echo"):
        raise UnsupportedCommand(f'exec: "{command[0]}": the http-echo image runs /http-echo')
    flags = [*command[1:], *args] if command else args
    from ack_sandbox.runtimes.http_echo import parse_args

    ports: list[int] = []
    try:
        ports = [parse_args(flags).port]
    except SystemExit:
        pass
    return RuntimeSpec(
        family="http-echo",
        image=image,
        argv=_module_argv("http_echo", flags),
        env=_with_zygote(env),
        ports=ports,
        ready_path="/health",
    )
