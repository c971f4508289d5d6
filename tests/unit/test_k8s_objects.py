"""Status interpretation and idempotency rules of the deploy operators, on plain Kubernetes dicts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from elastic_inference import k8s_objects as k

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------- paths


def test_paths_for_core_cluster_scoped_and_crd() -> None:
    assert (
        k.ResourceRef("v1", "PersistentVolumeClaim").object_path("ns", "c")
        == "/api/v1/namespaces/ns/persistentvolumeclaims/c"
    )
    assert k.ResourceRef("v1", "PersistentVolume").object_path("ignored", "pv") == "/api/v1/persistentvolumes/pv"
    assert (
        k.ResourceRef(k.SELDON_API_VERSION, "SeldonDeployment").collection_path("default")
        == "/apis/machinelearning.seldon.io/v1/namespaces/default/seldondeployments"
    )
    assert (
        k.ResourceRef("networking.k8s.io/v1", "Ingress").object_path("d", "i", "status")
        == "/apis/networking.k8s.io/v1/namespaces/d/ingresses/i/status"
    )
    with pytest.raises(ValueError, match="namespace is required"):
        k.ResourceRef("v1", "Secret").collection_path(None)


# --------------------------------------------------------------------------------------------- idempotency


def test_subset_ignores_server_defaults_and_normalised_quantities() -> None:
    desired = {"spec": {"replicas": 1, "target": 10, "labels": {"a": "b"}, "list": [{"x": 1}]}}
    actual = {
        "spec": {
            "replicas": 1,
            "target": "10",
            "labels": {"a": "b", "added": "by-server"},
            "list": [{"x": 1, "default": True}],
            "extra": 3,
        },
        "status": {"state": "Available"},
    }
    assert k.is_subset(desired, actual)
    assert not k.is_subset({"spec": {"replicas": 2}}, actual)
    assert not k.is_subset({"spec": {"list": [{"x": 1}, {"x": 2}]}}, actual)  # list length changed
    assert not k.is_subset({"spec": {"flag": True}}, {"spec": {"flag": "True"}})  # bools are not quantities


def test_desired_body_drops_status_and_server_owned_metadata() -> None:
    body = k.desired_body(
        {
            "apiVersion": "v1",
            "kind": "X",
            "status": {"a": 1},
            "metadata": {"name": "n", "uid": "u", "resourceVersion": "7", "labels": {"l": "v"}},
        }
    )
    assert body == {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "labels": {"l": "v"}}}


def test_secret_manifest_is_opaque_base64_data() -> None:
    s = k.secret_manifest("oss", "default", {"akId": "AK", "akSecret": "SK"})
    assert s["type"] == "Opaque" and "stringData" not in s
    assert base64.b64decode(s["data"]["akSecret"]) == b"SK"
    assert s["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "elastic-inference"


# ------------------------------------------------------------------------------------------------------ PVC


def pvc(phase: str | None, volume: str = "pv1") -> dict:
    return {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c", "namespace": "d", "uid": "u1"},
        "spec": {"volumeName": volume},
        "status": {"phase": phase} if phase else {},
    }


def pv(phase: str, claim: dict | None = None, message: str = "") -> dict:
    return {
        "kind": "PersistentVolume",
        "metadata": {"name": "pv1", "uid": "u2"},
        "spec": {"claimRef": claim} if claim else {},
        "status": {"phase": phase, "message": message},
    }


def test_pvc_bound_pending_lost() -> None:
    assert k.pvc_verdict(None).state == "pending"
    assert k.pvc_verdict(pvc("Pending"), pv("Available")).state == "pending"
    ok = k.pvc_verdict(pvc("Bound"), pv("Bound", {"namespace": "d", "name": "c", "uid": "u1"}))
    assert ok.state == "success" and ok.details["pv_uid"] == "u2" and ok.details["pv"] == "pv1"
    lost = k.pvc_verdict(pvc("Lost"))
    assert lost.state == "error" and "Lost" in lost.message and "pv1" in lost.message


def test_pv_rejected_variants_fail_fast() -> None:
    failed = k.pvc_verdict(pvc("Pending"), pv("Failed", message="csi driver not found"))
    assert failed.state == "error" and "csi driver not found" in failed.message
    released = k.pvc_verdict(pvc("Pending"), pv("Released", {"namespace": "d", "name": "c", "uid": "old"}))
    assert released.state == "error" and "Released" in released.message
    taken = k.pvc_verdict(pvc("Pending"), pv("Bound", {"namespace": "other", "name": "x"}))
    assert taken.state == "error" and "other/x" in taken.message
    mismatch = k.pvc_verdict(
        pvc("Pending"),
        pv("Available"),
        [
            {
                "type": "Warning",
                "reason": "VolumeMismatch",
                "message": "Cannot bind to requested volume: storageClass",
                "involvedObject": {"kind": "PersistentVolumeClaim", "name": "c"},
                "lastTimestamp": ts(1),
            }
        ],
    )
    assert mismatch.state == "error" and "VolumeMismatch" in mismatch.message
    other = k.pvc_verdict(
        pvc("Pending"),
        pv("Available"),
        [
            {
                "type": "Warning",
                "reason": "VolumeMismatch",
                "involvedObject": {"kind": "PersistentVolumeClaim", "name": "z"},
            }
        ],
    )
    assert other.state == "pending"


# --------------------------------------------------------------------------------------------------- Seldon


def sdep(state: str | None, description: str = "") -> dict:
    status = {"state": state, "description": description} if state else {}
    if state == "Available":
        status.update(replicas=1, address={"url": "http://x.d.svc.cluster.local:8000/api/v1.0/predictions"})
    return {"kind": "SeldonDeployment", "metadata": {"name": "m", "namespace": "d", "uid": "s1"}, "status": status}


def pod(
    name: str = "m-p-0-abc",
    waiting: str | None = None,
    message: str = "",
    scheduled: dict | None = None,
    deleting: bool = False,
    last_exit: int | None = None,
) -> dict:
    cs = {"name": "fashion-mnist", "restartCount": 3}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": message}}
    if last_exit is not None:
        cs["lastState"] = {"terminated": {"exitCode": last_exit, "reason": "Error"}}
    meta = {"name": name, "namespace": "d", "creationTimestamp": ts(600)}
    if deleting:
        meta["deletionTimestamp"] = ts(1)
    status = {"containerStatuses": [cs] if waiting or last_exit is not None else []}
    if scheduled:
        status["conditions"] = [{"type": "PodScheduled", **scheduled}]
    return {"kind": "Pod", "metadata": meta, "status": status}


@pytest.mark.parametrize(
    "reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"]
)
def test_fatal_container_reasons_name_pod_and_reason(reason: str) -> None:
    v = k.seldon_verdict(sdep("Creating"), [pod(waiting=reason, message='back-off pulling image "nope:1"')])
    assert v.state == "error"
    assert "pod m-p-0-abc" in v.message and reason in v.message and "fashion-mnist" in v.message
    assert v.details["pod"] == "m-p-0-abc"


def test_crashloop_reports_last_exit_code() -> None:
    v = k.seldon_verdict(sdep("Creating"), [pod(waiting="CrashLoopBackOff", last_exit=137)])
    assert "last exit code 137" in v.message and "restarts 3" in v.message


def test_failed_state_and_available() -> None:
    failed = k.seldon_verdict(sdep("Failed", "Deployment is no longer progressing and not available."), [])
    assert failed.state == "error" and "no longer progressing" in failed.message
    ok = k.seldon_verdict(sdep("Available"), [pod()])
    assert ok.state == "success" and ok.details["replicas"] == 1 and ok.details["address"].endswith("/predictions")
    assert k.seldon_verdict(sdep("Creating"), [pod()]).state == "pending"
    assert k.seldon_verdict(None, []).state == "pending"


def test_crashing_new_pod_fails_even_while_old_pods_keep_it_available() -> None:
    assert k.seldon_verdict(sdep("Available"), [pod("old"), pod("new", waiting="CrashLoopBackOff")]).state == "error"


def test_terminating_pods_are_ignored() -> None:
    assert k.seldon_verdict(sdep("Available"), [pod(waiting="CrashLoopBackOff", deleting=True)]).state == "success"


UNSCHED = {
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    "lastTransitionTime": ts(30),
}


def scaler_event(reason: str, seconds_ago: float, message: str = "") -> dict:
    return {
        "reason": reason,
        "type": "Normal",
        "message": message,
        "lastTimestamp": ts(seconds_ago),
        "involvedObject": {"kind": "Pod", "name": "m-p-0-abc"},
    }


def test_unschedulable_waits_while_scale_up_may_happen() -> None:
    p = pod(scheduled=UNSCHED)
    assert k.seldon_verdict(sdep("Creating"), [p], [], now=NOW).state == "pending"
    assert k.seldon_verdict(sdep("Creating"), [p], [scaler_event("TriggeredScaleUp", 5)], now=NOW).state == "pending"


def test_unschedulable_fails_on_not_trigger_scale_up() -> None:
    ev = scaler_event("NotTriggerScaleUp", 2, "pod didn't trigger scale-up: 1 max node group size reached")
    v = k.seldon_verdict(sdep("Creating"), [pod(scheduled=UNSCHED)], [ev], now=NOW)
    assert v.state == "error" and "didn't trigger scale-up" in v.message and "Insufficient nvidia.com/gpu" in v.message
    # a later TriggeredScaleUp supersedes it
    later = scaler_event("TriggeredScaleUp", 1)
    assert k.seldon_verdict(sdep("Creating"), [pod(scheduled=UNSCHED)], [ev, later], now=NOW).state == "pending"


def test_unschedulable_grace_period() -> None:
    p = pod(scheduled=UNSCHED)  # unschedulable for 30 s
    assert k.seldon_verdict(sdep("Creating"), [p], [], now=NOW, unschedulable_grace_seconds=60).state == "pending"
    v = k.seldon_verdict(sdep("Creating"), [p], [], now=NOW, unschedulable_grace_seconds=20)
    assert v.state == "error" and "more than 20s" in v.message
    # a scale-up triggered 5 s ago restarts the clock
    fresh = [scaler_event("TriggeredScaleUp", 5)]
    assert k.seldon_verdict(sdep("Creating"), [p], fresh, now=NOW, unschedulable_grace_seconds=20).state == "pending"


# --------------------------------------------------------------------------------------------------- Ingress


def test_ingress_address_and_predict_url() -> None:
    ing = {"kind": "Ingress", "metadata": {"name": "i", "namespace": "d", "uid": "i1"}, "status": {}}
    assert k.ingress_verdict(ing).state == "pending"
    ing["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.5", "ports": [{"port": 8080, "protocol": "TCP"}]}]}}
    v = k.ingress_verdict(ing)
    assert v.state == "success" and (v.details["address"], v.details["port"]) == ("127.0.0.5", 8080)
    assert k.predict_url("127.0.0.5", 8080) == "http://127.0.0.5:8080/api/v1.0/predictions"
    assert k.predict_url("101.200.1.2", 80) == "http://101.200.1.2/api/v1.0/predictions"
    assert k.predict_url("lb.example.com", None, "/fashion/") == "http://lb.example.com/fashion/api/v1.0/predictions"
    assert k.predict_url("::1", 8080) == "http://[::1]:8080/api/v1.0/predictions"
    ing["status"] = {"loadBalancer": {"ingress": [{"hostname": "x.alicontainer.com"}]}}
    assert k.ingress_verdict(ing).details == {
        "address": "x.alicontainer.com",
        "port": None,
        "ingress": "i",
        "ingress_uid": "i1",
    }


def test_pv_that_can_never_satisfy_the_claim_fails_with_the_field() -> None:
    claim = pvc("Pending")
    claim["spec"].update(
        accessModes=["ReadOnlyMany"],
        storageClassName="",
        resources={"requests": {"storage": "10Gi"}},
        selector={"matchLabels": {"alicloud-pvname": "pv1"}},
    )
    small = pv("Available")
    small["spec"].update(accessModes=["ReadOnlyMany"], capacity={"storage": "5Gi"})
    small["metadata"]["labels"] = {"alicloud-pvname": "pv1"}
    v = k.pvc_verdict(claim, small)
    assert v.state == "error" and "capacity 5Gi is less than the claim's request 10Gi" in v.message
    small["spec"]["capacity"] = {"storage": "10240Mi"}
    assert k.pvc_verdict(claim, small).state == "pending"
    small["spec"]["accessModes"] = ["ReadWriteOnce"]
    assert "lack the claim's ['ReadOnlyMany']" in k.pvc_verdict(claim, small).message
    small["spec"]["accessModes"] = ["ReadOnlyMany"]
    small["spec"]["storageClassName"] = "alicloud-disk"
    assert "storageClassName 'alicloud-disk'" in k.pvc_verdict(claim, small).message


def test_missing_pv_means_the_claim_never_binds() -> None:
    v = k.pvc_verdict(pvc("Pending"), None, pv_name="pv1")
    assert v.state == "error" and "pv1 does not exist" in v.message
    assert k.pvc_verdict(pvc("Pending"), None).state == "pending"  # no PV named: nothing to judge


@pytest.mark.parametrize(
    ("text", "value"),
    [("5Gi", 5 * 2**30), ("500m", 0.5), ("1k", 1000.0), ("2", 2.0), ("1e3", 1000.0), ("1.5Mi", 1.5 * 2**20)],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert k.parse_quantity(text) == value


def test_bound_claim_whose_named_pv_is_not_seen_waits_for_the_pv_controller() -> None:
    # The PV's watch may lag the claim's after a re-list; the PV controller writes Lost if the PV is really gone.
    v = k.pvc_verdict(pvc("Bound"), None, pv_name="pv1")
    assert v.state == "pending" and "waiting to see PersistentVolume" in v.message
    assert k.pvc_verdict(pvc("Lost"), None, pv_name="pv1").state == "error"


def test_failed_state_names_the_pods_that_kept_it_from_becoming_available() -> None:
    # A pod waiting for a node the autoscaler may still add is still starting: Failed (the progress deadline)
    # is not terminal then (issue 12: scale-from-zero GPU nodes take longer than 600 s) ...
    v = k.seldon_verdict(
        sdep("Failed", "Deployment is no longer progressing and not available."), [pod(scheduled=UNSCHED)], [], now=NOW
    )
    assert v.state == "pending" and v.details["starting_pods"] == ["m-p-0-abc"]
    assert "no longer progressing" in v.message
    assert "pod m-p-0-abc Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in v.message
    # ... but once no pool can grow for it, the wait fails with the pod's cause.
    ev = scaler_event("NotTriggerScaleUp", 5)
    v = k.seldon_verdict(
        sdep("Failed", "Deployment is no longer progressing and not available."),
        [pod(scheduled=UNSCHED)],
        [ev],
        now=NOW,
    )
    assert v.state == "error" and "Unschedulable" in v.message


def test_failed_while_pods_start_is_pending_until_the_waits_deadline() -> None:
    failed = sdep("Failed", "Deployment is no longer progressing and not available.")
    creating = pod(waiting="ContainerCreating")
    assert k.seldon_verdict(failed, [creating]).state == "pending"
    ready = pod()
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert k.seldon_verdict(failed, [ready]).state == "pending"  # Seldon's status lags behind the pods
    # no pod at all, a failing pod, or another cause: terminal
    assert k.seldon_verdict(failed, []).state == "error"
    assert k.seldon_verdict(sdep("Failed", "invalid graph: no model unit"), [creating]).state == "error"
    assert k.seldon_verdict(failed, [pod(waiting="ImagePullBackOff")]).state == "error"
