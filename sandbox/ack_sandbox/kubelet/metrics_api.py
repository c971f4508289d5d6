"""The resource Metrics API (``metrics.k8s.io/v1beta1``, as metrics-server serves it) from the pods' real processes.

``kubectl top pods|nodes`` (and an HPA on cpu/memory) read ``PodMetrics`` / ``NodeMetrics``
(k8s.io/metrics/pkg/apis/metrics/v1beta1/types.go): per container ``usage.cpu`` in nanocores (``"1234n"``) and
``usage.memory`` (working set, ``"1234Ki"``), a ``timestamp`` and the ``window`` the CPU rate was taken over.
Here a container is a local process group, so usage is read with psutil from the container's process and its
descendants: memory is their resident set, CPU the rate of their user+system CPU time between two samples (the
previous request's, or one taken 0.5 s before when there is none younger than a minute). A node's usage is the
sum of its pods' (the sandbox's nodes share one machine). A pod with no running container has no metrics:
``podmetrics.metrics.k8s.io "<ns>/<name>" not found``, as metrics-server answers before its first scrape.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from ack_sandbox.k8s import auth
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import labels_match, parse_label_selector, rfc3339

if TYPE_CHECKING:
    from ack_sandbox.controllers.kubelet import Kubelet
    from ack_sandbox.kubelet.pod import PodWorker

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
RESOURCES = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
]
MIN_WINDOW = 0.5  # real seconds between two CPU samples
MAX_AGE = 60.0  # a previous sample older than this is not used for the rate


def _tree_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of a process and its descendants; (0, 0) when it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


class Sampler:
    """CPU rates from successive samples of each container's process tree (keyed by pid)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (monotonic time, cpu seconds)

    def _fresh(self, pids: list[int]) -> bool:
        now = time.monotonic()
        return all(pid in self._last and MIN_WINDOW <= now - self._last[pid][0] <= MAX_AGE for pid in pids)

    async def usage(self, pids: list[int]) -> dict[int, tuple[int, int, float]]:
        """pid -> (nanocores, memory bytes, window seconds)."""
        if not self._fresh(pids):
            for pid in pids:
                self._last[pid] = (time.monotonic(), _tree_usage(pid)[0])
            await asyncio.sleep(MIN_WINDOW)
        out: dict[int, tuple[int, int, float]] = {}
        now = time.monotonic()
        for pid in pids:
            cpu, rss = _tree_usage(pid)
            t0, cpu0 = self._last.get(pid, (now, cpu))
            window = max(now - t0, 1e-6)
            out[pid] = (max(int((cpu - cpu0) / window * 1e9), 0), rss, window)
            self._last[pid] = (now, cpu)
        for gone in set(self._last) - set(pids):
            if not psutil.pid_exists(gone):
                del self._last[gone]
        return out


def _running(worker: PodWorker) -> list[tuple[str, int]]:
    return [
        (r.name, r.proc.pid)
        for r in worker.runners
        if r.proc is not None and r.proc.pid is not None and r.proc.running()
    ]


def _not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{resource}.{GROUP} "{name}" not found', {"name": name, "group": GROUP, "kind": resource}
    )


class MetricsApi:
    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self.sampler = Sampler()

    def _stamp(self) -> str:
        return rfc3339(float(self.kubelet.ctx.clock.now()))

    async def _pod_metrics(self, workers: list[PodWorker]) -> list[dict[str, Any]]:
        running = {w.uid: _running(w) for w in workers}
        usage = await self.sampler.usage([pid for cs in running.values() for _, pid in cs])
        stamp = self._stamp()
        items = []
        for w in workers:
            cs = running[w.uid]
            if not cs:
                continue
            window = max(usage[pid][2] for _, pid in cs)
            items.append(
                {
                    "metadata": {
                        "name": w.name,
                        "namespace": w.ns,
                        "creationTimestamp": stamp,
                        "labels": dict(w.pod["metadata"].get("labels") or {}),
                    },
                    "timestamp": stamp,
                    "window": f"{window:.3f}s",
                    "containers": [
                        {"name": name, "usage": {"cpu": f"{usage[pid][0]}n", "memory": f"{usage[pid][1] // 1024}Ki"}}
                        for name, pid in cs
                    ],
                }
            )
        return items

    async def handle(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        from ack_sandbox.k8s.service import api_error, resource_list_response

        try:
            if not rest:
                return resource_list_response(GROUP, VERSION, RESOURCES)
            if request.method != "GET":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            user: auth.User = request["user"]
            selector = parse_label_selector(request.query.get("labelSelector"))
            if rest[0] == "nodes" and len(rest) <= 2:
                name = rest[1] if len(rest) == 2 else None
                auth.authorize(user, "get" if name else "list", GROUP, "nodes", None, name)
                return web.json_response(await self._nodes(name, selector))
            ns = None
            if rest[0] == "namespaces" and len(rest) >= 3:
                ns, rest = rest[1], rest[2:]
            if rest[0] == "pods" and len(rest) <= 2:
                name = rest[1] if len(rest) == 2 else None
                auth.authorize(user, "get" if name else "list", GROUP, "pods", ns, name)
                return web.json_response(await self._pods(ns, name, selector))
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        except ApiError as exc:
            return api_error(exc)

    def _workers(self, ns: str | None, selector: list[Any]) -> list[PodWorker]:
        return sorted(
            (
                w
                for w in self.kubelet.pods.values()
                if (ns is None or w.ns == ns)
                and not w.stopping
                and labels_match(selector, w.pod["metadata"].get("labels"))
            ),
            key=lambda w: (w.ns, w.name),
        )

    async def _pods(self, ns: str | None, name: str | None, selector: list[Any]) -> dict[str, Any]:
        workers = [w for w in self._workers(ns, selector) if name is None or w.name == name]
        items = await self._pod_metrics(workers)
        if name is not None:
            if not items:
                raise _not_found("podmetrics", f"{ns}/{name}")
            return {"kind": "PodMetrics", "apiVersion": f"{GROUP}/{VERSION}", **items[0]}
        return {"kind": "PodMetricsList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}, "items": items}

    async def _nodes(self, name: str | None, selector: list[Any]) -> dict[str, Any]:
        from ack_sandbox.controllers.base import NODES

        nodes = [n for n in await self.kubelet.api.list(NODES) if name is None or n["metadata"]["name"] == name]
        nodes = [n for n in nodes if labels_match(selector, n["metadata"].get("labels"))]
        if name is not None and not nodes:
            raise _not_found("nodemetrics", name)
        pods = await self._pod_metrics(self._workers(None, []))
        node_of = {(w.ns, w.name): w.node_name for w in self.kubelet.pods.values()}
        stamp = self._stamp()
        items = []
        for n in nodes:
            nname = n["metadata"]["name"]
            mine = [p for p in pods if node_of.get((p["metadata"]["namespace"], p["metadata"]["name"])) == nname]
            cpu = sum(int(c["usage"]["cpu"][:-1]) for p in mine for c in p["containers"])
            mem = sum(int(c["usage"]["memory"][:-2]) for p in mine for c in p["containers"])
            items.append(
                {
                    "metadata": {
                        "name": nname,
                        "creationTimestamp": stamp,
                        "labels": dict(n["metadata"].get("labels") or {}),
                    },
                    "timestamp": stamp,
                    "window": f"{max((float(p['window'][:-1]) for p in mine), default=MIN_WINDOW):.3f}s",
                    "usage": {"cpu": f"{cpu}n", "memory": f"{mem}Ki"},
                }
            )
        if name is not None:
            return {"kind": "NodeMetrics", "apiVersion": f"{GROUP}/{VERSION}", **items[0]}
        return {"kind": "NodeMetricsList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}, "items": items}


def register(kubelet: Kubelet) -> MetricsApi:
    from ack_sandbox.k8s.service import register_api_group

    api = MetricsApi(kubelet)
    register_api_group(kubelet.ctx, GROUP, VERSION, RESOURCES, api.handle)
    return api
