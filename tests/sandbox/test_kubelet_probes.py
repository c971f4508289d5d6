"""Probe failures on a busy machine: a streak of *timeouts* must last as long on the real clock as a kubelet's
streak does (``periodSeconds x (failureThreshold - 1)``) before a container is unready or killed, while a failing
status or a refused connection counts on the compressed clock. A stalled machine cannot take every replica out
of the endpoints at once; a server that says "not ready" still leaves them at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from ack_sandbox.kubelet.probes import MAX_SLOW_STREAK_SECONDS, FailureStreak, ProbeResult, ProbeSpec
from tests.helpers import until
from tests.sandbox.workloads import NS

TIMEOUT = ProbeResult(False, "deadline exceeded", timed_out=True)
REFUSED = ProbeResult(False, "connection refused")


def test_refusals_reach_the_threshold_by_count_alone() -> None:
    streak = FailureStreak(ProbeSpec(handler={}, period=10, failure_threshold=3))
    for _ in range(3):
        streak.add(REFUSED, now=100.0)
    assert streak.reached(now=100.0)


def test_timeouts_must_also_last_the_kubelets_streak_on_the_real_clock() -> None:
    streak = FailureStreak(ProbeSpec(handler={}, period=2, failure_threshold=3))
    for t in (100.0, 100.5, 101.0, 103.9):
        streak.add(TIMEOUT, now=t)
        assert not streak.reached(now=t)
    assert streak.reached(now=104.0)  # 2 s x (3 - 1) after the first failure
    streak.reset()
    streak.add(REFUSED, now=200.0)
    streak.add(REFUSED, now=200.1)
    streak.add(TIMEOUT, now=200.2)  # one timeout in the streak: the real clock decides
    assert not streak.reached(now=200.2)
    assert streak.reached(now=204.0)


def test_the_real_window_is_capped() -> None:
    streak = FailureStreak(ProbeSpec(handler={}, period=10, failure_threshold=30))  # a slow startup probe
    for i in range(30):
        streak.add(TIMEOUT, now=float(i))
    assert not streak.reached(now=MAX_SLOW_STREAK_SECONDS - 0.1)
    assert streak.reached(now=MAX_SLOW_STREAK_SECONDS)


class Health:
    """The readiness endpoint the pod's probe reaches (``httpGet.host``): answers 200, 503, or hangs."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.release = threading.Event()
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if health.mode == "hang":
                    health.release.wait(20)
                    return  # the kubelet gave up long ago
                self.send_response(200 if health.mode == "ok" else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, mode: str) -> None:
        if mode != "hang":
            self.release.set()
        self.release = threading.Event() if mode == "hang" else self.release
        self.mode = mode

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    try:
        yield h
    finally:
        h.close()


def ready(core: client.CoreV1Api, name: str) -> bool:
    conditions = core.read_namespaced_pod(name, NS).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@pytest.mark.integration
def test_a_stall_shorter_than_the_streak_keeps_the_pod_ready_a_503_does_not(
    core: client.CoreV1Api, health: Health
) -> None:
    name = "probe-stall"
    # periodSeconds 4, failureThreshold 3: timeouts must last 8 real seconds; 503s count at x30 (0.25 s apart)
    probe = {"httpGet": {"host": "127.0.0.1", "port": health.port, "path": "/"}, "periodSeconds": 4}
    core.create_namespaced_pod(
        NS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "c", "image": "busybox", "command": ["sleep", "3600"], "readinessProbe": probe}
                ],
            },
        },
    )
    try:
        until("the pod ready", lambda: ready(core, name), timeout=60, interval=0.2)

        health.set("hang")  # 5 s of a stalled endpoint: three or more timed-out attempts, a streak under 8 s
        stalled_until = time.monotonic() + 5
        while time.monotonic() < stalled_until:
            assert ready(core, name), "a 5 s stall took the pod out of the endpoints"
            time.sleep(0.2)
        health.set("ok")
        time.sleep(0.5)
        assert ready(core, name)

        health.set("unavailable")  # the server says it is not ready: out of the endpoints on the compressed clock
        until("the pod unready after 503s", lambda: not ready(core, name), timeout=30, interval=0.1)
        health.set("ok")
        until("the pod ready again", lambda: ready(core, name), timeout=30, interval=0.1)

        health.set("hang")  # a stall that lasts: unready, but not before the streak's real span has passed
        started = time.monotonic()
        until("the pod unready after a long stall", lambda: not ready(core, name), timeout=60, interval=0.1)
        assert time.monotonic() - started >= 8
    finally:
        health.set("ok")
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)


def test_the_health_endpoint_hangs_when_told() -> None:
    """The fixture's own check: a hang really is a timeout for a client, not a refusal."""
    h = Health()
    try:
        h.set("hang")
        with socket.create_connection(("127.0.0.1", h.port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(1)
    finally:
        h.close()
