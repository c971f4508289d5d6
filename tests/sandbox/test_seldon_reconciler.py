"""The Seldon v1 reconciler against the sandbox's real Kubernetes store (in-process, no HTTP).

The objects it writes, the status transitions, a Failed state for an invalid graph, no writes while
nothing changes, and the HPA's replica count left alone.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ack_sandbox.context import Clock, SandboxContext
from ack_sandbox.controllers.base import DEPLOYMENTS, EVENTS, HPAS, SELDON_DEPLOYMENTS, SERVICES, Api, now_iso
from ack_sandbox.controllers.seldon import SeldonController
from ack_sandbox.k8s.kinds import SELDON_CRD
from ack_sandbox.k8s.store import Store
from tests.helpers import until_async
from tests.sandbox.workloads import EXPECTED_METRIC, seed_fashion, to_v2_format

DEP = "fashion-mnist-ecs-predictor-0-tfserving-proxy-fashion-mnist"


@contextlib.asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[tuple[SandboxContext, Api]]:
    """A store and a running Seldon operator on the test's own event loop."""
    ctx = SandboxContext(
        state_dir=tmp_path, time_scale=60, cluster_id="c9522b942edaf4ec98c2cbc351ec8ade6", clock=Clock(60)
    )
    store = Store(clock=ctx.clock)
    ctx.services["kubernetes"] = store
    await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await store.create(copy.deepcopy(SELDON_CRD))
    ctrl = SeldonController(ctx)
    await ctrl.start()
    try:
        yield ctx, Api(store)
    finally:
        await ctrl.stop()


async def status_of(api: Api, name: str = "fashion-mnist-ecs") -> dict:
    return (await api.get(SELDON_DEPLOYMENTS, "default", name)).get("status") or {}


async def make_deployment_available(api: Api) -> None:
    """What the deployment controller and kubelet report once the pod is ready."""
    dep = await api.get(DEPLOYMENTS, "default", DEP)
    dep["status"] = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastTransitionTime": now_iso(),
                "lastUpdateTime": now_iso(),
            }
        ],
    }
    await api.update_status(DEPLOYMENTS, dep)


@pytest.mark.parametrize("fmt", ["v2beta1", "v2"])
async def test_seed_sdep_creates_owned_objects_and_becomes_available(tmp_path: Path, fmt: str) -> None:
    async with started(tmp_path) as (_, api):
        await _test_seed_sdep_creates_owned_objects_and_becomes_available(api, fmt)


async def _test_seed_sdep_creates_owned_objects_and_becomes_available(api: Api, fmt: str) -> None:
    sdep = seed_fashion() if fmt == "v2beta1" else to_v2_format(seed_fashion())
    created = await api.create(SELDON_DEPLOYMENTS, sdep)
    uid = created["metadata"]["uid"]

    creating = await until_async("state Creating", lambda: _state(api, "Creating"))
    assert creating["address"]["url"].endswith("/api/v1.0/predictions")
    dep = await api.get(DEPLOYMENTS, "default", DEP)
    assert dep["spec"]["template"]["metadata"]["labels"]["seldon-app"] == "fashion-mnist-ecs-predictor"
    assert [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]][-1] == "seldon-container-engine"
    for kind, name in (
        (DEPLOYMENTS, DEP),
        (SERVICES, "fashion-mnist-ecs-predictor"),
        (SERVICES, "fashion-mnist-ecs-predictor-tfserving-proxy"),
        (HPAS, DEP),
    ):
        obj = await api.get(kind, "default", name)
        [ref] = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "SeldonDeployment",
            "fashion-mnist-ecs",
            uid,
            True,
        )
    hpa = await api.get(HPAS, "default", DEP)
    assert hpa["spec"]["metrics"] == [EXPECTED_METRIC]
    svc = await api.get(SERVICES, "default", "fashion-mnist-ecs-predictor")
    assert svc["spec"]["selector"] == {"seldon-app": "fashion-mnist-ecs-predictor"}

    await make_deployment_available(api)
    available = await until_async("state Available", lambda: _state(api, "Available"))
    assert available["deploymentStatus"] == {DEP: {"replicas": 1, "availableReplicas": 1}}
    ready = next(c for c in available["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    events = {e["reason"] for e in await api.list(EVENTS, "default")}
    assert {"CreateDeployment", "CreateService", "CreateHorizontalPodAutoscaler"} <= events


async def _state(api: Api, state: str) -> dict | None:
    status = await status_of(api)
    return status if status.get("state") == state else None


async def test_quiet_sdep_causes_no_writes_and_hpa_owns_replicas(tmp_path: Path) -> None:
    async with started(tmp_path) as (ctx, api):
        await _test_quiet_sdep_causes_no_writes_and_hpa_owns_replicas(ctx, api)


async def _test_quiet_sdep_causes_no_writes_and_hpa_owns_replicas(ctx: SandboxContext, api: Api) -> None:
    await api.create(SELDON_DEPLOYMENTS, seed_fashion())
    await until_async("state Creating", lambda: _state(api, "Creating"))
    await make_deployment_available(api)
    await until_async("state Available", lambda: _state(api, "Available"))
    # the HPA scales the Deployment: the operator must not set it back to the predictor's replicas
    await api.patch(DEPLOYMENTS, "default", DEP, {"spec": {"replicas": 4}})
    before = {
        name: (await api.get(kind, "default", name))["metadata"]["resourceVersion"]
        for kind, name in ((DEPLOYMENTS, DEP), (HPAS, DEP), (SERVICES, "fashion-mnist-ecs-predictor"))
    }
    ctrl_requeue = SeldonController(ctx)  # a second reconcile pass over the unchanged object
    await ctrl_requeue.reconcile(("default", "fashion-mnist-ecs"))
    after = {
        name: (await api.get(kind, "default", name))["metadata"]["resourceVersion"]
        for kind, name in ((DEPLOYMENTS, DEP), (HPAS, DEP), (SERVICES, "fashion-mnist-ecs-predictor"))
    }
    assert after == before
    assert (await api.get(DEPLOYMENTS, "default", DEP))["spec"]["replicas"] == 4


async def test_spec_change_updates_the_deployment_template(tmp_path: Path) -> None:
    async with started(tmp_path) as (_, api):
        await _test_spec_change_updates_the_deployment_template(api)


async def _test_spec_change_updates_the_deployment_template(api: Api) -> None:
    await api.create(SELDON_DEPLOYMENTS, seed_fashion())
    await until_async("state Creating", lambda: _state(api, "Creating"))
    sdep = await api.get(SELDON_DEPLOYMENTS, "default", "fashion-mnist-ecs")
    sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][1]["image"] = (
        "tensorflow/serving:2.4.0-gpu"
    )
    await api.update(SELDON_DEPLOYMENTS, sdep)

    async def updated() -> bool:
        dep = await api.get(DEPLOYMENTS, "default", DEP)
        return dep["spec"]["template"]["spec"]["containers"][1]["image"] == "tensorflow/serving:2.4.0-gpu"

    await until_async("the new image in the Deployment", updated)
    assert (await api.get(DEPLOYMENTS, "default", DEP))["metadata"]["generation"] == 2


async def test_invalid_graph_fails_with_description(tmp_path: Path) -> None:
    async with started(tmp_path) as (_, api):
        await _test_invalid_graph_fails_with_description(api)


async def _test_invalid_graph_fails_with_description(api: Api) -> None:
    bad = seed_fashion()
    bad["metadata"]["name"] = "broken"
    bad["spec"]["predictors"][0]["graph"]["name"] = "classifier"
    await api.create(SELDON_DEPLOYMENTS, bad)

    async def failed() -> dict | None:
        st = await status_of(api, "broken")
        return st if st.get("state") == "Failed" else None

    status = await until_async("state Failed", failed)
    assert 'graph: Invalid value: "classifier": Can\'t find container for Predictive Unit' in status["description"]
    assert await api.list(DEPLOYMENTS, "default") == []
    warnings = [e for e in await api.list(EVENTS, "default") if e["reason"] == "InternalError"]
    assert warnings and warnings[0]["type"] == "Warning"
