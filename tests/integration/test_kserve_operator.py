"""The serving operator with ``backend="kserve"`` against the sandbox: the real API server, KServe reconciler,
scheduler and kubelet produce the failures, and each test checks the task fails within its short timeout naming
the pod and the cause - an error event, not a timeout: an image nobody can pull (ImagePullBackOff), a model
server that aborts on an unloadable version (CrashLoopBackOff with the exit code), a claim that does not exist
(the scheduler's ``persistentvolumeclaim "..." not found``). Plus what the operator creates and that a re-run
changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from elastic_inference.hooks.kubernetes import ResourceFailedError
from elastic_inference.operators.seldon import DeployServingOperator
from elastic_inference.operators.teardown import DeleteKubernetesObjectsOperator
from elastic_inference.specs.serving import ServingSpec
from tests.helpers import until
from tests.integration.support import run_deferred, uid, volume_op

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def kserve_op(namespace: str, name: str, **kw: Any) -> DeployServingOperator:
    kw.setdefault("pvc_name", "oss-pvc")
    return DeployServingOperator(
        task_id="serve",
        backend="kserve",
        name=name,
        namespace=namespace,
        model_name=kw.pop("model_name", "fashion-mnist"),
        sls_project="k8s-log-c1",
        gpu_count=0,
        serving_cpu="100m",
        timeout=kw.pop("timeout", 60),
        **kw,
    )


@pytest.fixture
def model_volume(k8s_env, namespace, pvs) -> str:
    from elastic_inference.hooks.oss import OssHook

    oss = OssHook()
    if not oss.bucket_exists("models"):
        oss.create_bucket("models")
    name = f"vol{uid()}"
    pvs.append(f"{name}-pv")
    return volume_op(namespace, name).execute({})["pvc"]


def test_creates_isvc_and_hpa_with_kserve_names_and_reruns_unchanged(kube, namespace) -> None:
    from kubernetes import client

    name = f"k{uid()}"
    first = kserve_op(namespace, name, wait_for_completion=False).execute({})
    assert first["action"] == "created" and first["backend"] == "kserve" and first["protocol"] == "tfserving"
    assert first["service"] == first["deployment"] == first["hpa"] == f"{name}-predictor"
    assert (first["service_port"], first["route"]) == (80, f"{namespace}-{name}-predictor-80")
    assert first["pod_selector"] == f"serving.kserve.io/inferenceservice={name}"
    isvc = client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert ann["serving.kserve.io/autoscalerClass"] == "external"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "tensorflow"} and model["storageUri"] == "pvc://oss-pvc/fashion-mnist"
    hpa = client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler(f"{name}-predictor", namespace)
    assert hpa.spec.scale_target_ref.name == f"{name}-predictor"
    metric = hpa.spec.metrics[0].external
    assert metric.metric.name == "sls_ingress_qps" and metric.target.average_value == "10"
    assert metric.metric.selector.match_labels["sls.ingress.route"] == f"{namespace}-{name}-predictor-80"

    # the HPA scales the predictor between runs: a re-apply with the same inputs still changes nothing
    # (the DAG-level rerun, every object unchanged and nothing uploaded, is tests/e2e/test_elastic_inference_dag.py)
    apps = client.AppsV1Api(kube)
    until("the predictor Deployment", lambda: apps.list_namespaced_deployment(namespace).items)
    apps.patch_namespaced_deployment_scale(f"{name}-predictor", namespace, {"spec": {"replicas": 2}})
    second = kserve_op(namespace, name, wait_for_completion=False).execute({})
    assert second["action"] == "unchanged" and second["uid"] == first["uid"]

    # teardown: the serving spec names the backend's objects (a nested list, as the DAG passes them)
    spec = ServingSpec.from_mapping({"namespace": namespace, "name": name, "serving_backend": "kserve"})
    deleted = DeleteKubernetesObjectsOperator(task_id="teardown", objects=[spec.serving_objects]).execute({})
    assert deleted == [f"InferenceService/{name}", f"HorizontalPodAutoscaler/{name}-predictor"]
    with pytest.raises(client.exceptions.ApiException) as gone:
        client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert gone.value.status == 404


def test_bad_image_fails_fast_naming_pod_container_and_reason(namespace, model_volume) -> None:
    name = f"k{uid()}"
    image = "registry.example.com/no-such/serving:9"
    op = kserve_op(namespace, name, deferrable=True, pvc_name=model_volume, serving_image=image)
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"InferenceService {namespace}/{name}: pod {name}-predictor-" in text
    assert "container kserve-container: " in text and ("ImagePullBackOff" in text or "ErrImagePull" in text)
    assert image in text


def test_crashing_model_server_fails_fast_with_exit_code(namespace, model_volume) -> None:
    """A model version TF Serving cannot load aborts the server: CrashLoopBackOff ends the wait."""
    from elastic_inference.hooks.oss import OssHook

    model = f"crash{uid()}"
    OssHook().put_object("models", f"models/{model}/1/saved_model.pb", os.urandom(256))
    name = f"k{uid()}"
    op = kserve_op(namespace, name, deferrable=True, pvc_name=model_volume, model_name=model, timeout=120)
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"pod {name}-predictor-" in text
    assert "container kserve-container: CrashLoopBackOff" in text and "last exit code" in text


def test_missing_claim_fails_fast_naming_the_claim(namespace) -> None:
    name, claim = f"k{uid()}", f"nope{uid()}"
    op = kserve_op(namespace, name, deferrable=True, pvc_name=claim)
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"pod {name}-predictor-" in text
    assert f'persistentvolumeclaim "{claim}" not found' in text
