"""Scale verification on synthetic timelines: the passing run and each failure mode, with its message."""

from __future__ import annotations

import math

import pytest

from elastic_inference.verification import (
    PoolPolicy,
    VerifyOptions,
    check_failures_during_scale_out,
    check_placement,
    check_replicas,
    check_scale_in,
    check_spot_mix,
    qps_plateau,
    scale_out_window,
    summary,
    verify,
)

START, HOLD, STOP = 1000.0, 1010.0, 1060.0
SEED_POLICY = PoolPolicy(spot_strategy="SpotAsPriceGo", on_demand_base_capacity=0,
                         on_demand_percentage_above_base_capacity=30)


def node(name, charge="Spot", zone="cn-beijing-h", in_pool=True):
    return {"name": name, "pool": "np-elastic" if in_pool else "np-default", "in_pool": in_pool, "charge": charge,
            "spot_strategy": "NoSpot" if charge == "PayAsYouGo" else "SpotAsPriceGo", "zone": zone,
            "instance_type": "ecs.gn6i-c4g1.xlarge", "ready": True}


def make_timeline(*, qps=48.0, target=10, min_r=1, max_r=10, peak=None, charges=None, outside=(),
                  fail_at=(), scale_in_at=1080.0, scale_in_timeout=60.0, metric=True):
    """A load from t=1000 (hold 1010-1060) on a pool that grows one node per new pod.

    ``peak`` defaults to what the HPA formula gives; ``charges`` are the pool nodes' charge types in the
    order they appear; ``outside`` names new pods placed on a node outside the pool; ``fail_at`` are the
    seconds at which one request fails; ``scale_in_at`` when replicas are back at min (None: never).
    """
    if peak is None:
        peak = min(max_r, max(min_r, math.ceil(qps / target)))
    charges = list(charges or (["PayAsYouGo"] + ["Spot"] * (peak - 1)))
    samples = []
    t = 990.0
    while t <= 1120.0:
        scaled_in = scale_in_at is not None and t >= scale_in_at
        if t < 1015 or scaled_in:
            desired = current = ready = min_r
        else:
            desired = current = peak
            ready = peak if t >= 1030 else min_r
        pods = [{"name": "p0", "node": "n0", "phase": "Running", "ready": True}]
        for i in range(1, current):
            pod_node = "n-default" if f"p{i}" in outside else f"n{i}"
            ok = t >= 1030
            pods.append({"name": f"p{i}", "node": pod_node if ok or t >= 1020 else None,
                         "phase": "Running" if ok else "Pending", "ready": ok})
        n_pool = current if not scaled_in else min_r
        nodes = [node(f"n{i}", charges[i] if i < len(charges) else "Spot", zone=("a", "b")[i % 2])
                 for i in range(n_pool)]
        nodes.append(node("n-default", "PayAsYouGo", in_pool=False))
        qps_now = 0.0 if t < 1005 else (qps if 1010 <= t <= 1065 else (qps / 2 if t < 1010 else 0.0))
        samples.append({"t": t, "qps": qps_now if metric else None,
                        "hpa": {"desired": desired, "current": current,
                                "conditions": [{"type": "ScalingLimited", "status": "True" if current == max_r
                                                else "False", "reason": "TooManyReplicas" if current == max_r
                                                else "DesiredWithinRange", "message": "the desired replica count "
                                                "is more than the maximum replica count" if current == max_r
                                                else ""}]},
                        "deployment": {"spec_replicas": current, "replicas": current, "ready": ready,
                                       "updated": current},
                        "pods": pods, "nodes": nodes, "errors": []})
        t += 5.0
    history, total, failed = [], 0, 0
    for sec in range(int(START), int(STOP) + 1):
        total += int(qps)
        failed += sum(1 for f in fail_at if int(f) == sec)
        history.append({"t": float(sec), "users": 24, "rps": qps, "failures_per_s": 0.0, "p50_ms": 3,
                        "p95_ms": 9, "p99_ms": 20, "total_requests": total, "total_failures": failed})
    return {
        "version": 1,
        "meta": {"namespace": "seldon", "deployment": "fashion-mnist-default-0-tfserving-proxy",
                 "hpa": {"name": "fashion-mnist-default-0-tfserving-proxy", "min_replicas": min_r,
                         "max_replicas": max_r, "target": target, "target_type": "AverageValue",
                         "metric": "sls_ingress_qps", "selector": {"sls.logstore": "nginx-ingress"}},
                 "pool_id": "np-elastic", "pool_selector": {"seldon": "fashion-mnist"},
                 "metric": {"name": "sls_ingress_qps", "selector": {"sls.logstore": "nginx-ingress"}}},
        "load": {"start": START, "hold_start": HOLD, "stop": STOP, "endpoint": "http://127.0.0.1:9/seldon"},
        "samples": samples,
        "locust": {"stats": {"requests": total, "failures": failed, "error_rate": failed / total, "rps": qps,
                             "p50_ms": 3, "p95_ms": 9, "p99_ms": 20},
                   "history": history,
                   "failures": [{"method": "POST", "name": "seldon predict", "error": "HTTP 503: no endpoints",
                                 "occurrences": failed}] if failed else []},
        "scale_in": {"timeout": scale_in_timeout},
    }


OPTS = VerifyOptions(pool_policy=SEED_POLICY)


def test_a_healthy_run_passes_every_check():
    tl = make_timeline()
    result = verify(tl, OPTS)
    assert [c.name for c in result.checks] == ["replicas", "placement", "spot_mix", "failures_during_scale_out",
                                              "scale_in"]
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
    assert check.message == ("replicas reached 2 but the HPA formula predicts 5 for 48 QPS at target 10 — "
                             "maxReplicas=2 caps it; raise maxReplicas to at least 5 or offer less load")
    assert "maxReplicas=2 caps it" in result.failure_message()
    assert result.failure_message().startswith("Scale verification failed (1 of 5 checks):")


def test_hpa_that_did_not_scale_is_reported_with_its_conditions():
    tl = make_timeline(peak=2)
    check = check_replicas(tl, OPTS)
    assert not check.passed
    assert check.message.startswith("replicas reached 2 but the HPA formula predicts 5 for 48 QPS at target 10 (±1)"
                                    " — the HPA did not scale out as far as the load explains")
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
    assert check.message.startswith("1 of 4 new pods ran outside the elastic pool np-elastic: p2 on n-default "
                                    "(pool np-default)")


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
    assert check.message == ("at its peak the pool had 5 nodes: 5 pay-as-you-go, 0 spot; the policy (0 pay-as-you-go "
                             "base + 30% pay-as-you-go above base, the rest spot) gives 2 pay-as-you-go, 3 spot (±1)"
                             " — more pay-as-you-go than the policy: spot stock may have run out and "
                             "compensate_with_on_demand filled in")
    assert check.observed["by_zone"] == {"a": 3, "b": 2}


@pytest.mark.parametrize(("total", "base", "pct", "payg"), [
    (1, 0, 30, 1), (3, 0, 30, 1), (4, 0, 30, 2), (10, 0, 30, 3), (10, 2, 50, 6), (2, 3, 0, 2), (5, 1, 0, 1)])
def test_policy_rounding_mirrors_the_sandbox_rule(total, base, pct, payg):
    policy = PoolPolicy("SpotAsPriceGo", base, pct)
    assert policy.payg_nodes(total) == payg
    assert PoolPolicy("NoSpot").payg_nodes(total) == total


def test_policy_reads_a_cs_node_pool_body():
    body = {"scaling_group": {"spot_strategy": "SpotAsPriceGo", "on_demand_base_capacity": 1,
                              "on_demand_percentage_above_base_capacity": 30}}
    assert PoolPolicy.from_dict(body) == PoolPolicy("SpotAsPriceGo", 1, 30)
    assert PoolPolicy.from_dict(None) is None


def test_failures_during_scale_out_are_counted_with_the_error():
    tl = make_timeline(fail_at=(1017, 1020, 1025, 1050))  # three inside 1015-1030, one after
    t0, t1, scaled = scale_out_window(tl)
    assert (t0, t1, scaled) == (1015.0, 1030.0, True)
    check = check_failures_during_scale_out(tl, OPTS)
    assert not check.passed
    assert check.observed["failures"] == 3
    assert check.message.startswith(f"3 of {check.observed['requests']} requests failed during scale-out "
                                    "(t+15s–t+30s): HTTP 503: no endpoints (4x)")
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
        "61 of 2928 requests failed during the load (t+0s–t+60s; no scale-out happened): HTTP 503: no endpoints")


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
