"""The DAG-level deadline (Airflow 3.1+ ``DeadlineAlert``): a run that has no verdict (success or failure) within
the bound after it was queued is reported - logged, and notified through a standard Airflow notifier when one is
configured. The callback runs in the triggerer (``AsyncCallback``), so it awaits the notifier's ``async_notify``
or runs a sync-only notifier's ``notify`` in a thread. Airflow removes a run's deadline once the run ends.

Configured where the DAG is parsed (no Variable or DB read at parse time): ``ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES``
(the bound; unset or 0: no deadline), ``ELASTIC_INFERENCE_DEADLINE_NOTIFIER`` (a notifier's dotted path, e.g.
``airflow.providers.smtp.notifications.smtp.SmtpNotifier``) and ``ELASTIC_INFERENCE_DEADLINE_NOTIFIER_KWARGS``
(its keyword arguments, JSON).

Opt-in, not on by default: in Airflow 3.3.2 ``airflow dags test`` fails at the very end of a *successful* run of a
DAG that has a deadline (``DagRun.update_state`` looks the DAG's deadline entries up as alert ids, but
``dag.test()`` hands it the un-serialized DAG, whose entries are dicts: "'dict' object has no attribute 'hex'").
Under the scheduler it works (``tests/e2e/test_real_scheduler.py`` runs with a one-minute bound and checks the
callback's line in the triggerer's log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

MINUTES_ENV = "ELASTIC_INFERENCE_VERDICT_DEADLINE_MINUTES"
NOTIFIER_ENV = "ELASTIC_INFERENCE_DEADLINE_NOTIFIER"
NOTIFIER_KWARGS_ENV = "ELASTIC_INFERENCE_DEADLINE_NOTIFIER_KWARGS"


async def verdict_late(
    context: Mapping[str, Any] | None = None,
    *,
    bound_minutes: float,
    notifier: str = "",
    notifier_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The deadline's callback: log, then notify when a notifier is configured. Returns the message."""
    import importlib

    from airflow.sdk.bases.notifier import BaseNotifier

    context = dict(context or {})
    run = context.get("dag_run")  # the scheduler passes the run as the REST API's DAGRun model, dumped to JSON
    run_id = (run.get("dag_run_id") or run.get("run_id")) if isinstance(run, Mapping) else None
    run_id = run_id or getattr(run, "run_id", None) or "?"
    message = (
        f"elastic_inference run {run_id} has no verdict {bound_minutes:g} minute(s) after it was queued: check its "
        "running task (a wait on the cluster, the canary, the load test) in the UI"
    )
    log.warning(message)
    if notifier:
        module, _, name = notifier.rpartition(".")
        instance = getattr(importlib.import_module(module), name)(**dict(notifier_kwargs or {}))
        instance.context = {**context, "deadline_message": message}
        if type(instance).async_notify is not BaseNotifier.async_notify:
            await instance
        else:
            await asyncio.to_thread(instance, instance.context)
    return message


def deadline_alert(environ: Mapping[str, str] | None = None) -> Any:
    """The DAG's ``deadline=`` from the environment (None: disabled). Raises ValueError naming the variable."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    env = os.environ if environ is None else environ
    text = env.get(MINUTES_ENV, "").strip() or "0"
    try:
        minutes = float(text)
    except ValueError:
        raise ValueError(f"{MINUTES_ENV}={text!r}: give the bound in minutes (e.g. 90), or 0 to disable") from None
    if minutes <= 0:
        return None
    try:
        kwargs = json.loads(env.get(NOTIFIER_KWARGS_ENV, "") or "{}")
    except ValueError as exc:
        raise ValueError(
            f"{NOTIFIER_KWARGS_ENV} is not JSON ({exc}): give the notifier's kwargs as an object"
        ) from None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(
            verdict_late,
            kwargs={"bound_minutes": minutes, "notifier": env.get(NOTIFIER_ENV, ""), "notifier_kwargs": kwargs},
        ),
        name="elastic_inference verdict",
    )
