"""The daemon service that owns the TF zygote: starts it in the background, exports it, stops it."""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp.test_utils import TestClient, TestServer

from ack_sandbox.context import SandboxContext
from ack_sandbox.runtimes import registry, service, tf_zygote


async def test_service_starts_the_zygote_exports_it_and_stops_it(tmp_path):
    ctx = SandboxContext(state_dir=tmp_path)
    client = TestClient(TestServer(service.create_app(ctx)))
    await client.start_server()
    try:
        end = time.monotonic() + 180
        body = {}
        while time.monotonic() < end:
            body = await (await client.get("/")).json()
            if body["zygote"] != "starting":
                break
            await asyncio.sleep(0.2)
        assert body["zygote"] == "ready", body
        assert os.environ[tf_zygote.ZYGOTE_ENV] == body["socket"] == str(tmp_path / "tf-zygote.sock")
        spec = registry.resolve("tensorflow/serving:2.3.0-gpu", None, None, {})
        assert spec.env[tf_zygote.ZYGOTE_ENV] == body["socket"]
        handle = client.server.app[service.STATE_KEY]["handle"]
    finally:
        await client.close()
    assert tf_zygote.ZYGOTE_ENV not in os.environ
    assert handle.process.poll() == 0  # stopped with the daemon
    assert not (tmp_path / "tf-zygote.sock").exists()


async def test_service_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv(service.DISABLE_ENV, "1")
    client = TestClient(TestServer(service.create_app(SandboxContext(state_dir=tmp_path))))
    await client.start_server()
    try:
        assert (await (await client.get("/")).json())["zygote"] == "disabled"
    finally:
        await client.close()


def test_long_state_dirs_get_a_short_socket_path(tmp_path):
    deep = tmp_path / ("d" * 120)
    path = service.socket_path_for(deep)
    assert len(path.encode()) <= 100 and path.endswith(".sock")


async def test_daemon_stop_during_the_zygote_import_does_not_wait_for_it(tmp_path):
    client = TestClient(TestServer(service.create_app(SandboxContext(state_dir=tmp_path))))
    await client.start_server()
    state = client.server.app[service.STATE_KEY]
    assert state["zygote"] == "starting"
    await client.close()
    assert state["zygote"] == "stopped"
    assert state["handle"].process.poll() is not None  # terminated, not left importing TensorFlow
    assert tf_zygote.ZYGOTE_ENV not in os.environ
