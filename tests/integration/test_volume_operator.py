"""OSS volume operator (Secret + PV + PVC) and the PVC wait, against the sandbox Kubernetes API.

The tests drive the cluster-side state changes themselves (PVC/PV status as the PV controller writes it),
through the real ``kubernetes`` client. Deferral is exercised as Airflow does it: ``execute`` raises
``TaskDeferred``, the trigger is rebuilt from ``serialize()`` and run to its one event, which is fed to the
callback. Helpers here are shared by the Seldon and ingress tests.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import TaskDeferred

from elastic_inference.hooks.kubernetes import ResourceFailedError
from elastic_inference.operators.volume import CreateOssVolumeOperator
from elastic_inference.sensors.kubernetes import PvcBoundSensor

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------------ helpers


def _env_conns(sandbox: dict) -> dict[str, str]:
    out = {}
    for line in (sandbox["state_dir"] / "airflow.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("AIRFLOW_CONN_"):
            out[key] = shlex.split(value)[0]
    return out


@pytest.fixture(scope="module")
def k8s_env(sandbox) -> Iterator[dict]:
    """The sandbox's AIRFLOW_CONN_* (kubernetes_default, alibaba_ack_default) set for this module."""
    conns = _env_conns(sandbox)
    if "AIRFLOW_CONN_KUBERNETES_DEFAULT" not in conns:
        pytest.fail("the sandbox wrote no AIRFLOW_CONN_KUBERNETES_DEFAULT")
    saved = {k: os.environ.get(k) for k in conns}
    os.environ.update(conns)
    try:
        yield sandbox
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def kube(k8s_env) -> Iterator[Any]:
    """A plain ``kubernetes`` ApiClient on the sandbox kubeconfig: the test's hand on the cluster."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(k8s_env["state_dir"] / "kubeconfig"))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{secrets.token_hex(4)}"
    client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(kube).delete_namespace(name)


def uid() -> str:
    return secrets.token_hex(3)


def run_deferred(op: Any, context: dict | None = None, during: Callable[[], None] | None = None) -> Any:
    """execute → TaskDeferred → rebuild trigger from serialize() → run to its event (``during`` runs alongside,
    in a thread, once the trigger is started) → the callback's return value."""
    context = context or {}
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    deferred = info.value
    classpath, kwargs = deferred.trigger.serialize()
    module, _, cls = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), cls)(**json.loads(json.dumps(kwargs)))

    async def first_event() -> dict:
        events = []
        gen = trigger.run()
        task = asyncio.ensure_future(gen.__anext__())
        if during is not None:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(during)
        events.append(await task)
        with pytest.raises(StopAsyncIteration):  # exactly one event
            await gen.__anext__()
        await trigger.cleanup()
        return events[0].payload

    event = asyncio.run(first_event())
    return getattr(op, deferred.method_name)(context, event, **(deferred.kwargs or {}))


def in_background(fn: Callable[[], None], delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(fn: Callable[[], Any], what: str, attempts: int = 100, interval: float = 0.05) -> Any:
    for _ in range(attempts):
        if (value := fn()) is not None:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")


def read_or_none(fn: Callable[[], Any]) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return fn()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


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
    loggers = [logging.getLogger(n) for n in ("urllib3", "kubernetes", "kubernetes_asyncio", "elastic_inference",
                                               "airflow")]
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


def volume_op(namespace: str, name: str, pvc_name: str | None = None, **kw: Any) -> CreateOssVolumeOperator:
    return CreateOssVolumeOperator(task_id="volume", bucket="models", path="/models", pv_name=f"{name}-pv",
                                   pvc_name=pvc_name or f"{name}-pvc", namespace=namespace,
                                   timeout=kw.pop("timeout", 60), **kw)


@pytest.fixture
def pvs(kube) -> Iterator[list[str]]:
    """PV names a test creates; PVs are cluster-scoped, so they are deleted here, not with the namespace."""
    from kubernetes import client

    names: list[str] = []
    yield names
    for name in names:
        read_or_none(lambda n=name: client.CoreV1Api(kube).delete_persistent_volume(n))


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
    assert base64.b64decode(secret.data["akId"]).decode() == k8s_env["access_key_id"]
    assert base64.b64decode(secret.data["akSecret"]).decode() == k8s_env["access_key_secret"]
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


def test_claim_whose_pv_is_gone_fails_as_lost(kube, namespace, pvs) -> None:
    from kubernetes import client

    name = f"v{uid()}"
    pvs.append(f"{name}-pv")
    volume_op(namespace, name).execute({})
    core = client.CoreV1Api(kube)
    core.delete_persistent_volume(f"{name}-pv")
    wait_for(lambda: read_or_none(lambda: core.read_persistent_volume(f"{name}-pv")) is None or None, "PV deletion")
    sensor = PvcBoundSensor(task_id="pvc_bound", name=f"{name}-pvc", pv_name=f"{name}-pv", namespace=namespace,
                            timeout=60, deferrable=True)
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
    sensor = PvcBoundSensor(task_id="pvc_bound", name=f"{name}-pvc", pv_name=f"{name}-pv", namespace=namespace,
                            timeout=30, poke_interval=0.1, deferrable=False)
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["pv"] == f"{name}-pv" and done.xcom_value["phase"] == "Bound"

    volume_op(namespace, name, pvc_name=f"{name}-second", wait_for_completion=False).execute({})
    second = PvcBoundSensor(task_id="pvc_bound", name=f"{name}-second", pv_name=f"{name}-pv", namespace=namespace,
                            timeout=30, deferrable=False)
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
            hook.apply(secret_manifest("oss-debug", namespace, {"akId": k8s_env["access_key_id"],
                                                                "akSecret": k8s_env["access_key_secret"]}))
        assert hook.get(ResourceRef("v1", "Secret"), namespace, "oss-debug")["data"]["akSecret"]
    finally:
        for lg, level in zip(raised, levels):
            lg.setLevel(level)
    logged = everything_logged()
    assert f"/api/v1/namespaces/{namespace}/secrets" in logged  # the DEBUG request lines were captured
    secret_b64 = base64.b64encode(k8s_env["access_key_secret"].encode()).decode()
    assert k8s_env["access_key_secret"] not in logged and secret_b64 not in logged
