"""Deploy operators, sensors and triggers: construction, rendering, names and trigger serialisation (no cluster)."""

from __future__ import annotations

import importlib

import pytest
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.hooks.base import AlibabaCloudSettings
from elastic_inference.hooks.kubernetes import KubeAccess, ResourceFailedError, ResourceWaitTimeout
from elastic_inference.operators.ingress import CreateIngressOperator, ingress_rule
from elastic_inference.operators.seldon import DeploySeldonOperator, seldon_names
from elastic_inference.operators.volume import CreateOssVolumeOperator, default_oss_url, oss_secret_data
from elastic_inference.sensors.kubernetes import PvcBoundSensor, SeldonDeploymentSensor
from elastic_inference.triggers.ingress import IngressAddressTrigger
from elastic_inference.triggers.seldon import SeldonDeploymentTrigger
from elastic_inference.triggers.volume import PvcBoundTrigger
from elastic_inference.waits import raise_for_event

ACCESS = KubeAccess(kubernetes_conn_id=None, ack_conn_id="alibaba_ack_default", cluster_id="c123").to_dict()


@pytest.mark.parametrize(
    "trigger",
    [
        PvcBoundTrigger(access=ACCESS, namespace="d", name="pvc", pv_name="pv", deadline=1e9, watch_timeout_seconds=5),
        SeldonDeploymentTrigger(access=ACCESS, namespace="d", name="m", deadline=1e9, unschedulable_grace_seconds=30),
        IngressAddressTrigger(access=ACCESS, namespace="d", name="i", deadline=1e9),
    ],
)
def test_trigger_serialisation_round_trips(trigger) -> None:
    classpath, kwargs = trigger.serialize()
    module, _, cls = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), cls)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert "kubeconfig" not in repr(kwargs).lower() and kwargs["access"]["cluster_id"] == "c123"


def test_seldon_trigger_watches_sdep_its_pods_and_pod_events() -> None:
    specs = {s.key: s for s in SeldonDeploymentTrigger(access=ACCESS, namespace="d", name="m", deadline=0).watches()}
    assert specs["sdep"].path == "/apis/machinelearning.seldon.io/v1/namespaces/d/seldondeployments"
    assert specs["sdep"].field_selector == "metadata.name=m"
    assert specs["pods"].label_selector == "seldon-deployment-id=m"
    assert specs["events"].field_selector == "involvedObject.kind=Pod"


def seldon_op(**kw) -> DeploySeldonOperator:
    args = dict(
        task_id="sdep",
        name="fashion-mnist-ecs",
        model_name="fashion-mnist",
        pvc_name="oss-pvc",
        sls_project="k8s-log-c1",
        node_selector={"seldon": "fashion-mnist"},
    )
    return DeploySeldonOperator(**{**args, **kw})


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_seldon_operator_renders_seed_shape_and_derives_names(fmt: str) -> None:
    op = seldon_op(hpa_metric_format=fmt)
    *_, sdep = manifests.render("seldon_deployment.yaml.j2", op.template_variables())  # after its ConfigMap
    hpa = sdep["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"]
    labels = (
        hpa["metricsv2"][0]["external"]["metric"]["selector"]
        if fmt == "v2"
        else hpa["metrics"][0]["external"]["metricSelector"]
    )["matchLabels"]
    assert labels == {
        "sls.project": "k8s-log-c1",
        "sls.logstore": "nginx-ingress",
        "sls.ingress.route": "default-fashion-mnist-ecs-predictor-8000",
    }
    assert seldon_names(sdep) == {
        "deployment": "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist",
        "hpa": "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist",
        "service": "fashion-mnist-ecs-predictor",
        "route": "default-fashion-mnist-ecs-predictor-8000",
    }


def test_seldon_names_honour_component_name_and_service_annotation() -> None:
    sdep = {
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {
            "predictors": [
                {
                    "name": "p",
                    "annotations": {"seldon.io/svc-name": "custom"},
                    "componentSpecs": [{"metadata": {"name": "comp"}, "spec": {"containers": [{"name": "a"}]}}],
                }
            ]
        },
    }
    assert seldon_names(sdep) == {
        "deployment": "s-p-0-comp",
        "hpa": "s-p-0-comp",
        "service": "custom",
        "route": "n-custom-8000",
    }


def test_seldon_operator_validates_its_parameters_after_rendering() -> None:
    # Validation runs in execute (after templates render), before anything touches the cluster.
    with pytest.raises(AirflowFailException, match="hpa_metric_format"):
        seldon_op(hpa_metric_format="v3").validate()
    with pytest.raises(AirflowFailException, match="min_replicas"):
        seldon_op(min_replicas=5, max_replicas=2).validate()
    with pytest.raises(AirflowFailException, match="qps_target"):
        seldon_op(qps_target=0).validate()
    with pytest.raises(AirflowFailException, match="must be numbers"):
        seldon_op(max_replicas="{{ params.max_replicas }}").validate()
    op = seldon_op(min_replicas="2", max_replicas="4", qps_target="10", gpu_count="1")
    op.validate()
    assert (op.min_replicas, op.max_replicas, op.qps_target, op.gpu_count) == (2, 4, 10, 1)
    assert isinstance(op.qps_target, int)  # renders as "10" in the HPA, like the seed's targetAverageValue
    op = seldon_op(qps_target="2.5")
    op.validate()
    assert op.qps_target == 2.5


def test_seldon_operator_needs_a_cluster_id_for_the_sls_project() -> None:
    op = seldon_op(sls_project=None, ack_conn_id="no_such_conn_for_this_test")
    with pytest.raises(AirflowFailException, match="pass sls_project"):
        op.resolve_metric_labels()
    assert seldon_op(sls_project=None, cluster_id="cabc").resolve_metric_labels()["sls.project"] == "k8s-log-cabc"
    given = {"sls.project": "p", "sls.logstore": "l"}
    assert seldon_op(metric_labels=given).resolve_metric_labels() == given


def test_manifest_is_a_templated_field_with_file_extensions() -> None:
    for cls in (CreateOssVolumeOperator, DeploySeldonOperator, CreateIngressOperator):
        assert "manifest" in cls.template_fields
        assert set(cls.template_ext) == {".yaml", ".yml", ".j2"}


def test_manifest_override_replaces_default_and_gets_the_namespace() -> None:
    op = CreateIngressOperator(
        task_id="ing",
        name="x",
        service_name="svc",
        namespace="serving",
        manifest="apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: mine\n",
    )
    (obj,) = op.manifest_objects([{"default": True}])
    assert obj["metadata"] == {"name": "mine", "namespace": "serving"}
    assert ingress_rule({"spec": {"rules": [{"host": "h", "http": {"paths": [{"path": "/p"}]}}]}}) == ("h", "/p")


def test_oss_secret_keys_for_access_keys_and_sts() -> None:
    ak = AlibabaCloudSettings(access_key_id="AK", access_key_secret="SK")
    assert oss_secret_data(ak) == {"akId": "AK", "akSecret": "SK"}
    sts = AlibabaCloudSettings(access_key_id="STS.AK", access_key_secret="SK", security_token="TOKEN")
    assert oss_secret_data(sts) == {"AccessKeyId": "STS.AK", "AccessKeySecret": "SK", "SecurityToken": "TOKEN"}
    assert "SK" not in repr(ak)


def test_default_oss_url_is_internal_endpoint_unless_overridden() -> None:
    assert default_oss_url(AlibabaCloudSettings(region_id="cn-hangzhou")) == "oss-cn-hangzhou-internal.aliyuncs.com"
    from elastic_inference.hooks.base import Endpoint

    local = AlibabaCloudSettings(oss_endpoint=Endpoint.parse("http://127.0.0.1:9000", "oss_endpoint"))
    assert default_oss_url(local) == "http://127.0.0.1:9000"


def test_volume_operator_renders_pv_with_secret_ref_only() -> None:
    op = CreateOssVolumeOperator(task_id="vol", bucket="models", pv_name="pv", pvc_name="pvc")
    pv, pvc = op.default_objects(AlibabaCloudSettings(region_id="cn-beijing"), "pv-oss")
    assert pv["spec"]["csi"]["nodePublishSecretRef"] == {"name": "pv-oss", "namespace": "default"}
    assert pv["spec"]["csi"]["volumeAttributes"]["url"] == "oss-cn-beijing-internal.aliyuncs.com"
    assert pvc["spec"]["volumeName"] == "pv" and pvc["metadata"]["namespace"] == "default"


def test_events_become_task_outcomes() -> None:
    assert raise_for_event({"status": "success", "x": 1}, "t") == {"status": "success", "x": 1}
    with pytest.raises(ResourceFailedError, match="pod p CrashLoopBackOff") as e:
        raise_for_event({"status": "error", "message": "pod p CrashLoopBackOff"}, "t")
    assert isinstance(e.value, AirflowFailException)  # no Airflow retries into the same wall
    with pytest.raises(ResourceWaitTimeout, match="timed out"):
        raise_for_event({"status": "timeout", "message": "still Pending"}, "t")


def test_sensors_build_their_triggers() -> None:
    s = PvcBoundSensor(task_id="s", name="pvc", pv_name="pv", timeout=30, deferrable=True)
    t = s.make_trigger(deadline=5.0)
    assert isinstance(t, PvcBoundTrigger) and t.pv_name == "pv" and t.deadline == 5.0
    g = SeldonDeploymentSensor(task_id="g", name="m", unschedulable_grace_seconds=12).make_trigger(1.0)
    assert g.unschedulable_grace_seconds == 12


def test_manifest_file_on_the_template_search_path_is_rendered_with_the_context(tmp_path) -> None:
    """``manifest="seldon.yaml.j2"`` is looked up on the DAG's template_searchpath and rendered by Airflow."""
    import pendulum
    from airflow.sdk import DAG

    (tmp_path / "seldon.yaml.j2").write_text(
        "apiVersion: machinelearning.seldon.io/v1\nkind: SeldonDeployment\n"
        "metadata:\n  name: {{ params.name }}-{{ params.version }}\nspec:\n  predictors: []\n"
    )
    with DAG(
        "manifest_override",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        template_searchpath=[str(tmp_path)],
        params={"name": "fashion", "version": 3},
    ):
        op = seldon_op(manifest="seldon.yaml.j2")
    op.render_template_fields({"params": {"name": "fashion", "version": 3}})
    (obj,) = op.manifest_objects([])
    assert obj["metadata"] == {"name": "fashion-3", "namespace": "default"}


@pytest.mark.parametrize("kind,count", [("Ingress", 0), ("Ingress", 2), ("SeldonDeployment", 0)])
def test_a_manifest_must_hold_exactly_one_primary_object(kind: str, count: int) -> None:
    """Checked before anything is applied (get_hook is never reached, so no cluster is needed)."""
    op = CreateIngressOperator(task_id="ingress", name="n", service_name="s")
    objs = [{"apiVersion": "v1", "kind": kind, "metadata": {"name": f"o{i}"}} for i in range(count)]
    objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}})
    with pytest.raises(AirflowFailException, match=f"exactly one {kind}, found {count}"):
        op.apply_with_primary(objs, kind)
