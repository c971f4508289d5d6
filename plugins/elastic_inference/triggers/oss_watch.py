"""Watch an OSS prefix for a completed new model version and fire an Asset event: the retraining hook of a
training system outside Airflow (an ``AssetWatcher`` on the model-in-OSS Asset, ``dags/_assets.py``).

The prefix holds TF Serving's ``<version>/`` folders (``oss://bucket/exports/fashion-mnist/7/saved_model.pb``,
``.../7/variables/...``). A version is **complete** when its layout is a loadable SavedModel
(``model_layout.remote_saved_model_problems``: the same rules as ``plan``'s) and either

* the ready marker is there (``ready_marker``, e.g. ``_SUCCESS``: the object a job writes last, as Hadoop/Spark
  jobs do), or, without a marker,
* two consecutive listings ``poll_interval`` apart show the same objects with the same sizes and ETags (a
  writer still uploading changes the listing; OSS lists an object only once its PUT/Complete succeeded).

**Never twice, and not again after a restart.** Airflow re-creates an event trigger from its serialized kwargs
(``airflow.models.trigger``; the trigger row is keyed by ``BaseEventTrigger.hash(classpath, kwargs)``), so
anything held in memory is gone after a triggerer restart or a move to another triggerer. The "already fired"
watermark therefore lives in the watched Asset's own **asset state store** (Airflow 3.3: the triggerer injects
``asset_state_store`` into an event trigger, persisted in the metadata DB through the API server). Why there and
not in OSS or in the kwargs: it is per Asset, not per trigger row, so it also survives a change of this trigger's
kwargs (a new row); it needs no write permission on the training bucket; and a start-after version in the kwargs
alone cannot move forward. The watermark is written **before** the event is yielded: at most once - a triggerer
killed between the two loses that one event (the version is then deployed by hand or by the next version), it is
never deployed twice. A version at or below the watermark never fires (TF Serving versions only grow), so
rewriting a version starts nothing.

**First start** (no watermark yet): ``start_after`` when given, else the newest complete version already there is
taken as the baseline - a new watcher on a prefix with a history does not redeploy it. Only the newest complete
version above the watermark fires (older ones still being written are passed over).

**Errors** (OSS unreachable, 5xx past the hook's retries, AccessDenied, the state store not answering) are
logged and retried with exponential backoff up to ``max_backoff`` seconds; the watcher never ends on its own.

Outside a triggerer (``asset_state_store`` not injected) the watermark is kept in memory.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from elastic_inference.model_layout import OSS_SCHEME, OssLocation, remote_saved_model_problems

STATE_KEY_PREFIX = "elastic_inference.oss_watch:"
MAX_POLLS = 10_000_000  # a hard bound on top of "forever"
Snapshot = tuple[tuple[str, int, str], ...]


class MemoryStateStore:
    """The watermark's home when no triggerer injected an asset state store (``aget``/``aset`` as Airflow's)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def parse_watch_uri(uri: str) -> tuple[str, str]:
    """``oss://bucket/prefix/`` → (bucket, prefix ending with '/'); ValueError naming the fix."""
    rest = uri[len(OSS_SCHEME) :] if uri.startswith(OSS_SCHEME) else ""
    bucket, _, prefix = rest.partition("/")
    if not bucket or any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(f"uri={uri!r}: watch an OSS folder, e.g. oss://bucket/exports/fashion-mnist/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/") if prefix else ""


def watch_kwargs(text: str) -> dict[str, Any] | None:
    """The watcher's kwargs from ``ELASTIC_INFERENCE_OSS_WATCH``: an ``oss://`` folder, or a JSON object of
    :class:`OssModelVersionTrigger`'s keyword arguments. Empty: None (no watcher). ValueError names the fix."""
    import json

    text = (text or "").strip()
    if not text:
        return None
    if text.startswith(OSS_SCHEME):
        return {"uri": text}
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(
            f"ELASTIC_INFERENCE_OSS_WATCH={text[:80]!r}: give an oss://bucket/prefix/ folder or a JSON object "
            '{"uri": "oss://...", "poll_interval": 30, "ready_marker": "_SUCCESS", "params": {...}}'
        ) from None
    known = {"uri", "ack_conn_id", "poll_interval", "ready_marker", "start_after", "params", "max_backoff"}
    if not isinstance(doc, dict) or "uri" not in doc or set(doc) - known:
        raise ValueError(f"ELASTIC_INFERENCE_OSS_WATCH: a JSON object with 'uri' and only the keys {sorted(known)}")
    return doc


class OssModelVersionTrigger(BaseEventTrigger):
    """Fire once per new completed ``<version>/`` folder under ``uri``.

    :param uri: the folder holding the version folders, ``oss://bucket/exports/fashion-mnist/``.
    :param ack_conn_id: the Alibaba Cloud connection (its OSS endpoint and credentials; reads only).
    :param poll_interval: seconds between listings (also the stability window without a marker).
    :param ready_marker: the object name inside a version folder that says "complete" (e.g. ``_SUCCESS``);
        empty: a complete layout unchanged across two listings.
    :param start_after: on the very first start, fire only for versions above this one (default: the newest
        complete version already there).
    :param params: run parameters the event carries to ``elastic_inference`` (namespace, deployment_name,
        samples_path...), for the model this prefix holds.
    :param max_backoff: the longest wait after consecutive errors.

    Event payload: ``{"path": "oss://.../<version>/", "version": N, "uri", "objects", "bytes", "params"}``.
    """

    def __init__(
        self,
        *,
        uri: str,
        ack_conn_id: str = "alibaba_ack_default",
        poll_interval: float = 30.0,
        ready_marker: str = "",
        start_after: int | None = None,
        params: Mapping[str, Any] | None = None,
        max_backoff: float = 300.0,
    ) -> None:
        super().__init__()
        self.bucket, self.prefix = parse_watch_uri(uri)
        self.uri = uri
        self.ack_conn_id = ack_conn_id
        self.poll_interval = float(poll_interval)
        self.ready_marker = ready_marker.strip("/")
        self.start_after = start_after
        self.params = dict(params or {})
        self.max_backoff = float(max_backoff)
        self.polls = 0  # listings completed (tests count them instead of sleeping)
        self.errors = 0  # consecutive failures behind the current backoff
        self._memory = MemoryStateStore()
        self._waiting: dict[int, Snapshot] = {}  # the incomplete versions already logged, as last logged

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "uri": self.uri,
                "ack_conn_id": self.ack_conn_id,
                "poll_interval": self.poll_interval,
                "ready_marker": self.ready_marker,
                "start_after": self.start_after,
                "params": self.params,
                "max_backoff": self.max_backoff,
            },
        )

    @property
    def watched_uri(self) -> str:
        return f"oss://{self.bucket}/{self.prefix}"

    # -- the watermark ----------------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return f"{STATE_KEY_PREFIX}oss://{self.bucket}/{self.prefix}"

    def _store(self) -> Any:
        return self.asset_state_store if self.asset_state_store is not None else self._memory

    async def _watermark(self) -> int | None:
        value = await self._store().aget(self.state_key, None)
        return int(value["version"]) if isinstance(value, Mapping) and "version" in value else None

    async def _set_watermark(self, version: int, why: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self._store().aset(self.state_key, {"version": version, "why": why, "at": stamp})

    # -- OSS (sync oss2 in a worker thread: the event loop never blocks) --------------------------------------
    async def _hook(self) -> Any:
        from elastic_inference.hooks.oss import OssHook

        hook = OssHook(self.ack_conn_id)
        await hook.aget_settings()
        return hook

    def _version_folders(self, hook: Any) -> dict[int, str]:
        """The numeric version folders under the prefix (one delimited listing)."""
        out: dict[int, str] = {}
        for folder in hook.list_prefixes(self.bucket, self.prefix):
            name = folder[len(self.prefix) :].strip("/")
            if name.isdigit():
                out[int(name)] = folder
        return out

    def _snapshot(self, hook: Any, folder: str) -> Snapshot:
        """A version folder's objects: key relative to the folder, size, ETag."""
        objects = hook.list_objects(self.bucket, folder, max_objects=10_000)
        return tuple(sorted((o.key[len(folder) :], o.size, o.etag or "") for o in objects))

    def _baseline(self, hook: Any) -> int:
        """The newest complete version already there (newest first: one folder listed when it is complete)."""
        for version, folder in sorted(self._version_folders(hook).items(), reverse=True):
            if self._layout_ok(version, self._snapshot(hook, folder)):
                return version
        return 0

    def _list_versions(self, hook: Any, above: int) -> dict[int, Snapshot]:
        """The version folders above the watermark and their objects (older ones are never listed again)."""
        return {v: self._snapshot(hook, f) for v, f in self._version_folders(hook).items() if v > above}

    def _layout_ok(self, version: int, snapshot: Snapshot) -> bool:
        location = OssLocation(self.bucket, f"{self.prefix}{version}/", version)
        return not remote_saved_model_problems(location, {k for k, _, _ in snapshot})

    def _complete(self, version: int, snapshot: Snapshot, previous: Snapshot | None) -> bool:
        if not self._layout_ok(version, snapshot):
            return False
        if self.ready_marker:
            return any(k == self.ready_marker for k, _, _ in snapshot)
        return previous == snapshot

    def _event(self, version: int, snapshot: Snapshot) -> TriggerEvent:
        path = f"oss://{self.bucket}/{self.prefix}{version}/"
        return TriggerEvent(
            {
                "path": path,
                "version": version,
                "uri": f"oss://{self.bucket}/{self.prefix}",
                "objects": len(snapshot),
                "bytes": sum(size for _, size, _ in snapshot),
                "params": self.params,
            }
        )

    def _note_waiting(self, fresh: dict[int, Snapshot], previous: dict[int, Snapshot], ready: list[int]) -> None:
        """One INFO line when a version folder above the watermark is first listed unchanged but is not complete
        (the case a stability check alone would fire on): operators see why nothing fired, once, not every poll."""
        for version, snapshot in sorted(fresh.items()):
            if version in ready or previous.get(version) != snapshot:
                continue
            if self._waiting.get(version) == snapshot:
                continue
            self._waiting[version] = snapshot
            location = OssLocation(self.bucket, f"{self.prefix}{version}/", version)
            problems = remote_saved_model_problems(location, {k for k, _, _ in snapshot})
            why = "; ".join(problems) or f"no ready marker {self.ready_marker!r} yet"
            self.log.info(
                "version %d at oss://%s/%s unchanged across two listings (%d objects) but not complete: %s",
                version,
                self.bucket,
                self.prefix,
                len(snapshot),
                why,
            )

    def _backoff(self) -> float:
        base = min(self.max_backoff, self.poll_interval * (2 ** min(self.errors, 16)))
        return base * (1 + 0.25 * random.random())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        previous: dict[int, Snapshot] = {}
        watermark: int | None = None
        hook: Any = None
        for _ in range(MAX_POLLS):
            try:
                if hook is None:
                    hook = await self._hook()
                if watermark is None:
                    watermark = await self._watermark()
                    why = "from the asset state store"
                    if watermark is None:  # the very first start: a baseline, nothing fires for what is there
                        baseline = self.start_after
                        if baseline is None:
                            baseline = await asyncio.to_thread(self._baseline, hook)
                        await self._set_watermark(baseline, "baseline at the first start")
                        watermark, why = baseline, "baseline at the first start"
                    self.log.info(
                        "watching oss://%s/%s: versions above %d fire (%s)", self.bucket, self.prefix, watermark, why
                    )
                fresh = await asyncio.to_thread(self._list_versions, hook, watermark)
                ready = [v for v, snap in fresh.items() if self._complete(v, snap, previous.get(v))]
                self._note_waiting(fresh, previous, ready)
                previous = fresh
                self.polls += 1
                self.errors = 0
                if ready:
                    version = max(ready)
                    await self._set_watermark(version, "fired")  # before the event: at most once
                    watermark = version
                    self.log.info("new model version %d complete at oss://%s/%s", version, self.bucket, self.prefix)
                    yield self._event(version, fresh[version])
                    continue
            except Exception as exc:  # noqa: BLE001 - OSS or the state store; a watcher backs off, never ends
                self.errors += 1
                wait = self._backoff()
                self.log.warning(
                    "OSS watch of oss://%s/%s failed (%s: %s); retrying in %.1fs (%d in a row)",
                    self.bucket,
                    self.prefix,
                    type(exc).__name__,
                    exc,
                    wait,
                    self.errors,
                )
                await asyncio.sleep(wait)
                continue
            await asyncio.sleep(self.poll_interval)
