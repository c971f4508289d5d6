"""CS state: the cluster, its node pools, their ECS instances and the tasks that change them.

Knows nothing of HTTP. ``CsState`` is stored at ``ctx.services["cs"]`` and is also the in-process API
the node-pool autoscaler and the Kubernetes node sync use (same daemon, same event loop):

- ``pools()``, ``pool(id)``, ``pool_by_name(name)``, ``instances(pool_id=None)``, ``instance(id)``
- ``await scale_out(pool_id, n)`` -> running instances (provisioning delay + spot/PAYG mix, ``mix.py``)
- ``await remove_instances(pool_id, ids)``; ``await reclaim_spot(instance_id)``
- ``add_listener(fn)``: ``fn(event, instance)`` with event ``added`` (ECS instance created, not yet a
  node), ``running`` (joined the cluster: create the Node), ``reclaim_notice`` (spot reclaim notice),
  ``removing`` (being drained), ``removed`` (released: delete the Node)
- ``node_spec(instance)``: the labels/taints/capacity/providerID the Node object should carry.

Node-pool lifecycle (stages; terraform-provider-alicloud waits ``initial|scaling`` -> ``active`` and fails
on ``failed|deleting``): create ``initial`` -> ``active`` (or ``failed``); scale ``scaling`` -> ``active``;
modify ``updating`` -> ``active``; remove nodes ``removing`` -> ``active``; delete ``deleting`` -> gone.
Delays are cloud seconds compressed by ``ctx.clock``. State is persisted to ``cs/state.json``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ack_sandbox.cs import validation
from ack_sandbox.cs.catalogue import lookup
from ack_sandbox.cs.errors import CsError, cluster_not_found, invalid, nodepool_not_found
from ack_sandbox.cs.mix import NO_SPOT, MixPolicy, NoStockError, Placement, plan_scale_out

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext
    from ack_sandbox.cs.faults import Faults

log = logging.getLogger("ack_sandbox.cs")

SERVICE_KEY = "cs"
KUBERNETES_VERSION = "1.31.1-aliyun.1"

# Cloud-second delays (compressed by the clock). Class-level so tests/other services can read them.
DELAYS = {
    "pool_setup": 60.0,  # scaling group + launch template before the pool is usable
    "node_min": 60.0,  # ECS instance create + boot + kubelet join
    "node_max": 90.0,
    "modify": 15.0,
    "remove_node": 30.0,  # drain + release
    "delete_pool": 30.0,
    "reclaim_notice": 120.0,  # spot: notice before the instance is released (ECS gives ~2-5 min)
}

Listener = Callable[[str, "Instance"], None]


def iso(ts: float) -> str:
    """ACK timestamps: ISO 8601 with offset, e.g. ``2020-09-27T20:37:46+08:00`` (UTC here)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _hex_id(prefix: str, n: int) -> str:
    return prefix + secrets.token_hex(n // 2)


@dataclass
class Instance:
    instance_id: str
    nodepool_id: str
    instance_type: str
    zone_id: str
    vswitch_id: str
    ip: str
    node_name: str
    spot_strategy: str = NO_SPOT
    instance_charge_type: str = "PostPaid"
    created: float = 0.0
    state: str = "initial"  # initial | running | removing
    node_status: str = "Unknown"  # Ready | NotReady | Unknown
    error_message: str = ""

    @property
    def is_spot(self) -> bool:
        return self.spot_strategy != NO_SPOT

    def placement(self) -> Placement:
        return Placement(self.instance_type, self.vswitch_id, self.zone_id, self.spot_strategy)

    def to_api(self) -> dict[str, Any]:
        """A ``DescribeClusterNodes`` node (field names from DescribeClusterNodesResponseBodyNodes)."""
        family = lookup(self.instance_type).family if lookup(self.instance_type) else ""
        return {
            "instance_id": self.instance_id,
            "instance_name": f"worker-k8s-for-cs-{self.instance_id[-8:]}",
            "node_name": self.node_name,
            "host_name": self.node_name,
            "instance_type": self.instance_type,
            "instance_type_family": family,
            "ip_address": [self.ip],
            "nodepool_id": self.nodepool_id,
            "instance_charge_type": self.instance_charge_type,
            "spot_strategy": self.spot_strategy,
            "state": self.state,
            "node_status": self.node_status,
            "instance_status": {"initial": "Pending", "running": "Running", "removing": "Stopping"}[self.state],
            "instance_role": "Worker",
            "is_aliyun_node": True,
            "source": "ess_attach",
            "creation_time": iso(self.created),
            "expired_time": "2099-12-31T15:59:00+00:00",
            "error_message": self.error_message,
            "image_id": "aliyun_3_x64_20G_alibase_20240819.vhd",
        }


@dataclass
class Task:
    task_id: str
    task_type: str
    cluster_id: str
    target_id: str
    target_type: str = "nodepool"
    state: str = "running"  # running | success | fail
    created: float = 0.0
    updated: float = 0.0
    current_stage: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    task_result: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "task_id": self.task_id,
            "cluster_id": self.cluster_id,
            "task_type": self.task_type,
            "state": self.state,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "current_stage": self.current_stage,
            "target": {"id": self.target_id, "type": self.target_type},
            "parameters": self.parameters,
            "stages": self.stages,
            "events": self.events,
            "task_result": self.task_result,
            "outputs": {},
        }
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class NodePool:
    nodepool_id: str
    spec: dict[str, Any]  # nodepool_info, auto_scaling, scaling_group, kubernetes_config, management...
    state: str = "initial"
    created: float = 0.0
    updated: float = 0.0
    scaling_group_id: str = ""
    conditions: list[dict[str, str]] = field(default_factory=list)
    is_default: bool = False

    @property
    def name(self) -> str:
        return self.spec["nodepool_info"]["name"]

    @property
    def auto_scaling(self) -> dict[str, Any]:
        return self.spec.setdefault("auto_scaling", {})

    @property
    def scaling_group(self) -> dict[str, Any]:
        return self.spec.setdefault("scaling_group", {})

    @property
    def autoscaling_enabled(self) -> bool:
        return bool(self.auto_scaling.get("enable"))

    @property
    def max_size(self) -> int:
        """The most instances the pool may hold (auto scaling's max, else 2000)."""
        return int(self.auto_scaling.get("max_instances", 2000)) if self.autoscaling_enabled else 2000

    def labels(self) -> dict[str, str]:
        return {lb["key"]: lb.get("value", "") for lb in self.spec.get("kubernetes_config", {}).get("labels") or []}

    def taints(self) -> list[dict[str, str]]:
        return [
            {"key": t["key"], "value": t.get("value", ""), "effect": t.get("effect", "NoSchedule")}
            for t in self.spec.get("kubernetes_config", {}).get("taints") or []
        ]


class CsState:
    """The single cluster and everything in it. All mutation happens on the daemon's event loop."""

    def __init__(self, ctx: SandboxContext, faults: Faults | None = None) -> None:
        self.ctx = ctx
        self.faults = faults
        self._path: Path = ctx.service_dir("cs") / "state.json"
        self._listeners: list[Listener] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._ops: dict[str, int] = {}
        self._ip_next: dict[str, int] = {}
        self.pools_by_id: dict[str, NodePool] = {}
        self.instances_by_id: dict[str, Instance] = {}
        self.tasks: dict[str, Task] = {}
        self.cluster: dict[str, Any] = {}
        if self._path.exists():
            self._load()
        else:
            self._bootstrap()
            self.save()

    # ------------------------------------------------------------------ persistence
    def _bootstrap(self) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        seed = hashlib.sha256(ctx.cluster_id.encode()).hexdigest()
        zones = [f"{ctx.region}-h", f"{ctx.region}-i"]
        vswitches = [
            {"vswitch_id": "vsw-" + seed[i * 21 : (i + 1) * 21][:21], "zone_id": z, "cidr": f"192.168.{i * 32}.0/19"}
            for i, z in enumerate(zones)
        ]
        self.cluster = {
            "cluster_id": ctx.cluster_id,
            "name": "ack-sandbox",
            "region_id": ctx.region,
            "zone_id": zones[0],
            "state": "running",
            "cluster_type": "ManagedKubernetes",
            "cluster_spec": "ack.pro.small",
            "profile": "Default",
            "current_version": KUBERNETES_VERSION,
            "init_version": KUBERNETES_VERSION,
            "vpc_id": "vpc-" + seed[42:63],
            "vswitches": vswitches,
            "security_group_id": "sg-" + seed[:20],
            "container_cidr": "172.20.0.0/16",
            "service_cidr": "172.21.0.0/20",
            "network_mode": "vpc",
            "proxy_mode": "ipvs",
            "resource_group_id": "rg-" + seed[20:35],
            "created": now,
            "updated": now,
        }
        # A managed cluster's default node pool: two general-purpose pay-as-you-go workers, running.
        default = NodePool(
            nodepool_id=_hex_id("np", 32),
            spec=self._normalised_spec(
                {
                    "nodepool_info": {"name": "default-nodepool", "type": "ess"},
                    "auto_scaling": {"enable": False},
                    "scaling_group": {
                        "vswitch_ids": [v["vswitch_id"] for v in vswitches],
                        "instance_types": ["ecs.g7.xlarge"],
                        "desired_size": 2,
                        "system_disk_category": "cloud_essd",
                        "system_disk_size": 120,
                    },
                    "kubernetes_config": {"runtime": "containerd", "labels": [], "taints": []},
                }
            ),
            state="active",
            created=now,
            updated=now,
            scaling_group_id=_hex_id("asg-", 20),
            is_default=True,
        )
        self.pools_by_id[default.nodepool_id] = default
        for placement in plan_scale_out(self._policy(default), [], 2, lambda *_: True):
            inst = self._new_instance(default, placement)
            inst.state, inst.node_status = "running", "Ready"

    def _load(self) -> None:
        data = json.loads(self._path.read_text())
        self.cluster = data["cluster"]
        self._ip_next = data.get("ip_next", {})
        self.pools_by_id = {p["nodepool_id"]: NodePool(**p) for p in data["pools"]}
        self.instances_by_id = {i["instance_id"]: Instance(**i) for i in data["instances"]}
        self.tasks = {t["task_id"]: Task(**t) for t in data["tasks"]}

    def save(self) -> None:
        tasks = sorted(self.tasks.values(), key=lambda t: t.created)[-500:]
        data = {
            "cluster": self.cluster,
            "ip_next": self._ip_next,
            "pools": [asdict(p) for p in self.pools_by_id.values()],
            "instances": [asdict(i) for i in self.instances_by_id.values()],
            "tasks": [asdict(t) for t in tasks],
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._path)

    def resume(self) -> None:
        """After a restart: finish what was in flight when the daemon stopped (call on the event loop)."""
        for inst in list(self.instances_by_id.values()):
            if inst.state == "initial":
                self._spawn(self._finish_join([inst], None))
            elif inst.state == "removing":
                self._spawn(self._finish_removal([inst], None))
        for task in self.tasks.values():
            if task.state != "running":
                continue
            pool = self.pools_by_id.get(task.target_id)
            if task.task_type == "nodepool_create" and pool is not None and pool.state == "initial":
                self._spawn(self._run_create(pool, task))
            elif task.task_type == "nodepool_delete" and pool is not None:
                self._spawn(self._run_delete(pool, task))
            else:
                self._finish_task(task, None)
        for pool in self.pools_by_id.values():
            if pool.state in ("scaling", "updating", "removing"):
                pool.state = "active"
        self.save()

    # ------------------------------------------------------------------ listeners
    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        self._listeners.remove(fn)

    def _emit(self, event: str, inst: Instance) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, inst)
            except Exception:  # a broken listener must not break the cloud
                log.exception("cs listener failed on %s %s", event, inst.instance_id)

    # ------------------------------------------------------------------ reads
    def check_cluster(self, cluster_id: str) -> None:
        if cluster_id != self.cluster["cluster_id"]:
            raise cluster_not_found(cluster_id)

    def pools(self) -> list[NodePool]:
        return sorted(self.pools_by_id.values(), key=lambda p: p.created)

    def pool(self, nodepool_id: str) -> NodePool:
        pool = self.pools_by_id.get(nodepool_id)
        if pool is None:
            raise nodepool_not_found(nodepool_id)
        return pool

    def pool_by_name(self, name: str) -> NodePool | None:
        return next((p for p in self.pools_by_id.values() if p.name == name), None)

    def instances(self, pool_id: str | None = None) -> list[Instance]:
        items = [i for i in self.instances_by_id.values() if pool_id is None or i.nodepool_id == pool_id]
        return sorted(items, key=lambda i: (i.created, i.instance_id))

    def instance(self, instance_id: str) -> Instance | None:
        return self.instances_by_id.get(instance_id)

    def task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise CsError(404, "ErrorTaskNotFound", f"The specified task {task_id} is not found.")
        return task

    def vswitch_zones(self) -> dict[str, str]:
        return {v["vswitch_id"]: v["zone_id"] for v in self.cluster["vswitches"]}

    def node_spec(self, inst: Instance) -> dict[str, Any]:
        """What the Kubernetes Node for ``inst`` carries (labels per reference §7)."""
        pool = self.pools_by_id.get(inst.nodepool_id)
        itype = lookup(inst.instance_type)
        labels = {
            "kubernetes.io/hostname": inst.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": inst.instance_type,
            "beta.kubernetes.io/instance-type": inst.instance_type,
            "topology.kubernetes.io/zone": inst.zone_id,
            "failure-domain.beta.kubernetes.io/zone": inst.zone_id,
            "topology.kubernetes.io/region": self.ctx.region,
            "failure-domain.beta.kubernetes.io/region": self.ctx.region,
            "alibabacloud.com/nodepool-id": inst.nodepool_id,
            "node.alibabacloud.com/nodepool-id": inst.nodepool_id,
            "node.alibabacloud.com/instance-charge-type": inst.instance_charge_type,
            "node.alibabacloud.com/spot-strategy": inst.spot_strategy,
            "ack.aliyun.com": self.ctx.cluster_id,
        }
        if itype and itype.gpus:
            labels.update(
                {
                    "aliyun.accelerator/nvidia_name": itype.gpu_model,
                    "aliyun.accelerator/nvidia_count": str(itype.gpus),
                    "aliyun.accelerator/nvidia_mem": f"{itype.gpu_memory_mib}MiB",
                }
            )
        if pool is not None:
            labels.update(pool.labels())
        return {
            "name": inst.node_name,
            "provider_id": f"{self.ctx.region}.{inst.instance_id}",
            "internal_ip": inst.ip,
            "labels": labels,
            "taints": pool.taints() if pool else [],
            "unschedulable": bool(pool and pool.spec.get("kubernetes_config", {}).get("unschedulable")),
            "capacity": itype.capacity() if itype else {},
            "allocatable": itype.allocatable() if itype else {},
        }

    def pool_to_api(self, pool: NodePool, detail: bool) -> dict[str, Any]:
        spec = copy.deepcopy(pool.spec)
        spec["nodepool_info"].update(
            {
                "nodepool_id": pool.nodepool_id,
                "is_default": pool.is_default,
                "region_id": self.ctx.region,
                "resource_group_id": spec["nodepool_info"].get("resource_group_id")
                or self.cluster["resource_group_id"],
                "created": iso(pool.created),
                "updated": iso(pool.updated),
            }
        )
        spec["scaling_group"].update(
            {
                "scaling_group_id": pool.scaling_group_id,
                "security_group_id": self.cluster["security_group_id"],
                "ram_policy": "KubernetesWorkerRole-" + self.ctx.cluster_id[:12],
            }
        )
        insts = self.instances(pool.nodepool_id)
        count = {s: sum(1 for i in insts if i.state == s) for s in ("initial", "running", "removing")}
        status: dict[str, Any] = {
            "state": pool.state,
            "total_nodes": len(insts),
            "healthy_nodes": sum(1 for i in insts if i.node_status == "Ready"),
            "serving_nodes": count["running"],
            "initial_nodes": count["initial"],
            "failed_nodes": 0,
            "offline_nodes": sum(1 for i in insts if i.node_status == "NotReady"),
            "removing_nodes": count["removing"],
        }
        if detail:
            status["conditions"] = pool.conditions
        spec["status"] = status
        return spec

    def cluster_to_api(self) -> dict[str, Any]:
        c = self.cluster
        api_server = self.ctx.endpoints.get("kubernetes", "")
        return {
            "cluster_id": c["cluster_id"],
            "name": c["name"],
            "region_id": c["region_id"],
            "zone_id": c["zone_id"],
            "state": c["state"],
            "cluster_type": c["cluster_type"],
            "cluster_spec": c["cluster_spec"],
            "profile": c["profile"],
            "current_version": c["current_version"],
            "init_version": c["init_version"],
            "vpc_id": c["vpc_id"],
            "vswitch_id": ",".join(v["vswitch_id"] for v in c["vswitches"]),
            "vswitch_ids": [v["vswitch_id"] for v in c["vswitches"]],
            "security_group_id": c["security_group_id"],
            "container_cidr": c["container_cidr"],
            "service_cidr": c["service_cidr"],
            "network_mode": c["network_mode"],
            "proxy_mode": c["proxy_mode"],
            "resource_group_id": c["resource_group_id"],
            "deletion_protection": False,
            "cluster_domain": "cluster.local",
            "ip_stack": "ipv4",
            "timezone": "Asia/Shanghai",
            "master_url": json.dumps({"api_server_endpoint": api_server, "intranet_api_server_endpoint": api_server}),
            "meta_data": json.dumps(
                {
                    "Addons": [],
                    "Capabilities": {},
                    "KubernetesVersion": c["current_version"],
                    "VSwitches": c["vswitches"],
                }
            ),
            "parameters": {},
            "tags": [{"key": "ack.aliyun.com", "value": c["cluster_id"]}],
            "size": len(self.instances_by_id),
            "created": iso(c["created"]),
            "updated": iso(c["updated"]),
        }

    # ------------------------------------------------------------------ helpers
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _policy(self, pool: NodePool) -> MixPolicy:
        sg = pool.scaling_group
        zones = self.vswitch_zones()
        return MixPolicy(
            instance_types=tuple(sg.get("instance_types") or ()),
            vswitches=tuple((v, zones[v]) for v in sg.get("vswitch_ids") or () if v in zones),
            spot_strategy=sg.get("spot_strategy") or NO_SPOT,
            on_demand_base_capacity=int(sg.get("on_demand_base_capacity") or 0),
            on_demand_percentage_above_base_capacity=int(
                100
                if sg.get("on_demand_percentage_above_base_capacity") is None
                else sg["on_demand_percentage_above_base_capacity"]
            ),
            compensate_with_on_demand=bool(sg.get("compensate_with_on_demand")),
            multi_az_policy=sg.get("multi_az_policy") or "PRIORITY",
            spot_price_limit={i["instance_type"]: float(i["price_limit"]) for i in sg.get("spot_price_limit") or []},
        )

    def _stock(self, type_name: str, zone: str, spot: bool) -> bool:
        return self.faults.has_stock(type_name, zone, spot) if self.faults else True

    def _new_ip(self, vswitch_id: str) -> str:
        index = [v["vswitch_id"] for v in self.cluster["vswitches"]].index(vswitch_id)
        n = self._ip_next.get(vswitch_id, 10)
        self._ip_next[vswitch_id] = n + 1
        return f"192.168.{index * 32 + n // 250}.{n % 250 + 1}"

    def _new_instance(self, pool: NodePool, placement: Placement) -> Instance:
        ip = self._new_ip(placement.vswitch_id)
        inst = Instance(
            instance_id=_hex_id("i-", 20),
            nodepool_id=pool.nodepool_id,
            instance_type=placement.instance_type,
            zone_id=placement.zone_id,
            vswitch_id=placement.vswitch_id,
            ip=ip,
            node_name=f"{self.ctx.region}.{ip}",
            spot_strategy=placement.spot_strategy,
            instance_charge_type=pool.scaling_group.get("instance_charge_type") or "PostPaid",
            created=self.ctx.clock.now(),
        )
        self.instances_by_id[inst.instance_id] = inst
        return inst

    def _new_task(self, task_type: str, target_id: str, parameters: dict[str, Any] | None = None) -> Task:
        now = self.ctx.clock.now()
        task = Task(
            task_id="T-" + secrets.token_hex(12),
            task_type=task_type,
            cluster_id=self.ctx.cluster_id,
            target_id=target_id,
            created=now,
            updated=now,
            parameters=parameters or {},
        )
        self.tasks[task.task_id] = task
        self._stage(task, task_type + "_start", "started")
        return task

    def _stage(self, task: Task | None, name: str, message: str, state: str = "success") -> None:
        if task is None:
            return
        now = iso(self.ctx.clock.now())
        task.current_stage = name
        task.stages.append({"state": state, "message": message, "start_time": now, "end_time": now, "outputs": {}})
        task.events.append(
            {
                "action": name,
                "level": "Normal" if state == "success" else "Warning",
                "message": message,
                "reason": name,
                "source": "cs",
                "timestamp": now,
            }
        )
        task.updated = self.ctx.clock.now()

    def _finish_task(self, task: Task | None, error: tuple[str, str] | None) -> None:
        if task is None:
            return
        if error:
            task.state = "fail"
            task.error = {"code": error[0], "message": error[1]}
            self._stage(task, "failed", error[1], "failed")
        else:
            task.state = "success"
            self._stage(task, "finished", "task finished")

    def _begin(self, pool: NodePool, state: str) -> None:
        self._ops[pool.nodepool_id] = self._ops.get(pool.nodepool_id, 0) + 1
        if pool.state not in ("deleting", "initial", "failed"):
            pool.state = state
        pool.updated = self.ctx.clock.now()

    def _end(self, pool: NodePool) -> None:
        left = self._ops.get(pool.nodepool_id, 1) - 1
        self._ops[pool.nodepool_id] = left
        if left <= 0 and pool.state in ("scaling", "updating", "removing"):
            pool.state = "active"
        pool.updated = self.ctx.clock.now()

    def _node_delay(self) -> float:
        return random.uniform(DELAYS["node_min"], DELAYS["node_max"])

    @staticmethod
    def _normalised_spec(body: dict[str, Any]) -> dict[str, Any]:
        spec = {k: copy.deepcopy(v) for k, v in body.items() if v is not None and k != "count"}
        spec.setdefault("nodepool_info", {}).setdefault("type", "ess")
        auto = spec.setdefault("auto_scaling", {})
        auto.setdefault("enable", False)
        auto.setdefault("type", "cpu")
        if auto["enable"]:
            auto.setdefault("min_instances", 0)
        sg = spec.setdefault("scaling_group", {})
        defaults = {
            "instance_charge_type": "PostPaid",
            "spot_strategy": NO_SPOT,
            "multi_az_policy": "PRIORITY",
            "system_disk_category": "cloud_efficiency",
            "system_disk_size": 120,
            "scaling_policy": "release",
            "on_demand_base_capacity": 0,
            "on_demand_percentage_above_base_capacity": 100,
            "compensate_with_on_demand": False,
            "image_type": "AliyunLinux3",
            "data_disks": [],
            "tags": [],
            "spot_price_limit": [],
        }
        for k, v in defaults.items():
            if sg.get(k) is None:
                sg[k] = v
        kc = spec.setdefault("kubernetes_config", {})
        kc.setdefault("runtime", "containerd")
        kc.setdefault("labels", [])
        kc.setdefault("taints", [])
        spec.setdefault("management", {"enable": False})
        return spec

    # ------------------------------------------------------------------ node pool operations (API)
    def create_pool(self, body: dict[str, Any]) -> tuple[NodePool, Task]:
        validation.check_create(body, set(self.vswitch_zones()))
        name = body["nodepool_info"]["name"]
        if self.pool_by_name(name) is not None:
            # Real ACK: 400 InvalidParameter.Name "nodepool name X is already exist in cluster C" (ref §1.6).
            raise CsError(
                400, "InvalidParameter.Name", f"nodepool name {name} is already exist in cluster {self.ctx.cluster_id}"
            )
        now = self.ctx.clock.now()
        spec = self._normalised_spec(body)
        if not spec["auto_scaling"]["enable"] and spec["scaling_group"].get("desired_size") is None:
            spec["scaling_group"]["desired_size"] = int(body.get("count") or 0)
        pool = NodePool(
            nodepool_id=_hex_id("np", 32), spec=spec, created=now, updated=now, scaling_group_id=_hex_id("asg-", 20)
        )
        pool.conditions = [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Creating",
                "message": "creating the scaling group",
                "last_transition_time": iso(now),
            }
        ]
        self.pools_by_id[pool.nodepool_id] = pool
        task = self._new_task("nodepool_create", pool.nodepool_id, {"name": name})
        self.save()
        self._spawn(self._run_create(pool, task))
        return pool, task

    async def _run_create(self, pool: NodePool, task: Task) -> None:
        await self.ctx.clock.sleep(DELAYS["pool_setup"])
        if pool.nodepool_id not in self.pools_by_id:
            return
        self._stage(task, "create_scaling_group", f"scaling group {pool.scaling_group_id} created")
        want = (
            int(pool.auto_scaling.get("min_instances") or 0)
            if pool.autoscaling_enabled
            else int(pool.scaling_group.get("desired_size") or 0)
        )
        try:
            if want:
                await self._scale(pool, want, task)
        except NoStockError as exc:
            now = iso(self.ctx.clock.now())
            pool.state = "failed"
            pool.conditions = [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": exc.code,
                    "message": exc.message,
                    "last_transition_time": now,
                }
            ]
            self._finish_task(task, (exc.code, exc.message))
            self.save()
            return
        pool.state = "active"
        pool.updated = self.ctx.clock.now()
        pool.conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Active",
                "message": "node pool is active",
                "last_transition_time": iso(pool.updated),
            }
        ]
        self._finish_task(task, None)
        self.save()

    def modify_pool(self, nodepool_id: str, body: dict[str, Any]) -> Task:
        pool = self.pool(nodepool_id)
        if pool.state in ("deleting", "initial"):
            raise CsError(
                400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}; wait until it is active and retry"
            )
        validation.check_modify(body, pool.spec, set(self.vswitch_zones()))
        new_name = (body.get("nodepool_info") or {}).get("name")
        if new_name and new_name != pool.name and self.pool_by_name(new_name) is not None:
            raise CsError(
                400,
                "InvalidParameter.Name",
                f"nodepool name {new_name} is already exist in cluster {self.ctx.cluster_id}",
            )
        old_desired = pool.scaling_group.get("desired_size")
        for section in (
            "nodepool_info",
            "auto_scaling",
            "scaling_group",
            "kubernetes_config",
            "management",
            "tee_config",
        ):
            patch = body.get(section)
            if isinstance(patch, dict):
                for k, v in patch.items():
                    if v is None or (isinstance(v, list) and not v and k not in ("labels", "taints")):
                        continue  # the SDK's to_map() sends empty lists for unset list fields
                    pool.spec.setdefault(section, {})[k] = copy.deepcopy(v)
        if pool.state == "failed":
            pool.state = "active"
        task = self._new_task("nodepool_update", nodepool_id, {"body": body})
        self._begin(pool, "updating")
        self.save()
        self._spawn(self._run_modify(pool, task, old_desired))
        return task

    async def _run_modify(self, pool: NodePool, task: Task, old_desired: int | None) -> None:
        await self.ctx.clock.sleep(DELAYS["modify"])
        self._stage(task, "update_scaling_group", "scaling group configuration updated")
        error = None
        desired = pool.scaling_group.get("desired_size")
        if not pool.autoscaling_enabled and desired is not None and desired != old_desired:
            live = [i for i in self.instances(pool.nodepool_id) if i.state != "removing"]
            try:
                if desired > len(live):
                    await self._scale(pool, desired - len(live), task)
                elif desired < len(live):
                    await self._remove(pool, [i.instance_id for i in live[desired:]], task, keep_desired=True)
            except NoStockError as exc:
                error = (exc.code, exc.message)
        self._end(pool)
        self._finish_task(task, error)
        self.save()

    def scale_pool(self, nodepool_id: str, count: Any) -> Task:
        """ScaleClusterNodePool: add ``count`` nodes (reference §1.3)."""
        pool = self.pool(nodepool_id)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise invalid("count", f"must be a positive integer (nodes to add), got {count!r}")
        if pool.state in ("deleting", "initial", "failed"):
            raise CsError(
                400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}; it can be scaled only when active"
            )
        self._check_room(pool, count)
        task = self._new_task("nodepool_scaleout", nodepool_id, {"count": count})
        if not pool.autoscaling_enabled:
            pool.scaling_group["desired_size"] = int(pool.scaling_group.get("desired_size") or 0) + count
        self.save()

        async def run() -> None:
            try:
                await self._scale(pool, count, task)
            except NoStockError as exc:
                self._finish_task(task, (exc.code, exc.message))
            else:
                self._finish_task(task, None)
            self.save()

        self._spawn(run())
        return task

    def _check_room(self, pool: NodePool, count: int) -> None:
        live = sum(1 for i in self.instances(pool.nodepool_id) if i.state != "removing")
        if live + count > pool.max_size:
            raise invalid(
                "count",
                f"the node pool would have {live + count} nodes, more than "
                f"auto_scaling.max_instances ({pool.max_size}); raise max_instances first",
                "InvalidParameter.Count",
            )

    async def _scale(self, pool: NodePool, count: int, task: Task | None) -> list[Instance]:
        existing = [i.placement() for i in self.instances(pool.nodepool_id) if i.state != "removing"]
        plan = plan_scale_out(self._policy(pool), existing, count, self._stock)  # NoStockError propagates
        self._begin(pool, "scaling")
        try:
            created = [self._new_instance(pool, p) for p in plan]
            for inst in created:
                self._emit("added", inst)
            self._stage(
                task,
                "create_instances",
                f"created {len(created)} ECS instances: "
                + ", ".join(f"{i.instance_id}({i.instance_type},{i.spot_strategy})" for i in created),
            )
            self.save()
            await self._finish_join(created, task)
        finally:
            self._end(pool)
        self.save()
        return created

    async def _finish_join(self, created: list[Instance], task: Task | None) -> None:
        await self.ctx.clock.sleep(self._node_delay())
        for inst in created:
            if inst.instance_id in self.instances_by_id and inst.state == "initial":
                inst.state, inst.node_status = "running", "Ready"
                self._emit("running", inst)
                if task is not None:
                    task.task_result.append({"data": inst.instance_id, "status": "success"})
        self._stage(task, "attach_nodes", f"{len(created)} nodes joined the cluster")

    async def scale_out(self, nodepool_id: str, count: int) -> list[Instance]:
        """For the node-pool autoscaler: add ``count`` instances (mix + delay), return them once running.

        Raises ``CsError`` for an unknown pool / a pool not active / over ``max_instances``, and
        ``NoStockError`` when the mix cannot be satisfied (the task records the failure either way).
        """
        pool = self.pool(nodepool_id)
        if pool.state in ("deleting", "initial", "failed"):
            raise CsError(400, "ErrorNodePoolState", f"node pool {nodepool_id} is {pool.state}")
        self._check_room(pool, count)
        task = self._new_task("cluster_scaleout", nodepool_id, {"count": count, "source": "autoscaler"})
        if not pool.autoscaling_enabled:
            pool.scaling_group["desired_size"] = int(pool.scaling_group.get("desired_size") or 0) + count
        try:
            created = await self._scale(pool, count, task)
        except NoStockError as exc:
            self._finish_task(task, (exc.code, exc.message))
            self.save()
            raise
        self._finish_task(task, None)
        self.save()
        return created

    def remove_nodes(self, nodepool_id: str, instance_ids: list[str], node_names: list[str]) -> Task:
        """RemoveNodePoolNodes: drain and release the given instances (by id or node name)."""
        pool = self.pool(nodepool_id)
        by_name = {i.node_name: i.instance_id for i in self.instances(nodepool_id)}
        ids = list(instance_ids) + [by_name.get(n, n) for n in node_names]
        if not ids:
            raise invalid("instance_ids", "give the instance_ids (or nodes) to remove")
        for iid in ids:
            inst = self.instances_by_id.get(iid)
            if inst is None or inst.nodepool_id != nodepool_id:
                raise invalid(
                    "instance_ids", f"{iid} is not a node of node pool {nodepool_id}", "InvalidParameter.InstanceIds"
                )
        task = self._new_task("nodepool_remove_nodes", nodepool_id, {"instance_ids": ids})
        self.save()

        async def run() -> None:
            await self._remove(pool, ids, task)
            self._finish_task(task, None)
            self.save()

        self._spawn(run())
        return task

    async def remove_instances(self, nodepool_id: str, instance_ids: list[str]) -> None:
        """For the node-pool autoscaler: drain and release instances (returns when they are gone)."""
        pool = self.pool(nodepool_id)
        task = self._new_task("cluster_scalein", nodepool_id, {"instance_ids": list(instance_ids)})
        await self._remove(pool, list(instance_ids), task)
        self._finish_task(task, None)
        self.save()

    async def _remove(self, pool: NodePool, ids: list[str], task: Task | None, keep_desired: bool = False) -> None:
        insts = [self.instances_by_id[i] for i in ids if i in self.instances_by_id]
        self._begin(pool, "removing")
        try:
            for inst in insts:
                inst.state = "removing"
                self._emit("removing", inst)
            if not pool.autoscaling_enabled and not keep_desired:
                pool.scaling_group["desired_size"] = max(
                    0, int(pool.scaling_group.get("desired_size") or 0) - len(insts)
                )
            self.save()
            await self._finish_removal(insts, task)
        finally:
            self._end(pool)

    async def _finish_removal(self, insts: list[Instance], task: Task | None) -> None:
        await self.ctx.clock.sleep(DELAYS["remove_node"])
        for inst in insts:
            if self.instances_by_id.pop(inst.instance_id, None) is not None:
                self._emit("removed", inst)
                if task is not None:
                    task.task_result.append({"data": inst.instance_id, "status": "success"})
        self._stage(task, "release_instances", f"released {len(insts)} instances")
        self.save()

    async def reclaim_spot(self, instance_id: str, notice_seconds: float | None = None) -> Instance | None:
        """The spot market reclaims an instance: notice, then release. Returns the replacement, if any.

        With ``scaling_group.spot_instance_remedy`` the pool creates the replacement on notice (ESS
        docstring: the replacement is created before the old instance is released).
        """
        inst = self.instances_by_id.get(instance_id)
        if inst is None:
            raise CsError(404, "InvalidInstanceId.NotFound", f"instance {instance_id} not found")
        if not inst.is_spot:
            raise invalid("instance_id", f"{instance_id} is pay-as-you-go, not a spot instance")
        pool = self.pool(inst.nodepool_id)
        self._emit("reclaim_notice", inst)
        replacement: asyncio.Task[list[Instance]] | None = None
        if pool.scaling_group.get("spot_instance_remedy"):
            replacement = asyncio.get_running_loop().create_task(self._scale(pool, 1, None))
        await self.ctx.clock.sleep(DELAYS["reclaim_notice"] if notice_seconds is None else notice_seconds)
        inst.node_status = "NotReady"
        await self._remove(pool, [instance_id], None, keep_desired=True)
        if replacement is not None:
            try:
                return (await replacement)[0]
            except NoStockError:
                return None
        return None

    def delete_pool(self, nodepool_id: str, force: bool) -> Task:
        pool = self.pool(nodepool_id)
        live = self.instances(nodepool_id)
        if live and not force:
            # [unverified code] ACK refuses to delete a pool that still has nodes unless force=true.
            raise CsError(
                400,
                "ErrorNodePoolHasNodes",
                f"node pool {nodepool_id} still has {len(live)} nodes; remove them first or delete with force=true",
            )
        if pool.state == "deleting":
            raise CsError(400, "ErrorNodePoolState", f"node pool {nodepool_id} is already being deleted")
        pool.state = "deleting"
        pool.updated = self.ctx.clock.now()
        task = self._new_task("nodepool_delete", nodepool_id, {"force": force})
        self.save()
        self._spawn(self._run_delete(pool, task))
        return task

    async def _run_delete(self, pool: NodePool, task: Task) -> None:
        insts = self.instances(pool.nodepool_id)
        for inst in insts:
            inst.state = "removing"
            self._emit("removing", inst)
        await self.ctx.clock.sleep(DELAYS["delete_pool"])
        for inst in insts:
            if self.instances_by_id.pop(inst.instance_id, None) is not None:
                self._emit("removed", inst)
        self.pools_by_id.pop(pool.nodepool_id, None)
        self._finish_task(task, None)
        self.save()


def cs_state(ctx: SandboxContext) -> CsState:
    """The CS state of this daemon (created by the CS service at start)."""
    return ctx.services[SERVICE_KEY]
