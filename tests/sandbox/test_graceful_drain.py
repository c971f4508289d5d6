"""No dropped request on the way down, as in a real cluster.

- The ingress proxy (its own process, routed from the real store): a request in flight when its endpoint
  leaves the routing table finishes on its connection; an endpoint that refuses the connection is skipped
  for the next one (``proxy_next_upstream error``).
- The kubelet: a deleted pod is Terminating (deletionTimestamp) and out of the ingress's endpoints at once,
  runs its preStop hook, then gets SIGTERM, and SIGKILL once the grace period is over.
- A rolling update of a SeldonDeployment's predictor (Seldon's preStop hooks and readiness probes,
  ``maxUnavailable: 0``) under steady traffic through the ingress: every request answered, never fewer ready
  replicas than desired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ack_sandbox.context import Clock, SandboxContext
from ack_sandbox.controllers import ingress
from ack_sandbox.controllers.base import INGRESSES, PODS, SERVICES, Api
from ack_sandbox.k8s.store import Store
from tests.helpers import kubectl, until

# ---- the proxy: in-flight requests and refused connections --------------------------------------------------


def free_port_on(*hosts: str) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


def slow_upstream(name: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(1.0)
        return web.json_response({"pod": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@contextlib.asynccontextmanager
async def proxy_env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    ctx = SandboxContext(state_dir=tmp_path, time_scale=60, cluster_id="c1", clock=Clock(60))
    store = Store(clock=ctx.clock)
    ctx.services["kubernetes"] = store
    api = Api(store)
    await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    target = free_port_on("127.0.0.1", "127.0.0.2", "127.0.0.3")
    runners = []
    for name, host in (("a", "127.0.0.1"), ("b", "127.0.0.2")):  # 127.0.0.3: nothing listens
        runner = web.AppRunner(slow_upstream(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, target).start()
        runners.append(runner)
    proxy_port = free_port_on("127.0.0.1")
    stop = await ingress.start(ctx, "127.0.0.1", proxy_port)
    await ingress.after_start(ctx)
    await api.create(
        SERVICES,
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8000, "targetPort": target}]},
        },
    )
    path = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 8000}}}}
    await api.create(
        INGRESSES,
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"rules": [{"http": {"paths": [path]}}]}},
    )
    session = aiohttp.ClientSession()
    try:
        yield {"api": api, "url": f"http://127.0.0.1:{proxy_port}", "session": session}
    finally:
        await session.close()
        await stop()
        for runner in reversed(runners):
            await runner.cleanup()


async def add_pod(api: Api, name: str, ip: str) -> None:
    pod = await api.create(
        PODS,
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    pod["status"] = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
    await api.update_status(PODS, pod)


async def endpoints(env: dict) -> list[str]:
    async with env["session"].get(env["url"] + "/.sandbox/ingress/routes") as resp:
        routes = (await resp.json())["routes"]
    return sorted(routes[0]["endpoints"]) if routes else []


async def until_endpoints(env: dict, want: list[str]) -> None:
    deadline = time.monotonic() + 15
    while (got := await endpoints(env)) != sorted(want):
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.02)


async def test_an_in_flight_request_finishes_when_its_endpoint_leaves_the_table(tmp_path: Path) -> None:
    async with proxy_env(tmp_path) as env:
        api, port = env["api"], None
        await add_pod(api, "a", "127.0.0.1")
        [only] = await _wait_first(env)
        port = only.split(":")[1]
        in_flight = asyncio.ensure_future(env["session"].get(env["url"] + "/slow"))
        await asyncio.sleep(0.3)  # the request is at pod a
        await add_pod(api, "b", "127.0.0.2")
        await api.delete(PODS, "default", "a")  # a leaves the endpoints while it answers
        await until_endpoints(env, [f"127.0.0.2:{port}"])
        resp = await in_flight
        assert resp.status == 200 and (await resp.json())["pod"] == "a"
        for _ in range(5):
            async with env["session"].get(env["url"] + "/fast") as r:
                assert (await r.json())["pod"] == "b"


async def test_a_refused_connection_is_retried_on_the_next_endpoint(tmp_path: Path) -> None:
    async with proxy_env(tmp_path) as env:
        api = env["api"]
        await add_pod(api, "b", "127.0.0.2")
        await add_pod(api, "c", "127.0.0.3")  # ready in the table, but nothing listens (a pod that just died)
        [first] = await _wait_first(env)
        port = first.split(":")[1]
        await until_endpoints(env, [f"127.0.0.2:{port}", f"127.0.0.3:{port}"])
        for _ in range(10):
            async with env["session"].post(env["url"] + "/predict", data=b"{}") as r:
                assert r.status == 200 and (await r.json())["pod"] == "b"


async def _wait_first(env: dict) -> list[str]:
    deadline = time.monotonic() + 15
    while not (got := await endpoints(env)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    return got[:1]


# ---- the kubelet: Terminating, preStop, SIGTERM, SIGKILL ------------------------------------------------------

SERVER = """
import http.server, os, signal, sys
out = open('/out/events', 'a', buffering=1)
ignore = os.environ.get('IGNORE_TERM') == '1'
def on_term(*_):
    out.write('SIGTERM ' + ('ignored' if ignore else 'exiting') + '\\n')
    if not ignore:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != '/ready':
            out.write('GET ' + self.path + '\\n')
        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer((os.environ['POD_IP'], 8080), H)
out.write('LISTENING %d\\n' % os.getpid())
srv.serve_forever()
"""


def hook_pod(name: str, out_dir: Path, ignore_term: bool, grace: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [
                {
                    "name": "web",
                    "image": "python:3.12",
                    "command": ["python3", "-c", SERVER],
                    "env": [{"name": "IGNORE_TERM", "value": "1" if ignore_term else "0"}],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
                    # Seldon's shape of hook: call the server, then sleep (cloud seconds) before SIGTERM
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["/bin/sh", "-c", "curl -s 127.0.0.1:8080/prestop; sleep 30"]}}
                    },
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                }
            ],
            "volumes": [{"name": "out", "hostPath": {"path": str(out_dir), "type": "DirectoryOrCreate"}}],
        },
    }


def _events(out_dir: Path) -> list[str]:
    path = out_dir / "events"
    return path.read_text().splitlines() if path.exists() else []


def _gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, "default")
    except ApiException as exc:
        return exc.status == 404
    return False


def _in_ingress(sandbox: dict, ip: str) -> bool:
    routes = requests.get(f"{sandbox['ingress']}/.sandbox/ingress/routes", timeout=10).json()["routes"]
    return any(e.startswith(ip + ":") for r in routes for e in r["endpoints"])


def _hook_ingress(name: str) -> dict:
    path = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 8080}}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": f"{name}.example.com", "http": {"paths": [path]}}]},
    }


@pytest.mark.integration
def test_a_deleted_pod_terminates_gracefully_prestop_then_sigterm(
    sandbox: dict, core: client.CoreV1Api, tmp_path: Path
) -> None:
    name = "drain-hook"
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
    )
    client.NetworkingV1Api(core.api_client).create_namespaced_ingress("default", _hook_ingress(name))
    # grace 300 cloud s (10 s real at x30): the hook's 30 s sleep (1 s real) ends well before it
    core.create_namespaced_pod("default", hook_pod(name, tmp_path, ignore_term=False, grace=300))
    until("the pod ready", lambda: _ready_pod(core, name), timeout=60)
    ip = core.read_namespaced_pod(name, "default").status.pod_ip
    until("the pod in the ingress's endpoints", lambda: _in_ingress(sandbox, ip), timeout=30)
    core.delete_namespaced_pod(name, "default")
    pod = core.read_namespaced_pod(name, "default")
    assert pod.metadata.deletion_timestamp is not None and pod.metadata.deletion_grace_period_seconds == 300
    until("out of the ingress's endpoints at once", lambda: not _in_ingress(sandbox, ip), timeout=10)
    until("the preStop hook called the server", lambda: "GET /prestop" in _events(tmp_path), timeout=30)
    assert not any(line.startswith("SIGTERM") for line in _events(tmp_path))  # the hook's sleep still runs
    assert not _gone(core, name)  # Terminating
    until("SIGTERM after the hook", lambda: "SIGTERM exiting" in _events(tmp_path), timeout=60)
    until("the pod object removed", lambda: _gone(core, name), timeout=60)
    assert _events(tmp_path)[1:] == ["GET /prestop", "SIGTERM exiting"]


@pytest.mark.integration
def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(
    sandbox: dict, core: client.CoreV1Api, tmp_path: Path
) -> None:
    name = "drain-stubborn"
    core.create_namespaced_pod("default", hook_pod(name, tmp_path, ignore_term=True, grace=45))
    until("the pod running", lambda: _events(tmp_path), timeout=60)
    pid = int(_events(tmp_path)[0].split()[1])
    core.delete_namespaced_pod(name, "default")
    until("SIGTERM delivered and ignored", lambda: "SIGTERM ignored" in _events(tmp_path), timeout=60)
    until("SIGKILL after the grace period: the pod is gone", lambda: _gone(core, name), timeout=60)
    until("the process killed", lambda: not _alive(pid), timeout=30)
    assert "SIGTERM exiting" not in _events(tmp_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by the kubelet) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _ready_pod(core: client.CoreV1Api, name: str) -> bool:
    st = core.read_namespaced_pod(name, "default").status.container_statuses
    return bool(st and st[0].ready)


# ---- a rolling update of a SeldonDeployment under traffic ------------------------------------------------------

NS = "drain"


def echo_sdep(text: str) -> dict:
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "roll", "namespace": NS},
        "spec": {
            "predictors": [
                {
                    "name": "default",
                    "replicas": 2,
                    "componentSpecs": [
                        {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "echo",
                                        "image": "hashicorp/http-echo",
                                        "args": ["-listen=:9000", f"-text={text}"],
                                    }
                                ]
                            }
                        }
                    ],
                    "graph": {"name": "echo", "type": "MODEL", "endpoint": {"type": "REST"}, "children": []},
                }
            ]
        },
    }


def body(version: str) -> str:
    return json.dumps({"data": {"names": [version], "ndarray": [[1.0]]}})


@pytest.mark.integration
def test_a_rolling_update_of_a_predictor_drops_no_request(sandbox: dict, kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": NS}})
    host = f"{NS}.example.com"
    ing = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "roll", "namespace": NS},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "roll-default", "port": {"number": 8000}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    for doc in (echo_sdep(body("v1")), ing):
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(doc))
    dep_name = "roll-default-0-echo"
    url = f"{sandbox['ingress']}/api/v1.0/predictions"
    session = requests.Session()

    def answer() -> str | None:
        try:
            r = session.post(url, json={"data": {"ndarray": [[1.0]]}}, headers={"Host": host}, timeout=10)
        except requests.RequestException:
            return None
        return r.json()["data"]["names"][0] if r.status_code == 200 else None

    until("v1 served by 2 ready replicas", lambda: answer() == "v1" and _ready(apps, dep_name) >= 2, timeout=90)
    results: list[tuple[int, str]] = []
    ready_seen: list[int] = []
    done = threading.Event()

    def prober() -> None:
        probe = requests.Session()
        while not done.is_set():
            try:
                r = probe.post(url, json={"data": {"ndarray": [[1.0]]}}, headers={"Host": host}, timeout=10)
                results.append((r.status_code, r.text))
            except requests.RequestException as exc:
                results.append((0, repr(exc)))
            time.sleep(0.02)

    def watch_ready() -> None:
        while not done.is_set():
            ready_seen.append(_ready(apps, dep_name))
            time.sleep(0.05)

    threads = [threading.Thread(target=prober, daemon=True), threading.Thread(target=watch_ready, daemon=True)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        kubectl(sandbox, "apply", "-f", "-", stdin=json.dumps(echo_sdep(body("v2"))))

        def rolled() -> bool:
            dep = apps.read_namespaced_deployment(dep_name, NS)
            st = dep.status
            return bool(
                st.updated_replicas == 2
                and st.replicas == 2
                and st.available_replicas == 2
                and (st.observed_generation or 0) >= dep.metadata.generation
            )

        until("the rolling update complete", rolled, timeout=120)
        until("the old pods gone", lambda: len(core.list_namespaced_pod(NS).items) == 2, timeout=60)
        time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=15)
    failures = [r for r in results if r[0] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    names = [json.loads(text)["data"]["names"][0] for _, text in results]
    assert names[0] == "v1" and names[-1] == "v2", (names[:3], names[-3:])
    assert len(results) > 20
    assert min(ready_seen) >= 2, ready_seen  # maxUnavailable 0: never below the desired ready replicas
    kubectl(sandbox, "delete", "-n", NS, "seldondeployment", "roll", "--wait=false")


def _ready(apps: client.AppsV1Api, name: str) -> int:
    try:
        return apps.read_namespaced_deployment(name, NS).status.ready_replicas or 0
    except ApiException:
        return 0
