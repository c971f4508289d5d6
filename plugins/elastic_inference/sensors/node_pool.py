"""Sensor: an ACK node pool is ``active``. Deferrable; fails fast with ACK's cause on ``failed``/``deleting``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator

from elastic_inference.exceptions import NodePoolFailedError
from elastic_inference.hooks.base import ack_conn_id_from
from elastic_inference.triggers.node_pool import NodePoolStateTrigger, node_pool_verdict
from elastic_inference.waits import default_deferrable, defer_timeout, raise_for_event


def _seconds(value: float | timedelta) -> float:
    return float(value.total_seconds() if isinstance(value, timedelta) else value)


class NodePoolActiveSensor(BaseSensorOperator):
    """Wait until node pool ``nodepool_id`` is ``active``.

    :param nodepool_id: the pool (templated), e.g. ``{{ ti.xcom_pull('node_pool')['nodepool_id'] }}``.
    :param cluster_id: the cluster (templated); default: the connection's ``extra.cluster_id``.
    :param task_id_to_watch: optional CS task id (templated) whose failure ends the wait at once.
    :param ack_conn_id: the ``alibaba_ack`` connection (``alibaba_cloud_conn_id``: its deprecated name).
    :param deferrable: hand the wait to the triggerer (default ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("nodepool_id", "cluster_id", "task_id_to_watch")

    def __init__(
        self,
        *,
        nodepool_id: str,
        cluster_id: str | None = None,
        task_id_to_watch: str | None = None,
        ack_conn_id: str = "alibaba_ack_default",
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        ack_conn_id = ack_conn_id_from(ack_conn_id, kwargs, type(self).__name__)
        kwargs.setdefault("poke_interval", 15)
        kwargs.setdefault("timeout", 30 * 60)
        super().__init__(**kwargs)
        self.nodepool_id = nodepool_id
        self.cluster_id = cluster_id
        self.task_id_to_watch = task_id_to_watch
        self.ack_conn_id = ack_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _hook(self) -> Any:
        from elastic_inference.hooks.ack import AckHook

        return AckHook(self.ack_conn_id, cluster_id=self.cluster_id)

    def poke(self, context: Any) -> bool:
        hook = self._hook()
        pool = hook.describe_node_pool(self.nodepool_id)
        task = hook.describe_task(self.task_id_to_watch) if self.task_id_to_watch else None
        verdict = node_pool_verdict(pool, task, nodepool_id=self.nodepool_id)
        if verdict.state == "error":
            raise NodePoolFailedError(verdict.message)
        if verdict.state == "pending":
            self.log.info("%s", verdict.message)
        return verdict.state == "success"

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):  # already active: no need to occupy the triggerer
            return {"status": "success", "nodepool_id": self.nodepool_id, "state": "active"}
        timeout = _seconds(self.timeout)
        self.defer(
            trigger=NodePoolStateTrigger(
                nodepool_id=self.nodepool_id,
                cluster_id=self.cluster_id,
                ack_conn_id=self.ack_conn_id,
                poll_interval=_seconds(self.poke_interval),
                cs_task_id=self.task_id_to_watch,
                end_time=time.time() + timeout,
            ),
            method_name="execute_complete",
            timeout=defer_timeout(timeout),  # slack so the trigger's own, more informative timeout event wins
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = raise_for_event(event, self.task_id, failed=NodePoolFailedError)
        self.log.info("%s", result.get("message"))
        return result
