"""TF Serving's version handling in the stand-in, as the real binary does it.

- ``--model_config_file``: the text-format ModelServerConfig parses as protobuf's text format does, with the
  three version policies (``latest { num_versions }``, ``all {}``, ``specific { versions }``) and labels.
- The policies over a real base path (a stand-in loader; no TensorFlow): the default ``latest`` loads a new
  version and then unloads the old one; ``specific`` never loads what it does not name.
- The danger of issue 11, reproduced: a running TF Serving pod mounting the model from OSS with the default
  policy starts serving a version uploaded to OSS after the mount; the same pod with ``specific { versions:
  1 }`` in a config file does not. Observed through TF Serving's REST model status and predict.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import oss2
import pytest
from kubernetes import client

from ack_sandbox.runtimes.tfserving_config import ConfigError, VersionPolicy, parse_model_server_config
from ack_sandbox.runtimes.tfserving_model import ModelManager
from tests.helpers import until
from tests.sandbox.workloads import NS

CONFIG = """
# two models, as in TF Serving's serving_config.md
model_config_list {
  config {
    name: 'fashion-mnist'
    base_path: "/mnt/models/fashion-mnist"
    model_platform: 'tensorflow'
    model_version_policy: { specific { versions: 1 versions: 3 } }
    version_labels { key: 'stable' value: 1 }
    version_labels { key: 'canary' value: 3 }
  }
  config {
    name: "other"
    base_path: "/mnt/models/other"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config: { name: "every" base_path: "/m/every" model_platform: "tensorflow" model_version_policy { all {} } }
}
"""


# ---- the config file -----------------------------------------------------------------------------------------


def test_model_config_file_parses_like_protobuf_text_format() -> None:
    fm, other, every = parse_model_server_config(CONFIG)
    assert (fm.name, fm.base_path, fm.policy) == (
        "fashion-mnist",
        "/mnt/models/fashion-mnist",
        VersionPolicy("specific", versions=(1, 3)),
    )
    assert fm.version_labels == {"stable": 1, "canary": 3}
    assert other.policy == VersionPolicy("latest", num_versions=2)
    assert every.policy.kind == "all"
    assert fm.policy.aspired([1, 2, 3, 4]) == [1, 3]
    assert other.policy.aspired([1, 2, 3, 4]) == [3, 4]
    assert VersionPolicy().aspired([1, 2, 7]) == [7]
    assert every.policy.aspired([1, 2]) == [1, 2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { name: 'm' base_path: '/m' bogus: 1 } }", 'has no field named "bogus"'),
        ("model_config_list { config { name: 'm' } }", "has no base_path"),
        ("model_config_list { config { name: 'm' base_path: '/m' model_platform: 'pytorch' } }", "pytorch"),
        ("model_config_list { config { name: 'm' base_path: '/m'", "Unexpected end of input"),
        ("model_config_list { config { name: m base_path: '/m' } }", "Expected string"),
        ("", "lists no model"),
    ],
)
def test_a_bad_config_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_server_config(text)


# ---- the policies over a base path -----------------------------------------------------------------------------


class FakeModel:
    """Stands in for a loaded SavedModel (``loader=``): loading needs only the directory."""

    def __init__(self, path: Path) -> None:
        if not (path / "saved_model.pb").exists():
            raise FileNotFoundError(path / "saved_model.pb")
        self.path = path


def _version_dir(base: Path, version: int) -> None:
    (base / str(version)).mkdir(parents=True)
    (base / str(version) / "saved_model.pb").write_bytes(b"pb")


def _states(manager: ModelManager) -> dict[str, str]:
    return {s["version"]: s["state"] for s in manager.statuses()}


def test_latest_policy_loads_a_new_version_then_unloads_the_old_one(tmp_path: Path) -> None:
    _version_dir(tmp_path, 1)
    manager = ModelManager("m", str(tmp_path), loader=FakeModel, warmup=False)  # type: ignore[arg-type]
    manager.poll_once()
    assert _states(manager) == {"1": "AVAILABLE"}
    _version_dir(tmp_path, 2)
    manager.poll_once()
    assert _states(manager) == {"2": "AVAILABLE", "1": "END"}
    assert [s["version"] for s in manager.statuses()] == ["2", "1"]  # newest first, as ServableStateMonitor
    assert manager.servable(None)[0] == 2
    # the newer version deleted: the previous one is aspired again and loaded again
    (tmp_path / "2" / "saved_model.pb").unlink()
    (tmp_path / "2").rmdir()
    manager.poll_once()
    assert _states(manager) == {"2": "END", "1": "AVAILABLE"}


def test_specific_policy_serves_exactly_its_versions(tmp_path: Path) -> None:
    _version_dir(tmp_path, 1)
    policy = VersionPolicy("specific", versions=(1,))
    manager = ModelManager("m", str(tmp_path), loader=FakeModel, warmup=False, policy=policy)  # type: ignore[arg-type]
    manager.poll_once()
    _version_dir(tmp_path, 2)
    manager.poll_once()
    assert _states(manager) == {"1": "AVAILABLE"}
    assert manager.servable(None)[0] == 1


def test_a_failed_load_is_retried_and_the_serving_version_kept(tmp_path: Path) -> None:
    _version_dir(tmp_path, 1)
    manager = ModelManager(
        "m",
        str(tmp_path),
        loader=FakeModel,  # type: ignore[arg-type]
        warmup=False,
        load_retry_interval=0.0,
    )
    manager.poll_once()
    (tmp_path / "2").mkdir()  # a version whose files are not all there yet
    failed = manager.poll_once()
    assert [f.version for f in failed] == [2]
    assert _states(manager) == {"2": "END", "1": "AVAILABLE"}
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"pb")
    manager.poll_once()
    assert _states(manager) == {"2": "AVAILABLE", "1": "END"}


# ---- the danger, reproduced in the sandbox --------------------------------------------------------------------

TF_IMAGE = "tensorflow/serving:2.3.0-gpu"


def _http(method: str, url: str, doc: Any = None) -> tuple[int, Any]:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, None


def _upload_version(b: oss2.Bucket, src: Path, version: int) -> None:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == "saved_model.pb")  # as an uploader should: the .pb last
    for path in files:
        b.put_object_from_file(f"models/fashion-mnist/{version}/{path.relative_to(src)}", str(path))


def _tf_pod(name: str, claim: str, config_map: str | None) -> dict:
    # a version whose objects are still arriving fails to load and is retried: 1 s apart instead of 60 s
    args = ["--port=8500", "--rest_api_port=8501", "--load_retry_interval_micros=1000000"]
    volumes: list[dict] = [{"name": "model-storage", "persistentVolumeClaim": {"claimName": claim}}]
    mounts: list[dict] = [{"name": "model-storage", "mountPath": "/mnt/models", "readOnly": True}]
    if config_map:
        args.append("--model_config_file=/etc/tfs/models.config")
        volumes.append({"name": "config", "configMap": {"name": config_map}})
        mounts.append({"name": "config", "mountPath": "/etc/tfs"})
    else:
        args += ["--model_name=fashion-mnist", "--model_base_path=/mnt/models/fashion-mnist"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "tfserving",
                    "image": TF_IMAGE,
                    "command": ["/usr/bin/tensorflow_model_server"],
                    "args": args,
                    "ports": [{"containerPort": 8501}],
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def _versions(core: client.CoreV1Api, pod: str) -> dict[str, str]:
    ip = core.read_namespaced_pod(pod, NS).status.pod_ip
    if not ip:
        return {}
    status, body = _http("GET", f"http://{ip}:8501/v1/models/fashion-mnist")
    if status != 200:
        return {}
    return {v["version"]: v["state"] for v in body["model_version_status"]}


@pytest.mark.integration
def test_an_upload_after_the_mount_changes_what_the_default_policy_serves_but_not_a_specific_one(
    sandbox: dict, core: client.CoreV1Api, trained_savedmodel: Path
) -> None:
    tag = secrets.token_hex(3)
    b = oss2.Bucket(oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]), sandbox["oss"], f"tfs-{tag}")
    b.create_bucket()
    v1 = trained_savedmodel / "fashion-mnist" / "1"
    _upload_version(b, v1, 1)
    core.create_namespaced_secret(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"tfs-{tag}"},
            "stringData": {"akId": sandbox["access_key_id"], "akSecret": sandbox["access_key_secret"]},
        },
    )
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"tfs-{tag}", "labels": {"alicloud-pvname": f"tfs-{tag}"}},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "csi": {
                    "driver": "ossplugin.csi.alibabacloud.com",
                    "volumeHandle": f"tfs-{tag}",
                    "nodePublishSecretRef": {"name": f"tfs-{tag}", "namespace": NS},
                    "volumeAttributes": {
                        "bucket": f"tfs-{tag}",
                        "url": "oss-cn-beijing-internal.aliyuncs.com",
                        "path": "/models",
                        "otherOpts": "-o max_stat_cache_size=0 -o allow_other",
                    },
                },
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        NS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"tfs-{tag}"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "resources": {"requests": {"storage": "5Gi"}},
                "selector": {"matchLabels": {"alicloud-pvname": f"tfs-{tag}"}},
                "storageClassName": "",
            },
        },
    )
    config = (
        "model_config_list {\n  config {\n    name: 'fashion-mnist'\n"
        "    base_path: '/mnt/models/fashion-mnist'\n    model_platform: 'tensorflow'\n"
        "    model_version_policy { specific { versions: 1 } }\n  }\n}\n"
    )
    core.create_namespaced_config_map(
        NS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"tfs-{tag}"},
            "data": {"models.config": config},
        },
    )
    latest, pinned = f"tfs-latest-{tag}", f"tfs-pinned-{tag}"
    core.create_namespaced_pod(NS, _tf_pod(latest, f"tfs-{tag}", None))
    core.create_namespaced_pod(NS, _tf_pod(pinned, f"tfs-{tag}", f"tfs-{tag}"))
    for pod in (latest, pinned):
        until(f"{pod} serves version 1", lambda pod=pod: _versions(core, pod) == {"1": "AVAILABLE"}, timeout=180)

    _upload_version(b, v1, 2)  # "version 2" uploaded after the pods mounted the bucket

    until(
        "the default policy switches the running pod to version 2",
        lambda: _versions(core, latest) == {"2": "AVAILABLE", "1": "END"},
        timeout=120,
    )
    ip = core.read_namespaced_pod(latest, NS).status.pod_ip
    status, body = _http("GET", f"http://{ip}:8501/v1/models/fashion-mnist/metadata")
    assert status == 200 and body["model_spec"]["version"] == "2"
    # the pinned pod had the same time to notice, and serves exactly version 1
    assert _versions(core, pinned) == {"1": "AVAILABLE"}
    ip = core.read_namespaced_pod(pinned, NS).status.pod_ip
    status, body = _http("GET", f"http://{ip}:8501/v1/models/fashion-mnist/versions/2")
    assert status == 404 and "Could not find version 2" in body["error"]
    status, body = _http("POST", f"http://{ip}:8501/v1/models/fashion-mnist/versions/2:predict", {"instances": []})
    assert status == 404 and "Specific(fashion-mnist, 2)" in body["error"]
    status, body = _http("GET", f"http://{ip}:8501/v1/models/fashion-mnist/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    for pod in (latest, pinned):
        core.delete_namespaced_pod(pod, NS)
