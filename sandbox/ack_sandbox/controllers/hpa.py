"""The horizontal-pod-autoscaler controller (kube-controller-manager's), over the sandbox store.

Every sync period (15 s cloud time, ``--horizontal-pod-autoscaler-sync-period``) each HPA is
reconciled: the scale target's ``spec.replicas`` / ``status.replicas`` are read, each metric fetched
(External metrics through ``metrics.external_metric_values`` — the same code the
external.metrics.k8s.io API serves), ``hpa_algorithm.decide`` computes the new size, the target is
scaled (``spec.replicas``), events are recorded (SuccessfulRescale, FailedGetScale,
FailedGetExternalMetric, FailedComputeMetricsReplicas, FailedRescale) and the HPA status written only
when it changed. Watch events never make an HPA sync more often than once per period, as upstream's
rate-limited queue ensures; a new HPA is synced at once.
"""

from __future__ import annotations

import logging
from typing import Any

from ack_sandbox.context import SandboxContext
from ack_sandbox.controllers import hpa_algorithm as alg
from ack_sandbox.controllers.base import DEPLOYMENTS, HPAS, KINDS_BY_NAME, PODS, Controller, Key, now_iso
from ack_sandbox.controllers.metrics import external_metric_values
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import label_selector_string

log = logging.getLogger("ack_sandbox.controllers.hpa")


def _pod_ready(pod: dict) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


class HpaController(Controller):
    name = "horizontal-pod-autoscaler"
    primary = HPAS
    resync = None  # the per-key requeue every sync period replaces the informer resync

    def __init__(
        self,
        ctx: SandboxContext,
        sync_period: float = alg.SYNC_PERIOD_SECONDS,
        tolerance: float = alg.TOLERANCE,
        **kw: Any,
    ) -> None:
        super().__init__(ctx, **kw)
        self.sync_period = sync_period
        self.tolerance = tolerance
        self.memory: dict[Key, alg.HpaMemory] = {}
        self.last_sync: dict[Key, tuple[float, str]] = {}  # key -> (cloud time, uid)

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        hpa = await self.api.get_or_none(HPAS, ns, name)
        if hpa is None:
            self.memory.pop(key, None)
            self.last_sync.pop(key, None)
            return None
        now = self.ctx.clock.now()
        uid = hpa["metadata"].get("uid", "")
        last = self.last_sync.get(key)
        if last is not None and last[1] == uid and now - last[0] < self.sync_period:
            return self.sync_period - (now - last[0])
        if last is not None and last[1] != uid:
            self.memory.pop(key, None)
        self.last_sync[key] = (now, uid)
        await self.sync(hpa, key, now)
        return self.sync_period

    async def sync(self, hpa: dict, key: Key, now: float) -> None:
        ns = key[0]
        spec, old_status = hpa.get("spec") or {}, dict(hpa.get("status") or {})
        ref = spec.get("scaleTargetRef") or {}
        kind = KINDS_BY_NAME.get(ref.get("kind", ""))
        target = None
        error = ""
        if kind is None or kind != DEPLOYMENTS:
            error = f'no matches for kind "{ref.get("kind")}" in group "{ref.get("apiVersion", "").split("/")[0]}"'
        else:
            try:
                target = await self.api.get(DEPLOYMENTS, ns, ref.get("name", ""))
            except ApiError as exc:
                error = exc.message
        if target is None:
            await self.events.record(hpa, "Warning", "FailedGetScale", error)
            conds = [dict(c) for c in old_status.get("conditions") or []]
            alg.set_condition(
                conds,
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {error}",
                now_iso(),
            )
            await self._write_status(hpa, {**old_status, "conditions": conds})
            return

        spec_replicas = int((target.get("spec") or {}).get("replicas", 1))
        status_replicas = int((target.get("status") or {}).get("replicas") or 0)
        selector = label_selector_string((target.get("spec") or {}).get("selector"))
        ready = 0
        outcomes: list[alg.MetricResult | alg.MetricError] = []
        needs_ready = any(
            ((m.get("external") or {}).get("target") or {}).get("type") == "Value" for m in spec.get("metrics") or []
        )
        if needs_ready:
            ready = sum(1 for p in await self.api.list(PODS, ns, label_selector=selector) if _pod_ready(p))
        for metric in spec.get("metrics") or []:
            outcomes.append(self._metric(ns, metric, spec_replicas, status_replicas, ready))

        memory = self.memory.setdefault(key, alg.HpaMemory())
        decision = alg.decide(hpa, spec_replicas, status_replicas, ready, outcomes, memory, now, stamp=now_iso())
        events = list(decision.events)
        conds = decision.conditions
        rescaled = False
        if decision.rescale:
            try:
                await self.api.patch(
                    DEPLOYMENTS, ns, target["metadata"]["name"], {"spec": {"replicas": decision.desired_replicas}}
                )
                rescaled = True
            except ApiError as exc:
                events = [e for e in events if e[1] != "SuccessfulRescale"]
                events.append(
                    (
                        "Warning",
                        "FailedRescale",
                        f"New size: {decision.desired_replicas}; reason: {decision.reason}; error: {exc.message}",
                    )
                )
                alg.set_condition(
                    conds,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc.message}",
                    now_iso(),
                )
        for etype, reason, message in events:
            await self.events.record(hpa, etype, reason, message)
        if rescaled:
            log.info(
                "Successful rescale of %s/%s, old size: %d, new size: %d, reason: %s",
                ns,
                key[1],
                decision.current_replicas,
                decision.desired_replicas,
                decision.reason,
            )
        new_status: dict[str, Any] = {
            "currentReplicas": decision.current_replicas,
            "desiredReplicas": decision.desired_replicas
            if rescaled or not decision.rescale
            else decision.current_replicas,
            "conditions": conds,
        }
        if decision.metric_statuses:
            new_status["currentMetrics"] = decision.metric_statuses
        if hpa["metadata"].get("generation") is not None:
            new_status["observedGeneration"] = hpa["metadata"]["generation"]
        last_scale = now_iso() if rescaled else old_status.get("lastScaleTime")
        if last_scale:
            new_status["lastScaleTime"] = last_scale
        await self._write_status(hpa, new_status)

    def _metric(
        self, ns: str, metric: dict, spec_replicas: int, status_replicas: int, ready: int
    ) -> alg.MetricResult | alg.MetricError:
        mtype = metric.get("type")
        if mtype != "External":
            reason = {
                "Resource": "FailedGetResourceMetric",
                "Pods": "FailedGetPodsMetric",
                "Object": "FailedGetObjectMetric",
                "ContainerResource": "FailedGetContainerResourceMetric",
            }
            return alg.MetricError(
                reason.get(mtype or "", "InvalidMetricSourceType"),
                f"unable to get metrics for {mtype}: no metrics server runs in this sandbox; "
                f"use an External metric (sls_ingress_qps)",
            )
        ext = metric.get("external") or {}
        m = ext.get("metric") or {}
        selector = label_selector_string(m.get("selector"))
        try:
            values = external_metric_values(self.ctx, m.get("name", ""), selector)
            return alg.external_metric_result(metric, values, spec_replicas, status_replicas, ready, self.tolerance)
        except ApiError as exc:
            return alg.MetricError(
                "FailedGetExternalMetric",
                f"failed to get {m.get('name')} external metric: unable to get external metric "
                f"{ns}/{m.get('name')}/{alg.selector_text(m.get('selector'))}: {exc.message}",
            )
        except (alg.MetricError, ValueError) as exc:
            return exc if isinstance(exc, alg.MetricError) else alg.MetricError("FailedGetExternalMetric", str(exc))

    async def _write_status(self, hpa: dict, status: dict) -> None:
        old = hpa.get("status") or {}
        if status == old:
            return
        obj = dict(hpa)
        obj["status"] = status
        try:
            await self.api.update_status(HPAS, obj)
        except ApiError as exc:
            if exc.code == 409:  # a newer HPA was written meanwhile: next sync writes again
                return
            await self.events.record(hpa, "Warning", "FailedUpdateStatus", exc.message)
            raise


async def start(ctx: SandboxContext) -> list[Controller]:
    """Start the HPA controller; ``await c.stop()`` on each returned controller to stop."""
    ctrl = HpaController(ctx)
    await ctrl.start()
    return [ctrl]
