"""The kubelet's streaming endpoints: ``pods/{name}/exec``, ``/attach`` and ``/portforward`` over WebSocket.

Wire format (k8s.io/apimachinery/pkg/util/httpstream/wsstream, kubelet cri streaming): subprotocols
``v5.channel.k8s.io`` (kubectl >= 1.30 with ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS``, on by default since 1.31) and
``v4.channel.k8s.io`` (the Python client's ``stream()``). Every binary message starts with its channel byte:
0 stdin, 1 stdout, 2 stderr, 3 error (a ``metav1.Status``: Success, or Failure with reason
``NonZeroExitCode`` and an ``ExitCode`` cause), 4 terminal resize (``{"Width","Height"}``); v5 adds
``[255, channel]`` to close a channel (kubectl closes stdin that way, ``kubectl cp`` relies on it).

Port forwarding (pkg/kubelet/cri/streaming/portforward/websocket.go): channels ``2i`` (data) and ``2i+1``
(error) for the i-th of ``?ports=``; the first message the server sends on each channel is the port as uint16
little-endian. The kubelet connects to the pod's own IP (containers of a pod share it). kubectl's own
port-forward speaks SPDY/3.1 (tunnelled in a WebSocket, or after an ``Upgrade: SPDY/3.1``): ``kubelet.portforward``.

Commands run as the container runs: its environment, its working directory, its volume-mount paths rewritten
to the local directories backing them (``kubelet.container.translate_paths``); other paths are this machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import struct
import termios
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ack_sandbox.k8s.errors import ApiError, bad_request
from ack_sandbox.kubelet.container import translate_paths
from ack_sandbox.kubelet.portforward import TUNNEL_PROTOCOL, PodTarget, serve_spdy_upgrade, serve_websocket

if TYPE_CHECKING:
    from ack_sandbox.controllers.kubelet import Kubelet
    from ack_sandbox.kubelet.container import ContainerRunner

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_CHUNK = 32 * 1024


def _status_success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def _status_exit(code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command [exit {code}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _status_error(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


def _queries(request: web.Request, name: str) -> list[str]:
    return [v for v in request.query.getall(name, [])]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in ("1", "true", "True", "TRUE", "t", "T")


def running_container(kubelet: Kubelet, pod: dict[str, Any], container: str | None) -> ContainerRunner:
    """The running container the request names (or the pod's only one); the apiserver's 400s otherwise."""
    md = pod["metadata"]
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if not container:
        if len(names) != 1:
            raise bad_request(
                f"a container name must be specified for pod {md['name']}, choose one of: [{' '.join(names)}]"
            )
        container = names[0]
    elif container not in names:
        raise bad_request(f"container {container} is not valid for pod {md['name']}")
    worker = kubelet.pods.get(md.get("uid", ""))
    runner = next((r for r in worker.runners if r.name == container), None) if worker else None
    if runner is None or runner.proc is None or not runner.proc.running():
        raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
    return runner


def _tar_create(command: list[str], mounts: dict[str, str]) -> list[str] | None:
    """``tar cf - /mnt/file`` (``kubectl cp pod:/mnt/file``) with the members named as in the container
    (``mnt/file``), not by the local directory backing the mount: kubectl refuses other names."""
    if os.path.basename(command[0]) != "tar" or len(command) < 3 or "c" not in command[1].lstrip("-"):
        return None
    out = list(command[:2])
    for arg in command[2:]:
        mount = next(
            (m for m in sorted(mounts, key=len, reverse=True) if arg == m or arg.startswith(m.rstrip("/") + "/")),
            None,
        )
        if mount is None or not arg.startswith("/"):
            out.append(arg)
            continue
        rel = arg[len(mount) :].lstrip("/") or "."
        out += [f"--transform=s,^,{mount.strip('/')}/,", "-C", mounts[mount], rel]
    return out


def _require_websocket(request: web.Request) -> None:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        # exec/attach over SPDY/3.1 (kubectl's fallback) are not served: WebSocket is kubectl's default since
        # 1.30/1.31. Port-forward serves both (kubelet.portforward).
        raise ApiError(
            400,
            "BadRequest",
            "Upgrade request required: the sandbox serves exec/attach over WebSocket "
            "(subprotocols v5.channel.k8s.io, v4.channel.k8s.io), not SPDY",
        )


async def _upgrade(request: web.Request) -> web.WebSocketResponse:
    _require_websocket(request)
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    return ws


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    if not ws.closed:
        await ws.send_bytes(bytes([channel]) + data)


async def exec_(kubelet: Kubelet, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
    runner = running_container(kubelet, pod, request.query.get("container"))
    command = _queries(request, "command")
    if not command:
        raise bad_request("you must specify at least 1 command")
    want_in, want_out, want_err, tty = (_flag(request, n) for n in ("stdin", "stdout", "stderr", "tty"))
    assert runner.proc is not None
    env = dict(runner.proc.env)
    mounts = runner.w.container_mounts(runner.spec)
    argv = _tar_create(command, mounts) or [translate_paths(a, mounts) for a in command]
    exe = "/bin/sh" if os.path.basename(argv[0]) == "sh" else shutil.which(argv[0], path=env.get("PATH"))
    ws = await _upgrade(request)
    if exe is None:
        # runc's message for an executable that is not there (kubectl prints it and exits 1)
        msg = (
            "OCI runtime exec failed: exec failed: unable to start container process: exec: "
            f'"{command[0]}": executable file not found in $PATH: unknown'
        )
        await _send(ws, ERROR, json.dumps(_status_error(msg)).encode())
        await ws.close()
        return ws
    master = slave = None
    if tty:
        master, slave = os.openpty()
        stdio: dict[str, Any] = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        stdio = {
            "stdin": asyncio.subprocess.PIPE if want_in else asyncio.subprocess.DEVNULL,
            "stdout": asyncio.subprocess.PIPE if want_out else asyncio.subprocess.DEVNULL,
            "stderr": asyncio.subprocess.PIPE if want_err else asyncio.subprocess.DEVNULL,
        }
    proc = await asyncio.create_subprocess_exec(
        exe, *argv[1:], cwd=str(runner.proc.cwd), env=env, start_new_session=True, **stdio
    )
    if slave is not None:
        os.close(slave)
    pumps = []
    if master is not None:
        pumps.append(asyncio.ensure_future(_pump_fd(master, ws, STDOUT)))
    else:
        if proc.stdout is not None:
            pumps.append(asyncio.ensure_future(_pump(proc.stdout, ws, STDOUT)))
        if proc.stderr is not None:
            pumps.append(asyncio.ensure_future(_pump(proc.stderr, ws, STDERR)))
    reader = asyncio.ensure_future(_client_input(ws, proc, master))
    try:
        code = await proc.wait()
        await asyncio.gather(*pumps, return_exceptions=True)
        code = 128 - code if code < 0 else code
        status = _status_success() if code == 0 else _status_exit(code)
        await _send(ws, ERROR, json.dumps(status).encode())
    finally:
        reader.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
        await ws.close()
    return ws


async def _pump(stream: asyncio.StreamReader, ws: web.WebSocketResponse, channel: int) -> None:
    while chunk := await stream.read(READ_CHUNK):
        await _send(ws, channel, chunk)


async def _pump_fd(fd: int, ws: web.WebSocketResponse, channel: int) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            chunk = await loop.run_in_executor(None, os.read, fd, READ_CHUNK)
        except OSError:  # EIO: the terminal's other end closed
            return
        if not chunk:
            return
        await _send(ws, channel, chunk)


async def _client_input(ws: web.WebSocketResponse, proc: asyncio.subprocess.Process, master: int | None) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == STDIN:
            if master is not None:
                os.write(master, data)
            elif proc.stdin is not None:
                proc.stdin.write(data)
                await proc.stdin.drain()
        elif channel == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None:
            proc.stdin.close()
        elif channel == RESIZE and master is not None:
            with contextlib.suppress(ValueError, OSError):
                size = json.loads(data)
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()


async def attach(kubelet: Kubelet, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
    """The container's output from now on (its stdin is not attachable: containers here run without one)."""
    runner = running_container(kubelet, pod, request.query.get("container"))
    if _flag(request, "stdin") and not runner.spec.get("stdin"):
        raise bad_request(
            f"you must set stdin: true in the container spec of {runner.name} to attach to its stdin (use -i=false)"
        )
    assert runner.proc is not None
    path = runner.proc.log_path
    ws = await _upgrade(request)
    offset = path.stat().st_size if path.exists() else 0
    reader = asyncio.ensure_future(_drain(ws))
    try:
        for _ in range(36000):  # at most ~2 h
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
                offset += len(chunk)
                await _send(ws, STDOUT, chunk)
            elif not runner.proc.running() or ws.closed or reader.done():
                break
            await asyncio.sleep(0.2)
        await _send(ws, ERROR, json.dumps(_status_success()).encode())
    finally:
        reader.cancel()
        await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


async def portforward(kubelet: Kubelet, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
    """``pods/{name}/portforward``: kubectl's SPDY (tunnelled in a WebSocket, or upgraded to) goes to
    ``kubelet.portforward``; the channel protocols (the Python client's ``portforward()``) are served here."""
    worker = kubelet.pods.get(pod["metadata"].get("uid", ""))
    if worker is None or not worker.ip:
        raise bad_request(f"unable to upgrade connection: pod {pod['metadata']['name']} is not running")
    uid = pod["metadata"].get("uid", "")

    def resolve_ip() -> str | None:
        w = kubelet.pods.get(uid)
        return w.ip if w is not None and w.ip else None  # a terminating pod's sandbox still answers

    target = PodTarget(uid, resolve_ip)
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "spdy/3.1":
        return await serve_spdy_upgrade(request, target)
    _require_websocket(request)
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()}
    if TUNNEL_PROTOCOL in offered:
        return await serve_websocket(request, target)
    if not offered & set(PROTOCOLS):
        # the apiserver's tunnelling handler (streamtunnel.go) and the channel protocols know nothing else
        raise bad_request(
            "unable to upgrade: no tunneling spdy protocols provided (the sandbox forwards ports over "
            f"{TUNNEL_PROTOCOL}, v4.channel.k8s.io or an Upgrade: SPDY/3.1; the client offered "
            f"{', '.join(sorted(offered)) or 'none'})"
        )
    ports: list[int] = []
    for value in _queries(request, "ports"):
        for part in value.split(","):
            if not part.strip().isdigit() or not 0 < int(part) < 65536:
                raise bad_request(f'invalid port "{part}": ports must be numbers in 1-65535')
            ports.append(int(part))
    if not ports:
        raise bad_request('query parameter "ports" is required')
    ws = await _upgrade(request)
    writers: dict[int, asyncio.StreamWriter] = {}
    tasks = []
    for i, port in enumerate(ports):
        for ch in (2 * i, 2 * i + 1):
            await _send(ws, ch, struct.pack("<H", port))
        try:
            reader, writer = await asyncio.open_connection(worker.ip, port)
        except OSError as exc:
            msg = f"error forwarding port {port} to pod {pod['metadata']['name']}: {exc}"
            await _send(ws, 2 * i + 1, msg.encode())
            continue
        writers[2 * i] = writer
        tasks.append(asyncio.ensure_future(_pump(reader, ws, 2 * i)))

    async def from_client() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            w = writers.get(msg.data[0])
            if w is not None:
                w.write(msg.data[1:])
                await w.drain()

    client_task = asyncio.ensure_future(from_client())
    try:
        # One connection per forwarded port and stream, as the kubelet's: when the pod side closes every
        # connection (or the client goes), the stream ends.
        waiters: list[asyncio.Future[Any]] = [client_task, asyncio.gather(*tasks)] if tasks else [client_task]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        client_task.cancel()
        for t in tasks:
            t.cancel()
        for w in writers.values():
            w.close()
        await ws.close()
    return ws
