"""The safe rollout's tasks: canary analysis, the optional human approval, promotion (or rollback).

They read the serving task's XCom (``deployment``: what it deployed, its names from the backend adapter and the
rollout decision) and the ingress task's (``ingress``: the public predict URL, host and path). When the serving
task took the first-deployment (``direct``) path, each of them is a no-op that hands on the stable names.

* :class:`CanaryAnalysisOperator` - checks the canary's replicas serve the version under test, puts a second
  Ingress with the ingress-nginx canary annotations beside the main one, analyses the canary alone (weight 0,
  pinned by ``canary-by-header``) and then at each weight of ``rollout.steps`` with the background prober on the
  public endpoint; a step that breaks a bound removes the canary, proves the stable version untouched (uid,
  generation, the version its replicas serve) and fails naming the metric, both values and the bound.
* :class:`CanaryApprovalOperator` - Airflow's HITL ``ApprovalOperator`` with the canary's figures, only when
  ``rollout.require_approval``; a rejection rolls the canary back.
* :class:`PromoteCanaryOperator` - moves the stable object to the new version (a rolling update, waited for
  in-process while the prober runs), removes the canary Ingress and object, and fails if the prober saw any
  failed request across the rollout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from elastic_inference import manifests
from elastic_inference.k8s_objects import Json, ResourceRef
from elastic_inference.links import run_dir
from elastic_inference.operators._kubernetes import KubernetesApplyOperator
from elastic_inference.operators.seldon import DeploySeldonOperator, tfserving_config_name
from elastic_inference.rollout.plan import ALWAYS, CANARY_HEADER, NEVER, canary_annotations, canary_name
from elastic_inference.rollout.record import read_rollout_file, write_rollout_file
from elastic_inference.serving.base import ServingBackend, get_backend
from elastic_inference.specs import coerce
from elastic_inference.specs.rollout import RolloutSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from elastic_inference.hooks.kubernetes import KubeHook
    from elastic_inference.rollout.traffic import Labelled, Prober

INGRESS = ResourceRef("networking.k8s.io/v1", "Ingress")
CONFIG_MAP = ResourceRef("v1", "ConfigMap")
POD = ResourceRef("v1", "Pod")
HPA = ResourceRef("autoscaling/v2", "HorizontalPodAutoscaler")
SETTLE_SECONDS = 2.0  # for the ingress controller to take a routing change before the next one
WARMUP_SECONDS = 2.0  # pinned requests to both sides before step 0, not counted


def _mapping(value: Any, name: str) -> dict[str, Any]:
    return coerce(value, "object", name, optional=True) or {}


def stable_target(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What the verification checks after the rollout: the stable object's names and the version under test."""
    rollout = deployment.get("rollout") or {}
    if rollout.get("mode") != "canary":
        keys = ("name", "namespace", "deployment", "hpa", "service", "route", "pod_selector", "backend", "protocol")
        return {
            **{k: deployment.get(k) for k in keys},
            "model_name": deployment.get("model_name"),
            "version": deployment.get("model_version"),
        }
    return dict(rollout.get("promoted") or {})


def set_canary_ingress(
    hook: KubeHook,
    dep: Mapping[str, Any],
    ing: Mapping[str, Any],
    weight: int,
    *,
    log: Any,
    template_dir: str | None = None,
) -> Json:
    """The canary Ingress (same host and path as the main one, to the canary's Service) at ``weight`` %."""
    name = canary_name(ing["name"])
    objs = manifests.render(
        "ingress.yaml.j2",
        dict(
            name=name,
            namespace=dep["namespace"],
            ingress_class=ing.get("ingress_class") or "",
            host=ing.get("host_header") or "",
            path=ing.get("path") or "/",
            service_name=dep["service"],
            service_port=int(dep["service_port"]),
            annotations=canary_annotations(weight),
        ),
        template_dir,
    )
    result = hook.apply(objs[0])
    log.info("Canary Ingress %s: weight %d %% (%s)", name, weight, result.action)
    return result.object


def remove_canary(
    hook: KubeHook, dep: Mapping[str, Any], ing: Mapping[str, Any], *, log: Any, template_dir: str | None = None
) -> list[str]:
    """Canary weight 0, then its Ingress, then its serving object and version ConfigMap; idempotent."""
    backend = get_backend(dep.get("backend") or "seldon")
    namespace, name = dep["namespace"], canary_name(ing["name"])
    removed = []
    if hook.get(INGRESS, namespace, name) is not None:
        set_canary_ingress(hook, dep, ing, 0, log=log, template_dir=template_dir)
        time.sleep(SETTLE_SECONDS)
        if hook.delete(INGRESS, namespace, name):
            removed.append(f"Ingress/{name}")
        time.sleep(SETTLE_SECONDS)
    for obj in backend.teardown_objects(namespace, dep["name"]):
        if hook.delete(ResourceRef(obj["apiVersion"], obj["kind"]), namespace, obj["name"]):
            removed.append(f"{obj['kind']}/{obj['name']}")
    config = tfserving_config_name(dep["name"], dep["model_version"])
    if hook.delete(CONFIG_MAP, namespace, config):
        removed.append(f"ConfigMap/{config}")
    log.info("Canary removed: %s", ", ".join(removed) or "nothing was left")
    return removed


class _RolloutMixin:
    """What the three rollout tasks share: the inputs (both XComs, the spec, the samples) and the canary's names."""

    log: Any
    task_id: str
    namespace: str
    deployment: Any
    ingress: Any
    rollout: Any
    samples_path: Any
    protocol: str
    reports_dir: str | None
    if TYPE_CHECKING:

        def get_hook(self) -> KubeHook: ...

    def inputs(self) -> tuple[dict[str, Any], dict[str, Any], RolloutSpec]:
        dep = _mapping(self.deployment, "deployment")
        ing = _mapping(self.ingress, "ingress")
        spec = RolloutSpec.from_mapping(self.rollout).validate()
        if dep.get("namespace"):
            self.namespace = dep["namespace"]
        if dep.get("protocol"):  # the backend's protocol (Seldon's, or TF Serving's v1 on KServe)
            self.protocol = dep["protocol"]
        return dep, ing, spec

    @staticmethod
    def is_canary(dep: Mapping[str, Any]) -> bool:
        return (dep.get("rollout") or {}).get("mode") == "canary"

    def backend_of(self, dep: Mapping[str, Any]) -> ServingBackend:
        return get_backend(dep.get("backend") or "seldon")

    def items(self) -> list[Labelled]:
        from elastic_inference.rollout.traffic import labelled_bodies

        doc = json.loads(Path(str(self.samples_path)).read_text())
        return labelled_bodies(self.protocol, doc["images"], doc.get("labels"))

    def public_headers(self, ing: Mapping[str, Any]) -> dict[str, str]:
        return {"Host": ing["host_header"]} if ing.get("host_header") else {}

    def out_dir(self, context: Context) -> Path:
        return run_dir(self.reports_dir, context["dag"].dag_id, context["run_id"])

    def start_prober(self, ing: Mapping[str, Any], spec: RolloutSpec, segment: str) -> Prober:
        from elastic_inference.rollout.traffic import Prober

        self.log.info("Prober (%s): %.1f req/s to %s", segment, spec.prober_rps, ing["predict_url"])
        return Prober(
            ing["predict_url"],
            self.protocol,
            self.items(),
            headers=self.public_headers(ing),
            rps=spec.prober_rps,
            max_seconds=spec.prober_max_seconds,
            segment=segment,
        ).start()

    # -- the canary's objects -------------------------------------------------------------------------
    def set_canary_ingress(self, hook: KubeHook, dep: Mapping[str, Any], ing: Mapping[str, Any], weight: int) -> Json:
        return set_canary_ingress(
            hook, dep, ing, weight, log=self.log, template_dir=getattr(self, "template_dir", None)
        )

    def remove_canary(self, hook: KubeHook, dep: Mapping[str, Any], ing: Mapping[str, Any]) -> list[str]:
        return remove_canary(hook, dep, ing, log=self.log, template_dir=getattr(self, "template_dir", None))

    def wait_pods_gone(self, hook: KubeHook, selector: str, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            left = len(hook.list(POD, self.namespace, label_selector=selector).get("items") or [])
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(1.0)

    # -- checks ---------------------------------------------------------------------------------------
    def served(self, hook: KubeHook, dep: Mapping[str, Any], selector: str) -> list[Any]:
        from elastic_inference.rollout.versions import served_versions

        return served_versions(hook, self.backend_of(dep), self.namespace, selector, dep["model_name"])

    def stable_names(self, hook: KubeHook, dep: Mapping[str, Any]) -> tuple[Json | None, dict[str, Any]]:
        backend = self.backend_of(dep)
        obj = hook.get(backend.ref, self.namespace, dep["rollout"]["stable_name"])
        return obj, (backend.names(obj).to_dict() if obj is not None else {})

    def check_stable_untouched(self, hook: KubeHook, dep: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """The stable object's uid/generation/version as before the run, and its replicas serving that version."""
        from elastic_inference.rollout.plan import snapshot_changes, stable_snapshot
        from elastic_inference.rollout.versions import summary, version_problems

        before = dep["rollout"]["stable"] or {}
        obj, names = self.stable_names(hook, dep)
        if obj is None:
            return [f"the stable {dep['rollout']['stable_name']} is gone"], {}
        after = stable_snapshot(obj, self.backend_of(dep))
        problems = [f"stable {c}" for c in snapshot_changes(before, after)]
        served = self.served(hook, dep, names["pod_selector"])
        problems += version_problems(served, int(before.get("version") or 0), "stable")
        return problems, {"snapshot": after, "served": summary(served)}

    def route_qps(self, hook: KubeHook, hpa_name: str) -> float | None:
        """The HPA's own external metric (``sls_ingress_qps`` of its route) right now; None if unreadable."""
        from urllib.parse import quote

        from elastic_inference.hooks.kubernetes import KubeHook
        from elastic_inference.timeline import hpa_spec, metric_value, selector_string

        hook = KubeHook(hook.access, retry_attempts=1)  # a figure, read again at the next step: no backoff here
        try:
            hpa = hook.get(HPA, self.namespace, hpa_name)
            if hpa is None:
                return None
            spec = hpa_spec(hpa)
            if not spec["metric"]:
                return None
            path = (
                f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{quote(self.namespace, safe='')}/"
                f"{quote(spec['metric'], safe='')}"
            )
            return metric_value(hook.request("GET", path, query={"labelSelector": selector_string(spec["selector"])}))
        except Exception as exc:  # noqa: BLE001 - the share is a report figure, never a verdict
            self.log.info("Route metric of %s unreadable: %s", hpa_name, str(exc)[:300])
            return None
        finally:
            hook.close()


class CanaryAnalysisOperator(_RolloutMixin, KubernetesApplyOperator):
    """Analyse the canary the serving task deployed; roll it back (and fail) when a step breaks a bound.

    :param deployment: the serving task's XCom (templated).
    :param ingress: the ingress task's XCom (templated).
    :param rollout: the run's :class:`~elastic_inference.specs.rollout.RolloutSpec` (templated).
    :param samples_path: the labelled samples (templated): the analysis traffic and the prober's.
    :param protocol: the prediction protocol of the public endpoint.
    :param route_confirm_timeout: how long the canary route's request count may take to show the canary Ingress
        routes (the ingress's per-route metric; on ACK it trails by the SLS delay).
    """

    execution_slack_seconds = None  # its steps of load run after the wait: bounded by the steps, not the wait

    template_fields: Sequence[str] = (
        *KubernetesApplyOperator.template_fields,
        "deployment",
        "ingress",
        "rollout",
        "samples_path",
        "reports_dir",
    )
    template_fields_renderers = {"deployment": "json", "ingress": "json", "rollout": "json"}
    ui_color = "#fff2cc"

    def __init__(
        self,
        *,
        deployment: Mapping[str, Any] | str,
        ingress: Mapping[str, Any] | str,
        rollout: Mapping[str, Any] | str | None = None,
        samples_path: str,
        protocol: str = "seldon",
        reports_dir: str | None = None,
        route_confirm_timeout: float = 120.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("deferrable", False)
        super().__init__(**kwargs)
        self.deployment = deployment
        self.ingress = ingress
        self.rollout = rollout
        self.samples_path = samples_path
        self.protocol = protocol
        self.reports_dir = reports_dir
        self.route_confirm_timeout = route_confirm_timeout

    def confirm_routing(self, hook: KubeHook, ing: Mapping[str, Any]) -> str:
        """Wait until the ingress controller has taken the canary Ingress (it writes the Ingress's
        ``status.loadBalancer`` once it serves it), then a moment for its configuration to apply; "" when it did,
        else why not.

        The canary's own route metric cannot say it: ingress-nginx logs a request the canary answered under the
        main location's ``$proxy_upstream_name`` (the canary's upstream goes to ``$proxy_alternative_upstream_name``),
        and that is the field the ``sls_ingress_qps`` route label filters on.
        """
        from elastic_inference.k8s_objects import ingress_address

        name = canary_name(ing["name"])
        deadline = time.monotonic() + self.route_confirm_timeout
        while time.monotonic() < deadline:
            obj = hook.get(INGRESS, self.namespace, name)
            if obj is not None and ingress_address(obj) is not None:
                time.sleep(SETTLE_SECONDS)
                return ""
            time.sleep(0.5)
        return (
            f"the ingress controller did not take the canary Ingress {name} within "
            f"{self.route_confirm_timeout:.0f} s (no status.loadBalancer): does it serve the ingress class, and"
            " does a main Ingress exist for the same host and path?"
        )

    def remove_leftover_canary(self, dep: Mapping[str, Any], ing: Mapping[str, Any]) -> list[str]:
        """The canary of an interrupted earlier run (its worker died mid-analysis): its Ingress and object go."""
        leftover = {**dep, "name": canary_name(dep["name"])}
        hook = self.get_hook()
        try:
            backend = self.backend_of(dep)
            if (
                hook.get(INGRESS, self.namespace, canary_name(ing["name"])) is None
                and hook.get(backend.ref, self.namespace, leftover["name"]) is None
            ):
                return []
            self.log.warning("Removing the canary an earlier run left behind")
            return self.remove_canary(hook, leftover, ing)
        finally:
            hook.close()

    def execute(self, context: Context) -> dict[str, Any]:
        from elastic_inference.rollout.analysis import StepVerdict, step_verdict
        from elastic_inference.rollout.traffic import ProberResult, paired_load
        from elastic_inference.rollout.versions import summary, version_problems

        dep, ing, spec = self.inputs()
        if not self.is_canary(dep):
            self.log.info("No canary: %s", (dep.get("rollout") or {}).get("reason", "direct deployment"))
            if (dep.get("rollout") or {}).get("stable") is not None and ing.get("name"):
                self.remove_leftover_canary(dep, ing)  # a redeploy: no earlier run's canary may keep its weight
            return {"mode": "direct", "target": stable_target(dep)}
        out = self.out_dir(context)
        version = int(dep["model_version"])
        stable_version = dep["rollout"].get("stable_version")
        hook = self.get_hook()
        prober: Prober | None = None
        steps: list[StepVerdict] = []
        failure = ""
        record: dict[str, Any] = {
            "stable_name": dep["rollout"]["stable_name"],
            "canary_name": dep["name"],
            "stable_version": stable_version,
            "canary_version": version,
            "bounds": spec.to_dict(),
        }
        try:
            stable_hpa = self.stable_names(hook, dep)[1].get("hpa")
            served = self.served(hook, dep, dep["pod_selector"])
            record["canary_served"] = summary(served)
            if problems := version_problems(served, version, "canary"):
                failure = "the canary does not serve the version under test: " + "; ".join(problems)
            if not failure:
                # From here to the end of promotion or rollback, the public endpoint is probed: adding the canary
                # Ingress, each weight, and the canary's removal must not fail one request.
                prober = self.start_prober(ing, spec, "analysis")
                self.set_canary_ingress(hook, dep, ing, 0)
                items = self.items()
                failure = self.confirm_routing(hook, ing)
            if not failure:
                sides = {"canary": {CANARY_HEADER: ALWAYS}, "stable": {CANARY_HEADER: NEVER}}
                # Warm-up, not counted: a replica's first requests (connections, the first graph runs) are slow
                # on either side, and the canary's replicas are the ones that just started.
                paired_load(
                    ing["predict_url"],
                    self.protocol,
                    items,
                    headers=self.public_headers(ing),
                    sides=sides,
                    rps=spec.analysis_rps,
                    seconds=WARMUP_SECONDS,
                    max_requests=int(2 * spec.analysis_rps * WARMUP_SECONDS) + 2,
                )
                for weight in [0, *spec.weights]:
                    if weight:
                        self.set_canary_ingress(hook, dep, ing, weight)
                    start = time.time()
                    load = paired_load(
                        ing["predict_url"],
                        self.protocol,
                        items,
                        headers=self.public_headers(ing),
                        sides=sides,
                        rps=spec.analysis_rps,
                        seconds=spec.step_seconds,
                        max_requests=int(2 * spec.analysis_rps * spec.step_seconds) + 2,
                    )
                    end = time.time()
                    # The public traffic's split is the weight; the location's QPS (what the ingress counted under
                    # the main upstream, canary-answered requests included) is the report's context for it.
                    share = {
                        "canary_weight": weight,
                        "location_qps": self.route_qps(hook, stable_hpa) if stable_hpa else None,
                    }
                    verdict = step_verdict(weight, start, end, load["canary"], load["stable"], spec, share)
                    verdict_series = {
                        "canary": _series(load["canary"], start),
                        "stable": _series(load["stable"], start),
                    }
                    steps.append(verdict)
                    record.setdefault("series", []).append({"weight": weight, **verdict_series})
                    self.log.info(
                        "Step %d %%: %s | canary %d req, %d failed, p95 %s ms, agreement %s | stable %d req, "
                        "%d failed, p95 %s ms, agreement %s",
                        weight,
                        "PASS" if verdict.passed else "FAIL",
                        verdict.canary.requests,
                        verdict.canary.failures,
                        _fmt(verdict.canary.p95_ms),
                        _fmt(verdict.canary.agreement, 3),
                        verdict.stable.requests,
                        verdict.stable.failures,
                        _fmt(verdict.stable.p95_ms),
                        _fmt(verdict.stable.agreement, 3),
                    )
                    if not verdict.passed:
                        failure = f"step {weight} %: {verdict.failure_message()}"
                        break
                    served = self.served(hook, dep, dep["pod_selector"])  # replicas scaled out meanwhile too
                    if problems := version_problems(served, version, "canary"):
                        failure = f"step {weight} %: " + "; ".join(problems)
                        break
            record["steps"] = [s.to_dict() for s in steps]
            if not failure:
                result = prober.stop() if prober is not None else ProberResult()
                record["prober_analysis"] = result.to_dict()
                record["verdict"] = "analysis passed"
                _write_record(out, record, self.log)
                return {
                    "mode": "canary",
                    "steps": record["steps"],
                    "prober": result.to_dict(),
                    "summary": _figures(steps),
                }
            # -- rollback: the canary goes, the stable must be exactly as it was ----------------------------
            self.log.error("Canary of version %s fails: %s; rolling back", version, failure)
            record["removed"] = self.remove_canary(hook, dep, ing)
            self.wait_pods_gone(hook, dep["pod_selector"])
            result = prober.stop() if prober is not None else ProberResult()
            prober = None
            record["prober_rollback"] = result.to_dict()
            problems, stable = self.check_stable_untouched(hook, dep)
            record["stable_after"] = stable
            record["verdict"] = "rolled back"
            record["failure"] = failure
            _write_record(out, record, self.log)
            lines = [
                f"canary of version {version} rolled back, stable version {stable_version} kept: {failure}",
                result.line(),
            ]
            if result.failures:
                lines.append(f"the prober saw {result.failures} failed requests: {result.first_failures[:3]}")
            if problems:
                lines.append("the stable deployment is NOT as it was: " + "; ".join(problems))
            else:
                lines.append(
                    f"stable {dep['rollout']['stable_name']} unchanged (uid {stable['snapshot']['uid']}, generation "
                    f"{stable['snapshot']['generation']}, every replica serves version {stable_version})"
                )
            raise AirflowFailException("\n".join(lines))
        except AirflowFailException:
            raise
        except Exception:
            # Anything else (the API, the network) mid-analysis: no canary may keep its weight after this task.
            self.log.exception("Canary analysis broke off; removing the canary")
            try:
                self.remove_canary(hook, dep, ing)
            except Exception as cleanup:  # noqa: BLE001 - the original error is the one to report
                self.log.error("Removing the canary failed too: %s (the next run removes it)", cleanup)
            raise
        finally:
            if prober is not None:
                prober.stop()
            hook.close()


def _write_record(out: Path, record: Mapping[str, Any], log: Any) -> None:
    from elastic_inference.report import render_rollout_report

    write_rollout_file(out, record)
    try:
        path = render_rollout_report(read_rollout_file(out), out / "rollout.html")
        log.info("Rollout report: %s", path)
    except Exception as exc:  # noqa: BLE001 - the report never hides the verdict
        log.warning("Rollout report not written: %s", exc)


def _fmt(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _series(samples: Any, start: float) -> list[dict[str, Any]]:
    from elastic_inference.rollout.analysis import series

    return series(samples, start)


def _figures(steps: Sequence[Any]) -> str:
    """The canary's figures per step, for the approval request and logs."""
    lines = []
    for s in steps:
        c, st = s.canary, s.stable
        lines.append(
            f"step {s.weight} %: canary {c.requests} req, error rate {100 * c.error_rate:.2f} %, p95 "
            f"{_fmt(c.p95_ms)} ms, agreement {_fmt(None if c.agreement is None else 100 * c.agreement, 1)} % | "
            f"stable {st.requests} req, error rate {100 * st.error_rate:.2f} %, p95 {_fmt(st.p95_ms)} ms, "
            f"agreement {_fmt(None if st.agreement is None else 100 * st.agreement, 1)} %"
        )
    return "\n".join(lines)


class PromoteCanaryOperator(_RolloutMixin, DeploySeldonOperator):
    """Remove the canary, move the stable object to the canary's version, and require a clean prober.

    The canary goes first (weight 0, its Ingress, its serving object, its pods drained): its pods hold nodes of
    the elastic pool, and the stable's rolling update needs room for its surge pods (new pods ready before old
    ones go). On a pool at its max, a canary kept to the end would leave the surge pod Unschedulable and the
    promotion stuck until its deadline; removed first, its nodes take the surge at once (and on ACK no new GPU
    node is bought for it). The stable already carries the whole load: its HPA counts every request of its
    route, the canary-served ones included, as SLS does. Then the same serving spec as the serving task
    (``serving=``) is applied to the stable name with the new version, and the task waits in-process (the
    prober runs in this task) until every stable replica serves it. The prober's segments (analysis +
    promotion) must hold no failed request.

    :param analysis: the canary analysis task's XCom (templated).
    """

    template_fields: Sequence[str] = (
        *DeploySeldonOperator.template_fields,
        "deployment",
        "ingress",
        "analysis",
        "samples_path",
        "reports_dir",
    )

    def __init__(
        self,
        *,
        deployment: Mapping[str, Any] | str,
        ingress: Mapping[str, Any] | str,
        analysis: Mapping[str, Any] | str | None = None,
        samples_path: str,
        protocol: str = "seldon",
        reports_dir: str | None = None,
        promote_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        kwargs["deferrable"] = False  # the prober is a thread of this task: the wait happens here
        super().__init__(**kwargs)
        self.deployment = deployment
        self.ingress = ingress
        self.analysis = analysis
        self.samples_path = samples_path
        self.protocol = protocol
        self.reports_dir = reports_dir
        self.promote_timeout = promote_timeout

    def execute(self, context: Context) -> Any:
        from elastic_inference.rollout.traffic import ProberResult
        from elastic_inference.rollout.versions import summary, version_problems

        dep, ing, spec = self.inputs()
        if not self.is_canary(dep):
            return stable_target(dep)
        analysis = _mapping(self.analysis, "analysis")
        out = self.out_dir(context)
        version = int(dep["model_version"])
        stable_name = dep["rollout"]["stable_name"]
        hook = self.get_hook()
        prober = self.start_prober(ing, spec, "promotion")
        try:
            # The stable object, as the serving task would deploy it on the direct path: same spec, new version.
            self.rollout = None
            self.apply_spec()
            self.validate()
            if self.name != stable_name:
                raise AirflowFailException(
                    f"{self.task_id}: serving spec names {self.name}, the stable is {stable_name}"
                )
            removed = self.remove_canary(hook, dep, ing)
            left = self.wait_pods_gone(hook, dep["pod_selector"])
            if left:
                raise AirflowFailException(
                    f"{self.task_id}: {left} canary pods still there after its removal; the stable is unchanged"
                )
            promoted = super().execute(context)
            deadline = time.monotonic() + self.promote_timeout
            while True:
                served = self.served(hook, dep, promoted["pod_selector"])
                problems = version_problems(served, version, "stable")
                if not problems:
                    break
                if time.monotonic() > deadline:
                    raise AirflowFailException(
                        f"{self.task_id}: {stable_name} not on version {version} after {self.promote_timeout:.0f} s: "
                        + "; ".join(problems)
                    )
                time.sleep(1.0)
            self.log.info("Every replica of %s serves version %d: %s", stable_name, version, summary(served))
            result = prober.stop()
            total = ProberResult.merge([analysis.get("prober") or {}, result.to_dict()])
            _write_record(
                out,
                {
                    "verdict": "promoted",
                    "prober_promotion": result.to_dict(),
                    "prober": total.to_dict(),
                    "promoted_served": summary(served),
                    "removed": removed,
                },
                self.log,
            )
            self.log.info("Promoted %s to version %d; %s", stable_name, version, total.line())
            if total.failures:
                raise AirflowFailException(
                    f"{self.task_id}: version {version} promoted, but requests failed during the rollout: "
                    f"{total.line()}; first: {total.first_failures[:3]}"
                )
            target = {
                **{k: promoted.get(k) for k in ("name", "namespace", "deployment", "hpa", "service", "route")},
                "pod_selector": promoted["pod_selector"],
                "backend": promoted["backend"],
                "protocol": promoted.get("protocol"),
                "model_name": dep["model_name"],
                "version": version,
                "prober": total.to_dict(),
            }
            return target
        finally:
            prober.stop()
            hook.close()


def approval_request(dep: Mapping[str, Any], analysis: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body of the approval request: what would change, and the canary's figures per step."""
    subject = (
        f"Promote {dep['rollout']['stable_name']} from version {dep['rollout'].get('stable_version')} to "
        f"version {dep['model_version']}?"
    )
    body = (
        "The canary passed every step of its analysis (canary vs stable over the same seconds):\n\n"
        + str(analysis.get("summary") or "")
        + f"\n\n{(analysis.get('prober') or {}).get('line', '')}\n\nApprove: the stable deployment is moved to the"
        " new version by a rolling update. Reject: the canary is removed; the stable version keeps serving as it is."
    )
    return subject, body


try:  # Airflow's human-in-the-loop operators (standard provider, Airflow >= 3.1)
    from airflow.providers.standard.operators.hitl import ApprovalOperator as _ApprovalBase
except ImportError:  # pragma: no cover - an older standard provider: approval cannot be required
    _ApprovalBase = None  # type: ignore[assignment,misc]


if _ApprovalBase is not None:

    class CanaryApprovalOperator(_ApprovalBase):
        """Ask a human before promotion (only with ``rollout.require_approval`` and a canary), showing the
        canary's figures; a rejection (or no answer within ``approval_timeout_seconds``) rolls the canary back
        and fails the run."""

        template_fields: Sequence[str] = (
            *_ApprovalBase.template_fields,
            "deployment",
            "ingress",
            "analysis",
            "rollout",
        )

        def __init__(
            self,
            *,
            deployment: Mapping[str, Any] | str,
            ingress: Mapping[str, Any] | str,
            analysis: Mapping[str, Any] | str,
            rollout: Mapping[str, Any] | str,
            kubernetes_conn_id: str | None = "kubernetes_default",
            **kwargs: Any,
        ) -> None:
            kwargs.setdefault("subject", "Promote the canary?")
            super().__init__(fail_on_reject=True, **kwargs)
            self.deployment = deployment
            self.ingress = ingress
            self.analysis = analysis
            self.rollout = rollout
            self.kubernetes_conn_id = kubernetes_conn_id

        def execute(self, context: Context) -> Any:
            from datetime import timedelta

            dep = _mapping(self.deployment, "deployment")
            spec = RolloutSpec.from_mapping(self.rollout).validate()
            if (dep.get("rollout") or {}).get("mode") != "canary" or not spec.require_approval:
                self.log.info(
                    "No approval needed (%s)", "not required" if spec.require_approval is False else "no canary"
                )
                return {"chosen_options": [self.APPROVE], "asked": False}
            self.subject, self.body = approval_request(dep, _mapping(self.analysis, "analysis"))
            self.response_timeout = timedelta(seconds=spec.approval_timeout_seconds)
            return super().execute(context)

        def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
            try:
                return super().execute_complete(context, event)
            except Exception as exc:
                self._roll_back()
                raise AirflowFailException(f"promotion not approved ({exc}); the canary was removed") from exc

        def _roll_back(self) -> None:
            from elastic_inference.hooks.kubernetes import KubeAccess, KubeHook

            hook = KubeHook(KubeAccess(kubernetes_conn_id=self.kubernetes_conn_id))
            try:
                remove_canary(
                    hook, _mapping(self.deployment, "deployment"), _mapping(self.ingress, "ingress"), log=self.log
                )
            finally:
                hook.close()

else:  # pragma: no cover
    CanaryApprovalOperator = None  # type: ignore[assignment,misc]
