"""The watch loop survives an API server restart: the stream breaks (transient, resumed with backoff), the
restarted server has compacted its history so the old resourceVersion answers 410 Gone, the loop lists again
and still sees the change that follows. Uses a sandbox of its own, restarted with ``ack-sandbox down/up``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elastic_inference.hooks.kubernetes import KubeAccess, KubeAsyncHook
from elastic_inference.triggers.ingress import IngressAddressTrigger
from elastic_inference.triggers.kubernetes_watch import WatchLoop
from tests.helpers import airflow_env

pytestmark = pytest.mark.integration

CONN = "kubernetes_restart_test"


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[Path]:
    from ack_sandbox import cli

    state = tmp_path / "sandbox"
    cli.up(state, time_scale=30)
    try:
        os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = airflow_env({"state_dir": state})[
            "AIRFLOW_CONN_KUBERNETES_DEFAULT"
        ]
        yield state
    finally:
        os.environ.pop(f"AIRFLOW_CONN_{CONN.upper()}", None)
        cli.down(state, timeout=2)


def _net(state: Path):
    from kubernetes import client, config

    return client.NetworkingV1Api(config.new_client_from_config(config_file=str(state / "kubeconfig")))


def test_watch_resumes_across_an_api_server_restart(own_sandbox: Path) -> None:
    from ack_sandbox import cli

    name = "restart-check"
    _net(own_sandbox).create_namespaced_ingress(
        "default",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {
                "ingressClassName": "unserved",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "svc", "port": {"number": 80}}},
                                }
                            ]
                        }
                    }
                ],
            },
        },
    )
    trigger = IngressAddressTrigger(
        access={"kubernetes_conn_id": CONN}, namespace="default", name=name, deadline=time.time() + 120
    )
    hook = KubeAsyncHook(KubeAccess(kubernetes_conn_id=CONN))

    async def scenario() -> tuple[dict, WatchLoop]:
        async with hook.client() as api:
            loop = WatchLoop(
                api,
                hook,
                trigger.watches(),
                trigger.evaluate,
                deadline=trigger.deadline,
                watch_timeout_seconds=30,
                recheck_seconds=1.0,
            )
            waiting = asyncio.create_task(loop.run())
            await asyncio.sleep(0.5)
            assert not waiting.done() and loop.lists == 1
            # A write the watch does not select moves the server's resourceVersion past the watch's; the
            # restarted server compacts its history there, so resuming from the old version answers 410.
            await asyncio.to_thread(
                lambda: _net(own_sandbox).create_namespaced_ingress(
                    "default",
                    {
                        "apiVersion": "networking.k8s.io/v1",
                        "kind": "Ingress",
                        "metadata": {"name": "other"},
                        "spec": {
                            "ingressClassName": "unserved",
                            "defaultBackend": {"service": {"name": "svc", "port": {"number": 80}}},
                        },
                    },
                )
            )
            await asyncio.to_thread(cli.down, own_sandbox, 2)  # the API server goes away (SIGKILL after 2 s)
            await asyncio.to_thread(cli.up, own_sandbox, 30)
            await asyncio.to_thread(
                lambda: _net(own_sandbox).patch_namespaced_ingress_status(
                    name, "default", {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}
                )
            )
            return await asyncio.wait_for(waiting, 90), loop

    event, loop = asyncio.run(scenario())
    assert event["status"] == "success" and event["address"] == "127.0.0.1"
    assert loop.interruptions >= 1  # the stream broke with the server
    assert loop.lists >= 2  # ...and the expired resourceVersion (410) made it list again
    assert json.loads((own_sandbox / "endpoints.json").read_text())["kubernetes"]
