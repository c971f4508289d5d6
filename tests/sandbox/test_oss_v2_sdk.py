"""The sandbox's OSS through alibabacloud-oss-v2 (issue 16): presigned V4 GET/PUT and their expiry, quiet batch
delete, append, symlinks, conditional GET, CopyObject / UploadPartCopy and the SDK's own Copier (multipart copy,
CRC-checked) and Downloader, ListMultipartUploads / ListObjects paginators, GZIP, a client built from
GetBucketInfo's endpoint. Real SDK, real HTTP, the session sandbox; one bucket per module.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import alibabacloud_oss_v2 as oss
import pytest

from ack_sandbox.oss.crc64 import crc64

pytestmark = pytest.mark.integration


def make_client(sandbox: dict, endpoint: str | None = None) -> oss.Client:
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        sandbox["access_key_id"], sandbox["access_key_secret"]
    )
    cfg.region = sandbox["region"]
    cfg.endpoint = endpoint or sandbox["oss"]
    cfg.use_path_style = True
    return oss.Client(cfg)


@pytest.fixture(scope="module")
def client(sandbox: dict) -> oss.Client:
    return make_client(sandbox)


@pytest.fixture(scope="module")
def bucket(client: oss.Client) -> str:
    name = "v2sdk-" + secrets.token_hex(5)
    client.put_bucket(oss.PutBucketRequest(bucket=name))
    return name


def service_error(err: pytest.ExceptionInfo) -> oss.exceptions.ServiceError:
    inner = err.value.unwrap()
    assert isinstance(inner, oss.exceptions.ServiceError), inner
    return inner


def test_presigned_v4_get_put_and_expiry(client: oss.Client, bucket: str) -> None:
    data = os.urandom(4096)
    client.put_object(oss.PutObjectRequest(bucket=bucket, key="presign/model.bin", body=data))
    get = client.presign(
        oss.GetObjectRequest(bucket=bucket, key="presign/model.bin"), expires=datetime.timedelta(minutes=5)
    )
    assert get.method == "GET" and "x-oss-signature=" in get.url and "x-oss-expires=" in get.url
    with urllib.request.urlopen(get.url, timeout=10) as resp:
        assert resp.read() == data

    put = client.presign(
        oss.PutObjectRequest(bucket=bucket, key="presign/up.txt", content_type="text/plain"),
        expires=datetime.timedelta(minutes=5),
    )
    req = urllib.request.Request(put.url, data=b"via presigned PUT", method="PUT", headers=dict(put.signed_headers))
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and int(resp.headers["x-oss-hash-crc64ecma"]) == crc64(b"via presigned PUT")
    head = client.head_object(oss.HeadObjectRequest(bucket=bucket, key="presign/up.txt"))
    assert head.content_type == "text/plain" and head.content_length == len(b"via presigned PUT")

    short = client.presign(
        oss.GetObjectRequest(bucket=bucket, key="presign/model.bin"), expires=datetime.timedelta(seconds=2)
    )
    time.sleep(3.1)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(short.url, timeout=10)
    body = err.value.read()
    assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in body and b"Request has expired." in body
    assert err.value.headers["x-oss-request-id"] and b"<ServerTime>" in body


def test_quiet_and_verbose_batch_delete(client: oss.Client, bucket: str) -> None:
    for k in ("del/a", "del/b", "del/c"):
        client.put_object(oss.PutObjectRequest(bucket=bucket, key=k, body=b"x"))
    verbose = client.delete_multiple_objects(
        oss.DeleteMultipleObjectsRequest(
            bucket=bucket, objects=[oss.DeleteObject(key="del/a"), oss.DeleteObject(key="del/zz")]
        )
    )
    assert sorted(d.key for d in verbose.deleted_objects) == ["del/a", "del/zz"]
    quiet = client.delete_multiple_objects(
        oss.DeleteMultipleObjectsRequest(
            bucket=bucket, objects=[oss.DeleteObject(key="del/b"), oss.DeleteObject(key="del/c")], quiet=True
        )
    )
    assert quiet.status_code == 200 and not quiet.deleted_objects
    listed = client.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket, prefix="del/"))
    assert not listed.contents


def test_append_and_symlink(client: oss.Client, bucket: str) -> None:
    first = client.append_object(
        oss.AppendObjectRequest(bucket=bucket, key="log/train.log", position=0, body=b"epoch 1\n")
    )
    assert first.next_position == 8 and first.hash_crc64 == str(crc64(b"epoch 1\n"))
    second = client.append_object(
        oss.AppendObjectRequest(bucket=bucket, key="log/train.log", position=first.next_position, body=b"epoch 2\n")
    )
    assert second.next_position == 16 and second.hash_crc64 == str(crc64(b"epoch 1\nepoch 2\n"))
    with pytest.raises(oss.exceptions.OperationError) as err:
        client.append_object(oss.AppendObjectRequest(bucket=bucket, key="log/train.log", position=3, body=b"x"))
    error = service_error(err)
    assert (error.status_code, error.code) == (409, "PositionNotEqualToLength")
    assert error.headers["x-oss-next-append-position"] == "16"

    client.put_symlink(oss.PutSymlinkRequest(bucket=bucket, key="log/current", target="log/train.log"))
    assert client.get_symlink(oss.GetSymlinkRequest(bucket=bucket, key="log/current")).target == "log/train.log"
    got = client.get_object(oss.GetObjectRequest(bucket=bucket, key="log/current"))
    assert got.body.read() == b"epoch 1\nepoch 2\n"


def test_conditional_get(client: oss.Client, bucket: str) -> None:
    put = client.put_object(oss.PutObjectRequest(bucket=bucket, key="cond/x", body=b"conditional"))
    ok = client.get_object(oss.GetObjectRequest(bucket=bucket, key="cond/x", if_match=put.etag))
    assert ok.body.read() == b"conditional"
    with pytest.raises(oss.exceptions.OperationError) as not_modified:
        client.get_object(oss.GetObjectRequest(bucket=bucket, key="cond/x", if_none_match=put.etag))
    assert service_error(not_modified).status_code == 304
    with pytest.raises(oss.exceptions.OperationError) as failed:
        client.get_object(oss.GetObjectRequest(bucket=bucket, key="cond/x", if_match='"00000000"'))
    assert (service_error(failed).status_code, service_error(failed).code) == (412, "PreconditionFailed")


def test_copy_upload_part_copy_and_the_copier(client: oss.Client, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(350 * 1024)
    src = client.put_object(oss.PutObjectRequest(bucket=bucket, key="models/2/variables.data", body=data))
    copied = client.copy_object(
        oss.CopyObjectRequest(
            bucket=bucket,
            key="serving/2/variables.data",
            source_bucket=bucket,
            source_key="models/2/variables.data",
            if_match=src.etag,
        )
    )
    assert copied.etag == src.etag and copied.hash_crc64 == str(crc64(data))

    init = client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bucket, key="serving/ranged"))
    part = client.upload_part_copy(
        oss.UploadPartCopyRequest(
            bucket=bucket,
            key="serving/ranged",
            upload_id=init.upload_id,
            part_number=1,
            source_bucket=bucket,
            source_key="models/2/variables.data",
            source_range="bytes=1000-2999",
        )
    )
    assert part.etag.strip('"') == hashlib.md5(data[1000:3000]).hexdigest().upper()
    client.complete_multipart_upload(
        oss.CompleteMultipartUploadRequest(
            bucket=bucket,
            key="serving/ranged",
            upload_id=init.upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(
                parts=[oss.UploadPart(part_number=1, etag=part.etag)]
            ),
        )
    )
    assert client.get_object(oss.GetObjectRequest(bucket=bucket, key="serving/ranged")).body.read() == data[1000:3000]

    # The SDK's Copier: above the threshold it copies with UploadPartCopy and checks the CRC-64 of the result.
    result = client.copier(part_size=100 * 1024, multipart_copy_threshold=100 * 1024, disable_shallow_copy=True).copy(
        oss.CopyObjectRequest(
            bucket=bucket, key="serving/2/copier.data", source_bucket=bucket, source_key="models/2/variables.data"
        )
    )
    assert result.hash_crc64 == str(crc64(data))
    parts = client.head_object(oss.HeadObjectRequest(bucket=bucket, key="serving/2/copier.data"))
    assert parts.object_type == "Multipart" and parts.etag.strip('"').endswith("-4")
    target = tmp_path / "downloaded.data"
    client.downloader(part_size=100 * 1024).download_file(
        oss.GetObjectRequest(bucket=bucket, key="serving/2/copier.data"), str(target)
    )
    assert target.read_bytes() == data


def test_paginators_list_in_oss_order(client: oss.Client, bucket: str) -> None:
    created = []
    for key in ("mpu/b", "mpu/a", "mpu/b", "mpu/a"):
        init = client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bucket, key=key))
        created.append((key, init.upload_id))
    listed = [
        (u.key, u.upload_id)
        for page in client.list_multipart_uploads_paginator(limit=1).iter_page(
            oss.ListMultipartUploadsRequest(bucket=bucket, prefix="mpu/")
        )
        for u in page.uploads or []
    ]
    assert listed == sorted(created, key=lambda kv: (kv[0], created.index(kv)))
    for key, upload_id in created:
        client.abort_multipart_upload(oss.AbortMultipartUploadRequest(bucket=bucket, key=key, upload_id=upload_id))

    for key in ("tree/a/1", "tree/a/2", "tree/b/1", "tree/c"):
        client.put_object(oss.PutObjectRequest(bucket=bucket, key=key, body=b""))
    pages = list(
        client.list_objects_paginator(limit=1).iter_page(
            oss.ListObjectsRequest(bucket=bucket, prefix="tree/", delimiter="/")
        )
    )
    assert [p.prefix for page in pages for p in page.common_prefixes or []] == ["tree/a/", "tree/b/"]
    assert [o.key for page in pages for o in page.contents or []] == ["tree/c"]


def test_gzip_and_a_client_from_bucket_info(sandbox: dict, client: oss.Client, bucket: str) -> None:
    text = b'{"instances": [[0.0, 0.1, 0.2]]}\n' * 100
    client.put_object(
        oss.PutObjectRequest(bucket=bucket, key="gz/request.json", body=text, content_type="application/json")
    )
    got = client.get_object(oss.GetObjectRequest(bucket=bucket, key="gz/request.json", accept_encoding="gzip"))
    assert got.headers["Content-Encoding"] == "gzip" and got.body.read() == text

    info = client.get_bucket_info(oss.GetBucketInfoRequest(bucket=bucket)).bucket_info
    built = make_client(sandbox, endpoint="http://" + info.extranet_endpoint)
    assert built.get_object(oss.GetObjectRequest(bucket=bucket, key="gz/request.json")).body.read() == text
