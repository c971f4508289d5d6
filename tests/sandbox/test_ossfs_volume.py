"""The OSS CSI volume behaves as ossfs does for readers (the seed mounts with ``max_stat_cache_size=0``): objects
written to OSS after the mount appear in the running pod, changed objects change, deleted ones disappear; a
read-only mount (ReadOnlyMany PV/PVC, or a read-only volumeMount) refuses writes.

Observed from inside a running container (its log), the objects written with oss2."""

from __future__ import annotations

import json
import secrets

import oss2
import pytest
from kubernetes import client

from tests.helpers import until
from tests.sandbox.workloads import NS

pytestmark = pytest.mark.integration

DRIVER = "ossplugin.csi.alibabacloud.com"

WATCHER = """
import json, os, time
root = '/mnt/models'
for name in ('new.txt', 'a.txt'):
    try:
        with open(os.path.join(root, name), 'a') as fh:
            fh.write('written by the pod')
        print('WRITE', name, 'ok', flush=True)
    except OSError as exc:
        print('WRITE', name, 'refused', exc.errno, flush=True)
last = None
while True:
    state = {}
    for r, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(r, f)
            try:
                state[os.path.relpath(p, root)] = open(p).read()
            except OSError:
                pass
    if state != last:
        print('STATE', json.dumps(state, sort_keys=True), flush=True)
        last = state
    time.sleep(0.1)
"""


def oss_pv(name: str, bucket: str, secret: str, modes: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"alicloud-pvname": name}},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {
                "driver": DRIVER,
                "volumeHandle": name,
                "nodePublishSecretRef": {"name": secret, "namespace": NS},
                "volumeAttributes": {
                    "bucket": bucket,
                    "url": "oss-cn-beijing-internal.aliyuncs.com",
                    "path": "/models",
                    "otherOpts": "-o max_stat_cache_size=0 -o allow_other",
                },
            },
        },
    }


def claim(name: str, pv: str, modes: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": modes,
            "resources": {"requests": {"storage": "5Gi"}},
            "selector": {"matchLabels": {"alicloud-pvname": pv}},
            "storageClassName": "",
        },
    }


def watcher_pod(name: str, claim_name: str, read_only_mount: bool) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "watch",
                    "image": "python:3.12",
                    "command": ["python3", "-c", WATCHER],
                    "volumeMounts": [
                        {"name": "model-storage", "mountPath": "/mnt/models", "readOnly": read_only_mount}
                    ],
                }
            ],
            "volumes": [{"name": "model-storage", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


@pytest.fixture(scope="module")
def bucket(sandbox: dict) -> oss2.Bucket:
    b = oss2.Bucket(
        oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]),
        sandbox["oss"],
        f"ossfs-{secrets.token_hex(4)}",
    )
    b.create_bucket()
    return b


def _log(core: client.CoreV1Api, pod: str) -> list[str]:
    try:
        return core.read_namespaced_pod_log(pod, NS, _preload_content=False).data.decode().splitlines()
    except client.ApiException:
        return []


def _state(core: client.CoreV1Api, pod: str) -> dict | None:
    states = [json.loads(line[len("STATE ") :]) for line in _log(core, pod) if line.startswith("STATE ")]
    return states[-1] if states else None


def _volume_pod(sandbox: dict, core: client.CoreV1Api, bucket: oss2.Bucket, modes: list[str], ro_mount: bool) -> str:
    tag = secrets.token_hex(3)
    core.create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"ossfs-{tag}"},
            "stringData": {"akId": sandbox["access_key_id"], "akSecret": sandbox["access_key_secret"]},
        },
    )
    core.create_persistent_volume(oss_pv(f"ossfs-pv-{tag}", bucket.bucket_name, f"ossfs-{tag}", modes))
    core.create_namespaced_persistent_volume_claim(NS, claim(f"ossfs-pvc-{tag}", f"ossfs-pv-{tag}", modes))
    until(
        "claim bound",
        lambda: core.read_namespaced_persistent_volume_claim(f"ossfs-pvc-{tag}", NS).status.phase == "Bound",
    )
    core.create_namespaced_pod(NS, watcher_pod(f"ossfs-{tag}", f"ossfs-pvc-{tag}", ro_mount))
    return f"ossfs-{tag}"


def test_objects_written_after_the_mount_appear_and_a_read_only_mount_refuses_writes(
    sandbox: dict, bucket: oss2.Bucket, core: client.CoreV1Api
) -> None:
    bucket.put_object("models/a.txt", b"A1")
    bucket.put_object("models/b.txt", b"B1")
    pod = _volume_pod(sandbox, core, bucket, ["ReadOnlyMany"], ro_mount=False)
    first = until("the pod sees the objects of mount time", lambda: _state(core, pod), timeout=60)
    assert first == {"a.txt": "A1", "b.txt": "B1"}
    log = _log(core, pod)
    # ReadOnlyMany: ossfs is mounted -o ro; neither a new file nor an existing one can be written
    assert any(line.startswith("WRITE new.txt refused") for line in log), log
    assert any(line.startswith("WRITE a.txt refused") for line in log), log

    # after the mount: a new version directory, a changed object, a deleted object
    bucket.put_object("models/fashion/2/variables/variables.index", b"IDX2")
    bucket.put_object("models/fashion/2/saved_model.pb", b"PB2")
    bucket.put_object("models/a.txt", b"A2")
    bucket.delete_object("models/b.txt")
    want = {"a.txt": "A2", "fashion/2/saved_model.pb": "PB2", "fashion/2/variables/variables.index": "IDX2"}
    until("the running pod sees what changed in OSS", lambda: _state(core, pod) == want, timeout=30)

    bucket.delete_object("models/fashion/2/saved_model.pb")
    bucket.delete_object("models/fashion/2/variables/variables.index")
    until("deleted objects disappear", lambda: _state(core, pod) == {"a.txt": "A2"}, timeout=30)
    core.delete_namespaced_pod(pod, NS)


def test_a_read_write_volume_takes_writes_but_a_read_only_volume_mount_does_not(
    sandbox: dict, bucket: oss2.Bucket, core: client.CoreV1Api
) -> None:
    bucket.put_object("models/c.txt", b"C1")
    rw = _volume_pod(sandbox, core, bucket, ["ReadWriteMany"], ro_mount=False)
    ro = _volume_pod(sandbox, core, bucket, ["ReadWriteMany"], ro_mount=True)
    until("both pods mounted", lambda: _state(core, rw) and _state(core, ro), timeout=60)
    assert any(line == "WRITE new.txt ok" for line in _log(core, rw)), _log(core, rw)
    assert any(line.startswith("WRITE new.txt refused") for line in _log(core, ro)), _log(core, ro)
    assert any(line.startswith("WRITE a.txt refused") for line in _log(core, ro)), _log(core, ro)
    bucket.put_object("models/d.txt", b"D1")
    until("the read-only mount follows OSS too", lambda: (_state(core, ro) or {}).get("d.txt") == "D1", timeout=30)
    until("the read-write mount follows OSS", lambda: (_state(core, rw) or {}).get("d.txt") == "D1", timeout=30)
    for pod in (rw, ro):
        core.delete_namespaced_pod(pod, NS)
