"""SeldonDeployment operator and its fail-fast wait against the sandbox: the real API server, Seldon
reconciler, scheduler, node autoscaler and kubelet produce the failures (state Failed for a spec Seldon
cannot build, NotTriggerScaleUp for a pool that cannot grow, ImagePullBackOff for an image nobody can
pull), and each test checks the task fails naming the pod and the reason - an error event, not a timeout.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from elastic_inference.hooks.kubernetes import ResourceFailedError
from elastic_inference.operators.seldon import DeploySeldonOperator
from elastic_inference.sensors.kubernetes import SeldonDeploymentSensor
from tests.integration.support import admin_ok, run_deferred, seed_pool, uid, volume_op

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"


def seldon_op(namespace: str, name: str, **kw: Any) -> DeploySeldonOperator:
    kw.setdefault("node_selector", {"seldon": "fashion-mnist"})
    kw.setdefault("pvc_name", "oss-pvc")
    return DeploySeldonOperator(
        task_id="seldon",
        name=name,
        namespace=namespace,
        model_name="fashion-mnist",
        timeout=kw.pop("timeout", 60),
        **kw,
    )


def stored_sdep(kube: Any, namespace: str, name: str) -> dict:
    from kubernetes import client

    return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


@pytest.fixture
def model_volume(k8s_env, namespace, pvs) -> str:
    """A bound OSS volume (the bucket exists in the OSS stand-in) for pods to mount; returns the claim name."""
    from elastic_inference.hooks.oss import OssHook

    oss = OssHook()
    if not oss.bucket_exists("models"):
        oss.create_bucket("models")
    name = f"vol{uid()}"
    pvs.append(f"{name}-pv")
    return volume_op(namespace, name).execute({})["pvc"]


# ------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
def test_create_unchanged_patched_never_a_second_object(kube, namespace, fmt) -> None:
    from kubernetes import client

    name = f"s{uid()}"
    kw = dict(hpa_metric_format=fmt, sls_project="k8s-log-c1", wait_for_completion=False)
    first = seldon_op(namespace, name, **kw).execute({})
    assert first["action"] == "created"
    assert first["service"] == f"{name}-predictor"
    assert first["deployment"] == first["hpa"] == f"{name}-predictor-0-tfserving-proxy-fashion-mnist"
    assert first["route"] == f"{namespace}-{name}-predictor-8000"
    hpa = stored_sdep(kube, namespace, name)["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"]
    if fmt == "v2":
        assert hpa["metricsv2"][0]["external"]["target"]["averageValue"] == "10"
    else:
        assert hpa["metrics"][0]["external"]["targetAverageValue"] == "10"

    second = seldon_op(namespace, name, **kw).execute({})
    assert second["action"] == "unchanged" and second["uid"] == first["uid"]
    assert second["resource_version"] == stored_sdep(kube, namespace, name)["metadata"]["resourceVersion"]

    third = seldon_op(namespace, name, **kw, model_version=2, max_replicas=6).execute({})
    assert third["action"] == "patched" and third["uid"] == first["uid"]
    assert (
        stored_sdep(kube, namespace, name)["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"]["maxReplicas"] == 6
    )
    listed = client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [o["metadata"]["name"] for o in listed["items"]] == [name]


def test_spec_seldon_cannot_build_fails_with_state_failed(namespace) -> None:
    """A user manifest whose graph names no container: Seldon answers state Failed with the reason."""
    name = f"s{uid()}"
    op = seldon_op(namespace, name, deferrable=True, sls_project="p")
    *_, sdep = __import__("elastic_inference.manifests", fromlist=["render"]).render(
        "seldon_deployment.yaml.j2", op.template_variables()
    )
    sdep["spec"]["predictors"][0]["graph"]["name"] = "no-such-container"
    op.manifest = yaml.safe_dump(sdep)
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    assert f"SeldonDeployment {namespace}/{name} state Failed:" in str(err.value)
    assert "timed out" not in str(err.value)


def test_pool_that_cannot_grow_fails_naming_the_pod(namespace, model_volume) -> None:
    """nodeSelector onto a pool nobody can scale up. The autoscaler's NotTriggerScaleUp ends the wait; should
    it stay silent, Seldon's progress deadline (state Failed) does, and the message still names the pod."""
    name = f"s{uid()}"
    op = seldon_op(
        namespace,
        name,
        deferrable=True,
        sls_project="p",
        node_selector={"seldon": f"no-pool-{uid()}"},
        pvc_name=model_volume,
    )
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"pod {name}-predictor-0-tfserving-proxy-fashion-mnist-" in text and "Unschedulable" in text
    assert "didn't trigger scale-up" in text or "state Failed" in text


def test_sensor_with_an_unschedulable_grace_period(namespace, model_volume) -> None:
    """With unschedulable_grace_seconds the wait ends that long after the pod became Unschedulable, whatever
    the autoscaler says (or earlier, if it says it will not scale up)."""
    name = f"s{uid()}"
    seldon_op(
        namespace,
        name,
        sls_project="p",
        wait_for_completion=False,
        pvc_name=model_volume,
        node_selector={"seldon": f"no-pool-{uid()}"},
    ).execute({})
    sensor = SeldonDeploymentSensor(
        task_id="sdep", name=name, namespace=namespace, timeout=60, deferrable=True, unschedulable_grace_seconds=2
    )
    with pytest.raises(ResourceFailedError, match=r"Unschedulable (for more than 2s|\(.*\) and pod didn't trigger)"):
        run_deferred(sensor)


def test_bad_image_fails_fast_naming_pod_container_and_reason(namespace, model_volume) -> None:
    name = f"s{uid()}"
    image = "registry.example.com/no-such/image:9"
    op = seldon_op(
        namespace,
        name,
        deferrable=True,
        sls_project="p",
        gpu_count=0,
        node_selector=None,
        pvc_name=model_volume,
        serving_image=image,
    )
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"pod {name}-predictor-0-tfserving-proxy-fashion-mnist-" in text
    assert "container fashion-mnist: " in text and ("ImagePullBackOff" in text or "ErrImagePull" in text)
    assert image in text


def test_crashing_model_server_fails_fast_with_exit_code(namespace, model_volume) -> None:
    """A model version TF Serving cannot load aborts the server (exit 134): CrashLoopBackOff ends the wait."""
    import os

    from elastic_inference.hooks.oss import OssHook

    model = f"crash{uid()}"
    OssHook().put_object("models", f"models/{model}/1/saved_model.pb", os.urandom(256))
    name = f"s{uid()}"
    op = seldon_op(
        namespace,
        name,
        deferrable=True,
        sls_project="p",
        gpu_count=0,
        node_selector=None,
        pvc_name=model_volume,
        timeout=120,
    )
    op.model_name = model
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    text = str(err.value)
    assert f"pod {name}-predictor-0-tfserving-proxy-{model}-" in text
    # The model server aborts on the unloadable version. (Pod IPs are loopback addresses; when another sandbox
    # on the machine holds this pod's IP, the proxy is the one that crash-loops - still this pod, still fatal.)
    assert f"container {model}: CrashLoopBackOff" in text or "container tfserving-proxy: CrashLoopBackOff" in text
    assert "last exit code" in text


ECHO_SDEP = """\
apiVersion: machinelearning.seldon.io/v1
kind: SeldonDeployment
metadata:
  name: {{ params.sdep }}
spec:
  predictors:
  - name: default
    replicas: 1
    componentSpecs:
    - spec:
        containers:
        - name: echo
          image: hashicorp/http-echo
          args: ["-listen=:9000", '-text={"data":{"names":["t:0"],"ndarray":[[0.9]]}}']
          resources: {requests: {cpu: 50m}}
    graph: {name: echo, type: MODEL, endpoint: {type: REST}, children: []}
"""


def test_user_manifest_becomes_available_and_serves_through_the_ingress(namespace) -> None:
    """A user's templated manifest (rendered by Airflow with the task context) replaces the default one; the
    real reconciler, scheduler and kubelet make it Available; the ingress operator's predict URL answers."""
    import json
    import time
    import urllib.error
    import urllib.request

    from elastic_inference.operators.ingress import CreateIngressOperator

    name = f"e{uid()}"
    op = DeploySeldonOperator(
        task_id="seldon",
        name="ignored",
        model_name="unused",
        pvc_name="unused",
        namespace=namespace,
        manifest=ECHO_SDEP,
        deferrable=True,
        sls_project="p",
        timeout=120,
    )
    op.render_template_fields({"params": {"sdep": name}})
    deployed = run_deferred(op)
    assert (deployed["name"], deployed["state"], deployed["action"]) == (name, "Available", "created")
    assert deployed["service"] == f"{name}-default" and deployed["deployment"] == f"{name}-default-0-echo"
    assert deployed["address"].endswith("/api/v1.0/predictions")

    # A host of its own: other tests' ingresses in this shared sandbox also route "/" (first one wins, as nginx).
    ingress = run_deferred(
        CreateIngressOperator(
            task_id="ingress",
            name=name,
            service_name=deployed["service"],
            host=f"{name}.test.local",
            namespace=namespace,
            deferrable=True,
            timeout=60,
        )
    )
    assert ingress["host_header"] == f"{name}.test.local"
    body = json.dumps({"data": {"ndarray": [[1.0, 2.0]]}}).encode()
    answer, last_error = None, ""
    for _ in range(40):  # the proxy may answer 503 until it has the new Service's endpoints, as nginx does
        req = urllib.request.Request(
            ingress["predict_url"],
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Host": ingress["host_header"]},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                answer = json.loads(resp.read())
                break
        except urllib.error.HTTPError as e:
            last_error = f"{e.code} {e.read()[:500]!r}"
            if e.code != 503:
                raise AssertionError(f"the ready deployment answered {last_error} through the ingress") from e
            time.sleep(0.25)
    assert answer is not None, f"the predict URL kept answering {last_error}"
    assert answer["data"]["ndarray"] == [[0.9]]


def test_pool_out_of_stock_fails_fast(k8s_env, namespace, model_volume) -> None:
    """An elastic GPU pool whose instance type is out of stock: the autoscaler's scale-up fails, the pool is
    backed off, and the wait ends on its NotTriggerScaleUp naming the pod - not on the timeout."""
    from elastic_inference.hooks.ack import AckHook
    from elastic_inference.operators.node_pool import AckNodePoolOperator

    label = f"pool-{uid()}"
    instance_type = "ecs.gn6i-c8g1.2xlarge"
    hook = AckHook()
    vswitches = hook.describe_cluster()["vswitch_ids"][:2]
    pool = AckNodePoolOperator(
        task_id="np",
        deferrable=False,
        poll_interval=0.2,
        wait_timeout=60,
        node_pool=seed_pool(
            label, vswitches, min_instances=0, max_instances=3, instance_types=[instance_type], labels={"seldon": label}
        ),
    ).execute({})
    admin_ok(k8s_env, "cs", "POST", "/_sandbox/faults", {"no_stock": [instance_type]})
    try:
        name = f"s{uid()}"
        op = seldon_op(
            namespace,
            name,
            deferrable=True,
            sls_project="p",
            node_selector={"seldon": label},
            pvc_name=model_volume,
            timeout=120,
        )
        with pytest.raises(ResourceFailedError) as err:
            run_deferred(op)
    finally:
        admin_ok(k8s_env, "cs", "DELETE", "/_sandbox/faults")
        hook.delete_node_pool(pool["nodepool_id"], force=True)
    text = str(err.value)
    assert f"pod {name}-predictor-0-tfserving-proxy-fashion-mnist-" in text and "Unschedulable" in text
    assert "didn't trigger scale-up" in text and "backoff" in text
