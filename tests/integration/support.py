"""Plain helpers and constants the integration tests share (fixtures are in ``conftest.py``).

Test modules import these (``from tests.integration.support import ...``), never each other.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from elastic_inference.operators.volume import CreateOssVolumeOperator
from tests.helpers import admin, airflow_conn

# Retries short enough for a test: the hooks' own backoff, compressed.
FAST_RETRY = {"retry_max_attempts": 4, "retry_initial_wait": 0.02, "retry_max_wait": 0.1}


def sandbox_conn(sandbox: dict) -> dict:
    """The connection the sandbox wrote to ``airflow.env`` (AIRFLOW_CONN_ALIBABA_ACK_DEFAULT)."""
    return airflow_conn(sandbox, "alibaba_ack_default")


@contextmanager
def connection(conn_id: str, conn: dict) -> Iterator[str]:
    """``conn`` set as the Airflow connection ``conn_id`` (its AIRFLOW_CONN_* variable) for the block."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    old = os.environ.get(var)
    os.environ[var] = json.dumps(conn)
    try:
        yield conn_id
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


def admin_ok(sandbox: dict, service: str, method: str, path: str, doc: Any = None) -> Any:
    """``tests.helpers.admin`` that fails the test on an HTTP error and returns the body (``{}`` when empty)."""
    status, body = admin(sandbox, service, method, path, doc)
    assert status < 400, f"{method} {service}{path}: HTTP {status}: {body!r}"
    return {} if body is None else body


def uid() -> str:
    return secrets.token_hex(3)


def seed_pool(name: str, vswitches: list[str], **overrides: Any) -> dict[str, Any]:
    """The seed procedure's GPU node pool as the node pool operator takes it."""
    return {
        "name": name,
        "instance_types": ["ecs.gn6i-c4g1.xlarge"],
        "vswitch_ids": vswitches,
        "min_instances": 0,
        "max_instances": 10,
        "spot_strategy": "SpotAsPriceGo",
        "multi_az_policy": "COST_OPTIMIZED",
        "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 30,
        "compensate_with_on_demand": True,
        "labels": {"seldon": "fashion-mnist"},
        **overrides,
    }


def run_deferred(op: Any, context: dict | None = None, during: Callable[[], None] | None = None) -> Any:
    """execute → TaskDeferred → rebuild trigger from serialize() → run to its event (``during`` runs alongside,
    in a thread, once the trigger is started) → the callback's return value."""
    context = context or {}
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    deferred = info.value
    classpath, kwargs = deferred.trigger.serialize()
    module, _, cls = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), cls)(**json.loads(json.dumps(kwargs)))

    async def first_event() -> dict:
        events = []
        gen = trigger.run()
        task = asyncio.ensure_future(gen.__anext__())
        if during is not None:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(during)
        events.append(await task)
        with pytest.raises(StopAsyncIteration):  # exactly one event
            await gen.__anext__()
        await trigger.cleanup()
        return events[0].payload

    event = asyncio.run(first_event())
    return getattr(op, deferred.method_name)(context, event, **(deferred.kwargs or {}))


def read_or_none(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when the object is not there (404)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return fn()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def volume_op(namespace: str, name: str, pvc_name: str | None = None, **kw: Any) -> CreateOssVolumeOperator:
    """The OSS volume operator on bucket ``models`` for PV ``<name>-pv`` and PVC ``<name>-pvc``."""
    return CreateOssVolumeOperator(
        task_id="volume",
        bucket="models",
        path="/models",
        pv_name=f"{name}-pv",
        pvc_name=pvc_name or f"{name}-pvc",
        namespace=namespace,
        timeout=kw.pop("timeout", 60),
        **kw,
    )
