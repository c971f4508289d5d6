"""Verify that the endpoint scaled as it should under the load test, and write the HTML report.

Reads the timeline the load-test task wrote (path from its XCom ``timeline_path`` or ``timeline_path=``),
runs the pure checks of ``elastic_inference.verification``, writes
``<reports_dir>/<dag_id>/<run_id>/report.html`` and links it from the task (extra link "Scale report").

Outputs (XCom): ``return_value`` = the summary of DESIGN §5 (endpoint, replicas_reached,
nodes_by_charge_type, p95_latency_ms, error_rate, rps, verdict, failed_checks, report_path; and
pool_back_after_s, cost_during_load_usd, cost_after_load_usd, time_scale when known) plus ``checks``;
``report_url``. On a failed check it raises ``AirflowFailException`` with one line per failed check, after
the report is written (so the link works on failed runs too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from elastic_inference.links import REPORT_URL_KEY, ScaleReportLink, report_url, run_dir, ui_base_path
from elastic_inference.rollout.record import read_rollout_file

if TYPE_CHECKING:
    from airflow.sdk import Context


class ScaleVerificationOperator(BaseOperator):
    """Check replicas vs the HPA formula, pod placement, spot/pay-as-you-go mix, failures during scale-out
    and scale-in; write the report.

    :param timeline_path: the timeline JSON (templated); default: XCom ``timeline_path`` of
        ``load_test_task_id``.
    :param load_test_task_id: the ``LocustLoadTestOperator`` task.
    :param pool_policy: the pool's charge policy, e.g. the node pool spec or its ``scaling_group``:
        ``{"spot_strategy": "SpotAsPriceGo", "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 30}``. When None and ``ack_conn_id`` is set, it is read from
        the pool itself (DescribeClusterNodePoolDetail of the timeline's ``node_pool_id``); otherwise the
        spot-mix check is left out.
    :param ack_conn_id: ``alibaba_ack`` connection to read the pool's policy with; ``cluster_id`` overrides its
        extra.
    :param replica_tolerance: allowed distance between peak replicas and the HPA formula (default 1).
    :param mix_tolerance: allowed distance, in nodes, from the policy's pay-as-you-go count (default 1).
    :param failure_budget: requests allowed to fail during scale-out (default 0).
    :param check_scale_in: also require replicas back at ``minReplicas`` after the load.
    :param scale_in_timeout: seconds allowed for that (default: the load test spec's, else what the load test
        waited).
    :param metric_lag: seconds the QPS metric trails the load (the metric window plus delay, time-scaled);
        default: the load test spec's ``metric_lag_seconds``, else 0.
    :param load_test: the run's :class:`~elastic_inference.specs.LoadTestSpec` (templated, e.g. the ``plan``
        task's ``load_test``): where ``scale_in_timeout`` and ``metric_lag`` come from unless given.
    :param price_table: ``{instance_type: (payg_usd_per_hour, spot_usd_per_hour)}`` for the cost estimate (over
        the report's built-in illustrative list prices).
    :param time_scale: how many times faster than the cloud's the cluster's delays ran (a stand-in's); default:
        the ``ack_conn_id`` connection's extra ``time_scale`` (the sandbox sets it; a real cluster has none, and
        the report then says nothing of it).
    :param reports_dir: as for the load test; ``report_base_url``: serve links from here instead of file://.
    :param fail_on_breach: raise when a check fails (False: report and push the verdict only).
    :param min_agreement: the load test's predictions must agree with the labels at least this often (templated;
        None: no check).
    """

    template_fields: Sequence[str] = (
        "timeline_path",
        "pool_policy",
        "reports_dir",
        "report_base_url",
        "cluster_id",
        "replica_tolerance",
        "mix_tolerance",
        "failure_budget",
        "scale_in_timeout",
        "metric_lag",
        "load_test",
        "min_agreement",
        "time_scale",
    )
    template_fields_renderers = {"pool_policy": "json", "load_test": "json"}
    operator_extra_links = (ScaleReportLink(),)
    ui_color = "#f4e8e8"

    def __init__(
        self,
        *,
        timeline_path: str | None = None,
        load_test_task_id: str = "load_test",
        pool_policy: dict[str, Any] | None = None,
        ack_conn_id: str | None = None,
        cluster_id: str | None = None,
        replica_tolerance: int = 1,
        mix_tolerance: int = 1,
        failure_budget: int = 0,
        check_scale_in: bool = True,
        scale_in_timeout: float | None = None,
        metric_lag: float | None = None,
        load_test: Mapping[str, Any] | str | None = None,
        price_table: Mapping[str, Sequence[float]] | None = None,
        reports_dir: str | None = None,
        report_base_url: str | None = None,
        fail_on_breach: bool = True,
        min_agreement: float | str | None = None,
        time_scale: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.timeline_path = timeline_path
        self.load_test_task_id = load_test_task_id
        self.pool_policy = pool_policy
        self.ack_conn_id = ack_conn_id
        self.cluster_id = cluster_id
        self.replica_tolerance = replica_tolerance
        self.mix_tolerance = mix_tolerance
        self.failure_budget = failure_budget
        self.check_scale_in = check_scale_in
        self.scale_in_timeout = scale_in_timeout
        self.metric_lag = metric_lag
        self.load_test = load_test
        self.price_table = {k: (float(v[0]), float(v[1])) for k, v in (price_table or {}).items()}
        self.reports_dir = reports_dir
        self.report_base_url = report_base_url
        self.fail_on_breach = fail_on_breach
        self.min_agreement = min_agreement
        self.time_scale = time_scale

    def _timeline_path(self, context: Context) -> str:
        if self.timeline_path:
            return str(self.timeline_path)
        path = context["ti"].xcom_pull(task_ids=self.load_test_task_id, key="timeline_path")
        if not path and self.trigger_rule != "all_success":
            # Run after a failed load test (trigger_rule all_done): no timeline means no load ran, nothing to report.
            raise AirflowSkipException(f"task {self.load_test_task_id!r} recorded no timeline: no load test ran")
        if not path:
            raise AirflowFailException(
                f"no timeline: task {self.load_test_task_id!r} pushed no 'timeline_path' XCom (did it run in this "
                f"DAG run?); set load_test_task_id or timeline_path"
            )
        return str(path)

    def _pool_policy_from_ack(self, timeline: dict[str, Any]) -> dict[str, Any]:
        from elastic_inference.hooks.ack import AckHook

        pool_id = (timeline.get("meta") or {}).get("pool_id")
        if not pool_id:
            raise AirflowFailException(
                "ack_conn_id is set but the load test recorded no node_pool_id; pass "
                "node_pool_id to the load test or pool_policy here"
            )
        pool = AckHook(self.ack_conn_id, cluster_id=self.cluster_id).describe_node_pool(pool_id, self.cluster_id)
        self.log.info(
            "Pool %s policy from ACK: %s",
            pool_id,
            {
                k: (pool.get("scaling_group") or {}).get(k)
                for k in ("spot_strategy", "on_demand_base_capacity", "on_demand_percentage_above_base_capacity")
            },
        )
        return pool

    def _time_scale(self) -> float | None:
        """The given ``time_scale``, else the ACK connection's (a stand-in's compressed delays); None: real cloud."""
        from elastic_inference.specs import coerce

        given = coerce(self.time_scale, "number", "time_scale", optional=True)
        if given is not None:
            if given <= 0:
                raise AirflowFailException(f"time_scale must be > 0, got {given} (leave it out on a real cluster)")
            return float(given)
        if not self.ack_conn_id:
            return None
        from elastic_inference.hooks.ack import AckHook

        return AckHook(self.ack_conn_id, cluster_id=self.cluster_id).settings.time_scale

    @staticmethod
    def _deployment(context: Context, timeline: dict[str, Any]) -> str:
        """The SeldonDeployment the run deployed (the report's title), not the generated pod-spec Deployment."""
        serving = (context["ti"].xcom_pull(task_ids="plan", key="return_value") or {}).get("serving") or {}
        meta = timeline.get("meta") or {}
        return str(serving.get("name") or meta.get("deployment") or "deployment")

    def execute(self, context: Context) -> dict[str, Any]:
        from elastic_inference.report import estimate_cost, render_report
        from elastic_inference.specs import LoadTestSpec, coerce
        from elastic_inference.timeline import read_timeline
        from elastic_inference.verification import PoolPolicy, VerifyOptions, summary, verify

        if self.load_test is not None:
            spec = LoadTestSpec.from_mapping(self.load_test).validate()
            self.scale_in_timeout = spec.scale_in_timeout if self.scale_in_timeout is None else self.scale_in_timeout
            self.metric_lag = spec.metric_lag_seconds if self.metric_lag is None else self.metric_lag
        for name, kind in (
            ("replica_tolerance", "integer"),
            ("mix_tolerance", "integer"),
            ("failure_budget", "integer"),
            ("scale_in_timeout", "number"),
            ("metric_lag", "number"),
            ("min_agreement", "number"),
        ):
            setattr(self, name, coerce(getattr(self, name), kind, name, optional=True))
        try:
            timeline = read_timeline(self._timeline_path(context))
        except (OSError, ValueError) as e:
            raise AirflowFailException(str(e)) from e
        policy = coerce(self.pool_policy, "object", "pool_policy", optional=True)  # may be rendered text
        if policy is None and self.ack_conn_id:
            policy = self._pool_policy_from_ack(timeline)
        opts = VerifyOptions(
            replica_tolerance=self.replica_tolerance or 0,
            mix_tolerance=self.mix_tolerance or 0,
            failure_budget=self.failure_budget or 0,
            check_scale_in=self.check_scale_in,
            scale_in_timeout=self.scale_in_timeout,
            metric_lag=self.metric_lag or 0.0,
            pool_policy=PoolPolicy.from_dict(policy),
            min_agreement=self.min_agreement,
        )
        time_scale = self._time_scale()
        result = verify(timeline, opts)
        out = run_dir(self.reports_dir, context["dag"].dag_id, context["run_id"]) / "report.html"
        cost = estimate_cost(timeline, self.price_table)
        info = summary(timeline, result, report_path=str(out))
        info["pool_back_after_s"] = result.facts["pool_scale_in"]["back_after_s"]
        info["cost_during_load_usd"] = cost["load_cost"]
        info["cost_after_load_usd"] = cost["after_cost"]
        if time_scale is not None:
            info["time_scale"] = time_scale
        rollout = read_rollout_file(out.parent)
        if rollout:
            info["rollout"] = rollout.get("verdict")
        render_report(
            timeline,
            result,
            info,
            out,
            price_table=self.price_table,
            rollout=rollout or None,
            title=f"Scale report — {self._deployment(context, timeline)} (run {context['run_id']})",
            run_link=f"{ui_base_path()}/dags/{quote(context['dag'].dag_id)}/runs/{quote(context['run_id'], safe='')}",
            time_scale=time_scale,
        )
        url = report_url(out, reports_dir=self.reports_dir, base_url=self.report_base_url)
        # The run view's summary (the plugin reads it beside the report): the verdict, endpoint, peaks, cost.
        (out.parent / "verdict.json").write_text(
            json.dumps({**info, "cost_usd": cost["run_cost"], "report_url": url}), encoding="utf-8"
        )
        ti = context["ti"]
        ti.xcom_push(key=REPORT_URL_KEY, value=url)
        for c in result.checks:
            (self.log.info if c.passed else self.log.error)(
                "%s %s: %s", "PASS" if c.passed else "FAIL", c.name, c.message
            )
        self.log.info("Report: %s", url)
        self.log.info("Summary: %s", json.dumps(info))
        if not result.passed and self.fail_on_breach:
            ti.xcom_push(key="summary", value=info)
            raise AirflowFailException(f"{result.failure_message()}\nReport: {out}")
        return {**info, "checks": [c.to_dict() for c in result.checks]}
