"""The HTML report (plots, checks, cost) and the verify operator that writes it, on synthetic timelines."""

from __future__ import annotations

import base64
import html as html_text
import json
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from elastic_inference.links import REPORT_URL_KEY, report_url, run_dir
from elastic_inference.operators.verify import ScaleVerificationOperator
from elastic_inference.report import estimate_cost, render_report
from elastic_inference.timeline import write_timeline
from elastic_inference.verification import summary, verify
from tests.helpers import FakeDag, FakeTI
from tests.unit.support import OPTS, make_timeline

SEED_POLICY = {
    "spot_strategy": "SpotAsPriceGo",
    "on_demand_base_capacity": 0,
    "on_demand_percentage_above_base_capacity": 30,
}


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_holds_plots_checks_and_cost(tmp_path):
    tl = make_timeline(max_r=2)
    result = verify(tl, OPTS)
    info = summary(tl, result, report_path=str(tmp_path / "report.html"))
    path = render_report(tl, result, info, tmp_path / "report.html")
    html = path.read_text()
    pngs = images(html)
    assert len(pngs) == 4 and all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pngs)
    assert "verification failed" in html
    for name in ("replicas", "placement", "spot_mix", "failures_during_scale_out", "scale_in"):
        assert f"<td>{name}</td>" in html
    assert "maxReplicas=2 caps it; raise maxReplicas to at least 5" in html
    assert "replicas=2, uncapped=5, min=1, max=2, target=10, tolerance=1" in html  # readable, not a dict repr
    # 2 pool nodes at peak: 1 pay-as-you-go gn6i at 1.05 + 1 spot at 0.2625 USD/h.
    assert "1.31 USD/h at peak" in html and "all pay-as-you-go would be 2.10" in html


def test_cost_estimate_uses_the_price_table_and_names_unpriced_types():
    tl = make_timeline()
    cost = estimate_cost(tl, {"ecs.gn6i-c4g1.xlarge": (2.0, 0.5)})
    assert cost["hourly_at_peak"] == 2.0 + 4 * 0.5
    assert cost["hourly_if_all_payg"] == 10.0
    assert cost["run_cost"] > 0
    for sample in tl["samples"]:
        for n in sample["nodes"]:
            n["instance_type"] = "ecs.unknown"
    assert estimate_cost(tl)["unpriced"] == ["ecs.unknown"]


def test_html_escapes_what_comes_from_the_cluster(tmp_path):
    tl = make_timeline()
    tl["locust"]["failures"] = [{"method": "POST", "name": "p", "error": "<script>alert(1)</script>", "occurrences": 1}]
    result = verify(tl, OPTS)
    html = render_report(tl, result, summary(tl, result), tmp_path / "r.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def context(ti: FakeTI, run_id: str = "manual__1") -> dict[str, Any]:
    return {"ti": ti, "dag": FakeDag(), "run_id": run_id}


def test_verify_operator_passes_and_links_the_report(tmp_path):
    path = write_timeline(tmp_path / "tl" / "timeline.json", make_timeline())
    ti = FakeTI({("load_test", "timeline_path"): str(path)})
    op = ScaleVerificationOperator(task_id="verify", pool_policy=SEED_POLICY, reports_dir=str(tmp_path))
    out = op.execute(context(ti))
    report = run_dir(str(tmp_path), "elastic_inference", "manual__1") / "report.html"
    assert out["verdict"] == "passed" and out["report_path"] == str(report) and report.is_file()
    assert out["replicas_reached"] == 5 and out["nodes_by_charge_type"] == {"PayAsYouGo": 1, "Spot": 4}
    assert [c["name"] for c in out["checks"]][-1] == "scale_in"
    assert ti.xcom[REPORT_URL_KEY] == report.resolve().as_uri()


def test_verify_operator_fails_with_a_human_message_and_still_writes_the_report(tmp_path):
    path = write_timeline(tmp_path / "timeline.json", make_timeline(max_r=2, fail_at=(1016, 1020, 1022)))
    ti = FakeTI()
    op = ScaleVerificationOperator(
        task_id="verify",
        timeline_path=str(path),
        pool_policy=SEED_POLICY,
        reports_dir=str(tmp_path),
        report_base_url="http://reports.local/r",
    )
    with pytest.raises(AirflowFailException) as excinfo:
        op.execute(context(ti, "manual__2026-11-25T12:00:00+00:00"))
    msg = str(excinfo.value)
    assert msg.startswith("Scale verification failed (2 of 5 checks):")
    assert (
        "- replicas: replicas reached 2 but the HPA formula predicts 5 for 48 QPS at target 10 — maxReplicas=2 caps it"
    ) in msg
    assert "- failures_during_scale_out: 3 of " in msg and "HTTP 503: no endpoints (3x)" in msg
    assert ti.xcom["summary"]["verdict"] == "failed"
    assert ti.xcom[REPORT_URL_KEY] == (
        "http://reports.local/r/elastic_inference/manual__2026-11-25T12_00_00_00_00/report.html"
    )
    assert Path(ti.xcom["summary"]["report_path"]).is_file()


def test_verify_operator_without_a_timeline_says_where_it_looked(tmp_path):
    op = ScaleVerificationOperator(task_id="verify", reports_dir=str(tmp_path))
    with pytest.raises(AirflowFailException, match="task 'load_test' pushed no 'timeline_path' XCom"):
        op.execute(context(FakeTI()))
    op = ScaleVerificationOperator(task_id="verify", timeline_path=str(tmp_path / "missing.json"))
    with pytest.raises(AirflowFailException, match="missing.json' does not exist; the load-test task writes it"):
        op.execute(context(FakeTI()))


def test_report_url_is_file_uri_outside_the_base(tmp_path):
    assert report_url(tmp_path / "x.html") == (tmp_path / "x.html").resolve().as_uri()
    assert (
        report_url(Path("/elsewhere/x.html"), reports_dir=str(tmp_path), base_url="http://h/")
        == "file:///elsewhere/x.html"
    )


def test_cost_is_split_before_during_and_after_the_load_by_charge_type():
    """The pool holds its 5 nodes (1 pay-as-you-go, 4 spot gn6i) until t=1105, 45 s after the load stopped."""
    tl = make_timeline(scale_in_at=1080, pool_in_at=1105)
    cost = estimate_cost(tl)
    phases = {p["name"]: p for p in cost["phases"]}
    assert [p["name"] for p in cost["phases"]] == ["before the load", "during the load", "after the load"]
    assert (phases["before the load"]["seconds"], phases["during the load"]["seconds"]) == (10.0, 60.0)
    assert phases["after the load"]["seconds"] == 60.0  # recorded to t=1120
    # After the load: 45 s at 1 + 4 nodes, then 15 s at the 1 pay-as-you-go node left.
    after = phases["after the load"]["node_hours"]
    assert after == {"PayAsYouGo": round(60 / 3600, 5), "Spot": round(4 * 45 / 3600, 5)}
    assert phases["after the load"]["cost"] == pytest.approx((60 * 1.05 + 4 * 45 * 0.2625) / 3600, abs=1e-5)
    assert cost["after_cost"] == phases["after the load"]["cost"] and cost["load_cost"] > 0
    assert cost["run_cost"] == pytest.approx(sum(p["cost"] for p in cost["phases"]), abs=1e-4)
    # The same run whose pool shrinks with the replicas costs less after the load.
    assert estimate_cost(make_timeline(scale_in_at=1080))["after_cost"] < cost["after_cost"]


def test_report_shows_the_pool_scale_in_the_cost_after_the_load_and_the_time_scale(tmp_path):
    tl = make_timeline(scale_in_at=1080, pool_in_at=1105)
    result = verify(tl, OPTS)
    html = render_report(tl, result, summary(tl, result), tmp_path / "r.html", time_scale=30).read_text()
    assert "back to 1 node(s) 45 s after the load stopped (from 5 at the peak)" in html
    assert re.search(r"≈ [\d.]+ USD: [\d.]+ during the load, [\d.]+ after it", html)
    assert '<table id="cost-phases">' in html and "<td>after the load</td><td>60 s</td>" in html
    found = re.search(r'<p class="note" id="time-scale">(.*?)</p>', html, re.S)
    assert found, html
    note = html_text.unescape(found[1])
    # 5 s of node provisioning here x 30 = 150 s; 45 s to shrink back x 30 = 22.5 min.
    assert note.startswith("Sandbox run: the cloud's delays were compressed 30× (the connection's time_scale)")
    assert "node provisioning 5 s here is ~2.5 min on ACK" in note
    assert "the pool back to 1 node(s) 45 s after the load is ~23 min on ACK" in note
    cost = estimate_cost(tl)["after_cost"]
    assert f"its cost after the load, {cost:.4f} USD here, would be ~{cost * 30:.4f} USD" in note
    assert note.endswith("The load itself ran in real time.")

    # A real cluster (no time scale known): not a word of it; a pool not back when the recording ended says so.
    never = make_timeline(pool_in_at=None)
    result = verify(never, OPTS)
    html = render_report(never, result, summary(never, result), tmp_path / "real.html").read_text()
    assert 'id="time-scale"' not in html and "compressed" not in html and "on ACK" not in html
    assert "not back: 5 node(s) (before the load 1, peak 5) when the recording ended 60 s after the load" in html


def test_max_replicas_is_drawn_and_labelled_on_the_replicas_axis():
    """The maxReplicas line belongs to the right (replicas / nodes) axis, and its label sits at that axis's side,
    not beside the requests/s axis."""
    from elastic_inference.report import _plt, scaling_figure

    fig = scaling_figure(make_timeline(max_r=6))
    try:
        rps, replicas = fig.axes
        assert (rps.get_ylabel(), replicas.get_ylabel()) == ("requests / s", "replicas / nodes")
        labels = [t for t in replicas.texts if t.get_text().startswith("maxReplicas")]
        assert [(t.get_text(), t.get_position(), t.get_ha()) for t in labels] == [
            ("maxReplicas 6 →", (0.995, 6), "right")
        ]
        assert not [t for t in rps.texts if "maxReplicas" in t.get_text()]
        assert any(list(line.get_ydata()) == [6, 6] for line in replicas.get_lines())  # the axhline at 6 replicas
    finally:
        _plt().close(fig)


def test_the_time_scale_comes_from_the_connection_extra_and_a_bad_one_is_named():
    from airflow.sdk import Connection

    from elastic_inference.exceptions import AlibabaCloudCredentialsError
    from elastic_inference.hooks.base import AlibabaCloudSettings

    def conn(**extra: Any) -> Connection:
        return Connection(conn_id="ack", conn_type="alibaba_ack", login="AK", password="SK", extra=json.dumps(extra))

    assert AlibabaCloudSettings.from_connection(conn(region_id="cn-beijing")).time_scale is None  # a real cloud
    assert AlibabaCloudSettings.from_connection(conn(time_scale="30")).time_scale == 30.0
    for bad in ("fast", 0, -2):
        with pytest.raises(AlibabaCloudCredentialsError, match=r"extra time_scale=.* must be a number > 0"):
            AlibabaCloudSettings.from_connection(conn(time_scale=bad))


def test_verify_operator_says_the_time_scale_it_is_given_and_nothing_without_one(tmp_path):
    path = write_timeline(tmp_path / "timeline.json", make_timeline(pool_in_at=1100))
    for run_id, scale in (("sandbox", 30), ("real", None)):
        op = ScaleVerificationOperator(
            task_id="verify",
            timeline_path=str(path),
            pool_policy=SEED_POLICY,
            reports_dir=str(tmp_path),
            time_scale=scale,
        )
        out = op.execute(context(FakeTI(), run_id))
        html = Path(out["report_path"]).read_text()
        assert out["pool_back_after_s"] == 40.0 and out["cost_after_load_usd"] > 0
        assert ("compressed 30×" in html) == (scale is not None) and out.get("time_scale") == scale
    with pytest.raises(AirflowFailException, match="time_scale must be > 0"):
        ScaleVerificationOperator(task_id="v", timeline_path=str(path), time_scale=0).execute(context(FakeTI()))
