"""KServe's InferenceService (RawDeployment) in the running sandbox, driven with kubectl and the kubernetes client.

A TF Serving InferenceService on a claim (``storageUri: pvc://<claim>/fashion-mnist``) becomes ``Ready`` with
KServe's names, labels, Service, conditions and URL, answers TF Serving's predict on its Service's pod, and
``kubectl get isvc`` prints READY True and the URL; ``autoscalerClass: external`` leaves the HPA to the user;
without the cluster-local label KServe makes its own Ingress; deleting it garbage-collects what it made. A model format no runtime serves ends ``PredictorReady=False`` with
``NoSupportingRuntime``.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.helpers import kubectl, until

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def _ns(kube: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def _isvc(name: str, claim: str, fmt: str = "tensorflow", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {"networking.kserve.io/visibility": "cluster-local"},
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment", **annotations},
        },
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "terminationGracePeriodSeconds": 1,
                "model": {
                    "modelFormat": {"name": fmt},
                    "storageUri": f"pvc://{claim}/fashion-mnist",
                    "args": ["--model_name=fashion-mnist"],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/v1/models/fashion-mnist", "port": 8080},
                        "periodSeconds": 1,
                    },
                },
            }
        },
    }


def _status(kube: client.ApiClient, ns: str, name: str) -> dict:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return obj.get("status") or {}


def _cond(status: dict, ctype: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), {})


def _hostpath_claim(core: client.CoreV1Api, ns: str, name: str, path: Path) -> None:
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": ns, "name": name},
                "hostPath": {"path": str(path)},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "",
                "volumeName": name,
            },
        },
    )


@pytest.mark.integration
def test_inference_service_ready_with_kserve_names_url_and_printer_columns(
    sandbox: dict, kube: client.ApiClient, trained_savedmodel: Path
) -> None:
    ns, tag = "kserve-raw", secrets.token_hex(3)
    name, claim = f"fm-{tag}", f"models-{tag}"
    _ns(kube, ns)
    core, apps, autoscaling = client.CoreV1Api(kube), client.AppsV1Api(kube), client.AutoscalingV2Api(kube)
    _hostpath_claim(core, ns, claim, trained_savedmodel)
    try:
        isvc = _isvc(name, claim, **{"serving.kserve.io/autoscalerClass": "external"})
        out = kubectl(sandbox, "apply", "-n", ns, "-f", "-", stdin=json.dumps(isvc))
        assert f"inferenceservice.serving.kserve.io/{name} created" in out

        until("Ready", lambda: _cond(_status(kube, ns, name), "Ready").get("status") == "True", timeout=180)
        st = _status(kube, ns, name)
        assert _cond(st, "PredictorReady")["status"] == "True" and _cond(st, "IngressReady")["status"] == "True"
        assert st["url"] == f"http://{name}-{ns}.example.com"
        assert st["address"]["url"] == f"http://{name}-predictor.{ns}.svc.cluster.local"
        assert st["modelStatus"]["transitionStatus"] == "UpToDate"

        dep = apps.read_namespaced_deployment(f"{name}-predictor", ns)
        labels = dep.spec.template.metadata.labels
        assert labels["serving.kserve.io/inferenceservice"] == name and labels["component"] == "predictor"
        assert labels["app"] == f"isvc.{name}-predictor"
        (c,) = dep.spec.template.spec.containers
        assert c.name == "kserve-container" and c.command == ["/usr/bin/tensorflow_model_server"]
        assert c.args[:4] == [
            f"--model_name={name}",
            "--port=9000",
            "--rest_api_port=8080",
            "--model_base_path=/mnt/models",
        ]
        assert c.args[-1] == "--model_name=fashion-mnist"  # the model's args after the runtime's
        mount = next(m for m in c.volume_mounts if m.mount_path == "/mnt/models")
        assert (mount.name, mount.sub_path, mount.read_only) == ("kserve-pvc-source", "fashion-mnist", True)
        svc = core.read_namespaced_service(f"{name}-predictor", ns)
        assert [(p.port, p.target_port) for p in svc.spec.ports] == [(80, 8080)]
        assert svc.spec.selector == {"app": f"isvc.{name}-predictor"}
        with pytest.raises(ApiException) as gone:  # autoscalerClass external: the HPA is the user's
            autoscaling.read_namespaced_horizontal_pod_autoscaler(f"{name}-predictor", ns)
        assert gone.value.status == 404
        with pytest.raises(ApiException) as no_ingress:  # cluster-local: KServe makes no Ingress
            client.NetworkingV1Api(kube).read_namespaced_ingress(name, ns)
        assert no_ingress.value.status == 404

        (pod,) = core.list_namespaced_pod(ns, label_selector=f"serving.kserve.io/inferenceservice={name}").items
        body = json.dumps({"instances": [[[0.0] * 28] * 28]}).encode()
        req = urllib.request.Request(
            f"http://{pod.status.pod_ip}:8080/v1/models/fashion-mnist:predict", data=body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert len(json.loads(resp.read())["predictions"][0]) == 10

        table = kubectl(sandbox, "get", "isvc", "-n", ns, name)
        header, row = table.strip().splitlines()
        assert header.split()[:3] == ["NAME", "URL", "READY"]
        assert row.split()[:3] == [name, f"http://{name}-{ns}.example.com", "True"]

        # Not cluster-local any more: KServe's own Ingress <isvc> to the predictor on 80 (RawIngressReconciler)
        kubectl(sandbox, "label", "isvc", "-n", ns, name, "networking.kserve.io/visibility-")
        net = client.NetworkingV1Api(kube)
        ing = until("KServe's Ingress", lambda: _read_ingress(net, name, ns))
        hosts = [r.host for r in ing.spec.rules]
        assert hosts == [f"{name}-{ns}.example.com", f"{name}-predictor-{ns}.example.com"]
        svc_backend = ing.spec.rules[0].http.paths[0].backend.service
        assert (svc_backend.name, svc_backend.port.number) == (f"{name}-predictor", 80)
        assert ing.metadata.owner_references[0].kind == "InferenceService"

        kubectl(sandbox, "delete", "isvc", "-n", ns, name)
        until("the Ingress garbage-collected", lambda: _read_ingress(net, name, ns) is None)
        until("the Deployment garbage-collected", lambda: not apps.list_namespaced_deployment(ns).items)
        until("the Service garbage-collected", lambda: _absent(core, f"{name}-predictor", ns))
    finally:
        core.delete_namespaced_persistent_volume_claim(claim, ns)
        core.delete_persistent_volume(claim)


def test_model_format_without_runtime_is_not_ready_with_kserve_reason(sandbox: dict, kube: client.ApiClient) -> None:
    ns, name = "kserve-raw", f"bad-{secrets.token_hex(3)}"
    _ns(kube, ns)
    kubectl(sandbox, "apply", "-n", ns, "-f", "-", stdin=json.dumps(_isvc(name, "none", fmt="pytorch")))
    until("PredictorReady False", lambda: _cond(_status(kube, ns, name), "PredictorReady").get("status") == "False")
    st = _status(kube, ns, name)
    assert _cond(st, "PredictorReady")["reason"] == "NoSupportingRuntime"
    assert _cond(st, "Ready") == {**_cond(st, "Ready"), "status": "False", "reason": "NoSupportingRuntime"}
    assert st["modelStatus"]["transitionStatus"] == "InvalidSpec"
    assert st["modelStatus"]["lastFailureInfo"]["reason"] == "NoSupportingRuntime"
    assert (
        client.AppsV1Api(kube)
        .list_namespaced_deployment(ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
        .items
        == []
    )
    kubectl(sandbox, "delete", "isvc", "-n", ns, name)


def _absent(core: client.CoreV1Api, name: str, ns: str) -> bool:
    try:
        core.read_namespaced_service(name, ns)
    except ApiException as exc:
        return exc.status == 404
    return False


def _read_ingress(net: client.NetworkingV1Api, name: str, ns: str) -> Any:
    try:
        return net.read_namespaced_ingress(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
