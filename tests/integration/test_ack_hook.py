"""The CS hook through the real alibabacloud-cs20151215 SDK over HTTP against the sandbox's CS stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from elastic_inference.exceptions import AlibabaCloudCredentialsError, AlibabaCloudRetryableError
from elastic_inference.hooks.ack import AckAsyncHook, AckHook
from tests.integration.support import FAST_RETRY, admin_ok, connection, sandbox_conn

pytestmark = pytest.mark.integration


@pytest.fixture
def fast_conn(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_ack_fast", conn) as conn_id:
        yield conn_id
    admin_ok(sandbox, "cs", "DELETE", "/_sandbox/faults")


def test_the_sandbox_connection_reaches_the_cluster(sandbox):
    with connection("alibaba_ack_default", sandbox_conn(sandbox)):
        ok, message = AckHook().test_connection()
    assert ok, message
    assert sandbox["cluster_id"] in message


def test_cluster_detail_nodes_and_kubeconfig(sandbox, fast_conn):
    hook = AckHook(fast_conn)
    cluster = hook.describe_cluster()
    assert cluster["cluster_id"] == sandbox["cluster_id"]
    assert cluster["vswitch_ids"]
    assert isinstance(hook.list_node_pools(), list)
    assert isinstance(hook.list_cluster_nodes(), list)
    kubeconfig = hook.get_user_kubeconfig()
    assert "clusters:" in kubeconfig and "users:" in kubeconfig


def test_bad_credentials_fail_at_once_with_code_and_request_id(sandbox):
    conn = sandbox_conn(sandbox)
    conn["login"] = "LTAI5tNotARealKey000000"
    with connection("alibaba_ack_badkey", conn) as conn_id, pytest.raises(AlibabaCloudCredentialsError) as err:
        AckHook(conn_id).describe_cluster()
    e = err.value
    assert e.code.startswith("InvalidAccessKeyId")
    assert e.request_id
    assert "DescribeClusterDetail failed" in str(e) and "AccessKey" in str(e)


def test_wrong_secret_is_a_credentials_error(sandbox):
    conn = sandbox_conn(sandbox)
    conn["password"] = "wrong-secret-000000000000"
    with (
        connection("alibaba_ack_badsecret", conn) as conn_id,
        pytest.raises(AlibabaCloudCredentialsError, match="SignatureDoesNotMatch"),
    ):
        AckHook(conn_id).describe_cluster()


@pytest.mark.parametrize("retry_after_ms", [0, 30])
def test_throttling_is_retried_then_succeeds(sandbox, fast_conn, retry_after_ms, capsys):
    admin_ok(
        sandbox,
        "cs",
        "POST",
        "/_sandbox/faults",
        {"throttle": {"count": 2, "action": "DescribeClusterDetail", "retry_after": retry_after_ms}},
    )
    cluster = AckHook(fast_conn).describe_cluster()
    assert cluster["cluster_id"] == sandbox["cluster_id"]
    assert admin_ok(sandbox, "cs", "GET", "/_sandbox/faults")["throttle"]["count"] == 0  # both throttled calls happened
    out = capsys.readouterr()
    assert (out.out + out.err).count("failed with Throttling.User") == 2  # logged before each sleep


def test_server_errors_are_retried_then_succeed(sandbox, fast_conn):
    admin_ok(
        sandbox,
        "cs",
        "POST",
        "/_sandbox/faults",
        {"server_error": {"count": 2, "action": "DescribeClusterNodePools", "status": 503}},
    )
    assert isinstance(AckHook(fast_conn).list_node_pools(), list)
    assert admin_ok(sandbox, "cs", "GET", "/_sandbox/faults")["server_error"]["count"] == 0


def test_persistent_throttling_gives_up_with_a_retryable_error(sandbox, fast_conn):
    admin_ok(sandbox, "cs", "POST", "/_sandbox/faults", {"throttle": {"count": 10, "action": "DescribeClusterDetail"}})
    with pytest.raises(AlibabaCloudRetryableError) as err:
        AckHook(fast_conn).describe_cluster()
    assert err.value.code == "Throttling.User"
    assert (
        admin_ok(sandbox, "cs", "GET", "/_sandbox/faults")["throttle"]["count"] == 10 - FAST_RETRY["retry_max_attempts"]
    )


def test_sts_credentials_work_and_a_bad_token_is_terminal(sandbox):
    cred = admin_ok(sandbox, "cs", "POST", "/_sandbox/sts", {"duration_seconds": 900})["Credentials"]
    conn = sandbox_conn(sandbox)
    conn.update(login=cred["AccessKeyId"], password=cred["AccessKeySecret"])
    conn["extra"] = {**conn["extra"], "security_token": cred["SecurityToken"]}
    with connection("alibaba_ack_sts", conn) as conn_id:
        hook = AckHook(conn_id)
        assert hook.settings.credential_type == "sts"
        assert hook.describe_cluster()["cluster_id"] == sandbox["cluster_id"]
    conn["extra"]["security_token"] = "not-the-token"
    with (
        connection("alibaba_ack_sts_bad", conn) as conn_id,
        pytest.raises(AlibabaCloudCredentialsError, match="InvalidSecurityToken"),
    ):
        AckHook(conn_id).describe_cluster()


def test_secrets_stay_out_of_the_settings_repr(sandbox):
    with connection("alibaba_ack_default", sandbox_conn(sandbox)):
        settings = AckHook().settings
    assert sandbox["access_key_secret"] not in repr(settings)


async def test_async_hook_reads_the_connection_without_blocking(sandbox, fast_conn):
    admin_ok(sandbox, "cs", "POST", "/_sandbox/faults", {"throttle": {"count": 1, "action": "DescribeClusterDetail"}})
    hook = AckAsyncHook(fast_conn)
    cluster = await hook.adescribe_cluster()
    assert cluster["cluster_id"] == sandbox["cluster_id"]
    assert isinstance(await hook.alist_node_pools(), list)
