"""The KServe adapter's pure logic: the rendered InferenceService and HPA, the names, and the verdict over
InferenceService status and predictor pods (KServe's condition types, reasons and modelStatus)."""

from __future__ import annotations

from typing import Any

import pytest

from elastic_inference import manifests
from elastic_inference.operators.seldon import DeployServingOperator
from elastic_inference.serving import get_backend
from elastic_inference.serving.kserve import kserve_verdict


def render(**kw: Any) -> dict[str, dict]:
    op = DeployServingOperator(
        task_id="t",
        backend="kserve",
        name="fm",
        namespace="ns",
        model_name="fashion-mnist",
        pvc_name="fm-model",
        sls_project="k8s-log-c1",
        node_selector={"seldon": "fm"},
        **kw,
    )
    return {o["kind"]: o for o in manifests.render(op.backend.template, op.template_variables())}


@pytest.mark.parametrize("pin", [True, False])
def test_renders_raw_deployment_isvc_on_the_claim_and_the_projects_hpa(pin: bool) -> None:
    objs = render(pin_model_version=pin, model_version=3)
    isvc, hpa = objs["InferenceService"], objs["HorizontalPodAutoscaler"]
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert ann["serving.kserve.io/autoscalerClass"] == "external" and ann["elastic-inference/model-version"] == "3"
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    pred = isvc["spec"]["predictor"]
    assert pred["nodeSelector"] == {"seldon": "fm"} and (pred["minReplicas"], pred["maxReplicas"]) == (1, 10)
    model = pred["model"]
    assert model["modelFormat"] == {"name": "tensorflow"} and model["runtime"] == "kserve-tensorflow-serving"
    assert model["storageUri"] == "pvc://fm-model/fashion-mnist"
    assert model["resources"]["limits"] == {"nvidia.com/gpu": 1}
    if pin:
        assert model["args"] == ["--model_config_file=/etc/tfserving/models.config"]
        config = objs["ConfigMap"]["data"]["models.config"]
        assert 'name: "fashion-mnist"' in config and 'base_path: "/mnt/models"' in config and "versions: 3" in config
    else:
        assert model["args"] == ["--model_name=fashion-mnist"] and "ConfigMap" not in objs
    assert hpa["metadata"]["name"] == "fm-predictor" and hpa["spec"]["scaleTargetRef"]["name"] == "fm-predictor"
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["name"] == "sls_ingress_qps" and metric["target"] == {
        "type": "AverageValue",
        "averageValue": "10",
    }
    assert metric["metric"]["selector"]["matchLabels"]["sls.ingress.route"] == "ns-fm-predictor-80"


def test_names_and_teardown() -> None:
    backend = get_backend("kserve")
    names = backend.names({"metadata": {"name": "fm", "namespace": "ns"}})
    assert (names.deployment, names.hpa, names.service, names.service_port) == (
        "fm-predictor",
        "fm-predictor",
        "fm-predictor",
        80,
    )
    assert names.route == "ns-fm-predictor-80" and names.pod_selector == "serving.kserve.io/inferenceservice=fm"
    assert backend.predict_path.format(model_name="m") == "/v1/models/m:predict" and backend.protocol == "tfserving"
    assert [o["kind"] for o in backend.teardown_objects("ns", "fm")] == ["InferenceService", "HorizontalPodAutoscaler"]


def isvc(conditions: list[dict], generation: int = 1, observed: int = 1, **status: Any) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "fm", "namespace": "ns", "generation": generation, "uid": "u"},
        "status": {"observedGeneration": observed, "conditions": conditions, **status},
    }


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def pod(name: str, ready: bool = False, **status: Any) -> dict:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": {"name": name}, "status": {"conditions": conditions, **status}}


def test_ready_for_the_current_generation_only() -> None:
    ready = [cond("PredictorReady", "True"), cond("IngressReady", "True"), cond("Ready", "True")]
    ok = kserve_verdict(isvc(ready, url="http://fm-ns.example.com"), [pod("p", ready=True)])
    assert ok.state == "success" and ok.details["url"] == "http://fm-ns.example.com"
    assert kserve_verdict(isvc(ready, generation=2, observed=1), []).state == "pending"
    assert get_backend("kserve").is_ready(isvc(ready)) and not get_backend("kserve").is_ready(isvc(ready, 2, 1))


def test_invalid_spec_and_failed_load_are_terminal_with_kserve_reason() -> None:
    failed = [cond("PredictorReady", "False", "NoSupportingRuntime"), cond("Ready", "False", "NoSupportingRuntime")]
    model = {
        "transitionStatus": "InvalidSpec",
        "lastFailureInfo": {"reason": "NoSupportingRuntime", "message": "No runtime found"},
    }
    v = kserve_verdict(isvc(failed, modelStatus=model), [])
    assert v.state == "error" and "InvalidSpec: NoSupportingRuntime: No runtime found" in v.message


def test_crash_looping_predictor_pod_fails_naming_pod_and_exit_code() -> None:
    crashing = {
        "containerStatuses": [
            {
                "name": "kserve-container",
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 134}},
            }
        ]
    }
    v = kserve_verdict(isvc([cond("Ready", "Unknown")]), [pod("fm-predictor-abc", **crashing)])
    assert v.state == "error" and "pod fm-predictor-abc container kserve-container: CrashLoopBackOff" in v.message
    assert "last exit code 134" in v.message


def test_missing_claim_is_terminal_but_a_progress_deadline_with_starting_pods_is_not() -> None:
    unschedulable = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": 'persistentvolumeclaim "gone" not found',
            }
        ]
    }
    v = kserve_verdict(isvc([cond("Ready", "False", "MinimumReplicasUnavailable")]), [pod("p", **unschedulable)])
    assert v.state == "error" and 'persistentvolumeclaim "gone" not found' in v.message
    deadline = [cond("PredictorReady", "False", "ProgressDeadlineExceeded", "no progress"), cond("Ready", "False")]
    assert kserve_verdict(isvc(deadline), [pod("p")]).state == "pending"
    assert kserve_verdict(isvc(deadline), []).state == "error"
