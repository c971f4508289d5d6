"""The Job controller (pkg/controller/job, v1.32 behaviour) and the TTL-after-finished controller.

A NonIndexed Job runs ``min(parallelism, completions - succeeded)`` pods from its template (``<job>-xxxxx``,
controller ownerReference, the ``batch.kubernetes.io/job-tracking`` finalizer). Finished pods are counted the
upstream way: first recorded in ``status.uncountedTerminatedPods``, then the finalizer is removed, then they move
into ``succeeded``/``failed`` — so a pod deleted right after it finished is still counted. With
``podReplacementPolicy: TerminatingOrFailed`` (the 1.32 default) a deleted pod that did not succeed counts as
failed. A failed pod is replaced after the pod-failure back-off (10 s doubling, capped at 6 min; cloud seconds).

Terminal conditions go through the interim ones, as 1.32 does with JobPodReplacementPolicy on
(``delayTerminalCondition``): ``SuccessCriteriaMet`` then ``Complete`` (with ``completionTime``), or
``FailureTarget`` (reason ``BackoffLimitExceeded`` / ``DeadlineExceeded``) then ``Failed`` once no pod of the job
is still running or terminating. ``suspend`` deletes the active pods and sets ``Suspended``. Status times are
sandbox time (the store's clock), like ``creationTimestamp``. Events: SuccessfulCreate, SuccessfulDelete,
Completed, BackoffLimitExceeded, DeadlineExceeded, Suspended, Resumed.

``ttlSecondsAfterFinished`` (pkg/controller/ttlafterfinished): the finished Job is deleted with foreground
propagation that many cloud seconds after it finished.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

from ack_sandbox.controllers.base import (
    JOBS,
    PODS,
    Controller,
    Key,
    Kind,
    Obj,
    controller_of,
    get_condition,
    key_of,
    owner_ref,
    set_condition,
)
from ack_sandbox.k8s.batch import TRACKING_FINALIZER
from ack_sandbox.k8s.errors import ApiError
from ack_sandbox.k8s.meta import label_selector_string, parse_time, rfc3339

log = logging.getLogger("ack_sandbox.controllers.job")

POD_FAILURE_BACKOFF = 10.0  # cloud seconds (DefaultJobPodFailureBackOff)
MAX_POD_FAILURE_BACKOFF = 360.0  # MaxJobPodFailureBackOff
MAX_PODS_PER_SYNC = 500  # MaxPodCreateDeletePerSync


def is_finished(job: Obj) -> str | None:
    """ "Complete" or "Failed" when the job has that condition True (util.IsJobFinished)."""
    for ctype in ("Complete", "Failed"):
        cond = get_condition(job, ctype)
        if cond is not None and cond.get("status") == "True":
            return ctype
    return None


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _pod_failed(pod: Obj) -> bool:
    """isPodFailed with podReplacementPolicy TerminatingOrFailed: Failed, or deleted before it succeeded."""
    phase = (pod.get("status") or {}).get("phase")
    return phase == "Failed" or (bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded")


def _ready(pod: Obj) -> bool:
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_from_job(job: Obj) -> Obj:
    template = copy.deepcopy(job["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    md: dict[str, Any] = {
        "generateName": job["metadata"]["name"] + "-",
        "namespace": job["metadata"].get("namespace", "default"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_ref(job, JOBS)],
        "finalizers": [TRACKING_FINALIZER],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": template.get("spec") or {}}


class JobController(Controller):
    name = "job-controller"
    primary = JOBS
    watches = (PODS,)
    resync = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_failure: dict[Key, tuple[int, float]] = {}  # job -> (failed count, cloud time first seen)

    def map_event(self, kind: Kind, etype: str, obj: Obj) -> Iterable[Key]:
        if kind == PODS:
            ref = controller_of(obj)
            if ref is None or ref.get("kind") != "Job":
                return []
            return [(obj["metadata"].get("namespace", ""), ref["name"])]
        return [key_of(obj)]

    def _now(self) -> float:
        return float(self.ctx.clock.now())

    async def reconcile(self, key: Key) -> float | None:
        job = await self.api.get_or_none(JOBS, *key)
        if job is None:
            self._last_failure.pop(key, None)
            return None
        uid = job["metadata"]["uid"]
        selector = label_selector_string(job["spec"].get("selector")) or None
        pods = [
            p
            for p in await self.api.list(PODS, key[0], label_selector=selector)
            if (controller_of(p) or {}).get("uid") == uid
        ]
        if job["metadata"].get("deletionTimestamp") or is_finished(job):
            await self._release(pods, lambda p: True)
            return await self._ttl(job) if not job["metadata"].get("deletionTimestamp") else None
        job = await self._track_finished(job, pods)
        return await self._sync(job, pods)

    # ---- counting finished pods (uncountedTerminatedPods -> finalizer removal -> counters) ----------------

    async def _release(self, pods: list[Obj], which: Any) -> list[Obj]:
        done = []
        for p in pods:
            fins = list(p["metadata"].get("finalizers") or [])
            if TRACKING_FINALIZER not in fins or not which(p):
                continue
            fins.remove(TRACKING_FINALIZER)
            try:
                await self.api.patch(
                    PODS, p["metadata"]["namespace"], p["metadata"]["name"], {"metadata": {"finalizers": fins or None}}
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
            p["metadata"]["finalizers"] = fins
            done.append(p)
        return done

    async def _track_finished(self, job: Obj, pods: list[Obj]) -> Obj:
        status = job.setdefault("status", {})
        unc = status.setdefault("uncountedTerminatedPods", {})
        ok, bad = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        changed = False
        for p in pods:
            if TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []):
                continue
            pid = p["metadata"]["uid"]
            if pid in ok or pid in bad:
                continue
            if (p.get("status") or {}).get("phase") == "Succeeded":
                ok.append(pid)
                changed = True
            elif _pod_failed(p):
                bad.append(pid)
                changed = True
        if not changed and not ok and not bad:
            return job
        if changed:
            status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", ok), ("failed", bad)) if v}
            job = await self.api.update_status(JOBS, job)
        counted = set(ok) | set(bad)
        await self._release(pods, lambda p: p["metadata"]["uid"] in counted)
        status = job.setdefault("status", {})
        if ok:
            status["succeeded"] = int(status.get("succeeded") or 0) + len(ok)
        if bad:
            status["failed"] = int(status.get("failed") or 0) + len(bad)
        status["uncountedTerminatedPods"] = {}
        return await self.api.update_status(JOBS, job)

    # ---- the sync --------------------------------------------------------------------------------------

    async def _sync(self, job: Obj, pods: list[Obj]) -> float | None:
        spec, status = job["spec"], job.setdefault("status", {})
        now = self._now()
        conds: list[dict[str, Any]] = status.setdefault("conditions", [])
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended:
            status["startTime"] = rfc3339(now)
        active = [p for p in pods if not _terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if not _terminal(p) and p["metadata"].get("deletionTimestamp")]
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        requeue: float | None = None
        interim = self._interim(job)
        if interim is None:
            backoff_limit = int(spec.get("backoffLimit", 6))
            deadline = spec.get("activeDeadlineSeconds")
            started = parse_time(status.get("startTime"))
            if failed > backoff_limit or self._past_backoff_on_failure(job, active):
                interim = ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            elif deadline is not None and started is not None and not suspended and now - started >= deadline:
                interim = ("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")
            elif deadline is not None and started is not None and not suspended:
                requeue = float(deadline) - (now - started)
            if interim is not None:
                set_condition(conds, interim[0], "True", interim[1], interim[2], ts=now)
                await self.events.record(job, "Warning", interim[1], interim[2])
        if interim is None:
            active, wait = await self._manage(job, active, succeeded, failed, now)
            if wait is not None:
                requeue = wait if requeue is None else min(requeue, wait)
            completions = spec.get("completions")
            done = (succeeded >= completions) if completions is not None else succeeded > 0
            if done and not active:
                interim = ("SuccessCriteriaMet", "", "")
                set_condition(conds, "SuccessCriteriaMet", "True", None, None, ts=now)
        if interim is not None:
            for p in active:
                await self._delete_pod(job, p)
            terminating += active
            active = []
            if not terminating:
                final = "Complete" if interim[0] == "SuccessCriteriaMet" else "Failed"
                set_condition(conds, final, "True", interim[1] or None, interim[2] or None, ts=now)
                if final == "Complete":
                    status["completionTime"] = rfc3339(now)
                    await self.events.record(job, "Normal", "Completed", "Job completed")
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if _ready(p))
        status["terminating"] = len(terminating)
        status.setdefault("uncountedTerminatedPods", {})
        for k in ("active", "succeeded", "failed"):
            if not status.get(k):
                status.pop(k, None)
        if not conds:
            status.pop("conditions", None)
        await self.api.update_status(JOBS, job)
        if is_finished(job):
            return await self._ttl(job)
        return requeue

    def _interim(self, job: Obj) -> tuple[str, str, str] | None:
        for ctype in ("SuccessCriteriaMet", "FailureTarget"):
            cond = get_condition(job, ctype)
            if cond is not None and cond.get("status") == "True":
                return (ctype, cond.get("reason") or "", cond.get("message") or "")
        return None

    @staticmethod
    def _past_backoff_on_failure(job: Obj, active: list[Obj]) -> bool:
        """restartPolicy OnFailure: container restarts of the job's running pods count against backoffLimit."""
        tspec = (job["spec"].get("template") or {}).get("spec") or {}
        if tspec.get("restartPolicy") != "OnFailure":
            return False
        limit = int(job["spec"].get("backoffLimit", 6))
        restarts = sum(
            int(c.get("restartCount") or 0)
            for p in active
            for c in ((p.get("status") or {}).get("containerStatuses") or [])
        )
        return limit == 0 and restarts > 0 or (limit > 0 and restarts >= limit)

    async def _manage(
        self, job: Obj, active: list[Obj], succeeded: int, failed: int, now: float
    ) -> tuple[list[Obj], float | None]:
        """Create or delete pods towards the wanted parallelism; (active pods, cloud seconds to wait or None)."""
        spec, status = job["spec"], job["status"]
        conds = status["conditions"]
        key = key_of(job)
        if spec.get("suspend"):
            for p in active:
                await self._delete_pod(job, p)
            if set_condition(conds, "Suspended", "True", "JobSuspended", "Job suspended", ts=now):
                await self.events.record(job, "Normal", "Suspended", "Job suspended")
            return [], None
        cond = get_condition(job, "Suspended")
        if cond is not None and cond.get("status") == "True":
            set_condition(conds, "Suspended", "False", "JobResumed", "Job resumed", ts=now)
            status["startTime"] = rfc3339(now)
            await self.events.record(job, "Normal", "Resumed", "Job resumed")
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        if len(active) > want:
            for p in active[want:]:
                await self._delete_pod(job, p)
            return active[:want], None
        if len(active) == want:
            return active, None
        if failed:
            seen = self._last_failure.get(key)
            if seen is None or seen[0] != failed:
                seen = (failed, now)
                self._last_failure[key] = seen
            delay = min(POD_FAILURE_BACKOFF * 2 ** (failed - 1), MAX_POD_FAILURE_BACKOFF)
            left = seen[1] + delay - now
            if left > 0:
                return active, left
        created = list(active)
        for _ in range(min(want - len(active), MAX_PODS_PER_SYNC)):
            try:
                pod = await self.api.create(PODS, pod_from_job(job))
            except ApiError as exc:
                await self.events.record(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                break
            created.append(pod)
            await self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return created, None

    async def _delete_pod(self, job: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        await self.api.delete(PODS, md["namespace"], md["name"], uid=md.get("uid"))
        await self.events.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")

    async def _ttl(self, job: Obj) -> float | None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        kind = is_finished(job)
        cond = get_condition(job, kind) if kind else None
        finished = parse_time((job.get("status") or {}).get("completionTime")) or parse_time(
            (cond or {}).get("lastTransitionTime")
        )
        if finished is None:
            return None
        left = finished + float(ttl) - self._now()
        if left > 0:
            return left
        md = job["metadata"]
        await self.api.delete(JOBS, md["namespace"], md["name"], propagation_policy="Foreground", uid=md["uid"])
        return None
