"""The OSS wire: addressing, sub-resource dispatch, XML bodies, headers (reference §2.3-2.5).

Addressing: path style ``/bucket/key`` (what oss2 uses for IP/localhost endpoints), or virtual-host
style when the Host is ``<bucket>.<name>`` with a non-IP name. Keys come URL-encoded (oss2 encodes "/"
as %2F) and are decoded from the raw path.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from aiohttp import web

from ack_sandbox.admin import add_fault_routes
from ack_sandbox.alibaba_credentials import CredentialStore
from ack_sandbox.context import SandboxContext
from ack_sandbox.oss import auth
from ack_sandbox.oss.errors import OssError, invalid_argument, new_request_id
from ack_sandbox.oss.faults import OssFaults
from ack_sandbox.oss.store import ObjectMeta, OssStore

log = logging.getLogger("ack_sandbox.oss")

STORE = web.AppKey("oss_store", OssStore)
CREDS = web.AppKey("oss_creds", CredentialStore)
CTX = web.AppKey("oss_ctx", SandboxContext)
FAULTS = web.AppKey("oss_faults", OssFaults)

OWNER_ID = "1234567890123456"
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def iso_date(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _xml(root: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{body}</{root}>'


def _el(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _enc(value: str, url: bool) -> str:
    return quote(value, safe="") if url else value


def _owner() -> str:
    return f"<Owner>{_el('ID', OWNER_ID)}{_el('DisplayName', OWNER_ID)}</Owner>"


def _user_meta(request: web.Request) -> dict[str, str]:
    return {
        k.lower()[len("x-oss-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-oss-meta-")
    }


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


def _object_headers(meta: ObjectMeta) -> dict[str, str]:
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
    headers.update({f"x-oss-meta-{k}": v for k, v in meta.user_meta.items()})
    return headers


def split_target(request: web.Request) -> tuple[str, str]:
    """(bucket, key) from Host + raw path, supporting path and virtual-host style."""
    raw_path = request.raw_path.split("?", 1)[0]
    host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") else ""
    vhost_bucket = ""
    if host and host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if "." in host:
                vhost_bucket = host.split(".", 1)[0]
    if vhost_bucket:
        return vhost_bucket, unquote(raw_path[1:])
    bucket, _, key = raw_path[1:].partition("/")
    return unquote(bucket), unquote(key)


# ---------------------------------------------------------------------------- service / bucket
def list_buckets(store: OssStore, q: dict[str, str]) -> web.Response:
    buckets = store.list_buckets(q.get("prefix", ""))
    items = "".join(
        f"<Bucket>{_el('CreationDate', iso_date(b.created))}{_el('ExtranetEndpoint', '127.0.0.1')}"
        f"{_el('IntranetEndpoint', '127.0.0.1')}{_el('Location', b.location)}{_el('Name', b.name)}"
        f"{_el('Region', store.region)}{_el('StorageClass', b.storage_class)}</Bucket>"
        for b in buckets
    )
    body = _xml(
        "ListAllMyBucketsResult",
        f"{_el('Prefix', q.get('prefix', ''))}{_el('Marker', '')}"
        f"{_el('MaxKeys', 100)}{_el('IsTruncated', 'false')}{_owner()}<Buckets>{items}</Buckets>",
    )
    return web.Response(text=body, content_type="application/xml")


def bucket_info(store: OssStore, bucket: str) -> web.Response:
    b = store.bucket(bucket)
    body = _xml(
        "BucketInfo",
        "<Bucket>"
        + "".join(
            [
                _el("AccessMonitor", "Disabled"),
                _el("CreationDate", iso_date(b.created)),
                _el("ExtranetEndpoint", "127.0.0.1"),
                _el("IntranetEndpoint", "127.0.0.1"),
                _el("Location", b.location),
                _el("StorageClass", b.storage_class),
                _el("TransferAcceleration", "Disabled"),
                _el("CrossRegionReplication", "Disabled"),
                _el("Name", b.name),
                _el("ResourceGroupId", "rg-default"),
                _owner(),
                f"<AccessControlList>{_el('Grant', b.acl)}</AccessControlList>",
                f"<ServerSideEncryptionRule>{_el('SSEAlgorithm', 'None')}</ServerSideEncryptionRule>",
                f"<BucketPolicy>{_el('LogBucket', '')}{_el('LogPrefix', '')}</BucketPolicy>",
                _el("DataRedundancyType", "LRS"),
                _el("Versioning", ""),
            ]
        )
        + "</Bucket>",
    )
    return web.Response(text=body, content_type="application/xml")


def bucket_acl(store: OssStore, bucket: str) -> web.Response:
    b = store.bucket(bucket)
    body = _xml("AccessControlPolicy", f"{_owner()}<AccessControlList>{_el('Grant', b.acl)}</AccessControlList>")
    return web.Response(text=body, content_type="application/xml")


def _max(q: dict[str, str], name: str, default: int, hi: int) -> int:
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


def list_objects(store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    v2 = q.get("list-type") == "2"
    url = q.get("encoding-type") == "url"
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    max_keys = _max(q, "max-keys", 100, 1000)
    if v2:
        token = q.get("continuation-token", "")
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode() if token else q.get("start-after", "")
        except (ValueError, UnicodeDecodeError):
            raise invalid_argument("continuation-token", token, "The continuation token is not valid.") from None
    else:
        after = q.get("marker", "")
    objects, prefixes, truncated, next_marker = store.list(
        bucket, prefix=prefix, start_after=after, delimiter=delimiter, max_keys=max_keys
    )
    fetch_owner = (not v2) or q.get("fetch-owner") == "true"
    contents = "".join(
        f"<Contents>{_el('Key', _enc(o.key, url))}{_el('LastModified', iso_date(o.last_modified))}"
        f"{_el('ETag', o.etag)}{_el('Type', o.object_type)}{_el('Size', o.size)}"
        f"{_el('StorageClass', o.storage_class)}{_owner() if fetch_owner else ''}</Contents>"
        for o in objects
    )
    common = "".join(f"<CommonPrefixes>{_el('Prefix', _enc(p, url))}</CommonPrefixes>" for p in prefixes)
    head = _el("Name", bucket) + _el("Prefix", _enc(prefix, url))
    if v2:
        head += _el("StartAfter", _enc(q.get("start-after", ""), url)) if "start-after" in q else ""
        head += _el("ContinuationToken", q["continuation-token"]) if q.get("continuation-token") else ""
        head += _el("MaxKeys", max_keys) + _el("Delimiter", _enc(delimiter, url))
        head += _el("IsTruncated", str(truncated).lower())
        if truncated:
            head += _el("NextContinuationToken", base64.urlsafe_b64encode(next_marker.encode()).decode())
        head += _el("KeyCount", len(objects) + len(prefixes))
    else:
        head += _el("Marker", _enc(after, url)) + _el("MaxKeys", max_keys) + _el("Delimiter", _enc(delimiter, url))
        head += _el("IsTruncated", str(truncated).lower())
        if truncated:
            head += _el("NextMarker", _enc(next_marker, url))
    if url:
        head += _el("EncodingType", "url")
    return web.Response(text=_xml("ListBucketResult", head + contents + common), content_type="application/xml")


def list_uploads(store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    url = q.get("encoding-type") == "url"
    uploads = store.list_uploads(bucket, q.get("prefix", ""))
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    if key_marker:
        uploads = [
            u for u in uploads if u.key > key_marker or (u.key == key_marker and id_marker and u.upload_id > id_marker)
        ]
    max_uploads = _max(q, "max-uploads", 1000, 1000)
    page, truncated = uploads[:max_uploads], len(uploads) > max_uploads
    items = "".join(
        f"<Upload>{_el('Key', _enc(u.key, url))}{_el('UploadId', u.upload_id)}"
        f"{_el('StorageClass', 'Standard')}{_el('Initiated', iso_date(u.initiated))}</Upload>"
        for u in page
    )
    body = (
        _el("Bucket", bucket)
        + _el("KeyMarker", _enc(key_marker, url))
        + _el("UploadIdMarker", id_marker)
        + _el("NextKeyMarker", _enc(page[-1].key if truncated else "", url))
        + _el("NextUploadIdMarker", page[-1].upload_id if truncated else "")
        + _el("Delimiter", q.get("delimiter", ""))
        + _el("Prefix", _enc(q.get("prefix", ""), url))
        + _el("MaxUploads", max_uploads)
        + _el("IsTruncated", str(truncated).lower())
        + (_el("EncodingType", "url") if url else "")
        + items
    )
    return web.Response(text=_xml("ListMultipartUploadsResult", body), content_type="application/xml")


async def bucket_request(request: web.Request, store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    m = request.method
    if m == "PUT" and not (set(q) - {"x-oss-resource-group"}):
        storage_class = "Standard"
        raw = await request.read()
        if raw:
            try:
                node = ET.fromstring(raw).find("StorageClass")
            except ET.ParseError:
                raise OssError(
                    400, "MalformedXML", "The XML you provided was not well-formed.", "0015-00000204"
                ) from None
            storage_class = node.text if node is not None and node.text else storage_class
        store.create_bucket(bucket, request.headers.get("x-oss-acl", "private"), storage_class)
        return web.Response(status=200, headers={"Location": f"/{bucket}"})
    if m == "DELETE" and not q:
        store.delete_bucket(bucket)
        return web.Response(status=204)
    if m == "GET":
        if "bucketInfo" in q:
            return bucket_info(store, bucket)
        if "acl" in q:
            return bucket_acl(store, bucket)
        if "location" in q:
            b = store.bucket(bucket)
            return web.Response(text=_xml("LocationConstraint", escape(b.location)), content_type="application/xml")
        if "uploads" in q:
            return list_uploads(store, bucket, q)
        if "stat" in q:
            b = store.bucket(bucket)
            objs = store.objects[b.name]
            return web.Response(
                text=_xml(
                    "BucketStat",
                    _el("Storage", sum(o.size for o in objs.values()))
                    + _el("ObjectCount", len(objs))
                    + _el("MultipartUploadCount", len(store.list_uploads(bucket))),
                ),
                content_type="application/xml",
            )
        return list_objects(store, bucket, q)
    if m == "HEAD":
        store.bucket(bucket)
        return web.Response(status=200)
    raise OssError(
        405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "0003-00000201"
    )


# ---------------------------------------------------------------------------- objects
def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    m = _RANGE_RE.match(value.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


async def get_object(request: web.Request, store: OssStore, bucket: str, key: str, head: bool) -> web.StreamResponse:
    meta = store.head(bucket, key)
    headers = _object_headers(meta)
    if head:
        return web.Response(status=200, headers={**headers, "Content-Length": str(meta.size)})
    rng = request.headers.get("Range")
    start, end, status = 0, meta.size - 1, 200
    if rng:
        parsed = _parse_range(rng, meta.size)
        if parsed is not None:
            start, end, status = parsed[0], parsed[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{meta.size}"
        elif request.headers.get("x-oss-range-behavior") == "standard":
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.", "0026-00000206")
        # OSS (non-standard behaviour) ignores an invalid range and returns the whole object.
    for h in ("response-content-type", "response-content-disposition", "response-cache-control"):
        if h in request.query:
            headers[h[len("response-") :].title()] = request.query[h]
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start + 1 if meta.size else 0
    await resp.prepare(request)
    if meta.size:
        with open(store.object_path(bucket, key), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    break
                left -= len(chunk)
                await resp.write(chunk)
    await resp.write_eof()
    return resp


def _parse_complete(raw: bytes) -> list[tuple[int, str]]:
    try:
        root = ET.fromstring(raw)
        parts = [(int(p.findtext("PartNumber", "")), p.findtext("ETag", "")) for p in root.iter("Part")]
    except (ET.ParseError, ValueError):
        raise OssError(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
            "0042-00000204",
        ) from None
    return parts


async def object_request(
    request: web.Request, store: OssStore, bucket: str, key: str, q: dict[str, str]
) -> web.StreamResponse:
    m = request.method
    url = q.get("encoding-type") == "url"
    if m == "PUT" and "partNumber" in q and "uploadId" in q:
        try:
            number = int(q["partNumber"])
        except ValueError:
            raise invalid_argument("partNumber", q["partNumber"], "Part number must be an integer.") from None
        part = await store.upload_part(
            bucket, key, q["uploadId"], number, _chunks(request), request.headers.get("Content-MD5")
        )
        return web.Response(
            status=200,
            headers={
                "ETag": part.etag,
                "x-oss-hash-crc64ecma": str(part.crc64),
                "Content-MD5": base64.b64encode(bytes.fromhex(part.etag.strip('"'))).decode(),
            },
        )
    if m == "PUT" and "x-oss-copy-source" in request.headers:
        src = unquote(request.headers["x-oss-copy-source"]).lstrip("/")
        src_bucket, _, src_key = src.partition("/")
        replace = request.headers.get("x-oss-metadata-directive", "COPY").upper() == "REPLACE"
        meta = store.copy(
            src_bucket,
            src_key,
            bucket,
            key,
            replace_meta=_user_meta(request) if replace else None,
            content_type=request.headers.get("Content-Type"),
        )
        body = _xml("CopyObjectResult", _el("ETag", meta.etag) + _el("LastModified", iso_date(meta.last_modified)))
        return web.Response(
            text=body,
            content_type="application/xml",
            headers={"x-oss-hash-crc64ecma": str(meta.crc64), "ETag": meta.etag},
        )
    if m == "PUT" and not q:
        meta = await store.put(
            bucket,
            key,
            _chunks(request),
            content_type=request.headers.get("Content-Type"),
            content_md5=request.headers.get("Content-MD5"),
            user_meta=_user_meta(request),
            forbid_overwrite=request.headers.get("x-oss-forbid-overwrite") == "true",
        )
        return web.Response(
            status=200,
            headers={"ETag": meta.etag, "x-oss-hash-crc64ecma": str(meta.crc64), "Content-MD5": meta.content_md5},
        )
    if m == "POST" and "uploads" in q:
        up = store.initiate(bucket, key, request.headers.get("Content-Type"), _user_meta(request))
        body = _el("Bucket", bucket) + _el("Key", _enc(key, url)) + _el("UploadId", up.upload_id)
        if url:
            body += _el("EncodingType", "url")
        return web.Response(text=_xml("InitiateMultipartUploadResult", body), content_type="application/xml")
    if m == "POST" and "uploadId" in q:
        complete_all = request.headers.get("x-oss-complete-all", "").lower() == "yes"
        raw = await request.read()
        if complete_all and raw:
            raise invalid_argument(
                "x-oss-complete-all", "yes", "Should not specify both complete all header and http body."
            )
        meta = store.complete(bucket, key, q["uploadId"], None if complete_all else _parse_complete(raw))
        body = (
            (_el("EncodingType", "url") if url else "")
            + _el("Location", f"/{bucket}/{key}")
            + _el("Bucket", bucket)
            + _el("Key", _enc(key, url))
            + _el("ETag", meta.etag)
        )
        return web.Response(
            text=_xml("CompleteMultipartUploadResult", body),
            content_type="application/xml",
            headers={"ETag": meta.etag, "x-oss-hash-crc64ecma": str(meta.crc64)},
        )
    if m == "GET" and "uploadId" in q:
        parts = store.list_parts(bucket, key, q["uploadId"])
        marker = int(q.get("part-number-marker") or 0)
        max_parts = _max(q, "max-parts", 1000, 1000)
        after = [p for p in parts if p.number > marker]
        page, truncated = after[:max_parts], len(after) > max_parts
        items = "".join(
            f"<Part>{_el('PartNumber', p.number)}{_el('LastModified', iso_date(p.last_modified))}"
            f"{_el('ETag', p.etag)}{_el('HashCrc64ecma', p.crc64)}{_el('Size', p.size)}</Part>"
            for p in page
        )
        body = (
            _el("Bucket", bucket)
            + _el("Key", _enc(key, url))
            + _el("UploadId", q["uploadId"])
            + _el("StorageClass", "Standard")
            + _el("PartNumberMarker", marker)
            + _el("NextPartNumberMarker", page[-1].number if page else marker)
            + _el("MaxParts", max_parts)
            + _el("IsTruncated", str(truncated).lower())
            + (_el("EncodingType", "url") if url else "")
            + items
        )
        return web.Response(text=_xml("ListPartsResult", body), content_type="application/xml")
    if m == "DELETE" and "uploadId" in q:
        store.abort(bucket, key, q["uploadId"])
        return web.Response(status=204)
    if m == "DELETE" and not q:
        store.delete(bucket, key)
        return web.Response(status=204)
    if m == "HEAD" and "objectMeta" in q:
        meta = store.head(bucket, key)
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
    if m in ("GET", "HEAD") and not (
        set(q) - {"response-content-type", "response-content-disposition", "response-cache-control"}
    ):
        return await get_object(request, store, bucket, key, head=m == "HEAD")
    raise OssError(
        405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "0003-00000201"
    )


# ---------------------------------------------------------------------------- entry point
def _error(request: web.Request, err: OssError, request_id: str, bucket: str) -> web.Response:
    host_id = f"{bucket}.{request.host}" if bucket else (request.host or "")
    xml = err.xml(request_id, host_id)
    headers = {"x-oss-request-id": request_id, "x-oss-ec": err.ec, "Server": "AliyunOSS"}
    if request.method == "HEAD":
        headers["x-oss-err"] = base64.b64encode(xml.encode()).decode()
        return web.Response(status=err.status, headers=headers)
    return web.Response(status=err.status, text=xml, content_type="application/xml", headers=headers)


def _action(method: str, bucket: str, key: str, q: dict[str, str]) -> str:
    """An OSS API name for fault matching (e.g. PutObject, UploadPart, CompleteMultipartUpload)."""
    if not bucket:
        return "ListBuckets"
    if not key:
        return {"PUT": "PutBucket", "DELETE": "DeleteBucket"}.get(method, "GetBucket")
    if "partNumber" in q:
        return "UploadPart"
    if "uploads" in q:
        return "InitiateMultipartUpload"
    if "uploadId" in q:
        return {"POST": "CompleteMultipartUpload", "GET": "ListParts", "DELETE": "AbortMultipartUpload"}[method]
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


async def handle(request: web.Request) -> web.StreamResponse:
    request_id = new_request_id()
    request["oss_request_id"] = request_id
    store = request.app[STORE]
    bucket, key = split_target(request)
    q = {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in request.query_string.split("&") if p)}
    try:
        auth.verify(request.method, bucket, key, request.query_string, request.headers, request.app[CREDS])
        request.app[FAULTS].check(_action(request.method, bucket, key, q))
        if not bucket:
            if request.method != "GET":
                raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.", "0003-00000201")
            resp: web.StreamResponse = list_buckets(store, q)
        elif not key:
            resp = await bucket_request(request, store, bucket, q)
        else:
            resp = await object_request(request, store, bucket, key, q)
    except OssError as err:
        log.info("%s %s/%s -> %s %s", request.method, bucket, key, err.status, err.code)
        return _error(request, err, request_id, bucket)
    except Exception:
        log.exception("OSS %s %s failed", request.method, request.path)
        return _error(
            request,
            OssError(500, "InternalError", "We encountered an internal error. Please try again.", "0001-00000001"),
            request_id,
            bucket,
        )
    return resp


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every OSS response carries ``x-oss-request-id`` (oss2 exposes it as ``.request_id``)."""
    response.headers.setdefault("x-oss-request-id", request.get("oss_request_id") or new_request_id())
    response.headers.setdefault("Server", "AliyunOSS")


# ---------------------------------------------------------------------------- sandbox admin
def add_routes(app: web.Application) -> None:
    add_fault_routes(app, FAULTS, CTX)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_response_prepare.append(on_prepare)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
