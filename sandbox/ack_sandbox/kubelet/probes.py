"""Container probes as the kubelet runs them (pkg/kubelet/prober): httpGet, tcpSocket, grpc, exec.

httpGet succeeds on 200 <= status < 400 (``probe/http``), tcpSocket and grpc when a connection opens (the
grpc health protocol itself is not spoken). An ``exec`` probe would run inside the container image, which
the sandbox does not have: an absolute command that exists on this machine is run; any other counts as a
success (documented limitation). Periods and delays are cloud seconds (compressed); the per-attempt
timeout stays in real seconds (at least 1 s) so a noisy machine does not fail probes.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class ProbeSpec:
    handler: dict[str, Any]
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_k8s(cls, probe: dict[str, Any]) -> ProbeSpec:
        handler = {k: probe[k] for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe}
        return cls(
            handler=handler,
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')!r}")


async def run_probe(
    spec: ProbeSpec, pod_ip: str, container: dict[str, Any], session: aiohttp.ClientSession
) -> tuple[bool, str]:
    """(success, message) — the message is what the ``Unhealthy`` event carries on failure."""
    timeout = max(spec.timeout, 1.0)
    h = spec.handler
    try:
        if "httpGet" in h:
            g = h["httpGet"]
            port = resolve_port(g.get("port"), container)
            host = g.get("host") or pod_ip
            scheme = (g.get("scheme") or "HTTP").lower()
            path = g.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            headers = {x["name"]: x.get("value", "") for x in g.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.31")
            url = f"{scheme}://{host}:{port}{path}"
            async with session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as resp:
                if 200 <= resp.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {resp.status}"
        if "tcpSocket" in h:
            t = h["tcpSocket"]
            port = resolve_port(t.get("port"), container)
            host = t.get("host") or pod_ip
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            return True, ""
        if "grpc" in h:
            port = int(h["grpc"].get("port"))
            _, writer = await asyncio.wait_for(asyncio.open_connection(pod_ip, port), timeout)
            writer.close()
            return True, ""
        if "exec" in h:
            cmd = list(h["exec"].get("command") or [])
            if cmd and os.path.isabs(cmd[0]) and os.access(cmd[0], os.X_OK):
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
                try:
                    code = await asyncio.wait_for(proc.wait(), timeout)
                except TimeoutError:
                    proc.kill()
                    return False, f"command timed out after {timeout:g}s"
                return code == 0, "" if code == 0 else f"command {cmd!r} exited with {code}"
            return True, ""
    except TimeoutError:
        return False, 'Get "probe": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except (aiohttp.ClientError, OSError) as exc:
        if "httpGet" in h:
            g = h["httpGet"]
            return False, (
                f'Get "http://{g.get("host") or pod_ip}:{g.get("port")}{g.get("path") or "/"}": '
                f"dial tcp {pod_ip}:{g.get('port')}: connect: connection refused"
            )
        return False, f"dial tcp {pod_ip}:{h.get('tcpSocket', {}).get('port')}: connect: connection refused ({exc})"
    except ValueError as exc:
        return False, str(exc)
    return True, ""
