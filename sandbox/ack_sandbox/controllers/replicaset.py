"""The ReplicaSet controller (pkg/controller/replicaset): keep ``spec.replicas`` active pods.

Pods are created from the template with ``generateName: <rs>-`` and a controller ownerReference; excess
pods are deleted in the upstream order (``ActivePodsWithRanks``: unscheduled before scheduled, Pending
before Running, not-ready before ready, the most recently ready first, more restarts first, newer first).
Orphan pods matching the selector are adopted. Status: replicas, fullyLabeledReplicas, readyReplicas,
availableReplicas (ready for ``minReadySeconds``), observedGeneration; events SuccessfulCreate /
SuccessfulDelete / FailedCreate.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from ack_sandbox.controllers.base import (
    PODS,
    REPLICASETS,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    get_condition,
    owner_ref,
)
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import labels_match, parse_time, selector_from_label_selector

log = logging.getLogger("ack_sandbox.controllers.replicaset")

BURST_REPLICAS = 500


def pod_is_active(pod: Obj) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def pod_is_ready(pod: Obj) -> bool:
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_available(pod: Obj, min_ready_seconds: float, now: float) -> bool:
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(get_condition(pod, "Ready").get("lastTransitionTime")) or now  # type: ignore[union-attr]
    return since + min_ready_seconds <= now


def _deletion_rank(pod: Obj) -> tuple[Any, ...]:
    """Sort key: the pod to delete first sorts first (controller.ActivePods Less)."""
    st = pod.get("status", {})
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase", "Pending"), 0)
    ready = pod_is_ready(pod)
    ready_since = parse_time((get_condition(pod, "Ready") or {}).get("lastTransitionTime")) or 0.0
    restarts = max((c.get("restartCount", 0) for c in st.get("containerStatuses") or []), default=0)
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    return (
        bool(pod.get("spec", {}).get("nodeName")),
        phase_rank,
        ready,
        -ready_since if ready else 0.0,
        -restarts,
        -created,
    )


def pod_from_template(rs: Obj, kind: Kind = REPLICASETS) -> Obj:
    template = copy.deepcopy(rs["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {
        "generateName": rs["metadata"]["name"] + "-",
        "namespace": rs["metadata"].get("namespace", "default"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_ref(rs, kind)],
    }
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    primary = REPLICASETS
    watches = (PODS,)
    resync = 30.0

    def selector(self, rs: Obj) -> Any:
        return selector_from_label_selector(rs["spec"].get("selector"))

    async def reconcile(self, key: Key) -> float | None:
        rs = await self.api.get_or_none(self.primary, *key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        ns = key[0]
        selector = self.selector(rs)
        uid = rs["metadata"]["uid"]
        owned: list[Obj] = []
        for pod in await self.api.list(PODS, ns):
            ref = controller_of(pod)
            if ref is not None:
                if ref.get("uid") == uid:
                    owned.append(pod)
                continue
            if selector and labels_match(selector, pod["metadata"].get("labels")) and pod_is_active(pod):
                owned.append(await self._adopt(rs, pod))
        active = [p for p in owned if pod_is_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        diff = len(active) - want
        failure: str | None = None
        if diff < 0:
            for _ in range(min(-diff, BURST_REPLICAS)):
                try:
                    pod = await self.api.create(PODS, pod_from_template(rs, self.primary))
                except ApiError as exc:
                    failure = exc.message
                    await self.events.record(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                    break
                active.append(pod)
                await self.events.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        elif diff > 0:
            victims = sorted(active, key=_deletion_rank)[:diff]
            for pod in victims:
                await self.api.delete(PODS, ns, pod["metadata"]["name"])
                active.remove(pod)
                await self.events.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        return await self._update_status(rs, active, failure)

    async def _adopt(self, rs: Obj, pod: Obj) -> Obj:
        refs = list(pod["metadata"].get("ownerReferences") or []) + [owner_ref(rs, self.primary)]
        try:
            return await self.api.patch(
                PODS,
                pod["metadata"].get("namespace", ""),
                pod["metadata"]["name"],
                {"metadata": {"ownerReferences": refs}},
            )
        except ApiError:
            return pod

    async def _update_status(self, rs: Obj, active: list[Obj], failure: str | None) -> float | None:
        now = time.time()
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        tlabels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = [p for p in active if pod_is_ready(p)]
        # minReadySeconds is compressed by the time scale like every other delay of the sandbox.
        min_ready_real = self.ctx.clock.real_seconds(min_ready)
        available = [p for p in active if pod_is_available(p, min_ready_real, now)]
        status: dict[str, Any] = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        conds = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if failure:
            conds.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": failure,
                    "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                }
            )
        if conds:
            status["conditions"] = conds
        for k in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
            if not status[k]:
                del status[k]  # omitempty, as the API serialises zero counts
        if status != {k: v for k, v in (rs.get("status") or {}).items()}:
            rs["status"] = status
            await self.api.update_status(self.primary, rs)
        if min_ready and len(ready) > len(available):
            return float(min_ready)  # re-check availability once the window has passed
        return None
