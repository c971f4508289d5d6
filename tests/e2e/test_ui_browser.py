"""What a person sees in Airflow's UI, in a real browser (headless Chromium, ``tests/e2e/browser.py``), on the one
run under the real scheduler that ``test_real_scheduler`` checks (no run of its own):

- during the load test, the run's Scale-out tab (the provider's UI plugin) draws the timeline recorded so far
  (caught while the run goes: ``conftest.live_view``);
- after it, the tab shows the verdict; the task's Details tab has the "Scale report" extra link, same origin,
  which opens the report; the ingress task has the "Endpoint" link;
- a broken SLO still gives a report naming the failed check, served by the plugin;
- the trigger form submits with its defaults (Trigger enabled, the run created with them).

The waits' progress lines are checked in the triggerer's logs of the same run. Screenshots go to
``$UI_SCREENSHOTS_DIR`` (``docs/screenshots`` for the README) or a temporary directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.browser import VIEW_ROUTE, browser, run_dir, run_path, screenshots, view_text
from tests.e2e.support import SCHEDULER_RUN_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(SCHEDULER_RUN_TIMEOUT + 900)]


def _details_link(page, base: str, run_id: str, task_id: str, name: str):
    page.goto(base + run_path(run_id) + f"/tasks/{task_id}")
    page.get_by_role("link", name="Details", exact=True).or_(page.get_by_text("Details", exact=True)).first.click()
    link = page.get_by_role("link", name=name, exact=True)
    link.wait_for(timeout=60_000)
    return link


def test_the_run_in_a_real_browser(scheduler_run, live_view, tmp_path: Path) -> None:
    standalone, run = scheduler_run
    result = run.result(timeout=SCHEDULER_RUN_TIMEOUT + 600)  # its own failure first: the cause, not a symptom
    assert result["state"] == "success", result["task_states"]
    live = live_view.result(timeout=120)
    # The live view: drawn from the load test's timeline while it ran, before the verdict existed.
    assert "load test running" in live["text"], live["text"][:500]
    assert live["charts"] == 3 and live["lines"] >= 4, live
    assert "Replicas and pool nodes (maxReplicas 3)" in live["text"], live["text"][:500]
    run_id, base = result["run_id"], standalone.base
    predict_url = standalone.api(
        "GET", f"/api/v2/dags/elastic_inference/dagRuns/{run_id}/taskInstances/ingress.ingress/xcomEntries/return_value"
    )["value"]["predict_url"]

    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        # After the run: the Scale-out tab of the run page shows the verdict, peaks and the report link.
        page.goto(base + run_path(run_id) + "/plugin/" + VIEW_ROUTE)
        verdict = page.frame_locator("iframe").first.locator("#verdict")
        verdict.wait_for(timeout=60_000)
        assert verdict.inner_text() == "passed"
        text = view_text(page)
        assert "load test finished" in text and "endpoint" in text and "replicas reached" in text, text[:800]
        page.screenshot(path=str(screenshots() / "ui-run-verdict.png"))

        # The task's Details tab: the Scale report link is same-origin and opens the report.
        link = _details_link(page, base, run_id, "verify.scale_verification", "Scale report")
        href = link.get_attribute("href") or ""
        assert href.startswith("/elastic-inference/reports/elastic_inference/") and href.endswith("/report.html")
        page.screenshot(path=str(screenshots() / "ui-extra-links.png"))
        if link.get_attribute("target") == "_blank":  # the UI opens other origins in a new tab, its own in place
            with page.expect_popup() as popup_info:
                link.click()
            report = popup_info.value
        else:
            with page.expect_navigation():
                link.click()
            report = page
        report.wait_for_load_state()
        assert report.url == base + href
        assert report.title() == f"Scale report — fm-sched (run {run_id})"
        assert "passed" in report.locator("body").inner_text()
        report.screenshot(path=str(screenshots() / "ui-scale-report.png"))
        if report is not page:
            report.close()

        # The ingress task links the endpoint.
        endpoint = _details_link(page, base, run_id, "ingress.ingress", "Endpoint")
        assert endpoint.get_attribute("href") == predict_url

        # A broken SLO still gives a report, naming the failed check: this run's timeline with a breach, verified
        # by the same operator into a run directory of its own, opened through the plugin.
        breach = _slo_breach_report(standalone, run_id)
        report = b.new_page(viewport={"width": 1400, "height": 1000})
        report.goto(base + f"/elastic-inference/reports/elastic_inference/{breach}/report.html")
        body = report.locator("body").inner_text()
        assert "load_test_slo" in body and "exceeds the SLO" in body, body[:800]
        report.screenshot(path=str(screenshots() / "ui-report-slo-breach.png"), full_page=False)
        report.close()

        # The trigger form: Trigger is enabled with every default and creates a run with them.
        before = {r["dag_run_id"] for r in _runs(standalone)}
        page.goto(base + "/dags/elastic_inference")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Load test and SLO", exact=True).click()
        assert dialog.get_by_text("holds load for 4 min (ramp 60 s + hold 180 s)", exact=False).is_visible()
        page.screenshot(path=str(screenshots() / "ui-trigger-form.png"))
        submit = dialog.get_by_role("button", name="Trigger", exact=True)
        assert submit.is_enabled()
        submit.click()
        created = standalone.wait(
            "the run the form triggered", lambda: [r for r in _runs(standalone) if r["dag_run_id"] not in before], 60
        )
    (new,) = created
    assert new["conf"]["model_source"] is None and new["conf"]["ingress_host"] is None, new["conf"]
    assert new["conf"]["load_test"]["hold_seconds"] == 180 and new["conf"]["max_replicas"] == 10, new["conf"]
    # Its plan fails at once here (no model_source and no model Asset event in this Airflow): not waited for.
    standalone.api("PATCH", f"/api/v2/dags/elastic_inference/dagRuns/{new['dag_run_id']}", {"state": "failed"})

    # Waits that talk: the deferred Seldon wait logged its progress in the task's triggerer log.
    logs = Path(standalone.env["AIRFLOW_HOME"]) / "logs" / "dag_id=elastic_inference"
    seldon = [p for p in logs.rglob("*.trigger.*.log") if run_id in str(p) and "serving.seldon_deployment" in str(p)]
    said = "".join(p.read_text(errors="replace") for p in seldon)
    # The first line comes before the first look, so it is there even when the deployment was ready by then.
    assert "waiting for SeldonDeployment sched/fm-sched to be Available | " in said and " s left (deadline " in said
    assert "done waiting for SeldonDeployment sched/fm-sched to be Available after " in said, said[-2000:]


def _runs(standalone) -> list[dict]:
    return standalone.api("GET", "/api/v2/dags/elastic_inference/dagRuns?limit=50")["dag_runs"]


def _slo_breach_report(standalone, run_id: str) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    from elastic_inference.operators.verify import ScaleVerificationOperator
    from elastic_inference.timeline import read_timeline, write_timeline
    from tests.helpers import FakeDag, FakeTI

    name = "slo_breach"
    timeline = read_timeline(run_dir(standalone, run_id) / "timeline.json")
    timeline["slo"] = {**timeline["slo"], "breaches": ["p95 latency 900 ms exceeds the SLO of 500 ms (slo_p95_ms)"]}
    out = run_dir(standalone, name)
    path = write_timeline(out / "timeline.json", timeline)
    op = ScaleVerificationOperator(
        task_id="scale_verification",
        timeline_path=str(path),
        reports_dir=str(Path(standalone.env["ELASTIC_INFERENCE_REPORTS_DIR"])),
        trigger_rule="all_done",
    )
    with pytest.raises(AirflowFailException, match="load_test_slo"):
        op.execute({"ti": FakeTI(), "dag": FakeDag(), "run_id": name})
    assert json.loads((out / "verdict.json").read_text())["failed_checks"] == ["load_test_slo"]
    return name
