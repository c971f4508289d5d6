"""What every sandbox controller shares: kinds, a store client, the reconcile loop, events, conditions.

The shape follows controller-runtime / kopf: a controller *watches* one primary kind (and optionally
secondary kinds that map back to primary keys, e.g. Pods -> their owning ReplicaSet), puts the keys
``(namespace, name)`` of changed objects on a de-duplicating work queue, and a worker calls
``reconcile(key)`` for each. ``reconcile`` reads the current state from the store and moves the world
one step towards the spec; it is level-triggered (it must not care which event woke it). It may return
a number of *cloud* seconds after which the key is reconciled again (e.g. a back-off or a delay the
real system has); an exception requeues the key with exponential back-off. Every ``resync`` cloud
seconds all primary objects are re-queued, as informers' resync does.

Writing a controller::

    class MyController(Controller):
        name = "my-controller"
        primary = DEPLOYMENTS
        watches = (REPLICASETS,)             # secondary: mapped to owners of kind ``primary``

        async def reconcile(self, key: Key) -> float | None:
            obj = await self.api.get_or_none(DEPLOYMENTS, *key)
            if obj is None:
                return None
            ...
            await self.events.record(obj, "Normal", "ScalingReplicaSet", "Scaled up ...")
            return None

    ctrl = MyController(ctx); await ctrl.start(); ...; await ctrl.stop()

``Api`` is the only place that knows the store's Python API (``ctx.services["kubernetes"]``); the
controllers speak in plain dict objects, the same JSON the HTTP API serves.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from ack_sandbox.context import SandboxContext
from ack_sandbox.k8s.errors import ApiError

log = logging.getLogger("ack_sandbox.controllers")

Key = tuple[str, str]  # (namespace or "" for cluster-scoped, name)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    resource: str  # plural, as in the URL
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


PODS = Kind("", "v1", "pods", "Pod")
NODES = Kind("", "v1", "nodes", "Node", namespaced=False)
EVENTS = Kind("", "v1", "events", "Event")
SECRETS = Kind("", "v1", "secrets", "Secret")
SERVICES = Kind("", "v1", "services", "Service")
ENDPOINTS = Kind("", "v1", "endpoints", "Endpoints")
CONFIGMAPS = Kind("", "v1", "configmaps", "ConfigMap")
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
PVS = Kind("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
PVCS = Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment")
REPLICASETS = Kind("apps", "v1", "replicasets", "ReplicaSet")
HPAS = Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
INGRESSES = Kind("networking.k8s.io", "v1", "ingresses", "Ingress")
SELDON_DEPLOYMENTS = Kind("machinelearning.seldon.io", "v1", "seldondeployments", "SeldonDeployment")
JOBS = Kind("batch", "v1", "jobs", "Job")
CRONJOBS = Kind("batch", "v1", "cronjobs", "CronJob")
ENDPOINTSLICES = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
STATEFULSETS = Kind("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Kind("apps", "v1", "daemonsets", "DaemonSet")
REPLICATIONCONTROLLERS = Kind("", "v1", "replicationcontrollers", "ReplicationController")
INFERENCE_SERVICES = Kind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")

KINDS_BY_NAME = {
    k.kind: k
    for k in (
        PODS,
        NODES,
        EVENTS,
        SECRETS,
        SERVICES,
        ENDPOINTS,
        CONFIGMAPS,
        NAMESPACES,
        PVS,
        PVCS,
        DEPLOYMENTS,
        REPLICASETS,
        HPAS,
        INGRESSES,
        SELDON_DEPLOYMENTS,
        JOBS,
        CRONJOBS,
        ENDPOINTSLICES,
        STATEFULSETS,
        DAEMONSETS,
        REPLICATIONCONTROLLERS,
        INFERENCE_SERVICES,
    )
}


def now_iso(ts: float | None = None) -> str:
    """RFC 3339 seconds, UTC, as metav1.Time serialises (wall clock: kubectl compares it with its own)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta["name"])


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.code == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.code == 409


def owner_ref(owner: Obj, kind: Kind, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> dict[str, Any] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


class Api:
    """The controllers' client of the in-process store (``ctx.services["kubernetes"]``).

    Objects are plain dicts (the wire JSON). Errors are ``ack_sandbox.k8s.errors.ApiError`` with the
    HTTP code (404, 409, 422 ...), exactly what an HTTP client would see.
    """

    def __init__(self, store: Any, field_manager: str = "sandbox-controller") -> None:
        self.store = store
        self.field_manager = field_manager

    @staticmethod
    def _what(kind: Kind) -> tuple[str, str]:
        return (kind.group, kind.resource)

    async def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        return await self.store.get(self._what(kind), name, namespace=namespace or None)

    async def get_or_none(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        try:
            return await self.get(kind, namespace, name)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        items, _rv = await self.list_with_rv(kind, namespace, label_selector, field_selector)
        return items

    async def list_with_rv(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        items, rv = await self.store.list(
            self._what(kind), namespace=namespace or None, label_selector=label_selector, field_selector=field_selector
        )
        return list(items), str(rv)

    async def create(self, kind: Kind, obj: Obj) -> Obj:
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        ns = obj.get("metadata", {}).get("namespace") if kind.namespaced else None
        return await self.store.create(obj, namespace=ns, field_manager=self.field_manager, what=self._what(kind))

    async def update(self, kind: Kind, obj: Obj) -> Obj:
        return await self.store.update(obj, field_manager=self.field_manager, what=self._what(kind))

    async def update_status(self, kind: Kind, obj: Obj) -> Obj:
        return await self.store.update(
            obj, subresource="status", field_manager=self.field_manager, what=self._what(kind)
        )

    async def patch(self, kind: Kind, namespace: str, name: str, patch: Obj, subresource: str | None = None) -> Obj:
        """A JSON merge patch (RFC 7386) of the object or its ``status`` subresource."""
        return await self.store.patch(
            self._what(kind),
            name,
            patch,
            namespace=namespace or None,
            patch_type="merge",
            subresource=subresource,
            field_manager=self.field_manager,
        )

    async def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        uid: str | None = None,
    ) -> Obj | None:
        try:
            return await self.store.delete(
                self._what(kind),
                name,
                namespace=namespace or None,
                grace_period_seconds=grace_period_seconds,
                propagation_policy=propagation_policy,
                preconditions={"uid": uid} if uid else None,
            )
        except ApiError as exc:
            if exc.code in (404, 409):
                return None
            raise

    async def bind(self, namespace: str, name: str, node_name: str, uid: str | None = None) -> Obj:
        """Bind a pod to a node as ``POST pods/{name}/binding`` does: spec.nodeName + PodScheduled=True."""
        binder = getattr(self.store, "bind_pod", None)
        if binder is not None:
            return await binder(namespace, name, node_name, uid=uid)
        pod = await self.get(PODS, namespace, name)
        if uid and pod["metadata"].get("uid") != uid:
            raise ApiError(
                409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": the pod\'s UID changed'
            )
        if pod.get("spec", {}).get("nodeName"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": '
                f"pod {name} is already assigned to node "
                f'"{pod["spec"]["nodeName"]}"',
            )
        pod["spec"]["nodeName"] = node_name
        pod = await self.update(PODS, pod)
        conds = pod.setdefault("status", {}).setdefault("conditions", [])
        set_condition(conds, "PodScheduled", "True", None, None, probe_time=True)
        return await self.update_status(PODS, pod)

    async def watch(
        self, kind: Kind, namespace: str | None = None, resource_version: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        """``(type, obj)`` with type ADDED / MODIFIED / DELETED, from after ``resource_version``."""
        w = self.store.watch(self._what(kind), namespace=namespace or None, since_rv=resource_version)
        try:
            async for etype, obj in w:
                yield etype, obj
        finally:
            w.close()


def set_condition(
    conditions: list[dict[str, Any]],
    ctype: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    probe_time: bool = False,
    ts: float | None = None,
) -> bool:
    """Set one condition in a ``status.conditions`` list in place; True when something changed.

    ``lastTransitionTime`` moves only when ``status`` flips, as the real controllers do; pods also carry
    ``lastProbeTime`` (null) which ``probe_time`` keeps.
    """
    for cond in conditions:
        if cond.get("type") == ctype:
            changed = False
            if cond.get("status") != status:
                cond["status"] = status
                cond["lastTransitionTime"] = now_iso(ts)
                changed = True
            for field, value in (("reason", reason), ("message", message)):
                if value is None:
                    if field in cond:
                        del cond[field]
                        changed = True
                elif cond.get(field) != value:
                    cond[field] = value
                    changed = True
            return changed
    cond = {"type": ctype, "status": status, "lastTransitionTime": now_iso(ts)}
    if probe_time:
        cond["lastProbeTime"] = None
    if reason is not None:
        cond["reason"] = reason
    if message is not None:
        cond["message"] = message
    conditions.append(cond)
    return True


def get_condition(obj: Obj, ctype: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None


class EventRecorder:
    """core/v1 Events as client-go's recorder writes them, with its count aggregation.

    A repeat of the same (object, type, reason, message) within the aggregation window bumps ``count``
    and ``lastTimestamp`` of the existing Event instead of creating a new one (client-go
    tools/record/events_cache.go ``eventLogger``). Names are ``<object>.<hex>`` as client-go makes them.
    """

    def __init__(self, api: Api, component: str, host: str = "") -> None:
        self.api = api
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str, str, str], tuple[str, str]] = {}  # -> (namespace, event name)

    async def record(
        self, obj: Obj, etype: str, reason: str, message: str, *, field_path: str | None = None, host: str | None = None
    ) -> None:
        try:
            await self._record(obj, etype, reason, message, field_path, host)
        except Exception:  # events are best-effort, as in client-go
            log.debug("could not record event %s for %s", reason, key_of(obj), exc_info=True)

    async def _record(
        self, obj: Obj, etype: str, reason: str, message: str, field_path: str | None, host: str | None
    ) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        uid = meta.get("uid", "")
        agg = (uid, etype, reason, message, field_path or "")
        stamp = now_iso()
        if agg in self._seen:
            ns, ename = self._seen[agg]
            existing = await self.api.get_or_none(EVENTS, ns, ename)
            if existing is not None:
                existing["count"] = int(existing.get("count") or 1) + 1
                existing["lastTimestamp"] = stamp
                try:
                    await self.api.update(EVENTS, existing)
                    return
                except ApiError:
                    pass
        involved: dict[str, Any] = {
            "kind": obj.get("kind", ""),
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": uid,
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if not involved["namespace"]:
            del involved["namespace"]
        if field_path:
            involved["fieldPath"] = field_path
        source: dict[str, str] = {"component": self.component}
        if host or self.host:
            source["host"] = host or self.host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'unknown')}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": etype,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": host or self.host or self.component,
        }
        created = await self.api.create(EVENTS, event)
        if len(self._seen) > 4096:
            self._seen.clear()
        self._seen[agg] = (namespace, created["metadata"]["name"])


class WorkQueue:
    """De-duplicating work queue with delayed adds (client-go workqueue, minus metrics).

    A key is never handed to two workers at once; a key added while it is being processed is
    processed again afterwards.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, real_seconds: float) -> None:
        if real_seconds <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + real_seconds
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled():
            if timer.when() <= when:
                return  # an earlier wake-up is already due
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Controller:
    """A reconcile loop over one primary kind (see the module docstring)."""

    name: str = "controller"
    primary: Kind = PODS
    watches: tuple[Kind, ...] = ()
    resync: float | None = 300.0  # cloud seconds between full re-queues; None disables
    workers: int = 1
    max_backoff: float = 30.0  # real seconds, the cap of the error back-off

    def __init__(self, ctx: SandboxContext, api: Api | None = None) -> None:
        self.ctx = ctx
        self.api = api or Api(ctx.services["kubernetes"], self.name)
        self.events = EventRecorder(self.api, self.name)
        self.queue = WorkQueue()
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._synced: asyncio.Event = asyncio.Event()

    # --- to override -----------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        """Move ``key`` one step towards its spec; return cloud seconds to requeue after, or None."""
        raise NotImplementedError

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        """Primary keys to reconcile for a watch event. Default: the object itself for the primary kind,
        its controlling owner of the primary kind for a secondary kind."""
        if kind == self.primary:
            return [key_of(obj)]
        ref = controller_of(obj)
        if ref is not None and ref.get("kind") == self.primary.kind:
            ns = obj["metadata"].get("namespace", "") if self.primary.namespaced else ""
            return [(ns, ref["name"])]
        return []

    async def on_start(self) -> None:
        """Hook run once before the watches start (e.g. rebuild in-memory state)."""

    async def on_stop(self) -> None:
        """Hook run once after the loops stop (e.g. kill processes)."""

    # --- machinery -------------------------------------------------------------------------------------
    def enqueue(self, key: Key, after_cloud_seconds: float = 0.0) -> None:
        self.queue.add_after(key, self.ctx.clock.real_seconds(after_cloud_seconds))

    async def start(self) -> None:
        await self.on_start()
        loop = asyncio.get_running_loop()
        pending = len((self.primary, *self.watches))
        counter = {"n": pending}

        def synced() -> None:
            counter["n"] -= 1
            if counter["n"] == 0:
                self._synced.set()

        for kind in (self.primary, *self.watches):
            self._tasks.append(
                loop.create_task(self._watch_loop(kind, synced), name=f"{self.name}-watch-{kind.resource}")
            )
        for i in range(self.workers):
            self._tasks.append(loop.create_task(self._worker(), name=f"{self.name}-worker-{i}"))
        if self.resync:
            self._tasks.append(loop.create_task(self._resync_loop(), name=f"{self.name}-resync"))

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self.queue.close()
        await self.on_stop()

    async def _watch_loop(self, kind: Kind, synced: Any) -> None:
        """List then watch from the list's resourceVersion; on any break (410 Gone, error) list again."""
        first = True
        delay = 0.05
        while True:
            try:
                items, rv = await self.api.list_with_rv(kind)
                for obj in items:
                    self._dispatch(kind, "ADDED", obj)
                if first:
                    synced()
                    first = False
                delay = 0.05
                async for etype, obj in self.api.watch(kind, resource_version=rv):
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self._dispatch(kind, etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("%s: watch of %s broke; relisting", self.name, kind.resource, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _dispatch(self, kind: Kind, etype: str, obj: Obj) -> None:
        try:
            keys = list(self.map_event(kind, etype, obj))
        except Exception:
            log.exception("%s: map_event failed for %s", self.name, kind.resource)
            return
        for key in keys:
            self.queue.add(key)

    async def _resync_loop(self) -> None:
        assert self.resync
        while True:
            await self.ctx.clock.sleep(self.resync)
            try:
                for obj in await self.api.list(self.primary):
                    self.queue.add(key_of(obj))
            except Exception:
                log.warning("%s: resync list failed", self.name, exc_info=True)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                requeue = await self.reconcile(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as exc:
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                backoff = min(0.01 * (2 ** min(n, 16)), self.max_backoff)
                if is_conflict(exc):
                    log.debug("%s: conflict on %s, retrying", self.name, key)
                    backoff = min(0.005 * n, 0.5)
                else:
                    log.warning("%s: reconcile %s failed (attempt %d): %s", self.name, key, n, exc, exc_info=n == 1)
                self.queue.done(key)
                self.queue.add_after(key, backoff)
                continue
            self._failures.pop(key, None)
            self.queue.done(key)
            if requeue is not None:
                self.enqueue(key, requeue)
