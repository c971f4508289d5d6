"""The Endpoints and EndpointSlice controllers (pkg/controller/endpoint, pkg/controller/endpointslice).

For every Service with a selector, the pods it selects that have an IP become:

- ``Endpoints/<service>``: ``subsets`` grouped by resolved ports, ready pods in ``addresses``, the others in
  ``notReadyAddresses`` (all in ``addresses`` with ``publishNotReadyAddresses``); terminating pods are left out.
  Each address has ``ip``, ``nodeName`` and a Pod ``targetRef``. Labels: the Service's, plus
  ``service.kubernetes.io/headless`` for a headless Service.
- ``EndpointSlice/<service>-xxxxx`` (one per port set, ``addressType: IPv4``): every endpoint with
  ``conditions`` ``ready``/``serving``/``terminating``, ``nodeName``, ``targetRef``; labels
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``;
  owned by the Service (deleted with it by the garbage collector).

A ``targetPort`` name resolves through the pod's container ports (a pod without it gets no endpoint for that
port). Services without a selector are left alone (their Endpoints are the user's), except ``default/kubernetes``
whose endpoint is the API server itself, as the apiserver's endpoint reconciler writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from ack_sandbox.controllers.base import (
    ENDPOINTS,
    ENDPOINTSLICES,
    PODS,
    SERVICES,
    Controller,
    Key,
    Kind,
    Obj,
    get_condition,
    key_of,
    owner_ref,
)
from ack_sandbox.k8s.meta import labels_match, selector_from_label_selector

log = logging.getLogger("ack_sandbox.controllers.endpoints")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def _resolve_port(pod: Obj, svc_port: dict[str, Any]) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == svc_port.get("protocol", "TCP"):
                return int(p["containerPort"])
    return None


def _ready(pod: Obj) -> bool:
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def _target_ref(pod: Obj) -> dict[str, Any]:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]}


def _ports_of(pod: Obj, svc: Obj) -> tuple[tuple[str, int, str], ...] | None:
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        port = _resolve_port(pod, sp)
        if port is None:
            continue
        out.append((sp.get("name", ""), port, sp.get("protocol", "TCP")))
    return tuple(out) if out or not (svc.get("spec") or {}).get("ports") else None


def _port_docs(ports: tuple[tuple[str, int, str], ...]) -> list[dict[str, Any]]:
    docs = []
    for name, port, proto in ports:
        d: dict[str, Any] = {"port": port, "protocol": proto}
        if name:
            d = {"name": name, **d}
        docs.append(d)
    return docs


def desired(svc: Obj, pods: list[Obj]) -> tuple[list[dict[str, Any]], dict[tuple[Any, ...], list[dict[str, Any]]]]:
    """(Endpoints subsets, {port set: EndpointSlice endpoints}) for a Service and its namespace's pods."""
    spec = svc.get("spec") or {}
    reqs = selector_from_label_selector({"matchLabels": spec.get("selector") or {}})
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    slices: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        st = pod.get("status") or {}
        ip = st.get("podIP")
        if not ip or st.get("phase") in ("Succeeded", "Failed"):
            continue
        if not labels_match(reqs, pod["metadata"].get("labels")):
            continue
        ports = _ports_of(pod, svc)
        if ports is None:
            continue
        ready = _ready(pod)
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        node = (pod.get("spec") or {}).get("nodeName")
        addr: dict[str, Any] = {"ip": ip}
        if node:
            addr["nodeName"] = node
        addr["targetRef"] = _target_ref(pod)
        if not terminating or publish:
            bucket = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
            bucket["addresses" if ready or publish else "notReadyAddresses"].append(addr)
        ep: dict[str, Any] = {
            "addresses": [ip],
            "conditions": {
                "ready": (ready or publish) and not terminating,
                "serving": ready,
                "terminating": terminating,
            },
        }
        if node:
            ep["nodeName"] = node
        ep["targetRef"] = _target_ref(pod)
        slices.setdefault(ports, []).append(ep)
    subsets = []
    for ports, bucket in groups.items():
        sub: dict[str, Any] = {k: v for k, v in bucket.items() if v}
        if ports:
            sub["ports"] = _port_docs(ports)
        subsets.append(sub)
    return subsets, slices


class EndpointsController(Controller):
    name = "endpoint-controller"
    primary = SERVICES
    watches = (PODS,)
    resync = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._services: dict[str, set[str]] = {}  # namespace -> names of services with a selector

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == SERVICES:
            ns, name = key_of(obj)
            names = self._services.setdefault(ns, set())
            if etype == "DELETED" or not (obj.get("spec") or {}).get("selector"):
                names.discard(name)
            else:
                names.add(name)
            return [(ns, name)]
        ns = obj["metadata"].get("namespace", "")
        return [(ns, name) for name in sorted(self._services.get(ns, ()))]

    async def reconcile(self, key: Key) -> float | None:
        ns, name = key
        svc = await self.api.get_or_none(SERVICES, ns, name)
        if svc is None:
            await self.api.delete(ENDPOINTS, ns, name)
            return None
        if key == ("default", "kubernetes"):
            await self._apiserver_endpoints(svc)
            return None
        spec = svc.get("spec") or {}
        if not spec.get("selector") or svc["metadata"].get("deletionTimestamp"):
            return None
        pods = await self.api.list(PODS, ns)
        subsets, slices = desired(svc, pods)
        labels = dict(svc["metadata"].get("labels") or {})
        if spec.get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        await self._write_endpoints(svc, subsets, labels)
        await self._write_slices(svc, slices, labels)
        return None

    async def _write_endpoints(self, svc: Obj, subsets: list[dict[str, Any]], labels: dict[str, str]) -> None:
        ns, name = key_of(svc)
        current = await self.api.get_or_none(ENDPOINTS, ns, name)
        if current is None:
            doc: Obj = {"metadata": {"name": name, "namespace": ns, "labels": labels}}
            if subsets:
                doc["subsets"] = subsets
            await self.api.create(ENDPOINTS, doc)
            return
        if (current.get("subsets") or []) == subsets and (current["metadata"].get("labels") or {}) == labels:
            return
        current["metadata"]["labels"] = labels
        if subsets:
            current["subsets"] = subsets
        else:
            current.pop("subsets", None)
        await self.api.update(ENDPOINTS, current)

    async def _write_slices(
        self, svc: Obj, slices: dict[tuple[Any, ...], list[dict[str, Any]]], labels: dict[str, str]
    ) -> None:
        ns, name = key_of(svc)
        uid = svc["metadata"]["uid"]
        want_labels = {**labels, SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
        existing = [
            s
            for s in await self.api.list(ENDPOINTSLICES, ns, label_selector=f"{SERVICE_NAME_LABEL}={name}")
            if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        ]
        if not slices:
            slices = {(): []}  # a Service with no endpoints still has one (empty) slice
        by_ports = {
            tuple((p.get("name", ""), p.get("port"), p.get("protocol")) for p in s.get("ports") or []): s
            for s in existing
        }
        for ports, endpoints in slices.items():
            ports_doc = _port_docs(ports)
            cur = by_ports.pop(ports, None)
            if cur is None:
                await self.api.create(
                    ENDPOINTSLICES,
                    {
                        "metadata": {
                            "generateName": f"{name}-",
                            "namespace": ns,
                            "labels": want_labels,
                            "ownerReferences": [owner_ref(svc, SERVICES)],
                        },
                        "addressType": "IPv4",
                        "endpoints": endpoints,
                        "ports": ports_doc,
                    },
                )
                continue
            if (
                (cur.get("endpoints") or []) == endpoints
                and (cur.get("ports") or []) == ports_doc
                and (cur["metadata"].get("labels") or {}) == want_labels
                and any(r.get("uid") == uid for r in cur["metadata"].get("ownerReferences") or [])
            ):
                continue
            cur["endpoints"], cur["ports"] = endpoints, ports_doc
            cur["metadata"]["labels"] = want_labels
            cur["metadata"]["ownerReferences"] = [owner_ref(svc, SERVICES)]
            await self.api.update(ENDPOINTSLICES, cur)
        for stale in by_ports.values():
            await self.api.delete(ENDPOINTSLICES, ns, stale["metadata"]["name"])

    async def _apiserver_endpoints(self, svc: Obj) -> None:
        """``default/kubernetes``: the API server's own address and HTTPS port (the endpoint reconciler's)."""
        from ack_sandbox.k8s.service import HTTPS_URL

        url = self.ctx.services.get(HTTPS_URL)
        if not url:
            return
        parsed = urlparse(url)
        ports = (("https", int(parsed.port or 443), "TCP"),)
        subsets = [{"addresses": [{"ip": parsed.hostname}], "ports": _port_docs(ports)}]
        await self._write_endpoints(svc, subsets, {"endpointslice.kubernetes.io/skip-mirror": "true"})
        ns, name = key_of(svc)
        current = await self.api.get_or_none(ENDPOINTSLICES, ns, name)
        doc = {
            "metadata": {"name": name, "namespace": ns, "labels": {SERVICE_NAME_LABEL: name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [parsed.hostname], "conditions": {"ready": True}}],
            "ports": _port_docs(ports),
        }
        if current is None:
            await self.api.create(ENDPOINTSLICES, doc)
