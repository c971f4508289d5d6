"""The one place Alibaba Cloud calls are retried: tenacity, exponential backoff with jitter, ``retry_after`` honoured.

Neither SDK retries on its own (cs20151215's ``Config.retry_options`` is None; oss2 has no HTTP retries),
so every hook call goes through :func:`call` or :func:`acall`. Terminal errors are raised on the first
attempt; transient ones are retried and, when attempts run out, raised as ``AlibabaCloudRetryableError``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from elastic_inference.hooks.errors import error_info, is_retryable, to_provider_error

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures. ``max_attempts`` counts the first call too."""

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5  # fraction of the computed wait added at random

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry max_attempts must be >= 1 (1 disables retries)")
        if self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("retry waits must be >= 0 seconds")

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> RetryPolicy:
        """Read ``retry_max_attempts`` / ``retry_initial_wait`` / ``retry_max_wait`` from connection extras."""
        kwargs: dict[str, Any] = {}
        for field, key, conv in (
            ("max_attempts", "retry_max_attempts", int),
            ("initial_wait", "retry_initial_wait", float),
            ("max_wait", "retry_max_wait", float),
        ):
            value = extras.get(key)
            if value not in (None, ""):
                try:
                    kwargs[field] = conv(value)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"connection extra {key}={value!r} is not a number") from e
        return cls(**kwargs)

    def wait_seconds(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before attempt ``attempt + 1``; the server's ``retry_after`` wins when it is longer."""
        base = min(self.max_wait, self.initial_wait * (self.multiplier ** max(0, attempt - 1)))
        wait = base + random.uniform(0, base * self.jitter)
        if retry_after:
            wait = max(wait, min(retry_after, self.max_wait))
        return min(wait, self.max_wait)


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    def compute(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        info = error_info(exc) if exc else None
        return policy.wait_seconds(state.attempt_number, info.retry_after_seconds if info else None)

    return compute


def _before_sleep(
    operation: str, logger: logging.Logger | logging.LoggerAdapter
) -> Callable[[tenacity.RetryCallState], None]:
    def hook(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        info = error_info(exc) if exc else None
        what = f"{info.code or 'transport error'} (HTTP {info.status_code})" if info else repr(exc)
        logger.warning(
            "%s: attempt %d failed with %s%s; retrying in %.2fs",
            operation,
            state.attempt_number,
            what,
            f" RequestId={info.request_id}" if info and info.request_id else "",
            state.upcoming_sleep,
        )

    return hook


def _retrying_kwargs(policy: RetryPolicy, operation: str, logger: Any) -> dict[str, Any]:
    return {
        "stop": tenacity.stop_after_attempt(policy.max_attempts),
        "wait": _wait(policy),
        "retry": tenacity.retry_if_exception(is_retryable),
        "before_sleep": _before_sleep(operation, logger),
        "reraise": True,
    }


def call(
    fn: Callable[..., T],
    *args: Any,
    policy: RetryPolicy,
    operation: str,
    logger: Any = log,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)`` with retries; SDK errors leave as provider errors."""
    try:
        for attempt in tenacity.Retrying(**_retrying_kwargs(policy, operation, logger)):
            with attempt:
                return fn(*args, **kwargs)
    except Exception as exc:
        if error_info(exc) is None:
            raise
        raise to_provider_error(exc, operation) from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def acall(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    policy: RetryPolicy,
    operation: str,
    logger: Any = log,
    **kwargs: Any,
) -> T:
    """Async twin of :func:`call` (waits with ``asyncio.sleep``, never blocking the triggerer's loop)."""
    try:
        async for attempt in tenacity.AsyncRetrying(**_retrying_kwargs(policy, operation, logger)):
            with attempt:
                return await fn(*args, **kwargs)
    except Exception as exc:
        if error_info(exc) is None:
            raise
        raise to_provider_error(exc, operation) from exc
    raise AssertionError("unreachable")  # pragma: no cover
