"""Pure logic of the part-A controllers: scheduling filters, rollout fenceposts, PV matching, CSI
credentials, kubelet helpers. The behaviour end to end is in test_controllers_workloads.py."""

from __future__ import annotations

import pytest

from ack_sandbox.controllers.deployment import fenceposts, template_hash
from ack_sandbox.controllers.node_autoscaler import Template, nodes_needed, template_fits
from ack_sandbox.controllers.scheduler import fit_error_message, fit_reasons, parse_quantity, pod_requests, tolerates
from ack_sandbox.controllers.volumes import best_pv, oss_credentials
from ack_sandbox.kubelet.container import _backoff, _builtin_resolve, expand_vars, translate_paths
from ack_sandbox.kubelet.ips import IpPool, listening_ips
from ack_sandbox.kubelet.status import ContainerRecord, image_ref, pod_phase


def _pod(requests: dict | None = None, limits: dict | None = None, **spec) -> dict:
    res = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": res}], **spec}}


def test_quantities_and_requests_default_to_limits() -> None:
    assert parse_quantity("500m") == 0.5 and parse_quantity("2Gi") == 2 * 2**30 and parse_quantity("1e3") == 1000
    with pytest.raises(ValueError):
        parse_quantity("two")
    assert pod_requests(_pod(limits={"nvidia.com/gpu": 1}, requests={"cpu": "0.5"})) == {
        "nvidia.com/gpu": 1,
        "cpu": 0.5,
    }


def test_fit_reasons_selector_taints_and_resources() -> None:
    alloc = {"cpu": 3.9, "memory": 15 * 2**30, "pods": 64}
    gpu_pod = _pod(limits={"nvidia.com/gpu": 1}, nodeSelector={"seldon": "fashion-mnist"})
    assert fit_reasons(gpu_pod, {}, [], alloc, {}) == ["node(s) didn't match Pod's node affinity/selector"]
    assert fit_reasons(gpu_pod, {"seldon": "fashion-mnist"}, [], alloc, {}) == ["Insufficient nvidia.com/gpu"]
    assert fit_reasons(gpu_pod, {"seldon": "fashion-mnist"}, [], {**alloc, "nvidia.com/gpu": 1}, {}) == []
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert fit_reasons(_pod(), {}, [taint], alloc, {}) == ["node(s) had untolerated taint {dedicated: gpu}"]
    assert tolerates([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], taint)
    assert tolerates([{"operator": "Exists"}], taint)
    assert not tolerates([{"key": "dedicated", "value": "cpu"}], taint)
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]
            }
        }
    }
    assert fit_reasons(_pod(affinity=affinity), {"zone": "c"}, [], alloc, {})
    assert not fit_reasons(_pod(affinity=affinity), {"zone": "b"}, [], alloc, {})


def test_fit_error_message_is_upstreams_histogram() -> None:
    msg = fit_error_message(
        3,
        {
            "a": ["Insufficient nvidia.com/gpu"],
            "b": ["node(s) didn't match Pod's node affinity/selector"],
            "c": ["node(s) didn't match Pod's node affinity/selector"],
        },
    )
    assert msg == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for "
        "incoming pod, 2 Preemption is not helpful for scheduling."
    )


def test_rolling_update_fenceposts_round_like_upstream() -> None:
    def dep(replicas: int, **ru: object) -> dict:
        return {"spec": {"replicas": replicas, "strategy": {"rollingUpdate": ru}}}

    assert fenceposts(dep(10)) == (3, 2)  # 25% up / 25% down
    assert fenceposts(dep(1)) == (1, 0)
    assert fenceposts(dep(4, maxSurge=0, maxUnavailable=0)) == (0, 1)
    assert fenceposts(dep(5, maxSurge="50%", maxUnavailable=2)) == (3, 2)
    assert template_hash({"a": 1}) == template_hash({"a": 1}) != template_hash({"a": 2})


def test_pv_matching_prefers_the_smallest_fitting_volume() -> None:
    def pv(name: str, size: str, modes: list[str], labels: dict | None = None, cls: str = "") -> dict:
        return {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": cls},
            "status": {"phase": "Available"},
        }

    claim = {
        "metadata": {"name": "c", "namespace": "default", "uid": "u"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}},
    }
    pvs = [
        pv("big", "50Gi", ["ReadWriteMany"]),
        pv("small", "5Gi", ["ReadWriteMany"]),
        pv("tiny", "1Gi", ["ReadWriteMany"]),
        pv("rwo", "5Gi", ["ReadWriteOnce"]),
        pv("classy", "5Gi", ["ReadWriteMany"], cls="fast"),
    ]
    assert best_pv(pvs, claim)["metadata"]["name"] == "small"
    claim["spec"]["selector"] = {"matchLabels": {"alicloud-pvname": "big"}}
    pvs[0]["metadata"]["labels"] = {"alicloud-pvname": "big"}
    assert best_pv(pvs, claim)["metadata"]["name"] == "big"
    claim["spec"]["selector"] = {"matchLabels": {"alicloud-pvname": "none"}}
    assert best_pv(pvs, claim) is None


def test_oss_csi_credentials_resolve_like_the_node_plugin() -> None:
    assert oss_credentials({"akId": "a", "akSecret": "s"}, {}) == ("a", "s", "")
    assert oss_credentials({"AKID": "a", "aksecret": "s"}, {}) == ("a", "s", "")  # case-insensitive
    # Only one legacy key set: both ignored, the standard keys are used.
    assert oss_credentials({"akId": "x", "AccessKeyId": "a", "AccessKeySecret": "s", "SecurityToken": "t"}, {}) == (
        "a",
        "s",
        "t",
    )
    assert oss_credentials(None, {"akId": "i", "akSecret": "j"}) == ("i", "j", "")
    assert oss_credentials({}, {"bucket": "b"}) is None


def test_kubelet_helpers() -> None:
    mounts = {"/mnt": "/state/pod/volumes/model-storage"}
    assert (
        translate_paths("--model_base_path=/mnt/arena/models/fashion-mnist", mounts)
        == "--model_base_path=/state/pod/volumes/model-storage/arena/models/fashion-mnist"
    )
    assert translate_paths("/mnt", mounts) == "/state/pod/volumes/model-storage"
    assert translate_paths("/mntx/a", mounts) == "/mntx/a" and translate_paths("/x/mnt/a", mounts) == "/x/mnt/a"
    assert (
        expand_vars("--bind=$(POD_IP) $(MISSING) $$(POD_IP)", {"POD_IP": "127.0.1.9"})
        == "--bind=127.0.1.9 $(MISSING) $(POD_IP)"
    )
    assert [_backoff(n) for n in (1, 2, 3, 4, 7, 20)] == [0, 10, 20, 40, 300, 300]
    assert _builtin_resolve("busybox:1.36", ["sh", "-c", "exit 1"], None).argv == ["/bin/sh", "-c", "exit 1"]
    assert _builtin_resolve("docker.io/library/busybox", ["rm", "-rf", "/"], None) is None  # not an applet we run
    assert _builtin_resolve("nginx:1.25", None, None) is None
    assert image_ref("busybox") == "docker.io/library/busybox:latest"
    assert image_ref("tensorflow/serving:2.3.0-gpu") == "docker.io/tensorflow/serving:2.3.0-gpu"
    assert (
        image_ref("registry.cn-beijing.aliyuncs.com/deepai/x:1.3.0")
        == "registry.cn-beijing.aliyuncs.com/deepai/x:1.3.0"
    )


def test_ip_pool_skips_the_host_range_and_reuses_nothing() -> None:
    pool = IpPool(block=251)
    ips = [pool.allocate(f"uid-{i}") for i in range(300)]
    assert all(ip.startswith("127.251.") for ip in ips) and len(set(ips)) == 300
    assert all(not ip.endswith((".0", ".255")) for ip in ips)
    assert pool.allocate("uid-3") == ips[3]
    # The block's first address, unless a process on this machine (another sandbox's pod) listens there.
    taken = listening_ips()
    first_free = next(f"127.7.0.{n}" for n in range(1, 255) if f"127.7.0.{n}" not in taken)
    assert IpPool(block=7).allocate("x") == first_free
    pool.release("uid-3")
    assert pool.owner(ips[3]) is None
    assert not pool.reserve(ips[4], "someone-else") and pool.reserve(ips[3], "new")


def test_pod_phase_follows_restart_policy() -> None:
    done = ContainerRecord("c", "i", state="terminated", exit_code=0)
    failed = ContainerRecord("c", "i", state="terminated", exit_code=1)
    crashloop = ContainerRecord(
        "c", "i", state="waiting", reason="CrashLoopBackOff", last_state={"terminated": {"exitCode": 1}}
    )
    assert pod_phase("Never", [done], True) == "Succeeded"
    assert pod_phase("Never", [failed], True) == "Failed"
    assert pod_phase("Always", [crashloop], True) == "Running"
    assert pod_phase("Always", [ContainerRecord("c", "i")], True) == "Pending"


def test_autoscaler_template_fit_and_bin_packing() -> None:
    tpl = Template(
        "np1",
        "ecs.gn6i-c4g1.xlarge",
        {"seldon": "fashion-mnist"},
        [],
        {"cpu": 3.9, "memory": 14 * 2**30, "nvidia.com/gpu": 1, "pods": 64},
    )
    gpu = _pod(limits={"nvidia.com/gpu": 1}, requests={"cpu": "0.5"}, nodeSelector={"seldon": "fashion-mnist"})
    assert template_fits(gpu, tpl)
    assert not template_fits(_pod(nodeSelector={"seldon": "other"}), tpl)
    assert nodes_needed([gpu, gpu, gpu], tpl) == 3  # one GPU per node
    cpu = _pod(requests={"cpu": "1"}, nodeSelector={"seldon": "fashion-mnist"})
    assert nodes_needed([cpu] * 5, tpl) == 2  # 3 x 1 cpu fit in 3.9


def test_two_live_sandboxes_never_share_a_block_and_a_restart_takes_its_own_back(tmp_path, monkeypatch) -> None:
    """Two daemons with one block would hand out the same pod IPs in the same order (a CI flake: one sandbox's
    request reached the other's torn-down pod, 502). The claim is a flock, so it holds between processes too."""
    import subprocess
    import sys

    from ack_sandbox.kubelet.ips import BLOCK_FILE, claim_block

    monkeypatch.setenv("ACK_SANDBOX_IP_LOCK_DIR", str(tmp_path / "locks"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    (second / BLOCK_FILE).write_text("200\n")
    (first / BLOCK_FILE).write_text("200\n")  # both would start from block 200
    a = claim_block(first)
    b = claim_block(second)
    assert a.block == 200 and b.block == 201
    assert (second / BLOCK_FILE).read_text().strip() == "201"
    # Another process cannot take a held block either.
    probe = (
        "import sys; from pathlib import Path; from ack_sandbox.kubelet.ips import claim_block; "
        "print(claim_block(Path(sys.argv[1])).block)"
    )
    other = subprocess.run([sys.executable, "-c", probe, str(first)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "202"
    a.release()
    b.release()
    # Released (a daemon stopped): a restart with the same state directory takes its recorded block back.
    assert claim_block(second).block == 201


def test_addresses_with_a_listener_are_skipped() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.9.0.1", 0))
        s.listen()
        assert "127.9.0.1" in listening_ips()
        assert IpPool(block=9).allocate("x") == "127.9.0.2"
