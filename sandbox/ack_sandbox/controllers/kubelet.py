"""The kubelet: pods bound to a node really run, one local process per container.

For every pod bound to a node the kubelet runs a ``PodWorker`` (``kubelet.pod``; each of its containers is a
``ContainerRunner``, ``kubelet.container``). The worker:

1. mounts the pod's volumes (``controllers.volumes``; failures -> ``FailedMount`` event, the pod stays
   ``ContainerCreating`` and the mount is retried);
2. gives the pod its own loopback IP (``kubelet.ips``), shared by its containers;
3. runs each container as a local process chosen by image (``ack_sandbox.runtimes.registry.resolve``;
   an image the sandbox cannot run -> ``ErrImagePull``/``ImagePullBackOff`` with events), with the pod IP in
   ``POD_IP``, container paths of volume mounts rewritten to local directories in command/args/env (and
   the map in ``SANDBOX_VOLUME_MOUNTS``), stdout+stderr to the container log (``kubelet.logs``);
4. runs readiness/liveness/startup probes, restarts containers by ``restartPolicy`` with the kubelet's
   back-off (immediately, then 10 s, 20 s, 40 s ... capped at 300 s, cloud seconds; ``CrashLoopBackOff``
   while waiting), and writes pod status as a real kubelet does (``kubelet.status``);
5. on deletion sends SIGTERM, waits the grace period (compressed), SIGKILLs, then removes the pod object
   (the kubelet's final ``delete`` with grace 0).

The node's own IP (``status.hostIP``) is the Node's InternalIP. On daemon stop every process group is
killed; on daemon start, pods already bound get their processes started again (restartCount goes up, as
after a node reboot) and process groups a crashed daemon left behind are reaped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

from ack_sandbox.controllers.base import NODES, PODS, Controller, Key, Kind, Obj, key_of
from ack_sandbox.kubelet import logs
from ack_sandbox.kubelet.ips import IpPool, claim_block
from ack_sandbox.kubelet.pod import PodWorker
from ack_sandbox.kubelet.process import PidFile

log = logging.getLogger("ack_sandbox.controllers.kubelet")


class Kubelet(Controller):
    """One kubelet for every node of the sandbox (the Node objects say which nodes exist)."""

    name = "kubelet"
    primary = PODS
    watches = (NODES,)
    resync = 60.0
    workers = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ip_block = claim_block(self.ctx.state_dir)
        self.ips = IpPool(self.ip_block.block)
        self.pods: dict[str, PodWorker] = {}  # uid -> worker
        self.pids = PidFile(self.ctx.service_dir("kubelet") / "pids.json")
        self.session: aiohttp.ClientSession | None = None  # type: ignore[assignment]
        self._bg: set[asyncio.Task[Any]] = set()

    async def on_start(self) -> None:
        reaped = self.pids.reap_leftovers()
        if reaped:
            log.warning("kubelet: killed %d container process groups left by a previous daemon", reaped)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        try:
            from ack_sandbox.k8s.service import set_log_source, set_stream_handler
        except ImportError:
            return
        set_log_source(self.ctx, self.log_source)
        set_stream_handler(self.ctx, self.stream)
        from ack_sandbox.kubelet import metrics_api

        metrics_api.register(self)  # metrics.k8s.io for kubectl top, from the containers' processes

    async def stream(self, request: Any, pod: Obj, sub: str) -> Any:
        """``pods/{name}/exec|attach|portforward`` (``kubelet.streaming``)."""
        from ack_sandbox.kubelet import streaming

        handler = {"exec": streaming.exec_, "attach": streaming.attach, "portforward": streaming.portforward}[sub]
        return await handler(self, request, pod)

    async def log_source(self, pod: Obj, container: str, query: dict[str, str]) -> Any:
        """``GET pods/{name}/log``: the container's real output (``previous``, ``tailLines``, ``limitBytes``,
        ``follow``), or the apiserver's 400 when there is none yet."""
        from ack_sandbox.k8s.errors import bad_request

        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta.get("uid")
        previous = query.get("previous", "").lower() == "true"
        tail = int(query["tailLines"]) if query.get("tailLines", "").lstrip("-").isdigit() else None
        limit = int(query["limitBytes"]) if query.get("limitBytes", "").isdigit() else None
        data = logs.read_container_log(
            self.ctx, ns, name, uid, container, previous=previous, tail_lines=tail, limit_bytes=limit
        )
        if data is None:
            if previous:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
            reason = (((statuses.get(container) or {}).get("state") or {}).get("waiting") or {}).get(
                "reason", "ContainerCreating"
            )
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        if query.get("follow", "").lower() != "true" or previous:
            return data
        return self._follow(ns, name, uid or "", container, data)

    async def _follow(self, ns: str, name: str, uid: str, container: str, first: bytes) -> Any:
        yield first
        path = logs.find_log(self.ctx, ns, name, uid, container)
        offset = path.stat().st_size if path is not None and path.exists() else 0
        for _ in range(36000):  # at most ~2 h of following
            worker = self.pods.get(uid)
            runner = next((r for r in worker.runners if r.name == container), None) if worker else None
            if path is not None and path.exists() and path.stat().st_size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                offset += len(chunk)
                yield chunk
            elif runner is None or runner.proc is None or not runner.proc.running():
                return
            await asyncio.sleep(0.2)

    async def on_stop(self) -> None:
        workers = list(self.pods.values())
        for w in workers:
            w.kill_now()
        for w in workers:
            for r in w.runners:
                if r.proc is not None and r.proc.proc is not None:
                    try:
                        await asyncio.wait_for(r.proc.proc.wait(), 5)
                    except (TimeoutError, ProcessLookupError):
                        pass
                    self.pids.remove(r.proc.pid or 0)
        for t in list(self._bg):
            t.cancel()
        self.pods.clear()
        if self.session is not None:
            await self.session.close()
        self.ip_block.release()  # every pod is gone: another sandbox may take the block

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PODS:
            if etype == "DELETED":
                uid = obj["metadata"].get("uid", "")
                w = self.pods.get(uid)
                if w is not None:
                    self._spawn(self._stop_worker(uid, final_delete=False, force=True))
                return []
            return [key_of(obj)] if obj.get("spec", {}).get("nodeName") else []
        # Node events: pods on a node that appeared (e.g. after a daemon restart) start running.
        name = obj["metadata"]["name"]
        return [w.key() for w in self.pods.values() if w.node_name == name]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _stop_worker(self, uid: str, final_delete: bool, force: bool = False) -> None:
        w = self.pods.get(uid)
        if w is None:
            return
        if force:
            w.pod.setdefault("metadata", {})["deletionGracePeriodSeconds"] = 0
        await w.terminate(final_delete)
        self.pods.pop(uid, None)

    async def reconcile(self, key: Key) -> float | None:
        pod = await self.api.get_or_none(PODS, *key)
        stale = [w for w in self.pods.values() if w.key() == key and (pod is None or w.uid != pod["metadata"]["uid"])]
        for w in stale:
            self._spawn(self._stop_worker(w.uid, final_delete=False, force=True))
        if pod is None:
            return None
        node_name = pod.get("spec", {}).get("nodeName")
        if not node_name:
            return None
        uid = pod["metadata"]["uid"]
        worker = self.pods.get(uid)
        if pod["metadata"].get("deletionTimestamp"):
            if worker is not None:
                worker.pod = pod
                self._spawn(self._stop_worker(uid, final_delete=True))
            else:
                await self.api.delete(PODS, *key, grace_period_seconds=0, uid=uid)
            return None
        if worker is not None:
            return None
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return None
        node = await self.api.get_or_none(NODES, "", node_name)
        if node is None:
            return None  # the pod GC (nodes controller) deletes pods of nodes that are gone
        worker = PodWorker(self, pod, node)
        self.pods[uid] = worker
        worker.start()
        return None
