"""The object store behind the sandbox Kubernetes API, and the Python API in-process controllers use.

The daemon puts the store at ``ctx.services["kubernetes"]``. Writes through HTTP and through this API go
through the same admission (defaults, validation), bump the same global resourceVersion and fan out to the
same watchers. Kinds are named as ``"pods"``, ``"deployments.apps"``, ``"Deployment"``, ``"sdep"`` or
``("apps", "deployments")``. Every method returns fresh copies; mutate them freely::

    store = ctx.services["kubernetes"]
    pod = await store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {...}, "spec": {...}})
    pod = await store.get("pods", "web-0", namespace="default")          # ApiError(404) when absent
    items, rv = await store.list("pods", namespace="default", label_selector="app=web",
                                 field_selector="spec.nodeName=node-1")
    pod["status"]["phase"] = "Running"
    pod = await store.update_status(pod)        # 409 Conflict when pod's resourceVersion is stale
    pod = await store.update(pod)               # main resource; status changes are ignored for such kinds
    dep = await store.patch("deployments", "web", {"spec": {"replicas": 3}}, namespace="default",
                            patch_type="merge")  # "merge" | "strategic" | "json" | "apply" (field_manager=...)
    await store.delete("pods", "web-0", namespace="default", propagation_policy="Background",
                       grace_period_seconds=0)
    async with store.watch("pods", namespace=None, since_rv=None, label_selector=None) as events:
        async for etype, obj in events:          # "ADDED" | "MODIFIED" | "DELETED"
            ...

``watch`` with ``since_rv=None`` first yields ADDED for every current object; with ``since_rv=rv`` it
replays what changed after ``rv`` and raises ``ApiError(410)`` when that history is gone. Pass
``field_manager="my-controller"`` on writes so ``managedFields`` tells controllers apart.

Errors are :class:`ack_sandbox.k8s.errors.ApiError` with the real code/reason (``exc.code``,
``exc.reason``, ``exc.status()``). State is kept in ``<state_dir>/kubernetes/store.sqlite``; the
resourceVersion keeps increasing across restarts. Pods bound to a node are deleted gracefully: they get
``deletionTimestamp`` and vanish after their grace period (a kubelet may delete them earlier with
``grace_period_seconds=0``).

Garbage collection and the namespace lifecycle (``gc.py``) use a narrow public part of the store: ``stored``,
``location``, ``by_uid``, ``dependents``, ``namespace_content`` (reads of the stored objects themselves, not copies:
read-only), ``patch_raw``/``delete_raw``, ``finish_namespace`` and ``spawn``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import uuid
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from ack_sandbox.k8s import apply, convert, defaults, errors, meta, validation
from ack_sandbox.k8s.gc import Collector
from ack_sandbox.k8s.kinds import GR, Key, ResourceType
from ack_sandbox.k8s.registry import Registry

Kindish = str | GR | ResourceType
HISTORY = 20000
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apiserver/pkg/storage/names (SimpleNameGenerator)
DEFAULT_MANAGER = "sandbox-controller"
# Kinds whose status is kept as sent on create (pkg/registry/core/node/strategy.go allows it for nodes).
_KEEP_STATUS_ON_CREATE = {("", "nodes"), ("", "events")}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _copy(obj: Any) -> Any:
    """A deep copy of a JSON document (orjson: ~8x faster than the json module, the same document)."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits: the json module copes
        return json.loads(json.dumps(obj))


def _view_copy(rt: ResourceType, obj: dict[str, Any], raw: bytes) -> Any:
    """A caller's own copy of a stored object as ``rt`` shows it; from its stored bytes when the view is the
    object itself (the common case: half the work of a copy)."""
    view = convert.to_view(rt, obj)
    return orjson.loads(raw) if view is obj else _copy(view)


class Event:
    __slots__ = ("rv", "type", "gr", "obj", "old", "raw")

    def __init__(
        self, rv: int, type_: str, gr: GR, obj: dict[str, Any], old: dict[str, Any] | None, raw: bytes
    ) -> None:
        self.rv, self.type, self.gr, self.obj, self.old, self.raw = rv, type_, gr, obj, old, raw


class Watch:
    """One watcher: filters events for its kind/namespace/selectors and queues (type, object)."""

    def __init__(
        self,
        store: Store,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        copy: bool,
    ) -> None:
        self.store, self.rt, self.namespace, self.copy = store, rt, namespace or None, copy
        self.labels = meta.parse_label_selector(label_selector)
        storage_rt = store.registry.storage_type(rt.storage_gr) or rt
        self.fields = meta.parse_field_selector(
            convert.field_selector_to_storage(rt, field_selector), storage_rt.field_selectors, rt.kind
        )
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], bytes | None] | None] = asyncio.Queue()
        self.closed = False

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        md = obj.get("metadata") or {}
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        return meta.labels_match(self.labels, md.get("labels")) and meta.fields_match(self.fields, obj)

    def offer(self, ev: Event) -> None:
        if self.closed:
            return
        now_in = self.matches(ev.obj)
        was_in = ev.old is not None and self.matches(ev.old)
        if ev.type in ("ADDED", "DELETED"):
            if now_in:
                self.queue.put_nowait((ev.type, ev.obj, ev.raw))
        elif now_in:
            self.queue.put_nowait(("MODIFIED" if was_in else "ADDED", ev.obj, ev.raw))
        elif was_in:
            # The object left the selection: the real watch cache sends DELETED with the new state.
            self.queue.put_nowait(("DELETED", ev.obj, ev.raw))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._watchers.get(self.rt.storage_gr, set()).discard(self)
            self.queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            etype, obj, _ = item
            obj = convert.to_view(self.rt, obj)
            yield etype, (_copy(obj) if self.copy else obj)

    async def next_raw(self) -> tuple[str, dict[str, Any], bytes | None] | None:
        return await self.queue.get()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class Store:
    def __init__(
        self, registry: Registry | None = None, db_path: Path | None = None, clock: Any = None, history: int = HISTORY
    ) -> None:
        self.registry = registry or Registry()
        self.clock = clock
        self.rv = 0
        self._objs: dict[GR, dict[Key, dict[str, Any]]] = {}
        self._raw: dict[GR, dict[Key, bytes]] = {}
        self._uids: dict[str, tuple[GR, Key]] = {}
        self._dependents: dict[str, set[tuple[GR, Key]]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted_rv = 0
        self._watchers: dict[GR, set[Watch]] = {}
        self._db: sqlite3.Connection | None = None
        self._commit_pending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        if db_path is not None:
            self._open(db_path)
        ips = {
            o["spec"]["clusterIP"]
            for o in self._objs.get(("", "services"), {}).values()
            if (o.get("spec") or {}).get("clusterIP") not in (None, "", "None")
        }
        ports = {
            p["nodePort"]
            for o in self._objs.get(("", "services"), {}).values()
            for p in (o.get("spec") or {}).get("ports") or []
            if p.get("nodePort")
        }
        self.ips = defaults.ServiceIPs(ips, ports)
        self.gc = Collector(self)

    # ---- persistence -----------------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (grp TEXT, res TEXT, ns TEXT, name TEXT, data TEXT,"
            " PRIMARY KEY (grp, res, ns, name))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        row = self._db.execute("SELECT v FROM meta WHERE k='rv'").fetchone()
        self.rv = int(row[0]) if row else 0
        self._compacted_rv = self.rv
        rows = self._db.execute("SELECT grp, res, ns, name, data FROM objects").fetchall()
        for grp, res, ns, name, data in rows:
            obj = json.loads(data)
            self._put((grp, res), (ns, name), obj, data.encode())
            if (grp, res) == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self.registry.register_crd(obj)
        self._db.execute("BEGIN")

    def _persist(self, gr: GR, key: Key, obj: dict[str, Any] | None, raw: bytes | None) -> None:
        if self._db is None:
            return
        if obj is None:
            self._db.execute("DELETE FROM objects WHERE grp=? AND res=? AND ns=? AND name=?", (*gr, *key))
        else:
            self._db.execute("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?)", (*gr, *key, (raw or b"").decode()))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(self.rv),))
        if not self._commit_pending:
            # One commit per loop turn: a burst of writes costs one fsync-free WAL commit.
            self._commit_pending = True
            try:
                asyncio.get_running_loop().call_soon(self._commit)
            except RuntimeError:
                self._commit()

    def _commit(self) -> None:
        self._commit_pending = False
        if self._db is not None:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")

    def close(self) -> None:
        for w in [w for ws in self._watchers.values() for w in ws]:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._db is not None:
            self._db.execute("COMMIT")
            self._db.close()
            self._db = None

    # ---- indexes ---------------------------------------------------------------------------------------

    def _put(self, gr: GR, key: Key, obj: dict[str, Any], raw: bytes) -> None:
        old = self._objs.setdefault(gr, {}).get(key)
        if old is not None:
            self._unindex(gr, key, old)
        self._objs[gr][key] = obj
        self._raw.setdefault(gr, {})[key] = raw
        md = obj["metadata"]
        self._uids[md["uid"]] = (gr, key)
        for ref in md.get("ownerReferences") or []:
            self._dependents.setdefault(ref.get("uid", ""), set()).add((gr, key))

    def _unindex(self, gr: GR, key: Key, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        self._uids.pop(md.get("uid", ""), None)
        for ref in md.get("ownerReferences") or []:
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard((gr, key))
                if not deps:
                    del self._dependents[ref.get("uid", "")]

    def _pop(self, gr: GR, key: Key) -> dict[str, Any] | None:
        obj = self._objs.get(gr, {}).pop(key, None)
        self._raw.get(gr, {}).pop(key, None)
        if obj is not None:
            self._unindex(gr, key, obj)
        return obj

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        loc = self._uids.get(uid)
        return self._objs.get(loc[0], {}).get(loc[1]) if loc else None

    def dependents(self, uid: str) -> list[tuple[GR, Key]]:
        return sorted(self._dependents.get(uid, ()))

    # ---- for the garbage collector and the namespace controller (``gc.py``) -----------------------------
    # Reads return the stored object itself, not a copy: read it, never change it; write through
    # ``patch_raw``/``delete_raw``.

    def stored(self, gr: GR, key: Key) -> dict[str, Any] | None:
        """The object stored under storage group/resource ``gr`` and ``(namespace, name)``, if any."""
        return self._objs.get(gr, {}).get(key)

    def location(self, uid: str) -> tuple[GR, Key] | None:
        """Where the object with ``uid`` is stored."""
        return self._uids.get(uid)

    def namespace_content(self, namespace: str) -> list[tuple[GR, Key, ResourceType]]:
        """Every stored object of a namespaced kind in ``namespace``."""
        out = []
        for gr, objs in list(self._objs.items()):
            rt = self.registry.storage_type(gr)
            if rt is not None and rt.namespaced:
                out += [(gr, key, rt) for key in objs if key[0] == namespace]
        return out

    def finish_namespace(self, name: str) -> None:
        """The namespace controller's last step (the ``finalize`` subresource): drop the ``kubernetes`` spec
        finalizer of a terminating namespace, and remove the namespace once no finalizer is left."""
        key = ("", name)
        ns = self.stored(("", "namespaces"), key)
        if ns is None:
            return
        nrt = self.registry.storage_type(("", "namespaces"))
        assert nrt is not None
        spec_fins = [f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        new = json.loads(json.dumps(ns))
        new.setdefault("spec", {})["finalizers"] = spec_fins
        if not spec_fins:
            new["spec"].pop("finalizers")
        self._commit_write(nrt, key, new, ns)
        ns = self.stored(("", "namespaces"), key)
        if ns is not None and not ns["metadata"].get("finalizers") and not (ns.get("spec") or {}).get("finalizers"):
            self._remove(nrt, key)

    # ---- helpers ---------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else meta.now()

    def timestamp(self) -> str:
        return meta.rfc3339(self.now())

    def resolve(self, what: Kindish) -> ResourceType:
        try:
            return self.registry.resolve(what)
        except KeyError as exc:
            raise errors.page_not_found() from exc

    def _storage(self, rt: ResourceType) -> ResourceType:
        return self.registry.storage_type(rt.storage_gr) or rt

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if rt.namespaced else "", name)

    def _emit(self, etype: str, gr: GR, obj: dict[str, Any], old: dict[str, Any] | None, raw: bytes) -> None:
        ev = Event(self.rv, etype, gr, obj, old, raw)
        if len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv
        self._history.append(ev)
        for w in list(self._watchers.get(gr, ())):
            w.offer(ev)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background on the store's event loop (dropped when there is none); cancelled by
        ``close()``."""
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- reads -----------------------------------------------------------------------------------------

    def get_raw(self, rt: ResourceType, name: str, namespace: str | None) -> dict[str, Any]:
        srt = self._storage(rt)
        obj = self._objs.get(srt.gr, {}).get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    async def get(self, what: Kindish, name: str, namespace: str | None = None) -> dict[str, Any]:
        rt = self.resolve(what)
        return _copy(convert.to_view(rt, self.get_raw(rt, name, namespace)))

    def list_raw(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> tuple[list[tuple[dict[str, Any], bytes]], int, str | None, int | None]:
        """Matching (object, json) pairs sorted by namespace/name; with ``limit``, a continue token."""
        srt = self._storage(rt)
        labels = meta.parse_label_selector(label_selector)
        fields = meta.parse_field_selector(
            convert.field_selector_to_storage(rt, field_selector), srt.field_selectors, rt.kind
        )
        objs, raws = self._objs.get(srt.gr, {}), self._raw.get(srt.gr, {})
        start: Key | None = None
        rv = self.rv
        if continue_:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_.encode() + b"=="))
                start, rv = (tok["start"][0], tok["start"][1]), int(tok["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request(f"continue key is not valid: {exc}") from exc
            if rv < self._compacted_rv:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
        keys = sorted(k for k in objs if (not namespace or k[0] == namespace) and (start is None or k > start))
        out: list[tuple[dict[str, Any], bytes]] = []
        token, remaining = None, None
        last_key: Key | None = None  # the key of the last object returned: where the next page starts
        for i, k in enumerate(keys):
            obj = objs[k]
            if labels and not meta.labels_match(labels, obj["metadata"].get("labels")):
                continue
            if fields and not meta.fields_match(fields, obj):
                continue
            # A limit of 0 or less is no limit, as in the apiserver's storage (it pages only when limit > 0).
            if limit is not None and 0 < limit <= len(out) and last_key is not None:
                token = base64.urlsafe_b64encode(_dumps({"rv": rv, "start": list(last_key)})).decode().rstrip("=")
                remaining = None if (labels or fields) else len(keys) - i
                break
            out.append((obj, raws[k]))
            last_key = k
        return out, self.rv if not continue_ else rv, token, remaining

    async def list(
        self,
        what: Kindish,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        rt = self.resolve(what)
        items, rv, _, _ = self.list_raw(rt, namespace, label_selector, field_selector)
        return [_view_copy(rt, o, raw) for o, raw in items], str(rv)

    # ---- watch -----------------------------------------------------------------------------------------

    def watch(
        self,
        what: Kindish,
        namespace: str | None = None,
        since_rv: str | int | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        copy: bool = True,
    ) -> Watch:
        rt = self.resolve(what)
        srt = self._storage(rt)
        w = Watch(self, rt, namespace, label_selector, field_selector, copy)
        since = int(since_rv) if since_rv not in (None, "", "0", 0) else None
        if since is None:
            for obj, raw in self.list_raw(rt, namespace, label_selector, field_selector)[0]:
                w.queue.put_nowait(("ADDED", obj, raw))
        elif since < self._compacted_rv:
            raise errors.gone(f"too old resource version: {since} ({self._compacted_rv})")
        else:
            for ev in self._history:
                if ev.rv > since and ev.gr == srt.gr:
                    w.offer(ev)
        self._watchers.setdefault(srt.gr, set()).add(w)
        return w

    # ---- writes ----------------------------------------------------------------------------------------

    async def create(
        self,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
        what: Kindish | None = None,
    ) -> dict[str, Any]:
        rt = self.resolve(what) if what is not None else self._rt_of(obj)
        out = self.create_raw(rt, _copy(obj), namespace, dry_run=dry_run, field_manager=field_manager)
        return _copy(convert.to_view(rt, out))

    def _rt_of(self, obj: dict[str, Any]) -> ResourceType:
        rt = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise errors.bad_request(f'no kind "{obj.get("kind")}" is registered for version "{obj.get("apiVersion")}"')
        return rt

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self._objs.get(("", "namespaces"), {}).get(("", namespace))
        if ns is None:
            raise errors.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                rt.group,
                rt.plural,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def create_raw(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        namespace: str | None,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
        managed: bool = True,
    ) -> dict[str, Any]:
        srt = self._storage(rt)
        obj = convert.from_view(rt, obj)
        obj["apiVersion"], obj["kind"] = srt.api_version, srt.kind
        md = obj.setdefault("metadata", {})
        if rt.namespaced:
            ns = md.get("namespace") or namespace or "default"
            if namespace and md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
            ns = ""
        if not md.get("name") and md.get("generateName"):
            for _ in range(8):
                cand = md["generateName"] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
                if (ns, cand) not in self._objs.get(srt.gr, {}):
                    md["name"] = cand
                    break
        for f in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(f, None)
        if "status" in srt.subresources and srt.gr not in _KEEP_STATUS_ON_CREATE:
            obj.pop("status", None)
        causes = validation.object_meta(obj, srt.name_rule)
        if not causes:
            if srt.default:
                srt.default(obj, self.ips)
            if srt.validate:
                causes = srt.validate(obj, None)
        if causes:
            raise errors.invalid(srt.group, srt.kind, md.get("name") or md.get("generateName", ""), causes)
        name = md["name"]
        self._check_namespace(srt, ns, name)
        if (ns, name) in self._objs.get(srt.gr, {}):
            raise errors.already_exists(rt.group, rt.plural, name)
        md["uid"] = md.get("uid") or str(uuid.uuid4())  # a defaulter may have fixed it (Job selector)
        md["creationTimestamp"] = self.timestamp()
        if srt.generation:
            md["generation"] = 1
        if managed and not md.get("managedFields"):
            md.pop("managedFields", None)
            apply.record_update(
                None,
                obj,
                field_manager or DEFAULT_MANAGER,
                srt.api_version,
                None,
                "status" in srt.subresources,
                self.timestamp(),
            )
        if srt.gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_status(obj)
        if dry_run:
            return obj
        if srt.gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.registry.register_crd(obj)
        return self._commit_write(srt, (ns, name), obj, None)

    def _commit_write(
        self, srt: ResourceType, key: Key, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        raw = _dumps(obj)
        self._put(srt.gr, key, obj, raw)
        self._persist(srt.gr, key, obj, raw)
        self._emit("ADDED" if old is None else "MODIFIED", srt.gr, obj, old, raw)
        if (
            old is not None
            and obj["metadata"].get("deletionTimestamp")
            and not _finalizers(obj)
            and not self._graceful_pending(srt, obj)
        ):
            self._remove(srt, key)
        return obj

    def _graceful_pending(self, srt: ResourceType, obj: dict[str, Any]) -> bool:
        if srt.gr != ("", "pods"):
            return False
        ts = meta.parse_time(obj["metadata"].get("deletionTimestamp"))
        return bool(obj["metadata"].get("deletionGracePeriodSeconds")) and ts is not None and ts > self.now()

    def _remove(self, srt: ResourceType, key: Key) -> dict[str, Any] | None:
        obj = self._pop(srt.gr, key)
        if obj is None:
            return None
        self.rv += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        raw = _dumps(obj)
        self._persist(srt.gr, key, None, None)
        self._emit("DELETED", srt.gr, obj, None, raw)
        if srt.gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._drop_crd(obj)
        self.gc.removed(obj)
        return obj

    def _crd_status(self, obj: dict[str, Any]) -> None:
        now = self.timestamp()
        spec = obj["spec"]
        obj["status"] = {
            "acceptedNames": spec["names"],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }

    def _drop_crd(self, crd: dict[str, Any]) -> None:
        gr = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        rt = self.registry.storage_type(gr)
        if rt is not None:
            for key in list(self._objs.get(gr, {})):
                self._remove(rt, key)
        self.registry.remove_group_resource(*gr)

    async def update(
        self,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        what: Kindish | None = None,
    ) -> dict[str, Any]:
        rt = self.resolve(what) if what is not None else self._rt_of(obj)
        md = obj.get("metadata") or {}
        out = self.update_raw(
            rt,
            _copy(obj),
            md.get("name", ""),
            md.get("namespace"),
            subresource=subresource,
            dry_run=dry_run,
            field_manager=field_manager,
        )
        return _copy(convert.to_view(rt, out))

    async def update_status(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.update(obj, subresource="status", **kw)

    def update_raw(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        name: str,
        namespace: str | None,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        ssa_done: bool = False,
    ) -> dict[str, Any]:
        srt = self._storage(rt)
        key = self._key(rt, namespace, name)
        old = self.get_raw(rt, name, namespace)
        new = convert.from_view(rt, obj)
        md = new.setdefault("metadata", {})
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        want_rv = md.get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name, errors.STALE_RV)
        new["apiVersion"], new["kind"] = srt.api_version, srt.kind
        omd = old["metadata"]
        if subresource == "status":
            status = new.get("status")
            new = {**_copy(old)}
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            md = new["metadata"]
            if obj.get("metadata", {}).get("managedFields") is not None:
                md["managedFields"] = obj["metadata"]["managedFields"]
        else:
            if "status" in srt.subresources:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        for f in ("name", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in omd:
                md[f] = omd[f]
            else:
                md.pop(f, None)
        if rt.namespaced:
            md["namespace"] = omd["namespace"]
        if md.get("managedFields") is None:
            md["managedFields"] = omd.get("managedFields", [])
        if srt.gr == ("", "services"):
            self._keep_allocations(old, new)
        if omd.get("deletionTimestamp"):
            added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    srt.group,
                    srt.kind,
                    name,
                    [
                        validation.forbidden(
                            "metadata.finalizers",
                            f"no new finalizers can be added if the object is being deleted, found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        if srt.default and subresource != "status":
            srt.default(new, self.ips)
        causes = validation.labels("metadata.labels", md.get("labels"))
        if srt.validate and subresource != "status":
            causes += srt.validate(new, old)
        if causes:
            raise errors.invalid(srt.group, srt.kind, name, causes)
        if srt.generation and _spec_changed(srt, old, new):
            md["generation"] = int(omd.get("generation") or 1) + 1
        if not ssa_done and md.get("managedFields") == omd.get("managedFields"):
            apply.record_update(
                old,
                new,
                field_manager or DEFAULT_MANAGER,
                srt.api_version,
                subresource,
                "status" in srt.subresources,
                self.timestamp(),
            )
        if _same(old, new):
            return old
        if dry_run:
            return new
        if srt.gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.registry.register_crd(new)
        return self._commit_write(srt, key, new, old)

    @staticmethod
    def _keep_allocations(old: dict[str, Any], new: dict[str, Any]) -> None:
        """Service updates that omit clusterIP/nodePort keep the allocated ones (registry/core/service/storage)."""
        ospec, nspec = old.get("spec") or {}, new.setdefault("spec", {})
        for f in ("clusterIP", "clusterIPs"):
            if not nspec.get(f) and ospec.get(f):
                nspec[f] = ospec[f]
        oports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in ospec.get("ports") or []}
        for p in nspec.get("ports") or []:
            np = oports.get((p.get("port"), p.get("protocol", "TCP")))
            if np and not p.get("nodePort") and nspec.get("type") in ("NodePort", "LoadBalancer"):
                p["nodePort"] = np

    async def patch(
        self,
        what: Kindish,
        name: str,
        body: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        rt = self.resolve(what)
        out = self.patch_raw(
            rt,
            name,
            namespace,
            body,
            patch_type,
            subresource=subresource,
            field_manager=field_manager,
            force=force,
            dry_run=dry_run,
        )
        return _copy(convert.to_view(rt, out))

    def patch_raw(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        body: Any,
        patch_type: str,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        from ack_sandbox.k8s import patch as p

        if patch_type == "apply":
            return self._apply(rt, name, namespace, body, subresource, field_manager, force, dry_run)
        current = _copy(convert.to_view(rt, self.get_raw(rt, name, namespace)))
        if patch_type == "merge":
            if not isinstance(body, dict):
                raise errors.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
            new = p.json_merge(current, body)
        elif patch_type == "strategic":
            if not rt.strategic:
                raise errors.unsupported_media_type("application/strategic-merge-patch+json")
            if not isinstance(body, dict):
                raise errors.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
            new = p.strategic_merge(current, body)
        elif patch_type == "json":
            new = p.apply_json_patch(current, body)
        else:
            raise errors.unsupported_media_type(patch_type)
        # A patch carries the resourceVersion precondition only if it sets one (kubectl apply does not).
        if (new.get("metadata") or {}).get("resourceVersion") == current["metadata"].get("resourceVersion"):
            new["metadata"].pop("resourceVersion", None)
        return self.update_raw(
            rt, new, name, namespace, subresource=subresource, dry_run=dry_run, field_manager=field_manager
        )

    def _apply(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        body: Any,
        subresource: str | None,
        field_manager: str | None,
        force: bool,
        dry_run: bool,
    ) -> dict[str, Any]:
        if not field_manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request("error decoding YAML: Object 'Kind' is missing in the applied configuration")
        srt = self._storage(rt)
        md = body.setdefault("metadata", {})
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        key = self._key(rt, namespace, name)
        live = self._objs.get(srt.gr, {}).get(key)
        status_sub = "status" in srt.subresources
        if live is None:
            if subresource:
                raise errors.not_found(rt.group, rt.plural, name)
            md["name"] = name
            created = apply.server_side_apply(
                None,
                convert.from_view(rt, body),
                field_manager,
                rt.api_version,
                force,
                status_sub,
                None,
                self.timestamp(),
            )
            return self.create_raw(rt, created, namespace, dry_run=dry_run, managed=False)
        want_rv = md.get("resourceVersion")
        if want_rv and want_rv != live["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name, errors.STALE_RV)
        merged = apply.server_side_apply(
            _copy(live),
            convert.from_view(rt, body),
            field_manager,
            rt.api_version,
            force,
            status_sub,
            subresource,
            self.timestamp(),
        )
        merged["metadata"].pop("resourceVersion", None)
        return self.update_raw(
            rt,
            merged,
            name,
            namespace,
            subresource=subresource,
            dry_run=dry_run,
            field_manager=field_manager,
            ssa_done=True,
        )

    async def delete(
        self,
        what: Kindish,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        rt = self.resolve(what)
        out, _ = self.delete_raw(
            rt,
            name,
            namespace,
            propagation_policy=propagation_policy,
            grace_period_seconds=grace_period_seconds,
            preconditions=preconditions,
            dry_run=dry_run,
        )
        return _copy(convert.to_view(rt, out))

    def delete_raw(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Returns (object, removed-now)."""
        srt = self._storage(rt)
        key = self._key(rt, namespace, name)
        old = self.get_raw(rt, name, namespace)
        omd = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != omd["uid"]:
            raise errors.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {omd['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != omd["resourceVersion"]:
            raise errors.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {omd['resourceVersion']}",
            )
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                [
                    validation.unsupported(
                        "propagationPolicy", propagation_policy, ["Foreground", "Background", "Orphan", "nil"]
                    )
                ],
            )
        new = _copy(old)
        md = new["metadata"]
        finalizers = list(md.get("finalizers") or [])
        if propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if propagation_policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        grace = self._grace(srt, old, grace_period_seconds)
        if srt.gr == ("", "namespaces"):
            new.setdefault("status", {})["phase"] = "Terminating"
            finalizers = finalizers or []
            if "kubernetes" in ((new.get("spec") or {}).get("finalizers") or []):
                grace = -1  # the namespace controller finishes it
        if not finalizers and grace == 0:
            if dry_run:
                return old, True
            return self._remove(srt, key) or old, True
        if dry_run:
            return new, False
        if not md.get("deletionTimestamp"):
            md["deletionTimestamp"] = meta.rfc3339(self.now() + max(grace, 0))
            md["deletionGracePeriodSeconds"] = max(grace, 0)
        elif grace >= 0 and grace < int(md.get("deletionGracePeriodSeconds") or 0):
            md["deletionTimestamp"] = meta.rfc3339(self.now() + grace)
            md["deletionGracePeriodSeconds"] = grace
        md["finalizers"] = finalizers
        if not finalizers:
            md.pop("finalizers")
        if _same(old, new):
            return old, False
        out = self._commit_write(srt, key, new, old)
        if srt.gr == ("", "namespaces"):
            self.spawn(self.gc.finalize_namespace(name))
        elif grace > 0:
            self.spawn(self._expire_grace(srt, key, md["uid"], grace))
        if "foregroundDeletion" in finalizers or "orphan" in finalizers:
            self.spawn(self.gc.process_owner(srt, key, md["uid"]))
        return out, (key not in self._objs.get(srt.gr, {}))

    def _grace(self, srt: ResourceType, obj: dict[str, Any], requested: int | None) -> int:
        """Pods on a node are deleted gracefully (registry/core/pod/strategy.go CheckGracefulDelete)."""
        if srt.gr != ("", "pods"):
            return 0
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or st.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else int(spec.get("terminationGracePeriodSeconds", 30))
        return max(grace, 0)

    async def _expire_grace(self, srt: ResourceType, key: Key, uid: str, grace: int) -> None:
        """Stand-in for the kubelet's final delete when nobody confirms termination earlier."""
        await (self.clock.sleep(grace) if self.clock is not None else asyncio.sleep(grace))
        obj = self._objs.get(srt.gr, {}).get(key)
        if obj is not None and obj["metadata"]["uid"] == uid and not obj["metadata"].get("finalizers"):
            self._remove(srt, key)


def _finalizers(obj: dict[str, Any]) -> list[str]:
    """Finalizers still holding a deleted object (namespaces also wait on ``spec.finalizers``)."""
    fins = list(obj["metadata"].get("finalizers") or [])
    if obj.get("kind") == "Namespace":
        fins += (obj.get("spec") or {}).get("finalizers") or []
    return fins


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    skip = {"metadata", "status"} if "status" in rt.subresources or not rt.crd else {"metadata"}
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """No-op detection: equal apart from resourceVersion and managedFields timestamps."""

    def norm(o: dict[str, Any]) -> dict[str, Any]:
        md = {k: v for k, v in (o.get("metadata") or {}).items() if k != "resourceVersion"}
        md["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in md.get("managedFields") or []]
        return {**o, "metadata": md}

    return norm(old) == norm(new)
