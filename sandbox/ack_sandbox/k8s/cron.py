"""CronJob schedules: the standard 5-field cron syntax and the ``@hourly``-style descriptors, as the
CronJob controller parses them (robfig/cron ``ParseStandard``), evaluated with croniter."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def parse_error(schedule: str) -> str | None:
    """None when valid, else the reason (the apiserver answers 422 on ``spec.schedule``)."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@") and text not in _DESCRIPTORS and not text.startswith("@every "):
        return f"unrecognized descriptor: {text}"
    if not text.startswith("@") and len(text.split()) != 5:
        return f"expected exactly 5 fields, found {len(text.split())}: {text}"
    if text.startswith("@every "):
        return "@every is not supported by the sandbox; use a 5-field schedule"
    if not croniter.is_valid(text):
        return f"invalid schedule: {text}"
    return None


def next_after(schedule: str, after: float, tz: str | None = None) -> float:
    """The first scheduled time strictly after ``after`` (epoch seconds of the cloud clock)."""
    try:
        zone = ZoneInfo(tz) if tz else UTC
    except ZoneInfoNotFoundError:
        zone = UTC
    base = datetime.fromtimestamp(after, zone)
    return float(croniter(schedule.strip(), base).get_next(float))
