"""``external.metrics.k8s.io/v1beta1`` as ack-alibaba-cloud-metrics-adapter serves it for SLS ingress logs.

Source checked: AliyunContainerService/alibaba-cloud-metrics-adapter ``pkg/metrics/sls/{sls.go,ingress.go}``
and ``docs/metrics/sls.md``:

- ``sls_ingress_qps`` = ``SELECT count(1) / <interval> FROM log WHERE __time__ >= now-delay-interval AND
  __time__ < now-delay`` filtered on ``proxy_upstream_name: <sls.ingress.route>``, truncated to an integer
  (``int64(val)``), returned as ONE item for the whole route (the HPA's AverageValue divides by replicas);
- ``sls_ingress_latency_avg`` = ``avg(request_time) * 1000`` and ``sls_ingress_latency_p50|p95|p99|p9999``
  = ``approx_percentile(request_time, q) * 1000`` (milliseconds), ``sls_ingress_inflow`` is not served;
- interval 15 s (minimum 15), delay 10 s, overridable with ``sls.query.interval`` / ``sls.query.delay``;
- the route is matched against ``proxy_upstream_name`` only (the query is ``* and proxy_upstream_name:
  <route> | SELECT ...``): with an ingress-nginx canary, a request the canary answered is logged under the
  main location's upstream (its own in ``proxy_alternative_upstream_name``), so the main route's QPS counts
  the whole location's traffic and a canary Service's own route reads 0, on ACK as here
  (``route_stats.window(..., served=True)`` has the split by the upstream that answered);
- a missing ``sls.ingress.route`` means every route; a selector with no requirement is refused with
  "External metrics need at least one label provided."; the namespace in the URL is ignored.

Time scale: the window and the delay are cloud durations, so at ``--time-scale 30`` the 15 s window is
0.5 wall seconds, 10 s delay 0.33 s. The *rate* is requests per wall-clock second (count / real window
length), because request throughput is not a delay the sandbox compresses: a load test sending 45
requests per second must read as QPS 45 whatever the time scale.

The HPA controller calls ``external_metric_values`` directly (same code path as the HTTP API).
Errors are apiserver Status errors: the adapter's Go errors reach the client as 500 InternalError
("Internal error occurred: ..."), as the generic apiserver wraps non-Status errors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ack_sandbox.controllers.route_stats import stats_of
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import parse_label_selector

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_INTERVAL = 15.0
MIN_INTERVAL = 15.0
DEFAULT_DELAY = 10.0
DEFAULT_LOGSTORE = "nginx-ingress"

LABEL_PROJECT = "sls.project"
LABEL_LOGSTORE = "sls.logstore"
LABEL_ROUTE = "sls.ingress.route"
LABEL_INTERVAL = "sls.query.interval"
LABEL_DELAY = "sls.query.delay"

QPS = "sls_ingress_qps"
LATENCY = {
    "sls_ingress_latency_avg": None,
    "sls_ingress_latency_p50": 0.50,
    "sls_ingress_latency_p95": 0.95,
    "sls_ingress_latency_p99": 0.99,
    "sls_ingress_latency_p9999": 0.9999,
}
METRICS = (QPS, *LATENCY)


def internal_error(message: str) -> ApiError:
    """apierrors.NewInternalError(err): what a provider's plain Go error becomes on the wire."""
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def default_project(ctx: Any) -> str:
    """ACK's default log project for the cluster's ingress access logs."""
    return f"k8s-log-{ctx.cluster_id}"


def _labels(label_selector: str | None) -> dict[str, str]:
    reqs = parse_label_selector(label_selector)
    if not reqs:
        raise internal_error("External metrics need at least one label provided.")
    labels: dict[str, str] = {}
    for key, op, values in reqs:
        if op != "=" or len(values) != 1:
            raise internal_error(f"label {key!r}: only equality requirements (key=value) are supported")
        labels[key] = values[0]
    return labels


def _seconds(labels: dict[str, str], key: str, default: float, minimum: float = 0.0) -> float:
    raw = labels.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise internal_error(f"label {key}={raw!r} is not a number of seconds") from None
    return max(value, minimum)


def external_metric_values(ctx: Any, metric: str, label_selector: str | None) -> list[int]:
    """Milli-values of ``metric`` for the selector (one item, as the adapter returns), or ApiError."""
    if metric not in METRICS:
        raise internal_error(f"metric {metric} is not supported; served: {', '.join(METRICS)}")
    labels = _labels(label_selector)
    project = labels.get(LABEL_PROJECT, default_project(ctx))
    logstore = labels.get(LABEL_LOGSTORE, DEFAULT_LOGSTORE)
    # SLS answers ProjectNotExist / LogStoreNotExist; the adapter passes the error text on.
    if project != default_project(ctx):
        raise internal_error(
            f"failed to query sls: ProjectNotExist: The Project does not exist : {project} "
            f"(this cluster logs ingress to {default_project(ctx)})"
        )
    if logstore != DEFAULT_LOGSTORE:
        raise internal_error(
            f"failed to query sls: LogStoreNotExist: logstore {logstore} does not exist "
            f"(the ingress access log store is {DEFAULT_LOGSTORE})"
        )
    interval = _seconds(labels, LABEL_INTERVAL, DEFAULT_INTERVAL, MIN_INTERVAL)
    delay = _seconds(labels, LABEL_DELAY, DEFAULT_DELAY)
    route = labels.get(LABEL_ROUTE)
    now = ctx.clock.now()
    window = stats_of(ctx).window(route, now - delay - interval, now - delay)
    if metric == QPS:
        real_window = ctx.clock.real_seconds(interval)
        return [int(window.count / real_window) * 1000]
    q = LATENCY[metric]
    value = window.mean if q is None else window.percentile(q)
    return [int((value or 0.0) * 1000) * 1000]


def external_metric_value_list(ctx: Any, namespace: str, metric: str, label_selector: str | None) -> dict[str, Any]:
    """The ExternalMetricValueList the API answers (k8s.io/metrics external_metrics/v1beta1 types)."""
    del namespace  # the adapter ignores it
    values = external_metric_values(ctx, metric, label_selector)
    from ack_sandbox.controllers.base import now_iso

    stamp = now_iso()
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "metricName": metric,
                "metricLabels": None,
                "timestamp": stamp,
                "value": str(v // 1000) if v % 1000 == 0 else f"{v}m",
            }
            for v in values
        ],
    }


def api_resource_list() -> dict[str, Any]:
    """GET /apis/external.metrics.k8s.io/v1beta1 (custom-metrics-apiserver lists the served metric names)."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": m, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
            for m in METRICS
        ],
    }


def api_group() -> dict[str, Any]:
    """The entry for /apis (APIGroupList) and GET /apis/external.metrics.k8s.io."""
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


# ------------------------------------------------------------------------------------------------- HTTP
def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def handle(ctx: Any, request: web.Request) -> web.Response:
    """Serve any request under /apis/external.metrics.k8s.io (for the Kubernetes API's aggregation hook)."""
    path = request.path.rstrip("/")
    base = f"/apis/{GROUP}"
    try:
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if path == base:
            return _json(api_group())
        if path == f"{base}/{VERSION}":
            return _json(api_resource_list())
        parts = path[len(base) + 1 :].split("/")
        # v1beta1/namespaces/{ns}/{metric}
        if len(parts) == 4 and parts[0] == VERSION and parts[1] == "namespaces":
            ns, metric = unquote(parts[2]), unquote(parts[3])
            return _json(external_metric_value_list(ctx, ns, metric, request.query.get("labelSelector")))
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
    except ApiError as exc:
        return _json(exc.status(), exc.code)


def routes(ctx: Any) -> list[web.AbstractRouteDef]:
    """aiohttp routes for the Kubernetes API app (mounted there, so clients reach them on the apiserver URL)."""

    async def _h(request: web.Request) -> web.Response:
        return await handle(ctx, request)

    return [web.route("*", f"/apis/{GROUP}", _h), web.route("*", f"/apis/{GROUP}/{{tail:.*}}", _h)]


def aggregated_group(ctx: Any) -> Any:
    """This API as a ``k8s.discovery.AggregatedGroup`` (the Kubernetes API's APIService-like hook):
    discovery lists it under /apis and requests under /apis/external.metrics.k8s.io are handed here."""
    from ack_sandbox.k8s.discovery import AggregatedGroup

    async def _handler(request: web.Request, _parts: Any = None) -> web.Response:
        return await handle(ctx, request)

    return AggregatedGroup(group=GROUP, version=VERSION, resources=api_resource_list()["resources"], handler=_handler)


class ExternalMetricsApi:
    """Registers this API with the Kubernetes API service (the APIService of the metrics adapter).

    Listed in ``controllers.service.CONTROLLERS`` like a controller (``start``/``stop``), so it is
    served from the Kubernetes API URL: ``kubectl get --raw /apis/external.metrics.k8s.io/v1beta1``.
    """

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        from ack_sandbox.k8s.service import register_api_group

        async def _handler(request: web.Request, _parts: list[str]) -> web.StreamResponse:
            return await handle(self.ctx, request)

        register_api_group(self.ctx, GROUP, VERSION, api_resource_list()["resources"], _handler)

    async def stop(self) -> None:
        """Nothing runs in the background; requests simply stop when the daemon does."""
