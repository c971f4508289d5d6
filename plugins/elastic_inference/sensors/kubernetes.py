"""Sensors for objects created elsewhere: a PVC Bound, a SeldonDeployment Available, an Ingress with an address.

Deferrable: they defer at once to the same watch triggers the operators use. In poke mode each poke lists the
same collections once and applies the same verdict function; a terminal state fails the task at once
(``AirflowFailException``, no retries) instead of poking until the timeout, and an API that does not answer
(refused, 429/5xx) is "not yet".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook, ResourceFailedError, is_transient
from elastic_inference.k8s_objects import Json
from elastic_inference.triggers.ingress import IngressAddressTrigger
from elastic_inference.triggers.seldon import SeldonDeploymentTrigger
from elastic_inference.triggers.volume import PvcBoundTrigger
from elastic_inference.waits import default_deferrable, defer_timeout, list_snapshot, raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context

    from elastic_inference.triggers.kubernetes_watch import KubernetesWatchTrigger


class _KubernetesWatchSensor(BaseSensorOperator):
    """Base of the deploy sensors.

    :param name: object name. (templated)
    :param namespace: its namespace. (templated)
    :param kubernetes_conn_id: / ``ack_conn_id`` / ``cluster_id`` / ``cluster_context``: cluster access, as for
        the operators (:class:`~elastic_inference.operators._kubernetes.KubernetesApplyOperator`).
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).
    :param watch_timeout_seconds: server-side timeout of each watch request (it is resumed after).
    """

    template_fields: Sequence[str] = ("name", "namespace", "kubernetes_conn_id", "ack_conn_id", "cluster_id")
    trigger_class: type[KubernetesWatchTrigger]

    def __init__(
        self,
        *,
        name: str,
        namespace: str = "default",
        kubernetes_conn_id: str | None = "kubernetes_default",
        ack_conn_id: str | None = None,
        cluster_id: str | None = None,
        cluster_context: str | None = None,
        deferrable: bool | None = None,
        watch_timeout_seconds: int = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.ack_conn_id = ack_conn_id
        self.cluster_id = cluster_id
        self.cluster_context = cluster_context
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.watch_timeout_seconds = watch_timeout_seconds
        self._hook: KubeHook | None = None

    @property
    def access(self) -> KubeAccess:
        return KubeAccess(
            kubernetes_conn_id=self.kubernetes_conn_id,
            ack_conn_id=self.ack_conn_id,
            cluster_id=self.cluster_id,
            cluster_context=self.cluster_context,
        )

    def trigger_kwargs(self) -> dict[str, Any]:
        return {}

    def make_trigger(self, deadline: float) -> KubernetesWatchTrigger:
        return self.trigger_class(
            access=self.access.to_dict(),
            namespace=self.namespace,
            name=self.name,
            deadline=deadline,
            watch_timeout_seconds=self.watch_timeout_seconds,
            **self.trigger_kwargs(),
        )

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            timeout = float(self.timeout)
            self.defer(
                trigger=self.make_trigger(time.time() + timeout),
                method_name="execute_complete",
                timeout=defer_timeout(timeout),
            )
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue:
        if self._hook is None:
            self._hook = KubeHook(self.access)
        trigger = self.make_trigger(time.time())
        try:
            snapshot = list_snapshot(self._hook, trigger.watches())
        except Exception as exc:
            if not is_transient(exc):
                raise
            # An API outage (or throttling) outlasted the hook's own retries: not done yet, poke again until the
            # sensor's timeout, as the deferrable wait rides it out until its deadline.
            self.log.warning("the Kubernetes API did not answer (%s); poking again", exc)
            return PokeReturnValue(is_done=False)
        verdict = trigger.evaluate(snapshot, datetime.now(UTC))
        self.log.info("%s", verdict.message)
        if verdict.state == "error":
            raise ResourceFailedError(f"{self.task_id}: {verdict.message}")
        return PokeReturnValue(
            is_done=verdict.state == "success", xcom_value=verdict.event() if verdict.state == "success" else None
        )

    def execute_complete(self, context: Context, event: Json) -> Json:
        return raise_for_event(event, self.task_id)


class PvcBoundSensor(_KubernetesWatchSensor):
    """Wait for a PersistentVolumeClaim to be Bound. :param pv_name: the PV it should bind (checked too)."""

    trigger_class = PvcBoundTrigger

    def __init__(self, *, pv_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pv_name = pv_name

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"pv_name": self.pv_name}


class SeldonDeploymentSensor(_KubernetesWatchSensor):
    """Wait for a SeldonDeployment to be Available (fails fast on pod failures and ``state: Failed``)."""

    trigger_class = SeldonDeploymentTrigger

    def __init__(self, *, unschedulable_grace_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unschedulable_grace_seconds = unschedulable_grace_seconds

    def trigger_kwargs(self) -> dict[str, Any]:
        return {"unschedulable_grace_seconds": self.unschedulable_grace_seconds}


class IngressAddressSensor(_KubernetesWatchSensor):
    """Wait for an Ingress to have an address in ``status.loadBalancer.ingress``."""

    trigger_class = IngressAddressTrigger
