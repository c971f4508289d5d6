"""The OSS wire for object requests (``/bucket/key``): which API a method + sub-resource is, its headers and XML.

Served, after the OSS API reference (help.aliyun.com, "OSS API > Object") and what oss2 / alibabacloud-oss-v2 send:

- PutObject, GetObject (Range, ``x-oss-range-behavior: standard``, ``response-*`` overrides, conditions and GZIP
  per ``conditions.py``), HeadObject, GetObjectMeta (``HEAD ?objectMeta``), DeleteObject;
- CopyObject (``PUT`` + ``x-oss-copy-source: /bucket/url-quoted-key``; ``x-oss-metadata-directive`` COPY keeps
  the source's Content-Type and ``x-oss-meta-*``, REPLACE takes the request's; ``x-oss-copy-source-if-*`` on the
  source; ``x-oss-forbid-overwrite``): ``CopyObjectResult`` with ETag + LastModified, the source's bytes;
- AppendObject (``POST ?append&position=N``): ``x-oss-next-append-position`` + ``x-oss-hash-crc64ecma`` of the
  whole object; 409 PositionNotEqualToLength (with ``x-oss-next-append-position``) / ObjectNotAppendable;
- PutSymlink / GetSymlink (``?symlink``, ``x-oss-symlink-target`` URL-quoted as oss2 ``put_symlink`` sends it);
  GET/HEAD of a symlink serve its target (404 SymlinkTargetNotExist when the target is gone);
- multipart: InitiateMultipartUpload, UploadPart, UploadPartCopy (UploadPart + ``x-oss-copy-source``, optional
  ``x-oss-copy-source-range: bytes=first-last``, the source conditions; ``CopyPartResult``, ETag header as oss2's
  ``upload_part_copy`` reads it), CompleteMultipartUpload (incl. ``x-oss-complete-all``), ListParts, Abort.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
import zlib
from urllib.parse import quote, unquote

from aiohttp import web

from ack_sandbox.oss import conditions
from ack_sandbox.oss.errors import OssError, invalid_argument, malformed_xml
from ack_sandbox.oss.store import ObjectMeta, OssStore, file_chunks
from ack_sandbox.oss.wire import (
    bounded_int,
    chunks,
    el,
    enc,
    http_date,
    iso_date,
    object_headers,
    parse_range,
    user_meta,
    xml_response,
)

_RESPONSE_OVERRIDES = ("response-content-type", "response-content-disposition", "response-cache-control")


def _not_modified(meta: ObjectMeta) -> web.Response:
    return web.Response(status=304, headers={"ETag": meta.etag, "Last-Modified": http_date(meta.last_modified)})


async def get_object(request: web.Request, store: OssStore, bucket: str, key: str, head: bool) -> web.StreamResponse:
    own = store.head(bucket, key)
    meta, data_key = store.follow(bucket, key)
    if conditions.evaluate(request.headers, meta) == conditions.NOT_MODIFIED:
        return _not_modified(meta)
    headers = object_headers(meta)
    if own.object_type == "Symlink":  # the target's bytes, ETag and CRC; the symlink's own type and metadata
        headers = {k: v for k, v in headers.items() if not k.startswith("x-oss-meta-")}
        headers.update({f"x-oss-meta-{k}": v for k, v in own.user_meta.items()})
        headers["x-oss-object-type"] = "Symlink"
    start, end, status = 0, meta.size - 1, 200
    rng = request.headers.get("Range")
    if rng:
        parsed = parse_range(rng, meta.size)
        if parsed is not None:
            start, end, status = parsed[0], parsed[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{meta.size}"
        elif request.headers.get("x-oss-range-behavior") == "standard":
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.", "0026-00000206")
        # OSS (non-standard behaviour) ignores an invalid range and returns the whole object.
    for h in _RESPONSE_OVERRIDES:
        if h in request.query:
            headers[h[len("response-") :].title()] = request.query[h]
    gzip = conditions.wants_gzip(request.headers, meta, ranged=status == 206)
    if gzip:
        for h in ("ETag", "Accept-Ranges", "Content-MD5"):
            headers.pop(h, None)
        headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    if head:
        if not gzip:
            headers["Content-Length"] = str(meta.size)
        return web.Response(status=200, headers=headers)
    resp = web.StreamResponse(status=status, headers=headers)
    if not gzip:
        resp.content_length = end - start + 1 if meta.size else 0
    await resp.prepare(request)
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None  # wbits 31: a gzip member
    if meta.size:
        async for chunk in file_chunks(store.object_path(bucket, data_key), start, end):
            await resp.write(packer.compress(chunk) if packer else chunk)
    if packer:
        await resp.write(packer.flush())
    await resp.write_eof()
    return resp


def _copy_source(request: web.Request) -> tuple[str, str]:
    """``x-oss-copy-source: /bucket/url-quoted-key[?versionId=...]`` -> (bucket, key)."""
    raw = request.headers["x-oss-copy-source"]
    path = raw.split("?", 1)[0]
    src_bucket, _, src_key = path[1:].partition("/")
    if not raw.startswith("/") or not src_bucket or not src_key:
        raise invalid_argument(
            "x-oss-copy-source", raw, "Copy Source must mention the source bucket and key: /sourcebucket/sourcekey."
        )
    return unquote(src_bucket), unquote(src_key)


def _copy_conditions(request: web.Request, store: OssStore, src_bucket: str, src_key: str) -> ObjectMeta | None:
    """The source's meta, or None when an ``x-oss-copy-source-if-*`` condition answers 304 (412 raises)."""
    src, _ = store.follow(src_bucket, src_key)
    if conditions.evaluate(request.headers, src, prefix="x-oss-copy-source-") == conditions.NOT_MODIFIED:
        return None
    return src


def _exists(store: OssStore, bucket: str, key: str) -> bool:
    try:
        store.head(bucket, key)
    except OssError:
        return False
    return True


def copy_object(request: web.Request, store: OssStore, bucket: str, key: str) -> web.Response:
    src_bucket, src_key = _copy_source(request)
    src = _copy_conditions(request, store, src_bucket, src_key)
    if src is None:
        return _not_modified(store.follow(src_bucket, src_key)[0])
    if request.headers.get("x-oss-forbid-overwrite") == "true" and _exists(store, bucket, key):
        raise OssError(
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten.",
            "0026-00000002",
            Key=key,
        )
    directive = request.headers.get("x-oss-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("x-oss-metadata-directive", directive, "Unknown metadata directive.")
    replace = directive == "REPLACE"
    meta = store.copy(
        src_bucket,
        src_key,
        bucket,
        key,
        replace_meta=user_meta(request) if replace else None,
        content_type=request.headers.get("Content-Type"),
    )
    body = el("ETag", meta.etag) + el("LastModified", iso_date(meta.last_modified))
    return xml_response("CopyObjectResult", body, headers={"x-oss-hash-crc64ecma": str(meta.crc64), "ETag": meta.etag})


def _part_number(q: dict[str, str]) -> int:
    try:
        return int(q["partNumber"])
    except ValueError:
        raise invalid_argument("partNumber", q["partNumber"], "Part number must be an integer.") from None


async def upload_part_copy(
    request: web.Request, store: OssStore, bucket: str, key: str, q: dict[str, str]
) -> web.Response:
    number = _part_number(q)
    store.upload(bucket, key, q["uploadId"])
    src_bucket, src_key = _copy_source(request)
    src = _copy_conditions(request, store, src_bucket, src_key)
    if src is None:
        return _not_modified(store.follow(src_bucket, src_key)[0])
    byte_range = None
    raw = request.headers.get("x-oss-copy-source-range")
    if raw:
        byte_range = parse_range(raw, src.size)
        if byte_range is None:
            raise invalid_argument("x-oss-copy-source-range", raw, "The specified copy source range is not valid.")
    part = await store.upload_part_copy(bucket, key, q["uploadId"], number, src_bucket, src_key, byte_range)
    body = el("LastModified", iso_date(part.last_modified)) + el("ETag", part.etag)
    return xml_response("CopyPartResult", body, headers={"ETag": part.etag, "x-oss-hash-crc64ecma": str(part.crc64)})


async def append_object(
    request: web.Request, store: OssStore, bucket: str, key: str, q: dict[str, str]
) -> web.Response:
    if "position" not in q:
        raise OssError(400, "MissingArgument", "Missing Some Required Arguments.", "0016-00000501", Argument="position")
    try:
        position = int(q["position"])
        if position < 0:
            raise ValueError
    except ValueError:
        raise invalid_argument("position", q["position"], "Position must be a non-negative integer.") from None
    meta = await store.append(
        bucket,
        key,
        position,
        chunks(request),
        content_type=request.headers.get("Content-Type"),
        user_meta=user_meta(request),
    )
    return web.Response(
        status=200,
        headers={
            "ETag": meta.etag,
            "x-oss-next-append-position": str(meta.size),
            "x-oss-hash-crc64ecma": str(meta.crc64),
        },
    )


def put_symlink(request: web.Request, store: OssStore, bucket: str, key: str) -> web.Response:
    target = request.headers.get("x-oss-symlink-target")
    if not target:
        raise OssError(
            400, "MissingArgument", "Missing Some Required Arguments.", "0016-00000701", Argument="x-oss-symlink-target"
        )
    meta = store.put_symlink(
        bucket,
        key,
        unquote(target),
        user_meta=user_meta(request),
        forbid_overwrite=request.headers.get("x-oss-forbid-overwrite") == "true",
    )
    return web.Response(status=200, headers={"ETag": meta.etag})


def get_symlink(store: OssStore, bucket: str, key: str) -> web.Response:
    meta = store.symlink(bucket, key)
    headers = {
        # URL-encoded as SDKs send it (oss2 and aliyun-oss-rs decode it); "/" stays literal, so a reader that
        # does not decode (alibabacloud-oss-v2 GetSymlinkResult.target) still sees a path-like key as it is.
        "x-oss-symlink-target": quote(meta.symlink_target, safe="/"),
        "ETag": meta.etag,
        "Last-Modified": http_date(meta.last_modified),
        **{f"x-oss-meta-{k}": v for k, v in meta.user_meta.items()},
    }
    return web.Response(status=200, headers=headers)


def _parse_complete(raw: bytes) -> list[tuple[int, str]]:
    try:
        root = ET.fromstring(raw)
        parts = [(int(p.findtext("PartNumber", "")), p.findtext("ETag", "")) for p in root.iter("Part")]
    except (ET.ParseError, ValueError):
        raise malformed_xml() from None
    return parts


def _list_parts(store: OssStore, bucket: str, key: str, q: dict[str, str], url: bool) -> web.Response:
    max_parts = bounded_int(q, "max-parts", 1000, 1000)
    parts = store.list_parts(bucket, key, q["uploadId"])
    marker = int(q.get("part-number-marker") or 0)
    after = [p for p in parts if p.number > marker]
    page, truncated = after[:max_parts], len(after) > max_parts
    items = "".join(
        f"<Part>{el('PartNumber', p.number)}{el('LastModified', iso_date(p.last_modified))}"
        f"{el('ETag', p.etag)}{el('HashCrc64ecma', p.crc64)}{el('Size', p.size)}</Part>"
        for p in page
    )
    body = (
        el("Bucket", bucket)
        + el("Key", enc(key, url))
        + el("UploadId", q["uploadId"])
        + el("StorageClass", "Standard")
        + el("PartNumberMarker", marker)
        + el("NextPartNumberMarker", page[-1].number if page else marker)
        + el("MaxParts", max_parts)
        + el("IsTruncated", str(truncated).lower())
        + (el("EncodingType", "url") if url else "")
        + items
    )
    return xml_response("ListPartsResult", body)


async def _complete(request: web.Request, store: OssStore, bucket: str, key: str, q: dict[str, str]) -> web.Response:
    url = q.get("encoding-type") == "url"
    complete_all = request.headers.get("x-oss-complete-all", "").lower() == "yes"
    raw = await request.read()
    if complete_all and raw:
        raise invalid_argument(
            "x-oss-complete-all", "yes", "Should not specify both complete all header and http body."
        )
    meta = store.complete(bucket, key, q["uploadId"], None if complete_all else _parse_complete(raw))
    body = (
        (el("EncodingType", "url") if url else "")
        + el("Location", f"/{bucket}/{key}")
        + el("Bucket", bucket)
        + el("Key", enc(key, url))
        + el("ETag", meta.etag)
    )
    return xml_response(
        "CompleteMultipartUploadResult", body, headers={"ETag": meta.etag, "x-oss-hash-crc64ecma": str(meta.crc64)}
    )


async def object_request(
    request: web.Request, store: OssStore, bucket: str, key: str, q: dict[str, str]
) -> web.StreamResponse:
    m = request.method
    url = q.get("encoding-type") == "url"
    if m == "PUT" and "partNumber" in q and "uploadId" in q:
        if "x-oss-copy-source" in request.headers:
            return await upload_part_copy(request, store, bucket, key, q)
        part = await store.upload_part(
            bucket, key, q["uploadId"], _part_number(q), chunks(request), request.headers.get("Content-MD5")
        )
        return web.Response(
            status=200,
            headers={
                "ETag": part.etag,
                "x-oss-hash-crc64ecma": str(part.crc64),
                "Content-MD5": base64.b64encode(bytes.fromhex(part.etag.strip('"'))).decode(),
            },
        )
    if m == "PUT" and "symlink" in q:
        return put_symlink(request, store, bucket, key)
    if m == "GET" and "symlink" in q:
        return get_symlink(store, bucket, key)
    if m == "PUT" and "x-oss-copy-source" in request.headers:
        return copy_object(request, store, bucket, key)
    if m == "PUT" and not q:
        meta = await store.put(
            bucket,
            key,
            chunks(request),
            content_type=request.headers.get("Content-Type"),
            content_md5=request.headers.get("Content-MD5"),
            user_meta=user_meta(request),
            forbid_overwrite=request.headers.get("x-oss-forbid-overwrite") == "true",
        )
        return web.Response(
            status=200,
            headers={"ETag": meta.etag, "x-oss-hash-crc64ecma": str(meta.crc64), "Content-MD5": meta.content_md5},
        )
    if m == "POST" and "append" in q:
        return await append_object(request, store, bucket, key, q)
    if m == "POST" and "uploads" in q:
        up = store.initiate(bucket, key, request.headers.get("Content-Type"), user_meta(request))
        body = el("Bucket", bucket) + el("Key", enc(key, url)) + el("UploadId", up.upload_id)
        if url:
            body += el("EncodingType", "url")
        return xml_response("InitiateMultipartUploadResult", body)
    if m == "POST" and "uploadId" in q:
        return await _complete(request, store, bucket, key, q)
    if m == "GET" and "uploadId" in q:
        return _list_parts(store, bucket, key, q, url)
    if m == "DELETE" and "uploadId" in q:
        store.abort(bucket, key, q["uploadId"])
        return web.Response(status=204)
    if m == "DELETE" and not q:
        store.delete(bucket, key)
        return web.Response(status=204)
    if m == "HEAD" and "objectMeta" in q:
        meta, _ = store.follow(bucket, key)
        return web.Response(
            status=200,
            headers={
                "ETag": meta.etag,
                "Last-Modified": http_date(meta.last_modified),
                "Content-Length": str(meta.size),
                "x-oss-hash-crc64ecma": str(meta.crc64),
                "x-oss-last-access-time": http_date(meta.last_modified),
            },
        )
    if m in ("GET", "HEAD") and not (set(q) - set(_RESPONSE_OVERRIDES)):
        return await get_object(request, store, bucket, key, head=m == "HEAD")
    raise OssError(
        405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "0003-00000201"
    )
