"""The DaemonSet controller (pkg/controller/daemon): one pod of the template on every node it fits.

A node fits when the template's ``nodeSelector`` / required node affinity match it and its NoSchedule/NoExecute
taints are tolerated (the controller's default tolerations added: not-ready, unreachable, disk/memory/pid
pressure, unschedulable). Each pod gets a required node affinity ``matchFields metadata.name In [<node>]``
(``util.ReplaceDaemonSetPodNodeNameNodeAffinity``), so the scheduler binds it there; the labels
``controller-revision-hash`` and ``pod-template-generation``. Pods on nodes that no longer fit, and duplicates,
are deleted; a template change replaces the old pods (RollingUpdate, ``maxUnavailable`` at a time).
Status: desired/current/ready/available/updated numbers, ``numberMisscheduled``, ``observedGeneration``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from ack_sandbox.controllers.base import (
    DAEMONSETS,
    NODES,
    PODS,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    key_of,
    owner_ref,
)
from ack_sandbox.controllers.replicaset import pod_is_active, pod_is_ready
from ack_sandbox.controllers.scheduler import matches_node_selector, untolerated_taint

log = logging.getLogger("ack_sandbox.controllers.daemonset")

DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def template_hash(ds: Obj) -> str:
    raw = json.dumps(ds["spec"].get("template") or {}, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:10]


def pod_for_node(ds: Obj, node_name: str) -> Obj:
    template = copy.deepcopy(ds["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels["controller-revision-hash"] = template_hash(ds)
    labels["pod-template-generation"] = str(ds["metadata"].get("generation", 1))
    spec = template.get("spec") or {}
    tolerations = list(spec.get("tolerations") or [])
    for tol in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == tol["key"] and t.get("effect") == tol["effect"] for t in tolerations):
            tolerations.append(dict(tol))
    spec["tolerations"] = tolerations
    affinity = spec.setdefault("affinity", {})
    affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
    }
    md: dict[str, Any] = {
        "generateName": ds["metadata"]["name"] + "-",
        "namespace": ds["metadata"].get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [owner_ref(ds, DAEMONSETS)],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def _target_node(pod: Obj) -> str | None:
    if pod.get("spec", {}).get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = (
        (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return None


class DaemonSetController(Controller):
    name = "daemonset-controller"
    primary = DAEMONSETS
    watches = (PODS, NODES)
    resync = 30.0

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == NODES:
            return [key_of(ds) for ds in self._known.values()]
        if kind == DAEMONSETS:
            if etype == "DELETED":
                self._known.pop(key_of(obj), None)
            else:
                self._known[key_of(obj)] = obj
        return super().map_event(kind, etype, obj)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known: dict[Key, Obj] = {}

    async def reconcile(self, key: Key) -> float | None:
        ds = await self.api.get_or_none(DAEMONSETS, *key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return None
        uid = ds["metadata"]["uid"]
        pods = [p for p in await self.api.list(PODS, key[0]) if (controller_of(p) or {}).get("uid") == uid]
        pods = [p for p in pods if pod_is_active(p)]
        nodes = await self.api.list(NODES)
        want_hash = template_hash(ds)
        fits: list[str] = []
        for node in nodes:
            name = node["metadata"]["name"]
            probe = pod_for_node(ds, name)
            if not matches_node_selector(probe, node["metadata"].get("labels") or {}, name):
                continue
            if untolerated_taint(probe, (node.get("spec") or {}).get("taints") or []) is not None:
                continue
            fits.append(name)
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_target_node(p) or "", []).append(p)
        misscheduled = 0
        for node_name, mine in by_node.items():
            if node_name not in fits:
                misscheduled += sum(1 for p in mine if p["spec"].get("nodeName"))
                for p in mine:
                    await self._delete(ds, p)
            else:
                for p in sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "")[1:]:
                    await self._delete(ds, p)
        max_unavailable = int(
            ((ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable") or 1
        )
        rolling = (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        replaced = 0
        for node_name in fits:
            mine = by_node.get(node_name) or []
            if not mine:
                pod = await self.api.create(PODS, pod_for_node(ds, node_name))
                await self.events.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
                continue
            current = mine[0]
            outdated = current["metadata"].get("labels", {}).get("controller-revision-hash") != want_hash
            if rolling and outdated and replaced < max_unavailable:
                await self._delete(ds, current)
                replaced += 1
        return await self._status(ds, fits, by_node, want_hash, misscheduled)

    async def _delete(self, ds: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        await self.api.delete(PODS, md["namespace"], md["name"], uid=md.get("uid"))
        await self.events.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")

    async def _status(
        self, ds: Obj, fits: list[str], by_node: dict[str, list[Obj]], want_hash: str, misscheduled: int
    ) -> float | None:
        on = [by_node[n][0] for n in fits if by_node.get(n)]
        scheduled = [p for p in on if p["spec"].get("nodeName")]
        ready = [p for p in scheduled if pod_is_ready(p)]
        updated = [p for p in scheduled if p["metadata"].get("labels", {}).get("controller-revision-hash") == want_hash]
        status = {
            "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": len(fits),
            "numberReady": len(ready),
            "observedGeneration": ds["metadata"].get("generation", 1),
            "updatedNumberScheduled": len(updated),
            "numberAvailable": len(ready),
        }
        unavailable = len(fits) - len(ready)
        if unavailable:
            status["numberUnavailable"] = unavailable
        for k in ("updatedNumberScheduled", "numberAvailable"):
            if not status[k]:
                del status[k]
        if status != (ds.get("status") or {}):
            ds["status"] = status
            await self.api.update_status(DAEMONSETS, ds)
        return None
