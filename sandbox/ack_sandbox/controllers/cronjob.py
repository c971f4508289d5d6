"""The CronJob controller (pkg/controller/cronjob, ControllerV2): Jobs on a schedule.

At each scheduled time (sandbox time, so ``*/1 * * * *`` fires every cloud minute) the controller creates
``<cronjob>-<scheduled unix time / 60>`` from ``spec.jobTemplate`` with a controller ownerReference and the
``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation (getJobFromTemplate2). Only the most recent
missed time runs; a time older than ``startingDeadlineSeconds`` is skipped. ``concurrencyPolicy``: Allow,
Forbid (skip while a job is active) or Replace (delete the active ones first); ``suspend`` stops scheduling.
Status: ``active`` (object references), ``lastScheduleTime``, ``lastSuccessfulTime``. Finished jobs beyond
``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are deleted, oldest first (background propagation).
Events: SuccessfulCreate, SawCompletedJob, SuccessfulDelete, JobAlreadyActive.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

from ack_sandbox.controllers.base import (
    CRONJOBS,
    JOBS,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    key_of,
    owner_ref,
)
from ack_sandbox.controllers.job import is_finished
from ack_sandbox.k8s import cron
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import parse_time, rfc3339

log = logging.getLogger("ack_sandbox.controllers.cronjob")

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_name(cronjob: Obj, scheduled: float) -> str:
    return f"{cronjob['metadata']['name']}-{int(scheduled) // 60}"


def job_from_template(cronjob: Obj, scheduled: float) -> Obj:
    tmpl = copy.deepcopy(cronjob["spec"].get("jobTemplate") or {})
    tmeta = tmpl.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_ANNOTATION] = rfc3339(scheduled)
    md: dict[str, Any] = {
        "name": job_name(cronjob, scheduled),
        "namespace": cronjob["metadata"].get("namespace", "default"),
        "labels": dict(tmeta.get("labels") or {}),
        "annotations": annotations,
        "ownerReferences": [owner_ref(cronjob, CRONJOBS)],
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": tmpl.get("spec") or {}}


def _ref(job: Obj) -> dict[str, Any]:
    md = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": md["name"],
        "namespace": md["namespace"],
        "uid": md["uid"],
        "resourceVersion": md.get("resourceVersion", ""),
    }


class CronJobController(Controller):
    name = "cronjob-controller"
    primary = CRONJOBS
    watches = (JOBS,)
    resync = 60.0

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == JOBS:
            ref = controller_of(obj)
            if ref is None or ref.get("kind") != "CronJob":
                return []
            return [(obj["metadata"].get("namespace", ""), ref["name"])]
        return [key_of(obj)]

    async def reconcile(self, key: Key) -> float | None:
        cj = await self.api.get_or_none(CRONJOBS, *key)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return None
        spec = cj["spec"]
        uid = cj["metadata"]["uid"]
        jobs = [j for j in await self.api.list(JOBS, key[0]) if (controller_of(j) or {}).get("uid") == uid]
        status = cj.setdefault("status", {})
        before = copy.deepcopy(status)
        active = [j for j in jobs if not is_finished(j) and not j["metadata"].get("deletionTimestamp")]
        for j in jobs:
            outcome = is_finished(j)
            if outcome is None:
                continue
            done = parse_time((j.get("status") or {}).get("completionTime"))
            if outcome == "Complete" and done is not None:
                last = parse_time(status.get("lastSuccessfulTime"))
                if last is None or done > last:
                    status["lastSuccessfulTime"] = rfc3339(done)
            if any(r.get("uid") == j["metadata"]["uid"] for r in status.get("active") or []):
                await self.events.record(
                    cj, "Normal", "SawCompletedJob", f"Saw completed job: {j['metadata']['name']}, status: {outcome}"
                )
        await self._cleanup(cj, jobs)
        now = float(self.ctx.clock.now())
        tz = spec.get("timeZone")
        since = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp")) or now
        # The most recent scheduled time not after now (mostRecentScheduleTime), if any since the last one.
        scheduled: float | None = None
        t = cron.next_after(spec["schedule"], since, tz)
        for _ in range(1000):
            if t > now:
                break
            scheduled = t
            t = cron.next_after(spec["schedule"], t, tz)
        next_due = t - now
        deadline = spec.get("startingDeadlineSeconds")
        if scheduled is not None and not spec.get("suspend"):
            if deadline is not None and scheduled + float(deadline) < now:
                scheduled = None  # missed its starting deadline: wait for the next time
            elif spec.get("concurrencyPolicy") == "Forbid" and active:
                await self.events.record(
                    cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running"
                )
                scheduled = None
                next_due = min(next_due, 1.0)
            else:
                if spec.get("concurrencyPolicy") == "Replace":
                    for j in active:
                        md = j["metadata"]
                        await self.api.delete(JOBS, md["namespace"], md["name"], propagation_policy="Background")
                        await self.events.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {md['name']}")
                    active = []
                try:
                    job = await self.api.create(JOBS, job_from_template(cj, scheduled))
                    await self.events.record(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
                    active.append(job)
                except ApiError as exc:
                    if exc.code != 409:
                        await self.events.record(cj, "Warning", "FailedCreate", f"Error creating job: {exc.message}")
                        raise
                status["lastScheduleTime"] = rfc3339(scheduled)
        status["active"] = [_ref(j) for j in active]
        if not status["active"]:
            status.pop("active")
        if status != before:
            await self.api.update_status(CRONJOBS, cj)
        return None if spec.get("suspend") else max(next_due, 0.0)

    async def _cleanup(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj["spec"]
        for outcome, limit in (
            ("Complete", spec.get("successfulJobsHistoryLimit")),
            ("Failed", spec.get("failedJobsHistoryLimit")),
        ):
            if limit is None:
                continue
            done = [j for j in jobs if is_finished(j) == outcome and not j["metadata"].get("deletionTimestamp")]
            done.sort(key=lambda j: parse_time((j.get("status") or {}).get("startTime")) or 0.0)
            for j in done[: max(len(done) - int(limit), 0)]:
                md = j["metadata"]
                await self.api.delete(JOBS, md["namespace"], md["name"], propagation_policy="Background")
                await self.events.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {md['name']}")
