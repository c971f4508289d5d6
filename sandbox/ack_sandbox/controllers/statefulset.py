"""The StatefulSet controller (pkg/controller/statefulset): pods ``<set>-0 .. <set>-(N-1)`` with stable names.

Each pod gets ``hostname`` = its name, ``subdomain`` = ``spec.serviceName``, the labels
``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and ``controller-revision-hash``, and one
PVC per ``volumeClaimTemplates`` entry (``<template>-<pod>``, kept when the pod or the set goes: the Retain
policy), mounted as the template's volume name. ``OrderedReady`` creates ordinal i only once 0..i-1 are Running
and Ready and removes the highest ordinal first, one at a time; ``Parallel`` does all at once. A template change
rolls pods from the highest ordinal down to ``partition`` (RollingUpdate), one at a time, each after the others
are ready. Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
currentRevision, updateRevision, collisionCount, observedGeneration.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any

from ack_sandbox.controllers.base import (
    PODS,
    PVCS,
    STATEFULSETS,
    Controller,
    Key,
    Obj,
    controller_of,
    owner_ref,
)
from ack_sandbox.controllers.replicaset import pod_is_ready

log = logging.getLogger("ack_sandbox.controllers.statefulset")

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


def revision(sts: Obj) -> str:
    raw = json.dumps(sts["spec"].get("template") or {}, sort_keys=True).encode()
    return f"{sts['metadata']['name']}-{hashlib.sha256(raw).hexdigest()[:10]}"


def _ordinal(sts: Obj, pod: Obj) -> int | None:
    prefix = sts["metadata"]["name"] + "-"
    name = pod["metadata"]["name"]
    tail = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def pod_for(sts: Obj, ordinal: int) -> Obj:
    template = copy.deepcopy(sts["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    name = f"{sts['metadata']['name']}-{ordinal}"
    labels = dict(tmeta.get("labels") or {})
    labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision(sts)})
    spec = template.get("spec") or {}
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    vols = [v for v in spec.get("volumes") or [] if v.get("name") not in _claim_names(sts)]
    for t in sts["spec"].get("volumeClaimTemplates") or []:
        vols.append({"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name(t, name)}})
    if vols:
        spec["volumes"] = vols
    md: dict[str, Any] = {
        "name": name,
        "namespace": sts["metadata"].get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [owner_ref(sts, STATEFULSETS)],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def _claim_names(sts: Obj) -> set[str]:
    return {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []}


def claim_name(template: Obj, pod_name: str) -> str:
    return f"{template['metadata']['name']}-{pod_name}"


class StatefulSetController(Controller):
    name = "statefulset-controller"
    primary = STATEFULSETS
    watches = (PODS,)
    resync = 30.0

    async def reconcile(self, key: Key) -> float | None:
        sts = await self.api.get_or_none(STATEFULSETS, *key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        uid = sts["metadata"]["uid"]
        pods = [p for p in await self.api.list(PODS, key[0]) if (controller_of(p) or {}).get("uid") == uid]
        by_ord = {o: p for p in pods if (o := _ordinal(sts, p)) is not None}
        want = int(sts["spec"].get("replicas", 1))
        parallel = sts["spec"].get("podManagementPolicy") == "Parallel"
        rev = revision(sts)
        for o in range(want):
            pod = by_ord.get(o)
            if pod is None:
                await self._claims(sts, o)
                created = await self.api.create(PODS, pod_for(sts, o))
                by_ord[o] = created
                await self.events.record(
                    sts,
                    "Normal",
                    "SuccessfulCreate",
                    f"create Pod {created['metadata']['name']} in StatefulSet {key[1]} successful",
                )
                if not parallel:
                    break
                continue
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                await self._delete(sts, pod)  # recreated on the next pass with the same name
                if not parallel:
                    break
            if not parallel and (pod["metadata"].get("deletionTimestamp") or not pod_is_ready(pod)):
                break  # OrderedReady: wait for this one before the next
        else:
            extra = sorted((o for o in by_ord if o >= want), reverse=True)
            for o in extra[: len(extra) if parallel else 1]:
                if not by_ord[o]["metadata"].get("deletionTimestamp"):
                    await self._delete(sts, by_ord[o])
            if not extra:
                await self._roll(sts, by_ord, want, rev)
        return await self._status(sts, by_ord, want, rev)

    async def _roll(self, sts: Obj, by_ord: dict[int, Obj], want: int, rev: str) -> None:
        strat = sts["spec"].get("updateStrategy") or {}
        if strat.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strat.get("rollingUpdate") or {}).get("partition") or 0)
        live = [by_ord[o] for o in range(want) if o in by_ord]
        if len(live) < want or not all(pod_is_ready(p) and not p["metadata"].get("deletionTimestamp") for p in live):
            return
        for o in range(want - 1, partition - 1, -1):
            if by_ord[o]["metadata"].get("labels", {}).get(REVISION_LABEL) != rev:
                await self._delete(sts, by_ord[o])
                return

    async def _claims(self, sts: Obj, ordinal: int) -> None:
        pod_name = f"{sts['metadata']['name']}-{ordinal}"
        ns = sts["metadata"].get("namespace", "default")
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            name = claim_name(t, pod_name)
            if await self.api.get_or_none(PVCS, ns, name) is not None:
                continue
            tmeta = t.get("metadata") or {}
            labels = dict(((sts["spec"].get("selector") or {}).get("matchLabels")) or {})
            labels.update(tmeta.get("labels") or {})
            await self.api.create(
                PVCS,
                {
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": labels,
                        **({"annotations": tmeta["annotations"]} if tmeta.get("annotations") else {}),
                    },
                    "spec": copy.deepcopy(t.get("spec") or {}),
                },
            )
            await self.events.record(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {name} Pod {pod_name} in StatefulSet {sts['metadata']['name']} success",
            )

    async def _delete(self, sts: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        await self.api.delete(PODS, md["namespace"], md["name"], uid=md.get("uid"))
        await self.events.record(
            sts,
            "Normal",
            "SuccessfulDelete",
            f"delete Pod {md['name']} in StatefulSet {sts['metadata']['name']} successful",
        )

    async def _status(self, sts: Obj, by_ord: dict[int, Obj], want: int, rev: str) -> float | None:
        live = [p for p in by_ord.values() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if pod_is_ready(p)]
        updated = [p for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) == rev]
        old = (sts.get("status") or {}).get("currentRevision")
        current_rev = rev if len(updated) == len(live) == want else (old or rev)
        status: dict[str, Any] = {
            "replicas": len(live),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "currentReplicas": sum(
                1 for p in live if p["metadata"].get("labels", {}).get(REVISION_LABEL) == current_rev
            ),
            "updatedReplicas": len(updated),
            "currentRevision": current_rev,
            "updateRevision": rev,
            "collisionCount": 0,
            "observedGeneration": sts["metadata"].get("generation", 1),
        }
        for k in ("readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"):
            if not status[k]:
                del status[k]
        if status != (sts.get("status") or {}):
            sts["status"] = status
            await self.api.update_status(STATEFULSETS, sts)
        return None
