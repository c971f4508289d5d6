"""Provider exceptions.

Two kinds of Alibaba Cloud API failure, so Airflow does the right thing with each:

* :class:`AlibabaCloudRetryableError` - throttling, 5xx, timeouts, connection errors that were still failing
  after the hook's own backoff. A plain ``AirflowException``: Airflow task retries may help.
* :class:`AlibabaCloudTerminalError` - bad credentials, missing permission, quota, invalid parameter, not
  found. Also an ``AirflowFailException``, so Airflow does not retry the task into the same wall.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class AlibabaCloudApiError(AirflowException):
    """An Alibaba Cloud API call failed. Carries the service's Code, Message and RequestId."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status_code: int | None = None,
        request_id: str = "",
        operation: str = "",
        retry_after_seconds: float | None = None,
    ) -> None:
        self.code = code or ""
        self.message = message
        self.status_code = status_code
        self.request_id = request_id or ""
        self.operation = operation
        self.retry_after_seconds = retry_after_seconds
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.operation:
            parts.append(f"{self.operation} failed")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.code:
            parts.append(f"Code: {self.code}")
        parts.append(f"Message: {self.message}")
        if self.request_id:
            parts.append(f"RequestId: {self.request_id}")
        return " | ".join(parts)


class AlibabaCloudRetryableError(AlibabaCloudApiError):
    """A transient failure (throttling, 5xx, timeout, connection) that outlived the hook's retries."""


class AlibabaCloudTerminalError(AlibabaCloudApiError, AirflowFailException):
    """A failure that retrying cannot fix (credentials, permissions, quota, invalid parameter, not found)."""


class AlibabaCloudCredentialsError(AlibabaCloudTerminalError):
    """The connection's credentials are missing, malformed or rejected by the service."""


class SpecError(AirflowFailException, ValueError):
    """A run spec (node pool, model, serving, load test) is invalid; each of ``problems`` names the field and
    the fix."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class NodePoolSpecError(SpecError):
    """The requested node pool spec is invalid; the message names the field and the fix."""


class NodePoolFailedError(AirflowException):
    """The node pool reached a terminal failure state (``failed``/``deleting``) or its task failed."""


class ModelLayoutError(AirflowFailException, ValueError):
    """The model source is not a layout TensorFlow Serving can load; the message names what is missing."""
