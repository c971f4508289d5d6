"""The rollout's pure logic: the spec, the decision, the canary names and annotations, the analysis bounds, the
served-version checks, the prober's line, the pinned TF Serving config and the report section."""

from __future__ import annotations

from typing import Any

import pytest

from elastic_inference import manifests
from elastic_inference.exceptions import SpecError
from elastic_inference.rollout.analysis import Sample, SideStats, judge, percentile, series, step_verdict
from elastic_inference.rollout.plan import (
    canary_annotations,
    canary_name,
    decide,
    snapshot_changes,
    stable_snapshot,
)
from elastic_inference.rollout.traffic import ProberResult
from elastic_inference.rollout.versions import summary, version_problems
from elastic_inference.serving import ServedVersion, get_backend
from elastic_inference.serving.base import available_versions, tfserving_rest_port
from elastic_inference.specs.rollout import RolloutSpec
from elastic_inference.specs.run import param_specs, resolve
from elastic_inference.verification import check_agreement, check_served_versions
from tests.unit.support import saved_model_dir

SELDON = get_backend("seldon")


def sdep(version: int | None = 1, state: str = "Available", **meta: Any) -> dict[str, Any]:
    annotations = {} if version is None else {"elastic-inference/model-version": str(version)}
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "m", "namespace": "d", "annotations": annotations, "uid": "u1", "generation": 1, **meta},
        "spec": {"predictors": [{"name": "predictor", "componentSpecs": [{"spec": {"containers": [{"name": "a"}]}}]}]},
        "status": {"state": state},
    }


def samples(n: int, latency: float, *, ok: bool = True, correct: bool | None = True, t0: float = 0.0) -> list[Sample]:
    return [Sample(t0 + i * 0.1, latency, ok, correct if ok else None, "" if ok else "HTTP 500") for i in range(n)]


# -- the spec ---------------------------------------------------------------------------------------------------


def test_rollout_spec_defaults_schema_and_problems() -> None:
    default, schema, _doc = param_specs()["rollout"]
    assert default["strategy"] == "auto" and default["steps"] == [10, 50] and default["require_approval"] is False
    assert schema["type"] == "object" and schema["properties"]["strategy"]["enum"] == ["auto", "canary", "direct"]
    assert schema["properties"]["steps"]["items"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert RolloutSpec().problems() == []
    bad = RolloutSpec(steps=[50, 10], strategy="direct", rollback_to=1, min_agreement=2)
    text = " | ".join(bad.problems())
    assert "ascending" in text and "rollback_to goes through the canary path" in text
    assert "rollout.min_agreement must be <= 1" in text
    assert "1-100" in " ".join(RolloutSpec(steps=[0, 150]).problems())
    with pytest.raises(SpecError, match="unknown rollout field"):
        RolloutSpec.from_mapping({"stepz": [1]})


def test_plan_rollout_partial_param_and_rollback_to_pins_the_version(tmp_path) -> None:
    specs, problems = resolve({"model_source": str(saved_model_dir(tmp_path)), "rollout": {"steps": [25]}})
    assert problems == [] and specs is not None
    assert specs.rollout.steps == [25] and specs.rollout.step_seconds == 30  # the rest keep their defaults
    # rollback_to: no model_source needed (nothing is uploaded); the version deployed is the one named
    specs, problems = resolve({"rollout": {"rollback_to": 3}, "model_version": 7})
    assert problems == [] and specs is not None
    assert specs.model.version == 3 and specs.serving.model_version == 3
    _specs, problems = resolve({"rollout": {"steps": [90, 10]}})
    assert any("model_source" in p for p in problems) and any("ascending" in p for p in problems)


# -- deciding ---------------------------------------------------------------------------------------------------


def test_decide_first_deployment_same_version_direct_and_canary() -> None:
    assert decide("auto", None, SELDON, 1).mode == "direct"
    assert "first deployment" in decide("canary", None, SELDON, 1).reason
    same = decide("auto", sdep(2), SELDON, 2)
    assert same.mode == "direct" and "already serves" in same.reason
    assert decide("direct", sdep(1), SELDON, 2).mode == "direct"
    assert decide("auto", sdep(1, state="Failed"), SELDON, 2).mode == "direct"  # nothing sane to compare with
    canary = decide("auto", sdep(1), SELDON, 2)
    assert (canary.mode, canary.stable_version, canary.target_version) == ("canary", 1, 2)


def test_canary_names_annotations_and_snapshots() -> None:
    assert canary_name("fashion-mnist-ecs") == "fashion-mnist-ecs-canary"
    assert len(canary_name("x" * 63)) == 63
    assert canary_annotations(10) == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "10",
        "nginx.ingress.kubernetes.io/canary-by-header": "X-Elastic-Inference-Canary",
    }
    before = stable_snapshot(sdep(1), SELDON)
    assert before == {"name": "m", "uid": "u1", "generation": 1, "resource_version": None, "version": 1}
    assert snapshot_changes(before, before) == []
    moved = stable_snapshot(sdep(2, generation=2), SELDON)
    assert snapshot_changes(before, moved) == ["generation 1 → 2", "version 1 → 2"]


def test_canary_ingress_renders_with_annotations_main_ingress_without() -> None:
    base = dict(name="m", namespace="d", ingress_class="", host="", path="/", service_name="s", service_port=8000)
    (main,) = manifests.render("ingress.yaml.j2", base)
    assert "annotations" not in main["metadata"]
    (canary,) = manifests.render("ingress.yaml.j2", {**base, "annotations": canary_annotations(50)})
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "50"


# -- the analysis -----------------------------------------------------------------------------------------------


def test_percentile_and_side_stats() -> None:
    assert percentile([], 0.95) is None
    assert percentile(list(range(1, 101)), 0.95) == 95
    stats = SideStats.of(samples(18, 10.0) + samples(2, 0, ok=False), seconds=2.0)
    assert (stats.requests, stats.failures, stats.checked, stats.agreeing) == (20, 2, 18, 18)
    assert stats.error_rate == pytest.approx(0.1) and stats.rps == 10 and stats.top_errors == [("HTTP 500", 2)]


def test_judge_passes_a_good_canary() -> None:
    verdict = step_verdict(10, 0, 5, samples(50, 22.0), samples(50, 20.0), RolloutSpec())
    assert verdict.passed, verdict.failure_message()
    assert [b.metric for b in verdict.bounds] == ["error_rate", "p95_ms", "agreement"]


def test_judge_names_the_metric_both_values_and_the_bound() -> None:
    spec = RolloutSpec()
    errors = judge(SideStats.of(samples(30, 5, ok=False)), SideStats.of(samples(30, 20.0)), spec)
    failed = [b for b in errors if not b.passed]
    assert failed[0].metric == "error_rate"
    assert "canary 100.00 % (30 of 30) vs stable 0.00 %; bound 1.00 %" in failed[0].message
    assert "HTTP 500" in failed[0].message
    slow = judge(SideStats.of(samples(30, 420.0)), SideStats.of(samples(30, 20.0)), spec)
    p95 = next(b for b in slow if b.metric == "p95_ms")
    assert not p95.passed and p95.limit == 120  # max(1.5 x 20, 20 + 100)
    assert "p95: canary 420 ms vs stable 20 ms; bound 120 ms" in p95.message
    wrong = judge(SideStats.of(samples(30, 20.0, correct=False)), SideStats.of(samples(30, 20.0)), spec)
    agreement = next(b for b in wrong if b.metric == "agreement")
    assert not agreement.passed and "canary 0.00 % of 30 predictions" in agreement.message
    assert "vs stable 100.00 % of 30; bound 90.00 %" in agreement.message


def test_judge_p95_floor_ignores_jitter_and_refuses_an_empty_step() -> None:
    spec = RolloutSpec()
    jitter = judge(SideStats.of(samples(30, 9.0)), SideStats.of(samples(30, 4.0)), spec)  # 2.25 x, +5 ms
    assert all(b.passed for b in jitter)
    busy = judge(SideStats.of(samples(30, 209.0)), SideStats.of(samples(30, 104.0)), spec)  # 2 x, +105 ms
    assert not all(b.passed for b in busy)  # above the default floor of 100 ms ...
    busy = judge(
        SideStats.of(samples(30, 209.0)), SideStats.of(samples(30, 104.0)), RolloutSpec(max_p95_increase_ms=150)
    )
    assert all(b.passed for b in busy)  # ... and within a floor of 150 ms
    assert all(b.passed for b in jitter)
    no_p95_check = judge(SideStats.of(samples(30, 1e3)), SideStats.of(samples(30, 4)), RolloutSpec(max_p95_ratio=None))
    assert "p95_ms" not in [b.metric for b in no_p95_check]
    empty = judge(SideStats.of([]), SideStats.of(samples(30, 4)), spec)
    assert [b.metric for b in empty] == ["requests"] and not empty[0].passed


def test_series_buckets_rps_errors_p95() -> None:
    points = series(samples(10, 10.0) + samples(5, 0, ok=False, t0=1.0), start=0.0)
    assert points[0]["rps"] == 10 and points[1]["errors"] == 5 and points[1]["p95_ms"] is None


# -- served versions --------------------------------------------------------------------------------------------


def test_tfserving_status_and_rest_port() -> None:
    status = {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE"},
            {"version": "1", "state": "END"},
            {"version": "3", "state": "LOADING"},
        ]
    }
    assert available_versions(status) == (2,)
    assert tfserving_rest_port({"args": ["--port=8500", "--rest_api_port=8501"]}) == 8501
    assert tfserving_rest_port({"args": ["--rest_api_port=1", "--rest_api_port=9"]}) == 9  # the last one wins
    assert tfserving_rest_port({"args": ["--model_name=x"]}) is None
    pod = {
        "status": {"podIP": "127.1.2.3"},
        "spec": {"containers": [{"name": "p"}, {"args": ["--rest_api_port=8501"]}]},
    }
    assert SELDON.model_status_endpoint(pod) == ("127.1.2.3", 8501)
    assert SELDON.model_status_endpoint({"status": {}, "spec": pod["spec"]}) is None


def test_version_problems_name_each_wrong_replica() -> None:
    good = [ServedVersion("a", (2,)), ServedVersion("b", (2,))]
    assert version_problems(good, 2) == []
    assert version_problems([], 2, "stable") == ["stable: no ready replica to ask which version it serves"]
    mixed = [*good, ServedVersion("c", (1,)), ServedVersion("d", (), "GET x: ConnectionError")]
    problems = version_problems(mixed, 2, "canary")
    assert problems == ["canary: pod c serves versions [1], not [2]", "canary: pod d GET x: ConnectionError"]
    assert summary(mixed)["by_version"] == {"2": 2, "1": 1, "none": 1}


def test_verification_checks_served_versions_and_agreement() -> None:
    assert check_served_versions({}) is None
    ok = check_served_versions({"served_versions": {"expected": 2, "pods": {"a": [2], "b": [2]}}})
    assert ok is not None and ok.passed
    bad = check_served_versions({"served_versions": {"expected": 2, "pods": {"a": [2], "b": [1]}}})
    assert bad is not None and not bad.passed and "b serves [1]" in bad.message
    timeline = {"locust": {"checks": {"checked": 100, "mismatches": 36}}}
    assert check_agreement(timeline, None) is None
    agreement = check_agreement(timeline, 0.9)
    assert agreement is not None and not agreement.passed and "64 of 100" in agreement.message


# -- the prober -------------------------------------------------------------------------------------------------


def test_prober_segments_merge_into_one_line() -> None:
    a = ProberResult(requests=100, failures=0, p99_ms=30.0, start=10.0, end=40.0, segments=["analysis: 100"])
    b = ProberResult(requests=50, failures=1, p99_ms=80.0, start=50.0, end=70.0, first_failures=[{"error": "x"}])
    total = ProberResult.merge([a.to_dict(), b.to_dict(), {}])
    assert (total.requests, total.failures, total.p99_ms) == (150, 1, 80.0)
    assert total.line() == "prober: 150 requests over 60 s, 1 failed, p99 80 ms"
    assert ProberResult().line() == "prober: 0 requests, 0 failed, p99 n/a"


# -- version pinning and the report -----------------------------------------------------------------------------


def test_seldon_template_pins_the_version_with_a_model_config_file() -> None:
    from elastic_inference.operators.seldon import DeploySeldonOperator

    op = DeploySeldonOperator(task_id="s", name="m", model_name="fashion-mnist", pvc_name="p", sls_project="k")
    op.model_version = 2
    config, sdep_ = manifests.render("seldon_deployment.yaml.j2", op.template_variables())
    assert config["kind"] == "ConfigMap" and config["metadata"]["name"] == "m-tfserving-v2"
    text = config["data"]["models.config"]
    assert 'name: "fashion-mnist"' in text and 'base_path: "/mnt/fashion-mnist"' in text
    assert "specific {\n        versions: 2\n      }" in text
    spec = sdep_["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    server = spec["containers"][1]
    assert "--model_config_file=/etc/tfserving/models.config" in server["args"]
    assert not any(a.startswith("--model_base_path") for a in server["args"])
    assert {"name": "tfserving-config", "configMap": {"name": "m-tfserving-v2"}} in spec["volumes"]
    unpinned = DeploySeldonOperator(
        task_id="s", name="m", model_name="fashion-mnist", pvc_name="p", sls_project="k", pin_model_version=False
    )
    (only,) = manifests.render("seldon_deployment.yaml.j2", unpinned.template_variables())
    assert (
        "--model_base_path=/mnt/fashion-mnist"
        in only["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][1]["args"]
    )


def test_rollout_report_section_shows_both_sides_each_step_and_the_prober(tmp_path) -> None:
    from elastic_inference.report import render_rollout_report

    spec = RolloutSpec()
    steps = [
        step_verdict(0, 0, 5, samples(50, 20.0), samples(50, 20.0), spec),
        step_verdict(
            10,
            5,
            10,
            samples(50, 450.0, t0=5),
            samples(50, 20.0, t0=5),
            spec,
            {"canary_weight": 10, "location_qps": 1.5},
        ),
    ]
    record = {
        "stable_version": 1,
        "canary_version": 2,
        "verdict": "rolled back",
        "failure": "step 10 %: " + steps[1].failure_message(),
        "steps": [s.to_dict() for s in steps],
        "series": [{"weight": 0, "canary": series(samples(50, 20.0), 0), "stable": series(samples(50, 20.0), 0)}],
        "prober_rollback": ProberResult(requests=40, p99_ms=25.0, start=5, end=15).to_dict(),
    }
    html = render_rollout_report(record, tmp_path / "rollout.html").read_text()
    assert "stable v1 vs canary v2" in html and "rolled back" in html
    assert "p95: canary 450 ms vs stable 20 ms; bound 120 ms" in html
    assert "prober: 40 requests over 10 s, 0 failed, p99 25 ms" in html
    assert html.count("<td>canary</td>") == 2 and "data:image/png;base64," in html
    assert "canary 10 % / stable 90 %" in html and "location 1.50 req/s" in html
