"""CS responses: the state as the CS OpenAPI returns it, and an instance as its Kubernetes Node carries it.

Field names follow the SDK's response models (``DescribeClusterNodePoolsResponseBody``,
``DescribeClusterDetailResponseBody``, ``DescribeClusterNodesResponseBodyNodes``, ``DescribeTaskInfoResponseBody``).
Pure functions of the store: the wire (``handlers.py``) serialises what they return.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ack_sandbox.cs.catalogue import lookup
from ack_sandbox.cs.state import CsStore, Instance, NodePool, Task, iso


def cluster_to_api(store: CsStore) -> dict[str, Any]:
    c = store.cluster
    api_server = store.ctx.endpoints.get("kubernetes", "")
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
        "size": len(store.instances_by_id),
        "created": iso(c["created"]),
        "updated": iso(c["updated"]),
    }


def pool_to_api(store: CsStore, pool: NodePool, detail: bool) -> dict[str, Any]:
    spec = copy.deepcopy(pool.spec)
    spec["nodepool_info"].update(
        {
            "nodepool_id": pool.nodepool_id,
            "is_default": pool.is_default,
            "region_id": store.ctx.region,
            "resource_group_id": spec["nodepool_info"].get("resource_group_id") or store.cluster["resource_group_id"],
            "created": iso(pool.created),
            "updated": iso(pool.updated),
        }
    )
    spec["scaling_group"].update(
        {
            "scaling_group_id": pool.scaling_group_id,
            "security_group_id": store.cluster["security_group_id"],
            "ram_policy": "KubernetesWorkerRole-" + store.ctx.cluster_id[:12],
        }
    )
    insts = store.instances(pool.nodepool_id)
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


def instance_to_api(inst: Instance) -> dict[str, Any]:
    """A ``DescribeClusterNodes`` node (field names from DescribeClusterNodesResponseBodyNodes)."""
    family = lookup(inst.instance_type).family if lookup(inst.instance_type) else ""
    return {
        "instance_id": inst.instance_id,
        "instance_name": f"worker-k8s-for-cs-{inst.instance_id[-8:]}",
        "node_name": inst.node_name,
        "host_name": inst.node_name,
        "instance_type": inst.instance_type,
        "instance_type_family": family,
        "ip_address": [inst.ip],
        "nodepool_id": inst.nodepool_id,
        "instance_charge_type": inst.instance_charge_type,
        "spot_strategy": inst.spot_strategy,
        "state": inst.state,
        "node_status": inst.node_status,
        "instance_status": {"initial": "Pending", "running": "Running", "removing": "Stopping"}[inst.state],
        "instance_role": "Worker",
        "is_aliyun_node": True,
        "source": "ess_attach",
        "creation_time": iso(inst.created),
        "expired_time": "2099-12-31T15:59:00+00:00",
        "error_message": inst.error_message,
        "image_id": "aliyun_3_x64_20G_alibase_20240819.vhd",
    }


def task_to_api(task: Task) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "cluster_id": task.cluster_id,
        "task_type": task.task_type,
        "state": task.state,
        "created": iso(task.created),
        "updated": iso(task.updated),
        "current_stage": task.current_stage,
        "target": {"id": task.target_id, "type": task.target_type},
        "parameters": task.parameters,
        "stages": task.stages,
        "events": task.events,
        "task_result": task.task_result,
        "outputs": {},
    }
    if task.error:
        body["error"] = task.error
    return body


def node_spec(store: CsStore, inst: Instance) -> dict[str, Any]:
    """What the Kubernetes Node for ``inst`` carries (labels per reference §7)."""
    pool = store.pools_by_id.get(inst.nodepool_id)
    itype = lookup(inst.instance_type)
    labels = {
        "kubernetes.io/hostname": inst.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": inst.instance_type,
        "beta.kubernetes.io/instance-type": inst.instance_type,
        "topology.kubernetes.io/zone": inst.zone_id,
        "failure-domain.beta.kubernetes.io/zone": inst.zone_id,
        "topology.kubernetes.io/region": store.ctx.region,
        "failure-domain.beta.kubernetes.io/region": store.ctx.region,
        "alibabacloud.com/nodepool-id": inst.nodepool_id,
        "node.alibabacloud.com/nodepool-id": inst.nodepool_id,
        "node.alibabacloud.com/instance-charge-type": inst.instance_charge_type,
        "node.alibabacloud.com/spot-strategy": inst.spot_strategy,
        "ack.aliyun.com": store.ctx.cluster_id,
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
        "provider_id": f"{store.ctx.region}.{inst.instance_id}",
        "internal_ip": inst.ip,
        "labels": labels,
        "taints": pool.taints() if pool else [],
        "unschedulable": bool(pool and pool.spec.get("kubernetes_config", {}).get("unschedulable")),
        "capacity": itype.capacity() if itype else {},
        "allocatable": itype.allocatable() if itype else {},
    }
