"""Workloads really run on the sandbox: Deployments -> ReplicaSets -> scheduled pods -> local processes on
their own loopback IPs, driven through the official kubernetes client (and the CS SDK for node pools)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import until
from tests.sandbox.workloads import NS, events_for

pytestmark = pytest.mark.integration


def http_server_container(port: int = 8080, **extra: Any) -> dict[str, Any]:
    """A real HTTP server process (python:3.12's http.server) bound to the pod IP, with a readiness probe."""
    return {
        "name": "web",
        "image": "python:3.12",
        "command": ["python3", "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *extra.pop("env", [])],
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        **extra,
    }


def deployment(name: str, replicas: int, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
            },
            **spec,
        },
    }


def ready_pods(core: client.CoreV1Api, app: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(NS, label_selector=f"app={app}").items
    return [
        p
        for p in pods
        if p.status.phase == "Running"
        and not p.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


def test_deployment_pods_run_ready_on_their_own_loopback_ips(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", 2, http_server_container()))
    pods = until("2 ready web pods", lambda: (lambda r: r if len(r) == 2 else None)(ready_pods(core, "web")))
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    nodes = {n.metadata.name: n for n in core.list_node().items}
    for p in pods:
        node = nodes[p.spec.node_name]
        assert node.metadata.labels["node.kubernetes.io/instance-type"] == "ecs.g7.xlarge"
        assert p.status.host_ip == next(a.address for a in node.status.addresses if a.type == "InternalIP")
        st = p.status.container_statuses[0]
        assert (st.ready, st.started, st.restart_count) == (True, True, 0)
        assert st.state.running is not None and st.container_id.startswith("containerd://")
        assert st.image == "docker.io/library/python:3.12" and st.image_id.startswith(
            "docker.io/library/python@sha256:"
        )
        assert [c.type for c in p.status.conditions] == [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        # The container is a real server on the pod's own address.
        status, body = get(f"http://{p.status.pod_ip}:8080/")
        assert status == 200 and b"Directory listing" in body
    # The two replicas are spread over the two default-pool nodes.
    assert len({p.spec.node_name for p in pods}) == 2
    dep = until(
        "deployment available",
        lambda: (lambda d: d if d.status.available_replicas == 2 else None)(apps.read_namespaced_deployment("web", NS)),
    )
    conds = {c.type: c.reason for c in dep.status.conditions}
    assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    reasons = {e.reason for p in pods for e in events_for(core, p.metadata.name)}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons

    # Scale up, then down: the ReplicaSet creates and deletes pods, the kubelet stops the processes.
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}})
    until("3 ready web pods", lambda: len(ready_pods(core, "web")) == 3)
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 1}})
    until("1 web pod left", lambda: len(core.list_namespaced_pod(NS, label_selector="app=web").items) == 1)
    survivor = core.list_namespaced_pod(NS, label_selector="app=web").items[0]
    gone_ips = ips - {survivor.status.pod_ip}

    def refused(ip: str) -> bool:
        try:
            get(f"http://{ip}:8080/")
        except OSError:
            return True
        return False

    # The process of a deleted pod is stopped (SIGTERM; the store may drop the object when the compressed
    # grace period ends a moment before the process has exited, hence the bounded wait).
    until("old pod processes stopped", lambda: all(refused(ip) for ip in gone_ips), timeout=10)


def test_rolling_update_replaces_every_pod_within_max_unavailable(
    core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    name = "roll"
    apps.create_namespaced_deployment(
        NS,
        deployment(
            name,
            3,
            http_server_container(),
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        ),
    )
    until("3 ready", lambda: len(ready_pods(core, name)) == 3)
    old_rs = {rs.metadata.name for rs in apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items}
    apps.patch_namespaced_deployment(
        name,
        NS,
        {
            "spec": {
                "template": {"spec": {"containers": [http_server_container(env=[{"name": "VERSION", "value": "2"}])]}}
            }
        },
    )
    min_ready = 3
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment(name, NS)
        min_ready = min(min_ready, len(ready_pods(core, name)))
        if (
            dep.status.updated_replicas == 3
            and dep.status.available_replicas == 3
            and dep.status.replicas == 3
            and dep.status.observed_generation == dep.metadata.generation
        ):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"rollout did not finish: {dep.status}")
    assert min_ready >= 3  # maxUnavailable 0: readiness was respected all along
    rss = apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items
    new = [rs for rs in rss if rs.metadata.name not in old_rs]
    assert len(new) == 1 and new[0].spec.replicas == 3
    assert new[0].metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert all(rs.spec.replicas == 0 for rs in rss if rs.metadata.name in old_rs)
    pods = until(
        "only new pods",
        lambda: (
            lambda ps: (
                ps
                if len(ps) == 3
                and all(
                    p.metadata.labels["pod-template-hash"] == new[0].metadata.labels["pod-template-hash"] for p in ps
                )
                else None
            )
        )(core.list_namespaced_pod(NS, label_selector=f"app={name}").items),
    )
    assert all(any(e.name == "VERSION" and e.value == "2" for e in p.spec.containers[0].env) for p in pods)
    msgs = [e.message for e in events_for(core, name) if e.reason == "ScalingReplicaSet"]
    assert f"Scaled up replica set {new[0].metadata.name} to 1 from 0" in msgs
    apps.delete_namespaced_deployment(name, NS)


def test_unrunnable_image_is_image_pull_back_off(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "nopull"},
            "spec": {"containers": [{"name": "c", "image": "example.com/nobody/nothing:1"}]},
        },
    )

    def waiting_reason() -> str | None:
        st = core.read_namespaced_pod("nopull", NS).status.container_statuses
        reason = st[0].state.waiting.reason if st and st[0].state.waiting else None
        return reason if reason == "ImagePullBackOff" else None

    until("ImagePullBackOff", waiting_reason)
    pod = core.read_namespaced_pod("nopull", NS)
    assert pod.status.phase == "Pending"
    assert (
        pod.status.container_statuses[0].state.waiting.message
        == 'Back-off pulling image "example.com/nobody/nothing:1"'
    )
    evs = events_for(core, "nopull")
    assert any(e.reason == "Failed" and e.type == "Warning" and "Failed to pull image" in e.message for e in evs)
    assert any(
        e.reason == "BackOff" and e.message == 'Back-off pulling image "example.com/nobody/nothing:1"' for e in evs
    )
    core.delete_namespaced_pod("nopull", NS)


def test_crashing_container_goes_into_crash_loop_back_off(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crasher"},
            "spec": {
                "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "echo boom; exit 3"]}]
            },
        },
    )

    def crashloop() -> client.V1ContainerStatus | None:
        st = core.read_namespaced_pod("crasher", NS).status.container_statuses
        return (
            st[0]
            if st
            and st[0].restart_count >= 2
            and st[0].state.waiting
            and st[0].state.waiting.reason == "CrashLoopBackOff"
            else None
        )

    st = until("CrashLoopBackOff with restarts", crashloop)
    assert st.last_state.terminated.exit_code == 3 and st.last_state.terminated.reason == "Error"
    assert (
        st.state.waiting.message.startswith("back-off ")
        and "restarting failed container=c pod=crasher_default" in st.state.waiting.message
    )
    assert core.read_namespaced_pod("crasher", NS).status.phase == "Running"
    assert any(e.reason == "BackOff" and e.type == "Warning" for e in events_for(core, "crasher"))
    # The container's output is the pod log (and --previous the run before). kubernetes 36 returns
    # str(bytes) for text/plain bodies unless the raw response is read (the same against a real apiserver).
    resp = core.read_namespaced_pod_log("crasher", NS, container="c", previous=True, _preload_content=False)
    assert resp.data == b"boom\n"
    core.delete_namespaced_pod("crasher", NS)


def test_delete_sends_sigterm_then_removes_the_pod(sandbox: dict, core: client.CoreV1Api, tmp_path: Any) -> None:
    # The container records the signal in a hostPath volume, which outlives the pod's own directory.
    script = (
        "trap 'echo got TERM > /data/term.txt; exit 0' TERM; echo started > /data/start.txt; "
        "while true; do sleep 0.05; done"
    )
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "graceful"},
            "spec": {
                "terminationGracePeriodSeconds": 60,
                "volumes": [{"name": "d", "hostPath": {"path": str(tmp_path)}}],
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                    }
                ],
            },
        },
    )
    pod = until(
        "running",
        lambda: (lambda p: p if p.status.phase == "Running" else None)(core.read_namespaced_pod("graceful", NS)),
    )
    uid = pod.metadata.uid
    until("container started", lambda: (tmp_path / "start.txt").exists())
    pids = json.loads((sandbox["state_dir"] / "kubelet" / "pids.json").read_text())
    pid = next(int(p) for p, owner in pids.items() if owner == f"{NS}/graceful")
    core.delete_namespaced_pod("graceful", NS)
    until(
        "pod removed by the kubelet",
        lambda: not [p for p in core.list_namespaced_pod(NS).items if p.metadata.uid == uid],
    )
    assert (tmp_path / "term.txt").read_text() == "got TERM\n"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert any(e.reason == "Killing" and e.message == "Stopping container c" for e in events_for(core, "graceful"))


def test_kubectl_sees_pod_ips_and_logs(sandbox: dict, core: client.CoreV1Api) -> None:
    import subprocess

    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hello"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "command": ["echo", "hello from the sandbox"]}],
            },
        },
    )
    until("succeeded", lambda: core.read_namespaced_pod("hello", NS).status.phase == "Succeeded")
    kubectl = ["kubectl", "--kubeconfig", str(sandbox["state_dir"] / "kubeconfig")]
    out = subprocess.run([*kubectl, "logs", "hello"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "hello from the sandbox\n", out.stderr
    st = core.read_namespaced_pod("hello", NS).status
    assert st.container_statuses[0].state.terminated.reason == "Completed"
    assert st.container_statuses[0].state.terminated.exit_code == 0
    assert {c.type: c.reason for c in st.conditions}["Ready"] == "PodCompleted"
    core.delete_namespaced_pod("hello", NS)


def test_runtime_registry_images_run_and_a_wrong_command_is_a_start_error(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "echo"},
            "spec": {
                "containers": [
                    {
                        "name": "echo",
                        "image": "hashicorp/http-echo",
                        "args": ["-listen=:5678", "-text=hi there"],
                        "readinessProbe": {"tcpSocket": {"port": 5678}, "periodSeconds": 3},
                    }
                ]
            },
        },
    )
    pod = until(
        "echo ready",
        lambda: (lambda p: p if p.status.container_statuses and p.status.container_statuses[0].ready else None)(
            core.read_namespaced_pod("echo", NS)
        ),
    )
    status, body = get(f"http://{pod.status.pod_ip}:5678/")
    assert status == 200 and body.strip() == b"hi there"

    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "badcmd"},
            "spec": {"containers": [{"name": "tf", "image": "tensorflow/serving:2.3.0-gpu", "command": ["bash"]}]},
        },
    )

    def start_error() -> client.V1ContainerStatus | None:
        st = core.read_namespaced_pod("badcmd", NS).status.container_statuses
        term = st[0].last_state.terminated if st and st[0].last_state else None
        return st[0] if term and term.reason == "StartError" and term.exit_code == 128 else None

    st = until("StartError then back-off", start_error)
    assert "bash" in st.last_state.terminated.message
    core.delete_namespaced_pod("echo", NS)
    core.delete_namespaced_pod("badcmd", NS)


def test_failing_liveness_probe_restarts_the_container(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "unlively"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 3, "failureThreshold": 2},
                    }
                ],
            },
        },
    )

    def restarted() -> client.V1ContainerStatus | None:
        st = core.read_namespaced_pod("unlively", NS).status.container_statuses
        return st[0] if st and st[0].restart_count >= 1 else None

    st = until("a liveness restart", restarted)
    assert st.last_state.terminated is not None
    evs = events_for(core, "unlively")
    assert any(e.reason == "Unhealthy" and e.message.startswith("Liveness probe failed:") for e in evs)
    assert any(
        e.reason == "Killing" and e.message == "Container c failed liveness probe, will be restarted" for e in evs
    )
    core.delete_namespaced_pod("unlively", NS)
