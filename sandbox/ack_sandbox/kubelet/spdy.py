"""SPDY/3.1 framing: the wire format kubectl's port-forward speaks (inside a WebSocket or after a SPDY upgrade).

No maintained Python library implements it (PyPI's ``spdy-py`` 0.2.0 only reads frames and misreads their
flags; ``python-spdylay`` binds a C library last released in 2012), so this is a small module of its own over
``zlib`` from the standard library. What it follows:

- the SPDY/3.1 draft (chromium.org "SPDY Protocol - Draft 3.1"): frame layouts (2.2 control frames, 2.2.2 data
  frames), the header block (2.6.10: a count, then length-prefixed names and values, values joined by NUL)
  zlib-compressed with the fixed dictionary of 2.6.10.1, one zlib stream per direction for the whole
  connection, each block ended with a sync flush;
- moby/spdystream ``spdy/types.go``, ``read.go``, ``write.go`` (the Go framer kubectl and the kubelet use): the
  type and flag numbers, RST_STREAM statuses, header names lower-cased, the flags of a data frame in the high
  byte of its length word. spdystream does no flow control, so WINDOW_UPDATE and SETTINGS are parsed and left
  unacted on by its peers.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
# RST_STREAM status codes (spdystream spdy/types.go RstStreamStatus; draft 3.1 section 2.4.2)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
MAX_DATA_LENGTH = (1 << 24) - 1

# The header compression dictionary of SPDY/3 (draft 3.1 section 2.6.10.1): 65 length-prefixed words, then
# 574 bytes of status lines, dates and media types; 1423 bytes in all.
_DICT_WORDS = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
]
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICT_WORDS) + _DICT_TAIL.encode()


class SpdyError(Exception):
    """A frame the peer should not have sent (the connection cannot go on: its zlib state may be lost)."""


@dataclass
class Frame:
    """One frame, unpacked. ``kind`` is a control frame type, or 0 for a data frame."""

    kind: int
    flags: int = 0
    stream_id: int = 0
    headers: dict[str, list[str]] = field(default_factory=dict)
    data: bytes = b""
    status: int = 0  # RST_STREAM / GOAWAY status
    ping_id: int = 0
    last_good_stream_id: int = 0  # GOAWAY
    delta_window: int = 0  # WINDOW_UPDATE
    settings: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    associated_to: int = 0  # SYN_STREAM
    priority: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def header(self, name: str) -> str:
        """The first value of a header ('' when absent), as Go's ``http.Header.Get``."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""


def encode_header_block(headers: dict[str, list[str]] | dict[str, str]) -> bytes:
    """The uncompressed name/value block (lower-cased names, multiple values joined by NUL)."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        raw_name = name.lower().encode()
        raw_value = "\x00".join(value if isinstance(value, list) else [value]).encode()
        out += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, list[str]]:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, headers = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            if name in headers:
                raise SpdyError(f"multiple headers with same name: {name}")
            headers[name.lower()] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"invalid header block: {exc}") from exc
    if pos != len(block):
        raise SpdyError("compressed payload size was incorrect")
    return headers


class HeaderCompressor:
    """One direction's zlib stream: every block is a sync-flushed chunk of the same deflate stream."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )

    def compress(self, headers: dict[str, list[str]] | dict[str, str]) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, chunk: bytes) -> dict[str, list[str]]:
        try:
            return decode_header_block(self._z.decompress(chunk))
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from exc


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


class Encoder:
    """Frames to bytes; owns the outgoing header compression state, so frames must go out in encode order."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def syn_stream(
        self, stream_id: int, headers: dict[str, str], *, flags: int = 0, associated_to: int = 0, priority: int = 0
    ) -> bytes:
        block = self._headers.compress(headers)
        return _control(SYN_STREAM, flags, struct.pack(">IIBB", stream_id, associated_to, priority << 5, 0) + block)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, *, flags: int = 0) -> bytes:
        return _control(SYN_REPLY, flags, struct.pack(">I", stream_id) + self._headers.compress(headers or {}))

    @staticmethod
    def rst_stream(stream_id: int, status: int) -> bytes:
        return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @staticmethod
    def ping(ping_id: int) -> bytes:
        return _control(PING, 0, struct.pack(">I", ping_id))

    @staticmethod
    def goaway(last_good_stream_id: int, status: int = 0) -> bytes:
        return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id, status))

    @staticmethod
    def window_update(stream_id: int, delta: int) -> bytes:
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))

    @staticmethod
    def data(stream_id: int, data: bytes = b"", *, fin: bool = False) -> bytes:
        if not 0 < stream_id < 1 << 31 or len(data) > MAX_DATA_LENGTH:
            raise SpdyError(f"invalid data frame for stream {stream_id} ({len(data)} bytes)")
        return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


class Decoder:
    """Bytes to frames, incrementally (the transport's chunks need not align with frames: kubectl's framer
    writes each field of a frame separately, one WebSocket message each)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames = []
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf, 0)
            length = second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frames.append(self._frame(first, second >> 24, payload))
        return frames

    def _frame(self, first: int, flags: int, payload: bytes) -> Frame:
        if not first & 0x80000000:
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdyError("stream id zero is disallowed")
            return Frame(0, flags, stream_id, data=payload)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            if kind == SYN_STREAM:
                sid, assoc, prio, _slot = struct.unpack_from(">IIBB", payload, 0)
                return Frame(
                    kind,
                    flags,
                    sid & 0x7FFFFFFF,
                    headers=self._headers.decompress(payload[10:]),
                    associated_to=assoc & 0x7FFFFFFF,
                    priority=prio >> 5,
                )
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", payload, 0)
                return Frame(kind, flags, sid & 0x7FFFFFFF, headers=self._headers.decompress(payload[4:]))
            if kind == RST_STREAM:
                sid, status = struct.unpack(">II", payload)
                return Frame(kind, flags, sid & 0x7FFFFFFF, status=status)
            if kind == PING:
                (ping_id,) = struct.unpack(">I", payload)
                return Frame(kind, flags, ping_id=ping_id)
            if kind == GOAWAY:
                last, status = struct.unpack(">II", payload)
                return Frame(kind, flags, last_good_stream_id=last & 0x7FFFFFFF, status=status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", payload)
                return Frame(kind, flags, sid & 0x7FFFFFFF, delta_window=delta & 0x7FFFFFFF)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", payload, 0)
                settings = []
                for i in range(count):
                    flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                    settings.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
                return Frame(kind, flags, settings=settings)
        except struct.error as exc:
            raise SpdyError(f"invalid control frame of type {kind}: {exc}") from exc
        raise SpdyError(f"unknown control frame type {kind}")
