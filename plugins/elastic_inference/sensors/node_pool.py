"""Sensor: an ACK node pool is ``active``. Deferrable; fails fast with ACK's cause on ``failed``/``deleting``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowException

from elastic_inference.exceptions import NodePoolFailedError
from elastic_inference.triggers.node_pool import (
    ACTIVE_STATES,
    FAILED_STATES,
    FAILED_TASK_STATES,
    NodePoolStateTrigger,
    failure_cause,
    pool_state,
)


def raise_for_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """Turn a NodePoolStateTrigger event into a return value or the right exception."""
    if not event:
        raise AirflowException("node pool trigger ended without an event")
    if event.get("status") == "success":
        return event
    if event.get("status") == "timeout":
        raise AirflowException(event.get("message") or "node pool wait timed out")
    raise NodePoolFailedError(event.get("message") or "node pool failed")


class NodePoolActiveSensor(BaseSensorOperator):
    """Wait until node pool ``nodepool_id`` is ``active``.

    :param nodepool_id: the pool (templated), e.g. ``{{ ti.xcom_pull('node_pool')['nodepool_id'] }}``.
    :param cluster_id: the cluster (templated); default: the connection's ``extra.cluster_id``.
    :param task_id_to_watch: optional CS task id (templated) whose failure ends the wait at once.
    :param deferrable: hand the wait to the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("nodepool_id", "cluster_id", "task_id_to_watch")

    def __init__(
        self,
        *,
        nodepool_id: str,
        cluster_id: str | None = None,
        task_id_to_watch: str | None = None,
        alibaba_cloud_conn_id: str = "alibaba_ack_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 15)
        kwargs.setdefault("timeout", 30 * 60)
        super().__init__(**kwargs)
        self.nodepool_id = nodepool_id
        self.cluster_id = cluster_id
        self.task_id_to_watch = task_id_to_watch
        self.alibaba_cloud_conn_id = alibaba_cloud_conn_id
        self.deferrable = deferrable

    def _hook(self) -> Any:
        from elastic_inference.hooks.ack import AckHook

        return AckHook(self.alibaba_cloud_conn_id, cluster_id=self.cluster_id)

    def poke(self, context: Any) -> bool:
        hook = self._hook()
        pool = hook.describe_node_pool(self.nodepool_id)
        state = pool_state(pool)
        task = hook.describe_task(self.task_id_to_watch) if self.task_id_to_watch else None
        if state in ACTIVE_STATES:
            return True
        task_state = str((task or {}).get("state") or "").lower()
        if state in FAILED_STATES or task_state in FAILED_TASK_STATES:
            raise NodePoolFailedError(f"node pool {self.nodepool_id} is {state!r}: {failure_cause(pool, task)}")
        self.log.info("node pool %s is %r", self.nodepool_id, state)
        return False

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):  # already active: no need to occupy the triggerer
            return {"status": "success", "nodepool_id": self.nodepool_id, "state": "active"}
        timeout = float(self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else self.timeout)
        self.defer(
            trigger=NodePoolStateTrigger(
                nodepool_id=self.nodepool_id,
                cluster_id=self.cluster_id,
                alibaba_cloud_conn_id=self.alibaba_cloud_conn_id,
                poll_interval=float(self.poke_interval if not isinstance(self.poke_interval, timedelta)
                                    else self.poke_interval.total_seconds()),
                cs_task_id=self.task_id_to_watch,
                end_time=time.time() + timeout,
            ),
            method_name="execute_complete",
            # A little slack so the trigger's own, more informative timeout event wins.
            timeout=timedelta(seconds=timeout + 60),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = raise_for_event(event)
        self.log.info("%s", result.get("message"))
        return result
