"""PV/PVC binding and the OSS CSI volume: objects uploaded with oss2 show up in the container's mount path;
bad credentials in the node-publish Secret leave the pod ContainerCreating with FailedMount events."""

from __future__ import annotations

import secrets

import oss2
import pytest
from kubernetes import client

from tests.helpers import until
from tests.sandbox.workloads import NS, events_for

pytestmark = pytest.mark.integration

DRIVER = "ossplugin.csi.alibabacloud.com"


def oss_pv(name: str, bucket: str, secret: str, path: str = "/models") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"alicloud-pvname": name}},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {
                "driver": DRIVER,
                "volumeHandle": name,
                "nodePublishSecretRef": {"name": secret, "namespace": NS},
                "volumeAttributes": {
                    "bucket": bucket,
                    "url": "oss-cn-beijing-internal.aliyuncs.com",
                    "path": path,
                    "otherOpts": "-o max_stat_cache_size=0 -o allow_other",
                },
            },
        },
    }


def pvc(name: str, pv_name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "resources": {"requests": {"storage": "5Gi"}},
            "selector": {"matchLabels": {"alicloud-pvname": pv_name}},
            "storageClassName": "",
        },
    }


def secret(name: str, ak: str, sk: str) -> dict:
    # Legacy keys in odd case: the CSI plugin matches them case-insensitively.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": {"AKID": ak, "akSecret": sk},
    }


def lister_pod(name: str, claim: str) -> dict:
    script = (
        "import os\n"
        "for r, _, fs in sorted(os.walk('/mnt/models')):\n"
        "    for f in sorted(fs):\n"
        "        p = os.path.join(r, f)\n"
        "        print(p[len('/mnt/models'):], open(p, 'rb').read().decode())\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "ls",
                    "image": "python:3.12",
                    "command": ["python3", "-c", script],
                    "volumeMounts": [{"name": "model-storage", "mountPath": "/mnt/models", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "model-storage", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


@pytest.fixture(scope="module")
def bucket(sandbox: dict) -> str:
    name = f"models-{secrets.token_hex(4)}"
    b = oss2.Bucket(oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]), sandbox["oss"], name)
    b.create_bucket()
    b.put_object("models/fashion-mnist/1/saved_model.pb", b"PB")
    b.put_object("models/fashion-mnist/1/variables/variables.index", b"IDX")
    b.put_object("other/ignored.txt", b"not under the path")
    return name


def test_pvc_binds_and_the_oss_volume_shows_the_objects(sandbox: dict, bucket: str, core: client.CoreV1Api) -> None:
    tag = secrets.token_hex(3)
    core.create_namespaced_secret(
        NS, secret(f"oss-secret-{tag}", sandbox["access_key_id"], sandbox["access_key_secret"])
    )
    core.create_persistent_volume(oss_pv(f"oss-pv-{tag}", bucket, f"oss-secret-{tag}"))
    core.create_namespaced_persistent_volume_claim(NS, pvc(f"oss-pvc-{tag}", f"oss-pv-{tag}"))
    claim = until(
        "claim bound",
        lambda: (lambda c: c if c.status.phase == "Bound" else None)(
            core.read_namespaced_persistent_volume_claim(f"oss-pvc-{tag}", NS)
        ),
    )
    assert claim.spec.volume_name == f"oss-pv-{tag}"
    assert claim.status.capacity == {"storage": "5Gi"} and claim.status.access_modes == ["ReadOnlyMany"]
    assert claim.metadata.annotations["pv.kubernetes.io/bind-completed"] == "yes"
    pv = until(
        "pv bound",
        lambda: (lambda v: v if v.status.phase == "Bound" else None)(core.read_persistent_volume(f"oss-pv-{tag}")),
    )
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == (f"oss-pvc-{tag}", claim.metadata.uid)

    core.create_namespaced_pod(NS, lister_pod(f"lister-{tag}", f"oss-pvc-{tag}"))
    until("lister succeeded", lambda: core.read_namespaced_pod(f"lister-{tag}", NS).status.phase == "Succeeded")
    out = core.read_namespaced_pod_log(f"lister-{tag}", NS, _preload_content=False).data.decode()
    assert out.splitlines() == ["/fashion-mnist/1/saved_model.pb PB", "/fashion-mnist/1/variables/variables.index IDX"]


def test_bad_oss_credentials_keep_the_pod_container_creating(
    sandbox: dict, bucket: str, core: client.CoreV1Api
) -> None:
    tag = secrets.token_hex(3)
    core.create_namespaced_secret(NS, secret(f"bad-secret-{tag}", sandbox["access_key_id"], "not-the-secret"))
    core.create_persistent_volume(oss_pv(f"bad-pv-{tag}", bucket, f"bad-secret-{tag}"))
    core.create_namespaced_persistent_volume_claim(NS, pvc(f"bad-pvc-{tag}", f"bad-pv-{tag}"))
    core.create_namespaced_pod(NS, lister_pod(f"badmount-{tag}", f"bad-pvc-{tag}"))
    ev = until(
        "FailedMount", lambda: next((e for e in events_for(core, f"badmount-{tag}") if e.reason == "FailedMount"), None)
    )
    assert ev.type == "Warning" and f'volume "bad-pv-{tag}"' in ev.message and "SignatureDoesNotMatch" in ev.message
    pod = core.read_namespaced_pod(f"badmount-{tag}", NS)
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    core.delete_namespaced_pod(f"badmount-{tag}", NS)


def test_claim_without_a_matching_volume_stays_pending(core: client.CoreV1Api) -> None:
    tag = secrets.token_hex(3)
    core.create_namespaced_persistent_volume_claim(NS, pvc(f"lonely-{tag}", f"no-such-pv-{tag}"))
    ev = until(
        "FailedBinding",
        lambda: next((e for e in events_for(core, f"lonely-{tag}") if e.reason == "FailedBinding"), None),
    )
    assert ev.message == "no persistent volumes available for this claim and no storage class is set"
    assert core.read_namespaced_persistent_volume_claim(f"lonely-{tag}", NS).status.phase == "Pending"


def test_pod_with_a_missing_claim_is_unschedulable(core: client.CoreV1Api) -> None:
    tag = secrets.token_hex(3)
    core.create_namespaced_pod(NS, lister_pod(f"noclaim-{tag}", f"missing-{tag}"))

    def cond() -> client.V1PodCondition | None:
        for c in core.read_namespaced_pod(f"noclaim-{tag}", NS).status.conditions or []:
            if c.type == "PodScheduled" and c.reason == "Unschedulable":
                return c
        return None

    c = until("Unschedulable", cond)
    assert c.message.startswith("0/") and f'persistentvolumeclaim "missing-{tag}" not found' in c.message
    assert not core.read_namespaced_pod(f"noclaim-{tag}", NS).spec.node_name
    core.delete_namespaced_pod(f"noclaim-{tag}", NS)
