"""The elastic GPU node pool end to end: pending GPU pods grow the pool (CS SDK + kubernetes client), new
Nodes carry ACK's labels and agree with DescribeClusterNodes, a spot reclaim drill reschedules the pods, and
idle nodes are released after the scale-down delay."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from kubernetes import client

from tests.helpers import admin, until
from tests.sandbox.workloads import NS, events_for

pytestmark = pytest.mark.integration

GPU = "ecs.gn6i-c4g1.xlarge"


@pytest.fixture(scope="module")
def cs_client(sandbox: dict) -> Client:
    return Client(
        Config(
            access_key_id=sandbox["access_key_id"],
            access_key_secret=sandbox["access_key_secret"],
            region_id=sandbox["region"],
            endpoint=sandbox["cs"].split("//", 1)[1],
            protocol="http",
        )
    )


@pytest.fixture
def fast_scale_down(sandbox: dict) -> Iterator[None]:
    """Shorten the autoscaler's scale-down delays for this test only (cloud seconds), then restore them."""
    status, before = admin(sandbox, "controllers", "GET", "/_sandbox/autoscaler")
    assert status == 200, before
    status, body = admin(
        sandbox,
        "controllers",
        "PUT",
        "/_sandbox/autoscaler",
        {"scale_down_unneeded": 30, "scale_down_delay_after_add": 0},
    )
    assert status == 200 and body["config"]["scale_down_unneeded"] == 30, body
    try:
        yield
    finally:
        admin(sandbox, "controllers", "PUT", "/_sandbox/autoscaler", before["config"])


def create_pool(cs_client: Client, sandbox: dict, label: str) -> str:
    vsw = cs_client.describe_cluster_detail(sandbox["cluster_id"]).body.vswitch_ids
    req = cs.CreateClusterNodePoolRequest(
        nodepool_info=cs.CreateClusterNodePoolRequestNodepoolInfo(name=f"elastic-{label}", type="ess"),
        auto_scaling=cs.CreateClusterNodePoolRequestAutoScaling(
            enable=True, min_instances=0, max_instances=3, type="spot"
        ),
        kubernetes_config=cs.CreateClusterNodePoolRequestKubernetesConfig(
            labels=[cs.Tag(key="elastic-test", value=label)], runtime="containerd"
        ),
        scaling_group=cs.CreateClusterNodePoolRequestScalingGroup(
            instance_types=[GPU],
            vswitch_ids=vsw,
            instance_charge_type="PostPaid",
            spot_strategy="SpotAsPriceGo",
            multi_az_policy="COST_OPTIMIZED",
            on_demand_base_capacity=0,
            on_demand_percentage_above_base_capacity=30,
            compensate_with_on_demand=True,
            system_disk_category="cloud_essd",
            system_disk_size=120,
        ),
    )
    pool_id = cs_client.create_cluster_node_pool(sandbox["cluster_id"], req).body.nodepool_id
    until(
        "pool active",
        lambda: (
            cs_client.describe_cluster_node_pool_detail(sandbox["cluster_id"], pool_id).body.status.state == "active"
        ),
    )
    return pool_id


def gpu_deployment(name: str, label: str, replicas: int) -> dict[str, Any]:
    container = {
        "name": "infer",
        "image": "busybox:1.36",
        "command": ["sleep", "3600"],
        "resources": {"requests": {"cpu": "500m"}, "limits": {"nvidia.com/gpu": 1}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"elastic-test": label},
                    "containers": [container],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def pool_nodes(core: client.CoreV1Api, pool_id: str) -> list[client.V1Node]:
    return core.list_node(label_selector=f"alibabacloud.com/nodepool-id={pool_id}").items


def running(core: client.CoreV1Api, app: str) -> list[client.V1Pod]:
    return [
        p
        for p in core.list_namespaced_pod(NS, label_selector=f"app={app}").items
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    ]


def test_gpu_pods_grow_the_elastic_pool_survive_a_spot_reclaim_and_idle_nodes_go(
    sandbox: dict, cs_client: Client, core: client.CoreV1Api, apps: client.AppsV1Api, fast_scale_down: None
) -> None:
    label = secrets.token_hex(4)
    pool_id = create_pool(cs_client, sandbox, label)
    name = f"gpu-{label}"
    apps.create_namespaced_deployment(NS, gpu_deployment(name, label, 2))

    # No node fits: Pending / Unschedulable with the scheduler's message, then the pool is scaled up.
    def unschedulable() -> client.V1Pod | None:
        for p in core.list_namespaced_pod(NS, label_selector=f"app={name}").items:
            for c in p.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    return p
        return None

    pending = until("an unschedulable GPU pod", unschedulable)
    cond = next(c for c in pending.status.conditions if c.type == "PodScheduled")
    assert cond.message.startswith("0/") and "node(s) didn't match Pod's node affinity/selector" in cond.message
    evs = events_for(core, pending.metadata.name)
    assert any(e.reason == "FailedScheduling" and e.type == "Warning" for e in evs)
    until(
        "TriggeredScaleUp",
        lambda: any(
            e.reason == "TriggeredScaleUp" and pool_id in e.message for e in events_for(core, pending.metadata.name)
        ),
    )

    pods = until("2 GPU pods running", lambda: (lambda r: r if len(r) == 2 else None)(running(core, name)), timeout=40)
    nodes = {n.metadata.name: n for n in pool_nodes(core, pool_id)}
    assert len(nodes) == 2 and {p.spec.node_name for p in pods} == set(nodes)
    for n in nodes.values():
        labels = n.metadata.labels
        assert labels["elastic-test"] == label and labels["node.kubernetes.io/instance-type"] == GPU
        assert labels["topology.kubernetes.io/zone"].startswith(sandbox["region"])
        assert n.status.allocatable["nvidia.com/gpu"] == "1"
        assert n.spec.provider_id.startswith(sandbox["region"] + ".i-")
    # 30 % pay-as-you-go above a base of 0: the first node is pay-as-you-go, the second spot.
    strategies = sorted(n.metadata.labels["node.alibabacloud.com/spot-strategy"] for n in nodes.values())
    assert strategies == ["NoSpot", "SpotAsPriceGo"]
    # CS DescribeClusterNodes reports the same nodes.
    body = cs_client.describe_cluster_nodes(
        sandbox["cluster_id"], cs.DescribeClusterNodesRequest(nodepool_id=pool_id)
    ).body
    assert {(x.node_name, x.spot_strategy, x.instance_type) for x in body.nodes} == {
        (n.metadata.name, n.metadata.labels["node.alibabacloud.com/spot-strategy"], GPU) for n in nodes.values()
    }

    # Spot reclaim drill: notice -> cordon + drain, the evicted pod lands on a new node, the old one goes.
    spot = next(n for n in nodes.values() if n.metadata.labels["node.alibabacloud.com/spot-strategy"] != "NoSpot")
    status, body = admin(sandbox, "controllers", "POST", f"/_sandbox/nodes/{spot.metadata.name}/reclaim?notice=30")
    assert status == 202 and body["node_name"] == spot.metadata.name, body
    status, body = admin(
        sandbox, "controllers", "POST", f"/_sandbox/nodes/{next(iter(set(nodes) - {spot.metadata.name}))}/reclaim"
    )
    assert status == 400 and "pay-as-you-go" in body["message"]
    until("cordoned", lambda: core.read_node(spot.metadata.name).spec.unschedulable)
    until(
        "reclaimed node gone",
        lambda: spot.metadata.name not in {n.metadata.name for n in pool_nodes(core, pool_id)},
        timeout=40,
    )
    pods = until(
        "2 GPU pods running again", lambda: (lambda r: r if len(r) == 2 else None)(running(core, name)), timeout=40
    )
    assert spot.metadata.name not in {p.spec.node_name for p in pods}
    assert any(
        e.reason == "PreemptibleInstanceInterrupted"
        for e in core.list_namespaced_event("default").items
        if e.involved_object.name == spot.metadata.name
    )

    # Idle nodes are released after the scale-down delay (min_instances 0).
    apps.patch_namespaced_deployment_scale(name, NS, {"spec": {"replicas": 0}})
    until("pool scaled in to 0", lambda: not pool_nodes(core, pool_id), timeout=40)
    assert not cs_client.describe_cluster_nodes(
        sandbox["cluster_id"], cs.DescribeClusterNodesRequest(nodepool_id=pool_id)
    ).body.nodes
    apps.delete_namespaced_deployment(name, NS)
