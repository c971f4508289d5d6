"""Classify Alibaba Cloud SDK failures as retryable or terminal, by error code and status - never by class alone.

Facts this relies on (read in the SDK sources shipped in the venv):

* ``alibabacloud_tea_openapi`` raises ``ThrottlingException`` only when ``x-acs-retry-after`` is set;
  a 429 or 400 ``Throttling.User`` without it is a plain ``ClientException``. So the code decides.
* ``retry_after`` is in **milliseconds** (``darabonba/policy/retry.py`` compares it with
  ``MAX_DELAY_TIME = 120 * 1000`` and sleeps ``millisecond / 1000``).
* Transport failures (connection refused, read timeout) surface as ``darabonba UnretryableException``
  whose ``inner_exception`` is ``darabonba.exceptions.RetryError`` (raised from an ``IOError``).
* oss2 raises ``RequestError`` (status -2) for transport failures, ``ServerError`` subclasses keyed by
  (HTTP status, Code) for service errors, ``InconsistentError`` (-3) for a CRC mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

from elastic_inference.exceptions import (
    AlibabaCloudApiError,
    AlibabaCloudCredentialsError,
    AlibabaCloudRetryableError,
    AlibabaCloudTerminalError,
)

RETRYABLE_CODE_PREFIXES = (
    "Throttling",  # Throttling, Throttling.User, Throttling.Api, Throttling.Concurrent
    "ServiceUnavailable",
    "InternalError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeTooSkewed",  # clock skew between retries; a fresh signature fixes it
    "OperationConflict",  # CS: another operation on the cluster/pool is still running
    "SystemBusy",
    "ServiceBusy",
)

CREDENTIAL_CODES = (
    "InvalidAccessKeyId",
    "InvalidAccessKeySecret",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "MissingSecurityToken",
    "SecurityTokenExpired",
    "InvalidCredentials",
    "NoCredentials",
)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ErrorInfo:
    """What the service said, independent of which SDK raised it."""

    code: str
    message: str
    status_code: int | None
    request_id: str
    retry_after_seconds: float | None
    transport: bool = False  # no HTTP answer at all (connection, timeout)

    @property
    def retryable(self) -> bool:
        if self.transport:
            return True
        if self.code and any(self.code.startswith(p) for p in RETRYABLE_CODE_PREFIXES):
            return True
        if self.code and is_credential_code(self.code):
            return False
        return self.status_code in RETRYABLE_STATUS


def is_credential_code(code: str) -> bool:
    return any(code.startswith(c) for c in CREDENTIAL_CODES)


def _tea_info(exc: Exception) -> ErrorInfo | None:
    """Alibaba OpenAPI (tea/darabonba) exceptions: ClientException/ServerException/ThrottlingException."""
    try:
        from Tea.exceptions import TeaException, UnretryableException
    except ImportError:  # pragma: no cover - the SDK is a hard dependency
        return None
    if isinstance(exc, UnretryableException):
        inner = getattr(exc, "inner_exception", None)
        if type(inner).__name__ == "RetryError" or isinstance(inner, (OSError, TimeoutError)):
            return ErrorInfo("", str(inner), None, "", None, transport=True)
        # e.g. "Failed to parse the value as json format": the answer is malformed, retrying won't fix it.
        return ErrorInfo("UnretryableException", str(inner or exc), None, "", None)
    if not isinstance(exc, TeaException):
        return None
    data = exc.data if isinstance(getattr(exc, "data", None), dict) else {}
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None) or data.get("statusCode")
    request_id = getattr(exc, "request_id", None) or data.get("RequestId") or data.get("requestId") or ""
    message = data.get("Message") or data.get("message") or getattr(exc, "message", None) or str(exc)
    retry_after_ms = getattr(exc, "retry_after", None)
    return ErrorInfo(
        code=str(getattr(exc, "code", "") or data.get("Code") or data.get("code") or ""),
        message=str(message),
        status_code=int(status) if status is not None else None,
        request_id=str(request_id),
        retry_after_seconds=(retry_after_ms / 1000.0) if retry_after_ms else None,
    )


def _oss_info(exc: Exception) -> ErrorInfo | None:
    try:
        import oss2.exceptions as oe
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, oe.RequestError):
        return ErrorInfo("", str(getattr(exc, "body", "") or exc), None, "", None, transport=True)
    if isinstance(exc, oe.InconsistentError):
        # A CRC mismatch means the bytes were damaged in flight: sending them again is the fix.
        return ErrorInfo(
            "InconsistentError",
            "CRC64 mismatch between client and server",
            None,
            getattr(exc, "request_id", "") or "",
            None,
            transport=True,
        )
    if isinstance(exc, oe.OssError):
        status = exc.status if isinstance(exc.status, int) and exc.status > 0 else None
        return ErrorInfo(exc.code or "", exc.message or str(exc), status, exc.request_id or "", None)
    return None


def _generic_transport(exc: BaseException) -> ErrorInfo | None:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return ErrorInfo("", repr(exc), None, "", None, transport=True)
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return ErrorInfo("", repr(exc), None, "", None, transport=True)
    except ImportError:  # pragma: no cover
        pass
    try:
        import aiohttp

        if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError)):
            return ErrorInfo("", repr(exc), None, "", None, transport=True)
    except ImportError:  # pragma: no cover
        pass
    return None


def error_info(exc: BaseException) -> ErrorInfo | None:
    """The service's view of ``exc``, or None when it is not a cloud/transport failure (a bug: re-raise)."""
    if isinstance(exc, AlibabaCloudApiError):
        return ErrorInfo(
            exc.code,
            exc.message,
            exc.status_code,
            exc.request_id,
            exc.retry_after_seconds,
            transport=isinstance(exc, AlibabaCloudRetryableError) and not exc.code,
        )
    if isinstance(exc, Exception):
        return _tea_info(exc) or _oss_info(exc) or _generic_transport(exc)
    return None


def is_retryable(exc: BaseException) -> bool:
    info = error_info(exc)
    return info is not None and info.retryable


def to_provider_error(exc: BaseException, operation: str = "") -> AlibabaCloudApiError:
    """Translate an SDK exception into the provider's retryable/terminal error (call with ``raise ... from exc``)."""
    if isinstance(exc, AlibabaCloudApiError):
        return exc
    info = error_info(exc)
    if info is None:
        return AlibabaCloudTerminalError(f"{type(exc).__name__}: {exc}", operation=operation)
    if info.retryable:
        cls: type[AlibabaCloudApiError] = AlibabaCloudRetryableError
    elif is_credential_code(info.code) or info.status_code == 401:
        cls = AlibabaCloudCredentialsError
    else:
        cls = AlibabaCloudTerminalError
    message = info.message
    if cls is AlibabaCloudCredentialsError:
        message += (
            " - check the connection's login (AccessKey ID), password (AccessKey secret) and, for STS,"
            " extra.security_token (it may have expired)"
        )
    return cls(
        message,
        code=info.code,
        status_code=info.status_code,
        request_id=info.request_id,
        operation=operation,
        retry_after_seconds=info.retry_after_seconds,
    )
