"""``kubectl port-forward``: the kubelet's SPDY port-forward protocol, over the WebSocket tunnel kubectl >= 1.31
opens (subprotocol ``SPDY/3.1+portforward.k8s.io``) or after a plain ``Upgrade: SPDY/3.1``.

Behaviour followed (kubernetes sources read):

- apiserver ``staging/src/k8s.io/apiserver/pkg/util/proxy/streamtunnel.go``: the tunnel answers the WebSocket
  handshake with ``SPDY/3.1+`` + the protocol the kubelet chose, then every binary message carries bytes of one
  SPDY connection (client-go ``tools/portforward/tunneling_connection.go``: message boundaries mean nothing).
- kubelet ``pkg/kubelet/cri/streaming/portforward/httpstream.go``: each stream the client opens must carry
  ``port`` (1-65535) and ``streamtype`` (``error`` | ``data``), else it is reset; accepted streams get an empty
  SYN_REPLY (apimachinery ``httpstream/spdy/connection.go`` ``newSpdyStream``); streams pair up by
  ``requestid`` (or, for clients without one, by stream id: error ``n``, data ``n+2``); a pair not complete in
  30 s gets "timed out waiting for streams"; a complete pair is forwarded, and a failure is written to its error
  stream as ``error forwarding port P to pod ID, uid : ...``; both streams are closed (FIN) when done.
- containerd ``internal/cri/server/sandbox_portforward_linux.go`` (what ACK nodes run): the connection inside
  the pod, the "failed to connect to localhost:P inside namespace ..." message when nothing listens, and the
  end of a forward: the first direction to finish, then at most 1 s for the other.
- client-go ``tools/portforward/portforward.go``: kubectl opens the error stream then the data stream per
  accepted local connection, half-closes the error stream at once, resets the data stream once the remote side
  is done, and closes the whole connection (``lost connection to pod``) when an error stream carries a message
  (kubernetes/kubernetes#103526, since 1.23). Pings (client-go ``PingPeriod``, 10 s) are echoed.

Pods are processes here: the pod's "localhost" is its own loopback IP (``kubelet.ips``), so that is what is
dialled. The sandbox ID in messages stands for the CRI sandbox ID (a stable hash of the pod UID); pods have no
IPv6 address, so the IPv6 half of containerd's message repeats the IPv4 outcome. Not modelled: the kubelet's
4 h stream idle timeout, SPDY flow control (spdystream, both peers' framer, does none either).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import WSMsgType, web

from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.kubelet import spdy

log = logging.getLogger("ack_sandbox.kubelet.portforward")
T = TypeVar("T")

PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0  # kubelet streaming DefaultConfig.StreamCreationTimeout
CLOSE_GRACE = 1.0  # containerd: after one direction ends, 1 s for the other
DIAL_TIMEOUT = 5.0
READ_CHUNK = 32 * 1024
INBOX_DEPTH = 256


class Channel(Protocol):
    """The byte pipe one SPDY connection runs on (a WebSocket tunnel or an upgraded HTTP connection)."""

    async def recv(self) -> bytes | None: ...  # None: the peer is gone

    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class ForwardError(Exception):
    """Why a connection to the pod's port could not be made (containerd's wording, without the kubelet's prefix)."""


def sandbox_id(uid: str) -> str:
    """The CRI sandbox ID the kubelet names in port-forward errors (64 hex, stable per pod)."""
    return hashlib.sha256(f"pod-sandbox:{uid}".encode()).hexdigest()


def _go_errno(exc: OSError) -> str:
    """Go's spelling of a socket error (``connection refused``, ``i/o timeout``)."""
    if isinstance(exc, TimeoutError) or exc.errno in (None, errno.ETIMEDOUT):
        return "i/o timeout"
    return os.strerror(exc.errno).lower()


@dataclass
class PodTarget:
    """Where a pod's ports are: its sandbox's names (for messages) and its current address."""

    uid: str
    resolve_ip: Callable[[], str | None]

    @property
    def sandbox_id(self) -> str:
        return sandbox_id(self.uid)

    @property
    def netns(self) -> str:
        return f"/var/run/netns/cni-{self.uid}"

    async def dial(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to ``port`` on the pod's address, failing with containerd's messages."""
        ip = self.resolve_ip()
        if not ip:
            raise ForwardError(f'failed to find sandbox "{self.sandbox_id}" in store: not found')
        try:
            return await asyncio.wait_for(asyncio.open_connection(ip, port), DIAL_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            why = "i/o timeout" if isinstance(exc, TimeoutError) else f"connect: {_go_errno(exc)}"
            raise ForwardError(
                f'failed to execute portforward in network namespace "{self.netns}": failed to connect to '
                f'localhost:{port} inside namespace "{self.sandbox_id}", IPv4: dial tcp4 {ip}:{port}: {why} '
                f"IPv6 dial tcp6 [::1]:{port}: {why} "
            ) from exc


@dataclass
class _Stream:
    id: int
    kind: str  # "error" | "data"
    port: int
    remote_done: bool = False  # the client sent FIN (or RST)
    local_done: bool = False  # we sent FIN (or RST)
    reset: bool = False
    inbox: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(INBOX_DEPTH))


@dataclass
class _Pair:
    request_id: str
    error: _Stream | None = None
    data: _Stream | None = None
    started: bool = False
    monitor: asyncio.Task[None] | None = None


class Session:
    """The server side of one SPDY port-forward connection (what the kubelet runs per ``kubectl port-forward``)."""

    def __init__(self, channel: Channel, target: PodTarget) -> None:
        self.channel = channel
        self.target = target
        self._dec = spdy.Decoder()
        self._enc = spdy.Encoder()
        self._send_lock = asyncio.Lock()
        self._streams: dict[int, _Stream] = {}
        self._pairs: dict[str, _Pair] = {}
        self._last_client_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def run(self) -> None:
        try:
            while not self._closing:
                chunk = await self.channel.recv()
                if chunk is None:
                    break
                try:
                    frames = self._dec.feed(chunk)
                except spdy.SpdyError as exc:
                    log.info("port-forward: closing on a bad frame: %s", exc)
                    await self._send(self._enc.goaway(self._last_client_id, 1))
                    break
                for frame in frames:
                    await self._on_frame(frame)
        finally:
            self._closing = True
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.channel.close()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, frame: bytes | Callable[[], bytes]) -> None:
        """Send one frame; a callable is encoded under the lock (header compression state goes out in order)."""
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.channel.send(frame() if callable(frame) else frame)

    async def _on_frame(self, f: spdy.Frame) -> None:
        if f.kind == spdy.SYN_STREAM:
            await self._on_syn_stream(f)
        elif f.kind == 0:
            s = self._streams.get(f.stream_id)
            if s is None or s.remote_done:
                return  # spdystream drops data for streams it no longer has
            if f.data and s.kind == "data":
                await s.inbox.put(f.data)
            if f.fin:
                s.remote_done = True
                await s.inbox.put(None)
        elif f.kind == spdy.RST_STREAM:
            s = self._streams.get(f.stream_id)
            if s is not None:
                s.reset = s.remote_done = s.local_done = True
                while not s.inbox.empty():  # what was not written yet is dropped (spdystream Reset)
                    s.inbox.get_nowait()
                s.inbox.put_nowait(None)
        elif f.kind == spdy.PING:
            if f.ping_id % 2 == 1:  # the client's (odd) pings come back unchanged
                await self._send(self._enc.ping(f.ping_id))
        elif f.kind == spdy.GOAWAY:
            self._closing = True  # kubectl resets its streams, then says GOAWAY and closes
        # SYN_REPLY/HEADERS (we open no streams), SETTINGS, WINDOW_UPDATE: nothing to do, as in spdystream

    async def _on_syn_stream(self, f: spdy.Frame) -> None:
        if f.stream_id % 2 == 0 or f.stream_id <= self._last_client_id:
            await self._send(self._enc.rst_stream(f.stream_id, spdy.PROTOCOL_ERROR))
            return
        self._last_client_id = f.stream_id
        why = _invalid(f)
        if why:
            log.info("port-forward: stream %d rejected: %s", f.stream_id, why)
            await self._send(self._enc.rst_stream(f.stream_id, spdy.CANCEL))
            return
        kind = f.header("streamtype")
        s = _Stream(f.stream_id, kind, int(f.header("port")), remote_done=f.fin)
        self._streams[s.id] = s
        await self._send(lambda: self._enc.syn_reply(s.id))
        request_id = f.header("requestid") or str(s.id if kind == "error" else s.id - 2)
        pair = self._pairs.get(request_id)
        if pair is None:
            pair = self._pairs[request_id] = _Pair(request_id)
            pair.monitor = self._spawn(self._monitor(pair))
        if getattr(pair, kind) is not None:
            await self._print_error(
                pair, f"error processing stream for request {request_id}: {kind} stream already assigned"
            )
            return
        setattr(pair, kind, s)
        if pair.error is not None and pair.data is not None and not pair.started:
            pair.started = True
            if pair.monitor is not None:
                pair.monitor.cancel()
            self._spawn(self._forward(pair))

    async def _monitor(self, pair: _Pair) -> None:
        await asyncio.sleep(STREAM_CREATION_TIMEOUT)
        if not pair.started:
            await self._print_error(
                pair, f"(conn={id(self):#x}, request={pair.request_id}) timed out waiting for streams"
            )
            self._pairs.pop(pair.request_id, None)

    async def _print_error(self, pair: _Pair, message: str) -> None:
        if pair.error is not None and not pair.error.local_done:
            await self._send(self._enc.data(pair.error.id, message.encode()))

    async def _close_stream(self, s: _Stream) -> None:
        if not s.local_done:
            s.local_done = True
            await self._send(self._enc.data(s.id, fin=True))
        if s.remote_done:
            self._streams.pop(s.id, None)

    async def _forward(self, pair: _Pair) -> None:
        assert pair.error is not None and pair.data is not None
        data, port = pair.data, pair.data.port
        try:
            try:
                reader, writer = await self.target.dial(port)
            except ForwardError as exc:
                await self._close_stream(data)  # containerd closes the stream before the kubelet reports
                await self._print_error(pair, self._failure(port, str(exc)))
                return
            failure = await self._pipe(data, reader, writer)
            if failure:
                await self._print_error(pair, self._failure(port, failure))
        finally:
            await self._close_stream(data)
            await self._close_stream(pair.error)
            self._pairs.pop(pair.request_id, None)

    def _failure(self, port: int, why: str) -> str:
        # kubelet httpStreamHandler.portForward: the CRI sandbox ID as "pod", the UID empty (the CRI path)
        return f"error forwarding port {port} to pod {self.target.sandbox_id}, uid : {why}"

    async def _pipe(self, s: _Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
        """Copy both ways until one side ends, then give the other :data:`CLOSE_GRACE` (containerd)."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        addr = f"{local[0]}:{local[1]}->{peer[0]}:{peer[1]}"

        async def pod_to_client() -> str | None:
            while True:
                try:
                    chunk = await reader.read(READ_CHUNK)
                except OSError as exc:
                    return f"read tcp4 {addr}: read: {_go_errno(exc)}"
                if not chunk or s.local_done or s.reset:
                    return None
                await self._send(self._enc.data(s.id, chunk))

        async def client_to_pod() -> str | None:
            while (chunk := await s.inbox.get()) is not None:
                try:
                    writer.write(chunk)
                    await writer.drain()
                except OSError as exc:
                    return f"write tcp4 {addr}: write: {_go_errno(exc)}"
            return None

        tasks = [asyncio.ensure_future(pod_to_client()), asyncio.ensure_future(client_to_pod())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                more, pending = await asyncio.wait(pending, timeout=CLOSE_GRACE)
                done |= more
            results = [t.result() for t in tasks if t in done and not t.cancelled() and t.exception() is None]
            first = next((r for r in results if r), None)
            return (
                f'failed to execute portforward in network namespace "{self.target.netns}": {first}' if first else None
            )
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _invalid(f: spdy.Frame) -> str | None:
    """kubelet ``httpStreamReceived``: why a stream is refused (None when it is fine)."""
    port = f.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or int(port) > 65535:
        return f'unable to parse "{port}" as a port'
    if int(port) < 1:
        return f'port "{port}" must be > 0'
    kind = f.header("streamtype")
    if not kind:
        return '"streamtype" header is required'
    if kind not in ("error", "data"):
        return f'invalid stream type "{kind}"'
    return None


# ---- the two ways in ------------------------------------------------------------------------------------------


class _WebSocketChannel:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def recv(self) -> bytes | None:
        msg = await self.ws.receive()
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        # client-go's TunnelingConnection: anything but a binary message ends the tunnel
        return None

    async def send(self, data: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(data)

    async def close(self) -> None:
        await self.ws.close()


class _UpgradedChannel:
    """An HTTP connection after ``101 Switching Protocols`` to SPDY/3.1: raw bytes both ways.

    aiohttp only hands over connections upgraded to ``websocket``/``tcp``; a payload parser set on the protocol
    before the 101 goes out receives every later byte instead of the HTTP parser (as aiohttp's own WebSocket
    response does).
    """

    HIGH_WATER = 64  # chunks queued before reading from the socket pauses (the session is behind)

    def __init__(self, request: web.Request, resp: web.StreamResponse) -> None:
        self.request, self.resp = request, resp
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._paused = False

    # the payload-parser side (called by aiohttp's RequestHandler.data_received / connection_lost)
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._queue.put_nowait(bytes(data))
        transport = self.request.transport
        if not self._paused and self._queue.qsize() >= self.HIGH_WATER and transport is not None:
            transport.pause_reading()
            self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(None)

    async def recv(self) -> bytes | None:
        chunk = await self._queue.get()
        transport = self.request.transport
        if self._paused and self._queue.qsize() < self.HIGH_WATER // 2 and transport is not None:
            transport.resume_reading()
            self._paused = False
        return chunk

    async def send(self, data: bytes) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("connection closed")
        await self.resp.write(data)

    async def close(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.close()


async def serve_websocket(request: web.Request, target: PodTarget) -> web.WebSocketResponse:
    """The tunnel: the WebSocket handshake names ``SPDY/3.1+portforward.k8s.io``, SPDY runs inside."""
    ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), autoping=True, heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    await Session(_WebSocketChannel(ws), target).run()
    return ws


async def serve_spdy_upgrade(request: web.Request, target: PodTarget) -> web.StreamResponse:
    """kubectl's fallback (``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``, or an apiserver without the tunnel):
    ``Upgrade: SPDY/3.1`` (apimachinery ``httpstream/spdy/upgrade.go``, ``httpstream.Handshake``)."""
    connection = request.headers.get("Connection", "").lower()
    if "upgrade" not in connection or request.headers.get("Upgrade", "").lower() != "spdy/3.1":
        raise ApiError(400, "BadRequest", "unable to upgrade: missing upgrade headers in request")
    offered = [
        p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", []) for p in v.split(",") if p.strip()
    ]
    if offered and PROTOCOL not in offered:
        # httpstream.Handshake: 403 with the protocols each side knows
        raise ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports [{PROTOCOL}]",
        )
    headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
    if offered:
        headers["X-Stream-Protocol-Version"] = PROTOCOL
    resp = web.StreamResponse(status=101, headers=headers)
    channel = _UpgradedChannel(request, resp)
    request.protocol.set_parser(channel)  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    await resp.prepare(request)
    await Session(channel, target).run()
    return resp
