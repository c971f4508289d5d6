"""The scheduler: binds pending pods to nodes (kube-scheduler's filters and a least-allocated score).

Filters (kube-scheduler plugins): NodeUnschedulable, NodeReady (not-ready taint), NodeAffinity
(``nodeSelector`` + required node affinity terms), TaintToleration (NoSchedule / NoExecute), NodeResourcesFit
(cpu, memory, pods and extended resources such as ``nvidia.com/gpu``). A pod no node fits gets
``PodScheduled=False`` reason ``Unschedulable`` and a ``FailedScheduling`` event whose message is built like
``framework.FitError.Error()``: ``0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't
match Pod's node affinity/selector. preemption: ...`` (reasons as "<count> <reason>", sorted as strings).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ack_sandbox.controllers.base import NODES, PODS, PVCS, Controller, Key, Kind, Obj, key_of, now_iso, set_condition

log = logging.getLogger("ack_sandbox.controllers.scheduler")

SCHEDULER_NAME = "default-scheduler"

_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(value: Any) -> float:
    """A resource.Quantity ("500m", "0.5", "2Gi", "1e3") as a float in base units."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _QTY.match(str(value).strip())
    if not m:
        raise ValueError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {value!r}"
        )
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def container_requests(container: dict[str, Any]) -> dict[str, float]:
    """Requests of one container; limits stand in for missing requests (the API server's defaulting)."""
    res = container.get("resources") or {}
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    return {k: parse_quantity(v) for k, v in merged.items()}


def pod_requests(pod: Obj) -> dict[str, float]:
    """Effective pod requests: sum over containers, max with each init container, plus pod overhead."""
    spec = pod.get("spec", {})
    total: Counter[str] = Counter()
    for c in spec.get("containers") or []:
        total.update(container_requests(c))
    for c in spec.get("initContainers") or []:
        for k, v in container_requests(c).items():
            total[k] = max(total[k], v)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] += parse_quantity(v)
    return dict(total)


def node_allocatable(node: Obj) -> dict[str, float]:
    return {k: parse_quantity(v) for k, v in (node.get("status", {}).get("allocatable") or {}).items()}


def pod_is_active(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def node_usage(node_name: str, pods: Iterable[Obj]) -> dict[str, float]:
    used: Counter[str] = Counter()
    for p in pods:
        if p.get("spec", {}).get("nodeName") == node_name and pod_is_active(p):
            used.update(pod_requests(p))
            used["pods"] += 1
    return dict(used)


def _match_expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    present = key in labels
    val = labels.get(key)
    if op == "In":
        return present and val in values
    if op == "NotIn":
        return not present or val not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            a, b = int(val or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def matches_node_selector(pod: Obj, labels: dict[str, str], node_name: str = "") -> bool:
    """``nodeSelector`` AND required node affinity (terms ORed, expressions ANDed)."""
    spec = pod.get("spec", {})
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue  # an empty term matches nothing
        if all(_match_expression(e, labels) for e in exprs) and all(
            _match_expression(f, {"metadata.name": node_name}) for f in fields
        ):
            return True
    return False


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    """v1 helper ``Toleration.ToleratesTaint``."""
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key") or ""
        if key and key != taint.get("key"):
            continue
        op = tol.get("operator") or "Equal"
        if op == "Exists":
            if key or not tol.get("key"):
                return True
        elif op == "Equal" and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def untolerated_taint(pod: Obj, taints: list[dict[str, Any]]) -> dict[str, Any] | None:
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return taint
    return None


def node_is_ready(node: Obj) -> bool:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def fit_reasons(
    pod: Obj,
    labels: dict[str, str],
    taints: list[dict[str, Any]],
    allocatable: dict[str, float],
    used: dict[str, float],
    *,
    node_name: str = "",
    unschedulable: bool = False,
    ready: bool = True,
) -> list[str]:
    """Why ``pod`` does not fit a node with these properties (empty = it fits). Reason strings are the
    upstream plugins' (``ErrReasonUnschedulable``, ``ErrReasonAffinityRulesNotMatch``, untolerated taint,
    ``Insufficient <resource>``, ``Too many pods``)."""
    if unschedulable:
        tolerations = pod.get("spec", {}).get("tolerations") or []
        if not tolerates(tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
            return ["node(s) were unschedulable"]
    if not ready:
        return ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
    if not matches_node_selector(pod, labels, node_name):
        return ["node(s) didn't match Pod's node affinity/selector"]
    taint = untolerated_taint(pod, taints)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    reasons = []
    if used.get("pods", 0) + 1 > allocatable.get("pods", 110):
        reasons.append("Too many pods")
    for res, want in sorted(pod_requests(pod).items()):
        if want <= 0 or res in ("pods",):
            continue
        if res == "ephemeral-storage" and res not in allocatable:
            continue
        if used.get(res, 0.0) + want > allocatable.get(res, 0.0) + 1e-9:
            reasons.append(f"Insufficient {res}")
    return reasons


def node_fit_reasons(pod: Obj, node: Obj, pods: Iterable[Obj]) -> list[str]:
    name = node["metadata"]["name"]
    return fit_reasons(
        pod,
        node["metadata"].get("labels") or {},
        node.get("spec", {}).get("taints") or [],
        node_allocatable(node),
        node_usage(name, pods),
        node_name=name,
        unschedulable=bool(node.get("spec", {}).get("unschedulable")),
        ready=node_is_ready(node),
    )


_RESOURCE_REASONS = ("Insufficient ", "Too many pods")


def fit_error_message(total: int, reasons_by_node: dict[str, list[str]]) -> str:
    """``framework.FitError.Error()`` plus the preemption post-filter's summary."""
    if total == 0:
        return "no nodes available to schedule pods"
    hist: Counter[str] = Counter()
    for reasons in reasons_by_node.values():
        hist.update(set(reasons))
    parts = sorted(f"{n} {r}" for r, n in hist.items())
    helpful = sum(1 for rs in reasons_by_node.values() if rs and all(r.startswith(_RESOURCE_REASONS) for r in rs))
    pre = []
    if helpful:
        pre.append(f"{helpful} No preemption victims found for incoming pod")
    if total - helpful:
        pre.append(f"{total - helpful} Preemption is not helpful for scheduling")
    return (
        f"0/{total} nodes are available: {', '.join(parts)}. "
        f"preemption: 0/{total} nodes are available: {', '.join(sorted(pre))}."
    )


def _owner_uid(pod: Obj) -> str | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def score(pod: Obj, node: Obj, pods: Iterable[Obj]) -> float:
    """NodeResourcesFit LeastAllocated over cpu and memory, plus the default topology spreading of pods
    of the same owner over nodes (higher is better)."""
    alloc = node_allocatable(node)
    name = node["metadata"]["name"]
    pods = list(pods)
    used = node_usage(name, pods)
    req = pod_requests(pod)
    owner = _owner_uid(pod)
    siblings = sum(
        1
        for p in pods
        if owner and p.get("spec", {}).get("nodeName") == name and pod_is_active(p) and _owner_uid(p) == owner
    )
    total = -float(siblings)
    for res in ("cpu", "memory"):
        cap = alloc.get(res, 0.0)
        if cap > 0:
            total += (cap - used.get(res, 0.0) - req.get(res, 0.0)) / cap
    return total


def choose_node(pod: Obj, nodes: list[Obj], pods: list[Obj]) -> tuple[Obj | None, dict[str, list[str]]]:
    """The best node for ``pod``, or None with every node's reasons."""
    reasons: dict[str, list[str]] = {}
    feasible = []
    for node in nodes:
        if node["metadata"].get("deletionTimestamp"):
            reasons[node["metadata"]["name"]] = ["node(s) were unschedulable"]
            continue
        r = node_fit_reasons(pod, node, pods)
        if r:
            reasons[node["metadata"]["name"]] = r
        else:
            feasible.append(node)
    if not feasible:
        return None, reasons
    feasible.sort(key=lambda n: (-score(pod, n, pods), n["metadata"]["name"]))
    return feasible[0], reasons


def needs_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec", {})
    return (
        not spec.get("nodeName")
        and not pod.get("metadata", {}).get("deletionTimestamp")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and pod_is_active(pod)
    )


def is_unschedulable(pod: Obj) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
    return False


def volume_binding_error(pod: Obj, claims: dict[str, Obj]) -> str | None:
    """The VolumeBinding filter's pre-check: every PVC the pod uses must exist and be bound."""
    for vol in pod.get("spec", {}).get("volumes") or []:
        ref = vol.get("persistentVolumeClaim")
        if not ref:
            continue
        claim = claims.get(ref.get("claimName", ""))
        if claim is None:
            return f'persistentvolumeclaim "{ref.get("claimName")}" not found'
        if claim.get("metadata", {}).get("deletionTimestamp"):
            return f'persistentvolumeclaim "{ref.get("claimName")}" is being deleted'
        if claim.get("status", {}).get("phase") != "Bound":
            return "pod has unbound immediate PersistentVolumeClaims"
    return None


class Scheduler(Controller):
    name = SCHEDULER_NAME
    primary = PODS
    watches = (NODES, PVCS)
    resync = 60.0
    retry_unschedulable = 60.0  # cloud seconds; node changes retry sooner (they re-queue pending pods)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: set[Key] = set()

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PODS:
            key = key_of(obj)
            if etype != "DELETED" and needs_scheduling(obj):
                self._pending.add(key)
                return [key]
            self._pending.discard(key)
            if etype == "DELETED" and obj.get("spec", {}).get("nodeName"):
                return list(self._pending)  # freed capacity
            return []
        # A node appeared, changed or went: every pending pod may fit now.
        return list(self._pending)

    async def reconcile(self, key: Key) -> float | None:
        pod = await self.api.get_or_none(PODS, *key)
        if pod is None or not needs_scheduling(pod):
            self._pending.discard(key)
            return None
        nodes = await self.api.list(NODES)
        volume_error = None
        if any("persistentVolumeClaim" in v for v in pod.get("spec", {}).get("volumes") or []):
            claims = {c["metadata"]["name"]: c for c in await self.api.list(PVCS, key[0])}
            volume_error = volume_binding_error(pod, claims)
        if volume_error is not None:
            node, reasons = None, {n["metadata"]["name"]: [] for n in nodes}
        else:
            pods = [p for p in await self.api.list(PODS) if p.get("spec", {}).get("nodeName")]
            node, reasons = choose_node(pod, nodes, pods)
        if node is None:
            if volume_error is not None:
                # PreFilter failures name no node: "0/N nodes are available: <why>. preemption: ..."
                message = (
                    f"0/{len(nodes)} nodes are available: {volume_error}. preemption: 0/{len(nodes)} nodes "
                    f"are available: {len(nodes)} Preemption is not helpful for scheduling."
                )
            else:
                message = fit_error_message(len(nodes), reasons)
            conds = pod.setdefault("status", {}).setdefault("conditions", [])
            changed = set_condition(conds, "PodScheduled", "False", "Unschedulable", message, probe_time=True)
            pod["status"].setdefault("phase", "Pending")
            if changed:
                await self.api.update_status(PODS, pod)
            await self.events.record(pod, "Warning", "FailedScheduling", message)
            return self.retry_unschedulable
        await self.bind(pod, node["metadata"]["name"])
        self._pending.discard(key)
        return None

    async def bind(self, pod: Obj, node_name: str) -> None:
        """What the pods/binding subresource does: set spec.nodeName and PodScheduled=True."""
        ns, name = key_of(pod)
        await self.api.bind(ns, name, node_name, pod["metadata"].get("uid"))
        await self.events.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node_name}")
        log.debug("bound %s/%s to %s at %s", ns, name, node_name, now_iso())
