"""Error classification and the retry wrapper (pure logic: SDK exception objects built as the SDK builds them)."""

from __future__ import annotations

import logging

import pytest
from airflow.sdk.exceptions import AirflowFailException
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException

from elastic_inference.exceptions import (
    AlibabaCloudCredentialsError,
    AlibabaCloudRetryableError,
    AlibabaCloudTerminalError,
)
from elastic_inference.hooks import retry
from elastic_inference.hooks.errors import error_info, is_retryable, to_provider_error

FAST = retry.RetryPolicy(max_attempts=4, initial_wait=0.0, max_wait=0.0)


def _client(code: str, status: int = 400, request_id: str = "req-1") -> ClientException:
    return ClientException(
        code=code,
        status_code=status,
        message=f"code: {status}, msg request id: {request_id}",
        request_id=request_id,
        data={"code": code, "message": "msg", "requestId": request_id},
    )


@pytest.mark.parametrize("code", ["Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable"])
def test_throttling_is_classified_by_code_not_class(code):
    assert is_retryable(_client(code, status=400))


def test_5xx_is_retryable_and_4xx_parameter_errors_are_not():
    assert is_retryable(ServerException(code="InternalError", status_code=500, message="boom"))
    assert is_retryable(ServerException(code="Whatever", status_code=503, message="x"))
    assert not is_retryable(_client("InvalidParameter.Name"))
    assert not is_retryable(_client("QuotaExceeded.NodePool"))
    assert not is_retryable(_client("ErrorClusterNotFound", 404))


def test_throttling_exception_retry_after_is_milliseconds():
    exc = ThrottlingException(code="Throttling.User", status_code=429, message="slow down", retry_after=1500)
    assert error_info(exc).retry_after_seconds == 1.5
    assert FAST.wait_seconds(1, 1.5) == 0.0  # capped by max_wait
    assert retry.RetryPolicy(initial_wait=0.1, max_wait=10, jitter=0).wait_seconds(1, 1.5) == 1.5


def test_terminal_errors_carry_code_message_and_request_id():
    err = to_provider_error(_client("InvalidParameter.Name", request_id="ABC-123"), "CreateClusterNodePool")
    assert isinstance(err, AlibabaCloudTerminalError) and isinstance(err, AirflowFailException)
    assert (err.code, err.request_id, err.status_code) == ("InvalidParameter.Name", "ABC-123", 400)
    assert "CreateClusterNodePool failed" in str(err) and "RequestId: ABC-123" in str(err)


def test_bad_credentials_become_a_credentials_error_with_the_fix():
    err = to_provider_error(_client("InvalidAccessKeyId.NotFound", 404))
    assert isinstance(err, AlibabaCloudCredentialsError)
    assert "AccessKey" in str(err)


def test_call_retries_transient_then_succeeds(caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _client("Throttling.User", 429)
        return "ok"

    with caplog.at_level(logging.WARNING):
        assert retry.call(flaky, policy=FAST, operation="DescribeX") == "ok"
    assert len(calls) == 3
    assert "DescribeX: attempt 1 failed with Throttling.User" in caplog.text


def test_call_raises_terminal_at_once():
    calls = []

    def bad():
        calls.append(1)
        raise _client("InvalidParameter")

    with pytest.raises(AlibabaCloudTerminalError):
        retry.call(bad, policy=FAST, operation="CreateX")
    assert len(calls) == 1


def test_call_gives_up_after_max_attempts_with_a_retryable_error():
    calls = []

    def down():
        calls.append(1)
        raise ServerException(code="ServiceUnavailable", status_code=503, message="down")

    with pytest.raises(AlibabaCloudRetryableError) as err:
        retry.call(down, policy=FAST, operation="DescribeX")
    assert len(calls) == FAST.max_attempts
    assert not isinstance(err.value, AirflowFailException)


def test_bugs_are_not_swallowed():
    with pytest.raises(KeyError):
        retry.call(lambda: {}["x"], policy=FAST, operation="X")


async def test_acall_retries_transient_then_succeeds():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise ServerException(code="InternalError", status_code=500, message="x")
        return 7

    assert await retry.acall(flaky, policy=FAST, operation="X") == 7
    assert len(calls) == 2


def test_retry_policy_from_extras_names_the_bad_value():
    assert retry.RetryPolicy.from_extras({"retry_max_attempts": "2"}).max_attempts == 2
    with pytest.raises(ValueError, match="retry_initial_wait"):
        retry.RetryPolicy.from_extras({"retry_initial_wait": "soon"})
