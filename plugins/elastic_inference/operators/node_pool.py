"""Ensure an ACK node pool by name: create it, or bring the existing one to the requested spec. Never a second pool."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from elastic_inference.exceptions import (
    AlibabaCloudTerminalError,
    NodePoolFailedError,
    WaitTimeoutError,
)
from elastic_inference.hooks.base import ack_conn_id_from
from elastic_inference.node_pool_spec import NodePoolSpec
from elastic_inference.triggers.node_pool import NodePoolStateTrigger, node_pool_verdict, pool_state
from elastic_inference.waits import default_deferrable, defer_timeout, raise_for_event

SPEC_FIELDS = tuple(NodePoolSpec.__dataclass_fields__)
EXECUTION_TIMEOUT_SLACK_SECONDS = 300  # create/modify calls and the deferral's own slack


class AckNodePoolOperator(BaseOperator):
    """Create or update the node pool called ``name`` in an ACK cluster (idempotent).

    Takes every :class:`~elastic_inference.node_pool_spec.NodePoolSpec` field as a keyword (``name``,
    ``instance_types``, ``vswitch_ids``, ``min_instances``, ``max_instances``, ``spot_strategy``,
    ``spot_price_limit``, ``labels``, ``taints``, ``multi_az_policy``, ``on_demand_base_capacity``,
    ``on_demand_percentage_above_base_capacity``, ``compensate_with_on_demand``, ...), or all of them as
    ``node_pool={...}``. They are templated and validated in ``execute`` before any cloud call.

    The pool is looked up by name; when it exists, only the fields that differ are modified (no call when
    nothing differs). XCom: ``nodepool_id``, ``task_id`` (the CS task, or None), ``created``, ``modified``,
    and the return value ``{"nodepool_id", "task_id", "created", "modified", "changes", "state"}``.

    :param cluster_id: the ACK cluster (templated); default: the connection's ``extra.cluster_id``.
    :param ack_conn_id: the ``alibaba_ack`` connection (``alibaba_cloud_conn_id``: its deprecated name).
    :param wait_for_active: wait until the pool is ``active`` (fails fast with ACK's cause on failure).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param poll_interval: seconds between state checks while waiting.
    :param wait_timeout: seconds to wait for ``active``.
    """

    template_fields: Sequence[str] = ("cluster_id", "node_pool")
    template_fields_renderers = {"node_pool": "json"}
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        node_pool: dict[str, Any] | str | None = None,
        cluster_id: str | None = None,
        ack_conn_id: str = "alibaba_ack_default",
        wait_for_active: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 15.0,
        wait_timeout: float = 30 * 60,
        **kwargs: Any,
    ) -> None:
        spec_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in SPEC_FIELDS}
        ack_conn_id = ack_conn_id_from(ack_conn_id, kwargs, type(self).__name__)
        if wait_for_active and "execution_timeout" not in kwargs:
            # One try never outlives its wait (a deferred try included: Airflow caps the deferral with it).
            kwargs["execution_timeout"] = timedelta(seconds=wait_timeout + EXECUTION_TIMEOUT_SLACK_SECONDS)
        super().__init__(**kwargs)
        # A string is a template (e.g. "{{ params.node_pool }}") rendered before execute.
        self.node_pool = node_pool if isinstance(node_pool, str) else {**(node_pool or {}), **spec_kwargs}
        self.cluster_id = cluster_id
        self.ack_conn_id = ack_conn_id
        self.wait_for_active = wait_for_active
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self._killed = threading.Event()

    def on_kill(self) -> None:
        """Stop waiting (a non-deferred wait polls in the worker). The pool and any CS task in flight are left as
        they are: a re-run finds the pool by name and adopts it; a deferred wait ends with the trigger."""
        self._killed.set()

    def _hook(self) -> Any:
        from elastic_inference.hooks.ack import AckHook

        return AckHook(self.ack_conn_id, cluster_id=self.cluster_id)

    def ensure(self, hook: Any, spec: NodePoolSpec) -> dict[str, Any]:
        """Find-or-create, then modify-if-different. Returns the result dict (no waiting)."""
        current = hook.find_node_pool(spec.name)
        created = modified = False
        changes: list[str] = []
        task_id = None
        if current is None:
            self.log.info("node pool %r not found: creating it", spec.name)
            try:
                response = hook.create_node_pool(spec.to_create_body())
            except AlibabaCloudTerminalError:
                # A retried create whose first attempt reached the server, or a concurrent run: the pool may
                # now exist. Never create a second one: adopt it if it is there, otherwise re-raise.
                current = hook.find_node_pool(spec.name)
                if current is None:
                    raise
                self.log.warning("create failed but pool %r exists now: adopting it", spec.name)
            else:
                created = True
                nodepool_id, task_id = response.get("nodepool_id"), response.get("task_id")
                if not nodepool_id:
                    raise AirflowException(f"CreateClusterNodePool returned no nodepool_id: {response}")
                self.log.info("created node pool %s (task %s)", nodepool_id, task_id)
        if current is not None:
            nodepool_id = (current.get("nodepool_info") or {}).get("nodepool_id")
            state = pool_state(current)
            self.log.info("found node pool %r: %s, state %r", spec.name, nodepool_id, state)
            if state == "failed" and spec.diff(hook.describe_node_pool(nodepool_id)).empty:
                # A retry would only wait for a pool that stays failed: stop here with ACK's cause.
                verdict = node_pool_verdict(current, None, nodepool_id=str(nodepool_id or ""))
                raise NodePoolFailedError(
                    f"{verdict.message}. Repair or scale the pool in the ACK console (or delete it; a re-run"
                    " creates it again), or change the spec so the pool is modified"
                )
            if state == "deleting":
                raise NodePoolFailedError(
                    f"node pool {spec.name!r} ({nodepool_id}) is being deleted; wait for the "
                    "deletion to finish and re-run to create it again"
                )
            diff = spec.diff(hook.describe_node_pool(nodepool_id))
            if diff.empty:
                self.log.info("node pool %s already matches the requested spec: nothing to modify", nodepool_id)
            else:
                changes = diff.changes
                for line in changes:
                    self.log.info("will change %s", line)
                response = hook.modify_node_pool(nodepool_id, diff.body)
                modified = True
                task_id = response.get("task_id")
        return {
            "nodepool_id": nodepool_id,
            "task_id": task_id,
            "created": created,
            "modified": modified,
            "changes": changes,
        }

    def execute(self, context: Any) -> dict[str, Any]:
        # The rendered node_pool (a dict, or its text when not rendered natively): coerced once, by the spec.
        spec = NodePoolSpec.from_mapping(self.node_pool)
        spec.validate(cluster_vswitches=True)  # everything but the vSwitches, before any cloud call
        hook = self._hook()
        if not spec.vswitch_ids:
            # Like the console: no vSwitches chosen means the cluster's own (one per zone it spans).
            spec = dataclasses.replace(spec, vswitch_ids=list(hook.describe_cluster().get("vswitch_ids") or []))
            self.log.info("vswitch_ids not given: using the cluster's vSwitches %s", spec.vswitch_ids)
        spec = spec.validate()
        result = self.ensure(hook, spec)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            for key in ("nodepool_id", "task_id", "created", "modified"):
                ti.xcom_push(key=key, value=result[key])
        if not self.wait_for_active:
            return result
        if self.deferrable:
            self.defer(
                trigger=NodePoolStateTrigger(
                    nodepool_id=result["nodepool_id"],
                    cluster_id=self.cluster_id,
                    ack_conn_id=self.ack_conn_id,
                    poll_interval=self.poll_interval,
                    cs_task_id=result["task_id"],
                    end_time=time.time() + self.wait_timeout,
                ),
                method_name="execute_complete",
                kwargs={"result": result},
                timeout=defer_timeout(self.wait_timeout),
            )
        return {**result, "state": self._wait_sync(hook, result)}

    def _wait_sync(self, hook: Any, result: dict[str, Any]) -> str:
        deadline = time.monotonic() + self.wait_timeout
        state = ""
        for _ in range(100_000):
            pool = hook.describe_node_pool(result["nodepool_id"])
            task = hook.describe_task(result["task_id"]) if result["task_id"] else None
            verdict = node_pool_verdict(pool, task, nodepool_id=result["nodepool_id"])
            state = verdict.details["state"]
            if verdict.state == "success":
                return state
            if verdict.state == "error":
                raise NodePoolFailedError(verdict.message)
            if time.monotonic() >= deadline:
                break
            if self._killed.wait(min(self.poll_interval, max(0.0, deadline - time.monotonic()))):
                raise WaitTimeoutError(f"node pool {result['nodepool_id']}: the wait was stopped (task killed)")
        raise WaitTimeoutError(
            f"node pool {result['nodepool_id']} not active after {self.wait_timeout}s (last state {state!r})"
        )

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, result: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        done = raise_for_event(event, self.task_id, failed=NodePoolFailedError)
        self.log.info("%s", done.get("message"))
        # `airflow dags test` resumes without the defer() kwargs: fall back to what the event carries.
        return {**(result or {"nodepool_id": done.get("nodepool_id")}), "state": done.get("state")}
