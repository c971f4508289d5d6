"""CS state: the cluster, its node pools, their ECS instances and the tasks that change them, and where they are kept.

Knows nothing of HTTP and moves nothing through its stages (that is ``lifecycle.py``; the API shapes are
``responses.py``). ``CsStore`` holds the records, persists them to ``cs/state.json``, answers the reads, tells the
listeners what happened to an instance and keeps the tasks' stage history. The records are plain dataclasses.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ack_sandbox.cs.errors import CsError, cluster_not_found, nodepool_not_found
from ack_sandbox.cs.mix import NO_SPOT, MixPolicy, Placement, plan_scale_out

if TYPE_CHECKING:
    from ack_sandbox.context import SandboxContext
    from ack_sandbox.cs.faults import Faults

log = logging.getLogger("ack_sandbox.cs")

SERVICE_KEY = "cs"
KUBERNETES_VERSION = "1.31.1-aliyun.1"

# Cloud-second delays (compressed by the clock). Module-level so tests/other services can read them.
DELAYS = {
    "pool_setup": 60.0,  # scaling group + launch template before the pool is usable
    "node_min": 60.0,  # ECS instance create + boot + kubelet join
    "node_max": 90.0,
    "modify": 15.0,
    "remove_node": 30.0,  # drain + release
    "delete_pool": 30.0,
    # Spot reclamation: the interruption notice comes 5 minutes before the release. ECS API reference,
    # RunInstances / CreateInstance ``SpotDuration`` ("Alibaba Cloud sends an ECS system event to notify you
    # 5 minutes before the instance is released", the text the ECS SDKs carry in their request models); the
    # notice is the ``Instance:PreemptibleInstanceInterruption`` event / ``OperationLocks`` LockReason
    # ``Recycling`` ("Detect and handle spot instance interruptions", help.aliyun.com/document_detail/391175).
    "reclaim_notice": 300.0,
}

Listener = Callable[[str, "Instance"], None]


def iso(ts: float) -> str:
    """ACK timestamps: ISO 8601 with offset, e.g. ``2020-09-27T20:37:46+08:00`` (UTC here)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def new_id(prefix: str, n: int) -> str:
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


class CsStore:
    """The single cluster and everything in it, persisted. All mutation happens on the daemon's event loop."""

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
            nodepool_id=new_id("np", 32),
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
            scaling_group_id=new_id("asg-", 20),
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
            instance_id=new_id("i-", 20),
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
