"""Node objects mirror the CS stand-in's ECS instances, and pods of vanished nodes are collected.

- An instance that joins (CS event ``running``) becomes a Node named like the instance's ``node_name`` (the
  name ``DescribeClusterNodes`` reports) with the labels, taints, providerID and capacity/allocatable from
  ``CsState.node_spec`` (ACK/CCM labels, reference §7) and the conditions a healthy kubelet posts.
- A spot ``reclaim_notice`` cordons the node (``spec.unschedulable`` + the ``node.kubernetes.io/unschedulable``
  taint), records a Warning event and drains it: its pods are evicted (deleted gracefully) so their
  controllers recreate them elsewhere — what ACK's spot interruption handling does.
- ``removing`` marks the node NotReady (``NodeStatusUnknown``, the kubelet stopped posting) and drains it;
  ``removed`` deletes the Node.
- The pod garbage collector (podgc) force-deletes pods bound to a node that no longer exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from ack_sandbox.controllers.base import NODES, PODS, Api, EventRecorder, Obj, controller_of, now_iso, set_condition
from ack_sandbox.k8s.errors import ApiError

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext
    from ack_sandbox.cs.models import CsState, Instance

log = logging.getLogger("ack_sandbox.controllers.nodes")

KUBELET_VERSION = "v1.31.1-aliyun.1"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
PODGC_PERIOD = 20.0  # cloud seconds
# A pod that is not drained from a reclaimed/removed node (its owner is a DaemonSet) stays until podgc.
_DAEMON_KINDS = ("DaemonSet",)


def healthy_conditions() -> list[dict[str, Any]]:
    conds: list[dict[str, Any]] = []
    for ctype, status, reason, msg in (
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ):
        set_condition(conds, ctype, status, reason, msg)
        conds[-1]["lastHeartbeatTime"] = now_iso()
    return conds


def node_object(spec: dict[str, Any], inst: Instance) -> Obj:
    """The Node for an instance (``spec`` is ``CsState.node_spec(inst)``)."""
    uid_seed = hashlib.sha256(inst.instance_id.encode()).hexdigest()
    taints = [dict(t) for t in spec.get("taints") or []]
    if spec.get("unschedulable"):
        taints.append(dict(UNSCHEDULABLE_TAINT))
    node: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec["name"],
            "labels": dict(spec["labels"]),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "alibabacloud.com/instance-id": inst.instance_id,
            },
        },
        "spec": {"providerID": spec["provider_id"], "podCIDR": "", "taints": taints},
        "status": {
            "capacity": dict(spec["capacity"]),
            "allocatable": dict(spec["allocatable"]),
            "conditions": healthy_conditions(),
            "addresses": [
                {"type": "InternalIP", "address": spec["internal_ip"]},
                {"type": "Hostname", "address": spec["name"]},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uid_seed[:32],
                "systemUUID": uid_seed[32:64],
                "bootID": uid_seed[:36],
                "kernelVersion": "5.10.134-16.3.al8.x86_64",
                "osImage": "Alibaba Cloud Linux 3.2104 U10 (OpenAnolis Edition)",
                "containerRuntimeVersion": "containerd://1.6.28",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }
    if spec.get("unschedulable"):
        node["spec"]["unschedulable"] = True
    if not taints:
        del node["spec"]["taints"]
    return node


def is_daemon_pod(pod: Obj) -> bool:
    ref = controller_of(pod)
    return ref is not None and ref.get("kind") in _DAEMON_KINDS


class NodeSync:
    """Keeps Node objects equal to the CS instances; evicts and collects pods of going nodes."""

    name = "node-controller"

    def __init__(self, ctx: SandboxContext, api: Api | None = None) -> None:
        self.ctx = ctx
        self.api = api or Api(ctx.services["kubernetes"])
        self.cs: CsState = ctx.services["cs"]
        self.events = EventRecorder(self.api, "node-controller")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._gc_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.sync_all()
        self.cs.add_listener(self._on_cs_event)
        self._gc_task = asyncio.get_running_loop().create_task(self._podgc_loop(), name="podgc")

    async def stop(self) -> None:
        try:
            self.cs.remove_listener(self._on_cs_event)
        except ValueError:
            pass
        tasks = [*self._tasks, *([self._gc_task] if self._gc_task else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_cs_event(self, event: str, inst: Instance) -> None:
        if event == "running":
            self._spawn(self._locked(inst.node_name, self.ensure_node(inst)))
        elif event == "reclaim_notice":
            self._spawn(self._locked(inst.node_name, self.reclaim_notice(inst)))
        elif event == "removing":
            self._spawn(self._locked(inst.node_name, self.node_going(inst)))
        elif event == "removed":
            self._spawn(self._locked(inst.node_name, self.delete_node(inst.node_name)))

    async def _locked(self, name: str, coro: Any) -> None:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                await coro
            except Exception:
                log.exception("node sync of %s failed", name)

    # --- reconciliation ----------------------------------------------------------------------------------
    async def sync_all(self) -> None:
        """Create Nodes for running instances, delete Nodes of instances that no longer exist."""
        wanted = {i.node_name: i for i in self.cs.instances() if i.state in ("running", "removing")}
        existing = {n["metadata"]["name"]: n for n in await self.api.list(NODES)}
        for name, inst in wanted.items():
            if inst.state == "running":
                await self.ensure_node(inst)
            elif name not in existing:
                continue
            else:
                await self.node_going(inst)
        for name, node in existing.items():
            if name not in wanted and "alibabacloud.com/nodepool-id" in (node["metadata"].get("labels") or {}):
                await self.delete_node(name)
        await self.collect_orphans()

    async def ensure_node(self, inst: Instance) -> None:
        spec = self.cs.node_spec(inst)
        desired = node_object(spec, inst)
        current = await self.api.get_or_none(NODES, "", spec["name"])
        if current is None:
            try:
                created = await self.api.create(NODES, desired)
            except ApiError as exc:
                if exc.code != 409:
                    raise
                current = await self.api.get(NODES, "", spec["name"])
            else:
                await self.events.record(
                    created,
                    "Normal",
                    "RegisteredNode",
                    f"Node {spec['name']} event: Registered Node {spec['name']} in Controller",
                )
                await self.events.record(
                    created, "Normal", "NodeReady", f"Node {spec['name']} status is now: NodeReady", host=spec["name"]
                )
                return
        current["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **desired["metadata"]["labels"]}
        current["spec"]["providerID"] = desired["spec"]["providerID"]
        current = await self.api.update(NODES, current)
        current["status"].update(
            {k: desired["status"][k] for k in ("capacity", "allocatable", "addresses", "nodeInfo", "daemonEndpoints")}
        )
        conds = current["status"].setdefault("conditions", [])
        set_condition(conds, "Ready", "True", "KubeletReady", "kubelet is posting ready status")
        await self.api.update_status(NODES, current)

    async def cordon(self, name: str) -> Obj | None:
        node = await self.api.get_or_none(NODES, "", name)
        if node is None:
            return None
        spec = node.setdefault("spec", {})
        taints = spec.setdefault("taints", [])
        if not spec.get("unschedulable") or not any(t.get("key") == UNSCHEDULABLE_TAINT["key"] for t in taints):
            spec["unschedulable"] = True
            if not any(t.get("key") == UNSCHEDULABLE_TAINT["key"] for t in taints):
                taints.append({**UNSCHEDULABLE_TAINT, "timeAdded": now_iso()})
            node = await self.api.update(NODES, node)
        return node

    async def drain(self, name: str) -> int:
        """Evict every non-daemon pod of the node (graceful delete; controllers recreate them)."""
        evicted = 0
        for pod in await self.api.list(PODS, field_selector=f"spec.nodeName={name}"):
            if pod.get("spec", {}).get("nodeName") != name or is_daemon_pod(pod):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue
            await self.api.delete(PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
            evicted += 1
        return evicted

    async def reclaim_notice(self, inst: Instance) -> None:
        node = await self.cordon(inst.node_name)
        if node is None:
            return
        await self.events.record(
            node,
            "Warning",
            "PreemptibleInstanceInterrupted",
            f"The preemptible instance {inst.instance_id} ({inst.instance_type}) will be "
            f"released by the spot market; the node is cordoned and drained",
            host=inst.node_name,
        )
        n = await self.drain(inst.node_name)
        log.info("spot reclaim notice for %s: cordoned, %d pods evicted", inst.node_name, n)

    async def node_going(self, inst: Instance) -> None:
        node = await self.cordon(inst.node_name)
        if node is None:
            return
        conds = node.setdefault("status", {}).setdefault("conditions", [])
        if set_condition(conds, "Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."):
            await self.api.update_status(NODES, node)
            await self.events.record(
                node, "Normal", "NodeNotReady", f"Node {inst.node_name} status is now: NodeNotReady"
            )
        await self.drain(inst.node_name)

    async def delete_node(self, name: str) -> None:
        node = await self.api.get_or_none(NODES, "", name)
        if node is not None:
            await self.events.record(
                node, "Normal", "RemovingNode", f"Node {name} event: Removing Node {name} from Controller"
            )
            await self.api.delete(NODES, "", name)
        await self.collect_orphans()

    async def collect_orphans(self) -> int:
        """podgc: force-delete pods bound to nodes that do not exist."""
        nodes = {n["metadata"]["name"] for n in await self.api.list(NODES)}
        n = 0
        for pod in await self.api.list(PODS):
            node_name = pod.get("spec", {}).get("nodeName")
            if node_name and node_name not in nodes:
                await self.api.delete(
                    PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"], grace_period_seconds=0
                )
                n += 1
        return n

    async def _podgc_loop(self) -> None:
        while True:
            await self.ctx.clock.sleep(PODGC_PERIOD)
            try:
                await self.collect_orphans()
            except Exception:
                log.warning("podgc failed", exc_info=True)
