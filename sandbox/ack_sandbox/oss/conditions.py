"""Conditional requests and GZIP transfer as OSS evaluates them — pure functions of request headers and an
``ObjectMeta``, no HTTP objects and no state (the wire in ``handlers.py`` turns their answers into responses).

Conditions (GetObject / HeadObject: ``If-*``; CopyObject / UploadPartCopy: ``x-oss-copy-source-if-*`` on the
*source*), as the OSS API reference states them and alibabacloud-oss-v2 documents them
(``models/object_basic.py``: GetObjectRequest / HeadObjectRequest / CopyObjectRequest):

- ``If-Match``: the ETag must equal, else 412 PreconditionFailed;
- ``If-None-Match``: the ETag must differ, else 304 Not Modified;
- ``If-Modified-Since``: the object must be modified after the time (an unparseable time is ignored), else 304;
- ``If-Unmodified-Since``: the time must be the same as or later than the last modification, else 412
  (OSS error 0017-00001001, "http status code 412" page: If-Match / If-Unmodified-Since).

Precedence is RFC 7232 §6 (what OSS and S3 do): a true If-Match makes If-Unmodified-Since irrelevant; a present
If-None-Match makes If-Modified-Since irrelevant. Times compare at whole seconds (Last-Modified's resolution).

GZIP (OSS FAQ "How do I compress objects that I download from OSS in the GZIP format", help doc 39645): with
``Accept-Encoding: gzip`` OSS compresses a GET of an object of at least 1 KB whose Content-Type is one of
``GZIP_CONTENT_TYPES``; the answer carries ``Content-Encoding: gzip`` and ``Vary: Accept-Encoding`` and no ETag,
Content-Length or Accept-Ranges, while ``x-oss-hash-crc64ecma`` stays the stored object's (oss2 therefore skips
its CRC check when it asked for gzip: ``Bucket.get_object_to_file``). A ranged GET is never compressed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from ack_sandbox.oss.errors import precondition_failed
from ack_sandbox.oss.store import ObjectMeta

GZIP_MIN_SIZE = 1024
GZIP_CONTENT_TYPES = frozenset(
    [
        "text/cache-manifest",
        "text/xml",
        "text/css",
        "text/html",
        "text/plain",
        "application/javascript",
        "application/x-javascript",
        "application/rss+xml",
        "application/json",
        "text/json",
    ]
)

NOT_MODIFIED = 304


def _http_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _etag_matches(header: str, etag: str) -> bool:
    want = etag.strip('"').upper()
    for item in header.split(","):
        tag = item.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"').upper() == want:
            return True
    return False


def evaluate(headers: Mapping[str, str], meta: ObjectMeta, prefix: str = "") -> int | None:
    """None when the request goes ahead, 304 when the object is not modified; raises 412 PreconditionFailed.

    ``prefix`` is ``"x-oss-copy-source-"`` for a copy's source conditions (``x-oss-copy-source-if-match`` ...).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    names = {n: f"{prefix}if-{n}" if prefix else f"if-{n}" for n in ("match", "none-match", "modified-since")}
    names["unmodified-since"] = f"{prefix}if-unmodified-since" if prefix else "if-unmodified-since"
    modified = int(meta.last_modified)

    if_match = lower.get(names["match"])
    if if_match is not None:
        if not _etag_matches(if_match, meta.etag):
            raise precondition_failed(_title(names["match"]))
    else:
        since = _http_time(lower.get(names["unmodified-since"]))
        if since is not None and since < modified:
            raise precondition_failed(_title(names["unmodified-since"]))

    if_none_match = lower.get(names["none-match"])
    if if_none_match is not None:
        if _etag_matches(if_none_match, meta.etag):
            return NOT_MODIFIED
    else:
        since = _http_time(lower.get(names["modified-since"]))
        if since is not None and modified <= since:
            return NOT_MODIFIED
    return None


def _title(name: str) -> str:
    return "-".join(p.upper() if p == "oss" else p.capitalize() for p in name.split("-"))


def wants_gzip(headers: Mapping[str, str], meta: ObjectMeta, ranged: bool) -> bool:
    """Whether OSS would answer this GET/HEAD with ``Content-Encoding: gzip``."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept-encoding"), "") or ""
    codings = {c.split(";", 1)[0].strip().lower() for c in accept.split(",")}
    content_type = meta.content_type.split(";", 1)[0].strip().lower()
    return "gzip" in codings and not ranged and meta.size >= GZIP_MIN_SIZE and content_type in GZIP_CONTENT_TYPES
