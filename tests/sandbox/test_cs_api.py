"""The CS OpenAPI stand-in driven through the real alibabacloud-cs20151215 SDK over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from alibabacloud_tea_openapi.utils_models import Config

from ack_sandbox.cs.mix import payg_target
from tests.helpers import admin

pytestmark = pytest.mark.integration

GPU = "ecs.gn6i-c4g1.xlarge"


def make_client(sandbox: dict, ak: str | None = None, secret: str | None = None, token: str | None = None) -> Client:
    return Client(
        Config(
            access_key_id=ak or sandbox["access_key_id"],
            access_key_secret=secret or sandbox["access_key_secret"],
            security_token=token,
            region_id=sandbox["region"],
            endpoint=sandbox["cs"].split("//", 1)[1],
            protocol="http",
        )
    )


@pytest.fixture
def client(sandbox: dict) -> Client:
    return make_client(sandbox)


@pytest.fixture
def faults(sandbox: dict) -> Iterator[Callable[[dict], None]]:
    def set_faults(doc: dict) -> None:
        status, body = admin(sandbox, "cs", "POST", "/_sandbox/faults", doc)
        assert status == 200, body

    yield set_faults
    assert admin(sandbox, "cs", "DELETE", "/_sandbox/faults")[0] == 200


def vswitches(client: Client, sandbox: dict) -> list[str]:
    return client.describe_cluster_detail(sandbox["cluster_id"]).body.vswitch_ids


def pool_request(name: str, vsw: list[str], **sg: Any) -> cs.CreateClusterNodePoolRequest:
    auto = sg.pop("auto", dict(enable=True, max_instances=10, min_instances=0, type="spot"))
    group = dict(
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
    )
    group.update(sg)
    return cs.CreateClusterNodePoolRequest(
        nodepool_info=cs.CreateClusterNodePoolRequestNodepoolInfo(name=name, type="ess"),
        auto_scaling=cs.CreateClusterNodePoolRequestAutoScaling(**auto),
        kubernetes_config=cs.CreateClusterNodePoolRequestKubernetesConfig(
            labels=[cs.Tag(key="seldon", value="fashion-mnist")], runtime="containerd"
        ),
        scaling_group=cs.CreateClusterNodePoolRequestScalingGroup(**group),
    )


def wait_state(
    client: Client, cluster_id: str, pool_id: str, want: str, seen: list[str] | None = None, timeout: float = 30.0
) -> cs.DescribeClusterNodePoolDetailResponseBody:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
        if seen is not None and (not seen or seen[-1] != body.status.state):
            seen.append(body.status.state)
        if body.status.state == want:
            return body
        time.sleep(0.2)
    raise AssertionError(f"pool {pool_id} not {want} within {timeout}s (states seen: {seen})")


def wait_task(client: Client, task_id: str, timeout: float = 30.0) -> cs.DescribeTaskInfoResponseBody:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.describe_task_info(task_id).body
        if body.state != "running":
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still running after {timeout}s")


def nodes(client: Client, cluster_id: str, pool_id: str, **kw: Any) -> cs.DescribeClusterNodesResponseBody:
    return client.describe_cluster_nodes(cluster_id, cs.DescribeClusterNodesRequest(nodepool_id=pool_id, **kw)).body


def test_cluster_detail(client: Client, sandbox: dict) -> None:
    body = client.describe_cluster_detail(sandbox["cluster_id"]).body
    assert body.cluster_id == sandbox["cluster_id"]
    assert (body.state, body.cluster_type, body.region_id) == ("running", "ManagedKubernetes", sandbox["region"])
    assert len(body.vswitch_ids) == 2 and all(v.startswith("vsw-") for v in body.vswitch_ids)
    zones = {v["zone_id"] for v in json.loads(body.meta_data)["VSwitches"]}
    assert len(zones) == 2


def test_unknown_cluster_is_404_error_cluster_not_found(client: Client) -> None:
    with pytest.raises(ClientException) as err:
        client.describe_cluster_detail("c" + "0" * 32)
    assert (err.value.status_code, err.value.code) == (404, "ErrorClusterNotFound")
    assert err.value.request_id


def test_user_kubeconfig_is_the_state_dir_kubeconfig(client: Client, sandbox: dict) -> None:
    body = client.describe_cluster_user_kubeconfig(
        sandbox["cluster_id"],
        cs.DescribeClusterUserKubeconfigRequest(private_ip_address=False, temporary_duration_minutes=60),
    ).body
    assert body.config == (sandbox["state_dir"] / "kubeconfig").read_text()
    expires = datetime.fromisoformat(body.expiration.replace("Z", "+00:00"))
    assert 3000 < expires.timestamp() - time.time() <= 3600 + 5


def test_default_pool_and_node_paging(client: Client, sandbox: dict) -> None:
    pools = client.describe_cluster_node_pools(
        sandbox["cluster_id"], cs.DescribeClusterNodePoolsRequest(nodepool_name="default-nodepool")
    ).body.nodepools
    assert len(pools) == 1 and pools[0].nodepool_info.is_default and pools[0].status.state == "active"
    pool_id = pools[0].nodepool_info.nodepool_id
    first = nodes(client, sandbox["cluster_id"], pool_id, page_size="1", page_number="1")
    second = nodes(client, sandbox["cluster_id"], pool_id, page_size="1", page_number="2")
    assert first.page.total_count == 2 and len(first.nodes) == len(second.nodes) == 1
    assert first.nodes[0].instance_id != second.nodes[0].instance_id
    node = first.nodes[0]
    assert node.node_name == f"{sandbox['region']}.{node.ip_address[0]}"
    assert (node.state, node.instance_charge_type, node.spot_strategy) == ("running", "PostPaid", "NoSpot")
    by_ip = nodes(client, sandbox["cluster_id"], pool_id, node_ips=node.ip_address[0])
    assert [n.instance_id for n in by_ip.nodes] == [node.instance_id]


def test_node_pool_lifecycle(client: Client, sandbox: dict) -> None:
    cid = sandbox["cluster_id"]
    vsw = vswitches(client, sandbox)
    created = client.create_cluster_node_pool(cid, pool_request("lifecycle-pool", vsw)).body
    assert created.nodepool_id.startswith("np") and len(created.nodepool_id) == 34
    assert created.task_id.startswith("T-") and len(created.task_id) == 26
    seen: list[str] = []
    wait_state(client, cid, created.nodepool_id, "active", seen)
    assert seen[0] == "initial"
    assert wait_task(client, created.task_id).state == "success"

    # Found by name; a second pool with that name is refused like ACK does.
    listed = client.describe_cluster_node_pools(
        cid, cs.DescribeClusterNodePoolsRequest(nodepool_name="lifecycle-pool")
    ).body.nodepools
    assert [p.nodepool_info.nodepool_id for p in listed] == [created.nodepool_id]
    assert listed[0].scaling_group.on_demand_percentage_above_base_capacity == 30
    assert listed[0].kubernetes_config.labels[0].key == "seldon"
    with pytest.raises(ClientException) as dup:
        client.create_cluster_node_pool(cid, pool_request("lifecycle-pool", vsw))
    assert (dup.value.status_code, dup.value.code) == (400, "InvalidParameter.Name")
    assert "already exist" in dup.value.message

    # Scale out by 4: scaling -> active, 4 nodes, the seed's 30 % pay-as-you-go (rounded up) rest spot.
    scale = client.scale_cluster_node_pool(cid, created.nodepool_id, cs.ScaleClusterNodePoolRequest(count=4)).body
    assert client.describe_cluster_node_pool_detail(cid, created.nodepool_id).body.status.state == "scaling"
    task = wait_task(client, scale.task_id)
    assert task.state == "success" and len(task.task_result) == 4
    wait_state(client, cid, created.nodepool_id, "active")
    listing = nodes(client, cid, created.nodepool_id, page_size="100")
    assert listing.page.total_count == 4
    payg = [n for n in listing.nodes if n.spot_strategy == "NoSpot"]
    assert len(payg) == payg_target(4, 0, 30) == 2
    assert {n.spot_strategy for n in listing.nodes} == {"NoSpot", "SpotAsPriceGo"}
    assert all(n.state == "running" and n.instance_type == GPU for n in listing.nodes)
    detail = client.describe_cluster_node_pool_detail(cid, created.nodepool_id).body
    assert (detail.status.total_nodes, detail.status.serving_nodes) == (4, 4)

    # Paging over the pool's nodes.
    pages = [nodes(client, cid, created.nodepool_id, page_size="3", page_number=str(i)) for i in (1, 2)]
    assert [len(p.nodes) for p in pages] == [3, 1]
    assert {n.instance_id for p in pages for n in p.nodes} == {n.instance_id for n in listing.nodes}

    # Modify: updating -> active, changes visible.
    mod = client.modify_cluster_node_pool(
        cid,
        created.nodepool_id,
        cs.ModifyClusterNodePoolRequest(
            auto_scaling=cs.ModifyClusterNodePoolRequestAutoScaling(max_instances=12),
            kubernetes_config=cs.ModifyClusterNodePoolRequestKubernetesConfig(
                labels=[cs.Tag(key="seldon", value="fashion-mnist"), cs.Tag(key="tier", value="gpu")]
            ),
        ),
    ).body
    assert client.describe_cluster_node_pool_detail(cid, created.nodepool_id).body.status.state == "updating"
    detail = wait_state(client, cid, created.nodepool_id, "active")
    assert wait_task(client, mod.task_id).state == "success"
    assert detail.auto_scaling.max_instances == 12
    assert {lb.key for lb in detail.kubernetes_config.labels} == {"seldon", "tier"}

    # Remove one node: removing -> active, 3 left.
    victim = listing.nodes[0].instance_id
    rm = client.remove_node_pool_nodes(
        cid,
        created.nodepool_id,
        cs.RemoveNodePoolNodesRequest(instance_ids=[victim], release_node=True, drain_node=True),
    ).body
    assert client.describe_cluster_node_pool_detail(cid, created.nodepool_id).body.status.state == "removing"
    assert wait_task(client, rm.task_id).state == "success"
    wait_state(client, cid, created.nodepool_id, "active")
    left = nodes(client, cid, created.nodepool_id, page_size="100")
    assert left.page.total_count == 3 and victim not in {n.instance_id for n in left.nodes}

    # Delete: refused while nodes remain unless forced; then deleting -> gone (404 ErrorNodePoolNotFound).
    with pytest.raises(ClientException) as busy:
        client.delete_cluster_nodepool(cid, created.nodepool_id, cs.DeleteClusterNodepoolRequest(force=False))
    assert busy.value.status_code == 400 and "force" in busy.value.message
    deleted = client.delete_cluster_nodepool(cid, created.nodepool_id, cs.DeleteClusterNodepoolRequest(force=True))
    assert deleted.body.task_id.startswith("T-")
    assert client.describe_cluster_node_pool_detail(cid, created.nodepool_id).body.status.state == "deleting"
    assert wait_task(client, deleted.body.task_id).state == "success"
    with pytest.raises(ClientException) as gone:
        client.describe_cluster_node_pool_detail(cid, created.nodepool_id)
    assert (gone.value.status_code, gone.value.code) == (404, "ErrorNodePoolNotFound")


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (lambda r: setattr(r.nodepool_info, "name", ""), "nodepool_info.name", "InvalidParameter.Name"),
        (lambda r: setattr(r.auto_scaling, "min_instances", 11), "auto_scaling.min_instances", "InvalidParameter"),
        (lambda r: setattr(r.scaling_group, "instance_types", []), "scaling_group.instance_types", "InvalidParameter"),
        (
            lambda r: setattr(r.scaling_group, "instance_types", ["ecs.nope"]),
            "scaling_group.instance_types",
            "InvalidInstanceType.NotSupported",
        ),
        (
            lambda r: setattr(r.scaling_group, "vswitch_ids", ["vsw-elsewhere"]),
            "scaling_group.vswitch_ids",
            "InvalidVSwitchId.NotFound",
        ),
        (
            lambda r: setattr(r.scaling_group, "on_demand_percentage_above_base_capacity", 130),
            "scaling_group.on_demand_percentage_above_base_capacity",
            "InvalidParameter",
        ),
    ],
)
def test_create_validation_names_the_field(
    client: Client, sandbox: dict, change: Callable[[Any], None], field: str, code: str
) -> None:
    req = pool_request("invalid-pool", vswitches(client, sandbox))
    change(req)
    with pytest.raises(ClientException) as err:
        client.create_cluster_node_pool(sandbox["cluster_id"], req)
    assert (err.value.status_code, err.value.code) == (400, code)
    assert field in err.value.message


def test_unknown_access_key_is_terminal(sandbox: dict) -> None:
    bad = make_client(sandbox, ak="LTAI5tNotARealKeyId000")
    with pytest.raises(ClientException) as err:
        bad.describe_cluster_detail(sandbox["cluster_id"])
    assert (err.value.status_code, err.value.code) == (404, "InvalidAccessKeyId.NotFound")


def test_wrong_secret_is_signature_does_not_match(sandbox: dict) -> None:
    bad = make_client(sandbox, secret="not-the-secret")
    with pytest.raises(ClientException) as err:
        bad.describe_cluster_detail(sandbox["cluster_id"])
    assert (err.value.status_code, err.value.code) == (400, "SignatureDoesNotMatch")


def test_sts_credentials_are_accepted_and_a_wrong_token_refused(sandbox: dict) -> None:
    status, doc = admin(sandbox, "cs", "POST", "/_sandbox/sts", {"duration_seconds": 900})
    assert status == 200
    cred = doc["Credentials"]
    assert cred["AccessKeyId"].startswith("STS.")
    sts = make_client(sandbox, ak=cred["AccessKeyId"], secret=cred["AccessKeySecret"], token=cred["SecurityToken"])
    assert sts.describe_cluster_detail(sandbox["cluster_id"]).body.cluster_id == sandbox["cluster_id"]
    forged = make_client(sandbox, ak=cred["AccessKeyId"], secret=cred["AccessKeySecret"], token="CAISforged")
    with pytest.raises(ClientException) as err:
        forged.describe_cluster_detail(sandbox["cluster_id"])
    assert err.value.code == "InvalidSecurityToken.Malformed"


def test_admin_paths_need_the_demo_key(sandbox: dict) -> None:
    assert admin(sandbox, "cs", "GET", "/_sandbox/faults", bearer="someone-else")[0] == 401


def test_throttling_then_clears(client: Client, sandbox: dict, faults: Callable[[dict], None]) -> None:
    faults({"throttle": {"count": 2, "action": "DescribeClusterNodePools"}})
    request = cs.DescribeClusterNodePoolsRequest()
    for _ in range(2):
        with pytest.raises(ClientException) as err:
            client.describe_cluster_node_pools(sandbox["cluster_id"], request)
        assert (err.value.status_code, err.value.code) == (400, "Throttling.User")
    assert client.describe_cluster_node_pools(sandbox["cluster_id"], request).body.nodepools


def test_throttling_with_retry_after_raises_throttling_exception(
    client: Client, sandbox: dict, faults: Callable[[dict], None]
) -> None:
    faults({"throttle": {"count": 1, "retry_after": 1000}})
    with pytest.raises(ThrottlingException) as err:
        client.describe_cluster_detail(sandbox["cluster_id"])
    assert err.value.code == "Throttling.User" and err.value.retry_after == 1000


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "ServiceUnavailable")])
def test_server_error_fault(
    client: Client, sandbox: dict, faults: Callable[[dict], None], status: int, code: str
) -> None:
    faults({"server_error": {"count": 1, "action": "DescribeClusterDetail", "status": status}})
    with pytest.raises(ServerException) as err:
        client.describe_cluster_detail(sandbox["cluster_id"])
    assert (err.value.status_code, err.value.code) == (status, code)
    assert client.describe_cluster_detail(sandbox["cluster_id"]).body.state == "running"


def test_no_stock_fails_the_pool_with_the_cause(client: Client, sandbox: dict, faults: Callable[[dict], None]) -> None:
    cid = sandbox["cluster_id"]
    faults({"no_stock": [GPU]})
    req = pool_request(
        "sold-out-pool",
        vswitches(client, sandbox),
        auto=dict(enable=True, max_instances=4, min_instances=1, type="gpu"),
    )
    created = client.create_cluster_node_pool(cid, req).body
    detail = wait_state(client, cid, created.nodepool_id, "failed")
    assert detail.status.conditions[0].reason == "RecommendEmpty.InstanceTypeNoStock"
    task = wait_task(client, created.task_id)
    assert task.state == "fail" and task.error.code == "RecommendEmpty.InstanceTypeNoStock"
    assert GPU in task.error.message
    client.delete_cluster_nodepool(cid, created.nodepool_id, cs.DeleteClusterNodepoolRequest(force=True))


def test_spot_sold_out_compensated_with_pay_as_you_go(
    client: Client, sandbox: dict, faults: Callable[[dict], None]
) -> None:
    cid = sandbox["cluster_id"]
    faults({"no_spot_stock": [GPU]})
    vsw = vswitches(client, sandbox)
    comp = client.create_cluster_node_pool(
        cid,
        pool_request("compensated-pool", vsw, auto=dict(enable=True, max_instances=4, min_instances=3, type="spot")),
    ).body
    strict = client.create_cluster_node_pool(
        cid,
        pool_request(
            "strict-spot-pool",
            vsw,
            compensate_with_on_demand=False,
            on_demand_percentage_above_base_capacity=0,
            auto=dict(enable=True, max_instances=4, min_instances=0, type="spot"),
        ),
    ).body
    wait_state(client, cid, comp.nodepool_id, "active")
    assert {n.spot_strategy for n in nodes(client, cid, comp.nodepool_id).nodes} == {"NoSpot"}
    assert len(nodes(client, cid, comp.nodepool_id).nodes) == 3
    wait_state(client, cid, strict.nodepool_id, "active")
    scale = client.scale_cluster_node_pool(cid, strict.nodepool_id, cs.ScaleClusterNodePoolRequest(count=2)).body
    task = wait_task(client, scale.task_id)
    assert task.state == "fail" and "compensate_with_on_demand" in task.error.message
    assert nodes(client, cid, strict.nodepool_id).page.total_count == 0
    for pool_id in (comp.nodepool_id, strict.nodepool_id):
        client.delete_cluster_nodepool(cid, pool_id, cs.DeleteClusterNodepoolRequest(force=True))


def test_every_error_has_a_json_body(sandbox: dict) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(sandbox["cs"] + "/no/such/api", timeout=10)
    body = json.loads(err.value.read())
    assert err.value.code == 404 and body["code"] and body["requestId"]
