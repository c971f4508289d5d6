"""Load test the endpoint with locust and record what the cluster does meanwhile, in one task.

One task, because ``airflow dags test`` runs tasks one at a time: locust runs as a subprocess (it
monkey-patches the process with gevent on import, so it never runs in the worker itself) while this task
polls the Kubernetes API into a timeline, and keeps recording after the load stops until the Deployment is
back at ``minReplicas`` (bounded by ``scale_in_timeout``) and the elastic pool has released the nodes the load
made it add (bounded by ``pool_scale_in_timeout``). The verify operator reads the timeline file.

Outputs (XCom): ``return_value`` = ``{"stats", "checks", "plan", "endpoint", "run_dir", "timeline_path",
"locust_html", "slo"}`` (small), ``timeline_path`` = the JSON file path (for
``ScaleVerificationOperator``), ``locust_report_url`` (the extra link). Fails (``AirflowFailException``)
when the error rate or the p95 latency breaks the SLO, after the timeline is written.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from elastic_inference.child_process import child_env, kill_group, start_options
from elastic_inference.links import LOCUST_URL_KEY, LocustReportLink, report_url, run_dir
from elastic_inference.specs import LoadTestSpec, coerce

if TYPE_CHECKING:
    from airflow.sdk import Context

    from elastic_inference.load_shape import LoadPlan
    from elastic_inference.timeline import TimelineRecorder

_PKG = Path(__file__).resolve().parents[1]
_LOCUSTFILE_CANDIDATES = (
    _PKG / "locust" / "locustfile.py",  # wheel (force-include)
    _PKG.parents[1] / "include" / "locust" / "locustfile.py",
)  # source checkout
SELDON_ID_LABEL = "seldon-deployment-id"


def default_locustfile() -> Path:
    for candidate in _LOCUSTFILE_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise AirflowFailException(
        f"locustfile not found in {', '.join(map(str, _LOCUSTFILE_CANDIDATES))}; pass locustfile="
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_predict_url(url: str, request_path: str | None) -> tuple[str, str | None]:
    """``http://h:80/x/api/v1.0/predictions`` -> (``http://h:80/x``, ``/api/v1.0/predictions``); a base URL or an
    explicit ``request_path`` leaves the URL alone."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if request_path or not parts.path:
        return url.rstrip("/") if not request_path else url, request_path
    for marker in ("/api/v1.0/predictions", "/v1/models/"):
        i = parts.path.find(marker)
        if i >= 0 and (marker != "/v1/models/" or parts.path.endswith(":predict")):
            base = urlunsplit((parts.scheme, parts.netloc, parts.path[:i], "", ""))
            return base, parts.path[i:] + (f"?{parts.query}" if parts.query else "")
    return url.rstrip("/"), request_path


def slo_breaches(stats: dict[str, Any], *, slo_error_rate: float | None, slo_p95_ms: float | None) -> list[str]:
    """Human sentences for each SLO the run broke (empty when it met them)."""
    out = []
    if stats["requests"] == 0:
        return ["locust sent no request at all (check the host URL and the locust log)"]
    if slo_error_rate is not None and stats["error_rate"] > slo_error_rate:
        out.append(
            f"error rate {stats['error_rate']:.2%} ({stats['failures']} of {stats['requests']} requests "
            f"failed) exceeds the SLO of {slo_error_rate:.2%} (slo_error_rate)"
        )
    p95 = stats.get("p95_ms")
    if slo_p95_ms is not None and p95 is not None and p95 > slo_p95_ms:
        out.append(
            f"p95 latency {p95:.0f} ms exceeds the SLO of {slo_p95_ms:.0f} ms (slo_p95_ms) "
            f"over {stats['requests']} requests"
        )
    return out


def agreement_breaches(checks: Mapping[str, Any], min_agreement: float | None) -> list[str]:
    """The bounded label check: predictions agreeing with the labels, at least ``min_agreement`` of them."""
    if min_agreement is None or not checks.get("checked"):
        return []
    agreement = 1 - checks["mismatches"] / checks["checked"]
    if agreement >= min_agreement:
        return []
    return [
        f"agreement {agreement:.2%}: {checks['mismatches']} of {checks['checked']} predictions disagreed with the "
        f"label, below the bound of {min_agreement:.2%} (rollout.min_agreement)"
    ]


class LocustLoadTestOperator(BaseOperator):
    """Run a staged locust load against a prediction endpoint and record the cluster's response.

    :param host: base URL of the endpoint, e.g. the ingress ``http://<address>`` (templated). A full predict URL
        (ending in ``/api/v1.0/predictions`` or ``:predict``, like the ingress operator's ``predict_url``) is
        split into the base URL and the request path.
    :param protocol: ``seldon`` (POST ``/api/v1.0/predictions`` with ``{"data": {"ndarray": ...}}``) or
        ``tfserving`` (POST ``/v1/models/<model_name>:predict`` with ``{"instances": ...}``).
    :param model_name: TF Serving model name (``tfserving`` only).
    :param request_path: overrides the predict path.
    :param request_headers: extra headers, e.g. ``{"Host": "<ingress host>"}`` (templated; headers rendered empty
        are dropped). Not for secrets.
    :param samples_path: ``.npz``/``.json`` of real test images and labels (templated); predictions are
        checked against the labels (mismatches are counted, not failed).
    :param load_test: the :class:`~elastic_inference.specs.LoadTestSpec` whole (templated, e.g. the ``plan``
        task's ``load_test``): the shape (``qps_target x max_replicas x fill_factor`` RPS unless ``target_rps``,
        ``ramp_seconds``, ``hold_seconds``, ``ramp_steps``, ``rps_per_user``; see ``load_shape.plan_load``), the
        SLO (``slo_error_rate``, ``slo_p95_ms``; None: no check), ``workers`` (0: one locust process; N: a master
        and N workers on 127.0.0.1), ``record_interval``, ``scale_in_timeout`` (after the load, record until
        replicas are back at ``minReplicas``; 0: stop with the load), ``max_samples``, ``flatten_images`` (each
        image as one flat row), ``progress_interval`` and ``startup_grace``. Any of these fields may also be given
        as a keyword of its own; it then overrides the mapping's value.
    :param record_cluster: poll the cluster into the timeline (False: load only).
    :param kubernetes_conn_id / ack_conn_id / cluster_id: where the cluster is (see ``hooks.kubernetes``).
    :param namespace: namespace of the SeldonDeployment / Deployment.
    :param seldon_deployment: find the Deployment by label ``seldon-deployment-id=<name>`` ...
    :param deployment_name: ... or name it directly.
    :param node_pool_id: the elastic pool's id (node label ``alibabacloud.com/nodepool-id``); default: the pods'
        nodeSelector decides which nodes belong to the pool.
    :param pool_node_selector: labels that mark the pool's nodes (instead of ``node_pool_id``).
    :param metric_name / metric_selector: the external metric to record; default: the HPA's own.
    :param reports_dir: root of the reports (default ``$ELASTIC_INFERENCE_REPORTS_DIR`` or
        ``$AIRFLOW_HOME/reports``); this run writes ``<reports_dir>/<dag_id>/<run_id>/``.
    :param locust_command: the command that starts locust (default ``[sys.executable, "-m", "locust"]``).
    :param version_check: ``{"namespace", "pod_selector", "model_name", "version", "backend"}`` (templated): every
        replica that is ready at some sample of the run must serve exactly ``version`` (its model server's status
        API, asked once per replica); otherwise the test fails naming the pods.
    :param min_agreement: fail when fewer of the predictions than this agree with the labels (None: counted only).
    """

    template_fields: Sequence[str] = (
        "load_test",
        "host",
        "protocol",
        "model_name",
        "request_path",
        "request_headers",
        "samples_path",
        "namespace",
        "seldon_deployment",
        "deployment_name",
        "node_pool_id",
        "pool_node_selector",
        "reports_dir",
        "cluster_id",
        "version_check",
        "min_agreement",
    )
    template_fields_renderers = {"load_test": "json"}
    operator_extra_links = (LocustReportLink(),)
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        host: str,
        load_test: LoadTestSpec | Mapping[str, Any] | str | None = None,
        protocol: str = "seldon",
        model_name: str | None = None,
        request_path: str | None = None,
        request_headers: dict[str, str] | None = None,
        samples_path: str | None = None,
        record_cluster: bool = True,
        kubernetes_conn_id: str | None = "kubernetes_default",
        ack_conn_id: str | None = None,
        cluster_id: str | None = None,
        namespace: str = "default",
        seldon_deployment: str | None = None,
        deployment_name: str | None = None,
        node_pool_id: str | None = None,
        pool_node_selector: dict[str, str] | None = None,
        metric_name: str | None = None,
        metric_selector: dict[str, str] | None = None,
        reports_dir: str | None = None,
        locust_command: Sequence[str] | None = None,
        locustfile: str | None = None,
        version_check: Mapping[str, Any] | str | None = None,
        min_agreement: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        fields = {f.name for f in LoadTestSpec.spec_fields()}
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        super().__init__(**kwargs)
        if "{{" not in str(protocol) and protocol not in ("seldon", "tfserving"):  # a template is checked in execute
            raise ValueError(f"protocol must be 'seldon' or 'tfserving', got {protocol!r}")
        if isinstance(load_test, LoadTestSpec):
            load_test = load_test.to_dict()
        if isinstance(load_test, str) and overrides:
            raise ValueError(f"{type(self).__name__}: load_test is a template; put {sorted(overrides)} in it instead")
        # A string is a template (the plan task's load_test) rendered before execute.
        self.load_test: Mapping[str, Any] | str = (
            load_test if isinstance(load_test, str) else {**(load_test or {}), **overrides}
        )
        self.spec = LoadTestSpec()  # the rendered load_test, coerced and validated in execute
        self.host = host
        self.protocol = protocol
        self.model_name = model_name
        self.request_path = request_path
        self.request_headers = dict(request_headers or {})
        self.samples_path = samples_path
        self.record_cluster = record_cluster
        self.kubernetes_conn_id = kubernetes_conn_id
        self.ack_conn_id = ack_conn_id
        self.cluster_id = cluster_id
        self.namespace = namespace
        self.seldon_deployment = seldon_deployment
        self.deployment_name = deployment_name
        self.node_pool_id = node_pool_id
        self.pool_node_selector = pool_node_selector
        self.metric_name = metric_name
        self.metric_selector = metric_selector
        self.reports_dir = reports_dir
        self.locust_command = list(locust_command) if locust_command else None
        self.locustfile = locustfile
        self.version_check = version_check
        self.min_agreement = min_agreement
        self._served: dict[str, Any] = {}

    # -- preparation ----------------------------------------------------------------------------------
    def _plan(self) -> LoadPlan:
        from elastic_inference.load_shape import plan_load

        try:
            return plan_load(
                qps_target=self.spec.qps_target,
                max_replicas=int(self.spec.max_replicas),
                fill_factor=self.spec.fill_factor,
                ramp_seconds=self.spec.ramp_seconds,
                hold_seconds=self.spec.hold_seconds,
                ramp_steps=self.spec.ramp_steps,
                rps_per_user=self.spec.rps_per_user,
                target_rps=self.spec.target_rps,
            )
        except ValueError as e:
            raise AirflowFailException(f"load shape: {e}") from e

    def _samples(self) -> list[dict[str, Any]]:
        from elastic_inference.locust_io import load_samples

        if not self.samples_path:
            raise AirflowFailException(
                "samples_path is required: the .npz/.json of real test images and labels "
                "the training step writes (keys x/y)"
            )
        try:
            return load_samples(self.samples_path, limit=self.spec.max_samples, flatten=bool(self.spec.flatten_images))
        except (OSError, ValueError) as e:
            raise AirflowFailException(f"samples_path: {e}") from e

    def _locust_base(self) -> list[str]:
        if self.locust_command:
            return list(self.locust_command)
        if importlib.util.find_spec("locust") is None:
            raise AirflowFailException(
                "locust is not installed in this Python environment; install the provider's "
                "'load' extra (pip install 'airflow-provider-elastic-inference[load]') or "
                "pass locust_command="
            )
        return [sys.executable, "-m", "locust"]

    def _kube(self) -> Any:
        from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook

        # Few retries: a sample that stalls for long distorts the timeline more than one missing read.
        return KubeHook(
            KubeAccess(
                kubernetes_conn_id=self.kubernetes_conn_id, ack_conn_id=self.ack_conn_id, cluster_id=self.cluster_id
            ),
            retry_attempts=2,
        )

    def _recorder(self, hook: Any) -> TimelineRecorder:
        from elastic_inference.timeline import TimelineRecorder

        ns = self.namespace

        def fetch(path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
            return hook.request("GET", path, query=query, operation=f"GET {path}")

        if self.deployment_name:
            dep = hook.request(
                "GET",
                f"/apis/apps/v1/namespaces/{ns}/deployments/{self.deployment_name}",
                operation=f"get deployment {ns}/{self.deployment_name}",
            )
            deployments = [dep]
        elif self.seldon_deployment:
            deployments = (
                fetch(
                    f"/apis/apps/v1/namespaces/{ns}/deployments",
                    {"labelSelector": f"{SELDON_ID_LABEL}={self.seldon_deployment}"},
                ).get("items")
                or []
            )
            if not deployments:
                raise AirflowFailException(
                    f"no Deployment labelled {SELDON_ID_LABEL}={self.seldon_deployment} in namespace {ns}; is the "
                    f"SeldonDeployment deployed and reconciled (state Available)?"
                )
        else:
            raise AirflowFailException(
                "record_cluster needs seldon_deployment or deployment_name to know what to "
                "record (or set record_cluster=False)"
            )
        hpas = fetch(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers").get("items") or []
        by_target = {(h.get("spec", {}).get("scaleTargetRef") or {}).get("name"): h for h in hpas}
        deployment = next((d for d in deployments if d["metadata"]["name"] in by_target), deployments[0])
        hpa = by_target.get(deployment["metadata"]["name"])
        if hpa is None:
            self.log.warning(
                "No HPA targets deployment %s/%s; replicas are recorded but cannot scale",
                ns,
                deployment["metadata"]["name"],
            )
        return TimelineRecorder(
            fetch,
            namespace=ns,
            deployment=deployment,
            hpa=hpa,
            pool_id=self.node_pool_id,
            pool_selector=self.pool_node_selector,
            metric_name=self.metric_name,
            metric_selector=self.metric_selector,
        )

    # -- locust processes -----------------------------------------------------------------------------
    def _start_locust(
        self, out: Path, env: dict[str, str], locustfile: Path, run_time: float
    ) -> tuple[subprocess.Popen[bytes], list[subprocess.Popen[bytes]], Any]:
        base = self._locust_base()
        common = ["-f", str(locustfile), "--loglevel", "INFO"]
        master_args = [
            *common,
            "--headless",
            "--host",
            self.host,
            "--csv",
            str(out / "locust"),
            "--csv-full-history",
            "--only-summary",
            "--html",
            str(out / "locust.html"),
            # Shapes ignore --run-time (locust warns); StagedShape stops at its last stage anyway.
            "--run-time",
            f"{int(run_time) + 1}s",
            "--stop-timeout",
            "5",
        ]
        log_fh = (out / "locust.log").open("ab")
        workers: list[subprocess.Popen[bytes]] = []
        if self.spec.workers:
            port = _free_port()
            master_args += [
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                str(self.spec.workers),
                "--expect-workers-max-wait",
                "60",
            ]
            master = subprocess.Popen(
                [*base, *master_args], stdout=log_fh, stderr=subprocess.STDOUT, env=env, cwd=out, **start_options()
            )
            for _ in range(self.spec.workers):
                workers.append(
                    subprocess.Popen(
                        [*base, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                        stdout=log_fh,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=out,
                        **start_options(),
                    )
                )
        else:
            master = subprocess.Popen(
                [*base, *master_args], stdout=log_fh, stderr=subprocess.STDOUT, env=env, cwd=out, **start_options()
            )
        return master, workers, log_fh

    def on_kill(self) -> None:
        """The task is killed (timeout, mark failed, worker shutdown): stop locust's process groups now. A kill -9
        of the worker runs no on_kill; then the kernel kills them (PR_SET_PDEATHSIG, see child_process)."""
        kill_group(getattr(self, "_children", []), grace=3.0)

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
        """SIGTERM (locust then writes its stats), then SIGKILL what is still there after ``grace``."""
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def _check_versions(self, hook: Any, check: Mapping[str, Any] | None) -> None:
        """Ask each replica ready now (and not asked yet) which version it serves; never stops the load."""
        if not check or hook is None:
            return
        from elastic_inference.rollout.versions import POD, served_versions
        from elastic_inference.serving.base import get_backend

        try:
            pods = hook.list(POD, check["namespace"], label_selector=check["pod_selector"]).get("items") or []
            new = [p for p in pods if p["metadata"]["name"] not in self._served]
            for served in served_versions(
                hook,
                get_backend(check.get("backend") or "seldon"),
                check["namespace"],
                check["pod_selector"],
                check["model_name"],
                pods=new,
            ):
                if not served.error:  # an unreadable replica is asked again at the next sample
                    self._served[served.pod] = served
        except Exception as exc:  # noqa: BLE001 - a failed read is retried at the next sample
            self.log.warning("Reading served versions failed: %s", exc)

    def _progress(self, out: Path, recorder: TimelineRecorder | None) -> None:
        from elastic_inference.locust_io import parse_history

        history = parse_history(out / "locust")
        last = history[-1] if history else None
        cluster = self._cluster_line(recorder)
        if last:
            p95 = last["p95_ms"]
            self.log.info(
                "load: %d users, %.1f RPS, %d requests, %d failures, p95 %s | %s",
                last["users"],
                last["rps"],
                last["total_requests"],
                last["total_failures"],
                "n/a yet" if p95 is None else f"{p95:.0f} ms",
                cluster,
            )
        else:
            self.log.info("load: starting | %s", cluster)

    @staticmethod
    def _cluster_line(recorder: TimelineRecorder | None) -> str:
        """Replicas (desired/current/ready), the named HPA metric and the pool's nodes by charge type, as sampled."""
        from elastic_inference.timeline import replicas_of

        if not recorder or not recorder.samples:
            return "cluster not sampled yet"
        s = recorder.samples[-1]
        charges: dict[str, int] = {}
        for n in s.get("nodes") or []:
            if n.get("in_pool"):
                charges[n.get("charge") or "unknown"] = charges.get(n.get("charge") or "unknown", 0) + 1
        nodes = ", ".join(f"{v} {k}" for k, v in sorted(charges.items())) or "none"
        qps = s.get("qps")
        return (
            f"replicas {replicas_of(s)} (HPA desired {(s.get('hpa') or {}).get('desired')}, ready "
            f"{(s.get('deployment') or {}).get('ready')}) | {recorder.metric_name or 'metric'} "
            f"{'n/a yet' if qps is None else f'{qps:.1f}'} | pool nodes: {nodes}"
        )

    def _write_live(self, out: Path, load: dict[str, Any], recorder: TimelineRecorder, every: float = 2.0) -> None:
        """The timeline recorded so far, for the run view (``elastic_inference.ui``) to draw while the load runs;
        replaced atomically, at most every ``every`` seconds."""
        from elastic_inference.locust_io import parse_history

        now = time.monotonic()
        if now < getattr(self, "_live_at", 0.0) + every:
            return
        self._live_at = now
        doc = {
            "meta": recorder.meta(),
            "load": load,
            "samples": recorder.samples,
            "locust": {"history": parse_history(out / "locust")},
        }
        tmp = out / "timeline.live.json.tmp"
        try:
            tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
            tmp.replace(out / "timeline.live.json")
        except OSError as exc:  # the view is a convenience: the load test goes on without it
            self.log.warning("Could not write the live timeline: %s", exc)

    def _record_scale_in(self, out: Path, load: dict[str, Any], recorder: TimelineRecorder | None) -> dict[str, Any]:
        """After the load: record until the replicas are back at ``minReplicas`` (within ``scale_in_timeout``) and
        the elastic pool is back to its nodes from before the load (within ``pool_scale_in_timeout``), so the
        report shows the scale-in and what the pool cost after the load. Each wait ends at its own deadline; the
        loop ends when both have ended (bounded: at most the longer deadline)."""
        from elastic_inference.timeline import pool_back, pool_node_count, replicas_back, replicas_of

        spec = self.spec
        scale_in: dict[str, Any] = {
            "timeout": spec.scale_in_timeout,
            "reached_at": None,
            "pool_timeout": spec.pool_wait,
            "pool_nodes_before": None,
            "pool_back_at": None,
        }
        if not recorder:
            return scale_in
        if spec.scale_in_timeout <= 0 and spec.pool_wait <= 0:
            recorder.sample()
            return scale_in
        min_replicas = int((recorder.hpa or {}).get("min_replicas") or 1)
        before = pool_node_count(recorder.samples[0])  # the baseline, sampled before any load
        scale_in["pool_nodes_before"] = before
        self.log.info(
            "Load stopped; recording until replicas are back at %d (at most %.0f s) and the elastic pool is back to "
            "%d node(s) (at most %.0f s)",
            min_replicas,
            spec.scale_in_timeout,
            before,
            spec.pool_wait,
        )
        t0 = time.monotonic()
        replicas_end, pool_end = t0 + spec.scale_in_timeout, t0 + spec.pool_wait
        replicas_open, pool_open = spec.scale_in_timeout > 0, spec.pool_wait > 0
        next_log = t0 + spec.progress_interval
        while True:
            s = recorder.sample()
            self._write_live(out, load, recorder)
            after = s["t"] - load["stop"]
            if replicas_open and replicas_back(s, min_replicas):
                replicas_open, scale_in["reached_at"] = False, s["t"]
                self.log.info("Scaled back in to %d replicas %.0f s after the load", min_replicas, after)
            if pool_open and pool_back(s, before):
                pool_open, scale_in["pool_back_at"] = False, s["t"]
                self.log.info("The elastic pool is back to %d node(s) %.0f s after the load", pool_node_count(s), after)
            now = time.monotonic()
            if replicas_open and now + spec.record_interval > replicas_end:
                replicas_open = False
                self.log.warning("Replicas still %s after %.0f s", replicas_of(s), spec.scale_in_timeout)
            if pool_open and now + spec.record_interval > pool_end:
                pool_open = False
                self.log.warning(
                    "The elastic pool still has %d node(s) (%d before the load) after %.0f s (pool_scale_in_timeout); "
                    "the report's cost after the load stops here",
                    pool_node_count(s),
                    before,
                    spec.pool_wait,
                )
            if not (replicas_open or pool_open):
                return scale_in
            if now >= next_log:
                left = max(replicas_end if replicas_open else 0.0, pool_end if pool_open else 0.0) - now
                self.log.info(
                    "scale-in: waiting for %s | %s | %.0f s left",
                    " and ".join(
                        w
                        for w, on in (
                            (f"replicas back at {min_replicas}", replicas_open),
                            (f"the pool back to {before} node(s)", pool_open),
                        )
                        if on
                    ),
                    self._cluster_line(recorder),
                    left,
                )
                next_log = now + spec.progress_interval
            time.sleep(spec.record_interval)

    # -- the task -------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from elastic_inference.locust_io import parse_failures, parse_history, parse_stats, read_summary, write_payload
        from elastic_inference.timeline import write_timeline

        if self.protocol not in ("seldon", "tfserving"):
            raise AirflowFailException(f"protocol must be 'seldon' or 'tfserving', got {self.protocol!r}")
        # The one coercion of the rendered spec; every problem named at once (SpecError: no retries).
        self.spec = LoadTestSpec.from_mapping(self.load_test).validate()
        self.request_headers = coerce(self.request_headers, "object", "request_headers", optional=True) or {}
        self.request_headers = {
            str(k): str(v) for k, v in (self.request_headers or {}).items() if v not in (None, "", "None")
        }
        self.host, self.request_path = split_predict_url(str(self.host), self.request_path or None)
        check = coerce(self.version_check, "object", "version_check", optional=True)
        min_agreement = coerce(self.min_agreement, "number", "min_agreement", optional=True)
        plan = self._plan()
        samples = self._samples()
        out = run_dir(self.reports_dir, context["dag"].dag_id, context["run_id"])
        out.mkdir(parents=True, exist_ok=True)
        payload = write_payload(
            out / "payload.json",
            protocol=self.protocol,
            samples=samples,
            model_name=self.model_name,
            request_path_override=self.request_path,
        )
        (out / "plan.json").write_text(json.dumps(plan.to_json(), indent=1), encoding="utf-8")
        for stale in [
            *out.glob("locust_*.csv"),
            out / "timeline.json",
            out / "timeline.live.json",
            out / "verdict.json",
        ]:
            stale.unlink(missing_ok=True)  # a retry must not parse the previous try's numbers
        locustfile = Path(self.locustfile) if self.locustfile else default_locustfile()
        base_cmd = self._locust_base()
        self.log.info(
            "Load plan: %.1f RPS from %d users (%.2f RPS each), ramp %.0f s, hold %.0f s, sized from "
            "qps_target=%s x max_replicas=%s x fill_factor=%s; %s",
            plan.target_rps,
            plan.users,
            plan.rps_per_user,
            plan.hold_start,
            plan.run_time - plan.hold_start,
            self.spec.qps_target,
            self.spec.max_replicas,
            self.spec.fill_factor,
            f"{self.spec.workers} locust workers" if self.spec.workers else "one locust process",
        )

        hook = self._kube() if self.record_cluster else None
        recorder = self._recorder(hook) if hook is not None else None
        if recorder:
            recorder.sample()  # the baseline, before any load
            self.log.info(
                "Recording %s/%s (HPA %s, metric %s) every %.1f s",
                recorder.namespace,
                recorder.deployment_name,
                (recorder.hpa or {}).get("name"),
                recorder.metric_name,
                self.spec.record_interval,
            )

        # Only what locust needs: never the worker's connections, cloud keys or Airflow secrets (child_process).
        env = child_env(
            extra={
                "EI_PAYLOAD_FILE": str(payload),
                "EI_LOAD_PLAN": str(out / "plan.json"),
                "EI_SUMMARY": str(out / "summary.json"),
                "EI_REQUEST_HEADERS": json.dumps(self.request_headers),
                "EI_PROVIDER_PATH": str(_PKG.parent),  # where the locustfile finds elastic_inference.protocol
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
        (out / "summary.json").unlink(missing_ok=True)

        load: dict[str, Any] = {
            "endpoint": self.host,
            "protocol": self.protocol,
            "plan": plan.to_json(),
            "workers": self.spec.workers,
            "command": base_cmd[-1],
        }
        master, workers, log_fh = self._start_locust(out, env, locustfile, plan.run_time)
        self._children = [master, *workers]
        load["process_start"] = load["start"] = time.time()
        load["hold_start"] = load["start"] + plan.hold_start
        deadline = time.monotonic() + plan.run_time + self.spec.startup_grace
        timed_out = False
        next_sample = next_log = time.monotonic()
        try:
            while master.poll() is None:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    self.log.error(
                        "locust still running %.0f s after the shape's end; stopping it", self.spec.startup_grace
                    )
                    break
                if recorder and now >= next_sample:
                    recorder.sample()
                    self._check_versions(hook, check)
                    next_sample = now + self.spec.record_interval
                    self._write_live(out, load, recorder)
                if now >= next_log:
                    self._progress(out, recorder)
                    next_log = now + self.spec.progress_interval
                time.sleep(min(0.5, max(0.05, min(next_sample, next_log, deadline) - time.monotonic())))
        finally:
            self._stop([master, *workers])
            log_fh.close()
        load["stop"] = time.time()
        rc = master.returncode

        scale_in = self._record_scale_in(out, load, recorder)
        self._check_versions(hook, check)
        log_tail = (out / "locust.log").read_text(errors="replace")[-2000:]
        if rc not in (0, 1) and not timed_out:  # 1 = "some requests failed", locust's default exit code
            raise AirflowException(f"locust exited with code {rc}; last log lines:\n{log_tail}")
        # The final summary (written on quit) counts every request; the CSVs are the fallback when locust was
        # stopped before it could write it.
        summary = read_summary(out / "summary.json")
        try:
            stats = summary["stats"] if summary and summary["stats"] else parse_stats(out / "locust")
        except FileNotFoundError as e:
            raise AirflowException(
                f"locust exited with code {rc} and wrote no stats ({e}); last log lines:\n{log_tail}"
            ) from e
        failures = summary["errors"] if summary else parse_failures(out / "locust")
        checks = {
            "checked": summary["checked"] if summary else 0,
            "mismatches": summary["mismatches"] if summary else 0,
        }
        stats["mismatches"] = checks["mismatches"]
        stats["checked"] = checks["checked"]
        history = parse_history(out / "locust")
        if history and history[0]["t"] is not None:
            # locust needs a few seconds to start (imports, workers connecting): the load really began when its
            # stats history did (whole seconds), not when the process was spawned.
            load["start"] = max(load["process_start"], float(history[0]["t"]))
            load["hold_start"] = load["start"] + plan.hold_start
        if history and stats["requests"] > history[-1]["total_requests"]:
            # The CSV is rewritten once a second: close the series with the final totals at the stop time.
            history.append(
                {
                    **history[-1],
                    "t": float(int(load["stop"]) + 1),
                    "users": 0,
                    "rps": 0.0,
                    "failures_per_s": 0.0,
                    "total_requests": stats["requests"],
                    "total_failures": stats["failures"],
                    "final": True,
                }
            )

        breaches = slo_breaches(stats, slo_error_rate=self.spec.slo_error_rate, slo_p95_ms=self.spec.slo_p95_ms)
        breaches += agreement_breaches(checks, min_agreement)
        if check:
            from elastic_inference.rollout.versions import version_problems

            breaches += version_problems(list(self._served.values()), int(check["version"]), "load test")
        if timed_out:
            breaches.insert(
                0,
                f"locust did not finish within the shape's {plan.run_time:.0f} s + "
                f"{self.spec.startup_grace:.0f} s grace and was stopped",
            )
        timeline_path = out / "timeline.json"
        write_timeline(
            timeline_path,
            {
                "meta": recorder.meta() if recorder else {"namespace": self.namespace},
                "load": load,
                "samples": recorder.samples if recorder else [],
                "locust": {
                    "stats": stats,
                    "history": history,
                    "failures": failures,
                    "checks": checks,
                    "csv_prefix": str(out / "locust"),
                },
                "scale_in": scale_in,
                # The SLO verdict goes into the timeline, so the scale report (which runs on a breach too) says it.
                "slo": {"error_rate": self.spec.slo_error_rate, "p95_ms": self.spec.slo_p95_ms, "breaches": breaches},
                "recorder_errors": recorder.errors if recorder else 0,
                "served_versions": {
                    "expected": int(check["version"]) if check else None,
                    "pods": {name: list(s.versions) for name, s in sorted(self._served.items())},
                },
            },
        )
        ti = context["ti"]
        ti.xcom_push(key="timeline_path", value=str(timeline_path))
        html = out / "locust.html"
        if html.is_file():
            ti.xcom_push(key=LOCUST_URL_KEY, value=report_url(html, reports_dir=self.reports_dir))

        self.log.info(
            "Load test done: %d requests, %d failed (%.2f%%), %.1f RPS, p50 %s / p95 %s / p99 %s ms, "
            "%d of %d predictions disagreed with the label",
            stats["requests"],
            stats["failures"],
            100 * stats["error_rate"],
            stats["rps"],
            stats["p50_ms"],
            stats["p95_ms"],
            stats["p99_ms"],
            checks["mismatches"],
            checks["checked"],
        )
        result = {
            "endpoint": self.host,
            "stats": stats,
            "checks": checks,
            "plan": plan.to_json(),
            "run_dir": str(out),
            "timeline_path": str(timeline_path),
            "locust_html": str(html) if html.is_file() else None,
            "slo": {"error_rate": self.spec.slo_error_rate, "p95_ms": self.spec.slo_p95_ms, "breaches": breaches},
            "top_failures": failures[:5],
        }
        if breaches:
            ti.xcom_push(key="load_test_result", value=result)
            top = "; ".join(f"{f['error']} ({f['occurrences']}x)" for f in failures[:3])
            raise AirflowFailException(
                "Load test broke its SLO: " + "; ".join(breaches) + (f". Most frequent errors: {top}" if top else "")
            )
        return result
