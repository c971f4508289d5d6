"""One watch-based wait for Kubernetes objects, used by every deploy-side trigger.

A trigger names the collections it needs (:class:`WatchSpec`: a path plus label/field selectors) and a pure
``evaluate(snapshot, now) -> Verdict``. :class:`WatchLoop` keeps an in-memory copy of each collection — list
once, then a ``kubernetes_asyncio`` watch (``KubeAsyncHook.watch_events``) from that ``resourceVersion`` with a
bounded ``timeoutSeconds``, re-list on 410 Gone, and on transient errors (an API outage: refused, reset, 5xx — also
after the hook's own retries gave up) back off and re-list, until the deadline — and re-evaluates on every change, so
a terminal state is seen within one event's latency rather than a poll interval. The deadline lives inside
the loop: the trigger always yields exactly one event, ``success``, ``error`` or ``timeout``.

An ``error`` verdict is confirmed on a fresh list of every collection before it is returned. The collections come
from separate watches, so one may be ahead of another (a claim seen before the volume created ahead of it, most of
all after a re-list): a verdict drawn from what one watch has not delivered yet is not a verdict.

The same loop runs in-process for non-deferred waits (:func:`wait_inline`), so both paths share the code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from elastic_inference.hooks.kubernetes import KubeAccess, KubeAsyncHook, is_transient
from elastic_inference.k8s_objects import Json, Verdict

MAX_WATCH_ROUNDS = 10_000  # re-watches per collection per wait; the deadline normally ends it long before


@dataclass(frozen=True)
class WatchSpec:
    """One collection to mirror: ``key`` in the snapshot, REST collection ``path``, selectors, item kind."""

    key: str
    path: str
    kind: str
    label_selector: str | None = None
    field_selector: str | None = None
    # When the server rejects the field selector (400), list without it; evaluate() filters anyway.
    field_selector_optional: bool = False


Snapshot = dict[str, dict[str, Json]]
Evaluate = Callable[[Snapshot, datetime], Verdict]


def _key(obj: Json) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class WatchLoop:
    """Mirror the collections in ``specs`` until ``evaluate`` gives a terminal verdict or ``deadline`` passes."""

    def __init__(
        self,
        api: Any,
        hook: KubeAsyncHook,
        specs: list[WatchSpec],
        evaluate: Evaluate,
        *,
        deadline: float,
        watch_timeout_seconds: int = 60,
        recheck_seconds: float = 5.0,
        log: Any = None,
        what: str = "the objects",
        progress: Callable[[Snapshot, Verdict], str] | None = None,
        progress_seconds: float = 15.0,
    ) -> None:
        self.api = api
        self.hook = hook
        self.specs = specs
        self.evaluate = evaluate
        self.deadline = deadline
        self.watch_timeout_seconds = max(1, int(watch_timeout_seconds))
        self.recheck_seconds = recheck_seconds
        self.log = log
        self.snapshot: Snapshot = {s.key: {} for s in specs}
        self.changed = asyncio.Event()
        self.listed = {s.key: asyncio.Event() for s in specs}
        self.events_seen = 0
        self.lists = 0  # initial lists plus re-lists after 410 Gone
        self.interruptions = 0  # watches that broke on a transient error and were resumed
        self.confirmations = 0  # error verdicts checked again on a fresh list
        # Waits that talk: what is awaited, where it stands, the time left (a line on change, at most every 2 s,
        # and at least every ``progress_seconds``), so a deferred task's log is not silent until the end.
        self.what = what
        self.progress = progress
        self.progress_seconds = progress_seconds
        self._said: tuple[str, float] = ("", 0.0)

    def _remaining(self) -> float:
        return self.deadline - time.time()

    def _until(self) -> str:
        return datetime.fromtimestamp(self.deadline, UTC).strftime("%H:%M:%S UTC")

    def _talk_start(self) -> None:
        """The first line, before anything is listed: a wait that ends at its first look still says what it was."""
        if self.log is not None:
            left = max(0.0, self._remaining())
            self.log.info("waiting for %s | %.0f s left (deadline %s)", self.what, left, self._until())

    def _talk_end(self, event: Json, started: float) -> None:
        if self.log is not None:
            took = time.monotonic() - started
            self.log.info("done waiting for %s after %.1f s: %s", self.what, took, event.get("message", ""))

    def _talk(self, verdict: Verdict) -> None:
        """One progress line for the task log (the triggerer's log of this task while deferred)."""
        if self.log is None:
            return
        try:
            line = self.progress(self.snapshot, verdict) if self.progress else verdict.message
        except Exception as exc:  # noqa: BLE001 - a progress line must never end the wait
            line = f"{verdict.message} (progress: {exc})"
        now = time.monotonic()
        said, at = self._said
        if (line == said and now - at < self.progress_seconds) or (line != said and now - at < 2.0):
            return
        self._said = (line, now)
        left = max(0.0, self._remaining())
        self.log.info("waiting for %s: %s | %.0f s left (deadline %s)", self.what, line, left, self._until())

    async def _fetch(self, spec: WatchSpec) -> tuple[list[Json], str, str | None]:
        """One list of ``spec``'s collection: its items, the list's resourceVersion, the field selector used."""
        from elastic_inference.hooks.kubernetes import KubernetesApiError

        field = spec.field_selector
        try:
            lst = await self.hook.request(
                self.api,
                "GET",
                spec.path,
                operation=f"list {spec.key}",
                query={"labelSelector": spec.label_selector, "fieldSelector": field},
            )
        except KubernetesApiError as e:
            if not (e.status == 400 and spec.field_selector_optional and field):
                raise
            field = None
            lst = await self.hook.request(
                self.api, "GET", spec.path, operation=f"list {spec.key}", query={"labelSelector": spec.label_selector}
            )
        items = lst.get("items") or []
        for item in items:
            item.setdefault("kind", spec.kind)
        return items, str((lst.get("metadata") or {}).get("resourceVersion") or ""), field

    async def _list(self, spec: WatchSpec) -> tuple[str, str | None]:
        items, rv, field = await self._fetch(spec)
        self.lists += 1
        store = self.snapshot[spec.key]
        store.clear()
        store.update((_key(item), item) for item in items)
        self.listed[spec.key].set()
        self.changed.set()
        return rv, field

    async def _confirm(self, verdict: Verdict) -> Verdict:
        """``verdict`` again, on a fresh list of every collection (not the watches' copies, which are left as they
        are); a list that cannot be had now leaves the verdict unconfirmed (pending) until the next change."""
        self.confirmations += 1
        fresh: Snapshot = {}
        try:
            for spec in self.specs:
                items, _, _ = await self._fetch(spec)
                fresh[spec.key] = {_key(item): item for item in items}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc):
                raise
            return Verdict("pending", f"{verdict.message} (not confirmed yet: {exc})", verdict.details)
        return self.evaluate(fresh, datetime.now(UTC))

    async def _follow(self, spec: WatchSpec) -> None:
        store = self.snapshot[spec.key]
        rv: str | None = None
        field = spec.field_selector
        backoff = 0.2
        for _ in range(MAX_WATCH_ROUNDS):
            remaining = self._remaining()
            if remaining <= 0:
                return
            try:
                if rv is None:
                    rv, field = await self._list(spec)
                async with self.hook.watch_events(
                    self.api,
                    spec.path,
                    resource_version=rv or None,
                    label_selector=spec.label_selector,
                    field_selector=field,
                    allow_watch_bookmarks=True,
                    timeout_seconds=max(1, min(self.watch_timeout_seconds, int(remaining) + 1)),
                ) as (w, stream):
                    async for ev in stream:
                        obj = ev.get("raw_object") or {}
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            obj.setdefault("kind", spec.kind)
                            store[_key(obj)] = obj
                        elif ev["type"] == "DELETED":
                            store.pop(_key(obj), None)
                        rv = w.resource_version or rv
                        self.events_seen += 1
                        self.changed.set()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                status = getattr(exc, "status", None)
                if status == 410:  # resourceVersion too old: list again, then watch from the new version
                    if self.log:
                        self.log.info("watch %s: resourceVersion %s expired (410); listing again", spec.key, rv)
                    rv = None
                    continue
                if not is_transient(exc):
                    raise
                # The API server may be restarting (an outage, an upgrade): keep trying until the deadline, and
                # list again once it answers, as after a 410 — what changed meanwhile may be gone from its history.
                self.interruptions += 1
                rv = None
                if self.log:
                    self.log.warning("watch %s interrupted (%s); listing again in %.1fs", spec.key, exc, backoff)
                await asyncio.sleep(min(backoff, max(0.0, self._remaining())))
                backoff = min(backoff * 2, 5.0)

    async def run(self) -> Json:
        started = time.monotonic()
        self._talk_start()
        event = await self._run()
        self._talk_end(event, started)
        return event

    async def _run(self) -> Json:
        tasks = [asyncio.create_task(self._follow(s), name=f"watch-{s.key}") for s in self.specs]
        last: Verdict | None = None
        try:
            while True:
                for t in tasks:
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        exc = t.exception()
                        return {
                            "status": "error",
                            "message": f"watching the cluster failed: {exc}",
                            "error_type": type(exc).__name__,
                        }
                if all(e.is_set() for e in self.listed.values()):
                    self.changed.clear()
                    last = self.evaluate(self.snapshot, datetime.now(UTC))
                    if last.state == "error":
                        last = await self._confirm(last)
                    if last.done:
                        return last.event()
                    self._talk(last)
                remaining = self._remaining()
                if remaining <= 0:
                    msg = last.message if last else "the objects could not be listed"
                    return {
                        "status": "timeout",
                        "message": f"deadline reached; last seen: {msg}",
                        **(last.details if last else {}),
                    }
                waiter = asyncio.create_task(self.changed.wait())
                await asyncio.wait(
                    [waiter, *(t for t in tasks if not t.done())],
                    timeout=min(remaining, self.recheck_seconds),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class KubernetesWatchTrigger(BaseTrigger):
    """Base of the deploy triggers. Subclasses define :meth:`watches` and :meth:`evaluate`.

    :param access: :meth:`KubeAccess.to_dict` — connection ids only, never a kubeconfig.
    :param namespace: namespace of the watched object.
    :param name: name of the watched object.
    :param deadline: absolute UNIX time after which the trigger yields ``timeout`` (survives triggerer restarts).
    :param watch_timeout_seconds: server-side timeout of each watch request before it is resumed.
    """

    def __init__(
        self,
        *,
        access: dict[str, Any] | None,
        namespace: str,
        name: str,
        deadline: float,
        watch_timeout_seconds: int = 60,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Echoed back in the event: what the operator needs on resume. Not passed as defer() kwargs because
        # `airflow dags test` resumes with the event alone (airflow/sdk/definitions/dag.py drops next_kwargs).
        self.carry = carry
        self.access = dict(access or {})
        self.namespace = namespace
        self.name = name
        self.deadline = float(deadline)
        self.watch_timeout_seconds = int(watch_timeout_seconds)
        self._loop_task: asyncio.Task | None = None

    # -- subclass API -------------------------------------------------------------------------------------
    def watches(self) -> list[WatchSpec]:
        raise NotImplementedError

    def evaluate(self, snapshot: Snapshot, now: datetime) -> Verdict:
        raise NotImplementedError

    def extra_kwargs(self) -> dict[str, Any]:
        return {}

    recheck_seconds: float = 5.0

    def waiting_for(self) -> str:
        """What the wait is for, in the task log's progress lines."""
        return f"{type(self).__name__.removesuffix('Trigger')} {self.namespace}/{self.name}"

    def progress(self, snapshot: Snapshot, verdict: Verdict) -> str:
        """Where the wait stands (current vs wanted), for the progress lines; default: the verdict's message."""
        return verdict.message

    # -- trigger contract ---------------------------------------------------------------------------------
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "access": self.access,
                "namespace": self.namespace,
                "name": self.name,
                "deadline": self.deadline,
                "watch_timeout_seconds": self.watch_timeout_seconds,
                **({"carry": self.carry} if self.carry else {}),
                **self.extra_kwargs(),
            },
        )

    async def wait(self) -> Json:
        """Watch until done; returns the event payload (also used in-process by :func:`wait_inline`)."""
        hook = KubeAsyncHook(KubeAccess.from_dict(self.access))
        try:
            async with hook.client() as api:
                loop = WatchLoop(
                    api,
                    hook,
                    self.watches(),
                    self.evaluate,
                    deadline=self.deadline,
                    watch_timeout_seconds=self.watch_timeout_seconds,
                    recheck_seconds=self.recheck_seconds,
                    log=self.log,
                    what=self.waiting_for(),
                    progress=self.progress,
                )
                return await loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the one error event, with the cause
            return {"status": "error", "message": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self._loop_task = asyncio.current_task()
        event = await self.wait()
        self.log.info("%s %s/%s: %s", type(self).__name__, self.namespace, self.name, event.get("message"))
        yield TriggerEvent({**event, "carry": self.carry} if self.carry else event)

    async def cleanup(self) -> None:
        # The API client and the watch tasks are scoped to wait(); they are closed when run() ends or is
        # cancelled. Nothing in the cluster belongs to this wait, so there is nothing to undo here.
        self._loop_task = None


class InlineWaiter:
    """Runs a trigger's :meth:`KubernetesWatchTrigger.wait` on a private event loop in the worker (non-deferred).

    :meth:`cancel` may be called from another thread or a signal handler (``on_kill``).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._cancelled = threading.Event()

    def wait(self, trigger: KubernetesWatchTrigger) -> Json:
        async def main() -> Json:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            if self._cancelled.is_set():
                raise asyncio.CancelledError
            return await trigger.wait()

        def run() -> Json:
            try:
                return asyncio.run(main())
            except asyncio.CancelledError:
                return {"status": "error", "message": "the wait was cancelled (task killed)"}

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # called from async code
            return pool.submit(run).result()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)


def wait_inline(trigger: KubernetesWatchTrigger) -> Json:
    return InlineWaiter().wait(trigger)
