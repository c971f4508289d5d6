"""The sandbox Kubernetes API judged by the real kubectl (v1.32) with the state directory's kubeconfig."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

SEED = Path(__file__).resolve().parent.parent / "data" / "seed"


def test_kubeconfig_has_admin_and_restricted_contexts(sandbox: dict, kubectl) -> None:
    out = kubectl("config", "get-contexts", "-o", "name").stdout.split()
    assert out == ["ack-sandbox", "ack-sandbox-restricted"]
    assert kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout.startswith(
        "https://127.0.0.1:"
    )


def test_discovery_lists_our_kinds(kubectl) -> None:
    out = kubectl("api-resources", "--no-headers").stdout
    rows = {
        line.split()[0] + "/" + line.split()[-3 if len(line.split()) >= 5 else -3]: line for line in out.splitlines()
    }
    text = "\n".join(rows.values())
    for needle in (
        "seldondeployments",
        "sdep",
        "machinelearning.seldon.io/v1",
        "horizontalpodautoscalers",
        "autoscaling/v2",
        "ingresses",
        "networking.k8s.io/v1",
        "events.k8s.io/v1",
        "endpointslices",
        "customresourcedefinitions",
        "replicasets",
    ):
        assert needle in text, needle
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["minor"] == "32"
    assert "service/kubernetes" in kubectl("get", "all", "-n", "default").stdout


def test_seed_pvc_yaml_applies_verbatim(kubectl) -> None:
    # The seed's "// The specified value ..." is not a comment in YAML: it is part of the plain scalar, so a
    # real cluster stores it in volumeHandle. kubectl accepts the file; the value is not the PV name.
    out = kubectl("apply", "-f", str(SEED / "pvc.yaml")).stdout
    assert "persistentvolume/oss-csi-pv" in out and "persistentvolumeclaim/oss-pvc" in out
    pv = json.loads(kubectl("get", "pv", "oss-csi-pv", "-o", "json").stdout)
    assert (
        pv["spec"]["csi"]["volumeHandle"] == "oss-csi-pv // The specified value must be the same as the name of the PV."
    )
    assert pv["spec"]["csi"]["volumeAttributes"]["bucket"] == "Your Bucket"
    pvc = json.loads(kubectl("get", "pvc", "oss-pvc", "-o", "json").stdout)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["volumeMode"] == "Filesystem"  # defaulted by the server
    again = kubectl("apply", "-f", str(SEED / "pvc.yaml")).stdout
    assert again.splitlines() == ["persistentvolume/oss-csi-pv unchanged", "persistentvolumeclaim/oss-pvc unchanged"]
    ssa = kubectl("apply", "--server-side", "-f", str(SEED / "pvc.yaml")).stdout
    assert ssa.count("serverside-applied") == 2
    # The comment written as YAML ("#") means volumeHandle == PV name; the real server then refuses to change
    # the volume source of the existing PV, with the real message.
    fixed = kubectl(
        "create",
        "--dry-run=client",
        "-o",
        "jsonpath={.spec.csi.volumeHandle}",
        "-f",
        str(SEED / "pvc-comment-fixed.yaml"),
    ).stdout
    assert fixed == "oss-csi-pv"
    bad = kubectl("apply", "-f", str(SEED / "pvc-comment-fixed.yaml"), check=False)
    assert bad.returncode != 0
    assert (
        'The PersistentVolume "oss-csi-pv" is invalid: spec.persistentvolumesource: Forbidden: '
        "spec.persistentvolumesource is immutable after creation"
    ) in bad.stderr


def test_seed_fashion_yaml_applies_verbatim(kubectl) -> None:
    out = kubectl("apply", "-f", str(SEED / "fashion.yaml")).stdout
    assert "seldondeployment.machinelearning.seldon.io/fashion-mnist-ecs" in out
    sdep = json.loads(kubectl("get", "sdep", "fashion-mnist-ecs", "-o", "json").stdout)
    predictor = sdep["spec"]["predictors"][0]
    hpa = predictor["componentSpecs"][0]["hpaSpec"]
    assert hpa["metrics"][0]["external"]["metricName"] == "sls_ingress_qps"
    assert hpa["metrics"][0]["external"]["targetAverageValue"] == 10
    assert predictor["componentSpecs"][0]["spec"]["nodeSelector"] == {"seldon": "fashion-mnist"}
    assert sdep["metadata"]["generation"] >= 1
    assert kubectl("apply", "-f", str(SEED / "fashion.yaml")).stdout.strip().endswith("unchanged")
    ssa = kubectl("apply", "--server-side", "-f", str(SEED / "fashion.yaml"))
    assert "serverside-applied" in ssa.stdout and "conflict" not in ssa.stderr.lower()
    ssa2 = kubectl("apply", "--server-side", "-f", str(SEED / "fashion.yaml"))
    assert "serverside-applied" in ssa2.stdout
    managers = {
        e["manager"]
        for e in json.loads(kubectl("get", "sdep", "fashion-mnist-ecs", "-o", "json", "--show-managed-fields").stdout)[
            "metadata"
        ]["managedFields"]
    }
    assert "kubectl" in managers


def test_errors_print_like_a_real_cluster(kubectl) -> None:
    nf = kubectl("get", "pod", "does-not-exist", check=False)
    assert nf.returncode == 1
    assert nf.stderr.strip() == 'Error from server (NotFound): pods "does-not-exist" not found'
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})
    bad = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert (
        'The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
        "subdomain must consist of" in bad.stderr
    )
    forbidden = kubectl("--context", "ack-sandbox-restricted", "get", "pods", "-n", "kube-system", check=False)
    assert forbidden.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "sandbox-developer" '
        'cannot list resource "pods" in API group "" in the namespace "kube-system"'
    )
    # The restricted user may read its own namespace (other tests share this sandbox, so it may hold secrets).
    allowed = kubectl("--context", "ack-sandbox-restricted", "get", "secrets", "-n", "default", check=False)
    assert allowed.returncode == 0 and "Forbidden" not in allowed.stderr
    unauth = kubectl("--token", "not-a-token", "get", "pods", check=False)
    assert "You must be logged in to the server (Unauthorized)" in unauth.stderr


def test_get_wide_describe_patch_and_delete(kubectl) -> None:
    name = f"web-{uuid.uuid4().hex[:6]}"
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(dep))
    wide = kubectl("get", "deploy", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[5:] == ["c", "nginx:1.27", f"app={name}"]
    kubectl(
        "patch",
        "deploy",
        name,
        "-p",
        json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.28"}]}}}}),
    )  # strategic merge by container name
    got = json.loads(kubectl("get", "deploy", name, "-o", "json").stdout)
    assert got["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert got["metadata"]["generation"] == 2
    assert got["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    kubectl("scale", "deploy", name, "--replicas=0")
    kubectl("label", "deploy", name, "tier=frontend")
    assert kubectl("get", "deploy", "-l", "tier=frontend", "-o", "name").stdout.strip() == f"deployment.apps/{name}"
    described = kubectl("describe", "deploy", name).stdout
    assert f"Name:                   {name}" in described and "nginx:1.28" in described
    assert "RollingUpdate" in described
    kubectl("delete", "deploy", name)
    assert kubectl("get", "deploy", name, check=False).returncode == 1
