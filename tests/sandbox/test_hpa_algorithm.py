"""The HPA decision against the upstream formulas (pure logic; kubernetes pkg/controller/podautoscaler)."""

from __future__ import annotations

import pytest

from ack_sandbox.controllers import hpa_algorithm as alg

T0 = 1_800_000_000.0
SELECTOR = {
    "matchLabels": {
        "sls.project": "k8s-log-c1",
        "sls.logstore": "nginx-ingress",
        "sls.ingress.route": "default-fashion-mnist-ecs-predictor-8000",
    }
}


def hpa(
    min_r: int = 1, max_r: int = 10, target: str = "10", behavior: dict | None = None, kind: str = "averageValue"
) -> dict:
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
        "minReplicas": min_r,
        "maxReplicas": max_r,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {"name": "sls_ingress_qps", "selector": SELECTOR},
                    "target": {"type": "AverageValue" if kind == "averageValue" else "Value", kind: target},
                },
            }
        ],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {"spec": spec, "status": {}}


def run(
    h: dict,
    qps: float,
    spec_r: int,
    status_r: int | None = None,
    memory: alg.HpaMemory | None = None,
    now: float = T0,
    ready: int | None = None,
) -> alg.Decision:
    status_r = spec_r if status_r is None else status_r
    memory = memory if memory is not None else alg.HpaMemory()
    outcome = alg.external_metric_result(
        h["spec"]["metrics"][0], [int(qps * 1000)], spec_r, status_r, status_r if ready is None else ready
    )
    return alg.decide(h, spec_r, status_r, status_r, [outcome], memory, now)


def cond(d: alg.Decision, ctype: str) -> dict:
    return next(c for c in d.conditions if c["type"] == ctype)


@pytest.mark.parametrize(
    "text,milli",
    [
        ("10", 10_000),
        ("500m", 500),
        ("1.5k", 1_500_000),
        (10, 10_000),
        ("1Ki", 1_024_000),
        ("0.1", 100),
        ("2e3", 2_000_000),
    ],
)
def test_quantity_parsing(text: object, milli: int) -> None:
    assert alg.parse_quantity_milli(text) == milli


def test_quantity_error_names_the_value() -> None:
    with pytest.raises(ValueError, match="abc"):
        alg.parse_quantity_milli("abc")


@pytest.mark.parametrize(
    "milli,text", [(45_000, "45"), (5_500, "5500m"), (10_000_000, "10k"), (0, "0"), (1_001_000, "1001")]
)
def test_quantity_formatting(milli: int, text: str) -> None:
    assert alg.format_milli_quantity(milli) == text


def test_per_pod_external_divides_by_status_replicas_and_respects_tolerance() -> None:
    # ratio = 45 / (10 * 1) = 4.5 -> ceil(45/10) = 5 ; current average 45
    assert alg.external_per_pod_replicas(1, 10_000, [45_000]) == (5, 45_000)
    # ratio 1.05 within 10 % tolerance -> keep 4 ; average ceil(42/4) = 10.5 -> 10500m
    assert alg.external_per_pod_replicas(4, 10_000, [42_000]) == (4, 10_500)
    # ratio 1.11 -> ceil(44.4 / 10) = 5
    assert alg.external_per_pod_replicas(4, 10_000, [44_400]) == (5, 11_100)
    # all items are summed (the adapter returns one, but the HPA sums what it gets)
    assert alg.external_per_pod_replicas(2, 10_000, [20_000, 20_000])[0] == 4


def test_value_target_uses_ready_pods() -> None:
    assert alg.external_value_replicas(3, 2, 10_000, [30_000]) == (6, 30_000)
    assert alg.external_value_replicas(3, 2, 10_000, [10_500]) == (3, 10_500)  # within tolerance
    assert alg.external_value_replicas(0, 0, 10_000, [25_000]) == (3, 25_000)


def test_worked_example_qps45_target10_one_replica_goes_to_5() -> None:
    d = run(hpa(), 45, 1)
    assert (d.desired_replicas, d.rescale) == (5, True)
    assert d.reason.startswith("external metric sls_ingress_qps(") and d.reason.endswith("above target")
    assert d.metric_statuses[0]["external"]["current"] == {"averageValue": "45"}
    assert cond(d, "ScalingActive")["reason"] == "ValidMetricFound"
    assert cond(d, "AbleToScale")["reason"] == "SucceededRescale"
    assert cond(d, "ScalingLimited")["status"] == "False"
    assert d.events == [("Normal", "SuccessfulRescale", f"New size: 5; reason: {d.reason}")]


def test_scale_up_rate_limit_default_policies() -> None:
    # QPS 200 -> wants 20; max 10 clamps below the rate limit (max(1+4, 2*1) = 5) -> limited to 5
    d = run(hpa(max_r=30), 200, 1)
    assert d.desired_replicas == 5
    assert cond(d, "ScalingLimited")["reason"] == "ScaleUpLimit"
    # Pods policy 4 vs Percent 100: from 6 the Percent policy allows 12
    d = run(hpa(max_r=30), 200, 6)
    assert d.desired_replicas == 12


def test_scale_up_limit_counts_replicas_added_in_the_period() -> None:
    mem = alg.HpaMemory()
    h = hpa(max_r=50)
    first = run(h, 1000, 1, memory=mem, now=T0)
    assert first.desired_replicas == 5
    # 5 s later (inside the 15 s policy period): period start is 5 - 4 = 1 -> limit max(1+4, 2) = 5
    second = run(h, 1000, 5, memory=mem, now=T0 + 5)
    assert second.rescale is False and second.desired_replicas == 5
    # after the period the events no longer count: limit max(5+4, 10) = 10
    third = run(h, 1000, 5, memory=mem, now=T0 + 16)
    assert third.desired_replicas == 10


def test_tooManyReplicas_when_max_binds() -> None:
    d = run(hpa(max_r=3), 45, 1)
    assert d.desired_replicas == 3
    assert cond(d, "ScalingLimited")["reason"] == "TooManyReplicas"


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    mem = alg.HpaMemory()
    h = hpa()
    assert run(h, 45, 1, memory=mem, now=T0).desired_replicas == 5
    # load gone: the 300 s window still holds the recommendation 5
    held = run(h, 0, 5, memory=mem, now=T0 + 15)
    assert held.rescale is False and held.desired_replicas == 5
    assert cond(held, "AbleToScale")["reason"] == "ScaleDownStabilized"
    for step in range(2, 20):  # keep syncing every 15 s with no load, still inside the window
        assert run(h, 0, 5, memory=mem, now=T0 + 15 * step).rescale is False
    down = run(h, 0, 5, memory=mem, now=T0 + 301 + 15)
    assert down.desired_replicas == 1  # min replicas; Percent 100 allows going all the way
    assert down.reason == "All metrics below target"
    assert cond(down, "ScalingLimited")["reason"] == "TooFewReplicas"


def test_behavior_custom_window_and_pods_policy_on_scale_down() -> None:
    behavior = {
        "scaleDown": {"stabilizationWindowSeconds": 30, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    }
    mem = alg.HpaMemory()
    h = hpa(behavior=behavior)
    assert run(h, 45, 1, memory=mem, now=T0).desired_replicas == 5
    d = run(h, 0, 5, memory=mem, now=T0 + 31)
    assert d.desired_replicas == 4 and cond(d, "ScalingLimited")["reason"] == "ScaleDownLimit"
    d = run(h, 0, 4, memory=mem, now=T0 + 50)  # 1 pod already removed within 60 s
    assert d.rescale is False


def test_scale_up_stabilisation_window_picks_lowest_recent() -> None:
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 60}}
    mem = alg.HpaMemory()
    h = hpa(behavior=behavior)
    first = run(h, 45, 1, memory=mem, now=T0)  # initial recommendation (1) is inside the window
    assert first.rescale is False
    assert cond(first, "AbleToScale")["reason"] == "ScaleUpStabilized"
    assert run(h, 45, 1, memory=mem, now=T0 + 61).desired_replicas == 5


def test_disabled_select_policy_blocks_scale_up() -> None:
    d = run(hpa(behavior={"scaleUp": {"selectPolicy": "Disabled"}}), 45, 2)
    assert d.rescale is False and d.desired_replicas == 2


def test_min_max_bounds_and_zero_replicas() -> None:
    d = run(hpa(min_r=2), 0, 1)
    assert d.desired_replicas == 2 and d.reason == "Current number of replicas below Spec.MinReplicas"
    d = run(hpa(max_r=3), 0, 6)
    assert d.desired_replicas == 3 and d.reason == "Current number of replicas above Spec.MaxReplicas"
    d = run(hpa(), 45, 0)
    assert d.rescale is False
    assert cond(d, "ScalingActive")["reason"] == "ScalingDisabled"


def test_metric_errors_make_scaling_inactive() -> None:
    h = hpa()
    err = alg.MetricError("FailedGetExternalMetric", "unable to get external metric default/sls_ingress_qps: boom")
    d = alg.decide(h, 2, 2, 2, [err], alg.HpaMemory(), T0)
    assert d.rescale is False and d.desired_replicas == 0
    active = cond(d, "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetExternalMetric")
    assert "boom" in active["message"]
    assert (
        "Warning",
        "FailedComputeMetricsReplicas",
        "invalid metrics (1 invalid out of 1), first error is: unable to get external metric "
        "default/sls_ingress_qps: boom",
    ) in d.events


def test_condition_transition_time_moves_only_on_status_change() -> None:
    conds: list[dict] = []
    alg.set_condition(conds, "ScalingActive", "True", "A", "m", "t1")
    alg.set_condition(conds, "ScalingActive", "True", "B", "m2", "t2")
    assert conds == [
        {"type": "ScalingActive", "status": "True", "lastTransitionTime": "t1", "reason": "B", "message": "m2"}
    ]
    alg.set_condition(conds, "ScalingActive", "False", "C", "m3", "t3")
    assert conds[0]["lastTransitionTime"] == "t3"


def test_legacy_no_behavior_normalisation() -> None:
    mem = alg.HpaMemory()
    n = alg.normalize_without_behavior(mem, 1, 5, 1, 10, T0)
    assert n.replicas == 4 and n.limited_reason == "ScaleUpLimit"


def test_default_behavior_fills_only_nil_fields() -> None:
    b = alg.default_behavior({"scaleUp": {"stabilizationWindowSeconds": 30}})
    assert b["scaleUp"]["stabilizationWindowSeconds"] == 30
    assert b["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    assert "stabilizationWindowSeconds" not in b["scaleDown"]
