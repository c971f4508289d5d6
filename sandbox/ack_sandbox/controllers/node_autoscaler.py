"""The ACK node-pool autoscaler (cluster-autoscaler / GOATScaler behaviour) over the CS stand-in.

Scale-up: pods the scheduler marked ``PodScheduled=False/Unschedulable`` are matched against the node
templates of every auto-scaling pool (the pool's labels and taints plus ACK's node labels, the allocatable
resources of its instance types, ``CsState.node_spec``); the least-waste pool that fits is grown through
``CsState.scale_out`` (provisioning delay and the spot/pay-as-you-go mix are the CS stand-in's) by as many
nodes as first-fit bin packing of its pending pods needs, minus nodes already on their way, within
``max_instances``. Pods get ``TriggeredScaleUp`` (or ``NotTriggerScaleUp``) events as upstream writes them.
A pool whose scale-out fails (no stock) is backed off for ``failed_pool_backoff``.

Scale-down: a node of an auto-scaling pool that runs no pods (DaemonSet pods aside) for
``scale_down_unneeded`` cloud seconds, older than ``scale_down_delay_after_add``, is cordoned
(``ToBeDeletedByClusterAutoscaler`` taint) and released through ``CsState.remove_instances``, never below
``min_instances``. Defaults follow ACK's autoscaler config (reference §6.4: unneeded 10 min, cool-down
10 min); the scan runs every ``scan_interval`` and also right after a pod becomes unschedulable
(GOATScaler's instant elasticity). Everything is in cloud seconds, compressed by the time scale.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ack_sandbox.controllers.base import NODES, PODS, Api, EventRecorder, Obj, now_iso
from ack_sandbox.controllers.nodes import is_daemon_pod
from ack_sandbox.controllers.scheduler import (
    fit_reasons,
    is_unschedulable,
    needs_scheduling,
    parse_quantity,
    pod_requests,
)
from ack_sandbox.cs.catalogue import lookup

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext
    from ack_sandbox.cs.models import CsState, NodePool

log = logging.getLogger("ack_sandbox.controllers.node_autoscaler")

TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"


@dataclass
class AutoscalerConfig:
    scan_interval: float = 15.0  # cloud seconds
    scale_down_enabled: bool = True
    scale_down_unneeded: float = 600.0  # ACK unneeded_duration default 10 min
    scale_down_delay_after_add: float = 600.0  # ACK cool_down_duration default 10 min
    failed_pool_backoff: float = 300.0  # cluster-autoscaler node group back-off (5 min)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for k, v in values.items():
            if k not in known:
                raise ValueError(f"unknown autoscaler setting {k!r}; known: {', '.join(sorted(known))}")
            if k == "scale_down_enabled":
                setattr(self, k, bool(v))
            else:
                value = float(v)
                if value < 0:
                    raise ValueError(f"{k} must be >= 0 (cloud seconds), got {v!r}")
                setattr(self, k, value)


@dataclass
class Template:
    """What a new node of ``pool`` with ``instance_type`` would look like to the scheduler."""

    pool_id: str
    instance_type: str
    labels: dict[str, str]
    taints: list[dict[str, Any]]
    allocatable: dict[str, float]


def pool_templates(cs: CsState, pool: NodePool) -> list[Template]:
    out = []
    for itype in pool.scaling_group.get("instance_types") or []:
        t = lookup(itype)
        if t is None:
            continue
        labels = {
            **pool.labels(),
            "alibabacloud.com/nodepool-id": pool.nodepool_id,
            "node.alibabacloud.com/nodepool-id": pool.nodepool_id,
            "node.kubernetes.io/instance-type": itype,
            "beta.kubernetes.io/instance-type": itype,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/region": cs.ctx.region,
            "ack.aliyun.com": cs.ctx.cluster_id,
        }
        alloc = {k: parse_quantity(v) for k, v in t.allocatable().items()}
        out.append(Template(pool.nodepool_id, itype, labels, pool.taints(), alloc))
    return out


def template_fits(pod: Obj, tpl: Template) -> bool:
    # Zone/spot/hostname labels of the future node are unknown: ignore selectors on them only if absent.
    return not fit_reasons(pod, tpl.labels, tpl.taints, tpl.allocatable, {})


def waste(pod: Obj, tpl: Template) -> float:
    """least-waste expander: the fraction of the template's cpu and memory the pod leaves unused."""
    req = pod_requests(pod)
    total = 0.0
    for res in ("cpu", "memory"):
        cap = tpl.allocatable.get(res, 0.0)
        if cap:
            total += (cap - req.get(res, 0.0)) / cap
    return total


def nodes_needed(pods: list[Obj], tpl: Template) -> int:
    """First-fit-decreasing bin packing of ``pods`` onto empty template nodes."""
    bins: list[dict[str, float]] = []
    ordered = sorted(pods, key=lambda p: (-pod_requests(p).get("nvidia.com/gpu", 0), -pod_requests(p).get("cpu", 0)))
    for pod in ordered:
        req = pod_requests(pod)
        for used in bins:
            if all(
                used.get(k, 0) + v <= tpl.allocatable.get(k, 0) + 1e-9 for k, v in req.items() if v > 0
            ) and used.get("pods", 0) + 1 <= tpl.allocatable.get("pods", 110):
                for k, v in req.items():
                    used[k] = used.get(k, 0) + v
                used["pods"] = used.get("pods", 0) + 1
                break
        else:
            bins.append({**req, "pods": 1})
    return len(bins)


def _scheduled_message(pod: Obj) -> str:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return cond.get("message") or ""
    return ""


class NodeAutoscaler:
    name = "cluster-autoscaler"

    def __init__(self, ctx: SandboxContext, api: Api | None = None, config: AutoscalerConfig | None = None) -> None:
        self.ctx = ctx
        self.api = api or Api(ctx.services["kubernetes"], self.name)
        self.cs: CsState = ctx.services["cs"]
        self.config = config or AutoscalerConfig()
        self.events = EventRecorder(self.api, self.name)
        self.in_flight: dict[str, int] = {}  # pool id -> nodes being provisioned
        self.backoff_until: dict[str, float] = {}  # pool id -> sandbox time
        self.unneeded_since: dict[str, float] = {}  # node name -> sandbox time
        self.removing: set[str] = set()  # node names being released
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._main = [
            loop.create_task(self._loop(), name="node-autoscaler"),
            loop.create_task(self._watch_pods(), name="node-autoscaler-watch"),
        ]

    async def stop(self) -> None:
        tasks = [*self._main, *self._tasks]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    def wake(self) -> None:
        self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_pods(self) -> None:
        while True:
            try:
                _, rv = await self.api.list_with_rv(PODS)
                async for etype, pod in self.api.watch(PODS, resource_version=rv):
                    if (
                        etype != "DELETED"
                        and is_unschedulable(pod)
                        and needs_scheduling(pod)
                        or etype == "DELETED"
                        and pod.get("spec", {}).get("nodeName")
                    ):
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("autoscaler pod watch broke; relisting", exc_info=True)
                await asyncio.sleep(0.2)

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.ctx.clock.real_seconds(self.config.scan_interval))
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node autoscaler scan failed")

    async def run_once(self) -> None:
        pods = await self.api.list(PODS)
        nodes = await self.api.list(NODES)
        await self.scale_up(pods)
        if self.config.scale_down_enabled:
            await self.scale_down(pods, nodes)

    # --- scale-up ----------------------------------------------------------------------------------------
    def _pools(self) -> list[NodePool]:
        return [p for p in self.cs.pools() if p.autoscaling_enabled and p.state in ("active", "scaling", "removing")]

    async def scale_up(self, pods: list[Obj]) -> None:
        # Pods blocked on their volumes (unbound/missing PVCs) would not fit a new node either.
        pending = [
            p
            for p in pods
            if needs_scheduling(p)
            and is_unschedulable(p)
            and "persistentvolumeclaim" not in _scheduled_message(p).lower()
        ]
        if not pending:
            return
        now = self.ctx.clock.now()
        templates = {p.nodepool_id: pool_templates(self.cs, p) for p in self._pools()}
        by_pool: dict[str, list[tuple[Obj, Template]]] = {}
        for pod in pending:
            best: tuple[float, str, Template] | None = None
            backed_off = 0
            for pool_id, tpls in templates.items():
                fitting = [t for t in tpls if template_fits(pod, t)]
                if not fitting:
                    continue
                if self.backoff_until.get(pool_id, 0) > now:
                    backed_off += 1
                    continue
                tpl = min(fitting, key=lambda t: waste(pod, t))
                cand = (waste(pod, tpl), pool_id, tpl)
                if best is None or cand[:2] < best[:2]:
                    best = cand
            if best is None:
                why = (
                    f"{backed_off} in backoff after failed scale-up"
                    if backed_off
                    else f"{len(templates)} node group(s) whose template does not fit (node selector, taints or resources)"
                    if templates
                    else "no node group with auto scaling enabled"
                )
                await self.events.record(pod, "Normal", "NotTriggerScaleUp", f"pod didn't trigger scale-up: {why}")
                continue
            by_pool.setdefault(best[1], []).append((pod, best[2]))
        for pool_id, items in by_pool.items():
            pool = self.cs.pools_by_id.get(pool_id)
            if pool is None:
                continue
            tpl = items[0][1]
            need = nodes_needed([p for p, _ in items], tpl) - self.in_flight.get(pool_id, 0)
            live = sum(1 for i in self.cs.instances(pool_id) if i.state != "removing")
            room = pool.max_size - live
            count = min(need, room)
            if count <= 0:
                if need > 0 and room <= 0:
                    for pod, _ in items:
                        await self.events.record(
                            pod,
                            "Normal",
                            "NotTriggerScaleUp",
                            f"pod didn't trigger scale-up: 1 max node group size reached "
                            f"({pool.name}, max: {pool.max_size})",
                        )
                continue
            self.in_flight[pool_id] = self.in_flight.get(pool_id, 0) + count
            msg = f"pod triggered scale-up: [{{{pool_id} {live}->{live + count} (max: {pool.max_size})}}]"
            for pod, _ in items:
                await self.events.record(pod, "Normal", "TriggeredScaleUp", msg)
            log.info("autoscaler: scaling node pool %s (%s) by %d", pool.name, pool_id, count)
            self._spawn(self._provision(pool_id, count, [p for p, _ in items]))

    async def _provision(self, pool_id: str, count: int, pods: list[Obj]) -> None:
        from ack_sandbox.cs.mix import NoStockError

        try:
            created = await self.cs.scale_out(pool_id, count)
            # Hold the in-flight count until the Nodes exist, so the next scan does not scale twice.
            names = {i.node_name for i in created}
            for _ in range(100):
                have = {n["metadata"]["name"] for n in await self.api.list(NODES)}
                if names <= have:
                    break
                await asyncio.sleep(0.05)
            await self.ctx.clock.sleep(5)
        except (NoStockError, Exception) as exc:  # noqa: B014 - CsError and NoStockError both end here
            code = getattr(exc, "code", type(exc).__name__)
            message = getattr(exc, "message", str(exc))
            self.backoff_until[pool_id] = self.ctx.clock.now() + self.config.failed_pool_backoff
            log.warning("autoscaler: scale-out of %s failed: %s %s", pool_id, code, message)
            for pod in pods:
                await self.events.record(
                    pod,
                    "Warning",
                    "FailedScaleUp",
                    f"Node scale up in zones associated with this pod failed: {code}: {message}. "
                    f"Pod is at risk of not being scheduled.",
                )
        finally:
            self.in_flight[pool_id] = max(0, self.in_flight.get(pool_id, 0) - count)
            self._wake.set()

    # --- scale-down --------------------------------------------------------------------------------------
    async def scale_down(self, pods: list[Obj], nodes: list[Obj]) -> None:
        now = self.ctx.clock.now()
        busy = {
            p["spec"]["nodeName"]
            for p in pods
            if p.get("spec", {}).get("nodeName")
            and not is_daemon_pod(p)
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        }
        node_names = {n["metadata"]["name"] for n in nodes}
        for name in list(self.unneeded_since):
            if name not in node_names or name in busy:
                del self.unneeded_since[name]
        for pool in self._pools():
            insts = [i for i in self.cs.instances(pool.nodepool_id) if i.state == "running"]
            floor = int(pool.auto_scaling.get("min_instances") or 0)
            for inst in insts:
                name = inst.node_name
                if name in busy or name not in node_names or name in self.removing:
                    continue
                if now - inst.created < self.config.scale_down_delay_after_add:
                    continue
                since = self.unneeded_since.setdefault(name, now)
                if now - since < self.config.scale_down_unneeded:
                    continue
                live = sum(1 for i in self.cs.instances(pool.nodepool_id) if i.state != "removing")
                if live <= floor:
                    continue
                self.removing.add(name)
                self.unneeded_since.pop(name, None)
                self._spawn(self._remove(pool.nodepool_id, inst.instance_id, name))

    async def _remove(self, pool_id: str, instance_id: str, node_name: str) -> None:
        try:
            node = await self.api.get_or_none(NODES, "", node_name)
            if node is not None:
                taints = node.setdefault("spec", {}).setdefault("taints", [])
                if not any(t.get("key") == TO_BE_DELETED_TAINT for t in taints):
                    taints.append(
                        {
                            "key": TO_BE_DELETED_TAINT,
                            "value": str(int(self.ctx.clock.now())),
                            "effect": "NoSchedule",
                            "timeAdded": now_iso(),
                        }
                    )
                node["spec"]["unschedulable"] = True
                node = await self.api.update(NODES, node)
                await self.events.record(node, "Normal", "ScaleDown", "marked the node as toBeDeleted/unschedulable")
            log.info("autoscaler: removing idle node %s (%s) from %s", node_name, instance_id, pool_id)
            await self.cs.remove_instances(pool_id, [instance_id])
        except Exception:
            log.exception("autoscaler: removing %s failed", node_name)
        finally:
            self.removing.discard(node_name)

    def describe(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "in_flight": dict(self.in_flight),
            "unneeded_since": dict(self.unneeded_since),
            "removing": sorted(self.removing),
        }
