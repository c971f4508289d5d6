"""Recording what the cluster does while the load runs: one sample every few seconds.

A sample holds the external QPS metric the HPA scales on, the HPA's desired/current replicas and
conditions, the Deployment's replicas, its pods (node, phase, readiness) and every node with the labels
that tell its pool, charge type, zone and instance type. The recorder reads plain JSON through a
``fetch(path, query) -> dict`` callable (``KubeHook.request``), so the parsing below is pure and unit
tested on dicts, and the recorder works with any client that speaks the Kubernetes REST API.

Label keys (ACK node init and the cloud-controller-manager; see shared/reference
alibaba-ack-seldon-hpa.md §7): ``alibabacloud.com/nodepool-id``, ``node.alibabacloud.com/spot-strategy``
(``NoSpot`` = pay-as-you-go, ``SpotAsPriceGo``/``SpotWithPriceLimit`` = spot),
``node.alibabacloud.com/instance-charge-type``, ``topology.kubernetes.io/zone``,
``node.kubernetes.io/instance-type``.

The timeline file (JSON, ``TIMELINE_VERSION``) is what the verify operator reads: ``meta`` (namespace,
deployment, HPA spec, metric selector, pool), ``load`` (Unix times of start / hold start / stop and the
plan), ``samples``, ``locust`` (aggregated stats, per-second history, failures, label checks) and ``scale_in``
(after the load: when the replicas were back at minReplicas, the pool's nodes before the load and when it was
back to them, each wait's bound).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

TIMELINE_VERSION = 1
POOL_ID_LABELS = ("alibabacloud.com/nodepool-id", "node.alibabacloud.com/nodepool-id")
SPOT_LABEL = "node.alibabacloud.com/spot-strategy"
CHARGE_LABEL = "node.alibabacloud.com/instance-charge-type"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")

CHARGE_PAYG = "PayAsYouGo"
CHARGE_SPOT = "Spot"
CHARGE_SUBSCRIPTION = "Subscription"
CHARGE_UNKNOWN = "unknown"

Fetch = Callable[..., dict[str, Any]]


# -- pure parsing ---------------------------------------------------------------------------------------
def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("45", "4500m", "1.5k") as a float; None when absent or unparseable."""
    if value is None:
        return None
    text = str(value).strip()
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * suffixes[suffix]
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def _first_label(labels: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


def charge_type(labels: dict[str, str]) -> str:
    """PayAsYouGo / Spot / Subscription from the node's labels (spot instances are also PostPaid)."""
    spot = labels.get(SPOT_LABEL)
    if spot:
        return CHARGE_PAYG if spot == "NoSpot" else CHARGE_SPOT
    charge = labels.get(CHARGE_LABEL)
    if charge == "PrePaid":
        return CHARGE_SUBSCRIPTION
    if charge == "PostPaid":
        return CHARGE_PAYG
    return CHARGE_UNKNOWN


def _is_ready(conditions: list[dict[str, Any]] | None) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions or [])


def node_info(
    node: dict[str, Any], *, pool_id: str | None = None, pool_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    """What the verification needs of a node. ``in_pool`` is decided by the pool id label when ``pool_id``
    is known, else by ``pool_selector`` (the pods' nodeSelector)."""
    meta = node.get("metadata", {})
    labels = meta.get("labels") or {}
    pool = _first_label(labels, POOL_ID_LABELS)
    if pool_id:
        in_pool = pool == pool_id
    elif pool_selector:
        in_pool = all(labels.get(k) == v for k, v in pool_selector.items())
    else:
        in_pool = False
    return {
        "name": meta.get("name"),
        "pool": pool,
        "in_pool": in_pool,
        "charge": charge_type(labels),
        "spot_strategy": labels.get(SPOT_LABEL),
        "zone": _first_label(labels, ZONE_LABELS),
        "instance_type": _first_label(labels, TYPE_LABELS),
        "ready": _is_ready(node.get("status", {}).get("conditions")),
        "created": meta.get("creationTimestamp"),
    }


def pod_info(pod: dict[str, Any]) -> dict[str, Any]:
    status = pod.get("status", {})
    meta = pod.get("metadata", {})
    waiting = [cs.get("state", {}).get("waiting", {}).get("reason") for cs in status.get("containerStatuses") or []]
    return {
        "name": meta.get("name"),
        "node": pod.get("spec", {}).get("nodeName"),
        "phase": status.get("phase"),
        "ready": _is_ready(status.get("conditions")),
        "deleting": bool(meta.get("deletionTimestamp")),
        "waiting": [w for w in waiting if w],
    }


def hpa_spec(hpa: dict[str, Any]) -> dict[str, Any]:
    """min/max replicas and the first External metric (name, selector, AverageValue/Value target)."""
    spec = hpa.get("spec", {})
    out: dict[str, Any] = {
        "name": hpa.get("metadata", {}).get("name"),
        "min_replicas": spec.get("minReplicas", 1),
        "max_replicas": spec.get("maxReplicas"),
        "metric": None,
        "selector": {},
        "target": None,
        "target_type": None,
        "scale_target": (spec.get("scaleTargetRef") or {}).get("name"),
    }
    for metric in spec.get("metrics") or []:
        if metric.get("type") != "External":
            continue
        ext = metric.get("external", {})
        target = ext.get("target", {})
        out["metric"] = ext.get("metric", {}).get("name")
        out["selector"] = (ext.get("metric", {}).get("selector") or {}).get("matchLabels") or {}
        out["target_type"] = target.get("type")
        out["target"] = parse_quantity(
            target.get("averageValue") if target.get("type") == "AverageValue" else target.get("value")
        )
        break
    return out


def hpa_status(hpa: dict[str, Any]) -> dict[str, Any]:
    status = hpa.get("status", {})
    return {
        "desired": status.get("desiredReplicas"),
        "current": status.get("currentReplicas"),
        "conditions": [
            {"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"), "message": c.get("message")}
            for c in status.get("conditions") or []
        ],
    }


def metric_value(value_list: dict[str, Any]) -> float | None:
    """Sum of an ExternalMetricValueList's items, as the HPA sums them (replica_calculator.go)."""
    items = value_list.get("items") or []
    values = [parse_quantity(i.get("value")) for i in items]
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# -- recording ------------------------------------------------------------------------------------------
class TimelineRecorder:
    """Samples one Deployment, its HPA, its pods, the nodes and the external metric.

    :param fetch: ``fetch(path, query=dict) -> dict`` (e.g. ``KubeHook(...).request`` with method bound).
    :param deployment: the Deployment serving the model (found by the operator).
    :param hpa: the HPA object scaling it, or None when there is none (recorded as such).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        namespace: str,
        deployment: dict[str, Any],
        hpa: dict[str, Any] | None,
        pool_id: str | None = None,
        pool_selector: dict[str, str] | None = None,
        metric_name: str | None = None,
        metric_selector: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetch = fetch
        self.namespace = namespace
        self.deployment_name = deployment["metadata"]["name"]
        template = deployment.get("spec", {}).get("template", {}).get("spec", {})
        self.pod_selector = selector_string(deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {})
        self.pool_id = pool_id
        self.pool_selector = pool_selector if pool_selector is not None else (template.get("nodeSelector") or {})
        self.hpa = hpa_spec(hpa) if hpa else None
        self.metric_name = metric_name or (self.hpa or {}).get("metric")
        self.metric_selector = metric_selector if metric_selector is not None else (self.hpa or {}).get("selector", {})
        self.clock = clock
        self.samples: list[dict[str, Any]] = []
        self.errors = 0

    def meta(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "deployment": self.deployment_name,
            "pod_selector": self.pod_selector,
            "hpa": self.hpa,
            "pool_id": self.pool_id,
            "pool_selector": self.pool_selector,
            "metric": {"name": self.metric_name, "selector": self.metric_selector},
        }

    def _get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.fetch(path, query=query) if query else self.fetch(path)

    def sample(self) -> dict[str, Any]:
        """Take one sample; a failing read is recorded in ``errors`` and never stops the load test."""
        ns = quote(self.namespace, safe="")
        s: dict[str, Any] = {
            "t": self.clock(),
            "qps": None,
            "hpa": None,
            "deployment": None,
            "pods": [],
            "nodes": [],
            "errors": [],
        }
        reads: list[tuple[str, Callable[[], None]]] = []

        def read_metric() -> None:
            path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{quote(self.metric_name, safe='')}"
            s["qps"] = metric_value(self._get(path, {"labelSelector": selector_string(self.metric_selector)}))

        def read_hpa() -> None:
            name = quote(self.hpa["name"], safe="")
            s["hpa"] = hpa_status(self._get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}"))

        def read_deployment() -> None:
            d = self._get(f"/apis/apps/v1/namespaces/{ns}/deployments/{quote(self.deployment_name, safe='')}")
            st = d.get("status", {})
            s["deployment"] = {
                "spec_replicas": d.get("spec", {}).get("replicas"),
                "replicas": st.get("replicas", 0),
                "ready": st.get("readyReplicas", 0),
                "updated": st.get("updatedReplicas", 0),
            }

        def read_pods() -> None:
            pods = self._get(f"/api/v1/namespaces/{ns}/pods", {"labelSelector": self.pod_selector})
            s["pods"] = [pod_info(p) for p in pods.get("items") or []]

        def read_nodes() -> None:
            nodes = self._get("/api/v1/nodes")
            s["nodes"] = [
                node_info(n, pool_id=self.pool_id, pool_selector=self.pool_selector) for n in nodes.get("items") or []
            ]

        if self.metric_name and self.metric_selector:
            reads.append(("metric", read_metric))
        if self.hpa:
            reads.append(("hpa", read_hpa))
        reads += [("deployment", read_deployment), ("pods", read_pods), ("nodes", read_nodes)]
        for what, read in reads:
            try:
                read()
            except Exception as exc:  # noqa: BLE001 - keep recording; the gap shows in the report
                self.errors += 1
                s["errors"].append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
                log.warning("Timeline sample: reading %s failed: %s", what, exc)
        self.samples.append(s)
        return s


def replicas_of(sample: dict[str, Any]) -> int | None:
    """The replica count a sample shows: the HPA's current replicas, else the Deployment's."""
    if sample.get("hpa") and sample["hpa"].get("current") is not None:
        return int(sample["hpa"]["current"])
    if sample.get("deployment"):
        return int(sample["deployment"].get("replicas") or 0)
    return None


def pool_node_count(sample: dict[str, Any]) -> int:
    """How many nodes of the elastic pool a sample shows (being cordoned for removal still counts: still billed)."""
    return sum(1 for n in sample.get("nodes") or [] if n.get("in_pool"))


def replicas_back(sample: dict[str, Any], min_replicas: int) -> bool:
    """The HPA and the Deployment are both back at ``min_replicas`` (no surplus pod left terminating)."""
    return replicas_of(sample) == min_replicas and (sample.get("deployment") or {}).get("replicas", 0) <= min_replicas


def pool_back(sample: dict[str, Any], nodes_before: int) -> bool:
    """The elastic pool has no more nodes than before the load: what the load made it buy is released."""
    return pool_node_count(sample) <= nodes_before


def write_timeline(path: Path, doc: dict[str, Any]) -> Path:
    doc = {"version": TIMELINE_VERSION, **doc}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def read_timeline(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"timeline file {str(p)!r} does not exist; the load-test task writes it "
            f"(check that it ran and that both tasks see the same reports_dir)"
        )
    doc = json.loads(p.read_text(encoding="utf-8"))
    if doc.get("version") != TIMELINE_VERSION:
        raise ValueError(f"{p}: timeline version {doc.get('version')!r}, expected {TIMELINE_VERSION}")
    return doc
