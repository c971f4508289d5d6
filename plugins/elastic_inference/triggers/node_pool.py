"""Wait for an ACK node pool to become ``active``; fail fast with the cause when it fails.

States (terraform-provider-alicloud ``resource_alicloud_cs_kubernetes_node_pool.go``, ref. §1.5): pending
``initial``/``scaling``/``updating``/``removing``, target ``active``, failure ``failed``/``deleting``.
A CS task (DescribeTaskInfo) in ``fail``/``failed`` is a failure too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from elastic_inference.exceptions import AlibabaCloudRetryableError, AlibabaCloudTerminalError
from elastic_inference.k8s_objects import Verdict, is_no_stock

ACTIVE_STATES = frozenset({"active"})
FAILED_STATES = frozenset({"failed", "deleting", "deleted"})
FAILED_TASK_STATES = frozenset({"fail", "failed"})
MAX_POLLS = 100_000  # a hard bound on top of the deadline


def pool_state(pool: Mapping[str, Any]) -> str:
    return str((pool.get("status") or {}).get("state") or "")


def failure_cause(pool: Mapping[str, Any] | None, task: Mapping[str, Any] | None = None) -> str:
    """The why of a failure, from the pool's status conditions and the CS task's error/events."""
    reasons: list[str] = []
    status = (pool or {}).get("status") or {}
    for cond in status.get("conditions") or []:
        if str(cond.get("status", "")).lower() in ("false", "unknown") or cond.get("reason"):
            text = ": ".join(x for x in (cond.get("type"), cond.get("reason"), cond.get("message")) if x)
            if text:
                reasons.append(text)
    if status.get("failed_nodes"):
        reasons.append(f"{status['failed_nodes']} node(s) failed")
    if task:
        err = task.get("error") or {}
        if err.get("code") or err.get("message"):
            reasons.append(
                f"task {task.get('task_id', '')} error {err.get('code', '')}: {err.get('message', '')}".strip()
            )
        for ev in task.get("events") or []:
            if str(ev.get("level", "")).lower() in ("error", "warning") and ev.get("message"):
                reasons.append(f"{ev.get('reason') or 'event'}: {ev['message']}")
        for stage in task.get("stages") or []:
            if str(stage.get("state", "")).lower() in FAILED_TASK_STATES and stage.get("message"):
                reasons.append(f"stage: {stage['message']}")
    return "; ".join(dict.fromkeys(reasons)) or "no cause reported by ACK (check the node pool's events in the console)"


def node_pool_verdict(
    pool: Mapping[str, Any], task: Mapping[str, Any] | None = None, *, nodepool_id: str = ""
) -> Verdict:
    """The node-pool state rules, in one place (trigger, operator, sensor): ``active`` is success; a failure
    state of the pool, or a failed CS task, is an error with ACK's cause; anything else is pending.
    ``details`` carries ``state`` (and ``nodepool_id``)."""
    pool_id = nodepool_id or str((pool.get("nodepool_info") or {}).get("nodepool_id") or "")
    state = pool_state(pool)
    details = {"state": state, "nodepool_id": pool_id}
    if state in ACTIVE_STATES:
        return Verdict("success", f"node pool {pool_id} is active", details)
    task_state = str((task or {}).get("state") or "").lower()
    if state in FAILED_STATES or task_state in FAILED_TASK_STATES:
        what = (
            f"is {state!r}"
            if state in FAILED_STATES
            else f"task {(task or {}).get('task_id', '')} {task_state!r} (pool {state!r})"
        )
        cause = failure_cause(pool, task)
        if is_no_stock(cause):
            cause = (
                f"out of stock - {cause}; add instance types or vSwitches (zones) to the pool, allow pay-as-you-go"
                " (compensate_with_on_demand), or retry later"
            )
        return Verdict("error", f"node pool {pool_id} {what}: {cause}", details)
    return Verdict("pending", f"node pool {pool_id} is {state!r}", details)


class NodePoolStateTrigger(BaseTrigger):
    """Poll DescribeClusterNodePoolDetail (async) until the pool is active, failed, or ``end_time`` passes.

    Yields exactly one event: ``{"status": "success"|"error"|"timeout", "message", "nodepool_id", "state"}``.

    :param end_time: absolute deadline (epoch seconds) so a triggerer restart keeps the original deadline.
    :param cs_task_id: the CS task from create/modify; its failure ends the wait early with its error. (Not
        ``task_id``: BaseTrigger sets that attribute to the Airflow task's id in the triggerer.)
    """

    def __init__(
        self,
        *,
        nodepool_id: str,
        end_time: float,
        cluster_id: str | None = None,
        ack_conn_id: str = "alibaba_ack_default",
        poll_interval: float = 15.0,
        cs_task_id: str | None = None,
        alibaba_cloud_conn_id: str | None = None,  # deprecated name (triggers serialized before the rename)
    ) -> None:
        super().__init__()
        self.ack_conn_id = alibaba_cloud_conn_id or ack_conn_id
        self.nodepool_id = nodepool_id
        self.end_time = float(end_time)
        self.cluster_id = cluster_id
        self.poll_interval = float(poll_interval)
        self.cs_task_id = cs_task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "elastic_inference.triggers.node_pool.NodePoolStateTrigger",
            {
                "nodepool_id": self.nodepool_id,
                "end_time": self.end_time,
                "cluster_id": self.cluster_id,
                "ack_conn_id": self.ack_conn_id,
                "poll_interval": self.poll_interval,
                "cs_task_id": self.cs_task_id,
            },
        )

    def _hook(self) -> Any:
        from elastic_inference.hooks.ack import AckAsyncHook

        return AckAsyncHook(self.ack_conn_id, cluster_id=self.cluster_id)

    def _event(self, status: str, message: str, state: str) -> TriggerEvent:
        return TriggerEvent({"status": status, "message": message, "nodepool_id": self.nodepool_id, "state": state})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        state = ""
        for _ in range(MAX_POLLS):
            try:
                pool = await hook.adescribe_node_pool(self.nodepool_id)
                state = pool_state(pool)
                task = await hook.adescribe_task(self.cs_task_id) if self.cs_task_id else None
            except AlibabaCloudRetryableError as e:  # already retried with backoff; keep waiting until the deadline
                self.log.warning("node pool %s: still failing after retries (%s); polling on", self.nodepool_id, e)
            except AlibabaCloudTerminalError as e:
                yield self._event("error", f"cannot read node pool {self.nodepool_id}: {e}", state)
                return
            else:
                verdict = node_pool_verdict(pool, task, nodepool_id=self.nodepool_id)
                if verdict.done:
                    yield self._event(verdict.state, verdict.message, state)
                    return
                self.log.info(
                    "waiting for node pool %s to be active: %s; next check in %.1f s | %.0f s left to the deadline",
                    self.nodepool_id,
                    verdict.message,
                    self.poll_interval,
                    max(0.0, self.end_time - time.time()),
                )
            remaining = self.end_time - time.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(self.poll_interval, remaining))
        yield self._event(
            "timeout", f"node pool {self.nodepool_id} not active by the deadline (last state {state!r})", state
        )
