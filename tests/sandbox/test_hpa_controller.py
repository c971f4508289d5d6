"""The HPA controller against the sandbox's real store: scale out under a synthetic request rate on the
route, hold during the downscale stabilisation window, scale back in; status, conditions and events.

The route counters are fed directly (what the ingress proxy records per request); a tiny stand-in for
the Deployment controller mirrors ``spec.replicas`` into ``status.replicas`` (what the HPA reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ack_sandbox.context import Clock, SandboxContext
from ack_sandbox.controllers.base import DEPLOYMENTS, EVENTS, HPAS, Api
from ack_sandbox.controllers.hpa import HpaController
from ack_sandbox.controllers.route_stats import stats_of
from ack_sandbox.k8s.store import Store

TIME_SCALE = 60.0  # 15 s sync = 0.25 s, 300 s stabilisation = 5 s
ROUTE = "default-web-8000"
LABELS = {"sls.project": "k8s-log-c1", "sls.logstore": "nginx-ingress", "sls.ingress.route": ROUTE}


def deployment() -> dict:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def hpa(target: str = "10") -> dict:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "sls_ingress_qps", "selector": {"matchLabels": LABELS}},
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ],
        },
    }


async def mirror_status(api: Api, stop: asyncio.Event) -> None:
    """status.replicas follows spec.replicas, as the Deployment controller reports created pods."""
    for _ in range(100_000):
        if stop.is_set():
            return
        dep = await api.get(DEPLOYMENTS, "default", "web")
        want = dep["spec"]["replicas"]
        if (dep.get("status") or {}).get("replicas") != want:
            dep["status"] = {"replicas": want, "observedGeneration": dep["metadata"]["generation"]}
            await api.update_status(DEPLOYMENTS, dep)
        await asyncio.sleep(0.02)


async def load(ctx: SandboxContext, rate: float, stop: asyncio.Event) -> None:
    """``rate`` requests per wall second recorded on the route, evenly."""
    stats = stats_of(ctx)
    sent, start = 0, time.monotonic()
    for _ in range(1_000_000):
        if stop.is_set():
            return
        due = int((time.monotonic() - start) * rate)
        for _ in range(due - sent):
            stats.record(ROUTE, ctx.clock.now(), 0.002, 200)
        sent = due
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def started(tmp_path: Path) -> AsyncIterator[tuple[SandboxContext, Api]]:
    ctx = SandboxContext(state_dir=tmp_path, time_scale=TIME_SCALE, cluster_id="c1", clock=Clock(TIME_SCALE))
    store = Store(clock=ctx.clock)
    ctx.services["kubernetes"] = store
    api = Api(store)
    await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await api.create(DEPLOYMENTS, deployment())
    stop = asyncio.Event()
    mirror = asyncio.create_task(mirror_status(api, stop))
    ctrl = HpaController(ctx)
    await ctrl.start()
    try:
        yield ctx, api
    finally:
        stop.set()
        await ctrl.stop()
        await mirror


async def wait_replicas(api: Api, predicate, what: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    for _ in range(10_000):
        n = (await api.get(DEPLOYMENTS, "default", "web"))["spec"]["replicas"]
        if predicate(n):
            return n
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; replicas={n}")


async def test_scale_out_under_load_then_in_after_stabilisation(tmp_path: Path) -> None:
    async with started(tmp_path) as (ctx, api):
        await api.create(HPAS, hpa())
        stop_load = asyncio.Event()
        producer = asyncio.create_task(load(ctx, 45.0, stop_load))
        try:
            # QPS ~45 against 10 per replica: 1 -> 5 in one sync (default scale-up policies)
            replicas = await wait_replicas(api, lambda n: n >= 5, "scale out", timeout=20)
            assert replicas <= 6
            status = (await api.get(HPAS, "default", "web"))["status"]
            metric = status["currentMetrics"][0]["external"]
            assert metric["metric"]["name"] == "sls_ingress_qps"
            conds = {c["type"]: c for c in status["conditions"]}
            assert conds["ScalingActive"]["reason"] == "ValidMetricFound"
            assert status["lastScaleTime"]
        finally:
            stop_load.set()
            await producer
        stopped_at = ctx.clock.now()
        # no load: replicas stay until the 300 s (cloud) window has passed, then go to minReplicas
        await wait_replicas(api, lambda n: n == 1, "scale in", timeout=30)
        waited = ctx.clock.now() - stopped_at
        assert waited >= 300 - 15 - 25  # window minus one sync and the metric's delayed 25 s look-back
        hpa_obj = await api.get(HPAS, "default", "web")
        assert hpa_obj["status"]["desiredReplicas"] == 1 and hpa_obj["status"]["currentReplicas"] >= 1
        rescales = [e for e in await api.list(EVENTS, "default") if e["reason"] == "SuccessfulRescale"]
        messages = [e["message"] for e in rescales]
        assert any("above target" in m for m in messages)
        assert any(m == "New size: 1; reason: All metrics below target" for m in messages)
        assert all(e["involvedObject"]["kind"] == "HorizontalPodAutoscaler" for e in rescales)


async def test_worked_example_first_sync_goes_to_ceil_qps_over_target(tmp_path: Path) -> None:
    async with started(tmp_path) as (ctx, api):
        stop_load = asyncio.Event()
        producer = asyncio.create_task(load(ctx, 45.0, stop_load))
        try:
            await asyncio.sleep(ctx.clock.real_seconds(30))  # a full window of history before the HPA exists
            await api.create(HPAS, hpa())
            replicas = await wait_replicas(api, lambda n: n > 1, "first rescale", timeout=10)
            event = next(e for e in await api.list(EVENTS, "default") if e["reason"] == "SuccessfulRescale")
            observed = int(event["message"].split(";")[0].removeprefix("New size: "))
            assert observed == replicas
            status = (await api.get(HPAS, "default", "web"))["status"]
            qps = int(status["currentMetrics"][0]["external"]["current"]["averageValue"])  # status.replicas was 1
            assert replicas == min(5, math.ceil(qps / 10))  # rate limit max(1+4, 2*1) = 5
        finally:
            stop_load.set()
            await producer


async def test_missing_scale_target_and_bad_metric_are_reported(tmp_path: Path) -> None:
    async with started(tmp_path) as (_, api):
        orphan = hpa()
        orphan["metadata"]["name"] = "orphan"
        orphan["spec"]["scaleTargetRef"]["name"] = "nope"
        await api.create(HPAS, orphan)
        unknown = hpa()
        unknown["metadata"]["name"] = "bad-metric"
        unknown["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["sls.project"] = "k8s-log-x"
        await api.create(HPAS, unknown)
        deadline = time.monotonic() + 10
        reasons: set[str] = set()
        for _ in range(1000):
            reasons = {e["reason"] for e in await api.list(EVENTS, "default")}
            if {"FailedGetScale", "FailedGetExternalMetric", "FailedComputeMetricsReplicas"} <= reasons:
                break
            assert time.monotonic() < deadline, reasons
            await asyncio.sleep(0.02)
        orphan_status = (await api.get(HPAS, "default", "orphan"))["status"]
        able = next(c for c in orphan_status["conditions"] if c["type"] == "AbleToScale")
        assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
        bad = (await api.get(HPAS, "default", "bad-metric"))["status"]
        active = next(c for c in bad["conditions"] if c["type"] == "ScalingActive")
        assert (active["status"], active["reason"]) == ("False", "FailedGetExternalMetric")
        assert "ProjectNotExist" in active["message"]
        assert (await api.get(DEPLOYMENTS, "default", "web"))["spec"]["replicas"] == 1
