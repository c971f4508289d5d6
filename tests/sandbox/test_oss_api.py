"""The OSS stand-in driven through oss2 (V1 and V4 signatures) and alibabacloud-oss-v2 over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import alibabacloud_oss_v2 as ossv2
import oss2
import pytest

from ack_sandbox import cli
from ack_sandbox.oss.crc64 import crc64
from tests.helpers import admin

pytestmark = pytest.mark.integration


def bucket_name() -> str:
    return "t-" + secrets.token_hex(6)


@pytest.fixture
def auth(sandbox: dict) -> oss2.Auth:
    return oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"])


@pytest.fixture
def bucket(sandbox: dict, auth: oss2.Auth) -> oss2.Bucket:
    b = oss2.Bucket(auth, sandbox["oss"], bucket_name())
    b.create_bucket()
    return b


def set_fault(sandbox: dict, doc: dict | None) -> None:
    status, body = admin(sandbox, "oss", "POST" if doc else "DELETE", "/_sandbox/faults", doc)
    assert status == 200, body


def test_crc64_matches_oss2_and_the_check_value() -> None:
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA
    data = os.urandom(4096)
    ref = oss2.utils.Crc64(0)
    ref.update(data)
    assert crc64(data) == ref.crc


def test_put_get_head_delete(bucket: oss2.Bucket) -> None:
    data = b"fashion-mnist saved model bytes"
    put = bucket.put_object("fashion-mnist/1/saved_model.pb", data)  # oss2 verifies the CRC header itself
    assert put.status == 200 and put.request_id
    assert put.etag == hashlib.md5(data).hexdigest().upper()
    assert int(put.headers["x-oss-hash-crc64ecma"]) == crc64(data)
    got = bucket.get_object("fashion-mnist/1/saved_model.pb")
    assert got.read() == data and int(got.headers["x-oss-hash-crc64ecma"]) == crc64(data)
    head = bucket.head_object("fashion-mnist/1/saved_model.pb")
    assert head.content_length == len(data) and head.object_type == "Normal"
    assert bucket.object_exists("fashion-mnist/1/saved_model.pb")
    meta = bucket.get_object_meta("fashion-mnist/1/saved_model.pb")
    assert meta.content_length == len(data)
    bucket.delete_object("fashion-mnist/1/saved_model.pb")
    assert not bucket.object_exists("fashion-mnist/1/saved_model.pb")
    with pytest.raises(oss2.exceptions.NoSuchKey) as err:
        bucket.head_object("fashion-mnist/1/saved_model.pb")
    assert err.value.status == 404 and err.value.request_id  # decoded from x-oss-err on HEAD


def test_get_to_file_verifies_crc(bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    bucket.put_object("blob", data)
    bucket.get_object_to_file("blob", str(tmp_path / "blob"))  # raises InconsistentError on a wrong CRC
    assert (tmp_path / "blob").read_bytes() == data


def test_range_read_is_206(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", b"0123456789")
    part = bucket.get_object("r", byte_range=(2, 5))
    assert part.status == 206 and part.read() == b"2345"
    assert part.headers["Content-Range"] == "bytes 2-5/10"
    assert bucket.get_object("r", byte_range=(None, 3)).read() == b"789"


def test_content_md5_is_checked(bucket: oss2.Bucket) -> None:
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    bucket.put_object("m", b"abc", headers={"Content-MD5": good})
    with pytest.raises(oss2.exceptions.OssError) as err:
        bucket.put_object("m", b"abd", headers={"Content-MD5": good})
    assert (err.value.status, err.value.code) == (400, "InvalidDigest")


def test_list_v1_and_v2_with_prefix_delimiter_and_paging(bucket: oss2.Bucket) -> None:
    keys = ["m/1/saved_model.pb", "m/1/variables/v.data", "m/1/variables/v.index", "m/2/saved_model.pb", "readme"]
    for k in keys:
        bucket.put_object(k, k.encode())
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=2)] == sorted(keys)
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=2)] == sorted(keys)
    top = bucket.list_objects_v2(delimiter="/")
    assert top.prefix_list == ["m/"] and [o.key for o in top.object_list] == ["readme"]
    inner = bucket.list_objects(prefix="m/1/", delimiter="/")
    assert inner.prefix_list == ["m/1/variables/"] and [o.key for o in inner.object_list] == ["m/1/saved_model.pb"]
    page = bucket.list_objects_v2(prefix="m/", max_keys=2)
    assert page.is_truncated and len(page.object_list) == 2
    rest = bucket.list_objects_v2(prefix="m/", continuation_token=page.next_continuation_token)
    assert [o.key for o in page.object_list + rest.object_list] == sorted(keys)[:4] and not rest.is_truncated
    assert rest.object_list[0].size == len(rest.object_list[0].key)


def test_bucket_errors(sandbox: dict, auth: oss2.Auth, bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        oss2.Bucket(auth, sandbox["oss"], "no-such-bucket-here").get_object("x")
    with pytest.raises(oss2.exceptions.OssError) as exists:
        bucket.create_bucket()
    assert (exists.value.status, exists.value.code) == (409, "BucketAlreadyExists")
    bucket.put_object("x", b"x")
    with pytest.raises(oss2.exceptions.OssError) as not_empty:
        bucket.delete_bucket()
    assert (not_empty.value.status, not_empty.value.code) == (409, "BucketNotEmpty")
    bucket.delete_object("x")
    bucket.delete_bucket()
    assert bucket.bucket_name not in [b.name for b in oss2.BucketIterator(oss2.Service(auth, sandbox["oss"]))]


def test_multipart_list_parts_complete_and_abort(bucket: oss2.Bucket) -> None:
    parts = [os.urandom(100 * 1024), os.urandom(100 * 1024), b"tail"]
    upload_id = bucket.init_multipart_upload("big").upload_id
    etags = [bucket.upload_part("big", upload_id, i + 1, p).etag for i, p in enumerate(parts)]
    listed = bucket.list_parts("big", upload_id)
    assert [(p.part_number, p.size) for p in listed.parts] == [(1, 102400), (2, 102400), (3, 4)]
    assert [u.upload_id for u in bucket.list_multipart_uploads().upload_list] == [upload_id]
    with pytest.raises(oss2.exceptions.OssError) as order:
        # oss2 sorts the list itself, so a repeated part number is what reaches the server out of order.
        bucket.complete_multipart_upload(
            "big", upload_id, [oss2.models.PartInfo(1, etags[0]), oss2.models.PartInfo(1, etags[0])]
        )
    assert order.value.code == "InvalidPartOrder"
    with pytest.raises(oss2.exceptions.OssError) as wrong:
        bucket.complete_multipart_upload("big", upload_id, [oss2.models.PartInfo(1, etags[1])])
    assert wrong.value.code == "InvalidPart"
    done = bucket.complete_multipart_upload(
        "big", upload_id, [oss2.models.PartInfo(i + 1, e) for i, e in enumerate(etags)]
    )
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest().upper() + "-3"
    assert done.etag == expected
    body = bucket.get_object("big")
    assert body.read() == b"".join(parts) and body.headers["x-oss-object-type"] == "Multipart"
    assert int(body.headers["x-oss-hash-crc64ecma"]) == crc64(b"".join(parts))

    aborted = bucket.init_multipart_upload("gone").upload_id
    bucket.upload_part("gone", aborted, 1, b"x")
    bucket.abort_multipart_upload("gone", aborted)
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts("gone", aborted)


def test_multipart_small_middle_part_is_refused(bucket: oss2.Bucket) -> None:
    upload_id = bucket.init_multipart_upload("small").upload_id
    etags = [bucket.upload_part("small", upload_id, n, b"tiny").etag for n in (1, 2)]
    with pytest.raises(oss2.exceptions.OssError) as err:
        bucket.complete_multipart_upload(
            "small", upload_id, [oss2.models.PartInfo(n, e) for n, e in zip((1, 2), etags, strict=True)]
        )
    assert err.value.code == "EntityTooSmall"


def test_resumable_upload_resumes_after_a_server_error(sandbox: dict, bucket: oss2.Bucket, tmp_path: Path) -> None:
    data = os.urandom(350 * 1024)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    store = oss2.ResumableStore(root=str(tmp_path))
    kw = dict(store=store, multipart_threshold=100 * 1024, part_size=100 * 1024, num_threads=1)
    set_fault(sandbox, {"server_error": {"count": 1, "action": "UploadPart", "status": 503}})
    try:
        with pytest.raises(oss2.exceptions.ServerError) as err:
            oss2.resumable_upload(bucket, "model.bin", str(src), **kw)
        assert (err.value.status, err.value.code) == (503, "ServiceUnavailable")
    finally:
        set_fault(sandbox, None)
    assert len(bucket.list_multipart_uploads().upload_list) == 1
    oss2.resumable_upload(bucket, "model.bin", str(src), **kw)
    assert bucket.get_object("model.bin").read() == data
    assert bucket.list_multipart_uploads().upload_list == []


def test_wrong_secret_unknown_key_and_anonymous_are_refused(sandbox: dict, bucket: oss2.Bucket) -> None:
    bucket.put_object("k", b"v")
    for auth_obj, code in [
        (oss2.Auth(sandbox["access_key_id"], "wrong-secret"), "SignatureDoesNotMatch"),
        (oss2.AuthV4(sandbox["access_key_id"], "wrong-secret"), "SignatureDoesNotMatch"),
        (oss2.Auth("LTAI5tUnknownKey0000", "x"), "InvalidAccessKeyId"),
        (oss2.AnonymousAuth(), "AccessDenied"),
    ]:
        other = oss2.Bucket(auth_obj, sandbox["oss"], bucket.bucket_name, region=sandbox["region"])
        with pytest.raises(oss2.exceptions.OssError) as err:
            other.get_object("k")
        assert (err.value.status, err.value.code) == (403, code)


def test_v4_signature_round_trip(sandbox: dict, bucket: oss2.Bucket) -> None:
    v4 = oss2.Bucket(
        oss2.AuthV4(sandbox["access_key_id"], sandbox["access_key_secret"]),
        sandbox["oss"],
        bucket.bucket_name,
        region=sandbox["region"],
    )
    v4.put_object("dir/with space+plus.txt", b"v4")
    assert v4.get_object("dir/with space+plus.txt").read() == b"v4"
    assert [o.key for o in v4.list_objects_v2(prefix="dir/").object_list] == ["dir/with space+plus.txt"]


def test_sts_credentials(sandbox: dict, bucket: oss2.Bucket) -> None:
    req = urllib.request.Request(
        sandbox["cs"] + "/_sandbox/sts",
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Bearer {sandbox['access_key_id']}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        cred = json.loads(resp.read())["Credentials"]
    sts = oss2.Bucket(
        oss2.StsAuth(cred["AccessKeyId"], cred["AccessKeySecret"], cred["SecurityToken"]),
        sandbox["oss"],
        bucket.bucket_name,
    )
    sts.put_object("via-sts", b"ok")
    assert sts.get_object("via-sts").read() == b"ok"
    forged = oss2.Bucket(
        oss2.StsAuth(cred["AccessKeyId"], cred["AccessKeySecret"], "CAISforged"), sandbox["oss"], bucket.bucket_name
    )
    with pytest.raises(oss2.exceptions.OssError) as err:
        forged.get_object("via-sts")
    assert (err.value.status, err.value.code) == (403, "InvalidSecurityToken")


def test_oss_v2_sdk_round_trip(sandbox: dict, tmp_path: Path) -> None:
    cfg = ossv2.config.load_default()
    cfg.credentials_provider = ossv2.credentials.StaticCredentialsProvider(
        sandbox["access_key_id"], sandbox["access_key_secret"]
    )
    cfg.region = sandbox["region"]
    cfg.endpoint = sandbox["oss"]
    cfg.use_path_style = True
    client = ossv2.Client(cfg)
    name = bucket_name()
    assert not client.is_bucket_exist(name)
    client.put_bucket(ossv2.PutBucketRequest(bucket=name))
    assert client.is_bucket_exist(name)
    put = client.put_object(ossv2.PutObjectRequest(bucket=name, key="a/b.txt", body=b"hello v2"))
    assert put.status_code == 200 and put.hash_crc64 == str(crc64(b"hello v2"))
    got = client.get_object(ossv2.GetObjectRequest(bucket=name, key="a/b.txt"))
    assert got.body.read() == b"hello v2"
    data = os.urandom(300 * 1024)
    (tmp_path / "up.bin").write_bytes(data)
    result = client.uploader(part_size=100 * 1024).upload_file(
        ossv2.PutObjectRequest(bucket=name, key="a/up.bin"), str(tmp_path / "up.bin")
    )
    assert result.etag.strip('"').endswith("-3")
    keys = [
        o.key
        for page in client.list_objects_v2_paginator().iter_page(
            ossv2.ListObjectsV2Request(bucket=name, prefix="a/", max_keys=1)
        )
        for o in page.contents or []
    ]
    assert keys == ["a/b.txt", "a/up.bin"]
    assert client.get_object(ossv2.GetObjectRequest(bucket=name, key="a/up.bin")).body.read() == data
    with pytest.raises(ossv2.exceptions.OperationError) as err:
        client.get_object(ossv2.GetObjectRequest(bucket=name, key="missing"))
    service_error = err.value.unwrap()
    assert (service_error.status_code, service_error.code) == (404, "NoSuchKey")


def test_objects_survive_down_and_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "durable"
    endpoints = cli.up(state_dir, time_scale=30)
    try:
        auth = oss2.Auth(endpoints["access_key_id"], endpoints["access_key_secret"])
        b = oss2.Bucket(auth, endpoints["oss"], "durable")
        b.create_bucket()
        b.put_object("model/saved_model.pb", b"persist me")
        upload_id = b.init_multipart_upload("pending").upload_id
        b.upload_part("pending", upload_id, 1, b"part one")
    finally:
        cli.down(state_dir)
    endpoints = cli.up(state_dir, time_scale=30)
    try:
        b = oss2.Bucket(
            oss2.Auth(endpoints["access_key_id"], endpoints["access_key_secret"]), endpoints["oss"], "durable"
        )
        assert b.get_object("model/saved_model.pb").read() == b"persist me"
        assert [p.size for p in b.list_parts("pending", upload_id).parts] == [8]
    finally:
        cli.down(state_dir)
