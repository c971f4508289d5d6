"""The sandbox's SPDY/3.1 framing (``ack_sandbox.kubelet.spdy``) against frames another implementation made
(node spdy-transport's parser tests: a SYN_STREAM with headers, an empty SYN_REPLY, DATA frames) and against
itself across one connection's shared zlib streams; the port-forward session's stream rules over an in-memory
pipe. kubectl itself is the judge in test_k8s_portforward.py."""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Callable

import pytest

from ack_sandbox.kubelet import portforward, spdy

# spdy-transport test/spdy/parser-test.js: SYN_STREAM id 1 with ":method: GET", ":path: /"; SYN_REPLY id 1
# without headers (the zlib header names the SPDY/3 dictionary: 78 f9, then its adler32 e3c6a7c2)
NODE_SYN_STREAM = (
    "800300010000002c0000000100000000000078f9e3c6a7c202e50e507ab442a45a77d7105006b32a4804974d8cfa00000000ffff"
)
NODE_SYN_REPLY = "80030002000000140000000178f9e3c6a7c202a6230600000000ffff"
NODE_DATA_FIN = "000000010100001157726974696e6720746f2073747265616d"


def test_dictionary_is_spdy3s() -> None:
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(spdy.HEADER_DICTIONARY) == 0xE3C6A7C2  # the dictionary id every SPDY/3 stream names


def test_frames_made_by_another_implementation() -> None:
    (syn,) = spdy.Decoder().feed(bytes.fromhex(NODE_SYN_STREAM))
    assert (syn.kind, syn.stream_id, syn.fin) == (spdy.SYN_STREAM, 1, False)
    assert syn.headers == {":method": ["GET"], ":path": ["/"]}
    # an empty SYN_REPLY on a fresh connection is byte for byte what the other side makes
    assert spdy.Encoder().syn_reply(1).hex() == NODE_SYN_REPLY
    (data,) = spdy.Decoder().feed(bytes.fromhex(NODE_DATA_FIN))
    assert (data.kind, data.stream_id, data.fin, data.data) == (0, 1, True, b"Writing to stream")
    assert spdy.Encoder.data(1, b"Writing to stream", fin=True).hex() == NODE_DATA_FIN


def test_one_zlib_stream_per_direction_and_frames_split_anywhere() -> None:
    enc, dec = spdy.Encoder(), spdy.Decoder()
    wire = b"".join(
        [
            enc.syn_stream(1, {"streamtype": "error", "port": "8080", "requestid": "0"}),
            enc.syn_stream(3, {"streamtype": "data", "port": "8080", "requestid": "0"}),
            enc.data(3, b"GET / HTTP/1.0\r\n\r\n"),
            enc.data(1, fin=True),
            enc.ping(1),
            enc.rst_stream(3, spdy.CANCEL),
            enc.window_update(3, 65536),
            enc.goaway(3),
        ]
    )
    # kubectl's framer writes each field separately (one WebSocket message each): feed a byte at a time
    frames = [f for i in range(len(wire)) for f in dec.feed(wire[i : i + 1])]
    kinds = [f.kind for f in frames]
    assert kinds == [
        spdy.SYN_STREAM,
        spdy.SYN_STREAM,
        0,
        0,
        spdy.PING,
        spdy.RST_STREAM,
        spdy.WINDOW_UPDATE,
        spdy.GOAWAY,
    ]
    assert frames[1].header("streamtype") == "data" and frames[1].header("port") == "8080"  # second block: shared zlib
    assert frames[2].data == b"GET / HTTP/1.0\r\n\r\n" and not frames[2].fin
    assert frames[3].stream_id == 1 and frames[3].fin and frames[3].data == b""
    assert frames[4].ping_id == 1 and frames[5].status == spdy.CANCEL and frames[6].delta_window == 65536
    assert frames[7].last_good_stream_id == 3
    # a second decoder that missed the first block cannot read the second: the state is per connection
    with pytest.raises(spdy.SpdyError):
        spdy.Decoder().feed(_second_block_only())


def _second_block_only() -> bytes:
    enc = spdy.Encoder()
    enc.syn_stream(1, {"port": "1"})
    return enc.syn_stream(3, {"port": "2"})


def test_bad_frames_are_errors() -> None:
    with pytest.raises(spdy.SpdyError, match="version"):
        spdy.Decoder().feed(bytes.fromhex("8002000600000004" + "00000001"))  # SPDY/2 PING
    with pytest.raises(spdy.SpdyError, match="stream id zero"):
        spdy.Decoder().feed(bytes.fromhex("0000000000000000"))
    with pytest.raises(spdy.SpdyError, match="unknown control frame type"):
        spdy.Decoder().feed(bytes.fromhex("8003000a00000000"))
    assert spdy.Decoder().feed(bytes.fromhex("80030006000000")) == []  # incomplete: waits for more


class _Pipe:
    """An in-memory byte pipe for one port-forward session (what the WebSocket tunnel carries)."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.out = bytearray()
        self.closed = False

    async def recv(self) -> bytes | None:
        return await self.inbound.get()

    async def send(self, data: bytes) -> None:
        self.out += data

    async def close(self) -> None:
        self.closed = True


async def test_session_pairs_streams_resets_bad_ones_and_reports_failures() -> None:
    """The kubelet's rules (httpstream.go) that kubectl never breaks, so its runs cannot show them."""

    async def upper_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read(100)).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upper_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    pipe = _Pipe()
    session = asyncio.ensure_future(
        portforward.Session(pipe, portforward.PodTarget("uid-1", lambda: "127.0.0.1")).run()
    )
    client, server_side = spdy.Encoder(), spdy.Decoder()
    seen: list[spdy.Frame] = []
    fed = 0

    async def wait_for(what: str, pred: Callable[[spdy.Frame], bool]) -> spdy.Frame:
        nonlocal fed
        for _ in range(500):  # at most ~5 s
            seen.extend(server_side.feed(bytes(pipe.out[fed:])))
            fed = len(pipe.out)
            hit = next((f for f in seen if pred(f)), None)
            if hit is not None:
                return hit
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {what} in {seen}")

    def send(data: bytes) -> None:
        pipe.inbound.put_nowait(data)

    try:
        # streams without a port, or with a bad one, are reset (CANCEL, apimachinery's stream.Reset)
        send(client.syn_stream(1, {"streamtype": "error"}))
        send(client.syn_stream(3, {"streamtype": "data", "port": "70000"}))
        for sid in (1, 3):
            rst = await wait_for(
                f"RST_STREAM {sid}", lambda f, sid=sid: f.kind == spdy.RST_STREAM and f.stream_id == sid
            )
            assert rst.status == spdy.CANCEL
        send(client.ping(9))
        await wait_for("PING echo", lambda f: f.kind == spdy.PING and f.ping_id == 9)
        # an old client without requestid: error stream n and data stream n+2 pair up
        send(client.syn_stream(5, {"streamtype": "error", "port": str(port)}))
        send(client.syn_stream(7, {"streamtype": "data", "port": str(port)}))
        send(client.data(7, b"hello pod"))
        send(client.data(7, fin=True))
        reply = await wait_for("forwarded reply", lambda f: f.kind == 0 and f.stream_id == 7 and bool(f.data))
        assert reply.data == b"HELLO POD"
        await wait_for("FIN on the error stream", lambda f: f.kind == 0 and f.stream_id == 5 and f.fin)
        assert [f.kind for f in seen if f.stream_id in (5, 7) and f.kind != 0] == [spdy.SYN_REPLY, spdy.SYN_REPLY]
        assert not any(f.kind == 0 and f.stream_id == 5 and f.data for f in seen)  # no error: nothing said
        # nothing listens: the kubelet's message on the error stream, then FIN on both
        send(client.syn_stream(11, {"streamtype": "error", "port": str(closed_port), "requestid": "r2"}))
        send(client.syn_stream(13, {"streamtype": "data", "port": str(closed_port), "requestid": "r2"}))
        msg = await wait_for("the refusal", lambda f: f.kind == 0 and f.stream_id == 11 and bool(f.data))
        text = msg.data.decode()
        assert text.startswith(f"error forwarding port {closed_port} to pod {portforward.sandbox_id('uid-1')}, uid : ")
        assert f"dial tcp4 127.0.0.1:{closed_port}: connect: connection refused" in text
        for sid in (11, 13):
            await wait_for(f"FIN {sid}", lambda f, sid=sid: f.kind == 0 and f.stream_id == sid and f.fin)
        # a second error stream for one request: the kubelet says so on the first
        send(client.syn_stream(15, {"streamtype": "error", "port": str(port), "requestid": "r3"}))
        send(client.syn_stream(17, {"streamtype": "error", "port": str(port), "requestid": "r3"}))
        dup = await wait_for("the duplicate", lambda f: f.kind == 0 and f.stream_id == 15 and bool(f.data))
        assert dup.data == b"error processing stream for request r3: error stream already assigned"
        send(client.goaway(17))
        await asyncio.wait_for(session, 5)
        assert pipe.closed
    finally:
        session.cancel()
        server.close()
        await server.wait_closed()


async def test_upgraded_connection_pauses_reading_while_the_session_is_behind() -> None:
    """The SPDY-upgrade path gets raw bytes from aiohttp's protocol: past a high-water mark of queued chunks it
    pauses the socket, and resumes once the session has caught up (the watermark logic alone)."""

    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

    class Request:
        transport = Transport()

    channel = portforward._UpgradedChannel(Request(), None)  # type: ignore[arg-type]
    high = channel.HIGH_WATER
    for i in range(high - 1):
        channel.feed_data(b"x%d" % i)
    assert not Request.transport.paused
    channel.feed_data(b"last")
    assert Request.transport.paused
    got = [await channel.recv() for _ in range(high // 2)]
    assert got[0] == b"x0" and Request.transport.paused  # still half full
    await channel.recv()
    assert not Request.transport.paused
    channel.feed_eof()
    rest = [await channel.recv() for _ in range(high - high // 2 - 1)]
    assert rest[-1] == b"last" and await channel.recv() is None
