"""batch/v1 Jobs and CronJobs: admission defaults, validation and kubectl's table rows.

Defaults follow pkg/apis/batch/v1/defaults.go (v1.32): ``completions``/``parallelism`` 1 when both unset,
``backoffLimit`` 6, ``completionMode`` NonIndexed, ``suspend`` false, ``podReplacementPolicy``
TerminatingOrFailed (JobPodReplacementPolicy, beta and on in 1.32), ``manualSelector`` unset. The job
strategy's ``generateSelector`` (pkg/registry/batch/job/strategy.go) labels the template with
``batch.kubernetes.io/controller-uid``/``job-name`` (and the legacy ``controller-uid``/``job-name``) and sets
``spec.selector`` to the controller uid, which is why the uid is known at admission. CronJobs:
``concurrencyPolicy`` Allow, ``suspend`` false, history limits 3 and 1.
Table columns: pkg/printers/internalversion/printers.go ``printJob`` / ``printCronJob``.
"""

from __future__ import annotations

import uuid
from typing import Any

from ack_sandbox.k8s import meta, validation
from ack_sandbox.k8s.defaults import Allocator, _template
from ack_sandbox.k8s.tables import AGE, NAME, Column, _md, _none
from ack_sandbox.k8s.validation import Cause, invalid, required, unsupported

UID_LABEL = "batch.kubernetes.io/controller-uid"
NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_UID_LABEL = "controller-uid"
LEGACY_NAME_LABEL = "job-name"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"


def job(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template(obj)
    md = obj.setdefault("metadata", {})
    if not spec.get("manualSelector"):
        # The uid the store keeps for this object (FillObjectMetaSystemFields runs before Validate upstream).
        uid = md.get("uid") or str(uuid.uuid4())
        md["uid"] = uid
        tmd = spec["template"].setdefault("metadata", {})
        labels = tmd.setdefault("labels", {})
        name = md.get("name", "")
        labels.update({UID_LABEL: uid, NAME_LABEL: name, LEGACY_UID_LABEL: uid, LEGACY_NAME_LABEL: name})
        spec["selector"] = {"matchLabels": {UID_LABEL: uid}}
    if not md.get("labels"):
        md["labels"] = dict((spec["template"].get("metadata") or {}).get("labels") or {})
    obj.setdefault("status", {})


def cronjob(obj: dict[str, Any], alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.setdefault("jobTemplate", {})
    jt.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    jspec = jt.setdefault("spec", {})
    if jspec.get("completions") is None and jspec.get("parallelism") is None:
        jspec["completions"], jspec["parallelism"] = 1, 1
    jspec.setdefault("parallelism", 1)
    jspec.setdefault("backoffLimit", 6)
    jspec.setdefault("completionMode", "NonIndexed")
    jspec.setdefault("suspend", False)
    jspec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template({"spec": jspec})
    obj.setdefault("status", {})


def _job_spec(path: str, spec: dict[str, Any], generated: bool) -> list[Cause]:
    out: list[Cause] = []
    for f in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or v < 0):
            out.append(invalid(f"{path}.{f}", v, "must be greater than or equal to 0"))
    if spec.get("activeDeadlineSeconds") == 0:
        out.append(invalid(f"{path}.activeDeadlineSeconds", 0, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        out.append(unsupported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    elif mode == "Indexed":
        # Served by the API, not run by the sandbox's job controller: refuse it rather than run it wrongly.
        out.append(
            (
                "FieldValueNotSupported",
                f"{path}.completionMode",
                'Unsupported value: "Indexed": the sandbox runs NonIndexed jobs only (omit completionMode)',
            )
        )
    tmpl = spec.get("template") or {}
    tspec = tmpl.get("spec") or {}
    policy = tspec.get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        out.append(unsupported(f"{path}.template.spec.restartPolicy", policy, ["OnFailure", "Never"]))
    out += [
        c for c in validation.pod_spec(f"{path}.template.spec", tspec) if c[1] != f"{path}.template.spec.restartPolicy"
    ]
    if not generated:
        sel = spec.get("selector")
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            out.append(required(f"{path}.selector"))
        else:
            tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
            if not meta.labels_match(meta.selector_from_label_selector(sel), tlabels):
                out.append(
                    invalid(f"{path}.template.metadata.labels", tlabels, "`selector` does not match template `labels`")
                )
    return out


def validate_job(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out = _job_spec("spec", spec, generated=not spec.get("manualSelector"))
    if old is not None:
        ospec = old.get("spec") or {}
        for f in ("selector", "template", "completions", "completionMode", "podFailurePolicy"):
            if f == "template" and spec.get("suspend") and ospec.get("suspend"):
                continue  # a suspended job's template may change (mutable scheduling directives)
            if spec.get(f) != ospec.get(f):
                out.append(invalid(f"spec.{f}", spec.get(f), "field is immutable"))
    return out


def validate_cronjob(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    from ack_sandbox.k8s.cron import parse_error

    spec = obj.get("spec") or {}
    out: list[Cause] = []
    schedule = spec.get("schedule")
    if not schedule:
        out.append(required("spec.schedule"))
    elif (err := parse_error(schedule)) is not None:
        out.append(invalid("spec.schedule", schedule, err))
    tz = spec.get("timeZone")
    if tz is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            out.append(invalid("spec.timeZone", tz, "unknown time zone " + str(tz)))
    cp = spec.get("concurrencyPolicy")
    if cp not in ("Allow", "Forbid", "Replace"):
        out.append(unsupported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
    if len(_md(obj).get("name", "")) > 52:
        out.append(invalid("metadata.name", _md(obj)["name"], "must be no more than 52 characters"))
    out += _job_spec("spec.jobTemplate.spec", (spec.get("jobTemplate") or {}).get("spec") or {}, generated=True)
    return out


# ---- tables ------------------------------------------------------------------------------------------------


def _cond_true(o: dict[str, Any], ctype: str) -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True" for c in (o.get("status") or {}).get("conditions") or []
    )


def job_status_text(o: dict[str, Any]) -> str:
    for ctype in ("Complete", "Failed"):
        if _cond_true(o, ctype):
            return ctype
    if _md(o).get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("SuccessCriteriaMet", "FailureTarget", "Suspended"):
        if _cond_true(o, ctype):
            return ctype
    return "Running"


def _templ_containers(spec: dict[str, Any]) -> tuple[str, str]:
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def job_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    succeeded = st.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start = meta.parse_time(st.get("startTime"))
    end = meta.parse_time(st.get("completionTime"))
    duration = "" if start is None else meta.human_duration((end if end is not None else now) - start)
    names, images = _templ_containers(spec)
    return [
        _md(o).get("name"),
        job_status_text(o),
        completions,
        duration,
        meta.age(o, now),
        names,
        images,
        _none(meta.label_selector_string(spec.get("selector"))),
    ]


def cronjob_row(o: dict[str, Any], now: float) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    last = meta.parse_time(st.get("lastScheduleTime"))
    names, images = _templ_containers((spec.get("jobTemplate") or {}).get("spec") or {})
    return [
        _md(o).get("name"),
        spec.get("schedule", ""),
        _none(spec.get("timeZone")),
        "True" if spec.get("suspend") else "False",
        len(st.get("active") or []),
        "<none>" if last is None else meta.human_duration(now - last),
        meta.age(o, now),
        names,
        images,
        _none(meta.label_selector_string(((spec.get("jobTemplate") or {}).get("spec") or {}).get("selector"))),
    ]


_WIDE: list[Column] = [("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
JOB_TABLE = (
    [NAME, ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0), AGE, *_WIDE],
    job_row,
)
CRONJOB_TABLE = (
    [
        NAME,
        ("Schedule", "string", 0),
        ("Timezone", "string", 0),
        ("Suspend", "boolean", 0),
        ("Active", "integer", 0),
        ("Last Schedule", "string", 0),
        AGE,
        *_WIDE,
    ],
    cronjob_row,
)
