"""OSS volume operator (Secret + PV + PVC) and the PVC wait, against the sandbox Kubernetes API.

The tests drive the cluster-side state changes themselves (PVC/PV status as the PV controller writes it),
through the real ``kubernetes`` client. Deferral is exercised as Airflow does it: ``execute`` raises
``TaskDeferred``, the trigger is rebuilt from ``serialize()`` and run to its one event, which is fed to the
callback. The fixtures are in ``conftest.py``, the helpers in ``support.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import yaml

from elastic_inference.hooks.kubernetes import ResourceFailedError
from elastic_inference.sensors.kubernetes import PvcBoundSensor
from tests.helpers import airflow_conn, until
from tests.integration.support import read_or_none, run_deferred, uid, volume_op

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------------ helpers


def in_background(fn: Callable[[], None], delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


@pytest.fixture
def everything_logged(capfd) -> Iterator[Callable[[], str]]:
    """All log records at DEBUG (root handler; the kubernetes client logs bodies there) plus stdout/stderr
    (Airflow's task logger prints there). Returns a function giving the text so far."""
    # On the named loggers, not the root: Airflow reconfigures the root's handlers when a task first
    # reads a connection.
    handler = _Collect()
    loggers = [
        logging.getLogger(n) for n in ("urllib3", "kubernetes", "kubernetes_asyncio", "elastic_inference", "airflow")
    ]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)

    def text() -> str:
        out, err = capfd.readouterr()
        new = "\n".join([*handler.lines, out, err])
        handler.lines.clear()
        return new

    try:
        yield text
    finally:
        for lg, level in zip(loggers, old_levels):
            lg.removeHandler(handler)
            lg.setLevel(level)


# ---------------------------------------------------------------------------------------------- cluster side


# ------------------------------------------------------------------------------------------------- tests


def test_volume_created_bound_and_unchanged_on_rerun(k8s_env, kube, namespace, pvs, everything_logged) -> None:
    """The sandbox's PV controller binds the claim; a re-run finds all three objects as they are."""
    from kubernetes import client

    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    first = volume_op(namespace, name, deferrable=False).execute({})
    logged = everything_logged()  # what the task logged (the test's own reads below are not the task's)
    assert first["phase"] == "Bound"
    assert first["actions"] == {"secret": "created", "pv": "created", "pvc": "created"}
    assert all(first["uids"].values())

    core = client.CoreV1Api(kube)
    secret = core.read_namespaced_secret(first["secret"], namespace)
    assert secret.type == "Opaque"
    # The volume's own read-only key (connection alibaba_oss_volume), never the deploying account's (issue 12).
    reader = airflow_conn(k8s_env, "alibaba_oss_volume")
    assert base64.b64decode(secret.data["akId"]).decode() == reader["login"] != k8s_env["access_key_id"]
    assert base64.b64decode(secret.data["akSecret"]).decode() == reader["password"] != k8s_env["access_key_secret"]
    pv = core.read_persistent_volume(first["pv"])
    assert pv.spec.csi.driver == "ossplugin.csi.alibabacloud.com"
    assert pv.spec.csi.node_publish_secret_ref.name == first["secret"]
    assert pv.spec.csi.node_publish_secret_ref.namespace == namespace
    assert not {"akId", "akSecret"} & set(pv.spec.csi.volume_attributes)
    assert pv.spec.csi.volume_attributes["url"] == k8s_env["oss"]  # the OSS stand-in, from the connection
    assert pv.spec.claim_ref.name == first["pvc"]  # bound by the sandbox's PV controller

    everything_logged()  # drop the test's own reads
    second = run_deferred(volume_op(namespace, name, deferrable=True))
    logged += everything_logged()
    assert second["actions"] == {"secret": "unchanged", "pv": "unchanged", "pvc": "unchanged"}
    assert second["uids"] == first["uids"]
    assert second["resource_versions"] == {
        "secret": first["resource_versions"]["secret"],
        "pv": core.read_persistent_volume(first["pv"]).metadata.resource_version,
        "pvc": core.read_namespaced_persistent_volume_claim(first["pvc"], namespace).metadata.resource_version,
    }
    secret_b64 = base64.b64encode(k8s_env["access_key_secret"].encode()).decode()
    assert "Connection Retrieved 'alibaba_ack_default'" in logged  # the capture did see the task's logging
    for text in (logged, json.dumps(first), json.dumps(second)):
        assert k8s_env["access_key_secret"] not in text and secret_b64 not in text
        assert reader["password"] not in text


def test_claim_whose_pv_is_gone_fails_as_lost(kube, namespace, pvs) -> None:
    from kubernetes import client

    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    volume_op(namespace, name).execute({})
    core = client.CoreV1Api(kube)
    core.delete_persistent_volume(f"{name}-pv")
    until("PV deletion", lambda: read_or_none(lambda: core.read_persistent_volume(f"{name}-pv")) is None, timeout=5.0)
    sensor = PvcBoundSensor(
        task_id="pvc_bound", name=f"{name}-pvc", pv_name=f"{name}-pv", namespace=namespace, timeout=60, deferrable=True
    )
    # Lost (what the PV controller writes for a bound claim) or, once it resets the claim, Pending on a PV that
    # does not exist: either way the wait ends at once, naming the PV.
    with pytest.raises(ResourceFailedError, match=rf"PersistentVolume {name}-pv (no longer exists|does not exist)"):
        run_deferred(sensor)


def test_claim_that_can_never_bind_fails_fast(namespace, pvs) -> None:
    """A user manifest whose claim asks more than the PV offers: the PV controller never binds it."""
    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    op = volume_op(namespace, name, deferrable=True)
    pv, pvc = op.default_objects(op._settings(), f"{name}-pv-oss")
    pvc["spec"]["resources"]["requests"]["storage"] = "10Gi"
    op.manifest = yaml.safe_dump_all([pv, pvc])
    with pytest.raises(ResourceFailedError) as err:
        run_deferred(op)
    assert "capacity 5Gi is less than the claim's request 10Gi" in str(err.value)
    assert "timed out" not in str(err.value)


def test_pv_of_another_claim_fails_fast(namespace, pvs) -> None:
    """Two claims naming one PV: the second can never bind and says which claim holds the PV."""
    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    volume_op(namespace, name).execute({})
    with pytest.raises(ResourceFailedError, match=rf"bound to another claim {namespace}/{name}-pvc"):
        run_deferred(volume_op(namespace, name, pvc_name=f"{name}-second", deferrable=True))


def test_pvc_sensor_poke_mode(namespace, pvs) -> None:
    """Poke mode uses the same verdicts: done when Bound, an immediate failure when the claim can never bind."""
    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    volume_op(namespace, name).execute({})
    sensor = PvcBoundSensor(
        task_id="pvc_bound",
        name=f"{name}-pvc",
        pv_name=f"{name}-pv",
        namespace=namespace,
        timeout=30,
        poke_interval=0.1,
        deferrable=False,
    )
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["pv"] == f"{name}-pv" and done.xcom_value["phase"] == "Bound"

    volume_op(namespace, name, pvc_name=f"{name}-second", wait_for_completion=False).execute({})
    second = PvcBoundSensor(
        task_id="pvc_bound",
        name=f"{name}-second",
        pv_name=f"{name}-pv",
        namespace=namespace,
        timeout=30,
        deferrable=False,
    )
    with pytest.raises(ResourceFailedError, match=rf"bound to another claim {namespace}/{name}-pvc"):
        second.poke({})


def test_secret_stays_out_of_debug_logs(k8s_env, namespace, everything_logged) -> None:
    """With the kubernetes client's loggers at DEBUG (it then logs every response body it parses) the hook's
    Secret writes and reads still never log the credentials. (Its ``Configuration.debug`` wire dump is a
    different, explicit switch: it prints raw HTTP, as any client's would.)"""
    from elastic_inference.hooks.kubernetes import KubeHook
    from elastic_inference.k8s_objects import ResourceRef, secret_manifest

    hook = KubeHook()
    hook.api_client  # noqa: B018 - building it resets the client's loggers to WARNING; raise them after
    raised = [logging.getLogger(name) for name in ("kubernetes.client", "urllib3")]
    levels = [lg.level for lg in raised]
    try:
        for lg in raised:
            lg.setLevel(logging.DEBUG)
        for _ in range(2):  # create, then the unchanged re-run (get + compare)
            hook.apply(
                secret_manifest(
                    "oss-debug", namespace, {"akId": k8s_env["access_key_id"], "akSecret": k8s_env["access_key_secret"]}
                )
            )
        assert hook.get(ResourceRef("v1", "Secret"), namespace, "oss-debug")["data"]["akSecret"]
    finally:
        for lg, level in zip(raised, levels):
            lg.setLevel(level)
    logged = everything_logged()
    assert f"/api/v1/namespaces/{namespace}/secrets" in logged  # the DEBUG request lines were captured
    secret_b64 = base64.b64encode(k8s_env["access_key_secret"].encode()).decode()
    assert k8s_env["access_key_secret"] not in logged and secret_b64 not in logged
