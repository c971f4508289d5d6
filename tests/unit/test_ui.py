"""The UI side without a browser: the trigger form's Params, the report links, what the run view reads.
(``tests/e2e/test_ui_browser.py`` checks the same in a real browser against a real API server.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.links import REPORTS_DIR_ENV, UI_PREFIX, report_url, run_dir
from elastic_inference.operators.verify import ScaleVerificationOperator
from elastic_inference.params import FORM_PARAMS, check_run_config, expected_duration
from elastic_inference.timeline import write_timeline
from elastic_inference.ui.page import run_page
from elastic_inference.ui.series import run_state
from tests.helpers import FakeDag, FakeTI
from tests.unit.support import make_timeline, saved_model_dir


def _params() -> ParamsDict:
    from airflow.sdk import Param

    return ParamsDict({name: Param(**form) for name, form in FORM_PARAMS.items()})


def test_the_form_validates_with_its_defaults() -> None:
    """Airflow's form keeps Trigger disabled while a field fails its schema: every default must pass it,
    the documented "empty = ..." fields included (null)."""
    params = _params()
    params.validate()  # raises ParamValidationError on the first field that fails
    for name in ("model_source", "ingress_host"):
        assert params[name] is None, name
        jsonschema.validate("", FORM_PARAMS[name])  # an emptied field sent as "" passes too
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("Bad Host!", FORM_PARAMS["ingress_host"])


def test_every_param_has_a_title_and_a_section() -> None:
    for name, form in FORM_PARAMS.items():
        assert form["title"] and form["section"], name
    sections = list(dict.fromkeys(f["section"] for f in FORM_PARAMS.values()))
    assert sections[:2] == ["Model", "Serving"] and "Load test and SLO" in sections
    assert FORM_PARAMS["hpa_metric_format"]["enum"] == ["v2beta1", "v2"]
    assert FORM_PARAMS["max_replicas"]["minimum"] == 1 and FORM_PARAMS["max_replicas"]["maximum"] == 100
    assert "SpotAsPriceGo" in FORM_PARAMS["node_pool"]["description"]
    assert "COST_OPTIMIZED" in FORM_PARAMS["node_pool"]["description"]


def test_the_description_says_how_long_a_run_takes() -> None:
    assert "holds load for 4 min (ramp 60 s + hold 180 s)" in FORM_PARAMS["load_test"]["description"]
    assert "up to 10 min (scale_in_timeout)" in FORM_PARAMS["load_test"]["description"]
    assert "holds load for 0.5 min" in expected_duration({"ramp_seconds": 6, "hold_seconds": 24})
    longer = expected_duration({"scale_in_timeout": 300, "pool_scale_in_timeout": 1500})
    assert "waits up to 5 min (scale_in_timeout), the pool's nodes up to 25 min (pool_scale_in_timeout)," in longer


def test_null_from_the_form_reads_as_empty(tmp_path: Path) -> None:
    params = {name: form["default"] for name, form in FORM_PARAMS.items()}
    # No model and no model Asset event: the one problem is the model, named with its fix.
    problems = check_run_config(params)
    assert problems and all(p.startswith("model_source is empty") for p in problems), problems
    params["model_source"] = str(saved_model_dir(tmp_path))
    assert check_run_config(params) == []  # ingress_host null = no host, as ""


def test_report_links_are_same_origin_paths_of_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPORTS_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    path = run_dir(None, "elastic_inference", "manual__2026-01-01T00:00:00+00:00") / "report.html"
    assert report_url(path) == f"{UI_PREFIX}/reports/elastic_inference/manual__2026-01-01T00_00_00_00_00/report.html"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://example.org/airflow")
    assert report_url(path).startswith("/airflow/elastic-inference/reports/")


def _context(ti: FakeTI, run_id: str) -> dict[str, Any]:
    return {"ti": ti, "dag": FakeDag(), "run_id": run_id}


def test_a_broken_slo_still_writes_the_report_and_the_run_view_shows_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPORTS_DIR_ENV, str(tmp_path))
    out = run_dir(None, "elastic_inference", "manual__1")
    timeline = make_timeline()
    timeline["slo"] = {"p95_ms": 5, "error_rate": 0.01, "breaches": ["p95 latency 9 ms exceeds the SLO of 5 ms"]}
    assert run_state(out)["phase"] == "none"
    out.mkdir(parents=True)
    (out / "timeline.live.json").write_text(json.dumps(timeline))
    live = run_state(out)
    assert live["phase"] == "load" and live["summary"] is None
    assert live["series"]["max_replicas"] == 10 and max(r[3] for r in live["series"]["cluster"]) == 5
    write_timeline(out / "timeline.json", timeline)
    ti = FakeTI({("load_test", "timeline_path"): str(out / "timeline.json")})
    op = ScaleVerificationOperator(task_id="verify", trigger_rule="all_done")
    with pytest.raises(AirflowFailException, match="load_test_slo: p95 latency 9 ms exceeds the SLO of 5 ms"):
        op.execute(_context(ti, "manual__1"))
    done = run_state(out)
    assert done["phase"] == "done" and done["reports"] == ["report.html"]
    assert done["summary"]["verdict"] == "failed" and done["summary"]["failed_checks"] == ["load_test_slo"]
    assert done["summary"]["report_url"] == f"{UI_PREFIX}/reports/elastic_inference/manual__1/report.html"
    html = (out / "report.html").read_text()
    assert "p95 latency 9 ms exceeds the SLO of 5 ms" in html and "failed checks: load_test_slo" in html
    assert '<a href="/dags/elastic_inference/runs/manual__1">the run in Airflow</a>' in html
    assert "<h1>Scale report — fashion-mnist-default-0-tfserving-proxy (run manual__1)</h1>" in html


def test_verification_after_a_load_test_that_never_ran_is_skipped(tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    op = ScaleVerificationOperator(task_id="verify", trigger_rule="all_done", reports_dir=str(tmp_path))
    with pytest.raises(AirflowSkipException, match="no load test ran"):
        op.execute(_context(FakeTI(), "manual__1"))


def test_the_page_cannot_be_closed_by_a_run_id() -> None:
    page = run_page("</script><b>x", "/s?a=</script>", "/r")
    assert "</script><b>" not in page and "&lt;/script&gt;&lt;b&gt;x" in page


def test_no_template_field_is_masked_by_its_name() -> None:
    """Airflow hides a rendered field whose name looks secret ("proxy", "password", ...): a provider field that
    holds no secret must not be named so (``proxy_image`` rendered as ***)."""
    # what the task runner redacts rendered fields with (airflow/sdk/execution_time/task_runner.py)
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    from elastic_inference.operators import (
        ingress,
        load_test,
        model_upload,
        node_pool,
        rollout,
        seldon,
        smoke_test,
        teardown,
        verify,
        volume,
    )

    modules = (ingress, load_test, model_upload, node_pool, rollout, seldon, smoke_test, teardown, verify, volume)
    fields = {
        f"{cls.__name__}.{field}"
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__module__ == module.__name__ and hasattr(cls, "template_fields")
        for field in cls.template_fields
    }
    assert "DeploySeldonOperator.model_unit_image" in fields
    assert [f for f in sorted(fields) if should_hide_value_for_key(f.split(".")[1])] == []
    assert should_hide_value_for_key("proxy_image")  # why the field was renamed


def test_the_applied_manifest_is_logged_with_a_secrets_values_redacted() -> None:
    from elastic_inference.operators._kubernetes import applied_manifest

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "oss"}, "stringData": {"akId": "LTAI-x"}}
    text = applied_manifest(secret)
    assert "LTAI-x" not in text and "akId: <redacted>" in text
    assert secret["stringData"]["akId"] == "LTAI-x"  # the object applied is left as it is
    assert "image: tfserving:2" in applied_manifest({"kind": "Pod", "spec": {"image": "tfserving:2"}})


def test_load_test_progress_lines_name_the_metric_and_count_the_nodes() -> None:
    from types import SimpleNamespace

    from elastic_inference.operators.load_test import LocustLoadTestOperator

    sample = next(s for s in make_timeline()["samples"] if s["t"] == 1050.0)  # the peak
    recorder = SimpleNamespace(samples=[sample], metric_name="sls_ingress_qps")
    line = LocustLoadTestOperator._cluster_line(recorder)  # type: ignore[arg-type]
    assert line.startswith("replicas 5 (HPA desired 5, ready ") and "| sls_ingress_qps 48.0 |" in line, line
    assert line.endswith("pool nodes: 1 PayAsYouGo, 4 Spot"), line
    assert LocustLoadTestOperator._cluster_line(None) == "cluster not sampled yet"
