"""``kubectl port-forward`` (kubectl from the lock) against the sandbox as against a cluster: the WebSocket tunnel
kubectl >= 1.31 opens (SPDY/3.1 inside) and the SPDY upgrade it falls back to; pod/, deploy/ and svc/ forms;
several connections through one forward; the pod closing a connection; a port nothing listens on; SIGINT."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.helpers import KUBECTL, until

SERVER = """
import hashlib, http.server, os, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # the sha256 of what came in
        body = hashlib.sha256(self.rfile.read(int(self.headers['Content-Length']))).hexdigest().encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == '/big':
            body = bytes(range(256)) * 8192  # 2 MiB
            self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
            self.wfile.write(body)
            return
        body = (os.environ['POD_NAME'] + ' ' + self.path).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S((os.environ['POD_IP'], 8080), H).serve_forever()
"""


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api, apps: client.AppsV1Api) -> Iterator[str]:
    name = f"pf-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    labels = {"app": "web"}
    container = {
        "name": "main",
        "image": "python:3.12",
        "command": ["python3", "-u", "-c", SERVER],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    apps.create_namespaced_deployment(
        name,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    core.create_namespaced_service(
        name,
        {"metadata": {"name": "web"}, "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    )
    until(
        "web ready",
        lambda: any(
            c.type == "Ready" and c.status == "True"
            for p in core.list_namespaced_pod(name, label_selector="app=web").items
            for c in p.status.conditions or []
        ),
    )
    yield name
    core.delete_namespace(name)


class Forward:
    """One ``kubectl port-forward`` process; its output read by a thread, every wait bounded."""

    def __init__(self, sandbox: dict, ns: str, target: str, remote: int, env: dict[str, str] | None = None) -> None:
        cmd = [KUBECTL, "--kubeconfig", str(Path(sandbox["state_dir"]) / "kubeconfig"), "-n", ns]
        self.proc = subprocess.Popen(
            [*cmd, "port-forward", target, f"0:{remote}", "-v=6"],  # -v=6: the upgrade request is logged
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True).start()
        match = until(
            f"kubectl port-forward {target} listening",
            lambda: (
                self.proc.poll() is None
                and next(
                    (m for line in self.out if (m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line))), None
                )
                or (self.proc.poll() is not None and "exited")
            ),
            timeout=30,
        )
        assert match != "exited", f"kubectl port-forward exited: {''.join(self.err)}"
        self.port = int(match.group(1))  # type: ignore[union-attr]

    def upgraded_with(self) -> str:
        """How kubectl reached the kubelet: ``GET`` is the WebSocket tunnel, ``POST`` the SPDY upgrade."""
        for line in self.err:
            m = re.search(r'verb="(\w+)" url="[^"]*/portforward" status="101 Switching Protocols"', line)
            if m:
                return m.group(1)
        return ""

    def errors(self) -> list[str]:
        """kubectl's error lines (klog ``E...`` and ``error: ...``), not its -v=6 info lines."""
        return [line for line in self.err if line.startswith(("E", "error"))]

    def get(self, path: str, half_close: bool = True, body: bytes | None = None) -> bytes:
        """One HTTP/1.0 exchange through the forward. With ``half_close`` the client shuts its sending side
        after the request (the forward's client side ends first); without, the pod's server closes first and
        the kubelet gives the client side its 1 s (containerd) before closing the stream."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            if body is None:
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: web\r\n\r\n".encode())
            else:
                sock.sendall(f"POST {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            data = b""
            for _ in range(1000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(timeout=15)


def _pod_name(core: client.CoreV1Api, ns: str) -> str:
    return core.list_namespaced_pod(ns, label_selector="app=web").items[0].metadata.name


def test_kubectl_port_forward_pod_deploy_and_service(sandbox: dict, core: client.CoreV1Api, ns: str) -> None:
    pod = _pod_name(core, ns)
    fwd = Forward(sandbox, ns, f"pod/{pod}", 8080)
    try:
        # several connections through one forward, one after another and at once
        for i in range(2):
            reply = fwd.get(f"/seq{i}")
            assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(f"{pod} /seq{i}".encode())
        replies: dict[int, bytes] = {}
        threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, fwd.get(f"/par{i}"))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert sorted(replies) == [0, 1, 2, 3]
        assert all(replies[i].endswith(f"{pod} /par{i}".encode()) for i in range(4))
        # megabytes both ways, split into many frames and WebSocket messages, arrive whole
        assert fwd.get("/big").endswith(b"\r\n\r\n" + bytes(range(256)) * 8192)
        upload = os.urandom(3 * 1024 * 1024 + 7)
        assert fwd.get("/upload", body=upload).endswith(hashlib.sha256(upload).hexdigest().encode())
        # the pod closes first (the client still sending): the local client sees the answer and the close, the
        # forward stays up for the next connection
        assert fwd.get("/server-closes", half_close=False).endswith(f"{pod} /server-closes".encode())
        assert fwd.get("/after-close").endswith(f"{pod} /after-close".encode())
        assert fwd.proc.poll() is None
        assert sum("Handling connection for" in line for line in fwd.out) == 10
    finally:
        code = fwd.stop()
    assert code == 0, "".join(fwd.err)  # Ctrl-C ends kubectl port-forward cleanly
    assert fwd.errors() == [] and fwd.upgraded_with() == "GET"  # SPDY inside the WebSocket tunnel

    # deploy/ and svc/ resolve to the pod client-side; svc port 80 -> targetPort "http" -> 8080
    for target, remote in (("deploy/web", 8080), ("svc/web", 80)):
        fwd = Forward(sandbox, ns, target, remote)
        try:
            assert fwd.get(f"/{target}").endswith(f"{pod} /{target}".encode())
            assert any(line.strip().endswith("-> 8080") for line in fwd.out)
        finally:
            code = fwd.stop()
        assert code == 0 and fwd.errors() == [], "".join(fwd.err)


def test_kubectl_port_forward_refused_port_and_spdy_fallback(sandbox: dict, core: client.CoreV1Api, ns: str) -> None:
    pod = _pod_name(core, ns)
    # nothing listens on 9999: the kubelet's message comes on the error stream; kubectl >= 1.23 prints it and
    # closes the connection (kubernetes/kubernetes#103526), exiting with "lost connection to pod"
    fwd = Forward(sandbox, ns, f"pod/{pod}", 9999)
    try:
        assert fwd.get("/") == b""
        code = fwd.proc.wait(timeout=15)
    finally:
        fwd.stop()
    err = "".join(fwd.err)
    assert code == 1, err
    assert re.search(r"error forwarding port 9999 to pod [0-9a-f]{64}, uid : failed to execute portforward", err), err
    assert "failed to connect to localhost:9999 inside namespace" in err and "connect: connection refused" in err
    assert "lost connection to pod" in err

    # the plain SPDY upgrade kubectl falls back to (KUBECTL_PORT_FORWARD_WEBSOCKETS=false skips the tunnel)
    fwd = Forward(sandbox, ns, f"pod/{pod}", 8080, env={"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})
    try:
        for i in range(2):
            assert fwd.get(f"/spdy{i}").endswith(f"{pod} /spdy{i}".encode())
        upload = os.urandom(4 * 1024 * 1024)  # more than the upgraded connection queues before it pauses reading
        assert fwd.get("/upload", body=upload).endswith(hashlib.sha256(upload).hexdigest().encode())
        assert fwd.get("/big").endswith(b"\r\n\r\n" + bytes(range(256)) * 8192)
    finally:
        code = fwd.stop()
    assert code == 0 and fwd.errors() == [] and fwd.upgraded_with() == "POST", "".join(fwd.err)
