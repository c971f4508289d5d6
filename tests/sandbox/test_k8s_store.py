"""The store's Python API (what in-process controllers use): persistence, resourceVersions, watches, 410."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from ack_sandbox import cli
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.store import Store
from tests.helpers import KUBECTL

CM = {"apiVersion": "v1", "kind": "ConfigMap"}


def _ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def test_state_and_resource_version_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    store = Store(db_path=db)
    await store.create(_ns("default"))
    await store.create({**CM, "metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}})
    from ack_sandbox.k8s.kinds import SELDON_CRD

    await store.create(SELDON_CRD)
    rv_before = store.rv
    store.close()
    again = Store(db_path=db)
    try:
        got = await again.get("configmaps", "a", namespace="default")
        assert got["data"] == {"k": "v"}
        assert again.resolve("sdep").kind == "SeldonDeployment"  # CRDs re-register on load
        created = await again.create({**CM, "metadata": {"name": "b", "namespace": "default"}})
        assert int(created["metadata"]["resourceVersion"]) > rv_before
        # Watches cannot resume from before the restart: the history is gone, as after etcd compaction.
        with pytest.raises(ApiError) as exc:
            again.watch("configmaps", since_rv=rv_before - 1)
        assert exc.value.code == 410 and exc.value.reason == "Expired"
    finally:
        again.close()


async def test_watch_resume_and_410_when_history_is_compacted() -> None:
    store = Store(history=5)
    await store.create(_ns("default"))
    first = await store.create({**CM, "metadata": {"name": "w", "namespace": "default"}, "data": {"n": "0"}})
    start_rv = first["metadata"]["resourceVersion"]
    for i in range(1, 3):
        await store.patch("configmaps", "w", {"data": {"n": str(i)}}, namespace="default")
    seen = []
    async with store.watch("configmaps", namespace="default", since_rv=start_rv) as events:
        async for etype, obj in events:
            seen.append((etype, obj["data"]["n"]))
            if len(seen) == 2:
                break
    assert seen == [("MODIFIED", "1"), ("MODIFIED", "2")]
    for i in range(3, 10):
        await store.patch("configmaps", "w", {"data": {"n": str(i)}}, namespace="default")
    with pytest.raises(ApiError) as exc:
        store.watch("configmaps", since_rv=start_rv)
    assert exc.value.code == 410 and "too old resource version" in exc.value.message


async def test_selector_watch_sees_objects_enter_and_leave() -> None:
    store = Store()
    await store.create(_ns("default"))
    watch = store.watch("configmaps", label_selector="tier=web")
    await store.create({**CM, "metadata": {"name": "x", "namespace": "default", "labels": {"tier": "db"}}})
    await store.patch("configmaps", "x", {"metadata": {"labels": {"tier": "web"}}}, namespace="default")
    await store.patch("configmaps", "x", {"metadata": {"labels": {"tier": "db"}}}, namespace="default")
    got = []
    for _ in range(2):
        etype, obj = await asyncio.wait_for(watch.__aiter__().__anext__(), 5)
        got.append((etype, obj["metadata"]["labels"]["tier"]))
    watch.close()
    assert got == [("ADDED", "web"), ("DELETED", "db")]


async def test_status_update_conflict_and_graceful_pod_deletion() -> None:
    store = Store()
    await store.create(_ns("default"))
    pod = await store.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
    )
    assert pod["status"]["phase"] == "Pending" and pod["spec"]["schedulerName"] == "default-scheduler"
    bound = await store.patch("pods", "p", {"spec": {"nodeName": "n1"}}, namespace="default")
    pod["status"]["phase"] = "Running"
    with pytest.raises(ApiError) as exc:
        await store.update_status(pod)  # stale resourceVersion
    assert exc.value.code == 409
    bound["status"]["phase"] = "Running"
    running = await store.update_status(bound, field_manager="kubelet")
    assert running["status"]["phase"] == "Running"
    deleting = await store.delete("pods", "p", namespace="default")
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30  # bound pods terminate gracefully
    await store.delete("pods", "p", namespace="default", grace_period_seconds=0)  # the kubelet confirms
    with pytest.raises(ApiError) as exc:
        await store.get("pods", "p", namespace="default")
    assert exc.value.code == 404


async def test_namespace_deletion_removes_its_content() -> None:
    store = Store()
    await store.create(_ns("team"))
    await store.create({**CM, "metadata": {"name": "c", "namespace": "team"}})
    ns = await store.delete("namespaces", "team")
    assert ns["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as exc:
        await store.create({**CM, "metadata": {"name": "d", "namespace": "team"}})
    assert exc.value.code == 403 and "is being terminated" in exc.value.message
    for _ in range(200):
        try:
            await store.get("namespaces", "team")
        except ApiError as e:
            assert e.code == 404
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("namespace not finalized")
    assert (await store.list("configmaps", namespace="team"))[0] == []


def test_kubectl_state_survives_sandbox_down_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    kubectl = [KUBECTL, "--kubeconfig", str(state / "kubeconfig"), "--cache-dir", str(tmp_path / "cache")]
    cli.up(state, time_scale=30)
    try:
        manifest = json.dumps({**CM, "metadata": {"name": "keep"}, "data": {"a": "1"}})
        subprocess.run(kubectl + ["apply", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
        rv1 = int(
            json.loads(
                subprocess.run(
                    kubectl + ["get", "cm", "keep", "-o", "json"], check=True, capture_output=True, text=True
                ).stdout
            )["metadata"]["resourceVersion"]
        )
        cli.down(state)
        cli.up(state, time_scale=30)
        got = json.loads(
            subprocess.run(
                kubectl + ["get", "cm", "keep", "-o", "json"], check=True, capture_output=True, text=True
            ).stdout
        )
        assert got["data"] == {"a": "1"}
        subprocess.run(kubectl + ["label", "cm", "keep", "x=y"], check=True, capture_output=True)
        got = json.loads(
            subprocess.run(
                kubectl + ["get", "cm", "keep", "-o", "json"], check=True, capture_output=True, text=True
            ).stdout
        )
        assert int(got["metadata"]["resourceVersion"]) > rv1
    finally:
        cli.down(state)


async def test_list_pages_with_a_positive_limit_and_a_limit_of_zero_or_less_is_no_limit() -> None:
    """The continue token starts after the last object returned; ``limit <= 0`` lists everything (it once read the
    last key before any was assigned, and worked only because callers passed ``limit > 0``)."""
    store = Store()
    await store.create(_ns("default"))
    for name in ("a", "b", "c"):
        await store.create({**CM, "metadata": {"name": name, "namespace": "default"}})
    rt = store.resolve("configmaps")
    for limit in (None, 0, -1):
        items, _, token, remaining = store.list_raw(rt, "default", limit=limit)
        assert [o["metadata"]["name"] for o, _ in items] == ["a", "b", "c"] and token is None and remaining is None
    names, token = [], None
    for _ in range(3):
        items, _, token, remaining = store.list_raw(rt, "default", limit=2, continue_=token)
        names += [o["metadata"]["name"] for o, _ in items]
        if token is None:
            break
        assert remaining == 1
    assert names == ["a", "b", "c"] and token is None
    store.close()
