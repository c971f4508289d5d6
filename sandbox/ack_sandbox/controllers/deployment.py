"""The Deployment controller (pkg/controller/deployment): ReplicaSets per pod template, rolling updates.

- The new ReplicaSet is ``<deployment>-<pod-template-hash>`` with the ``pod-template-hash`` label in its
  selector and template, ``deployment.kubernetes.io/revision`` / ``desired-replicas`` / ``max-replicas``
  annotations.
- RollingUpdate (rolling.go): the new RS grows while total replicas stay <= replicas + maxSurge; old RSs
  shrink while available pods stay >= replicas - maxUnavailable (unhealthy old replicas go first).
  maxSurge rounds up, maxUnavailable rounds down (``ResolveFenceposts``); both 0 -> maxUnavailable 1.
- Recreate: old RSs to 0, wait until their pods are gone, then the new RS to full size.
- Status and conditions as upstream: Available (MinimumReplicasAvailable/Unavailable), Progressing
  (NewReplicaSetCreated, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded), events
  ``ScalingReplicaSet`` "Scaled up replica set X to N from M". Old RSs beyond revisionHistoryLimit are deleted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from typing import Any

from ack_sandbox.controllers.base import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    now_iso,
    owner_ref,
)
from ack_sandbox.k8s.meta import parse_time

log = logging.getLogger("ack_sandbox.controllers.deployment")

REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict[str, Any]) -> str:
    """A stable short hash of the pod template in the alphabet rand.SafeEncodeString uses."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_SAFE))
        out.append(_SAFE[r])
    return "".join(out)


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        frac = float(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


def fenceposts(dep: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as absolute numbers (deploymentutil.ResolveFenceposts)."""
    replicas = int(dep["spec"].get("replicas", 1))
    ru = (dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = _int_or_percent(ru.get("maxSurge"), replicas, True)
    unavailable = _int_or_percent(ru.get("maxUnavailable"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _template_without_hash(rs: Obj) -> dict[str, Any]:
    t = copy.deepcopy(rs["spec"].get("template") or {})
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return t


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def _available(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0))


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def set_dep_condition(
    conds: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str, touch: bool = False
) -> None:
    """Deployment conditions carry lastUpdateTime (moves on every reason change) and lastTransitionTime."""
    now = now_iso()
    for c in conds:
        if c["type"] == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            if touch or c.get("status") != status or c.get("reason") != reason or c.get("message") != message:
                c["lastUpdateTime"] = now
            c.update(status=status, reason=reason, message=message)
            return
    conds.append(
        {
            "type": ctype,
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
    )


class DeploymentController(Controller):
    name = "deployment-controller"
    primary = DEPLOYMENTS
    watches = (REPLICASETS, PODS)
    resync = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_counts: dict[Key, tuple[int, ...]] = {}

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> list[Key]:
        if kind == PODS:
            # Recreate waits for old pods to go; map a pod to its RS's deployment via the RS name convention.
            if etype != "DELETED":
                return []
            ref = controller_of(obj)
            if ref is None or ref.get("kind") != "ReplicaSet":
                return []
            name = ref["name"].rsplit("-", 1)[0]
            return [(obj["metadata"].get("namespace", ""), name)]
        return list(super().map_event(kind, etype, obj))

    async def reconcile(self, key: Key) -> float | None:
        dep = await self.api.get_or_none(DEPLOYMENTS, *key)
        if dep is None or dep["metadata"].get("deletionTimestamp"):
            return None
        ns = key[0]
        uid = dep["metadata"]["uid"]
        rss = [rs for rs in await self.api.list(REPLICASETS, ns) if (controller_of(rs) or {}).get("uid") == uid]
        template = dep["spec"].get("template") or {}
        new_rs = next((rs for rs in rss if _template_without_hash(rs) == template), None)
        old = [rs for rs in rss if rs is not new_rs]
        if dep["spec"].get("paused"):
            return await self._sync_status(dep, new_rs, old, rss)
        max_rev = max((_revision(rs) for rs in rss), default=0)
        if new_rs is None:
            new_rs = await self._create_new_rs(dep, max_rev + 1, old)
            rss.append(new_rs)
            set_dep_condition(
                dep.setdefault("status", {}).setdefault("conditions", []),
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{new_rs["metadata"]["name"]}"',
            )
        elif _revision(new_rs) <= max((_revision(r) for r in old), default=0):
            new_rs["metadata"].setdefault("annotations", {})[REVISION] = str(max_rev + 1)
            new_rs = await self.api.update(REPLICASETS, new_rs)
        strategy = (dep["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            await self._recreate(dep, new_rs, old)
        else:
            await self._rolling(dep, new_rs, old)
        await self._cleanup(dep, [rs for rs in old if _replicas(rs) == 0])
        rss = [rs for rs in await self.api.list(REPLICASETS, ns) if (controller_of(rs) or {}).get("uid") == uid]
        new_rs = next((rs for rs in rss if _template_without_hash(rs) == template), None)
        old = [rs for rs in rss if rs is not new_rs]
        return await self._sync_status(dep, new_rs, old, rss)

    async def _create_new_rs(self, dep: Obj, revision: int, old: list[Obj]) -> Obj:
        template = copy.deepcopy(dep["spec"].get("template") or {})
        h = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(dep["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        surge, _ = fenceposts(dep)
        replicas = int(dep["spec"].get("replicas", 1))
        # A brand-new deployment starts its RS at full size; a rollout starts it at 0 and grows it.
        start = replicas if not any(_replicas(rs) for rs in old) else 0
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{dep['metadata']['name']}-{h}",
                "namespace": dep["metadata"].get("namespace"),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision), DESIRED: str(replicas), MAX_REPLICAS: str(replicas + surge)},
                "ownerReferences": [owner_ref(dep, DEPLOYMENTS)],
            },
            "spec": {
                "replicas": start,
                "minReadySeconds": int(dep["spec"].get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        created = await self.api.create(REPLICASETS, rs)
        if start:
            await self._event_scaled(dep, created, 0, start)
        return created

    async def _scale(self, dep: Obj, rs: Obj, to: int) -> Obj:
        frm = _replicas(rs)
        replicas = int(dep["spec"].get("replicas", 1))
        surge, _ = fenceposts(dep)
        ann = rs["metadata"].setdefault("annotations", {})
        if frm == to and ann.get(DESIRED) == str(replicas):
            return rs
        rs["spec"]["replicas"] = to
        ann[DESIRED] = str(replicas)
        ann[MAX_REPLICAS] = str(replicas + surge)
        updated = await self.api.update(REPLICASETS, rs)
        if frm != to:
            await self._event_scaled(dep, updated, frm, to)
        return updated

    async def _event_scaled(self, dep: Obj, rs: Obj, frm: int, to: int) -> None:
        direction = "up" if to > frm else "down"
        await self.events.record(
            dep,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs['metadata']['name']} to {to} from {frm}",
        )

    async def _recreate(self, dep: Obj, new_rs: Obj, old: list[Obj]) -> None:
        for rs in old:
            if _replicas(rs):
                await self._scale(dep, rs, 0)
        old_uids = {rs["metadata"]["uid"] for rs in old}
        pods = await self.api.list(PODS, dep["metadata"].get("namespace"))
        if any((controller_of(p) or {}).get("uid") in old_uids for p in pods):
            return  # wait until every old pod is gone
        await self._scale(dep, new_rs, int(dep["spec"].get("replicas", 1)))

    async def _rolling(self, dep: Obj, new_rs: Obj, old: list[Obj]) -> None:
        replicas = int(dep["spec"].get("replicas", 1))
        surge, unavailable = fenceposts(dep)
        all_rs = [new_rs, *old]
        # reconcileNewReplicaSet
        if _replicas(new_rs) > replicas:
            new_rs = await self._scale(dep, new_rs, replicas)
        elif _replicas(new_rs) < replicas:
            current = sum(_replicas(rs) for rs in all_rs)
            max_total = replicas + surge
            if current < max_total:
                grow = min(max_total - current, replicas - _replicas(new_rs))
                new_rs = await self._scale(dep, new_rs, _replicas(new_rs) + grow)
        else:
            new_rs = await self._scale(dep, new_rs, replicas)
        # reconcileOldReplicaSets
        old = sorted(old, key=lambda rs: (_revision(rs), rs["metadata"].get("creationTimestamp", "")))
        if not sum(_replicas(rs) for rs in old):
            return
        all_pods = _replicas(new_rs) + sum(_replicas(rs) for rs in old)
        min_available = replicas - unavailable
        new_unavailable = _replicas(new_rs) - _available(new_rs)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return
        # cleanupUnhealthyReplicas: old replicas that are not available go first.
        cleaned = 0
        for i, rs in enumerate(old):
            if cleaned >= max_scaled_down:
                break
            unhealthy = _replicas(rs) - _available(rs)
            if unhealthy <= 0:
                continue
            down = min(unhealthy, max_scaled_down - cleaned)
            old[i] = await self._scale(dep, rs, _replicas(rs) - down)
            cleaned += down
        # scaleDownOldReplicaSetsForRollingUpdate: keep min_available available pods.
        available = _available(new_rs) + sum(min(_available(rs), _replicas(rs)) for rs in old)
        total_down = min(available - min_available, max_scaled_down - cleaned)
        for i, rs in enumerate(old):
            if total_down <= 0:
                break
            if _replicas(rs) == 0:
                continue
            down = min(_replicas(rs), total_down)
            old[i] = await self._scale(dep, rs, _replicas(rs) - down)
            total_down -= down

    async def _cleanup(self, dep: Obj, idle_old: list[Obj]) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        idle = sorted(idle_old, key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            if (rs.get("status") or {}).get("replicas"):
                continue
            await self.api.delete(REPLICASETS, rs["metadata"].get("namespace", ""), rs["metadata"]["name"])

    async def _sync_status(self, dep: Obj, new_rs: Obj | None, old: list[Obj], rss: list[Obj]) -> float | None:
        replicas = int(dep["spec"].get("replicas", 1))
        _, unavailable_allowed = fenceposts(dep)
        st = lambda rs, k: int((rs.get("status") or {}).get(k, 0))  # noqa: E731
        total = sum(st(rs, "replicas") for rs in rss)
        available = sum(st(rs, "availableReplicas") for rs in rss)
        status: dict[str, Any] = copy.deepcopy(dep.get("status") or {})
        status.update(
            {
                "observedGeneration": dep["metadata"].get("generation", 1),
                "replicas": total,
                "updatedReplicas": st(new_rs, "replicas") if new_rs else 0,
                "readyReplicas": sum(st(rs, "readyReplicas") for rs in rss),
                "availableReplicas": available,
                "unavailableReplicas": max(total - available, replicas - available, 0),
            }
        )
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[k]:
                del status[k]
        conds = status.setdefault("conditions", [])
        if available >= replicas - unavailable_allowed:
            set_dep_condition(
                conds, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            set_dep_condition(
                conds,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        requeue: float | None = None
        if new_rs is not None:
            name = new_rs["metadata"]["name"]
            complete = (
                st(new_rs, "replicas") == replicas
                and st(new_rs, "availableReplicas") == replicas
                and not sum(st(rs, "replicas") for rs in old)
                and _replicas(new_rs) == replicas
            )
            prog = next((c for c in conds if c["type"] == "Progressing"), None)
            deadline = int(dep["spec"].get("progressDeadlineSeconds", 600))
            if complete:
                set_dep_condition(
                    conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{name}" has successfully progressed.',
                )
            elif dep["spec"].get("paused"):
                set_dep_condition(conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
            else:
                last = (
                    parse_time((prog or {}).get("lastUpdateTime"))
                    if prog and prog.get("reason") in ("ReplicaSetUpdated", "NewReplicaSetCreated")
                    else None
                )
                progressed = self._progressed(dep, status)
                if prog is not None and prog.get("reason") == "ProgressDeadlineExceeded" and not progressed:
                    requeue = 30.0
                elif last is not None and not progressed and time.time() - last > self.ctx.clock.real_seconds(deadline):
                    set_dep_condition(
                        conds,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{name}" has timed out progressing.',
                    )
                    await self.events.record(
                        dep,
                        "Warning",
                        "ProgressDeadlineExceeded",
                        f'Deployment "{dep["metadata"]["name"]}" has timed out progressing.',
                    )
                else:
                    if (
                        progressed
                        or prog is None
                        or prog.get("reason") not in ("ReplicaSetUpdated", "NewReplicaSetCreated")
                    ):
                        set_dep_condition(
                            conds,
                            "Progressing",
                            "True",
                            "ReplicaSetUpdated",
                            f'ReplicaSet "{name}" is progressing.',
                            touch=progressed,
                        )
                    requeue = min(float(deadline), 30.0)
        order = {"Available": 0, "Progressing": 1, "ReplicaFailure": 2}
        conds.sort(key=lambda c: order.get(c["type"], 9))
        if status != (dep.get("status") or {}):
            dep["status"] = status
            await self.api.update_status(DEPLOYMENTS, dep)
        self._last_counts[(dep["metadata"].get("namespace", ""), dep["metadata"]["name"])] = self._counts(status)
        return requeue

    @staticmethod
    def _counts(status: dict[str, Any]) -> tuple[int, ...]:
        return tuple(
            int(status.get(k, 0)) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        )

    def _progressed(self, dep: Obj, status: dict[str, Any]) -> bool:
        """Did the rollout move since the last sync (new pods updated/ready/available)?"""
        key = (dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
        before = self._last_counts.get(key)
        return before is None or before != self._counts(status)
