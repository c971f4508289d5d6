"""Container probes as the kubelet runs them (pkg/kubelet/prober): httpGet, tcpSocket, grpc, exec.

httpGet succeeds on 200 <= status < 400 (``probe/http``), tcpSocket and grpc when a connection opens (the
grpc health protocol itself is not spoken). An ``exec`` probe would run inside the container image, which
the sandbox does not have: an absolute command that exists on this machine is run; any other counts as a
success (documented limitation). Periods and delays are cloud seconds (compressed); the per-attempt
timeout stays in real seconds (at least 1 s) so a noisy machine does not fail probes.

How slow a process is does not compress: a busy machine stalls a server (or the prober itself) for real
seconds, which at x30 would be minutes of a cloud's time. So a streak of failures that includes timeouts
must also have lasted ``periodSeconds x (failureThreshold - 1)`` on the real clock — as long as a kubelet's
streak lasts, at most ``MAX_SLOW_STREAK_SECONDS`` — before it marks a container unready or kills it
(``FailureStreak``). A refused connection or a
failing status (nothing listens, the server says it is not ready) counts on the compressed clock as before.
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


MAX_SLOW_STREAK_SECONDS = 30.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""  # what the ``Unhealthy`` event carries on failure
    timed_out: bool = False


@dataclass
class FailureStreak:
    """Consecutive failures of one probe, and whether they reach ``failureThreshold`` (see the module doc)."""

    spec: ProbeSpec
    count: int = 0
    first_at: float = 0.0  # real (monotonic) time of the streak's first failure
    timed_out: bool = False  # any failure of the streak was a timeout

    def add(self, result: ProbeResult, now: float) -> None:
        if self.count == 0:
            self.first_at = now
        self.count += 1
        self.timed_out = self.timed_out or result.timed_out

    def reset(self) -> None:
        self.count, self.timed_out = 0, False

    def reached(self, now: float) -> bool:
        if self.count < self.spec.failure_threshold:
            return False
        if not self.timed_out:
            return True
        window = min(self.spec.period * (self.spec.failure_threshold - 1), MAX_SLOW_STREAK_SECONDS)
        return now - self.first_at >= window


async def run_probe(
    spec: ProbeSpec, pod_ip: str, container: dict[str, Any], session: aiohttp.ClientSession
) -> ProbeResult:
    """One attempt of the probe, bounded by its timeout."""
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
                    return ProbeResult(True)
                return ProbeResult(False, f"HTTP probe failed with statuscode: {resp.status}")
        if "tcpSocket" in h:
            t = h["tcpSocket"]
            port = resolve_port(t.get("port"), container)
            host = t.get("host") or pod_ip
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            return ProbeResult(True)
        if "grpc" in h:
            port = int(h["grpc"].get("port"))
            _, writer = await asyncio.wait_for(asyncio.open_connection(pod_ip, port), timeout)
            writer.close()
            return ProbeResult(True)
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
                    return ProbeResult(False, f"command timed out after {timeout:g}s", True)
                return ProbeResult(code == 0, "" if code == 0 else f"command {cmd!r} exited with {code}")
            return ProbeResult(True)
    except TimeoutError:
        return ProbeResult(
            False, 'Get "probe": context deadline exceeded (Client.Timeout exceeded while awaiting headers)', True
        )
    except (aiohttp.ClientError, OSError) as exc:
        if "httpGet" in h:
            g = h["httpGet"]
            return ProbeResult(
                False,
                f'Get "http://{g.get("host") or pod_ip}:{g.get("port")}{g.get("path") or "/"}": '
                f"dial tcp {pod_ip}:{g.get('port')}: connect: connection refused",
            )
        return ProbeResult(
            False, f"dial tcp {pod_ip}:{h.get('tcpSocket', {}).get('port')}: connect: connection refused ({exc})"
        )
    except ValueError as exc:
        return ProbeResult(False, str(exc))
    return ProbeResult(True)
