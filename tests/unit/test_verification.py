"""Scale verification on synthetic timelines: the passing run and each failure mode, with its message."""

from __future__ import annotations

import pytest

from elastic_inference.verification import (
    PoolPolicy,
    VerifyOptions,
    check_failures_during_scale_out,
    check_placement,
    check_replicas,
    check_scale_in,
    check_spot_mix,
    node_provisioning,
    pool_scale_in,
    qps_plateau,
    scale_out_window,
    summary,
    verify,
)
from tests.unit.support import HOLD, OPTS, STOP, make_timeline


def test_a_healthy_run_passes_every_check():
    tl = make_timeline()
    result = verify(tl, OPTS)
    assert [c.name for c in result.checks] == [
        "replicas",
        "placement",
        "spot_mix",
        "failures_during_scale_out",
        "scale_in",
    ]
    assert result.passed, result.failure_message()
    by = {c.name: c for c in result.checks}
    assert by["replicas"].expected["replicas"] == 5 and by["replicas"].observed["peak_replicas"] == 5
    assert by["replicas"].message == "replicas reached 5; the HPA formula predicts 5 for 48 QPS at target 10 (±1)"
    # 5 pool nodes at peak, base 0 + 30%: ceil(1.5) = 2 pay-as-you-go wanted, 1 observed: within one node.
    assert by["spot_mix"].expected["payg"] == 2 and by["spot_mix"].observed["payg"] == 1
    assert by["scale_in"].observed["after_s"] == 20
    s = summary(tl, result, report_path="/r/report.html")
    assert s["verdict"] == "passed" and s["replicas_reached"] == 5
    assert s["nodes_by_charge_type"] == {"PayAsYouGo": 1, "Spot": 4}
    assert s["p95_latency_ms"] == 9 and s["report_path"] == "/r/report.html"


def test_too_low_max_replicas_fails_and_names_the_cap():
    tl = make_timeline(max_r=2)
    result = verify(tl, OPTS)
    assert not result.passed
    check = next(c for c in result.checks if c.name == "replicas")
    assert check.message == (
        "replicas reached 2 but the HPA formula predicts 5 for 48 QPS at target 10 — "
        "maxReplicas=2 caps it; raise maxReplicas to at least 5 or offer less load"
    )
    assert "maxReplicas=2 caps it" in result.failure_message()
    assert result.failure_message().startswith("Scale verification failed (1 of 5 checks):")


def test_hpa_that_did_not_scale_is_reported_with_its_conditions():
    tl = make_timeline(peak=2)
    check = check_replicas(tl, OPTS)
    assert not check.passed
    assert check.message.startswith(
        "replicas reached 2 but the HPA formula predicts 5 for 48 QPS at target 10 (±1)"
        " — the HPA did not scale out as far as the load explains"
    )
    assert "ScalingLimited=False DesiredWithinRange" in check.message


def test_scaling_beyond_the_load_fails_too():
    check = check_replicas(make_timeline(qps=18), OPTS)
    assert check.passed and check.expected["replicas"] == 2
    check = check_replicas(make_timeline(qps=18, peak=6), OPTS)
    assert not check.passed and "scaled beyond the load explains" in check.message


def test_tolerance_absorbs_the_hpa_tolerance_band():
    # 50 QPS / 10 = 5.0 -> 5; an HPA sitting at 4 or 6 is within ±1.
    assert check_replicas(make_timeline(qps=50, peak=4), OPTS).passed
    assert not check_replicas(make_timeline(qps=50, peak=4), VerifyOptions(replica_tolerance=0)).passed


def test_plateau_is_the_mean_of_an_aliased_metric():
    # A truncated short-window count of a steady 35 RPS reads 28, 42, 28, 42...: the median would be either.
    tl = make_timeline(qps=35)
    hold = [s for s in tl["samples"] if HOLD <= s["t"] <= STOP]
    for i, s in enumerate(hold):
        s["qps"] = 28.0 if i % 2 else 42.0
    value, source = qps_plateau(tl)
    assert value == pytest.approx(sum(s["qps"] for s in hold) / len(hold)) and "mean sls_ingress_qps" in source
    assert check_replicas(tl, OPTS).expected["replicas"] == 4


def test_plateau_falls_back_to_locust_rps_when_the_metric_was_never_read():
    tl = make_timeline(metric=False)
    value, source = qps_plateau(tl)
    assert value == 48 and "locust RPS" in source
    assert check_replicas(tl, OPTS).passed


def test_missing_hpa_is_a_clear_failure():
    tl = make_timeline()
    tl["meta"]["hpa"] = None
    check = check_replicas(tl, OPTS)
    assert not check.passed and "no HorizontalPodAutoscaler scales deployment" in check.message


def test_pods_outside_the_pool_are_named():
    tl = make_timeline(outside=("p2",))
    check = check_placement(tl, OPTS)
    assert not check.passed
    assert check.message.startswith(
        "1 of 4 new pods ran outside the elastic pool np-elastic: p2 on n-default (pool np-default)"
    )


def test_no_new_pods_when_a_scale_out_was_due_fails():
    tl = make_timeline(peak=1)
    check = check_placement(tl, OPTS)
    assert not check.passed and "no new pod ran during the load" in check.message
    # ... but a load below one replica's target needs none.
    assert check_placement(make_timeline(qps=6), OPTS).passed


def test_spot_mix_off_policy_by_more_than_one_node_fails():
    tl = make_timeline(charges=["PayAsYouGo"] * 5)
    check = check_spot_mix(tl, OPTS)
    assert not check.passed
    assert check.message == (
        "at its peak the pool had 5 nodes: 5 pay-as-you-go, 0 spot; the policy (0 pay-as-you-go "
        "base + 30% pay-as-you-go above base, the rest spot) gives 2 pay-as-you-go, 3 spot (±1)"
        " — more pay-as-you-go than the policy: spot stock may have run out and "
        "compensate_with_on_demand filled in"
    )
    assert check.observed["by_zone"] == {"a": 3, "b": 2}


@pytest.mark.parametrize(
    ("total", "base", "pct", "payg"),
    [(1, 0, 30, 1), (3, 0, 30, 1), (4, 0, 30, 2), (10, 0, 30, 3), (10, 2, 50, 6), (2, 3, 0, 2), (5, 1, 0, 1)],
)
def test_policy_rounding_mirrors_the_sandbox_rule(total, base, pct, payg):
    policy = PoolPolicy("SpotAsPriceGo", base, pct)
    assert policy.payg_nodes(total) == payg
    assert PoolPolicy("NoSpot").payg_nodes(total) == total


def test_policy_reads_a_cs_node_pool_body():
    body = {
        "scaling_group": {
            "spot_strategy": "SpotAsPriceGo",
            "on_demand_base_capacity": 1,
            "on_demand_percentage_above_base_capacity": 30,
        }
    }
    assert PoolPolicy.from_dict(body) == PoolPolicy("SpotAsPriceGo", 1, 30)
    assert PoolPolicy.from_dict(None) is None


def test_failures_during_scale_out_are_counted_with_the_error():
    tl = make_timeline(fail_at=(1017, 1020, 1025, 1050))  # three inside 1015-1030, one after
    t0, t1, scaled = scale_out_window(tl)
    assert (t0, t1, scaled) == (1015.0, 1030.0, True)
    check = check_failures_during_scale_out(tl, OPTS)
    assert not check.passed
    assert check.observed["failures"] == 3
    assert check.message.startswith(
        f"3 of {check.observed['requests']} requests failed during scale-out (t+15s–t+30s): HTTP 503: no endpoints (4x)"
    )
    assert check_failures_during_scale_out(tl, VerifyOptions(failure_budget=3)).passed


def test_failures_outside_the_scale_out_window_do_not_count():
    check = check_failures_during_scale_out(make_timeline(fail_at=(1050, 1051)), OPTS)
    assert check.passed and check.observed["failures"] == 0


def test_broken_model_fails_every_request():
    tl = make_timeline(peak=1, fail_at=range(1000, 1061))
    result = verify(tl, OPTS)
    failed = {c.name: c for c in result.failures()}
    assert "failures_during_scale_out" in failed
    assert failed["failures_during_scale_out"].message.startswith(
        "61 of 2928 requests failed during the load (t+0s–t+60s; no scale-out happened): HTTP 503: no endpoints"
    )


def test_scale_in_within_and_past_the_timeout():
    assert check_scale_in(make_timeline(scale_in_at=1080), OPTS).passed
    late = check_scale_in(make_timeline(scale_in_at=1080, scale_in_timeout=10), OPTS)
    assert not late.passed
    never = check_scale_in(make_timeline(scale_in_at=None), OPTS)
    assert not never.passed
    assert never.message.startswith("replicas were still 5 (minReplicas 1) 60 s after the load stopped (limit 60 s)")


def test_optional_checks_can_be_left_out():
    result = verify(make_timeline(), VerifyOptions(check_scale_in=False))
    assert [c.name for c in result.checks] == ["replicas", "placement", "failures_during_scale_out"]


def test_a_broken_slo_is_a_named_failed_check_of_the_scale_verification():
    """The report runs after an SLO breach too (issue 14): its verdict names the breach beside its own checks."""
    tl = make_timeline()
    tl["slo"] = {"p95_ms": 500, "error_rate": 0.01, "breaches": ["p95 latency 900 ms exceeds the SLO of 500 ms"]}
    result = verify(tl, OPTS)
    assert not result.passed
    assert [c.name for c in result.failures()] == ["load_test_slo"]
    assert "p95 latency 900 ms exceeds the SLO of 500 ms" in result.failure_message()
    assert summary(tl, result)["failed_checks"] == ["load_test_slo"]
    tl["slo"]["breaches"] = []
    assert verify(tl, OPTS).passed


def test_the_pool_scale_in_after_the_load_is_a_fact_not_a_check():
    """Replicas back at t+20 s after the stop, the pool's 4 added nodes released at t+45 s: the report's tail."""
    tl = make_timeline(scale_in_at=1080, pool_in_at=1105)
    pool = pool_scale_in(tl)
    assert pool == {
        "nodes_before": 1,
        "nodes_at_peak": 5,
        "nodes_at_end": 1,
        "grew": True,
        "back_after_s": 45.0,
        "recorded_after_s": 60.0,
        "timeout_s": None,
    }
    result = verify(tl, OPTS)
    assert result.passed and result.facts["pool_scale_in"] == pool
    assert "pool" not in " ".join(c.name for c in result.checks)  # no new check in the verdict
    # Not back within the recording: None, and the verdict still does not depend on it.
    never = make_timeline(pool_in_at=None)
    assert pool_scale_in(never)["back_after_s"] is None and pool_scale_in(never)["nodes_at_end"] == 5
    assert verify(never, OPTS).passed
    # A load that needed no new node: the pool did not grow, nothing to wait for.
    flat = make_timeline(qps=5.0)
    assert pool_scale_in(flat)["grew"] is False and pool_scale_in(flat)["back_after_s"] is None


def test_the_recorded_pool_baseline_wins_over_the_first_sample():
    tl = make_timeline(pool_in_at=1100)
    tl["scale_in"]["pool_nodes_before"] = 0  # the load test's own baseline (e.g. sampled before a retry)
    assert pool_scale_in(tl)["nodes_before"] == 0 and pool_scale_in(tl)["back_after_s"] is None


def test_node_provisioning_is_from_the_scale_out_decision_to_the_first_new_node_ready():
    assert node_provisioning(make_timeline()) == 5.0  # HPA asks at t=1015, new nodes Ready at t=1020
    assert node_provisioning(make_timeline(qps=5.0)) is None  # nothing scaled
