"""Provider exceptions: one tree under :class:`ElasticInferenceError`, terminal vs transient explicit.

* :class:`TerminalError` - retrying cannot help (an invalid spec, a model TF Serving cannot load, bad
  credentials or permissions, a node pool or pod in a failed state). Also an ``AirflowFailException``, so
  Airflow does not retry the task into the same wall, whatever the DAG's ``retries``.
* :class:`TransientError` - throttling, 5xx, timeouts, connection errors still failing after the hook's own
  backoff, or a wait that ran out of time: a plain ``AirflowException``, so Airflow task retries may help.

Alibaba Cloud API failures (:class:`AlibabaCloudApiError`, with Code/Message/RequestId) come in both kinds:
:class:`AlibabaCloudRetryableError` and :class:`AlibabaCloudTerminalError`. Kubernetes API failures
(``hooks.kubernetes.KubernetesApiError``) are in the tree too.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class ElasticInferenceError(AirflowException):
    """Base of every error the provider raises."""


class TransientError(ElasticInferenceError):
    """Worth an Airflow retry: the cause may be gone next time."""


class TerminalError(ElasticInferenceError, AirflowFailException):
    """Not worth a retry: the message names the cause and the fix."""


class AlibabaCloudApiError(ElasticInferenceError):
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


class AlibabaCloudRetryableError(AlibabaCloudApiError, TransientError):
    """A transient failure (throttling, 5xx, timeout, connection) that outlived the hook's retries."""


class AlibabaCloudTerminalError(AlibabaCloudApiError, TerminalError):
    """A failure that retrying cannot fix (credentials, permissions, quota, invalid parameter, not found)."""


class AlibabaCloudCredentialsError(AlibabaCloudTerminalError):
    """The connection's credentials are missing, malformed or rejected by the service."""


class SpecError(TerminalError, ValueError):
    """A run spec (node pool, model, serving, load test) is invalid; each of ``problems`` names the field and
    the fix."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class NodePoolSpecError(SpecError):
    """The requested node pool spec is invalid; the message names the field and the fix."""


class ModelLayoutError(TerminalError, ValueError):
    """The model source is not a layout TensorFlow Serving can load; the message names what is missing."""


class WaitFailedError(TerminalError):
    """What a wait watched reached a terminal failure state; the message carries the cluster's cause."""


class NodePoolFailedError(WaitFailedError):
    """The node pool reached a terminal failure state (``failed``/``deleting``) or its CS task failed."""


class ResourceFailedError(WaitFailedError):
    """The cluster reported a terminal state for what we wait on (PVC Lost, CrashLoopBackOff, sdep Failed...)."""


class WaitTimeoutError(TransientError):
    """A wait ran past its deadline without a terminal state (a retry waits again)."""


# The Kubernetes side's historical name for the timeout.
ResourceWaitTimeout = WaitTimeoutError
