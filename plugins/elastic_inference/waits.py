"""Waiting, for operators and sensors alike (neither imports the other): whether to defer by default, the
deferral timeout with slack so the trigger's own deadline reports first, the trigger event → task outcome, and
the one-shot list snapshot a poke-mode sensor evaluates like a watch trigger does.

Every trigger yields one event ``{"status": "success"|"error"|"timeout", "message", ...}``: success is the
result, error a terminal failure (no Airflow retries), timeout a transient one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from elastic_inference.exceptions import ResourceFailedError, WaitFailedError, WaitTimeoutError

if TYPE_CHECKING:
    from elastic_inference.hooks.kubernetes import KubeHook
    from elastic_inference.triggers.kubernetes_watch import Snapshot, WatchSpec

# Slack between the trigger's own deadline and Airflow's deferral timeout, so the trigger reports first.
DEFER_TIMEOUT_SLACK_SECONDS = 60


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` (False when unset)."""
    from airflow.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def defer_timeout(wait_seconds: float) -> timedelta:
    """Airflow's deferral timeout for a trigger whose own deadline is ``wait_seconds`` away."""
    return timedelta(seconds=float(wait_seconds) + DEFER_TIMEOUT_SLACK_SECONDS)


def raise_for_event(
    event: Mapping[str, Any] | None, what: str, failed: type[WaitFailedError] = ResourceFailedError
) -> dict[str, Any]:
    """A trigger event as the task outcome: success → the event; error → ``failed`` (terminal, no retry);
    timeout → :class:`WaitTimeoutError` (transient); no event at all → a transient error too."""
    if not event:
        raise WaitTimeoutError(f"{what}: the trigger ended without an event")
    status = event.get("status")
    if status == "success":
        return dict(event)
    message = event.get("message") or "no message"
    if status == "timeout":
        raise WaitTimeoutError(f"{what}: timed out: {message}")
    raise failed(f"{what}: {message}")


def list_snapshot(hook: KubeHook, specs: Sequence[WatchSpec]) -> Snapshot:
    """One synchronous list per watch spec, in the shape :class:`WatchLoop` keeps (for poke-mode sensors)."""
    from elastic_inference.hooks.kubernetes import KubernetesApiError

    snapshot: Snapshot = {}
    for spec in specs:
        query = {"labelSelector": spec.label_selector, "fieldSelector": spec.field_selector}
        try:
            lst = hook.request("GET", spec.path, query=query, operation=f"list {spec.key}")
        except KubernetesApiError as e:
            if not (e.status == 400 and spec.field_selector_optional and spec.field_selector):
                raise
            lst = hook.request("GET", spec.path, query={"labelSelector": spec.label_selector})
        items = {}
        for item in lst.get("items") or []:
            item.setdefault("kind", spec.kind)
            meta = item.get("metadata") or {}
            items[f"{meta.get('namespace', '')}/{meta.get('name', '')}"] = item
        snapshot[spec.key] = items
    return snapshot
