"""StatefulSets, DaemonSets and ReplicationControllers on the sandbox: their controllers run real pods."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import kubectl_run, until


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = f"apps-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
    }


def test_statefulset_daemonset_and_replicationcontroller_run_their_pods(
    sandbox: dict, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str
) -> None:
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": _template("web"),
            },
        },
    )
    claims_tmpl = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _template("db"),
                "volumeClaimTemplates": [claims_tmpl],
            },
        },
    )
    apps.create_namespaced_daemon_set(
        ns,
        {
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template("agent")},
        },
    )
    core.create_namespaced_replication_controller(
        ns, {"metadata": {"name": "legacy"}, "spec": {"replicas": 2, "template": _template("legacy")}}
    )

    def sts_ready() -> Any:
        s = apps.read_namespaced_stateful_set("web", ns)
        return s if s.status.ready_replicas == 2 else None

    sts = until("statefulset web ready", sts_ready, timeout=60)
    assert sts.status.current_revision == sts.status.update_revision
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(ns, label_selector="app=web").items}
    assert set(pods) == {"web-0", "web-1"}
    assert pods["web-1"].spec.hostname == "web-1" and pods["web-1"].spec.subdomain == "web"
    assert pods["web-1"].metadata.labels["apps.kubernetes.io/pod-index"] == "1"
    # the claim template: one PVC per pod, mounted as the template's volume
    until("db's claim", lambda: core.list_namespaced_persistent_volume_claim(ns, label_selector="app=db").items)
    db0 = until("db-0", lambda: next(iter(core.list_namespaced_pod(ns, label_selector="app=db").items), None))
    assert [v.persistent_volume_claim.claim_name for v in db0.spec.volumes if v.persistent_volume_claim] == [
        "data-db-0"
    ]
    # scale down removes the highest ordinal
    apps.patch_namespaced_stateful_set_scale("web", ns, {"spec": {"replicas": 1}})
    until(
        "web-1 gone",
        lambda: {p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="app=web").items} == {"web-0"},
    )

    nodes = core.list_node().items

    def ds_ready() -> Any:
        d = apps.read_namespaced_daemon_set("agent", ns)
        return (
            d
            if d.status.desired_number_scheduled and d.status.number_ready == d.status.desired_number_scheduled
            else None
        )

    ds = until("daemonset agent ready", ds_ready, timeout=60)
    agent_nodes = [p.spec.node_name for p in core.list_namespaced_pod(ns, label_selector="app=agent").items]
    assert len(agent_nodes) == len(set(agent_nodes)) == ds.status.desired_number_scheduled <= len(nodes)

    until(
        "rc legacy ready", lambda: core.read_namespaced_replication_controller("legacy", ns).status.ready_replicas == 2
    )
    rows = kubectl_run(sandbox, "get", "sts,ds,rc", "-n", ns, "--no-headers").stdout
    assert "statefulset.apps/web" in rows and "daemonset.apps/agent" in rows and "replicationcontroller/legacy" in rows
    scaled = kubectl_run(sandbox, "scale", "rc/legacy", "--replicas=1", "-n", ns).stdout
    assert "scaled" in scaled
    until("rc scaled down", lambda: len(core.list_namespaced_pod(ns, label_selector="app=legacy").items) == 1)
