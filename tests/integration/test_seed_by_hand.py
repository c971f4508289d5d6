"""The seed procedure done by hand against the sandbox, with kubectl and the SDKs only (no provider code):
elastic GPU pool (CS SDK) → real SavedModel to OSS (oss2) → secret-based OSS PV/PVC, the seed's
SeldonDeployment and an Ingress (kubectl apply) → correct predictions through the ingress → bounded load
scales 1 → ≥3 replicas onto new spot and pay-as-you-go nodes in the pool's ratio → back to 1; a killed
container process is restarted; a spot node reclaimed under load has its pods rescheduled.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import oss2
import pytest
import yaml
from alibabacloud_cs20151215 import models as cs
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.utils_models import Config

from tests.helpers import admin, kubectl, kubectl_json, until

pytestmark = pytest.mark.integration

SEED = Path(__file__).resolve().parents[1] / "data" / "seed"
NS = "seed"
LABEL = "fashion-mnist-seed"  # the seed's label value, made unique to this test's pool
GPU_TYPE = "ecs.gn6i-c4g1.xlarge"
PAYG_PERCENT = 30
SDEP = "fashion-mnist-ecs"
DEPLOYMENT = f"{SDEP}-predictor-0-tfserving-proxy-fashion-mnist"
# The Ingress routes this host only: other tests' ingresses in the shared sandbox also route "/".
HOST = "fashion-mnist-ecs.seed.local"


def create_pool(sandbox: dict) -> str:
    """Seed step 1: auto scaling, preemptible, label seldon=<LABEL>, cost optimisation 30 % PAYG + supplemental."""
    client = Client(
        Config(
            access_key_id=sandbox["access_key_id"],
            access_key_secret=sandbox["access_key_secret"],
            endpoint=sandbox["cs"].split("//", 1)[1],
            protocol="http",
        )
    )
    vsw = client.describe_cluster_detail(sandbox["cluster_id"]).body.vswitch_ids
    req = cs.CreateClusterNodePoolRequest(
        nodepool_info=cs.CreateClusterNodePoolRequestNodepoolInfo(name="fashion-mnist-seed", type="ess"),
        auto_scaling=cs.CreateClusterNodePoolRequestAutoScaling(
            enable=True, min_instances=0, max_instances=10, type="spot"
        ),
        kubernetes_config=cs.CreateClusterNodePoolRequestKubernetesConfig(
            labels=[cs.Tag(key="seldon", value=LABEL)], runtime="containerd"
        ),
        scaling_group=cs.CreateClusterNodePoolRequestScalingGroup(
            instance_types=[GPU_TYPE],
            vswitch_ids=vsw,
            instance_charge_type="PostPaid",
            spot_strategy="SpotAsPriceGo",
            multi_az_policy="COST_OPTIMIZED",
            on_demand_base_capacity=0,
            on_demand_percentage_above_base_capacity=PAYG_PERCENT,
            compensate_with_on_demand=True,
            system_disk_category="cloud_essd",
            system_disk_size=120,
        ),
    )
    pool_id = client.create_cluster_node_pool(sandbox["cluster_id"], req).body.nodepool_id
    until(
        "pool active",
        lambda: client.describe_cluster_node_pool_detail(sandbox["cluster_id"], pool_id).body.status.state == "active",
        timeout=60,
        interval=0.2,
    )
    return pool_id


def upload_model(sandbox: dict, model_dir: Path, bucket_name: str) -> None:
    """Seed step 2: the SavedModel to where the seed's args look (/mnt/arena/models/fashion-mnist)."""
    bucket = oss2.Bucket(oss2.Auth(sandbox["access_key_id"], sandbox["access_key_secret"]), sandbox["oss"], bucket_name)
    bucket.create_bucket()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            bucket.put_object_from_file(f"arena/models/{path.relative_to(model_dir).as_posix()}", str(path))


def seed_manifests(sandbox: dict, bucket: str) -> list[dict]:
    """The seed's pvc.yaml and fashion.yaml, changed only where the procedure says to fill in values: bucket and
    url, credentials through a Secret (nodePublishSecretRef) instead of inline akId/akSecret, the SLS project of
    this cluster and the route of this namespace, the namespace and the pool label."""
    pv, pvc = [d for d in yaml.safe_load_all((SEED / "pvc-comment-fixed.yaml").read_text()) if d]
    attrs = pv["spec"]["csi"]["volumeAttributes"]
    attrs.update(bucket=bucket, url=sandbox["oss"])
    del attrs["akId"], attrs["akSecret"]
    pv["metadata"]["name"] = pv["spec"]["csi"]["volumeHandle"] = "seed-oss-csi-pv"
    pv["spec"]["csi"]["nodePublishSecretRef"] = {"name": "oss-secret", "namespace": NS}
    pvc["metadata"]["namespace"] = NS
    pvc["spec"]["volumeName"] = "seed-oss-csi-pv"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "oss-secret", "namespace": NS},
        "stringData": {"akId": sandbox["access_key_id"], "akSecret": sandbox["access_key_secret"]},
    }
    sdep = yaml.safe_load((SEED / "fashion.yaml").read_text())
    sdep["metadata"]["namespace"] = NS
    comp = sdep["spec"]["predictors"][0]["componentSpecs"][0]
    selector = comp["hpaSpec"]["metrics"][0]["external"]["metricSelector"]["matchLabels"]
    selector["sls.project"] = f"k8s-log-{sandbox['cluster_id']}"
    selector["sls.ingress.route"] = f"{NS}-{SDEP}-predictor-8000"
    comp["spec"]["nodeSelector"] = {"seldon": LABEL}
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": SDEP, "namespace": NS},
        "spec": {
            "rules": [
                {
                    "host": HOST,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": f"{SDEP}-predictor", "port": {"number": 8000}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    return [secret, pv, pvc, sdep, ingress]


def samples(n: int = 16) -> tuple[list, list[int]]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))
    from training import sample_images

    return sample_images(n)


def predict_url(sandbox: dict) -> str:
    lb = until(
        "ingress address",
        lambda: (kubectl_json(sandbox, "ingress", SDEP, "-n", NS)["status"].get("loadBalancer") or {}).get("ingress"),
        timeout=30,
        interval=0.2,
    )
    return f"http://{lb[0]['ip']}:{lb[0]['ports'][0]['port']}/api/v1.0/predictions"


def post(url: str, images: list) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps({"data": {"ndarray": images}}).encode(),
        headers={"Content-Type": "application/json", "Host": HOST},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()[:300]
    except OSError as err:
        return 0, str(err)


class Load:
    """Paced requests at ``rate``/s on a few threads until stopped (hard cap on count), counting outcomes."""

    def __init__(self, url: str, images: list, rate: float, threads: int = 4) -> None:
        self.url, self.images, self.rate, self.threads = url, images, rate, threads
        self.stop, self.counts, self.lock = threading.Event(), {}, threading.Lock()
        self.streak = 0  # answers in a row that were 200, the latest last
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        start, per_thread = time.monotonic(), self.rate / self.threads
        for n in range(20_000):
            if self.stop.is_set():
                return
            status, _ = post(self.url, [self.images[n % len(self.images)]])
            with self.lock:
                self.counts[status] = self.counts.get(status, 0) + 1
                self.streak = self.streak + 1 if status == 200 else 0
            delay = start + (n + 1) / per_thread - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def __enter__(self) -> Load:
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=30)


def pool_nodes(sandbox: dict, pool_id: str) -> list[dict]:
    return kubectl_json(sandbox, "nodes", "-l", f"alibabacloud.com/nodepool-id={pool_id}")["items"]


def ready_pods(sandbox: dict) -> list[dict]:
    pods = kubectl_json(sandbox, "pods", "-n", NS, "-l", f"seldon-deployment-id={SDEP}")["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def pod_processes(name: str, namespace: str) -> dict[int, int]:
    """PID → RSS (KiB) of the pod's container processes (the kubelet runs each container as a local process
    with the downward-API variables POD_NAME / POD_NAMESPACE in its environment)."""
    marks = (f"POD_NAME={name}\0".encode(), f"POD_NAMESPACE={namespace}\0".encode())
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes() + b"\0"
            status = (proc / "status").read_text()
        except OSError:
            continue
        if all(m in env for m in marks):
            rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            found[int(proc.name)] = rss
    return found


def test_seed_procedure_by_hand(sandbox, trained_savedmodel):
    scale = float(sandbox["time_scale"])
    kubectl(
        sandbox,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    pool_id = create_pool(sandbox)
    upload_model(sandbox, trained_savedmodel, "seed-models")
    for obj in seed_manifests(sandbox, "seed-models"):
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(obj))
    until(
        "SeldonDeployment Available",
        lambda: kubectl_json(sandbox, "sdep", SDEP, "-n", NS).get("status", {}).get("state") == "Available",
        timeout=120,
        interval=0.2,
    )
    assert kubectl_json(sandbox, "pvc", "oss-pvc", "-n", NS)["status"]["phase"] == "Bound"

    # Predictions through the ingress address are right.
    images, labels = samples()
    url = predict_url(sandbox)
    status, body = until("prediction", lambda: (r := post(url, images))[0] == 200 and r, timeout=30, interval=0.2)
    predicted = [max(range(10), key=row.__getitem__) for row in body["data"]["ndarray"]]
    assert sum(p == t for p, t in zip(predicted, labels)) >= 13, (predicted, labels)

    # Bounded load: 40 QPS against a target of 10 per replica → the HPA wants 4 replicas, each on its own GPU
    # node of the elastic pool, in the pool's spot / pay-as-you-go ratio.
    nodes_before = {n["metadata"]["name"] for n in pool_nodes(sandbox, pool_id)}
    t0 = time.monotonic()
    with Load(url, images, rate=40) as load:
        until("≥3 ready replicas", lambda: len(ready_pods(sandbox)) >= 3, timeout=900 / scale + 150, interval=0.2)
        scale_out_s = time.monotonic() - t0
        nodes = until(
            "4 pool nodes",
            lambda: (ns := pool_nodes(sandbox, pool_id)) and len(ns) >= 4 and ns,
            timeout=600 / scale + 60,
            interval=0.2,
        )
        new_nodes = [n for n in nodes if n["metadata"]["name"] not in nodes_before]
        charge = [n["metadata"]["labels"]["node.alibabacloud.com/spot-strategy"] for n in nodes]
        payg, spot = charge.count("NoSpot"), len(charge) - charge.count("NoSpot")
        expected_payg = math.ceil(PAYG_PERCENT / 100 * len(nodes))
        assert new_nodes and payg >= 1 and spot >= 1, charge
        assert abs(payg - expected_payg) <= 1, (charge, expected_payg)
        pods = ready_pods(sandbox)
        assert all(p["spec"]["nodeName"] in {n["metadata"]["name"] for n in nodes} for p in pods)

        # A killed container process is restarted by the kubelet.
        victim = pods[0]
        before = {c["name"]: c["restartCount"] for c in victim["status"]["containerStatuses"]}
        procs = pod_processes(victim["metadata"]["name"], NS)
        assert len(procs) >= 3, f"expected the pod's 3 container processes, found {procs}"
        rss_mib = sum(procs.values()) / 1024
        os.kill(max(procs, key=procs.get), signal.SIGKILL)  # the model server, the biggest one
        until(
            "container restarted",
            lambda: any(
                c["restartCount"] > before[c["name"]]
                for c in kubectl_json(sandbox, "pod", victim["metadata"]["name"], "-n", NS)["status"][
                    "containerStatuses"
                ]
            ),
            timeout=60,
            interval=0.2,
        )

        # A spot node reclaimed under load: its pods are evicted and run again elsewhere.
        # (The restarted pod may be the only one on a spot node: wait until it serves again.)
        def serving_spot_node() -> str | None:
            serving = {p["spec"]["nodeName"] for p in ready_pods(sandbox)}
            return next(
                (
                    n["metadata"]["name"]
                    for n in nodes
                    if n["metadata"]["labels"]["node.alibabacloud.com/spot-strategy"] != "NoSpot"
                    and n["metadata"]["name"] in serving
                ),
                None,
            )

        spot_node = until("a spot node serving a ready replica", serving_spot_node, timeout=90, interval=0.2)
        assert admin(sandbox, "controllers", "POST", f"/_sandbox/nodes/{spot_node}/reclaim?notice=30")[0] == 202
        until(
            "pods rescheduled off the reclaimed node",
            lambda: (
                (rp := ready_pods(sandbox)) and len(rp) >= 3 and all(p["spec"]["nodeName"] != spot_node for p in rp)
            ),
            timeout=900 / scale + 60,
            interval=0.2,
        )
        # The endpoint recovers: requests succeed again in a row. How many failed on the way depends on how fast
        # this machine reloads the model (the seed's manifest has no readinessProbe on TF Serving, so a restarted
        # model server takes traffic while it loads): a bound on that share would time the machine, not the
        # sandbox. A share below half would mean the endpoint was down most of the drill.
        until("100 answers in a row that are 200", lambda: load.streak >= 100, timeout=120, interval=0.2)
        counts = dict(load.counts)
    total = sum(counts.values())
    assert set(counts) <= {200, 500, 502, 503}, counts  # model not loaded yet, no ready endpoint: nothing else
    assert counts.get(200, 0) >= 0.5 * total, counts
    print(
        f"seed-by-hand: load start → ≥3 ready replicas in {scale_out_s:.1f}s; pod RSS {rss_mib:.0f} MiB "
        f"(3 containers); responses {counts}"
    )

    # Load stopped: back to one replica after the scale-down stabilisation window.
    until(
        "back to 1 replica",
        lambda: kubectl_json(sandbox, "deployment", DEPLOYMENT, "-n", NS)["spec"]["replicas"] == 1,
        timeout=(300 + 60) / scale + 60,
        interval=0.2,
    )
