"""Pure logic of the controller base: the work queue and the condition helper."""

from __future__ import annotations

import asyncio

from ack_sandbox.controllers.base import WorkQueue, get_condition, set_condition


async def test_work_queue_deduplicates_and_reprocesses_dirty_keys() -> None:
    q = WorkQueue()
    q.add(("ns", "a"))
    q.add(("ns", "a"))
    q.add(("ns", "b"))
    first = await q.get()
    assert first == ("ns", "a")
    q.add(("ns", "a"))  # added while processing -> processed again after done()
    second = await q.get()
    assert second == ("ns", "b")
    q.done(first)
    assert await asyncio.wait_for(q.get(), 1) == ("ns", "a")


async def test_work_queue_add_after_keeps_the_earliest_wakeup() -> None:
    q = WorkQueue()
    q.add_after(("", "n"), 0.05)
    q.add_after(("", "n"), 5.0)  # later wake-up does not postpone the earlier one
    assert await asyncio.wait_for(q.get(), 2) == ("", "n")
    q.close()


def test_set_condition_moves_transition_time_only_on_status_flip() -> None:
    conds: list[dict] = []
    assert set_condition(conds, "Ready", "False", "ContainersNotReady", "not yet", probe_time=True, ts=100)
    assert conds[0]["lastProbeTime"] is None and conds[0]["lastTransitionTime"] == "1970-01-01T00:01:40Z"
    assert not set_condition(conds, "Ready", "False", "ContainersNotReady", "not yet", ts=200)
    assert set_condition(conds, "Ready", "False", "ContainersNotReady", "other", ts=300)
    assert conds[0]["lastTransitionTime"] == "1970-01-01T00:01:40Z"
    assert set_condition(conds, "Ready", "True", ts=400)
    assert conds[0] == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "1970-01-01T00:06:40Z",
        "lastProbeTime": None,
    }
    assert get_condition({"status": {"conditions": conds}}, "Ready")["status"] == "True"
    assert get_condition({"status": {}}, "Ready") is None
