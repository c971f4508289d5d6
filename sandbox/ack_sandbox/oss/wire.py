"""Small pieces of the OSS wire format shared by ``handlers.py`` (service, buckets) and ``object_handlers.py``:
dates (RFC 1123 in headers, ISO 8601 in XML), XML elements, ``encoding-type=url`` keys, user metadata headers,
the object response headers, byte ranges. No state here.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web

from ack_sandbox.oss.errors import invalid_argument
from ack_sandbox.oss.store import ObjectMeta

OWNER_ID = "1234567890123456"
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def iso_date(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def xml(root: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>'


def el(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def enc(value: str, url: bool) -> str:
    """A key or prefix as OSS writes it with ``encoding-type=url`` (every reserved byte escaped)."""
    return quote(value, safe="") if url else value


def owner() -> str:
    return f"<Owner>{el('ID', OWNER_ID)}{el('DisplayName', OWNER_ID)}</Owner>"


def xml_response(root: str, body: str, **kwargs: Any) -> web.Response:
    return web.Response(text=xml(root, body), content_type="application/xml", **kwargs)


def user_meta(request: web.Request) -> dict[str, str]:
    return {
        k.lower()[len("x-oss-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-oss-meta-")
    }


async def chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


def object_headers(meta: ObjectMeta) -> dict[str, str]:
    """GetObject / HeadObject headers of a stored object (a followed symlink passes its target's meta)."""
    headers = {
        "ETag": meta.etag,
        "Last-Modified": http_date(meta.last_modified),
        "Content-Type": meta.content_type,
        "x-oss-object-type": meta.object_type,
        "x-oss-storage-class": meta.storage_class,
        "x-oss-hash-crc64ecma": str(meta.crc64),
        "Accept-Ranges": "bytes",
    }
    if meta.content_md5:
        headers["Content-MD5"] = meta.content_md5
    if meta.object_type == "Appendable":
        headers["x-oss-next-append-position"] = str(meta.size)
    headers.update({f"x-oss-meta-{k}": v for k, v in meta.user_meta.items()})
    return headers


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` clipped to the object; None when unsatisfiable or malformed."""
    m = _RANGE_RE.match(value.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def bounded_int(q: dict[str, str], name: str, default: int, hi: int) -> int:
    """``max-keys`` / ``max-uploads`` / ``max-parts``: 1..hi, else 400 InvalidArgument."""
    raw = q.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_argument(name, raw, f"{name} must be an integer between 1 and {hi}") from None
    if not 1 <= value <= hi:
        raise invalid_argument(name, raw, f"{name} must be an integer between 1 and {hi}")
    return value
