"""Garbage collection by ownerReferences, deletion propagation (Background/Foreground/Orphan) and the
namespace lifecycle, as kube-controller-manager's garbagecollector and namespace controllers do it.

Runs inside the store's event loop: reacting to removals, never polling. It reaches the store only through
``GcStore`` (the store's public reads ``stored``/``location``/``by_uid``/``dependents``/``namespace_content``,
its writes ``patch_raw``/``delete_raw``/``finish_namespace`` and ``spawn``), so it does not import the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ack_sandbox.k8s.errors import ApiError

if TYPE_CHECKING:
    from ack_sandbox.k8s.kinds import GR, Key, ResourceType
    from ack_sandbox.k8s.registry import Registry

log = logging.getLogger(__name__)
NAMESPACE_DEADLINE = 3600.0  # wall seconds a terminating namespace waits for its content


class GcStore(Protocol):
    """What the collector needs of the store (``ack_sandbox.k8s.store.Store`` implements it)."""

    registry: Registry

    def stored(self, gr: GR, key: Key) -> dict[str, Any] | None: ...
    def location(self, uid: str) -> tuple[GR, Key] | None: ...
    def by_uid(self, uid: str) -> dict[str, Any] | None: ...
    def dependents(self, uid: str) -> list[tuple[GR, Key]]: ...
    def namespace_content(self, namespace: str) -> list[tuple[GR, Key, ResourceType]]: ...
    def patch_raw(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        body: Any,
        patch_type: str,
        *,
        field_manager: str | None = ...,
    ) -> Any: ...
    def delete_raw(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        *,
        propagation_policy: str | None = ...,
        grace_period_seconds: int | None = ...,
    ) -> Any: ...
    def finish_namespace(self, name: str) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class Collector:
    def __init__(self, store: GcStore) -> None:
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
            self.store.spawn(self._collect(gr, key))
        for ref in obj["metadata"].get("ownerReferences") or []:
            self._maybe_release_owner(ref.get("uid", ""))
        self._signal()

    async def _collect(self, gr: GR, key: Key) -> None:
        await asyncio.sleep(0)  # asynchronous, like the real GC
        store = self.store
        dep = store.stored(gr, key)
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
        loc = store.location(obj["metadata"]["uid"])
        rt = store.registry.storage_type(loc[0]) if loc is not None else None
        if loc is None or rt is None:
            return
        key = loc[1]
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
        owner = store.stored(rt.gr, key)
        if owner is None or owner["metadata"]["uid"] != uid:
            return
        fins = owner["metadata"].get("finalizers") or []
        for gr, dkey in store.dependents(uid):
            drt = store.registry.storage_type(gr)
            dep = store.stored(gr, dkey)
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
        owner = store.stored(rt.gr, key)
        if owner is None:
            return
        if "orphan" in (owner["metadata"].get("finalizers") or []):
            self._drop_finalizer(owner, "orphan")
        else:
            self._maybe_release_owner(uid)

    async def finalize_namespace(self, name: str) -> None:
        """Delete everything in a terminating namespace, then the namespace itself."""
        await asyncio.sleep(0)
        store = self.store
        deadline = time.monotonic() + NAMESPACE_DEADLINE
        requested: set[tuple[GR, Key]] = set()
        while time.monotonic() < deadline:
            for gr, key, rt in store.namespace_content(name):
                if (gr, key) not in requested:
                    requested.add((gr, key))
                    try:
                        store.delete_raw(rt, key[1], name, grace_period_seconds=0, propagation_policy="Background")
                    except ApiError:
                        pass
            if not store.namespace_content(name):
                break
            await self._wait_removal(1.0)
        store.finish_namespace(name)
