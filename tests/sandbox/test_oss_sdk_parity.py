"""The sandbox's OSS answers oss2 as OSS does (issue 16): presigned URLs (V1 and V4, GET and PUT, expiry), batch
delete, append, symlinks, conditional GET/HEAD/copy, CopyObject and UploadPartCopy with ranges, a client built from
GetBucketInfo's endpoint, ListMultipartUploads' order, listing, GZIP. Real oss2 over real HTTP against the session
sandbox; one bucket per module.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from email.utils import formatdate
from pathlib import Path

import oss2
import pytest
import requests

from ack_sandbox.oss.crc64 import crc64

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth(sandbox: dict) -> oss2.Auth:
    return oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"])


@pytest.fixture(scope="module")
def bucket(sandbox: dict, auth: oss2.Auth) -> oss2.Bucket:
    b = oss2.Bucket(auth, sandbox["oss"], "parity-" + secrets.token_hex(5))
    b.create_bucket()
    return b


@pytest.fixture(scope="module")
def v4_bucket(sandbox: dict, bucket: oss2.Bucket) -> oss2.Bucket:
    return oss2.Bucket(
        oss2.AuthV4(sandbox["access_key_id"], sandbox["access_key_secret"]),
        sandbox["oss"],
        bucket.bucket_name,
        region=sandbox["region"],
    )


def signed_raw(sandbox: dict, auth: oss2.Auth, method: str, bucket: str, params: dict, body: bytes, headers: dict):
    """A request oss2's own V1 signer signs but the SDK has no call for (a missing or wrong Content-MD5)."""
    req = oss2.http.Request(method, f"{sandbox['oss']}/{bucket}/", data=body, params=params, headers=headers)
    auth._sign_request(req, bucket, "")
    return requests.request(method, req.url, params=params, data=body, headers=dict(req.headers), timeout=10)


# ---------------------------------------------------------------------------- presigned URLs
@pytest.mark.parametrize("version", ["v1", "v4"])
def test_presigned_get_and_put(bucket: oss2.Bucket, v4_bucket: oss2.Bucket, version: str) -> None:
    b = bucket if version == "v1" else v4_bucket
    key = f"presigned/{version}/model weights+1.bin"
    data = os.urandom(2048)
    b.put_object(key, data)
    url = b.sign_url("GET", key, 60)
    if version == "v1":
        assert "OSSAccessKeyId=" in url and "Expires=" in url and "Signature=" in url
    else:
        assert "x-oss-signature-version=OSS4-HMAC-SHA256" in url and "x-oss-credential=" in url
        assert "x-oss-date=" in url and "x-oss-expires=60" in url and "x-oss-signature=" in url
    with urllib.request.urlopen(url, timeout=10) as resp:  # no SDK: the URL alone is the credential
        assert resp.status == 200 and resp.read() == data
        assert int(resp.headers["x-oss-hash-crc64ecma"]) == crc64(data) and resp.headers["x-oss-request-id"]
    assert b.get_object_with_url(url).read() == data
    ranged = b.get_object_with_url(b.sign_url("GET", key, 60), byte_range=(10, 19))
    assert ranged.status == 206 and ranged.read() == data[10:20]

    put_key = f"presigned/{version}/upload.txt"
    headers = {"Content-Type": "text/plain"}
    put_url = b.sign_url("PUT", put_key, 60, headers=headers)
    put = b.put_object_with_url(put_url, b"uploaded by URL", headers=headers)
    assert put.status == 200 and put.crc == crc64(b"uploaded by URL")
    meta = b.head_object(put_key)
    assert meta.content_type == "text/plain" and meta.content_length == len(b"uploaded by URL")
    # A URL signed for GET does not PUT, and a tampered signature is refused.
    with pytest.raises(oss2.exceptions.OssError) as err:
        b.put_object_with_url(url, b"overwrite")
    assert (err.value.status, err.value.code) == (403, "SignatureDoesNotMatch")


def test_presigned_url_with_sts_credentials(sandbox: dict, bucket: oss2.Bucket) -> None:
    req = urllib.request.Request(
        sandbox["cs"] + "/_sandbox/sts",
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Bearer {sandbox['access_key_id']}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        cred = json.loads(resp.read())["Credentials"]
    bucket.put_object("presigned/sts", b"temporary")
    for auth_version in (oss2.AUTH_VERSION_1, oss2.AUTH_VERSION_4):
        sts = oss2.StsAuth(cred["AccessKeyId"], cred["AccessKeySecret"], cred["SecurityToken"], auth_version)
        b = oss2.Bucket(sts, sandbox["oss"], bucket.bucket_name, region=sandbox["region"])
        url = b.sign_url("GET", "presigned/sts", 60)
        assert "security-token=" in url  # V1 security-token, V4 x-oss-security-token
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == b"temporary"


def test_presigned_urls_expire(bucket: oss2.Bucket, v4_bucket: oss2.Bucket) -> None:
    bucket.put_object("presigned/expiring", b"soon gone")
    # Valid for 1 s from the signing second (V1 Expires = now + 1; V4 x-oss-date + x-oss-expires): gone after 2.1 s.
    urls = [bucket.sign_url("GET", "presigned/expiring", 1), v4_bucket.sign_url("GET", "presigned/expiring", 1)]
    time.sleep(2.1)
    for url in urls:
        with pytest.raises(oss2.exceptions.AccessDenied) as err:
            bucket.get_object_with_url(url)
        assert err.value.status == 403 and err.value.message == "Request has expired."
        assert {"Expires", "ServerTime", "RequestId", "HostId"} <= set(err.value.details)
        assert err.value.request_id and err.value.ec == "0002-00000069"


# ---------------------------------------------------------------------------- batch delete
def test_batch_delete(sandbox: dict, auth: oss2.Auth, bucket: oss2.Bucket) -> None:
    keys = ["batch/a.txt", "batch/b c.txt", "batch/ü&<x>.txt", "batch/form\x0cfeed"]  # oss2 sends \x0c raw
    for k in keys:
        bucket.put_object(k, b"x")
    result = bucket.batch_delete_objects([*keys, "batch/never-existed"])
    assert result.status == 200 and sorted(result.deleted_keys) == sorted([*keys, "batch/never-existed"])
    assert [o.key for o in oss2.ObjectIterator(bucket, prefix="batch/")] == []

    bucket.put_object("batch/quiet", b"x")
    body = b'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet><Object><Key>batch/quiet</Key></Object></Delete>'
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    quiet = signed_raw(sandbox, auth, "POST", bucket.bucket_name, {"delete": ""}, body, {"Content-MD5": md5})
    assert quiet.status_code == 200 and b"<Deleted>" not in quiet.content and b"<DeleteResult" in quiet.content
    assert not bucket.object_exists("batch/quiet")
    missing = signed_raw(sandbox, auth, "POST", bucket.bucket_name, {"delete": ""}, body, {})
    assert missing.status_code == 400 and b"<Code>MissingArgument</Code>" in missing.content
    wrong = signed_raw(
        sandbox, auth, "POST", bucket.bucket_name, {"delete": ""}, body, {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}
    )
    assert wrong.status_code == 400 and b"<Code>InvalidDigest</Code>" in wrong.content
    assert wrong.headers["x-oss-request-id"] and b"<RequestId>" in wrong.content and b"<HostId>" in wrong.content


# ---------------------------------------------------------------------------- append
def test_append_object(bucket: oss2.Bucket) -> None:
    key = "append/log.txt"
    first = bucket.append_object(key, 0, b"line 1\n")
    assert first.next_position == 7 and first.crc == crc64(b"line 1\n")
    second = bucket.append_object(key, first.next_position, b"line 2\n", init_crc=first.crc)  # oss2 checks the CRC
    assert second.next_position == 14 and second.crc == crc64(b"line 1\nline 2\n")
    head = bucket.head_object(key)
    assert head.object_type == "Appendable" and head.headers["x-oss-next-append-position"] == "14"
    assert bucket.get_object(key).read() == b"line 1\nline 2\n"

    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as err:
        bucket.append_object(key, 7, b"stale position")
    assert err.value.status == 409 and err.value.next_position == 14  # x-oss-next-append-position on the error
    bucket.put_object("append/normal", b"not appendable")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable) as not_appendable:
        bucket.append_object("append/normal", 14, b"x")
    assert not_appendable.value.status == 409
    assert [o.type for o in bucket.list_objects_v2(prefix="append/").object_list] == ["Appendable", "Normal"]


# ---------------------------------------------------------------------------- symlinks
def test_symlinks(bucket: oss2.Bucket) -> None:
    bucket.put_object("models/v2/saved_model.pb", b"version 2", headers={"Content-Type": "application/x-protobuf"})
    put = bucket.put_symlink("models/v2/saved_model.pb", "models/latest", headers={"x-oss-meta-version": "2"})
    assert put.status == 200
    head = bucket.head_object("models/latest")  # the target's length and ETag, the symlink's own metadata
    assert head.content_length == len(b"version 2") and head.headers["x-oss-meta-version"] == "2"
    assert head.etag == bucket.head_object("models/v2/saved_model.pb").etag
    link = bucket.get_symlink("models/latest")
    assert link.target_key == "models/v2/saved_model.pb" and link.headers["x-oss-meta-version"] == "2"
    got = bucket.get_object("models/latest")  # GET of a symlink follows it
    assert got.read() == b"version 2" and got.content_type == "application/x-protobuf"
    assert bucket.head_object("models/latest").object_type == "Symlink"
    with pytest.raises(oss2.exceptions.ServerError) as not_link:
        bucket.get_symlink("models/v2/saved_model.pb")
    assert (not_link.value.status, not_link.value.code) == (400, "NotSymlink")
    bucket.delete_object("models/v2/saved_model.pb")
    with pytest.raises(oss2.exceptions.ServerError) as dangling:
        bucket.get_object("models/latest")
    assert (dangling.value.status, dangling.value.code) == (404, "SymlinkTargetNotExist")


# ---------------------------------------------------------------------------- conditional requests
def test_conditional_get_and_head(bucket: oss2.Bucket) -> None:
    bucket.put_object("cond/obj", b"conditional")
    head = bucket.head_object("cond/obj")
    etag, modified = f'"{head.etag}"', head.last_modified
    before, after = formatdate(modified - 3600, usegmt=True), formatdate(modified + 3600, usegmt=True)
    assert bucket.get_object("cond/obj", headers={"If-Match": etag}).read() == b"conditional"
    assert bucket.get_object("cond/obj", headers={"If-None-Match": '"0000"'}).read() == b"conditional"
    assert bucket.get_object("cond/obj", headers={"If-Modified-Since": before}).status == 200
    assert bucket.get_object("cond/obj", headers={"If-Unmodified-Since": after}).status == 200
    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": after}):
        with pytest.raises(oss2.exceptions.NotModified) as nm:
            bucket.get_object("cond/obj", headers=headers)
        assert nm.value.status == 304
        with pytest.raises(oss2.exceptions.NotModified):
            bucket.head_object("cond/obj", headers=headers)
    for headers in ({"If-Match": '"0000"'}, {"If-Unmodified-Since": before}):
        with pytest.raises(oss2.exceptions.PreconditionFailed) as pf:
            bucket.get_object("cond/obj", headers=headers)
        assert pf.value.status == 412 and pf.value.details["Condition"] in ("If-Match", "If-Unmodified-Since")
        with pytest.raises(oss2.exceptions.PreconditionFailed):
            bucket.head_object("cond/obj", headers=headers)
    # RFC 7232 precedence: a true If-Match wins over a false If-Unmodified-Since.
    assert bucket.get_object("cond/obj", headers={"If-Match": etag, "If-Unmodified-Since": before}).status == 200


def test_resumable_download_sees_a_changed_object(bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024)
    bucket.put_object("cond/big.bin", data)
    target = tmp_path / "big.bin"
    oss2.resumable_download(bucket, "cond/big.bin", str(target), multiget_threshold=100 * 1024, part_size=100 * 1024)
    assert target.read_bytes() == data
    etag = bucket.head_object("cond/big.bin").etag
    bucket.put_object("cond/big.bin", os.urandom(300 * 1024))  # changed under a download that pinned the ETag
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.get_object("cond/big.bin", byte_range=(0, 99), headers={"If-Match": f'"{etag}"'})


# ---------------------------------------------------------------------------- copies
def test_copy_object_metadata_directive_and_conditions(sandbox: dict, auth: oss2.Auth, bucket: oss2.Bucket) -> None:
    src = "copy/src.json"
    bucket.put_object(src, b'{"v": 1}', headers={"Content-Type": "application/json", "x-oss-meta-stage": "raw"})
    etag = bucket.head_object(src).etag
    copied = bucket.copy_object(bucket.bucket_name, src, "copy/dst-copy.json")
    assert copied.status == 200 and copied.etag == etag
    meta = bucket.head_object("copy/dst-copy.json")
    assert meta.content_type == "application/json" and meta.headers["x-oss-meta-stage"] == "raw"
    assert int(meta.headers["x-oss-hash-crc64ecma"]) == crc64(b'{"v": 1}')

    bucket.copy_object(
        bucket.bucket_name,
        src,
        "copy/dst-replace.json",
        headers={"x-oss-metadata-directive": "REPLACE", "Content-Type": "text/plain", "x-oss-meta-stage": "served"},
    )
    meta = bucket.head_object("copy/dst-replace.json")
    assert meta.content_type == "text/plain" and meta.headers["x-oss-meta-stage"] == "served"
    assert bucket.get_object("copy/dst-replace.json").read() == b'{"v": 1}'

    other = oss2.Bucket(auth, sandbox["oss"], "parity-other-" + secrets.token_hex(4))
    other.create_bucket()
    other.copy_object(bucket.bucket_name, src, "from-other-bucket.json")
    assert other.get_object("from-other-bucket.json").read() == b'{"v": 1}'

    with pytest.raises(oss2.exceptions.PreconditionFailed):
        bucket.copy_object(bucket.bucket_name, src, "copy/x", headers={"x-oss-copy-source-if-match": '"0000"'})
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.copy_object(bucket.bucket_name, src, "copy/x", headers={"x-oss-copy-source-if-none-match": etag})
    later = formatdate(time.time() + 3600, usegmt=True)
    with pytest.raises(oss2.exceptions.NotModified):
        bucket.copy_object(bucket.bucket_name, src, "copy/x", headers={"x-oss-copy-source-if-modified-since": later})
    assert not bucket.object_exists("copy/x")
    bucket.copy_object(bucket.bucket_name, src, "copy/x", headers={"x-oss-copy-source-if-match": etag})
    assert bucket.object_exists("copy/x")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.copy_object(bucket.bucket_name, "copy/missing", "copy/y")


def test_upload_part_copy_copies_the_ranges(bucket: oss2.Bucket) -> None:
    data = os.urandom(250 * 1024 + 17)
    bucket.put_object("upc/variables.data", data)
    dst = "upc/served/variables.data"
    upload_id = bucket.init_multipart_upload(dst).upload_id
    part = 100 * 1024
    ranges = [(0, part - 1), (part, 2 * part - 1), (2 * part, None)]
    parts = []
    for n, byte_range in enumerate(ranges, 1):
        result = bucket.upload_part_copy(bucket.bucket_name, "upc/variables.data", byte_range, dst, upload_id, n)
        end = len(data) if byte_range[1] is None else byte_range[1] + 1
        assert result.etag == hashlib.md5(data[byte_range[0] : end]).hexdigest().upper()
        parts.append(oss2.models.PartInfo(n, result.etag))
    listed = bucket.list_parts(dst, upload_id).parts
    assert [p.size for p in listed] == [part, part, len(data) - 2 * part]
    bucket.complete_multipart_upload(dst, upload_id, parts)
    assert bucket.get_object(dst).read() == data
    assert int(bucket.head_object(dst).headers["x-oss-hash-crc64ecma"]) == crc64(data)

    whole = bucket.init_multipart_upload("upc/whole").upload_id
    one = bucket.upload_part_copy(bucket.bucket_name, "upc/variables.data", None, "upc/whole", whole, 1)
    bucket.complete_multipart_upload("upc/whole", whole, [oss2.models.PartInfo(1, one.etag)])
    assert bucket.get_object("upc/whole").read() == data
    bad = bucket.init_multipart_upload("upc/bad").upload_id
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.upload_part_copy(
            bucket.bucket_name, "upc/variables.data", (len(data) + 10, len(data) + 20), "upc/bad", bad, 1
        )
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")


# ---------------------------------------------------------------------------- endpoints, listings
def test_client_built_from_bucket_info_endpoint_connects(auth: oss2.Auth, bucket: oss2.Bucket) -> None:
    bucket.put_object("endpoint/probe", b"reachable")
    info = bucket.get_bucket_info()
    assert ":" in info.extranet_endpoint and ":" in info.intranet_endpoint  # host:port
    built = oss2.Bucket(auth, "http://" + info.extranet_endpoint, bucket.bucket_name)
    assert built.get_object("endpoint/probe").read() == b"reachable"
    listed = next(
        b
        for b in oss2.BucketIterator(oss2.Service(auth, "http://" + info.intranet_endpoint))
        if b.name == bucket.bucket_name
    )
    assert listed.extranet_endpoint == info.extranet_endpoint


def test_list_multipart_uploads_ordered_by_key_then_initiation(bucket: oss2.Bucket) -> None:
    created = []
    for key in ["mpu/b", "mpu/a", "mpu/b", "mpu/dir/x", "mpu/a", "mpu/c"]:
        created.append((key, bucket.init_multipart_upload(key).upload_id))
    expected = sorted(created, key=lambda kv: (kv[0], created.index(kv)))  # by key, then by initiation
    listed = [(u.key, u.upload_id) for u in oss2.MultipartUploadIterator(bucket, prefix="mpu/", max_uploads=2)]
    assert listed == expected
    page = bucket.list_multipart_uploads(prefix="mpu/", delimiter="/")
    assert page.prefix_list == ["mpu/dir/"] and "mpu/dir/x" not in [u.key for u in page.upload_list]
    after = bucket.list_multipart_uploads(prefix="mpu/", key_marker="mpu/a", upload_id_marker=expected[0][1])
    assert [(u.key, u.upload_id) for u in after.upload_list] == expected[1:]
    for key, upload_id in created:
        bucket.abort_multipart_upload(key, upload_id)


def _reference_listing(keys: list[str], prefix: str, delimiter: str, after: str) -> list[str]:
    """What OSS lists (objects and common prefixes, in order) after ``after``: the semantics to compare with."""
    out: list[str] = []
    for key in sorted(keys):
        if not key.startswith(prefix) or key <= after:
            continue
        idx = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key[: idx + len(delimiter)] if idx >= 0 else key
        if entry <= after or (out and out[-1] == entry):
            continue
        out.append(entry)
    return out


@pytest.mark.parametrize(
    ("prefix", "delimiter", "marker", "max_keys"),
    [
        ("", "", "", 3),
        ("list/", "/", "", 2),
        ("list/", "/", "list/a/", 1),
        ("list/a", "", "list/a/1", 2),
        ("list/", "", "", 1000),
    ],
)
def test_listing_v1_and_v2_paginate_as_oss(
    bucket: oss2.Bucket, prefix: str, delimiter: str, marker: str, max_keys: int
) -> None:
    keys = ["list/a/1", "list/a/2", "list/a/sub/3", "list/b", "list/c/4", "list/d e", "list/z%", "listing"]
    for k in keys:
        if not bucket.object_exists(k):
            bucket.put_object(k, b"")
    everything = [o.key for o in oss2.ObjectIteratorV2(bucket)]
    expected = _reference_listing(everything, prefix, delimiter, marker)
    v1 = [
        o.key for o in oss2.ObjectIterator(bucket, prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys)
    ]
    v2 = [
        o.key
        for o in oss2.ObjectIteratorV2(
            bucket, prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys
        )
    ]
    assert v1 == expected and v2 == expected
    page = bucket.list_objects_v2(prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys)
    assert page.is_truncated == (len(expected) > max_keys)
    assert len(page.object_list) + len(page.prefix_list) == min(max_keys, len(expected))


# ---------------------------------------------------------------------------- gzip
def test_accept_encoding_gzip(bucket: oss2.Bucket, tmp_path: Path) -> None:
    text = ("fashion-mnist class names: t-shirt, trouser, pullover\n" * 64).encode()
    bucket.put_object("gzip/labels.txt", text, headers={"Content-Type": "text/plain"})
    bucket.put_object("gzip/small.txt", b"tiny", headers={"Content-Type": "text/plain"})
    bucket.put_object("gzip/weights.bin", text, headers={"Content-Type": "application/octet-stream"})
    zipped = bucket.get_object("gzip/labels.txt", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    assert "ETag" not in zipped.headers and "Content-Length" not in zipped.headers
    assert int(zipped.headers["x-oss-hash-crc64ecma"]) == crc64(text)  # the stored object's CRC
    assert zipped.read() == text  # requests inflates it
    raw = bucket.get_object("gzip/labels.txt", headers={"Accept-Encoding": "gzip"}).resp.response.raw.read()
    assert gzip.decompress(raw) == text and len(raw) < len(text)
    for key in ("gzip/small.txt", "gzip/weights.bin"):  # under 1 KB / not a compressible type: as stored
        plain = bucket.get_object(key, headers={"Accept-Encoding": "gzip"})
        assert "Content-Encoding" not in plain.headers and plain.headers["ETag"]
    # oss2's download helpers: CRC-checked without gzip, and with gzip (oss2 then skips its CRC check).
    bucket.get_object_to_file("gzip/labels.txt", str(tmp_path / "plain.txt"))
    bucket.get_object_to_file("gzip/labels.txt", str(tmp_path / "gz.txt"), headers={"Accept-Encoding": "gzip"})
    assert (tmp_path / "plain.txt").read_bytes() == text == (tmp_path / "gz.txt").read_bytes()
    oss2.resumable_download(
        bucket, "gzip/labels.txt", str(tmp_path / "resumable.txt"), multiget_threshold=1024, part_size=1024
    )
    assert (tmp_path / "resumable.txt").read_bytes() == text
    ranged = bucket.get_object("gzip/labels.txt", byte_range=(0, 99), headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in ranged.headers and ranged.read() == text[:100]


def test_v4_signing_region_must_be_the_services(sandbox: dict, bucket: oss2.Bucket) -> None:
    v4 = oss2.AuthV4(sandbox["access_key_id"], sandbox["access_key_secret"])
    elsewhere = oss2.Bucket(v4, sandbox["oss"], bucket.bucket_name, region="cn-hangzhou-test-1")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        elsewhere.head_object("anything")
    assert (err.value.status, err.value.code, err.value.ec) == (400, "InvalidArgument", "0002-00000226")
    assert err.value.message == "Invalid signing region in Authorization header."
    with pytest.raises(oss2.exceptions.ServerError) as url_err:
        elsewhere.get_object_with_url(elsewhere.sign_url("GET", "anything", 60))
    assert url_err.value.message == "The signing region in credential is invalid."


def test_unserved_bucket_sub_resource_is_refused_not_listed(
    sandbox: dict, auth: oss2.Auth, bucket: oss2.Bucket
) -> None:
    resp = signed_raw(sandbox, auth, "GET", bucket.bucket_name, {"lifecycle": ""}, b"", {})
    assert resp.status_code == 405 and b"<Code>MethodNotAllowed</Code>" in resp.content


def test_errors_carry_oss_fields(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as err:
        bucket.get_object("nothing/here")
    details = err.value.details
    assert {"Code", "Message", "RequestId", "HostId", "EC", "Key"} <= set(details)
    assert details["RequestId"] == err.value.request_id and err.value.headers["Server"] == "AliyunOSS"
    assert bucket.get_bucket_info().headers["Server"] == "AliyunOSS"  # successes too
    with pytest.raises(oss2.exceptions.NoSuchKey) as head_err:  # HEAD: the XML rides in x-oss-err
        bucket.head_object("nothing/here")
    assert head_err.value.ec == "0026-00000001"
    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(f"{bucket.endpoint}/{bucket.bucket_name}/nothing", timeout=10)
    assert anon.value.code == 403


def test_a_read_only_ram_key_reads_through_symlinks_and_writes_nothing(sandbox: dict, bucket: oss2.Bucket) -> None:
    """RAM checks each API under OSS's action: HEAD and GetSymlink are oss:GetObject; PutSymlink, append, copy and
    part copy write bytes (oss:PutObject); a batch delete is oss:DeleteObject."""
    from ack_sandbox import cli

    bucket.put_object("ro/model.pb", b"weights")
    bucket.put_symlink("ro/model.pb", "ro/current")
    key = cli.ram_key(sandbox["state_dir"], bucket=bucket.bucket_name, prefix="ro/")
    ro = oss2.Bucket(oss2.Auth(key["access_key_id"], key["access_key_secret"]), sandbox["oss"], bucket.bucket_name)
    assert ro.get_symlink("ro/current").target_key == "ro/model.pb"
    assert ro.get_object("ro/current").read() == b"weights"
    assert ro.head_object("ro/model.pb").content_length == 7
    upload_id = bucket.init_multipart_upload("ro/copy").upload_id
    writes = {
        "oss:PutObject": [
            lambda: ro.put_symlink("ro/model.pb", "ro/other"),
            lambda: ro.append_object("ro/log", 0, b"x"),
            lambda: ro.copy_object(bucket.bucket_name, "ro/model.pb", "ro/copy"),
            lambda: ro.upload_part_copy(bucket.bucket_name, "ro/model.pb", (0, 3), "ro/copy", upload_id, 1),
        ],
        "oss:DeleteObject": [lambda: ro.batch_delete_objects(["ro/model.pb"])],
    }
    for action, calls in writes.items():
        for call in calls:
            with pytest.raises(oss2.exceptions.AccessDenied) as denied:
                call()
            assert denied.value.details.get("AuthAction") == action
    assert bucket.get_object("ro/model.pb").read() == b"weights"
    bucket.abort_multipart_upload("ro/copy", upload_id)
