"""The sandbox Kubernetes API through the official Python clients (kubernetes sync and kubernetes_asyncio)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import kubernetes
import kubernetes_asyncio
import pytest
from kubernetes.client.rest import ApiException

DEADLINE = 30.0  # wall seconds for asynchronous effects (GC, graceful deletion) to show


@pytest.fixture(scope="module")
def api(sandbox: dict) -> kubernetes.client.ApiClient:
    client = kubernetes.config.new_client_from_config(config_file=str(sandbox["state_dir"] / "kubeconfig"))
    yield client
    client.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _wait_gone(read, *args, **kw) -> None:
    deadline = time.monotonic() + DEADLINE
    for _ in range(3000):
        try:
            read(*args, **kw)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"{args} still present after {DEADLINE}s")


def test_watch_sees_added_modified_deleted_in_order(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    name = _name("cm")
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"a": "1"}})
    core.patch_namespaced_config_map(name, "default", {"data": {"a": "2"}})
    core.delete_namespaced_config_map(name, "default")
    seen = []
    w = kubernetes.watch.Watch()
    for ev in w.stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=rv,
        field_selector=f"metadata.name={name}",
        timeout_seconds=10,
    ):
        seen.append((ev["type"], ev["object"].data))
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", {"a": "1"}), ("MODIFIED", {"a": "2"}), ("DELETED", {"a": "2"})]


def test_stale_update_conflicts_and_bad_name_is_invalid(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    name = _name("cm")
    first = core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"k": "v"}})
    core.patch_namespaced_config_map(name, "default", {"data": {"k": "v2"}})
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map(name, "default", first)
    assert exc.value.status == 409
    assert "the object has been modified; please apply your changes to the latest version" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    assert exc.value.status == 409 and '"reason":"AlreadyExists"' in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(
            "default", {"metadata": {"name": "1-starts-with-digit"}, "spec": {"ports": [{"port": 80}]}}
        )
    assert exc.value.status == 422
    assert '"field":"metadata.name"' in exc.value.body and "DNS-1035 label" in exc.value.body
    with pytest.raises(ApiException) as exc:
        kubernetes.client.AppsV1Api(api).create_namespaced_deployment(
            "default",
            {
                "metadata": {"name": _name("dep")},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c"}]}},
                },
            },
        )
    assert exc.value.status == 422
    assert (
        "spec.template.metadata.labels" in exc.value.body and "spec.template.spec.containers[0].image" in exc.value.body
    )


def test_dry_run_does_not_persist(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    name = _name("svc")
    svc = core.create_namespaced_service(
        "default", {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}, dry_run="All"
    )
    assert svc.spec.cluster_ip and svc.spec.ports[0].target_port == 80
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service(name, "default")
    assert exc.value.status == 404


def test_delete_waits_for_finalizer(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    name = _name("cm")
    core.create_namespaced_config_map("default", {"metadata": {"name": name, "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map(name, "default")
    held = core.read_namespaced_config_map(name, "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["example.com/hold"]
    core.patch_namespaced_config_map(name, "default", [{"op": "remove", "path": "/metadata/finalizers"}])
    _wait_gone(core.read_namespaced_config_map, name, "default")


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_a_deployment_collects_replicasets_and_pods(api, policy: str) -> None:
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    name = _name("gc")
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    # replicas 0 so the sandbox's own Deployment/ReplicaSet controllers add nothing; the children are ours.
    dep = apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": template},
        },
    )

    def owner(o: Any, kind: str) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": o.metadata.name,
                "uid": o.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    rs = apps.create_namespaced_replica_set(
        "default",
        {
            "metadata": {"name": f"{name}-rs", "labels": labels, "ownerReferences": owner(dep, "Deployment")},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": template},
        },
    )
    pod_names = []
    for i in range(2):
        pod = core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": f"{name}-{i}", "labels": labels, "ownerReferences": owner(rs, "ReplicaSet")},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], "nodeSelector": {"no-such": "node"}},
            },
        )
        pod_names.append(pod.metadata.name)
    apps.delete_namespaced_deployment(name, "default", propagation_policy=policy)
    _wait_gone(apps.read_namespaced_deployment, name, "default")
    _wait_gone(apps.read_namespaced_replica_set, f"{name}-rs", "default")
    for pod_name in pod_names:
        _wait_gone(core.read_namespaced_pod, pod_name, "default")


def test_orphan_propagation_keeps_dependents(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": _name("owner")}})
    dep_name = _name("dependent")
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": dep_name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
                ],
            }
        },
    )
    core.delete_namespaced_config_map(owner.metadata.name, "default", propagation_policy="Orphan")
    _wait_gone(core.read_namespaced_config_map, owner.metadata.name, "default")
    assert core.read_namespaced_config_map(dep_name, "default").metadata.owner_references is None


def test_scale_subresource_status_and_generation(api) -> None:
    apps = kubernetes.client.AppsV1Api(api)
    name = _name("scale")
    labels = {"app": name}
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale(name, "default")
    assert scale.spec.replicas == 0 and scale.status.selector == f"app={name}"
    apps.patch_namespaced_deployment_scale(name, "default", {"spec": {"replicas": 0}})
    dep = apps.read_namespaced_deployment(name, "default")
    gen = dep.metadata.generation
    # A status write never bumps generation and a main-resource write never changes status.
    apps.patch_namespaced_deployment_status(name, "default", {"status": {"observedGeneration": gen, "replicas": 0}})
    dep = apps.read_namespaced_deployment(name, "default")
    assert dep.metadata.generation == gen and dep.status.observed_generation == gen
    apps.patch_namespaced_deployment(
        name, "default", {"status": {"observedGeneration": 99}, "metadata": {"labels": {"x": "y"}}}
    )
    dep = apps.read_namespaced_deployment(name, "default")
    assert dep.status.observed_generation == gen and dep.metadata.generation == gen
    apps.delete_namespaced_deployment(name, "default")


def test_server_side_apply_conflicts_between_managers(api) -> None:
    dyn = kubernetes.dynamic.DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    name = _name("ssa")
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"owner": "alice"},
    }
    cms.server_side_apply(body=body, field_manager="alice")
    cms.server_side_apply(body=body, field_manager="alice")  # same manager, same value: no conflict
    with pytest.raises(ApiException) as exc:
        cms.server_side_apply(body={**body, "data": {"owner": "bob"}}, field_manager="bob")
    assert exc.value.status == 409 and 'conflict with \\"alice\\"' in exc.value.body and ".data.owner" in exc.value.body
    forced = cms.server_side_apply(body={**body, "data": {"owner": "bob"}}, field_manager="bob", force_conflicts=True)
    assert forced.data.owner == "bob"
    managers = {e.manager: e.operation for e in forced.metadata.managedFields}
    assert managers == {"bob": "Apply"}


def test_list_pagination_and_selectors(api) -> None:
    core = kubernetes.client.CoreV1Api(api)
    tag = _name("page")
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"{tag}-{i}", "labels": {"page": tag}}})
    first = core.list_namespaced_config_map("default", label_selector=f"page={tag}", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = core.list_namespaced_config_map(
        "default", label_selector=f"page={tag}", limit=10, _continue=first.metadata._continue
    )
    assert [c.metadata.name for c in first.items + rest.items] == [f"{tag}-{i}" for i in range(5)]
    assert core.list_namespaced_config_map("default", label_selector=f"page in ({tag}),page!=x").items
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", field_selector="spec.nodeName=x")
    assert exc.value.status == 400
    core.delete_collection_namespaced_config_map("default", label_selector=f"page={tag}")
    assert core.list_namespaced_config_map("default", label_selector=f"page={tag}").items == []


async def test_kubernetes_asyncio_list_watch_and_events_view(sandbox: dict) -> None:
    client = await kubernetes_asyncio.config.new_client_from_config(
        config_file=str(sandbox["state_dir"] / "kubeconfig")
    )
    async with client:
        core = kubernetes_asyncio.client.CoreV1Api(client)
        events = kubernetes_asyncio.client.EventsV1Api(client)
        name = _name("ev")
        # events.k8s.io/v1 and core/v1 Events are one object seen through two schemas.
        await events.create_namespaced_event(
            "default",
            {
                "metadata": {"name": name},
                "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Scheduled",
                "note": "hello",
                "type": "Normal",
                "action": "Binding",
                "reportingController": "test",
                "reportingInstance": "test-1",
                "eventTime": "2025-01-01T00:00:00.000000Z",
            },
        )
        ev = await events.read_namespaced_event(name, "default")
        assert ev.note == "hello" and ev.regarding.name == "p" and ev.reporting_controller == "test"
        legacy = await core.read_namespaced_event(name, "default")
        assert legacy.message == "hello" and legacy.involved_object.name == "p"
        assert legacy.reporting_component == "test"
        listed = await core.list_namespaced_event("default", field_selector="involvedObject.name=p,reason=Scheduled")
        assert name in [e.metadata.name for e in listed.items]
        w = kubernetes_asyncio.watch.Watch()
        seen = []
        async for event in w.stream(
            core.list_namespaced_event, "default", field_selector=f"metadata.name={name}", timeout_seconds=5
        ):
            seen.append(event["type"])
            break
        await w.close()
        assert seen == ["ADDED"]
        with pytest.raises(kubernetes_asyncio.client.exceptions.ApiException) as exc:
            await core.read_namespaced_pod("nope", "default")
        assert exc.value.status == 404


def test_secret_string_data_is_merged_into_data_and_not_stored(sandbox) -> None:
    """As the real apiserver: stringData is write-only, converted into base64 data (stringData wins)."""
    import base64
    import json
    import subprocess

    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sd-merge", "namespace": "default"},
        "data": {"a": base64.b64encode(b"old").decode(), "b": base64.b64encode(b"kept").decode()},
        "stringData": {"a": "new"},
    }
    kubeconfig = str(sandbox["state_dir"] / "kubeconfig")
    subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-"],
        input=json.dumps(manifest),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    stored = json.loads(
        subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "get", "secret", "sd-merge", "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert "stringData" not in stored
    assert {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == {"a": "new", "b": "kept"}
