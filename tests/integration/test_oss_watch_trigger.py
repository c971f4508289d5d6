"""The OSS watcher trigger (``triggers.oss_watch``) against the sandbox's OSS through the real oss2 SDK: a new
completed version fires once; the same version again, or a half-written one, fires nothing; a trigger re-created
from its serialized kwargs (a triggerer restart) fires nothing old; OSS errors are backed off.

The trigger counts its listings (``polls``): "fires nothing" is asserted after a number of listings, not a sleep.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from elastic_inference.hooks.oss import OssHook
from elastic_inference.triggers.oss_watch import MemoryStateStore, OssModelVersionTrigger
from tests.helpers import admin, until_async
from tests.integration.support import FAST_RETRY, connection, sandbox_conn

pytestmark = pytest.mark.integration


@pytest.fixture
def oss_conn(sandbox) -> Iterator[str]:
    conn = sandbox_conn(sandbox)
    conn["extra"] = {**conn["extra"], **FAST_RETRY}
    with connection("alibaba_oss_watch", conn) as conn_id:
        yield conn_id


def write_version(hook: OssHook, bucket: str, version: int, *, complete: bool = True) -> None:
    """A training job's export of ``version`` (without variables.index when not ``complete``)."""
    base = f"exports/fashion-mnist/{version}/"
    hook.put_object(bucket, base + "saved_model.pb", os.urandom(512))
    hook.put_object(bucket, base + "variables/variables.data-00000-of-00001", os.urandom(1024))
    if complete:
        hook.put_object(bucket, base + "variables/variables.index", os.urandom(64))


class Watching:
    """The trigger's ``run()`` consumed in a task, as the triggerer does; its events collected."""

    def __init__(self, trigger: OssModelVersionTrigger) -> None:
        self.trigger = trigger
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        async for event in self.trigger.run():
            self.events.append(event.payload)

    async def listings(self, n: int) -> None:
        """Wait for ``n`` more completed listings."""
        target = self.trigger.polls + n

        async def done() -> bool:
            assert not self.task.done() or self.task.cancelled(), self.task.exception()
            return self.trigger.polls >= target

        await until_async(f"{n} listings", done, timeout=60)

    async def event(self, count: int) -> list[dict[str, Any]]:
        async def got() -> bool:
            assert not self.task.done(), self.task.exception()
            return len(self.events) >= count

        await until_async(f"{count} event(s)", got, timeout=60)
        return self.events

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def restarted(trigger: OssModelVersionTrigger, store: MemoryStateStore) -> OssModelVersionTrigger:
    """What a triggerer does after a restart: a new instance from the serialized kwargs, the asset state store
    injected (here the in-process stand-in of the metadata DB's store)."""
    classpath, kwargs = trigger.serialize()
    assert classpath == "elastic_inference.triggers.oss_watch.OssModelVersionTrigger"
    fresh = OssModelVersionTrigger(**kwargs)
    fresh.asset_state_store = store
    return fresh


async def test_new_version_fires_once_and_nothing_old_fires_after_a_restart(oss_conn):
    hook = OssHook(oss_conn)
    bucket = "train-" + secrets.token_hex(4)
    hook.create_bucket(bucket)
    write_version(hook, bucket, 1)  # history: the baseline, never fired
    store = MemoryStateStore()
    trigger = OssModelVersionTrigger(
        uri=f"oss://{bucket}/exports/fashion-mnist/",
        ack_conn_id=oss_conn,
        poll_interval=0.05,
        params={"namespace": "ml"},
    )
    trigger.asset_state_store = store
    watch = Watching(trigger)
    try:
        await watch.listings(3)
        assert watch.events == []  # version 1 was there before the watcher: the baseline

        write_version(hook, bucket, 2, complete=False)  # half-written: no variables.index yet
        await watch.listings(4)
        assert watch.events == []

        hook.put_object(bucket, "exports/fashion-mnist/2/variables/variables.index", b"index")
        (event,) = await watch.event(1)
        assert event["path"] == f"oss://{bucket}/exports/fashion-mnist/2/"
        assert (event["version"], event["objects"], event["params"]) == (2, 3, {"namespace": "ml"})

        write_version(hook, bucket, 2)  # the same version written again
        await watch.listings(4)
        assert len(watch.events) == 1
    finally:
        await watch.stop()
    assert (await store.aget(trigger.state_key))["version"] == 2

    # Restart: a new trigger from the serialized kwargs fires nothing old...
    again = Watching(restarted(trigger, store))
    try:
        await again.listings(4)
        assert again.events == []
        # ... and a version written while it was down, or after, fires.
        write_version(hook, bucket, 3)
        (event,) = await again.event(1)
        assert event["version"] == 3
    finally:
        await again.stop()


async def test_ready_marker_and_start_after(oss_conn):
    hook = OssHook(oss_conn)
    bucket = "train-" + secrets.token_hex(4)
    hook.create_bucket(bucket)
    write_version(hook, bucket, 4)  # complete but no marker, and already there at the first start
    trigger = OssModelVersionTrigger(
        uri=f"oss://{bucket}/exports/fashion-mnist",
        ack_conn_id=oss_conn,
        poll_interval=0.05,
        ready_marker="_SUCCESS",
        start_after=3,  # version 4 counts as new
    )
    watch = Watching(trigger)
    try:
        await watch.listings(4)
        assert watch.events == []  # complete layout, stable, but the marker is what says "done"
        hook.put_object(bucket, "exports/fashion-mnist/4/_SUCCESS", b"")
        (event,) = await watch.event(1)
        assert event["version"] == 4
    finally:
        await watch.stop()


async def test_oss_errors_are_backed_off_and_the_version_still_fires_once(sandbox, oss_conn):
    hook = OssHook(oss_conn)
    bucket = "train-" + secrets.token_hex(4)
    hook.create_bucket(bucket)
    trigger = OssModelVersionTrigger(
        uri=f"oss://{bucket}/exports/fashion-mnist/", ack_conn_id=oss_conn, poll_interval=0.05, max_backoff=0.2
    )
    watch = Watching(trigger)
    try:
        await watch.listings(2)
        write_version(hook, bucket, 1)
        # 10 failing listings (GetBucket = ListObjects): the hook's 4 attempts run out twice, the trigger waits
        # and lists again instead of ending.
        # On this bucket only: the background scheduler run's OSS watcher may be polling the same sandbox.
        faults = {"server_error": {"count": 10, "action": "GetBucket", "bucket": bucket}}
        admin(sandbox, "oss", "POST", "/_sandbox/faults", faults)

        async def backed_off() -> bool:
            return trigger.errors >= 2

        await until_async("two backoffs", backed_off, timeout=60)
        (event,) = await watch.event(1)
        assert event["version"] == 1
        _, left = admin(sandbox, "oss", "GET", "/_sandbox/faults")
        assert left["server_error"] is None  # every armed fault was met
        assert trigger.errors == 0
        await watch.listings(3)
        assert len(watch.events) == 1
    finally:
        admin(sandbox, "oss", "DELETE", "/_sandbox/faults")
        await watch.stop()
