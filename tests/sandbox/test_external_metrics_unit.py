"""The SLS ingress metrics as the adapter computes them, over the proxy's route counters (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ack_sandbox.context import Clock, SandboxContext
from ack_sandbox.controllers import metrics
from ack_sandbox.controllers.route_stats import RouteStats, route_name, stats_of
from ack_sandbox.k8s.errors import ApiError

ROUTE = route_name("seldon", "fashion-mnist-default", 8000)


class ManualClock(Clock):
    def __init__(self, time_scale: float, now: float) -> None:
        super().__init__(time_scale)
        self.t = now

    def now(self) -> float:
        return self.t


def make_ctx(tmp_path: Path, time_scale: float = 1.0, now: float = 10_000.0) -> SandboxContext:
    return SandboxContext(
        state_dir=tmp_path, time_scale=time_scale, cluster_id="c123", clock=ManualClock(time_scale, now)
    )


def selector(route: str | None = ROUTE, **extra: str) -> str:
    labels = {"sls.project": "k8s-log-c123", "sls.logstore": "nginx-ingress", **extra}
    if route:
        labels["sls.ingress.route"] = route
    return ",".join(f"{k}={v}" for k, v in labels.items())


def test_route_name_is_ingress_nginx_upstream_name() -> None:
    assert ROUTE == "seldon-fashion-mnist-default-8000"
    assert route_name("default", "svc", "http") == "default-svc-http"


def test_qps_counts_the_delayed_window_and_truncates(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    stats = stats_of(ctx)
    now = ctx.clock.now()
    # window is [now-25, now-10): 100 requests inside, plus some outside on both sides
    for i in range(100):
        stats.record(ROUTE, now - 25 + (i % 15), 0.002, 200)
    for t in (now - 26, now - 10, now - 5, now - 0.5):
        stats.record(ROUTE, t, 0.002, 200)
    stats.record("other-route-80", now - 20, 0.002, 200)
    assert metrics.external_metric_values(ctx, "sls_ingress_qps", selector()) == [6000]  # int(100/15) = 6
    body = metrics.external_metric_value_list(ctx, "ignored", "sls_ingress_qps", selector())
    assert body["kind"] == "ExternalMetricValueList" and body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    assert [(i["metricName"], i["value"], i["metricLabels"]) for i in body["items"]] == [("sls_ingress_qps", "6", None)]
    # no route label: every route
    assert metrics.external_metric_values(ctx, "sls_ingress_qps", selector(None)) == [6000]  # int(101/15)


def test_qps_is_per_wall_second_under_time_scale(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, time_scale=30.0)
    now = ctx.clock.now()
    # 15 cloud seconds = 0.5 wall seconds; 45 req/s real -> 22 or 23 requests in the window
    for i in range(23):
        stats_of(ctx).record(ROUTE, now - 25 + i * 15 / 23, 0.001, 200)
    assert metrics.external_metric_values(ctx, "sls_ingress_qps", selector()) == [46_000]  # int(23 / 0.5)


def test_interval_and_delay_labels(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    now = ctx.clock.now()
    for i in range(60):
        stats_of(ctx).record(ROUTE, now - 31 + i * 0.5, 0.001, 200)  # 2/s over [now-31, now-1)
    sel = selector(**{"sls.query.interval": "30", "sls.query.delay": "1"})
    assert metrics.external_metric_values(ctx, "sls_ingress_qps", sel) == [2000]
    small = selector(**{"sls.query.interval": "5", "sls.query.delay": "1"})  # minimum interval is 15
    assert metrics.external_metric_values(ctx, "sls_ingress_qps", small) == [2000]


def test_latency_metrics_in_milliseconds(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    now = ctx.clock.now()
    for i in range(1, 101):
        stats_of(ctx).record(ROUTE, now - 20, i / 1000, 200)  # 1..100 ms
    assert metrics.external_metric_values(ctx, "sls_ingress_latency_p50", selector()) == [50_000]
    assert metrics.external_metric_values(ctx, "sls_ingress_latency_p95", selector()) == [95_000]
    assert metrics.external_metric_values(ctx, "sls_ingress_latency_avg", selector()) == [50_000]  # int(50.5)


@pytest.mark.parametrize(
    "sel,needle",
    [
        ("", "External metrics need at least one label provided."),
        (None, "External metrics need at least one label provided."),
        ("sls.project=k8s-log-other,sls.logstore=nginx-ingress", "ProjectNotExist"),
        ("sls.project=k8s-log-c123,sls.logstore=elsewhere", "LogStoreNotExist"),
        ("sls.project in (a,b)", "only equality"),
    ],
)
def test_errors_are_internal_errors_with_the_adapter_text(tmp_path: Path, sel: str | None, needle: str) -> None:
    with pytest.raises(ApiError) as err:
        metrics.external_metric_values(make_ctx(tmp_path), "sls_ingress_qps", sel)
    assert err.value.code == 500 and err.value.reason == "InternalError"
    assert needle in err.value.message and err.value.message.startswith("Internal error occurred: ")


def test_unknown_metric_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApiError, match="not supported"):
        metrics.external_metric_values(make_ctx(tmp_path), "sls_alb_ingress_qps", selector())


def test_discovery_documents() -> None:
    res = metrics.api_resource_list()
    assert res["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    assert {
        "name": "sls_ingress_qps",
        "singularName": "",
        "namespaced": True,
        "kind": "ExternalMetricValueList",
        "verbs": ["get"],
    } in res["resources"]
    assert metrics.api_group()["preferredVersion"]["version"] == "v1beta1"


def test_ring_forgets_old_buckets() -> None:
    stats = RouteStats(retention_seconds=60)
    stats.record("r", 0, 0.001, 200)
    stats.record("r", 100, 0.001, 503)
    assert stats.window("r", 0, 1).count == 0
    w = stats.window("r", 100, 101)
    assert (w.count, w.errors) == (1, 1)
    assert stats.totals() == {"r": 2}


def test_a_window_of_n_seconds_reads_n_buckets_so_a_steady_rate_is_not_overstated() -> None:
    from ack_sandbox.controllers.route_stats import RouteStats

    stats = RouteStats()
    for i in range(40 * 10):  # 10 requests per cloud second, from t=0 to t=40
        stats.record("r", i / 10, 0.01, 200)
    for start in (10.0, 10.5, 10.9):
        assert stats.window("r", start, start + 15).count == 150, start
