"""Garbage collection by ownerReferences, deletion propagation (Background/Foreground/Orphan) and the
namespace lifecycle, as kube-controller-manager's garbagecollector and namespace controllers do it.

Runs inside the store's event loop: reacting to removals, never polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from ack_sandbox.k8s.errors import ApiError

if TYPE_CHECKING:
    from ack_sandbox.k8s.kinds import ResourceType
    from ack_sandbox.k8s.store import GR, Key, Store

log = logging.getLogger(__name__)
NAMESPACE_DEADLINE = 3600.0  # wall seconds a terminating namespace waits for its content


class Collector:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._removed: asyncio.Event | None = None

    def _signal(self) -> None:
        if self._removed is not None:
            self._removed.set()
            self._removed = None

    async def _wait_removal(self, timeout: float) -> None:
        if self._removed is None:
            self._removed = asyncio.Event()
        try:
            await asyncio.wait_for(self._removed.wait(), timeout)
        except TimeoutError:
            pass

    def removed(self, obj: dict[str, Any]) -> None:
        """An object is gone: collect its dependents and release owners waiting in foreground deletion."""
        uid = obj["metadata"]["uid"]
        for gr, key in self.store.dependents(uid):
            self.store._spawn(self._collect(gr, key))
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._maybe_release_owner(ref.get("uid", ""))
        self._signal()

    async def _collect(self, gr: GR, key: Key) -> None:
        await asyncio.sleep(0)  # asynchronous, like the real GC
        store = self.store
        dep = store._objs.get(gr, {}).get(key)
        rt = store.registry.storage_type(gr)
        if dep is None or rt is None:
            return
        refs = dep["metadata"].get("ownerReferences") or []
        alive = [r for r in refs if store.by_uid(r.get("uid", "")) is not None]
        owner_foreground = False
        try:
            if alive:
                # Some owners remain: only the dangling references go.
                body = {"metadata": {"ownerReferences": alive, "resourceVersion": dep["metadata"]["resourceVersion"]}}
                store.patch_raw(rt, key[1], key[0] or None, body, "merge", field_manager="garbage-collector")
            else:
                store.delete_raw(
                    rt, key[1], key[0] or None, propagation_policy="Foreground" if owner_foreground else "Background"
                )
        except ApiError as exc:
            if exc.code not in (404, 409):
                log.warning("garbage collection of %s %s failed: %s", gr, key, exc)

    def _maybe_release_owner(self, uid: str) -> None:
        owner = self.store.by_uid(uid)
        if owner is None:
            return
        md = owner["metadata"]
        if (
            md.get("deletionTimestamp")
            and "foregroundDeletion" in (md.get("finalizers") or [])
            and not self.store.dependents(uid)
        ):
            self._drop_finalizer(owner, "foregroundDeletion")

    def _drop_finalizer(self, obj: dict[str, Any], finalizer: str) -> None:
        store = self.store
        gr, key = store._uids[obj["metadata"]["uid"]]
        rt = store.registry.storage_type(gr)
        if rt is None:
            return
        fins = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        body = [{"op": "replace", "path": "/metadata/finalizers", "value": fins}]
        try:
            store.patch_raw(rt, key[1], key[0] or None, body, "json", field_manager="garbage-collector")
        except ApiError as exc:
            log.warning("could not remove finalizer %s: %s", finalizer, exc)

    async def process_owner(self, rt: ResourceType, key: Key, uid: str) -> None:
        """Foreground: delete the dependents first. Orphan: detach them. Then drop the finalizer."""
        await asyncio.sleep(0)
        store = self.store
        owner = store._objs.get(rt.gr, {}).get(key)
        if owner is None or owner["metadata"]["uid"] != uid:
            return
        fins = owner["metadata"].get("finalizers") or []
        for gr, dkey in store.dependents(uid):
            drt = store.registry.storage_type(gr)
            dep = store._objs.get(gr, {}).get(dkey)
            if drt is None or dep is None:
                continue
            try:
                if "orphan" in fins:
                    refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                    store.patch_raw(
                        drt,
                        dkey[1],
                        dkey[0] or None,
                        {"metadata": {"ownerReferences": refs or None}},
                        "merge",
                        field_manager="garbage-collector",
                    )
                elif "foregroundDeletion" in fins:
                    store.delete_raw(drt, dkey[1], dkey[0] or None, propagation_policy="Foreground")
            except ApiError as exc:
                if exc.code != 404:
                    log.warning("propagating deletion to %s %s failed: %s", gr, dkey, exc)
        owner = store._objs.get(rt.gr, {}).get(key)
        if owner is None:
            return
        if "orphan" in (owner["metadata"].get("finalizers") or []):
            self._drop_finalizer(owner, "orphan")
        else:
            self._maybe_release_owner(uid)

    def _namespace_content(self, name: str) -> list[tuple[GR, Key, ResourceType]]:
        out = []
        for gr, objs in list(self.store._objs.items()):
            rt = self.store.registry.storage_type(gr)
            if rt is not None and rt.namespaced:
                out += [(gr, key, rt) for key in objs if key[0] == name]
        return out

    async def finalize_namespace(self, name: str) -> None:
        """Delete everything in a terminating namespace, then the namespace itself."""
        await asyncio.sleep(0)
        store = self.store
        deadline = time.monotonic() + NAMESPACE_DEADLINE
        requested: set[tuple[GR, Key]] = set()
        while time.monotonic() < deadline:
            for gr, key, rt in self._namespace_content(name):
                if (gr, key) not in requested:
                    requested.add((gr, key))
                    try:
                        store.delete_raw(rt, key[1], name, grace_period_seconds=0, propagation_policy="Background")
                    except ApiError:
                        pass
            if not self._namespace_content(name):
                break
            await self._wait_removal(1.0)
        ns = store._objs.get(("", "namespaces"), {}).get(("", name))
        if ns is None:
            return
        nrt = store.registry.storage_type(("", "namespaces"))
        assert nrt is not None
        spec_fins = [f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        new = json.loads(json.dumps(ns))
        new.setdefault("spec", {})["finalizers"] = spec_fins
        if not spec_fins:
            new["spec"].pop("finalizers")
        store._commit_write(nrt, ("", name), new, ns)
        ns = store._objs.get(("", "namespaces"), {}).get(("", name))
        if ns is not None and not ns["metadata"].get("finalizers") and not (ns.get("spec") or {}).get("finalizers"):
            store._remove(nrt, ("", name))
