"""The OSS hook through the real oss2 SDK over HTTP against the sandbox's OSS stand-in."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from elastic_inference.exceptions import AlibabaCloudCredentialsError, AlibabaCloudRetryableError
from elastic_inference.hooks.oss import OssHook, local_crc64
from tests.integration.support import FAST_RETRY, admin_ok, connection, sandbox_conn

pytestmark = pytest.mark.integration


@pytest.fixture
def oss_conn(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_oss_fast", conn) as conn_id:
        yield conn_id
    admin_ok(sandbox, "oss", "DELETE", "/_sandbox/faults")


@pytest.fixture
def bucket(oss_conn) -> str:
    name = "models-" + secrets.token_hex(4)
    OssHook(oss_conn).create_bucket(name)
    return name


@pytest.mark.parametrize("signature_version", ["v4", "v1"])
def test_put_head_crc_and_list(oss_conn, bucket, signature_version, tmp_path: Path):
    hook = OssHook(oss_conn, signature_version=signature_version)
    assert hook.bucket_exists(bucket)
    assert not hook.bucket_exists("no-such-bucket-" + secrets.token_hex(3))
    data = b"123456789"
    hook.put_object(bucket, "m/1/saved_model.pb", data)
    remote = hook.head_object(bucket, "m/1/saved_model.pb")
    assert remote is not None and remote.size == 9
    assert remote.crc64 == 0x995DC9BBDF1939FA  # CRC-64/XZ check value of "123456789"
    (tmp_path / "f").write_bytes(data)
    assert local_crc64(tmp_path / "f") == remote.crc64
    assert hook.head_object(bucket, "m/1/missing") is None
    assert [o.key for o in hook.list_objects(bucket, prefix="m/")] == ["m/1/saved_model.pb"]
    assert hook.get_object(bucket, "m/1/saved_model.pb") == data


def test_create_bucket_is_idempotent(oss_conn, bucket):
    OssHook(oss_conn).create_bucket(bucket)
    assert OssHook(oss_conn).bucket_exists(bucket)


def test_bad_credentials_are_terminal(sandbox, bucket):
    conn = sandbox_conn(sandbox)
    conn["password"] = "wrong-secret-000000000000"
    with connection("alibaba_oss_bad", conn) as conn_id, pytest.raises(AlibabaCloudCredentialsError) as err:
        OssHook(conn_id).put_object(bucket, "k", b"x")
    assert err.value.code == "SignatureDoesNotMatch" and err.value.status_code == 403
    assert err.value.request_id


def test_sts_credentials_sign_oss_requests(sandbox, bucket):
    cred = admin_ok(sandbox, "cs", "POST", "/_sandbox/sts", {"duration_seconds": 900})["Credentials"]
    conn = sandbox_conn(sandbox)
    conn.update(login=cred["AccessKeyId"], password=cred["AccessKeySecret"])
    conn["extra"] = {**conn["extra"], "security_token": cred["SecurityToken"]}
    with connection("alibaba_oss_sts", conn) as conn_id:
        hook = OssHook(conn_id)
        hook.put_object(bucket, "sts/key", b"hello")
        assert hook.head_object(bucket, "sts/key").size == 5


def test_server_errors_are_retried(sandbox, oss_conn, bucket):
    attempts = FAST_RETRY["retry_max_attempts"]
    # As many 503s as attempts: the hook gives up with a retryable error (so the faults really fire) ...
    admin_ok(
        sandbox,
        "oss",
        "POST",
        "/_sandbox/faults",
        {"server_error": {"count": attempts, "action": "PutObject", "status": 503}},
    )
    with pytest.raises(AlibabaCloudRetryableError) as err:
        OssHook(oss_conn).put_object(bucket, "retried", b"ok")
    assert err.value.code == "ServiceUnavailable"
    assert OssHook(oss_conn).head_object(bucket, "retried") is None
    # ... one fewer, and the last attempt succeeds.
    admin_ok(
        sandbox,
        "oss",
        "POST",
        "/_sandbox/faults",
        {"server_error": {"count": attempts - 1, "action": "PutObject", "status": 503}},
    )
    OssHook(oss_conn).put_object(bucket, "retried", b"ok")
    assert OssHook(oss_conn).head_object(bucket, "retried").size == 2


def test_test_connection(oss_conn):
    ok, message = OssHook(oss_conn).test_connection()
    assert ok, message


def test_expected_404s_are_not_logged_as_exceptions(oss_conn, bucket, caplog: pytest.LogCaptureFixture):
    """oss2 logs every non-2xx at INFO ("Exception: {...}") before it raises; a missing object on a first upload
    is expected, not an exception to show (issue 14). Other errors still are."""
    import logging

    hook = OssHook(oss_conn)
    with caplog.at_level(logging.INFO, logger="oss2"):
        assert hook.head_object(bucket, "first/upload/missing") is None
        assert not hook.bucket_exists("no-such-bucket-" + secrets.token_hex(3))
    assert not [r for r in caplog.records if r.getMessage().startswith("Exception: ")], caplog.text
    import oss2

    hook.put_object(bucket, "keep", b"x")
    with caplog.at_level(logging.INFO, logger="oss2"), pytest.raises(oss2.exceptions.Conflict):
        hook.get_bucket(bucket).delete_bucket()  # 409 BucketNotEmpty: still logged by oss2, as before
    assert [r for r in caplog.records if "'status': 409" in r.getMessage()], caplog.text
