"""The OSS wire: addressing, sub-resource dispatch, service and bucket requests, errors (reference §2.3-2.5).

Addressing: path style ``/bucket/key`` (what oss2 uses for IP/localhost endpoints), or virtual-host
style when the Host is ``<bucket>.<name>`` with a non-IP name. Keys come URL-encoded (oss2 encodes "/"
as %2F) and are decoded from the raw path. Object requests are ``object_handlers.py``; what is served and
what is not: ``README.md`` beside this file.

Every answer carries ``x-oss-request-id`` and ``Server: AliyunOSS``; errors are OSS's ``<Error>`` XML
(``errors.py``) with ``x-oss-ec``, and for HEAD the same XML base64-encoded in ``x-oss-err``. Bucket requests:
PutBucket, DeleteBucket, GetBucket (ListObjects v1 / ListObjectsV2: prefix, delimiter, marker / start-after /
continuation-token, max-keys, encoding-type, fetch-owner), GetBucketInfo (Extranet/IntranetEndpoint are this
server's ``host:port``, so a client built from them connects), GetBucketAcl, GetBucketLocation, GetBucketStat,
ListMultipartUploads (ordered by key then upload id = initiation; key-marker / upload-id-marker, delimiter),
DeleteMultipleObjects (``POST /?delete``: Content-MD5 required and checked, Quiet mode, ``encoding-type=url``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from urllib.parse import unquote
from xml.sax.saxutils import escape

from aiohttp import web

from ack_sandbox.admin import add_fault_routes
from ack_sandbox.alibaba_credentials import CredentialStore
from ack_sandbox.context import SandboxContext
from ack_sandbox.oss import auth
from ack_sandbox.oss.errors import OssError, invalid_argument, malformed_xml, new_request_id
from ack_sandbox.oss.faults import OssFaults
from ack_sandbox.oss.object_handlers import object_request
from ack_sandbox.oss.store import OssStore
from ack_sandbox.oss.wire import bounded_int, el, enc, iso_date, owner, xml

log = logging.getLogger("ack_sandbox.oss")

STORE = web.AppKey("oss_store", OssStore)
CREDS = web.AppKey("oss_creds", CredentialStore)
CTX = web.AppKey("oss_ctx", SandboxContext)
FAULTS = web.AppKey("oss_faults", OssFaults)

MAX_DELETE_KEYS = 1000
_LIST_PARAMS = frozenset(
    [
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "encoding-type",
        "list-type",
        "continuation-token",
        "start-after",
        "fetch-owner",
    ]
)


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
def endpoint(request: web.Request) -> str:
    """``host:port`` of this OSS server as a client must dial it (OSS answers ``oss-cn-beijing.aliyuncs.com``;
    here the endpoint has a port, and without it a client built from GetBucketInfo could not connect)."""
    configured = request.app[CTX].endpoints.get("oss", "")
    if configured:
        return configured.split("://", 1)[-1].rstrip("/")
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return f"{sock[0]}:{sock[1]}" if sock else (request.host or "127.0.0.1")


def list_buckets(request: web.Request, store: OssStore, q: dict[str, str]) -> web.Response:
    buckets = store.list_buckets(q.get("prefix", ""))
    ep = endpoint(request)
    items = "".join(
        f"<Bucket>{el('CreationDate', iso_date(b.created))}{el('ExtranetEndpoint', ep)}"
        f"{el('IntranetEndpoint', ep)}{el('Location', b.location)}{el('Name', b.name)}"
        f"{el('Region', store.region)}{el('StorageClass', b.storage_class)}</Bucket>"
        for b in buckets
    )
    body = xml(
        "ListAllMyBucketsResult",
        f"{el('Prefix', q.get('prefix', ''))}{el('Marker', '')}"
        f"{el('MaxKeys', 100)}{el('IsTruncated', 'false')}{owner()}<Buckets>{items}</Buckets>",
    )
    return web.Response(text=body, content_type="application/xml")


def bucket_info(request: web.Request, store: OssStore, bucket: str) -> web.Response:
    b = store.bucket(bucket)
    ep = endpoint(request)
    body = xml(
        "BucketInfo",
        "<Bucket>"
        + "".join(
            [
                el("AccessMonitor", "Disabled"),
                el("CreationDate", iso_date(b.created)),
                el("ExtranetEndpoint", ep),
                el("IntranetEndpoint", ep),
                el("Location", b.location),
                el("StorageClass", b.storage_class),
                el("TransferAcceleration", "Disabled"),
                el("CrossRegionReplication", "Disabled"),
                el("Name", b.name),
                el("ResourceGroupId", "rg-default"),
                owner(),
                f"<AccessControlList>{el('Grant', b.acl)}</AccessControlList>",
                f"<ServerSideEncryptionRule>{el('SSEAlgorithm', 'None')}</ServerSideEncryptionRule>",
                f"<BucketPolicy>{el('LogBucket', '')}{el('LogPrefix', '')}</BucketPolicy>",
                el("DataRedundancyType", "LRS"),
                el("Versioning", ""),
            ]
        )
        + "</Bucket>",
    )
    return web.Response(text=body, content_type="application/xml")


def bucket_acl(store: OssStore, bucket: str) -> web.Response:
    b = store.bucket(bucket)
    body = xml("AccessControlPolicy", f"{owner()}<AccessControlList>{el('Grant', b.acl)}</AccessControlList>")
    return web.Response(text=body, content_type="application/xml")


def list_objects(store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    v2 = q.get("list-type") == "2"
    url = q.get("encoding-type") == "url"
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    max_keys = bounded_int(q, "max-keys", 100, 1000)
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
        f"<Contents>{el('Key', enc(o.key, url))}{el('LastModified', iso_date(o.last_modified))}"
        f"{el('ETag', o.etag)}{el('Type', o.object_type)}{el('Size', o.size)}"
        f"{el('StorageClass', o.storage_class)}{owner() if fetch_owner else ''}</Contents>"
        for o in objects
    )
    common = "".join(f"<CommonPrefixes>{el('Prefix', enc(p, url))}</CommonPrefixes>" for p in prefixes)
    head = el("Name", bucket) + el("Prefix", enc(prefix, url))
    if v2:
        head += el("StartAfter", enc(q.get("start-after", ""), url)) if "start-after" in q else ""
        head += el("ContinuationToken", q["continuation-token"]) if q.get("continuation-token") else ""
        head += el("MaxKeys", max_keys) + el("Delimiter", enc(delimiter, url))
        head += el("IsTruncated", str(truncated).lower())
        if truncated:
            head += el("NextContinuationToken", base64.urlsafe_b64encode(next_marker.encode()).decode())
        head += el("KeyCount", len(objects) + len(prefixes))
    else:
        head += el("Marker", enc(after, url)) + el("MaxKeys", max_keys) + el("Delimiter", enc(delimiter, url))
        head += el("IsTruncated", str(truncated).lower())
        if truncated:
            head += el("NextMarker", enc(next_marker, url))
    if url:
        head += el("EncodingType", "url")
    return web.Response(text=xml("ListBucketResult", head + contents + common), content_type="application/xml")


def list_uploads(store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    url = q.get("encoding-type") == "url"
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    max_uploads = bounded_int(q, "max-uploads", 1000, 1000)
    uploads, prefixes, truncated = store.list_uploads_page(
        bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=id_marker if key_marker else "",
        max_uploads=max_uploads,
    )
    next_key, next_id = "", ""
    if truncated:
        last_up = uploads[-1] if uploads else None
        last_prefix = prefixes[-1] if prefixes else ""
        if last_up is not None and last_up.key >= last_prefix:
            next_key, next_id = last_up.key, last_up.upload_id
        else:
            next_key = last_prefix
    items = "".join(
        f"<Upload>{el('Key', enc(u.key, url))}{el('UploadId', u.upload_id)}"
        f"{el('StorageClass', 'Standard')}{el('Initiated', iso_date(u.initiated))}</Upload>"
        for u in uploads
    )
    common = "".join(f"<CommonPrefixes>{el('Prefix', enc(p, url))}</CommonPrefixes>" for p in prefixes)
    body = (
        el("Bucket", bucket)
        + el("KeyMarker", enc(key_marker, url))
        + el("UploadIdMarker", id_marker)
        + el("NextKeyMarker", enc(next_key, url))
        + el("NextUploadIdMarker", next_id)
        + el("Delimiter", enc(delimiter, url))
        + el("Prefix", enc(prefix, url))
        + el("MaxUploads", max_uploads)
        + el("IsTruncated", str(truncated).lower())
        + (el("EncodingType", "url") if url else "")
        + items
        + common
    )
    return web.Response(text=xml("ListMultipartUploadsResult", body), content_type="application/xml")


_CONTROL = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r")
_SHIELD = str.maketrans({c: chr(0xE000 + ord(c)) for c in _CONTROL})
_UNSHIELD = str.maketrans({chr(0xE000 + ord(c)): c for c in _CONTROL})


def _shield_control_chars(raw: bytes) -> str:
    """Keys may hold control characters XML 1.0 cannot carry (oss2 sends them raw, OSS accepts them): park them
    in the Private Use Area for the parser, ``_unshield`` puts them back."""
    return raw.decode("utf-8").translate(_SHIELD)


def _unshield(text: str) -> str:
    return text.translate(_UNSHIELD)


async def delete_objects(request: web.Request, store: OssStore, bucket: str, q: dict[str, str]) -> web.Response:
    """DeleteMultipleObjects: at most 1000 keys; Content-MD5 is required (OSS 0016-00000606) and must match."""
    raw = await request.read()
    md5 = request.headers.get("Content-MD5")
    if not md5:
        raise OssError(
            400, "MissingArgument", "Missing Some Required Arguments.", "0016-00000606", Argument="Content-MD5"
        )
    calculated = base64.b64encode(hashlib.md5(raw).digest()).decode()
    if md5 != calculated:
        raise OssError(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
            "0016-00000402",
            CalculatedDigest=calculated,
        )
    try:
        root = ET.fromstring(_shield_control_chars(raw))
    except (ET.ParseError, UnicodeDecodeError):
        raise malformed_xml() from None
    if root.tag != "Delete":
        raise malformed_xml()
    quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
    keys = [_unshield(obj.findtext("Key") or "") for obj in root.findall("Object")]
    if not keys or len(keys) > MAX_DELETE_KEYS:
        raise malformed_xml()
    store.bucket(bucket)
    for key in keys:
        if not key:
            raise invalid_argument("Key", key, "The object key must not be empty.")
    deleted = store.delete_many(bucket, keys)
    url = q.get("encoding-type") == "url"
    body = "" if quiet else "".join(f"<Deleted>{el('Key', enc(k, url))}</Deleted>" for k in deleted)
    if url:
        body = el("EncodingType", "url") + body
    return web.Response(text=xml("DeleteResult", body), content_type="application/xml")


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
    if m == "POST" and "delete" in q:
        return await delete_objects(request, store, bucket, q)
    if m == "GET":
        if "bucketInfo" in q:
            return bucket_info(request, store, bucket)
        if "acl" in q:
            return bucket_acl(store, bucket)
        if "location" in q:
            b = store.bucket(bucket)
            return web.Response(text=xml("LocationConstraint", escape(b.location)), content_type="application/xml")
        if "uploads" in q:
            return list_uploads(store, bucket, q)
        if "stat" in q:
            b = store.bucket(bucket)
            objs = store.objects[b.name]
            return web.Response(
                text=xml(
                    "BucketStat",
                    el("Storage", sum(o.size for o in objs.values()))
                    + el("ObjectCount", len(objs))
                    + el("MultipartUploadCount", len(store.list_uploads(bucket))),
                ),
                content_type="application/xml",
            )
        if set(q) - _LIST_PARAMS:  # a bucket sub-resource this sandbox does not serve (lifecycle, cors, ...)
            raise OssError(
                405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "0003-00000201"
            )
        return list_objects(store, bucket, q)
    if m == "HEAD":
        store.bucket(bucket)
        return web.Response(status=200)
    raise OssError(
        405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "0003-00000201"
    )


# ---------------------------------------------------------------------------- entry point
def _error(request: web.Request, err: OssError, request_id: str, bucket: str) -> web.Response:
    host_id = f"{bucket}.{request.host}" if bucket else (request.host or "")
    xml = err.xml(request_id, host_id)
    headers = {**err.headers, "x-oss-request-id": request_id, "x-oss-ec": err.ec, "Server": "AliyunOSS"}
    if request.method == "HEAD":
        headers["x-oss-err"] = base64.b64encode(xml.encode()).decode()
        return web.Response(status=err.status, headers=headers)
    return web.Response(status=err.status, text=xml, content_type="application/xml", headers=headers)


def _action(method: str, bucket: str, key: str, q: dict[str, str], copy: bool = False) -> str:
    """An OSS API name for fault matching (e.g. PutObject, UploadPart, CompleteMultipartUpload)."""
    if not bucket:
        return "ListBuckets"
    if not key and "delete" in q and method == "POST":
        return "DeleteMultipleObjects"
    if not key:
        return {"PUT": "PutBucket", "DELETE": "DeleteBucket"}.get(method, "GetBucket")
    if "partNumber" in q:
        return "UploadPartCopy" if copy else "UploadPart"
    if "append" in q:
        return "AppendObject"
    if "symlink" in q:
        return {"PUT": "PutSymlink", "GET": "GetSymlink"}.get(method, method)
    if "uploads" in q:
        return "InitiateMultipartUpload"
    if "uploadId" in q:
        return {"POST": "CompleteMultipartUpload", "GET": "ListParts", "DELETE": "AbortMultipartUpload"}[method]
    if method == "PUT" and copy:
        return "CopyObject"
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


async def handle(request: web.Request) -> web.StreamResponse:
    request_id = new_request_id()
    request["oss_request_id"] = request_id
    store = request.app[STORE]
    bucket, key = split_target(request)
    q = {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in request.query_string.split("&") if p)}
    try:
        caller = auth.verify(
            request.method, bucket, key, request.query_string, request.headers, request.app[CREDS], store.region
        )
        q = {k: v for k, v in q.items() if k not in auth.QUERY_AUTH_PARAMS}  # a presigned URL's own parameters
        copy = "x-oss-copy-source" in request.headers
        auth.authorize(request.app[CREDS], caller, _action(request.method, bucket, key, q, copy), bucket, key, q)
        request.app[FAULTS].check(_action(request.method, bucket, key, q, copy), bucket or None)
        if not bucket:
            if request.method != "GET":
                raise OssError(405, "MethodNotAllowed", "The specified method is not allowed.", "0003-00000201")
            resp: web.StreamResponse = list_buckets(request, store, q)
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
    response.headers["Server"] = "AliyunOSS"


# ---------------------------------------------------------------------------- sandbox admin
def add_routes(app: web.Application) -> None:
    add_fault_routes(app, FAULTS, CTX)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_response_prepare.append(on_prepare)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
