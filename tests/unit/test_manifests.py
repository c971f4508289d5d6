"""Default manifests render to the objects the seed describes, in both HPA metric formats."""

from __future__ import annotations

import pytest

from elastic_inference import manifests

SELDON_VARS = dict(
    name="fashion-mnist-ecs",
    namespace="default",
    predictor="predictor",
    model_name="fashion-mnist",
    model_version=1,
    min_replicas=1,
    max_replicas=10,
    metric_name="sls_ingress_qps",
    metric_labels={
        "sls.project": "k8s-log-c1",
        "sls.logstore": "nginx-ingress",
        "sls.ingress.route": "default-fashion-mnist-ecs-predictor-8000",
    },
    qps_target=10,
    proxy_image="registry.cn-beijing.aliyuncs.com/deepai/seldonio-tfserving-proxy_rest:1.3.0",
    serving_image="tensorflow/serving:2.3.0-gpu",
    log_level="DEBUG",
    proxy_cpu="0.5",
    serving_cpu="1",
    grpc_port=8500,
    rest_port=8501,
    mount_path="/mnt",
    model_subpath="models/fashion-mnist",
    gpu_count=1,
    node_selector={"seldon": "fashion-mnist"},
    tolerations=[],
    pvc_name="oss-pvc",
    termination_grace_seconds=1,
    signature_name="serving_default",
)


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_seldon_deployment_renders_both_hpa_formats(fmt: str) -> None:
    (sdep,) = manifests.render("seldon_deployment.yaml.j2", {**SELDON_VARS, "hpa_metric_format": fmt})
    comp = sdep["spec"]["predictors"][0]["componentSpecs"][0]
    hpa = comp["hpaSpec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 10)
    if fmt == "v2":
        ext = hpa["metricsv2"][0]["external"]
        assert ext["metric"]["name"] == "sls_ingress_qps"
        assert ext["target"] == {"type": "AverageValue", "averageValue": "10"}
        assert "metrics" not in hpa
    else:
        ext = hpa["metrics"][0]["external"]
        assert ext["metricName"] == "sls_ingress_qps" and ext["targetAverageValue"] == "10"
        assert ext["metricSelector"]["matchLabels"]["sls.ingress.route"] == "default-fashion-mnist-ecs-predictor-8000"
    server = comp["spec"]["containers"][1]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert "--model_base_path=/mnt/models/fashion-mnist" in server["args"]
    assert comp["spec"]["nodeSelector"] == {"seldon": "fashion-mnist"}
    assert "tolerations" not in comp["spec"]


def test_missing_variable_names_it() -> None:
    vars_ = dict(SELDON_VARS, hpa_metric_format="v2")
    del vars_["pvc_name"]
    with pytest.raises(manifests.ManifestError, match="pvc_name"):
        manifests.render("seldon_deployment.yaml.j2", vars_)


def test_pv_never_carries_inline_credentials() -> None:
    (pv,) = manifests.render(
        "pv.yaml.j2",
        dict(
            pv_name="model-pv",
            storage="5Gi",
            access_mode="ReadOnlyMany",
            secret_name="oss-secret",
            namespace="default",
            bucket="models",
            oss_url="oss-cn-beijing-internal.aliyuncs.com",
            path="/models",
            other_opts="-o max_stat_cache_size=0 -o allow_other",
        ),
    )
    attrs = pv["spec"]["csi"]["volumeAttributes"]
    assert not {"akId", "akSecret"} & set(attrs)
    assert pv["spec"]["csi"]["nodePublishSecretRef"] == {"name": "oss-secret", "namespace": "default"}
    assert pv["spec"]["csi"]["volumeHandle"] == "model-pv"


def test_user_override_directory_wins(tmp_path) -> None:
    (tmp_path / "ingress.yaml.j2").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {{ name }}-custom\n"
    )
    (obj,) = manifests.render("ingress.yaml.j2", {"name": "x"}, template_dir=tmp_path)
    assert obj["metadata"]["name"] == "x-custom"


def test_ingress_and_names() -> None:
    (ing,) = manifests.render(
        "ingress.yaml.j2",
        dict(
            name="fashion-mnist-ecs",
            namespace="default",
            ingress_class="nginx",
            host="",
            path="/",
            service_name="fashion-mnist-ecs-predictor",
            service_port=8000,
        ),
    )
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "fashion-mnist-ecs-predictor", "port": {"number": 8000}}
    assert "host" not in ing["spec"]["rules"][0]
    assert (
        manifests.sls_ingress_route("default", "fashion-mnist-ecs-predictor", 8000)
        == "default-fashion-mnist-ecs-predictor-8000"
    )
    assert (
        manifests.seldon_deployment_name("fashion-mnist-ecs", "predictor", ["tfserving-proxy", "fashion-mnist"])
        == "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist"
    )
